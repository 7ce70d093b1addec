//! The `shared` use: one GPU split among several guests, by SR-IOV virtual functions, by
//! mediated-device types, or by NVIDIA's per-VF vGPU files. Also the rule that keeps the
//! physical function of a split card from a VM: passing it through takes every VF with it.
//!
//! Facts relied on are in docs/sharing.md with their sources (i915-sriov-dkms README and
//! docs, Documentation/PCI/pci-iov-howto.rst, NVIDIA vGPU docs, qemu-server Mdev.pm).

use crate::model::{PciDevice, SecureBoot, Snapshot};
use crate::output::words::{agree, count};

use super::{Ctx, Effect, Finding, RuleId, Severity, Use};

const SHARED: &[Use] = &[Use::Shared];

/// The module the i915-sriov-dkms package builds (its dkms.conf `PACKAGE_NAME`).
pub const I915_SRIOV_DKMS: &str = "i915-sriov-dkms";

pub(super) fn check_shared(c: &Ctx) -> Vec<Finding> {
    let s = c.s;
    let g = c.gpu;
    let mut f = Vec::new();
    if let Some(pf) = g.physfn {
        f.push(
            Finding::new(RuleId::SharedIsVf, Severity::Info, Effect::None, &[Use::Vm, Use::Shared], format!("this is a virtual function of {pf}: it goes to a VM on its own, the physical function stays with the host"))
                .evidence(format!("sys/bus/pci/devices/{}/physfn -> {pf}", g.address)),
        );
        return f;
    }
    let total = g.sriov.as_ref().and_then(|x| x.total_vfs).unwrap_or(0);
    let num = g.sriov.as_ref().and_then(|x| x.num_vfs).unwrap_or(0);
    let vfs: Vec<&PciDevice> = g
        .sriov
        .iter()
        .flat_map(|x| x.vfs.iter())
        .filter_map(|a| s.device(a))
        .collect();
    let nvidia_vgpu = vfs.iter().any(|v| v.nvidia_vgpu.is_some());
    let dir = format!("sys/bus/pci/devices/{}", g.address);

    if num > 0 || !vfs.is_empty() {
        let n = num.max(vfs.len() as u32);
        f.push(
            Finding::new(RuleId::SharedPfSplit, Severity::Error, Effect::Blocks, &[Use::Vm], format!("the card is split into {}: passing the physical function to a VM takes every VF with it and crashes their guests", count(n as usize, "virtual function", "virtual functions")))
                .evidence(format!("{dir}/sriov_numvfs: {num}"))
                .fix(format!("give a VM one VF: passthru vm attach VMID {} --vf auto; or remove the VFs first: passthru share vfs {} --count 0", g.address, g.address)),
        );
        let listed: Vec<String> = vfs.iter().map(|v| describe_vf(s, v)).collect();
        f.push(
            Finding::new(
                RuleId::SharedVfs,
                Severity::Info,
                Effect::None,
                SHARED,
                format!("{n} of {total} virtual functions exist"),
            )
            .evidence(listed.join("; ")),
        );
        let on_host: Vec<String> = vfs
            .iter()
            .filter(|v| v.nvidia_vgpu.is_none())
            .filter(|v| {
                v.driver
                    .as_deref()
                    .is_some_and(|d| d == g.driver.as_deref().unwrap_or(""))
            })
            .map(|v| v.address.to_string())
            .collect();
        if !on_host.is_empty() && !nvidia_vgpu {
            f.push(
                Finding::new(RuleId::SharedVfOnHostDriver, Severity::Warning, Effect::NeedsSetup, SHARED, format!("{} {} on the host driver {}: the host's media stack sees them as GPUs, and a VM start has to unbind them", count(on_host.len(), "VF", "VFs"), agree(on_host.len(), "is", "are"), g.driver.as_deref().unwrap_or("?")))
                    .evidence(format!("{}; {dir}/sriov_drivers_autoprobe: {}", on_host.join(", "), show_flag(g.sriov.as_ref().and_then(|x| x.drivers_autoprobe))))
                    .fix(format!("passthru share vfs {} --count {n} (autoprobe off, VFs on vfio-pci by address); keep a VF on the host driver only to share it into a container", g.address)),
            );
        }
    }
    if nvidia_vgpu {
        f.extend(check_nvidia_vfs(g, &vfs));
    }
    if !g.mdev_type_details.is_empty() || !g.mdev_types.is_empty() {
        f.push(check_mdev_types(s, g));
    }
    if total > 0 && g.vendor.map(|v| v.0) == Some(0x8086) {
        f.extend(check_intel_sriov(s, g, total, num));
    } else if total > 0 && num == 0 && g.vendor.map(|v| v.0) == Some(0x10de) {
        f.push(
            Finding::new(RuleId::SharedVfsOff, Severity::Warning, Effect::NeedsSetup, SHARED, format!("SR-IOV offers up to {total} VFs, none enabled: NVIDIA vGPU 17+ makes them with its own tool, and the VFs stay on the nvidia driver"))
                .evidence(format!("{dir}/sriov_totalvfs: {total}; sriov_numvfs: 0"))
                .fix(format!("/usr/lib/nvidia/sriov-manage -e {} (after the vGPU host driver is installed)", g.address)),
        );
    } else if total > 0 && num == 0 {
        f.push(
            Finding::new(
                RuleId::SharedVfsOff,
                Severity::Warning,
                Effect::NeedsSetup,
                SHARED,
                format!("SR-IOV offers up to {total} virtual functions, none enabled"),
            )
            .evidence(format!("{dir}/sriov_totalvfs: {total}; sriov_numvfs: 0"))
            .fix(format!("passthru share vfs {} --count {total}", g.address)),
        );
    }
    let splittable = total > 0 || !g.mdev_types.is_empty() || nvidia_vgpu;
    if !splittable {
        f.push(
            Finding::new(RuleId::SharedNone, Severity::Info, Effect::Blocks, SHARED, "this GPU cannot be split among VMs: it offers neither SR-IOV virtual functions nor mediated-device types")
                .evidence(format!("{dir}: no sriov_totalvfs, no mdev_supported_types"))
                .fix(format!("share it with containers instead (passthru lxc share CTID {} / passthru docker {}), or give it whole to one VM", g.address, g.address)),
        );
    }
    f
}

fn show_flag(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "1",
        Some(false) => "0",
        None => "unknown",
    }
}

fn describe_vf(s: &Snapshot, v: &PciDevice) -> String {
    let users: Vec<&str> = s
        .sharing
        .mdevs_of(&v.address)
        .map(|m| m.uuid.as_str())
        .collect();
    let mut facts = vec![
        v.driver.as_deref().unwrap_or("no driver").to_string(),
        format!("group {}", v.iommu_group.as_deref().unwrap_or("none")),
    ];
    if let Some(o) = &v.driver_override {
        facts.push(format!("override {o}"));
    }
    if !users.is_empty() {
        facts.push(format!("mdev {}", users.join(" ")));
    }
    format!("{} ({})", v.address, facts.join(", "))
}

fn check_nvidia_vfs(g: &PciDevice, vfs: &[&PciDevice]) -> Vec<Finding> {
    let mut free = Vec::new();
    let mut types = std::collections::BTreeSet::new();
    for v in vfs {
        let Some(n) = &v.nvidia_vgpu else { continue };
        if n.current.unwrap_or(0) == 0 {
            free.push(v.address.to_string());
        }
        types.extend(
            n.creatable
                .iter()
                .map(|(id, name)| format!("nvidia-{id} ({name})")),
        );
    }
    let effect = if types.is_empty() || free.is_empty() {
        Effect::Blocks
    } else {
        Effect::None
    };
    let severity = if effect == Effect::None {
        Severity::Info
    } else {
        Severity::Warning
    };
    let message = if effect == Effect::None {
        format!(
            "NVIDIA vGPU on VFs (vendor VFIO, no mdev): {} of {} VFs free; types creatable now: {}",
            free.len(),
            vfs.len(),
            types.iter().cloned().collect::<Vec<_>>().join(", ")
        )
    } else {
        format!(
            "NVIDIA vGPU on VFs: no VF can take a type now ({} free, {})",
            free.len(),
            count(types.len(), "creatable type", "creatable types")
        )
    };
    vec![Finding::new(RuleId::SharedNvidiaVgpu, severity, effect, SHARED, message)
        .evidence(format!("sys/bus/pci/devices/{}/virtfn*/nvidia/{{creatable_vgpu_types,current_vgpu_type}}", g.address))
        .fix(format!("passthru vm attach VMID {} --mdev nvidia-ID (Proxmox writes the type id to the VF's current_vgpu_type at VM start)", g.address))]
}

fn check_mdev_types(s: &Snapshot, g: &PciDevice) -> Finding {
    let live = s.sharing.mdevs_of(&g.address).count();
    let listed: Vec<String> = g
        .mdev_type_details
        .iter()
        .map(|t| {
            format!(
                "{}{} ({} free)",
                t.id,
                t.name
                    .as_ref()
                    .map(|n| format!(" \"{n}\""))
                    .unwrap_or_default(),
                t.available_instances
                    .map_or("unknown".to_string(), |n| n.to_string())
            )
        })
        .collect();
    let any_free = g
        .mdev_type_details
        .iter()
        .any(|t| t.available_instances.unwrap_or(0) > 0);
    let dir = format!("sys/bus/pci/devices/{}/mdev_supported_types", g.address);
    if any_free {
        Finding::new(
            RuleId::SharedMdevTypes,
            Severity::Info,
            Effect::None,
            SHARED,
            format!(
                "mediated-device types offered ({} live): {}",
                count(live, "instance", "instances"),
                listed.join(", ")
            ),
        )
        .evidence(format!("{dir}/*/available_instances"))
        .fix(mdev_fix(s, g))
    } else {
        Finding::new(RuleId::SharedMdevTypes, Severity::Warning, Effect::Blocks, SHARED, format!("no mediated-device type has an instance free ({live} live): {}", listed.join(", ")))
            .evidence(format!("{dir}/*/available_instances"))
            .fix("stop a guest that holds one, or remove an unused instance (echo 1 > sys/bus/mdev/devices/UUID/remove)")
    }
}

/// How to give a guest an instance: Proxmox makes it at VM start from the VM's config;
/// libvirt needs it made first (`share mdev`, which also makes it at every boot). The type is
/// the first with an instance free.
fn mdev_fix(s: &Snapshot, g: &PciDevice) -> String {
    let ty = g
        .mdev_type_details
        .iter()
        .find(|t| t.available_instances.unwrap_or(0) > 0)
        .map_or("TYPE", |t| t.id.as_str());
    let a = g.address;
    if s.system.proxmox.is_some() {
        format!("passthru vm attach VMID {a} --mdev {ty}")
    } else {
        let n = crate::plan::share_mdev::own_live_count(s, &a.to_string(), ty) + 1;
        format!("passthru share mdev {a} --type {ty} --count {n} --now, then passthru libvirt attach DOMAIN {a} --mdev {ty}")
    }
}

/// Intel iGPUs: which driver flavour can make VFs, its parameters, DKMS for the kernel that
/// boots next, Secure Boot. The stock i915 has no `max_vfs` parameter; i915-sriov-dkms and
/// xe have one (i915-sriov-dkms README; /sys/module/i915/parameters).
fn check_intel_sriov(s: &Snapshot, g: &PciDevice, total: u32, num: u32) -> Vec<Finding> {
    let mut f = Vec::new();
    let sh = &s.sharing;
    let driver = g.driver.as_deref().unwrap_or("");
    let module = sh.sriov_module(driver);
    let capable = module.is_some_and(|m| m.max_vfs.is_some());
    let dir = format!("sys/bus/pci/devices/{}", g.address);
    let running = s.system.kernel_release.clone().unwrap_or_default();
    if !capable && num == 0 {
        let evidence = match module {
            Some(m) => format!(
                "sys/module/{}/parameters: no max_vfs{}",
                m.module,
                m.file
                    .as_ref()
                    .map(|p| format!("; lib/modules/{running}/modules.dep: {p}"))
                    .unwrap_or_default()
            ),
            None => format!(
                "{dir}/driver: {}",
                if driver.is_empty() { "none" } else { driver }
            ),
        };
        f.push(
            Finding::new(RuleId::SharedDriverCannot, Severity::Warning, Effect::NeedsSetup, SHARED, format!("the iGPU offers {total} VFs, but the loaded driver ({}) cannot make them: the stock i915 has no SR-IOV", if driver.is_empty() { "none" } else { driver }))
                .evidence(evidence)
                .fix(format!("install {I915_SRIOV_DKMS} (https://github.com/strongtz/i915-sriov-dkms) for kernel {running} and every kernel you boot, or on a kernel with xe SR-IOV (6.18+) boot xe; then passthru share vfs {} --count {}", g.address, total.min(7))),
        );
    }
    if capable {
        let want: &[&str] = match driver {
            "xe" => &["xe.max_vfs"],
            _ => &["i915.enable_guc", "i915.max_vfs"],
        };
        let missing: Vec<&str> = want
            .iter()
            .copied()
            .filter(|k| s.system.cmdline_value(k).is_none())
            .collect();
        if !missing.is_empty() && num == 0 {
            f.push(
                Finding::new(
                    RuleId::SharedParamsMissing,
                    Severity::Warning,
                    Effect::NeedsSetup,
                    SHARED,
                    format!(
                        "{driver} can make VFs, but the kernel command line lacks {}",
                        missing.join(", ")
                    ),
                )
                .evidence(format!(
                    "proc/cmdline: {}",
                    s.system.cmdline.as_deref().unwrap_or("unreadable")
                ))
                .fix(format!(
                    "passthru share vfs {} --count {}",
                    g.address,
                    total.min(7)
                )),
            );
        } else if num == 0 {
            f.push(
                Finding::new(
                    RuleId::SharedVfsOff,
                    Severity::Warning,
                    Effect::NeedsSetup,
                    SHARED,
                    format!("{driver} can make up to {total} VFs, none enabled"),
                )
                .evidence(format!(
                    "{dir}/sriov_numvfs: 0; sys/module/{driver}/parameters/max_vfs present"
                ))
                .fix(format!(
                    "passthru share vfs {} --count {}",
                    g.address,
                    total.min(7)
                )),
            );
        }
    }
    // DKMS: a build for the running kernel but none for the kernel that boots next loses the
    // VFs at the reboot (i915-sriov-dkms #353, #445).
    let builds: Vec<&str> = sh
        .dkms
        .iter()
        .filter(|b| b.module == I915_SRIOV_DKMS)
        .map(|b| b.kernel.as_str())
        .collect();
    if !builds.is_empty() {
        if let Some(next) = sh.default_kernel.as_deref() {
            if sh.dkms_for(I915_SRIOV_DKMS, next).next().is_none() {
                f.push(
                    Finding::new(RuleId::SharedDkmsNextKernel, Severity::Warning, Effect::NeedsSetup, SHARED, format!("{I915_SRIOV_DKMS} is built for {} but not for {next}, the kernel the next boot takes: the VFs are gone after the reboot", builds.join(", ")))
                        .evidence(format!("var/lib/dkms/{I915_SRIOV_DKMS}/*/: {}; {}", builds.join(", "), sh.default_kernel_evidence.as_deref().unwrap_or("")))
                        .fix(format!("dkms autoinstall -k {next} (and check its output) before rebooting; or pin the kernel that has the module")),
                );
            }
        }
        if sh.secure_boot == Some(SecureBoot::On) {
            // Loaded already: its signature was accepted, and each new build must be signed
            // with the same key. Not loaded: whether it can be is unknown (#352, #156).
            let (severity, effect, message) = if capable {
                (Severity::Info, Effect::None, "Secure Boot is on and the out-of-tree i915 is loaded, so its signing key is trusted: each new DKMS build must be signed with that key (MOK)")
            } else {
                (Severity::Warning, Effect::Unknown, "Secure Boot is on: the out-of-tree i915 loads only when signed with a key the firmware trusts (MOK)")
            };
            f.push(
                Finding::new(RuleId::SharedSecureBoot, severity, effect, SHARED, message)
                    .evidence("sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-e98c0304f9ce: 1")
                    .fix("enrol DKMS's signing key (mokutil --import /var/lib/dkms/mok.pub, then reboot and confirm), or turn Secure Boot off"),
            );
        }
    }
    f
}
