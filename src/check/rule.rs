//! The rules `check` knows, by name. A finding carries one of these, and plans decide on them
//! (setup adds `initcall_blacklist=sysfb_init` when [`RuleId::ConsoleFramebuffer`] fired),
//! so a renamed or mistyped rule is a compile error, not a silently dead branch.
//!
//! The string of each rule (`iommu.kernel-off`) is its stable public name: the JSON report
//! and the text report print it, the README cites it, and it never changes.

use serde::{Serialize, Serializer};

/// Declares the enum, its strings and the list of every variant from one table, so none of
/// the three can leave a rule out.
macro_rules! rules {
    ($( $(#[$doc:meta])* $variant:ident => $id:literal, )+) => {
        /// One check rule. Serialised as its stable string id.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum RuleId {
            $( $(#[$doc])* $variant, )+
        }

        impl RuleId {
            /// Every rule, in the order of the table.
            pub const ALL: &'static [RuleId] = &[$(RuleId::$variant,)+];

            /// The stable id printed in reports (`group.shared`).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( RuleId::$variant => $id, )+
                }
            }
        }
    };
}

rules! {
    // CPU.
    /// proc/cpuinfo could not be read: whether the CPU can virtualise is unknown.
    CpuUnknown => "cpu.unknown",
    /// The CPU shows no vmx/svm flag: virtualisation is off in the firmware, unsupported,
    /// or (in a VM) nested virtualisation is not exposed.
    CpuVirtMissing => "cpu.virt-missing",

    // IOMMU.
    /// Only vfio no-IOMMU groups exist: devices can be handed out, but nothing isolates them.
    IommuNoiommu => "iommu.noiommu",
    /// The firmware announces no IOMMU (no ACPI DMAR or IVRS table).
    IommuFirmwareOff => "iommu.firmware-off",
    /// The firmware has an IOMMU but the kernel did not enable it (a parameter, or a kernel
    /// default); see `assess::diagnose_iommu`.
    IommuKernelOff => "iommu.kernel-off",
    /// The IOMMU is on without `iommu=pt`: the host's own devices pay for translated DMA.
    IommuPtRecommended => "iommu.pt-recommended",
    /// The Intel IOMMU is on by the kernel's build default, without `intel_iommu=on`.
    IommuIntelDefaultOn => "iommu.intel-default-on",
    /// The kernel's Intel default leaves Intel integrated GPUs unmapped (Debian's
    /// `CONFIG_INTEL_IOMMU_DEFAULT_ON_INTGPU_OFF`) and this GPU is one: setup adds
    /// `intel_iommu=on`.
    IommuIntgpuOff => "iommu.intgpu-off",
    /// `amd_iommu=on` is on the command line: not a valid value, the kernel ignores it.
    IommuInvalidParam => "iommu.invalid-param",

    // Interrupt remapping.
    /// No interrupt remapping, but vfio_iommu_type1 allows unsafe interrupts: assignment
    /// works, and a guest can inject MSIs into the host.
    IrqUnsafeAllowed => "irq.unsafe-allowed",
    /// No interrupt remapping: vfio refuses to assign devices.
    IrqRemappingMissing => "irq.remapping-missing",
    /// Whether interrupt remapping is in effect could not be seen.
    IrqUnknown => "irq.unknown",

    // vfio modules.
    /// vfio-pci is built into the kernel: modprobe.d options are ignored for it.
    VfioBuiltin => "vfio.builtin",
    /// The vfio-pci module is not loaded.
    VfioNotLoaded => "vfio.not-loaded",
    /// `vfio_virqfd` is listed for the initramfs, but kernel 6.2 folded it into vfio.
    VfioVirqfdStale => "vfio.virqfd-stale",
    /// A dracut.conf.d file names vfio modules but does not end in `.conf`: dracut skips it.
    VfioDracutIgnored => "vfio.dracut-ignored",
    /// Every function of the card is on vfio-pci and its groups are viable.
    VfioBound => "vfio.bound",
    /// Some function of the card is not on vfio-pci yet.
    VfioNotBound => "vfio.not-bound",

    // The GPU itself.
    /// The GPU's class or vendor could not be read.
    GpuUnreadable => "gpu.unreadable",

    // Groups and the card's functions.
    /// The IOMMU is on but the GPU is in no group.
    GroupNone => "group.none",
    /// The card has more functions (audio, USB-C): they go to the VM with the GPU.
    SlotFunctions => "slot.functions",
    /// The card's functions are in more than one group; each must be clean.
    SlotSplitGroups => "slot.split-groups",
    /// The card's groups hold only its own functions and bridges.
    GroupIsolated => "group.isolated",
    /// The card's groups hold other endpoints, which would have to go to the VM too.
    GroupShared => "group.shared",

    // The host's own devices (blocks unless `--force`).
    /// The card's groups hold the controller of the host's root filesystem.
    SafetyBootDisk => "safety.boot-disk",
    /// The card's groups hold the network device of the host's default route.
    SafetyNetwork => "safety.network",
    /// The GPU is the host's boot console and no other GPU serves the host.
    SafetyOnlyDisplay => "safety.only-display",

    // Reset and power.
    /// The kernel offers no reset method for the GPU.
    ResetNone => "reset.none",
    /// reset_method is empty: reset was disabled for the GPU.
    ResetDisabled => "reset.disabled",
    /// Only a bus reset, which resets every function of the card at once.
    ResetBusOnly => "reset.bus-only",
    /// The reset methods the kernel offers (information).
    ResetMethods => "reset.methods",
    /// An AMD generation with the reset bug that vendor-reset covers.
    ResetAmdBug => "reset.amd-bug",
    /// An AMD generation vendor-reset does not cover, with reports of failed resets.
    ResetAmdUnsupported => "reset.amd-unsupported",
    /// The GPU is runtime-suspended now.
    PmSuspended => "pm.suspended",
    /// An AMD reset-bug family with D3cold allowed: it may not come back once idled.
    PmD3coldRisk => "pm.d3cold-risk",

    // Drivers and ids.
    /// The GPU's host driver also drives devices outside the card: never blacklist it.
    DriverShared => "driver.shared",
    /// A vfio-pci `ids=` line for this card would also capture other devices.
    IdsCapture => "ids.capture",
    /// The `ids=` already configured claims devices outside this card.
    IdsConfiguredCapture => "ids.configured-capture",
    /// The GPU is on vfio-pci, so the host cannot use it.
    HostOnVfio => "host.on-vfio",
    /// The card is on its host driver now, but vfio configuration on disk takes it at the
    /// next boot (docs/states.md): host and container use are not ready.
    VfioPending => "vfio.pending",
    /// No driver is bound to the GPU.
    HostNoDriver => "host.no-driver",
    /// The GPU is on its host driver (information).
    HostDriver => "host.driver",

    // The host console.
    /// A firmware framebuffer holds the boot GPU's BAR: vfio-pci cannot reserve it.
    ConsoleFramebuffer => "console.framebuffer",
    /// The GPU is the firmware's boot display (information).
    ConsoleBootVga => "console.boot-vga",
    /// A monitor is connected to the GPU.
    ConsoleMonitor => "console.monitor",
    /// Processes hold the GPU's device nodes: it cannot be unbound while they run.
    ConsoleInUse => "console.in-use",

    // Containers.
    /// The NVIDIA driver version the container's user space must match.
    LxcNvidiaVersion => "lxc.nvidia-version",
    /// The NVIDIA driver version could not be read.
    LxcNvidiaVersionUnknown => "lxc.nvidia-version-unknown",
    /// The NVIDIA device nodes and their numbers.
    LxcNvidiaNodes => "lxc.nvidia-nodes",
    /// nvidia-uvm is not loaded: CUDA in a container needs it.
    LxcNvidiaUvmMissing => "lxc.nvidia-uvm-missing",
    /// The DRM render and card nodes a container is given.
    LxcRenderNode => "lxc.render-node",
    /// The GPU's DRM card has no render node.
    LxcNoRenderNode => "lxc.no-render-node",
    /// The GPU's driver registered no DRM card.
    LxcNoDrm => "lxc.no-drm",
    /// An Intel GPU with SR-IOV: it can serve VMs and containers at once.
    LxcSriov => "lxc.sriov",

    // Sharing one GPU among guests.
    /// The GPU is a virtual function: it goes to a VM on its own.
    SharedIsVf => "shared.is-vf",
    /// The physical function has VFs: passing it to a VM takes every VF with it.
    SharedPfSplit => "shared.pf-split",
    /// The VFs that exist, with driver, group and users (information).
    SharedVfs => "shared.vfs",
    /// VFs are on the PF's host driver (autoprobe on).
    SharedVfOnHostDriver => "shared.vf-host-driver",
    /// SR-IOV is offered but no VF is enabled.
    SharedVfsOff => "shared.vfs-off",
    /// An Intel iGPU offers VFs but its loaded driver cannot make them (stock i915).
    SharedDriverCannot => "shared.driver-cannot",
    /// The driver can make VFs but the kernel command line lacks its parameters.
    SharedParamsMissing => "shared.params-missing",
    /// The out-of-tree module is not built for the kernel the next boot takes.
    SharedDkmsNextKernel => "shared.dkms-next-kernel",
    /// Secure Boot is on and the sharing driver is an out-of-tree module.
    SharedSecureBoot => "shared.secure-boot",
    /// Mediated-device types the GPU offers, and whether one is free.
    SharedMdevTypes => "shared.mdev-types",
    /// NVIDIA vGPU on VFs (vendor VFIO): free VFs and creatable types.
    SharedNvidiaVgpu => "shared.nvidia-vgpu",
    /// The GPU offers no way to be split among VMs.
    SharedNone => "shared.none",
}

impl RuleId {
    /// The safety rules: they block a use unless the user gives `--force`, which turns them
    /// into warnings that the plan then states.
    pub const fn forceable(self) -> bool {
        matches!(
            self,
            RuleId::SafetyBootDisk | RuleId::SafetyNetwork | RuleId::SafetyOnlyDisplay
        )
    }
}

impl std::fmt::Display for RuleId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for RuleId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::RuleId;

    #[test]
    fn every_id_is_unique_and_well_formed() {
        let mut seen = std::collections::BTreeSet::new();
        for r in RuleId::ALL {
            let id = r.as_str();
            assert!(seen.insert(id), "{id} is used twice");
            let (topic, name) = id.split_once('.').expect("topic.name");
            let ok = |p: &str| {
                !p.is_empty()
                    && p.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            };
            assert!(ok(topic) && ok(name), "{id} is not topic.kebab-name");
        }
    }

    #[test]
    fn serialises_as_its_id() {
        assert_eq!(
            serde_json::to_string(&RuleId::IommuKernelOff).unwrap(),
            "\"iommu.kernel-off\""
        );
        assert_eq!(RuleId::GroupShared.to_string(), "group.shared");
    }
}

crate::string_schema!(
    RuleId,
    "RuleId",
    "A finding's stable id (iommu.kernel-off, group.shared ...).",
    "^[a-z0-9-]+\\.[a-z0-9.-]+$"
);
