//! What a host offers for sharing one GPU among several guests: live mediated devices,
//! NVIDIA's per-GPU identity, CDI specs for containers, and what decides whether an
//! out-of-tree SR-IOV module can load (Secure Boot, DKMS builds per kernel, the module's
//! parameters). Pure data; `host::sharing` fills it (what it cannot read goes to the
//! snapshot's `detail_issues`). Every field defaults, so a snapshot
//! written before these existed still loads.

use serde::{Deserialize, Serialize};

use super::PciAddress;

/// One live mediated device (`sys/bus/mdev/devices/<uuid>`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LiveMdev {
    pub uuid: String,
    /// The parent device, from the link's real path, when it is a PCI function.
    pub parent: Option<PciAddress>,
    /// The parent's device name (the component before the UUID in the real path): a PCI
    /// address, or a virtual parent's name (`mtty`). `None` in snapshots written before it.
    #[serde(default)]
    pub parent_name: Option<String>,
    /// The type (`mdev_type` link's last component).
    pub mdev_type: Option<String>,
}

/// A parent of mediated devices that is not a PCI function (`sys/class/mdev_bus/<name>`
/// links to `sys/devices/virtual/…`): the kernel's sample drivers (mtty, mbochs, mdpy in
/// samples/vfio-mdev/), and channel I/O on s390. A PCI parent's types are on its
/// [`crate::model::PciDevice`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MdevParent {
    /// The `sys/class/mdev_bus` entry (`mtty`).
    pub name: String,
    /// Where the device lives, root-relative (`sys/devices/virtual/mtty/mtty`).
    pub path: Option<String>,
    pub types: Vec<super::MdevType>,
}

/// `proc/driver/nvidia/gpus/<BDF>/information`: the numbers that stay with the card, unlike
/// its position among NVIDIA GPUs (NVML's enumeration order is not kept across reboots).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NvidiaGpuInfo {
    pub address: PciAddress,
    /// `Device Minor:`: N in `/dev/nvidiaN`.
    pub device_minor: Option<u32>,
    /// `GPU UUID:` (`GPU-…`), what CDI and `--gpus device=` accept.
    pub uuid: Option<String>,
    /// `Model:`.
    pub model: Option<String>,
}

/// One device of a CDI spec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CdiDevice {
    /// The device's `name` (`0`, `GPU-…`, `all`, `card0`).
    pub name: String,
    /// The device nodes its edits add (`/dev/nvidia0`, `/dev/dri/renderD128`).
    pub nodes: Vec<String>,
}

/// One CDI spec file (`etc/cdi/*`, `var/run/cdi/*`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CdiSpec {
    /// Root-relative path.
    pub file: String,
    /// `kind` (`nvidia.com/gpu`); a device is named `<kind>=<name>`.
    pub kind: Option<String>,
    pub devices: Vec<CdiDevice>,
}

/// One module DKMS has built (`var/lib/dkms/<module>/<version>/<kernel>/<arch>/`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DkmsBuild {
    pub module: String,
    pub version: String,
    pub kernel: String,
}

/// A GPU driver that can make VFs on Intel graphics, as the loaded module shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SriovDriverModule {
    /// `i915` or `xe`.
    pub module: String,
    /// `sys/module/<m>/` exists.
    pub loaded: bool,
    /// `parameters/max_vfs`: present only on a module that can make VFs (the stock i915
    /// has no such parameter; i915-sriov-dkms and xe do).
    pub max_vfs: Option<String>,
    /// `parameters/enable_guc` (i915): SR-IOV needs `3`.
    pub enable_guc: Option<String>,
    /// The file depmod resolves the module to for the running kernel (modules.dep), what
    /// `modinfo -n` prints: `updates/dkms/i915.ko` is the DKMS build, `kernel/drivers/…` the
    /// stock one.
    pub file: Option<String>,
}

/// Secure Boot, from the EFI variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SecureBoot {
    On,
    Off,
    /// Not an EFI boot, or the variable is absent.
    Unavailable,
}

/// Everything sharing needs beyond the devices themselves.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct SharingInfo {
    pub mdevs: Vec<LiveMdev>,
    /// Parents of mdevs that are not PCI functions (`sys/class/mdev_bus`).
    pub mdev_parents: Vec<MdevParent>,
    pub nvidia_gpus: Vec<NvidiaGpuInfo>,
    pub cdi_specs: Vec<CdiSpec>,
    pub dkms: Vec<DkmsBuild>,
    /// Kernels with a `lib/modules/<release>/` directory, oldest first.
    pub installed_kernels: Vec<String>,
    /// The kernel the next boot takes: a pin (`etc/kernel/proxmox-boot-pin`) or else the
    /// newest installed, which is what GRUB's and systemd-boot's defaults pick.
    pub default_kernel: Option<String>,
    /// Where `default_kernel` came from.
    pub default_kernel_evidence: Option<String>,
    pub secure_boot: Option<SecureBoot>,
    /// `i915` and `xe`, when this is an Intel GPU host.
    pub sriov_modules: Vec<SriovDriverModule>,
}

impl SharingInfo {
    pub fn nvidia_gpu(&self, a: &PciAddress) -> Option<&NvidiaGpuInfo> {
        self.nvidia_gpus.iter().find(|g| g.address == *a)
    }
    pub fn sriov_module(&self, name: &str) -> Option<&SriovDriverModule> {
        self.sriov_modules.iter().find(|m| m.module == name)
    }
    /// The DKMS builds of `module` for `kernel`.
    pub fn dkms_for<'a>(
        &'a self,
        module: &'a str,
        kernel: &'a str,
    ) -> impl Iterator<Item = &'a DkmsBuild> {
        self.dkms
            .iter()
            .filter(move |b| b.module == module && b.kernel == kernel)
    }
    /// The live mdevs whose parent's device name is `name` (a PCI address or `mtty`).
    pub fn mdevs_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a LiveMdev> {
        self.mdevs.iter().filter(move |m| {
            m.parent_name.as_deref() == Some(name)
                || m.parent.as_ref().is_some_and(|p| p.to_string() == name)
        })
    }
    /// The live mdevs whose parent is `a`.
    pub fn mdevs_of<'a>(&'a self, a: &'a PciAddress) -> impl Iterator<Item = &'a LiveMdev> {
        self.mdevs
            .iter()
            .filter(move |m| m.parent.as_ref() == Some(a))
    }
}
