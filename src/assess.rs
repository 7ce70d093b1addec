//! Small pure judgements the reading commands show in their headers (is the IOMMU on, and if
//! not, why and what next). Pure: a function of the snapshot only.
//!
//! [`diagnose_iommu`] is the one place that decides why the IOMMU is off and whether the
//! kernel needs `intel_iommu=on`: `list` words it for its header, `check` for its findings,
//! and `setup` asks it which parameter to add.

use serde::Serialize;

use crate::model::{IommuVendor, IrqRemapping, PciDevice, Snapshot};
use crate::output::words::count;

/// What the kernel's IOMMU is doing, and why when it is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IommuDiagnosis {
    pub verdict: IommuVerdict,
    /// The IOMMU's maker: from the active units, else from the firmware table.
    pub vendor: Option<IommuVendor>,
    /// What the running kernel does with the Intel IOMMU when no `intel_iommu=` is given.
    pub intel_default: IntelDefault,
}

/// The running kernel's Intel IOMMU default, from `boot/config-<release>`
/// (docs/domain-facts.md §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntelDefault {
    /// Off (upstream `CONFIG_INTEL_IOMMU_DEFAULT_ON` unset, or no config read): only
    /// `intel_iommu=on` enables DMA remapping.
    Off,
    /// On for every device (`CONFIG_INTEL_IOMMU_DEFAULT_ON=y`).
    On,
    /// On, except for Intel display devices on the root bus, the integrated GPU, whose DMA
    /// is left untranslated (identity-mapped): Debian's
    /// `CONFIG_INTEL_IOMMU_DEFAULT_ON_INTGPU_OFF=y`, the same as `intel_iommu=on,intgpu_off`.
    /// `intel_iommu=on` maps the integrated GPU again.
    OnExceptIntegratedGpu,
}

/// Whether `d` is what Debian's `intgpu_off` leaves out of remapping: `IS_INTGPU_DEVICE` is
/// a display-class (`0x03`) device of vendor `8086` on a root bus (docs/domain-facts.md §1).
/// Bus 0 is always a root bus, and Intel integrated GPUs sit at `00:02.0`.
pub fn is_intel_integrated_gpu(d: &PciDevice) -> bool {
    d.vendor.map(|v| v.0) == Some(0x8086) && d.is_gpu() && d.address.bus == 0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IommuVerdict {
    /// Units registered and groups formed.
    On,
    /// Only vfio no-IOMMU groups: devices can be handed out, but nothing is isolated.
    NoIommuMode,
    Off(IommuOffCause),
}

/// Why the IOMMU is off, the first cause that holds in this order: no firmware table at all
/// (no parameter can help then), a parameter turning it off, then the kernel not enabling it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IommuOffCause {
    /// No ACPI DMAR or IVRS table on a physical host: the IOMMU is off in the firmware setup.
    NoFirmwareTable,
    /// No table and the CPU has the hypervisor flag: a VM without a virtual IOMMU.
    NoVirtualIommu,
    /// A table is present and `iommu=off` is on the command line.
    IommuParamOff,
    /// DMAR is present and `intel_iommu=off` is on the command line.
    IntelParamOff,
    /// DMAR is present, no parameter turns it off, and the kernel did not enable it: without
    /// the kernel default, `intel_iommu=on` is needed.
    IntelNotEnabled,
    /// IVRS is present and `amd_iommu=off` is on the command line.
    AmdParamOff,
    /// IVRS is present with no parameter against it. The AMD IOMMU is on by default and no
    /// parameter turns it on (`amd_iommu=on` is not a valid value): something else failed.
    AmdNotEnabled,
}

/// Decides, from the snapshot alone, what the IOMMU is doing and why.
pub fn diagnose_iommu(s: &Snapshot) -> IommuDiagnosis {
    let sys = &s.system;
    let iommu = &s.iommu;
    let param = |k: &str| sys.cmdline_value(k).and_then(|p| p.value.as_deref());
    let table = |t: &str| iommu.firmware_tables.iter().any(|x| x == t);
    let config_y = |k: &str| sys.kernel_config.iter().any(|(n, v)| n == k && v == "y");
    let intel_default = if config_y("CONFIG_INTEL_IOMMU_DEFAULT_ON") {
        IntelDefault::On
    } else if config_y("CONFIG_INTEL_IOMMU_DEFAULT_ON_INTGPU_OFF") {
        IntelDefault::OnExceptIntegratedGpu
    } else {
        IntelDefault::Off
    };
    let verdict = if iommu.active() {
        IommuVerdict::On
    } else if s.groups.iter().any(|g| g.is_noiommu()) {
        IommuVerdict::NoIommuMode
    } else {
        IommuVerdict::Off(if iommu.firmware_tables.is_empty() {
            if sys.cpu.hypervisor {
                IommuOffCause::NoVirtualIommu
            } else {
                IommuOffCause::NoFirmwareTable
            }
        } else if param("iommu") == Some("off") {
            IommuOffCause::IommuParamOff
        } else if table("DMAR") {
            if param("intel_iommu").is_some_and(|v| v.split(',').any(|w| w == "off")) {
                IommuOffCause::IntelParamOff
            } else {
                IommuOffCause::IntelNotEnabled
            }
        } else if param("amd_iommu") == Some("off") {
            IommuOffCause::AmdParamOff
        } else {
            IommuOffCause::AmdNotEnabled
        })
    };
    IommuDiagnosis {
        verdict,
        vendor: iommu.vendor(),
        intel_default,
    }
}

impl IommuDiagnosis {
    /// The kernel turns the Intel IOMMU on by itself (for every device, or for all but the
    /// integrated GPU).
    pub fn intel_default_on(&self) -> bool {
        self.intel_default != IntelDefault::Off
    }

    /// Whether the kernel's Intel default leaves `gpu` itself unmapped: an Intel integrated
    /// GPU on a kernel built with `CONFIG_INTEL_IOMMU_DEFAULT_ON_INTGPU_OFF`.
    pub fn default_skips(&self, gpu: &PciDevice) -> bool {
        self.intel_default == IntelDefault::OnExceptIntegratedGpu && is_intel_integrated_gpu(gpu)
    }

    /// Whether passing `gpu` through needs `intel_iommu=on` on the kernel command line: an
    /// Intel IOMMU, unless the kernel already turns it on by default, it is on, and the
    /// default covers this GPU. (Off despite the default, the parameter rules the default
    /// out; an integrated GPU on a Debian `intgpu_off` kernel is mapped only with it.)
    pub fn needs_intel_iommu_on(&self, gpu: &PciDevice) -> bool {
        self.vendor == Some(IommuVendor::Intel)
            && !(self.intel_default_on()
                && self.verdict == IommuVerdict::On
                && !self.default_skips(gpu))
    }
}

/// The firmware setting that turns the IOMMU on, for this CPU's maker, and where boards
/// usually put it.
pub fn firmware_iommu_setting(s: &Snapshot) -> (&'static str, Option<&'static str>) {
    match s.system.cpu.vendor_id.as_deref() {
        Some("GenuineIntel") => ("VT-d", Some("often under Chipset or System Agent")),
        Some("AuthenticAMD") => ("IOMMU / AMD-Vi", Some("often under AMD CBS or NBIO")),
        _ => ("VT-d (Intel) or IOMMU/AMD-Vi (AMD)", None),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum IommuStatus {
    /// Units registered and groups formed.
    On,
    /// Only vfio no-IOMMU groups: devices can be handed out, but nothing is isolated.
    NoIommuMode,
    Off,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct IommuSummary {
    pub status: IommuStatus,
    /// One line: what is the case.
    pub summary: String,
    /// Why it is off, in plain words (with the evidence).
    pub reason: Option<String>,
    /// What the user can do next.
    pub next_step: Option<String>,
}

pub fn summarize_iommu(s: &Snapshot) -> IommuSummary {
    let st = &s.iommu;
    let vendor = match st.vendor() {
        Some(IommuVendor::Intel) => "Intel VT-d",
        Some(IommuVendor::Amd) => "AMD-Vi",
        Some(IommuVendor::Other) => "IOMMU",
        None => "IOMMU",
    };
    let d = diagnose_iommu(s);
    let cause = match d.verdict {
        IommuVerdict::On => {
            let units = st.units.len();
            let irq = match st.irq_remapping {
                IrqRemapping::Enabled => "interrupt remapping on",
                IrqRemapping::NotSeen => "interrupt remapping not seen",
                IrqRemapping::Unknown => "interrupt remapping unknown",
            };
            return IommuSummary {
                status: IommuStatus::On,
                summary: format!(
                    "on: {vendor}, {}, {}, {irq}",
                    count(units, "unit", "units"),
                    count(st.group_count, "group", "groups")
                ),
                reason: None,
                next_step: None,
            };
        }
        IommuVerdict::NoIommuMode => {
            return IommuSummary {
                status: IommuStatus::NoIommuMode,
                summary: "off: only vfio no-IOMMU groups (no isolation at all)".into(),
                reason: Some(
                    "vfio.enable_unsafe_noiommu_mode is in use; devices are not isolated from the host"
                        .into(),
                ),
                next_step: Some(
                    "enable the IOMMU in the firmware setup and boot without no-IOMMU mode".into(),
                ),
            };
        }
        IommuVerdict::Off(cause) => cause,
    };
    let (reason, next) = off_reason(s, &d, cause);
    IommuSummary {
        status: IommuStatus::Off,
        summary: "off: no IOMMU groups, so no device can be given to a VM".into(),
        reason: Some(reason),
        next_step: Some(next),
    }
}

/// `list`'s words for a cause: what is the case, and what the user does next.
fn off_reason(s: &Snapshot, d: &IommuDiagnosis, cause: IommuOffCause) -> (String, String) {
    use IommuOffCause::*;
    let (why, next) = match cause {
        IommuParamOff => (
            "the kernel command line says iommu=off (proc/cmdline)",
            "remove iommu=off from the boot loader's kernel parameters and reboot",
        ),
        IntelParamOff => (
            "the firmware has an Intel IOMMU (ACPI DMAR table) but proc/cmdline has intel_iommu=off",
            "replace intel_iommu=off with intel_iommu=on in the kernel parameters (passthru setup does this)",
        ),
        IntelNotEnabled if d.intel_default_on() => (
            "the firmware has an Intel IOMMU (ACPI DMAR table) and the kernel enables it by default, yet no unit is active",
            "check dmesg for DMAR errors; add intel_iommu=on to rule out a kernel default",
        ),
        IntelNotEnabled => (
            "the firmware has an Intel IOMMU (ACPI DMAR table) but the kernel did not enable it",
            "add intel_iommu=on to the kernel parameters and reboot (passthru setup does this)",
        ),
        AmdParamOff => (
            "the firmware has an AMD IOMMU (ACPI IVRS table) but proc/cmdline has amd_iommu=off",
            "remove amd_iommu=off from the kernel parameters (the AMD IOMMU is on by default; amd_iommu=on is not a valid value)",
        ),
        AmdNotEnabled => (
            "the firmware has an AMD IOMMU (ACPI IVRS table) but the kernel did not enable it",
            "check dmesg for AMD-Vi errors; the AMD IOMMU needs no kernel parameter",
        ),
        NoVirtualIommu => (
            "this host is itself a virtual machine (hypervisor CPU flag) with no virtual IOMMU",
            "give the VM an emulated IOMMU (QEMU: -device intel-iommu,intremap=on) or run passthru on the physical host",
        ),
        NoFirmwareTable => {
            let setting = match firmware_iommu_setting(s) {
                (name, Some(place)) => format!("{name} ({place})"),
                (name, None) => name.to_string(),
            };
            return (
                "the firmware announces no IOMMU (no ACPI DMAR or IVRS table in sys/firmware/acpi/tables)".into(),
                format!("enable {setting} in the firmware setup, then run passthru list again"),
            );
        }
    };
    (why.into(), next.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::cmdline::parse_cmdline;
    use crate::model::{IommuGroup, IommuUnit, ReadDetail, SnapshotSource, SystemInfo};

    fn host(tables: &[&str], cmdline: &str) -> Snapshot {
        Snapshot {
            schema_version: 1,
            source: SnapshotSource {
                root: "/".into(),
                pci_ids: None,
                passthru_version: "test".into(),
                detail: ReadDetail::Summary,
            },
            system: SystemInfo {
                cmdline_params: parse_cmdline(cmdline),
                ..Default::default()
            },
            iommu: crate::model::IommuState {
                firmware_tables: tables.iter().map(|t| t.to_string()).collect(),
                ..Default::default()
            },
            boot: Default::default(),
            vfio_config: Default::default(),
            drm: Vec::new(),
            host_usage: Default::default(),
            sharing: Default::default(),
            devices: Vec::new(),
            groups: Vec::new(),
            issues: Vec::new(),
            detail_issues: Vec::new(),
        }
    }

    fn reason(s: &Snapshot) -> String {
        summarize_iommu(s).reason.unwrap_or_default()
    }

    #[test]
    fn active_iommu_has_no_reason() {
        let mut s = host(&["DMAR"], "");
        s.iommu.units.push(IommuUnit {
            name: "dmar0".into(),
            vendor: IommuVendor::Intel,
            ir_capable: Some(true),
        });
        s.iommu.group_count = 3;
        let sum = summarize_iommu(&s);
        assert_eq!(sum.status, IommuStatus::On);
        assert!(sum.summary.contains("Intel VT-d, 1 unit, 3 groups"));
        assert!(sum.reason.is_none() && sum.next_step.is_none());
    }

    #[test]
    fn iommu_off_on_the_command_line_is_named() {
        assert!(reason(&host(&["DMAR"], "quiet iommu=off")).contains("iommu=off"));
        assert!(reason(&host(&["DMAR"], "intel_iommu=off")).contains("intel_iommu=off"));
        assert!(reason(&host(&["IVRS"], "amd_iommu=off")).contains("amd_iommu=off"));
        // Not named when absent.
        assert!(!reason(&host(&["DMAR"], "quiet")).contains("=off"));
    }

    #[test]
    fn intel_default_decides_the_advice() {
        let s = host(&["DMAR"], "quiet");
        assert!(summarize_iommu(&s)
            .next_step
            .unwrap()
            .contains("add intel_iommu=on"));
        let mut s = host(&["DMAR"], "quiet");
        s.system.kernel_config = vec![(
            "CONFIG_INTEL_IOMMU_DEFAULT_ON_INTGPU_OFF".into(),
            "y".into(),
        )];
        assert!(reason(&s).contains("enables it by default"));
    }

    #[test]
    fn amd_advice_never_suggests_amd_iommu_on() {
        let sum = summarize_iommu(&host(&["IVRS"], "quiet"));
        let text = format!("{} {}", sum.reason.unwrap(), sum.next_step.unwrap());
        assert!(
            !text.contains("amd_iommu=on ") && text.contains("needs no kernel parameter"),
            "{text}"
        );
    }

    #[test]
    fn no_firmware_table_points_at_the_firmware_setup_or_the_hypervisor() {
        let mut s = host(&[], "");
        s.system.cpu.vendor_id = Some("AuthenticAMD".into());
        assert!(summarize_iommu(&s).next_step.unwrap().contains("AMD CBS"));
        s.system.cpu.hypervisor = true;
        assert!(reason(&s).contains("virtual machine"));
    }

    #[test]
    fn the_first_cause_that_holds_is_the_diagnosis() {
        use IommuOffCause::*;
        let cause = |tables: &[&str], cmdline: &str, hypervisor: bool| {
            let mut s = host(tables, cmdline);
            s.system.cpu.hypervisor = hypervisor;
            diagnose_iommu(&s).verdict
        };
        for (tables, cmdline, hyp, want) in [
            // No table: no parameter can help, whatever the command line says.
            (&[][..], "iommu=off", false, NoFirmwareTable),
            (&[][..], "", true, NoVirtualIommu),
            (
                &["DMAR"][..],
                "intel_iommu=off iommu=off",
                false,
                IommuParamOff,
            ),
            (&["DMAR"][..], "intel_iommu=sm_on,off", false, IntelParamOff),
            (&["DMAR"][..], "amd_iommu=off", false, IntelNotEnabled),
            (&["IVRS"][..], "amd_iommu=off", false, AmdParamOff),
            (&["IVRS"][..], "intel_iommu=off", false, AmdNotEnabled),
        ] {
            assert_eq!(
                cause(tables, cmdline, hyp),
                IommuVerdict::Off(want),
                "{tables:?} {cmdline}"
            );
        }
    }

    /// A GPU at `addr` of `vendor` and `class` (24-bit).
    fn gpu(addr: &str, vendor: u16, class: u32) -> PciDevice {
        let mut d = PciDevice::new(addr.parse().unwrap());
        d.vendor = Some(crate::model::PciId(vendor));
        d.class = Some(crate::model::ClassCode(class));
        d
    }

    #[test]
    fn intel_iommu_on_is_needed_unless_the_kernel_default_has_it_on() {
        let unit = IommuUnit {
            name: "dmar0".into(),
            vendor: IommuVendor::Intel,
            ir_capable: Some(true),
        };
        let dgpu = gpu("0000:03:00.0", 0x10de, 0x030000);
        let default_on = vec![("CONFIG_INTEL_IOMMU_DEFAULT_ON".to_string(), "y".to_string())];
        let mut off = host(&["DMAR"], "");
        assert!(diagnose_iommu(&off).needs_intel_iommu_on(&dgpu));
        off.system.kernel_config = default_on.clone();
        assert!(
            diagnose_iommu(&off).needs_intel_iommu_on(&dgpu),
            "off despite the default: the parameter rules the default out"
        );
        let mut on = off.clone();
        on.iommu.units.push(unit.clone());
        assert!(!diagnose_iommu(&on).needs_intel_iommu_on(&dgpu));
        on.system.kernel_config.clear();
        assert!(diagnose_iommu(&on).needs_intel_iommu_on(&dgpu));
        let mut amd = host(&["IVRS"], "");
        amd.system.kernel_config = default_on;
        assert!(!diagnose_iommu(&amd).needs_intel_iommu_on(&dgpu));
        assert!(!diagnose_iommu(&host(&[], "")).needs_intel_iommu_on(&dgpu));
    }

    /// Debian's `intgpu_off` default maps every device but the Intel integrated GPU
    /// (`IS_INTGPU_DEVICE`: display class, vendor 8086, root bus): only that GPU needs
    /// `intel_iommu=on`, which sets `dmar_map_intgpu = 1` again.
    #[test]
    fn the_debian_intgpu_off_default_leaves_only_the_intel_igpu_unmapped() {
        let mut s = host(&["DMAR"], "");
        s.iommu.units.push(IommuUnit {
            name: "dmar0".into(),
            vendor: IommuVendor::Intel,
            ir_capable: Some(true),
        });
        s.system.kernel_config = vec![(
            "CONFIG_INTEL_IOMMU_DEFAULT_ON_INTGPU_OFF".into(),
            "y".into(),
        )];
        let d = diagnose_iommu(&s);
        assert_eq!(d.intel_default, IntelDefault::OnExceptIntegratedGpu);
        let igpu = gpu("0000:00:02.0", 0x8086, 0x030000);
        assert!(d.needs_intel_iommu_on(&igpu), "the iGPU is left out");
        // A 0380 display controller on the root bus is IS_GFX_DEVICE too.
        assert!(d.needs_intel_iommu_on(&gpu("0000:00:02.0", 0x8086, 0x038000)));
        // An Intel discrete card (Arc, behind a root port) and any other vendor are mapped.
        assert!(!d.needs_intel_iommu_on(&gpu("0000:03:00.0", 0x8086, 0x030000)));
        assert!(!d.needs_intel_iommu_on(&gpu("0000:00:02.0", 0x1002, 0x030000)));
        // With the upstream default every device is mapped, the iGPU included.
        s.system.kernel_config = vec![("CONFIG_INTEL_IOMMU_DEFAULT_ON".into(), "y".into())];
        assert!(!diagnose_iommu(&s).needs_intel_iommu_on(&igpu));
    }

    #[test]
    fn noiommu_groups_are_not_an_iommu() {
        let mut s = host(&[], "");
        s.groups.push(IommuGroup {
            id: "0".into(),
            kind: None,
            name: Some("vfio-noiommu".into()),
            devices: Vec::new(),
            mdevs: Vec::new(),
        });
        assert_eq!(summarize_iommu(&s).status, IommuStatus::NoIommuMode);
    }
}
