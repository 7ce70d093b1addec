//! Host-wide facts: CPU, kernel, modules, IOMMU, boot chain, existing VFIO configuration, DRM.
//! Pure data; no I/O.

use serde::{Deserialize, Serialize};

use super::PciAddress;

/// CPU vendor and virtualisation support, from `proc/cpuinfo`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CpuInfo {
    /// `vendor_id`: `GenuineIntel`, `AuthenticAMD`, ...
    pub vendor_id: Option<String>,
    pub model_name: Option<String>,
    /// Logical processors counted.
    pub threads: u32,
    /// `vmx` (Intel VT-x) or `svm` (AMD-V) in the flags.
    pub virt_flag: Option<String>,
    /// The `hypervisor` flag: this host is itself a VM.
    pub hypervisor: bool,
}

/// A kernel command line parameter: `key` or `key=value`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CmdlineParam {
    pub key: String,
    pub value: Option<String>,
}

/// `etc/os-release`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OsRelease {
    pub id: Option<String>,
    pub id_like: Vec<String>,
    pub version_id: Option<String>,
    pub pretty_name: Option<String>,
}

/// Proxmox VE, when present.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ProxmoxInfo {
    /// `pve-manager` package version from the dpkg status database.
    pub version: Option<String>,
    /// What showed it is Proxmox (`etc/pve`, `usr/bin/pveversion` ...).
    pub evidence: Vec<String>,
}

/// A loaded module (`proc/modules`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LoadedModule {
    pub name: String,
    /// Modules that use this one.
    pub used_by: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SystemInfo {
    pub kernel_release: Option<String>,
    /// The booted command line (`proc/cmdline`), raw.
    pub cmdline: Option<String>,
    pub cmdline_params: Vec<CmdlineParam>,
    pub cpu: CpuInfo,
    pub os: OsRelease,
    pub proxmox: Option<ProxmoxInfo>,
    /// `None` when `proc/modules` could not be read.
    pub loaded_modules: Option<Vec<LoadedModule>>,
    /// Module names built into the kernel (`lib/modules/<release>/modules.builtin`).
    pub builtin_modules: Option<Vec<String>>,
    /// Version of the loaded NVIDIA kernel module (`proc/driver/nvidia/version`).
    pub nvidia_driver_version: Option<String>,
    /// Character device majors by name (`proc/devices`), e.g. `drm` 226, `nvidia-uvm` (dynamic).
    pub char_majors: Vec<(u32, String)>,
    /// Kernel config options relevant to passthrough (`boot/config-<release>`): name -> value.
    pub kernel_config: Vec<(String, String)>,
}

impl SystemInfo {
    pub fn module_loaded(&self, name: &str) -> Option<bool> {
        let name = name.replace('-', "_");
        self.loaded_modules
            .as_ref()
            .map(|m| m.iter().any(|l| l.name == name))
    }

    /// The character-device major registered under `name` (`drm`, `nvidia-uvm` ...).
    pub fn char_major(&self, name: &str) -> Option<u32> {
        self.char_majors
            .iter()
            .find(|(_, n)| n == name)
            .map(|(m, _)| *m)
    }

    pub fn module_builtin(&self, name: &str) -> Option<bool> {
        let name = name.replace('-', "_");
        self.builtin_modules.as_ref().map(|m| m.contains(&name))
    }

    pub fn cmdline_value(&self, key: &str) -> Option<&CmdlineParam> {
        // The kernel takes the last occurrence of a parameter.
        self.cmdline_params.iter().rev().find(|p| p.key == key)
    }
}

/// Kind of IOMMU hardware.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum IommuVendor {
    /// Intel VT-d (ACPI DMAR, units `dmarN`).
    Intel,
    /// AMD-Vi (ACPI IVRS, units `ivhdN`).
    Amd,
    /// Another kind (e.g. ARM SMMU), named by its unit.
    Other,
}

/// An active IOMMU unit (`sys/class/iommu/<name>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct IommuUnit {
    pub name: String,
    pub vendor: IommuVendor,
    /// Intel only: extended capability register supports interrupt remapping (ecap bit 3).
    pub ir_capable: Option<bool>,
}

/// Whether interrupt remapping is in effect.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum IrqRemapping {
    /// `IR-` interrupt chips in `proc/interrupts`.
    Enabled,
    /// `proc/interrupts` lists MSI/IO-APIC chips and none is `IR-`.
    NotSeen,
    /// No evidence either way.
    #[default]
    Unknown,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct IommuState {
    /// ACPI tables present: `DMAR` (Intel) and/or `IVRS` (AMD). Presence only; the tables
    /// themselves are root-only.
    pub firmware_tables: Vec<String>,
    pub units: Vec<IommuUnit>,
    /// Number of IOMMU groups (no-IOMMU groups excluded).
    pub group_count: usize,
    pub irq_remapping: IrqRemapping,
    /// Where the remapping verdict came from.
    pub irq_remapping_evidence: Option<String>,
    /// `vfio_iommu_type1` `allow_unsafe_interrupts`, when the module is loaded.
    pub allow_unsafe_interrupts: Option<bool>,
}

impl IommuState {
    /// The kernel has an IOMMU active: units registered and groups formed. A dmesg line or
    /// a firmware table alone is not proof.
    pub fn active(&self) -> bool {
        !self.units.is_empty() || self.group_count > 0
    }

    pub fn vendor(&self) -> Option<IommuVendor> {
        self.units.first().map(|u| u.vendor).or_else(|| {
            if self.firmware_tables.iter().any(|t| t == "DMAR") {
                Some(IommuVendor::Intel)
            } else if self.firmware_tables.iter().any(|t| t == "IVRS") {
                Some(IommuVendor::Amd)
            } else {
                None
            }
        })
    }
}

/// How the machine booted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Firmware {
    Efi,
    Bios,
}

/// A boot-loader setup, each of which keeps the kernel command line somewhere else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum BootloaderKind {
    /// GRUB with `etc/default/grub` (+ `grub.d` drop-ins), refreshed by update-grub / grub-mkconfig.
    Grub,
    /// Fedora/RHEL GRUB with BootLoaderSpec entries, managed by grubby.
    GrubBls,
    /// Proxmox's proxmox-boot-tool (systemd-boot or GRUB on several ESPs), `etc/kernel/cmdline`.
    ProxmoxBootTool,
    /// Plain systemd-boot with kernel-install, `etc/kernel/cmdline`.
    SystemdBoot,
    /// Pop!_OS kernelstub.
    Kernelstub,
}

/// One boot-loader setup found, with the files that show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BootloaderFound {
    pub kind: BootloaderKind,
    pub evidence: Vec<String>,
    /// Kernel parameters this setup will pass at the next boot, as configured.
    pub configured_params: Vec<CmdlineParam>,
    /// Files holding those parameters.
    pub config_files: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum InitramfsKind {
    InitramfsTools,
    Dracut,
    Mkinitcpio,
    Booster,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct InitramfsFound {
    pub kind: InitramfsKind,
    pub evidence: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BootInfo {
    pub firmware: Option<Firmware>,
    /// Every setup found; the first is the one in use (see `in_use`).
    pub bootloaders: Vec<BootloaderFound>,
    /// The setup that decides the next boot's command line, when it can be told.
    pub in_use: Option<BootloaderKind>,
    pub initramfs: Vec<InitramfsFound>,
}

/// A directive from a modprobe.d file that matters for passthrough.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ModprobeDirective {
    /// File, relative to the root.
    pub file: String,
    /// 1-based line where the directive starts.
    pub line: usize,
    /// `options`, `softdep`, `blacklist`, `install`, `alias`, ...
    pub command: String,
    pub module: String,
    /// The rest of the line, as written.
    pub args: String,
}

/// A list of modules to load early (initramfs or boot), and which vfio ones it names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ModuleList {
    pub file: String,
    /// `modules` (etc/modules), `initramfs-tools`, `modules-load.d`, `dracut`, `mkinitcpio`.
    pub kind: String,
    pub modules: Vec<String>,
    /// dracut reads only `*.conf` in `dracut.conf.d`: a file it will ignore.
    pub ignored_by_tool: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct VfioConfig {
    /// `options vfio-pci ...`, `softdep`, `blacklist` and related lines in modprobe.d.
    pub modprobe: Vec<ModprobeDirective>,
    /// vendor:device ids given to vfio-pci by `options vfio-pci ids=` or `vfio-pci.ids=`.
    pub vfio_pci_ids: Vec<String>,
    pub module_lists: Vec<ModuleList>,
    /// VFIO- and IOMMU-related parameters of the booted command line.
    pub cmdline_params: Vec<CmdlineParam>,
    /// udev rules that set `driver_override` to vfio-pci for one PCI address (passthru's own
    /// rule file and the user's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub udev_overrides: Vec<UdevOverride>,
}

/// A udev rule line binding one PCI function to vfio-pci by address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct UdevOverride {
    /// File, relative to the root.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// The `KERNEL=="…"` match: the function's address.
    pub address: String,
}

/// A DRM card (`sys/class/drm/cardN`) and what hangs off it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DrmCard {
    pub name: String,
    pub device: Option<PciAddress>,
    /// Render node of the same device (`renderD128`).
    pub render_node: Option<String>,
    pub connectors: Vec<DrmConnector>,
    /// Stable names under `dev/dri/by-path` pointing at this device's nodes.
    pub by_path: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DrmConnector {
    /// `HDMI-A-1`, `DP-2` ...
    pub name: String,
    /// `connected`, `disconnected`, `unknown`.
    pub status: Option<String>,
}

/// A process holding a GPU device node open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DeviceUser {
    pub pid: u32,
    /// `proc/<pid>/comm`.
    pub command: Option<String>,
    /// The node it holds (`/dev/dri/card0`, `/dev/nvidia0` ...).
    pub node: String,
}

/// What the host needs for itself, so that passthru never takes it away by accident.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct HostUsage {
    /// PCI controllers under the root filesystem's block device(s), with how that was found.
    pub boot_disk_controllers: Vec<PciAddress>,
    pub boot_disk_evidence: Option<String>,
    /// The PCI network devices under the default route's interface (through bridges, bonds
    /// and VLANs: `vmbr0` on Proxmox is a bridge over the real NIC).
    pub default_route_devices: Vec<PciAddress>,
    pub default_route_evidence: Option<String>,
    /// Processes holding `dev/dri/*` or `dev/nvidia*` open (`proc/*/fd`; complete only as
    /// root). `None`: `proc` could not be searched at all.
    pub device_users: Option<Vec<DeviceUser>>,
    /// `BOOTFB` ranges in `proc/iomem` (a firmware framebuffer; addresses are zero for
    /// non-root readers and then left out).
    pub boot_framebuffers: Vec<(u64, u64)>,
    /// Framebuffer devices (`sys/class/graphics/fb*/name`): `simpledrm`, `EFI VGA`, `nvidia-drmfb` ...
    pub framebuffer_names: Vec<String>,
    /// `dev/vfio/*` nodes present (group ids, `vfio`).
    pub vfio_nodes: Vec<String>,
}
