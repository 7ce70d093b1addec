//! `passthru share vfs DEVICE --count N`: split a card into SR-IOV virtual functions that
//! last across reboots, and (with `--now`) make them at once. Pure: builds a file plan and a
//! runtime plan; `apply` writes them.
//!
//! What persists (a file plan, one transaction):
//! - the kernel parameters the driver flavour needs to make VFs (i915-sriov-dkms:
//!   `i915.enable_guc=3 i915.max_vfs=N`; xe: `xe.max_vfs=N`; other drivers none);
//! - a udev rule per PF (`etc/udev/rules.d/61-passthru-sriov-<BDF>.rules`): when a driver
//!   binds the PF (its `bind` event, or coldplug's `add` of a PF bound before udevd started,
//!   e.g. in the initramfs: `udevadm trigger` sends only `add`), autoprobe off and then the count (autoprobe must be 0 *before* the VFs
//!   exist, Documentation/PCI/pci-iov-howto.rst); when each VF appears, `driver_override`
//!   vfio-pci by address and a probe (driver_override lets a VF probe with autoprobe off:
//!   drivers/pci/pci-driver.c pci_device_can_probe).
//!
//! What happens now (`--now`, a runtime plan, its own transaction): the same writes to sysfs.
//! Rolling it back writes the saved count and autoprobe back, which removes the VFs.
//!
//! `--count 0` plans the way back: the rule removed, the parameters taken off, and now
//! `sriov_numvfs` 0.

use crate::check::select_one;
use crate::formats::cmdline::parse_cmdline;
use crate::model::{CmdlineParam, PciAddress, PciDevice, Snapshot};

use super::files::ParamChange;
use super::runtime::{DeviceState, Restore, RuntimePlan, SysfsWrite};
use super::setup::SetupError;
use super::source::FileSource;
use super::{file_edit, Plan, PlannedCommand};

/// What the user asked.
#[derive(Debug, Clone)]
pub struct ShareVfsRequest {
    /// A GPU selector, or the address of any PCI function with SR-IOV.
    pub device: String,
    pub count: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error(transparent)]
    Select(#[from] crate::check::SelectError),
    #[error(transparent)]
    Read(#[from] super::source::ReadError),
    #[error("refusing to share {device}: {why}")]
    Refused { device: String, why: String },
}

/// The udev rule file for one PF.
pub fn sriov_rule_file(pf: &PciAddress) -> String {
    format!("etc/udev/rules.d/61-passthru-sriov-{pf}.rules")
}

/// Which driver makes the VFs, and the parameters it needs for `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VfDriver {
    /// i915 from i915-sriov-dkms (strongtz/i915-sriov-dkms README: `i915.enable_guc=3
    /// i915.max_vfs=7`).
    I915,
    /// Intel's upstream xe (`xe.max_vfs`).
    Xe,
    /// Any other driver with `sriov_configure` (NVMe, NICs): no parameters.
    Generic,
}

impl VfDriver {
    fn of(d: &PciDevice) -> VfDriver {
        match (d.vendor.map(|v| v.0), d.driver.as_deref()) {
            (Some(0x8086), Some("i915")) => VfDriver::I915,
            (Some(0x8086), Some("xe")) => VfDriver::Xe,
            _ => VfDriver::Generic,
        }
    }
    /// The parameter keys this flavour uses; every one of them is passthru's to set.
    fn keys(self) -> &'static [&'static str] {
        match self {
            VfDriver::I915 => &["i915.enable_guc", "i915.max_vfs"],
            VfDriver::Xe => &["xe.max_vfs"],
            VfDriver::Generic => &[],
        }
    }
    fn params(self, count: u32) -> Vec<CmdlineParam> {
        let text = match self {
            VfDriver::I915 => format!("i915.enable_guc=3 i915.max_vfs={count}"),
            VfDriver::Xe => format!("xe.max_vfs={count}"),
            VfDriver::Generic => String::new(),
        };
        parse_cmdline(&text)
    }
}

/// The PF the request names: a GPU by selector, or any function with SR-IOV by address.
fn find_pf<'a>(s: &'a Snapshot, sel: &str) -> Result<&'a PciDevice, ShareError> {
    let dev = match sel.parse::<PciAddress>().ok().and_then(|a| s.device(&a)) {
        Some(d) => d,
        None => select_one(s, sel)?,
    };
    let refuse = |why: String| ShareError::Refused {
        device: dev.address.to_string(),
        why,
    };
    if let Some(pf) = dev.physfn {
        return Err(refuse(format!(
            "it is a virtual function; name its physical function {pf}"
        )));
    }
    let total = dev.sriov.as_ref().and_then(|x| x.total_vfs).unwrap_or(0);
    if total == 0 {
        return Err(refuse("it offers no SR-IOV (no sriov_totalvfs)".into()));
    }
    if dev.vendor.map(|v| v.0) == Some(0x10de) {
        return Err(refuse(format!("NVIDIA's VFs are made by the vGPU driver (/usr/lib/nvidia/sriov-manage -e {}) and stay on the nvidia driver; vfio-pci cannot take them", dev.address)));
    }
    Ok(dev)
}

/// The persistent part: kernel parameters and the udev rule.
pub fn plan_share_vfs(
    s: &Snapshot,
    src: &dyn FileSource,
    req: &ShareVfsRequest,
) -> Result<Plan, ShareError> {
    let pf = find_pf(s, &req.device)?;
    let sriov = pf.sriov.clone().unwrap_or_default();
    let total = sriov.total_vfs.unwrap_or(0);
    if req.count > total {
        return Err(ShareError::Refused {
            device: pf.address.to_string(),
            why: format!(
                "--count {} is more than its sriov_totalvfs {total}",
                req.count
            ),
        });
    }
    let flavour = VfDriver::of(pf);
    let mut plan = Plan {
        title: if req.count == 0 {
            format!("Stop splitting {} into virtual functions", pf.address)
        } else {
            format!(
                "Split {} ({}) into {} virtual {} for VMs",
                pf.address,
                pf.names.name,
                req.count,
                if req.count == 1 {
                    "function"
                } else {
                    "functions"
                }
            )
        },
        ..Plan::default()
    };
    let rule = if req.count == 0 {
        None
    } else {
        let vfs = vf_addresses(pf, req.count)?;
        Some(render_sriov_rule(pf, req.count, &vfs).into_bytes())
    };
    plan.edits.extend(file_edit(
        src,
        &sriov_rule_file(&pf.address),
        rule,
        0o644,
        if req.count == 0 {
            "no VFs at boot"
        } else {
            "make the VFs at boot with autoprobe off and bind them to vfio-pci by address"
        },
    )?);
    // Parameters: what the flavour needs for the count; with 0, the flavour's keys off the
    // line wherever the boot loader has them.
    let configured: Vec<CmdlineParam> = s
        .boot
        .bootloaders
        .iter()
        .filter(|b| Some(b.kind) == s.boot.in_use)
        .flat_map(|b| b.configured_params.iter().cloned())
        .collect();
    let change = if req.count == 0 {
        ParamChange {
            add: Vec::new(),
            remove: configured
                .into_iter()
                .filter(|p| {
                    flavour
                        .keys()
                        .iter()
                        .any(|k| super::files::same_key(k, &p.key))
                })
                .collect(),
        }
    } else {
        ParamChange {
            add: flavour.params(req.count),
            remove: Vec::new(),
        }
    };
    if !change.is_empty() {
        plan.extend(super::boot::plan_kernel_params(s, src, &change)?);
    }
    // The stock i915 has no max_vfs: the parameters are ignored ("unknown parameter
    // 'max_vfs' ignored", i915-sriov-dkms #170) until the DKMS module is installed.
    let stock = match flavour {
        VfDriver::I915 => s
            .sharing
            .sriov_module("i915")
            .is_some_and(|m| m.max_vfs.is_none()),
        VfDriver::Xe => s
            .sharing
            .sriov_module("xe")
            .is_some_and(|m| m.max_vfs.is_none()),
        VfDriver::Generic => false,
    };
    if stock && req.count > 0 {
        plan.warnings.push(format!(
            "the loaded {} has no max_vfs parameter (the stock module): install i915-sriov-dkms for every kernel you boot before rebooting, or the VFs will not appear (passthru check --for shared {})",
            pf.driver.as_deref().unwrap_or("driver"),
            pf.address
        ));
    }
    if !plan.edits.is_empty() {
        plan.commands.push(PlannedCommand {
            argv: vec!["udevadm".into(), "control".into(), "--reload".into()],
            why: "load the rule".into(),
        });
        plan.notes.push(match (req.count, flavour) {
            (0, _) => format!(
                "The VFs go at the next boot, or now with passthru share vfs {} --count 0 --now.",
                pf.address
            ),
            (_, VfDriver::Generic) => {
                "The VFs appear at the next boot, or now with --now.".to_string()
            }
            _ => format!(
                "Reboot: {} reads its max_vfs at load. Then passthru check --for shared {}.",
                pf.driver.as_deref().unwrap_or("the driver"),
                pf.address
            ),
        });
    }
    Ok(plan)
}

/// The VF addresses for `count`: the existing `virtfnN` links, else from the capability's
/// offset and stride.
fn vf_addresses(pf: &PciDevice, count: u32) -> Result<Vec<PciAddress>, ShareError> {
    let sriov = pf.sriov.clone().unwrap_or_default();
    (0..count)
        .map(|i| {
            sriov.vf_address(&pf.address, i).ok_or_else(|| ShareError::Refused {
                device: pf.address.to_string(),
                why: "where its VFs will appear is unknown: no VF exists yet and the SR-IOV capability (config space past 256 bytes) is readable only by root; run as root".into(),
            })
        })
        .collect()
}

/// The rule file: PF lines first (autoprobe off before the count), then one line per VF.
pub fn render_sriov_rule(pf: &PciDevice, count: u32, vfs: &[PciAddress]) -> String {
    let a = pf.address;
    let mut out = format!(
        "# Written by passthru share vfs {a} --count {count}; `passthru share vfs {a} --count 0` or\n\
         # `passthru rollback` takes it away.\n\
         # Autoprobe off before the VFs exist, so no host driver takes them; then the count.\n\
         # When its driver binds, or at coldplug's add if it was bound before udevd started.\n\
         ACTION==\"add|bind\", SUBSYSTEM==\"pci\", KERNEL==\"{a}\", DRIVER==\"?*\", ATTR{{sriov_drivers_autoprobe}}=\"0\"\n\
         ACTION==\"add|bind\", SUBSYSTEM==\"pci\", KERNEL==\"{a}\", DRIVER==\"?*\", ATTR{{sriov_numvfs}}==\"0\", ATTR{{sriov_numvfs}}=\"{count}\"\n\
         # Each VF to vfio-pci by address: driver_override lets it probe with autoprobe off.\n"
    );
    let vendor = pf
        .vendor
        .map(|v| format!(", ATTR{{vendor}}==\"0x{v}\""))
        .unwrap_or_default();
    let device = pf
        .sriov
        .as_ref()
        .and_then(|x| x.vf_device)
        .map(|d| format!(", ATTR{{device}}==\"0x{d}\""))
        .unwrap_or_default();
    for vf in vfs {
        out.push_str(&format!(
            "ACTION==\"add\", SUBSYSTEM==\"pci\", KERNEL==\"{vf}\"{vendor}{device}, ATTR{{driver_override}}=\"vfio-pci\", RUN+=\"/bin/sh -c 'modprobe vfio-pci; echo $kernel > /sys/bus/pci/drivers_probe'\"\n"
        ));
    }
    out
}

/// The part that happens now (`--now`): autoprobe off, the count, each VF to vfio-pci.
/// Refused when the PF already has a different non-zero count (the kernel takes a new count
/// only from 0, and an undo would have to go through 0 too: `--count 0 --now` first).
pub fn plan_share_vfs_now(s: &Snapshot, req: &ShareVfsRequest) -> Result<RuntimePlan, ShareError> {
    let pf = find_pf(s, &req.device)?;
    let sriov = pf.sriov.clone().unwrap_or_default();
    let now = sriov.num_vfs.unwrap_or(0);
    let a = pf.address;
    let dir = format!("sys/bus/pci/devices/{a}");
    let mut plan = RuntimePlan {
        title: match req.count {
            0 => format!("Remove the VFs of {a} now"),
            1 => format!("Make 1 VF of {a} now"),
            n => format!("Make {n} VFs of {a} now"),
        },
        lasting: Some(if req.count == 0 {
            "Without the rule, none are made at the next boot either.".to_string()
        } else {
            format!(
                "They last until the next reboot; the udev rule ({}) makes them at every boot.",
                sriov_rule_file(&a)
            )
        }),
        devices: vec![DeviceState {
            address: a.to_string(),
            driver: pf.driver.clone(),
            driver_override: pf.driver_override.clone(),
        }],
        ..RuntimePlan::default()
    };
    if now == req.count {
        return Ok(plan);
    }
    if now != 0 && req.count != 0 {
        return Err(ShareError::Refused {
            device: a.to_string(),
            why: format!("it has {now} VFs now; the kernel changes the count only from 0: passthru share vfs {a} --count 0 --now first"),
        });
    }
    if req.count == 0 {
        plan.writes.push(SysfsWrite {
            path: format!("{dir}/sriov_numvfs"),
            value: "0".into(),
            why: "remove the VFs".into(),
            restore: Restore::Value,
        });
        return Ok(plan);
    }
    let vfs = vf_addresses(pf, req.count)?;
    plan.modprobe.push("vfio-pci".into());
    plan.writes.push(SysfsWrite {
        path: format!("{dir}/sriov_drivers_autoprobe"),
        value: "0".into(),
        why: "keep host drivers off the VFs".into(),
        restore: Restore::Value,
    });
    plan.writes.push(SysfsWrite {
        path: format!("{dir}/sriov_numvfs"),
        value: req.count.to_string(),
        why: "make the VFs".into(),
        restore: Restore::Value,
    });
    for vf in vfs {
        // The VF does not exist before the count is written: nothing to save, and the undo
        // (the count back to 0) removes it.
        plan.writes.push(SysfsWrite {
            path: format!("sys/bus/pci/devices/{vf}/driver_override"),
            value: "vfio-pci".into(),
            why: "this VF is for a VM".into(),
            restore: Restore::Binding,
        });
        plan.writes.push(SysfsWrite {
            path: "sys/bus/pci/drivers_probe".into(),
            value: vf.to_string(),
            why: "bind it to vfio-pci".into(),
            restore: Restore::Binding,
        });
    }
    Ok(plan)
}
