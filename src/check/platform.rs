//! Host-wide rules: CPU virtualisation, IOMMU (firmware vs kernel, the parameter actually
//! needed), interrupt remapping, and the vfio modules. They bear on VM use only. They are run
//! for one GPU at a time, so that each fix names the `passthru setup vm` command for it (and
//! the Intel default can be judged for that GPU).

use crate::assess::{
    diagnose_iommu, firmware_iommu_setting, IntelDefault, IommuOffCause, IommuVerdict,
};
use crate::model::{IommuVendor, IrqRemapping, PciDevice, Snapshot};

use super::{kernel_version, Effect, Finding, RuleId, Severity, Use};

const VM: &[Use] = &[Use::Vm];

pub(super) fn check_platform(s: &Snapshot, gpu: &PciDevice) -> Vec<Finding> {
    let mut f = Vec::new();
    let setup = format!("passthru setup vm {}", gpu.address);
    let sys = &s.system;
    let cpu = &sys.cpu;

    // CPU virtualisation.
    if cpu.threads == 0 && cpu.vendor_id.is_none() {
        f.push(
            Finding::new(
                RuleId::CpuUnknown,
                Severity::Warning,
                Effect::Unknown,
                VM,
                "the CPU's flags could not be read",
            )
            .evidence("proc/cpuinfo"),
        );
    } else if cpu.virt_flag.is_none() {
        let (msg, fix) = if cpu.hypervisor {
            (
                "this host is a VM whose CPU shows no vmx/svm flag: nested virtualisation is not exposed",
                "expose nested virtualisation to this VM (QEMU: -cpu host with kvm nested=1), or run on the physical host",
            )
        } else {
            (
                "the CPU shows no vmx (Intel VT-x) or svm (AMD-V) flag: virtualisation is off in the firmware or unsupported",
                "enable Intel Virtualization Technology (VT-x) or SVM Mode (AMD) in the firmware setup",
            )
        };
        f.push(
            Finding::new(
                RuleId::CpuVirtMissing,
                Severity::Error,
                Effect::Blocks,
                VM,
                msg,
            )
            .evidence("proc/cpuinfo: flags without vmx/svm")
            .fix(fix),
        );
    }

    // IOMMU: why it is off is decided once, in assess::diagnose_iommu.
    let iommu = &s.iommu;
    let param = |k: &str| sys.cmdline_value(k).and_then(|p| p.value.clone());
    let diagnosis = diagnose_iommu(s);
    match diagnosis.verdict {
        IommuVerdict::NoIommuMode => f.push(
            Finding::new(RuleId::IommuNoiommu, Severity::Error, Effect::Blocks, VM, "only vfio no-IOMMU groups exist: a device handed out this way is not isolated from the host at all")
                .evidence("sys/kernel/iommu_groups/*/name: vfio-noiommu")
                .fix("enable the IOMMU in the firmware setup and boot without vfio.enable_unsafe_noiommu_mode"),
        ),
        IommuVerdict::Off(cause @ (IommuOffCause::NoFirmwareTable | IommuOffCause::NoVirtualIommu)) => {
            let fix = if cause == IommuOffCause::NoVirtualIommu {
                "give this VM an emulated IOMMU (QEMU: -device intel-iommu,intremap=on), or run on the physical host".to_string()
            } else {
                match firmware_iommu_setting(s) {
                    (name, Some(place)) => format!("enable {name} in the firmware setup ({place})"),
                    (name, None) => format!("enable {name} in the firmware setup"),
                }
            };
            f.push(
                Finding::new(
                    RuleId::IommuFirmwareOff,
                    Severity::Error,
                    Effect::Blocks,
                    VM,
                    "the firmware announces no IOMMU: no ACPI DMAR or IVRS table",
                )
                .evidence("sys/firmware/acpi/tables: no DMAR, no IVRS")
                .fix(fix),
            );
        }
        IommuVerdict::Off(cause) => {
            let tables = &iommu.firmware_tables;
            let mut why = format!(
                "the firmware has an IOMMU ({}) but the kernel did not enable it",
                tables.join(", ")
            );
            // Setup fixes every cause but one: an AMD IOMMU that stays off with no parameter
            // against it needs no parameter, so only dmesg can say why.
            let mut effect = Effect::NeedsSetup;
            // Ok: what setup does; Err: a fix that is not setup's.
            let fix: Result<&str, &str> = match cause {
                IommuOffCause::IommuParamOff => {
                    why.push_str(": proc/cmdline has iommu=off");
                    Ok("(removes iommu=off)")
                }
                IommuOffCause::IntelParamOff => {
                    why.push_str(": proc/cmdline has intel_iommu=off");
                    Ok("(adds intel_iommu=on)")
                }
                IommuOffCause::IntelNotEnabled => Ok("(adds intel_iommu=on)"),
                IommuOffCause::AmdParamOff => {
                    why.push_str(": proc/cmdline has amd_iommu=off");
                    Ok("(removes amd_iommu=off; the AMD IOMMU needs no parameter)")
                }
                _ => {
                    effect = Effect::Unknown;
                    Err("check dmesg for AMD-Vi errors; the AMD IOMMU needs no kernel parameter, so setup cannot turn it on")
                }
            };
            let finding = Finding::new(RuleId::IommuKernelOff, Severity::Error, effect, VM, why)
                    .evidence(format!(
                        "sys/firmware/acpi/tables/{}; sys/class/iommu empty; proc/cmdline: {}",
                        tables.first().map_or("?", String::as_str),
                        sys.cmdline.as_deref().unwrap_or("?")
                    ));
            f.push(match fix {
                Ok(rest) => finding.setup_fix(gpu.address, rest),
                Err(other) => finding.fix(other),
            });
        }
        IommuVerdict::On => {
        let vendor = diagnosis.vendor;
        if !sys
            .cmdline_params
            .iter()
            .any(|p| p.key == "iommu" && p.value.as_deref() == Some("pt"))
        {
            f.push(
                Finding::new(RuleId::IommuPtRecommended, Severity::Info, Effect::None, VM, "iommu=pt is not set: the host's own devices use translated DMA, which costs some I/O speed; pass-through mode is the usual choice on a VM host")
                    .evidence(format!("proc/cmdline: {}", sys.cmdline.as_deref().unwrap_or("?")))
                    .setup_fix(gpu.address, "adds iommu=pt"),
            );
        }
        if vendor == Some(IommuVendor::Intel) && param("intel_iommu").is_none() {
            // One decision (assess::IommuDiagnosis::needs_intel_iommu_on) for what setup adds
            // and what these findings say it adds.
            if diagnosis.default_skips(gpu) {
                f.push(
                    Finding::new(RuleId::IommuIntgpuOff, Severity::Info, Effect::None, VM, "this kernel turns the Intel IOMMU on by default except for Intel integrated GPUs (CONFIG_INTEL_IOMMU_DEFAULT_ON_INTGPU_OFF, a Debian kernel patch): this GPU's DMA is not translated (identity-mapped) until intel_iommu=on, which setup adds")
                        .evidence(format!("boot/config: CONFIG_INTEL_IOMMU_DEFAULT_ON_INTGPU_OFF=y; {} is an Intel display device on bus 0", gpu.address))
                        .setup_fix(gpu.address, "adds intel_iommu=on"),
                );
            } else if diagnosis.intel_default_on() {
                let option = match diagnosis.intel_default {
                    IntelDefault::OnExceptIntegratedGpu => "CONFIG_INTEL_IOMMU_DEFAULT_ON_INTGPU_OFF=y (only Intel integrated GPUs are left out; this GPU is not one)",
                    _ => "CONFIG_INTEL_IOMMU_DEFAULT_ON=y",
                };
                f.push(
                    Finding::new(RuleId::IommuIntelDefaultOn, Severity::Info, Effect::None, VM, "the Intel IOMMU is on by the kernel's default, without intel_iommu=on (setup adds no intel_iommu= parameter)")
                        .evidence(format!("boot/config: {option}")),
                );
            }
        }
        // Interrupt remapping.
        match iommu.irq_remapping {
            IrqRemapping::Enabled => {}
            IrqRemapping::NotSeen if iommu.allow_unsafe_interrupts == Some(true) => f.push(
                Finding::new(RuleId::IrqUnsafeAllowed, Severity::Warning, Effect::None, VM, "interrupt remapping is off and vfio_iommu_type1 allows unsafe interrupts: assignment works, but a guest can inject interrupts (MSI) into the host")
                    .evidence(format!("{}; allow_unsafe_interrupts=Y", iommu.irq_remapping_evidence.clone().unwrap_or_default()))
                    .fix("enable interrupt remapping in the firmware (x2APIC / IR), then drop allow_unsafe_interrupts"),
            ),
            IrqRemapping::NotSeen => f.push(
                Finding::new(RuleId::IrqRemappingMissing, Severity::Error, Effect::Blocks, VM, "interrupt remapping is not in effect: vfio refuses to assign devices (\"No interrupt remapping support\")")
                    .evidence(iommu.irq_remapping_evidence.clone().unwrap_or_default())
                    .fix("enable interrupt remapping / x2APIC in the firmware; or, knowing that a guest could then inject interrupts into the host, options vfio_iommu_type1 allow_unsafe_interrupts=1"),
            ),
            IrqRemapping::Unknown => f.push(
                Finding::new(RuleId::IrqUnknown, Severity::Warning, Effect::None, VM, "could not confirm interrupt remapping; vfio refuses assignment at VM start if it is missing")
                    .evidence("proc/interrupts unreadable or without MSI chips"),
            ),
        }
        }
    }
    for bad in sys
        .cmdline_params
        .iter()
        .filter(|p| p.key == "amd_iommu" && p.value.as_deref() == Some("on"))
    {
        let _ = bad;
        f.push(
            Finding::new(RuleId::IommuInvalidParam, Severity::Warning, Effect::None, VM, "amd_iommu=on is not a valid value (kernel-parameters.txt): the kernel ignores it; the AMD IOMMU is on whenever the firmware enables it")
                .evidence("proc/cmdline: amd_iommu=on")
                .fix("remove amd_iommu=on from the kernel parameters"),
        );
    }

    // vfio modules.
    let builtin = sys.module_builtin("vfio_pci") == Some(true);
    let loaded = sys.module_loaded("vfio_pci") == Some(true);
    if builtin {
        f.push(
            Finding::new(RuleId::VfioBuiltin, Severity::Info, Effect::None, VM, "vfio-pci is built into the kernel: options in modprobe.d are ignored, so device ids must go on the kernel command line (vfio-pci.ids=), which setup does")
                .evidence("lib/modules/<release>/modules.builtin lists vfio_pci"),
        );
    } else if !loaded && sys.loaded_modules.is_some() {
        f.push(
            Finding::new(
                RuleId::VfioNotLoaded,
                Severity::Warning,
                Effect::NeedsSetup,
                VM,
                "the vfio-pci module is not loaded",
            )
            .evidence("proc/modules: no vfio_pci")
            .setup_fix(
                gpu.address,
                "(loads vfio, vfio_iommu_type1 and vfio_pci early, from the initramfs)",
            ),
        );
    }
    let new_kernel = kernel_version(s).is_some_and(|v| v >= (6, 2));
    for list in &s.vfio_config.module_lists {
        if new_kernel && list.modules.iter().any(|m| m == "vfio_virqfd") {
            f.push(
                Finding::new(RuleId::VfioVirqfdStale, Severity::Warning, Effect::NeedsSetup, VM, "vfio_virqfd is listed, but it was folded into vfio in kernel 6.2: dracut fails to build or boot with it (\"Failed to find module 'vfio_virqfd'\")")
                    .evidence(format!("{}: vfio_virqfd; kernel {}", list.file, sys.kernel_release.as_deref().unwrap_or("?")))
                    .fix(format!("remove vfio_virqfd from {} ({setup} rewrites the list)", list.file)),
            );
        }
        if list.ignored_by_tool && list.modules.iter().any(|m| m.starts_with("vfio")) {
            f.push(
                Finding::new(RuleId::VfioDracutIgnored, Severity::Warning, Effect::NeedsSetup, VM, "this dracut file names vfio modules but dracut reads only *.conf files in dracut.conf.d: it is ignored")
                    .evidence(list.file.clone())
                    .fix(format!("rename {} to end in .conf ({setup} writes a .conf file)", list.file)),
            );
        }
    }
    f
}
