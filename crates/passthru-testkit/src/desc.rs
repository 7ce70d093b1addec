//! The declarative host description: plain serde data, no I/O.
//!
//! Every table rejects unknown keys so that a typo in a fixture fails loudly
//! instead of silently producing a different tree.

use std::collections::BTreeMap;

use serde::Deserialize;

/// A whole host: kernel, CPU, IOMMU, modules, PCI devices and free-form extras.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostDesc {
    /// Root-relative paths deleted after everything else was generated
    /// (e.g. `"sys/bus/pci/devices/0000:00:14.0/class"`).
    #[serde(default)]
    pub remove: Vec<String>,
    /// Kernel, boot and firmware facts.
    #[serde(default)]
    pub host: HostInfo,
    /// `/proc/cpuinfo`.
    #[serde(default)]
    pub cpu: CpuDesc,
    /// IOMMU firmware table, active units, interrupt remapping, group types.
    #[serde(default)]
    pub iommu: IommuDesc,
    /// Loaded modules (`/proc/modules`), in the order the kernel lists them.
    #[serde(default, rename = "module")]
    pub modules: Vec<ModuleDesc>,
    /// PCI functions.
    #[serde(default, rename = "device")]
    pub devices: Vec<DeviceDesc>,
    /// Optional generator that adds a big server topology.
    #[serde(default)]
    pub generate: Option<GenerateDesc>,
    /// Files written last; they replace anything generated at the same path.
    #[serde(default, rename = "file")]
    pub files: Vec<FileDesc>,
    /// Symlinks written last (may dangle on purpose).
    #[serde(default, rename = "link")]
    pub links: Vec<LinkDesc>,
    /// Empty directories.
    #[serde(default, rename = "dir")]
    pub dirs: Vec<DirDesc>,
}

/// A description that adds to another (`extends = "NAME"`): only what differs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Overlay {
    /// The base description's name, in the same directory.
    pub extends: String,
    #[serde(default)]
    pub remove: Vec<String>,
    #[serde(default, rename = "device")]
    pub devices: Vec<DeviceDesc>,
    #[serde(default, rename = "file")]
    pub files: Vec<FileDesc>,
    #[serde(default, rename = "link")]
    pub links: Vec<LinkDesc>,
    #[serde(default, rename = "dir")]
    pub dirs: Vec<DirDesc>,
}

/// Kernel, boot and firmware facts of the host.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostInfo {
    /// `uname -r`: `proc/sys/kernel/osrelease`, `lib/modules/<release>/`.
    #[serde(default = "default_release")]
    pub kernel_release: String,
    /// Full `proc/version` line; derived from the release when absent.
    #[serde(default)]
    pub proc_version: Option<String>,
    /// `proc/cmdline` (a newline is appended).
    #[serde(default)]
    pub cmdline: String,
    /// `"efi"` creates `sys/firmware/efi/`; `"bios"` does not.
    #[serde(default = "default_firmware")]
    pub firmware: String,
    /// `etc/os-release` content; absent = no file.
    #[serde(default)]
    pub os_release: Option<String>,
    /// Writes `proc/driver/nvidia/version` with this version (e.g. `"550.54.14"`).
    #[serde(default)]
    pub nvidia_version: Option<String>,
    /// Build date printed in `proc/driver/nvidia/version`.
    #[serde(default = "default_nvidia_date")]
    pub nvidia_build_date: String,
    /// Extra character devices for `proc/devices`, as `"MAJOR name"`
    /// (`"195 nvidia-frontend"`); the usual ones (1 mem … 226 drm) are always there.
    #[serde(default)]
    pub char_devices: Vec<String>,
    /// `lib/modules/<release>/modules.builtin` lines (`kernel/drivers/vfio/vfio.ko`).
    #[serde(default)]
    pub modules_builtin: Vec<String>,
    /// Module parameters, `"module.param" = "value"` →
    /// `sys/module/<module>/parameters/<param>`.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
}

impl Default for HostInfo {
    fn default() -> Self {
        HostInfo {
            kernel_release: default_release(),
            proc_version: None,
            cmdline: String::new(),
            firmware: default_firmware(),
            os_release: None,
            nvidia_version: None,
            nvidia_build_date: default_nvidia_date(),
            char_devices: Vec::new(),
            modules_builtin: Vec::new(),
            params: BTreeMap::new(),
        }
    }
}

/// `/proc/cpuinfo` contents.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuDesc {
    /// `GenuineIntel` or `AuthenticAMD`.
    #[serde(default = "default_cpu_vendor")]
    pub vendor_id: String,
    /// `model name`.
    #[serde(default = "default_cpu_name")]
    pub model_name: String,
    /// Space-separated `flags` (`vmx`/`svm`, `hypervisor` inside a VM).
    #[serde(default = "default_cpu_flags")]
    pub flags: String,
    /// Logical processors listed (at least 2 is realistic).
    #[serde(default = "default_processors")]
    pub processors: u32,
    /// Sockets; processors are split evenly (`physical id`).
    #[serde(default = "default_sockets")]
    pub sockets: u32,
    /// `cpu family`.
    #[serde(default = "default_family")]
    pub family: u32,
    /// `model`.
    #[serde(default)]
    pub model: u32,
    /// `stepping`.
    #[serde(default)]
    pub stepping: u32,
}

impl Default for CpuDesc {
    fn default() -> Self {
        CpuDesc {
            vendor_id: default_cpu_vendor(),
            model_name: default_cpu_name(),
            flags: default_cpu_flags(),
            processors: default_processors(),
            sockets: default_sockets(),
            family: default_family(),
            model: 0,
            stepping: 0,
        }
    }
}

/// IOMMU state.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IommuDesc {
    /// `"intel"`, `"amd"` or `"none"`.
    #[serde(default = "default_iommu_vendor")]
    pub vendor: String,
    /// Firmware table present (`sys/firmware/acpi/tables/DMAR` or `IVRS`);
    /// defaults to `vendor != "none"`.
    #[serde(default)]
    pub firmware_table: Option<bool>,
    /// Active units (`sys/class/iommu/dmarN` or `ivhdN`); defaults to 1 unless `none`.
    #[serde(default)]
    pub units: Option<u32>,
    /// AMD only: the IOMMU PCI function the `ivhdN` units sit below
    /// (`sys/devices/pci0000:00/0000:00:00.2/iommu/ivhd0`); otherwise they sit in
    /// `sys/devices/virtual/iommu/`.
    #[serde(default)]
    pub unit_device: Option<String>,
    /// `IR-` chip names in `proc/interrupts` (and ecap bit 3 on Intel units).
    #[serde(default)]
    pub interrupt_remapping: bool,
    /// Default `type` of every group (`DMA-FQ`, `DMA`, `identity`, …).
    #[serde(default = "default_group_type")]
    pub group_type: String,
    /// Per-group `type` overrides, `"12" = "identity"`.
    #[serde(default)]
    pub group_types: BTreeMap<String, String>,
}

impl Default for IommuDesc {
    fn default() -> Self {
        IommuDesc {
            vendor: default_iommu_vendor(),
            firmware_table: None,
            units: None,
            unit_device: None,
            interrupt_remapping: false,
            group_type: default_group_type(),
            group_types: BTreeMap::new(),
        }
    }
}

/// One loaded module, one `proc/modules` line:
/// `name size refcount deps state address [taint]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleDesc {
    /// Module name (underscores).
    pub name: String,
    /// Size in bytes.
    #[serde(default = "default_module_size")]
    pub size: u64,
    /// Reference count.
    #[serde(default)]
    pub refcount: u32,
    /// Modules using this one (printed as `a,b,`; `-` when empty).
    #[serde(default)]
    pub deps: Vec<String>,
    /// `Live`, `Loading` or `Unloading`.
    #[serde(default = "default_module_state")]
    pub state: String,
    /// Taint flags printed as `(POE)`.
    #[serde(default)]
    pub taint: Option<String>,
}

/// One PCI function.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceDesc {
    /// `DDDD:BB:SS.F`.
    pub address: String,
    /// The bridge above it; absent = on a root bus (`sys/devices/pciDDDD:BB/`).
    /// VFs default to their PF's parent.
    #[serde(default)]
    pub parent: Option<String>,
    /// 24-bit class, `0x030000`.
    pub class: u32,
    /// Vendor id.
    pub vendor: u16,
    /// Device id.
    pub device: u16,
    /// Subsystem vendor id (default 0).
    #[serde(default)]
    pub subsystem_vendor: u16,
    /// Subsystem device id (default 0).
    #[serde(default)]
    pub subsystem_device: u16,
    /// Revision.
    #[serde(default)]
    pub revision: u8,
    /// Bound driver name (`driver` link); absent = unbound.
    #[serde(default)]
    pub driver: Option<String>,
    /// Module providing the driver; default = driver with `-` → `_`
    /// (`pcieport` has none). `""` = no `module` link (built-in without sysfs entry).
    #[serde(default)]
    pub module: Option<String>,
    /// IOMMU group id; absent = no `iommu_group` link.
    #[serde(default)]
    pub iommu_group: Option<String>,
    /// `boot_vga` value; the file is written only for class `0x0300xx`.
    #[serde(default)]
    pub boot_vga: bool,
    /// `reset_method` (`"flr bus"`); absent = no `reset_method` and no `reset`.
    #[serde(default)]
    pub reset_method: Option<String>,
    /// `power_state`.
    #[serde(default = "default_power_state")]
    pub power_state: String,
    /// `power/runtime_status`.
    #[serde(default = "default_runtime_status")]
    pub runtime_status: String,
    /// `power/control`.
    #[serde(default = "default_control")]
    pub control: String,
    /// `d3cold_allowed`.
    #[serde(default = "default_true")]
    pub d3cold_allowed: bool,
    /// `numa_node`.
    #[serde(default = "default_numa")]
    pub numa_node: i32,
    /// `current_link_speed` and `max_link_speed` (`"16.0 GT/s PCIe"`); absent = no files.
    #[serde(default)]
    pub link_speed: Option<String>,
    /// `current_link_width` and `max_link_width` (`"16"`).
    #[serde(default)]
    pub link_width: Option<String>,
    /// `driver_override`.
    #[serde(default = "default_override")]
    pub driver_override: String,
    /// `sriov_totalvfs` (a PF).
    #[serde(default)]
    pub sriov_totalvfs: Option<u16>,
    /// `sriov_numvfs`; defaults to the number of VFs described.
    #[serde(default)]
    pub sriov_numvfs: Option<u16>,
    /// The PF of this VF (`physfn` link, `virtfnN` on the PF).
    #[serde(default)]
    pub physfn: Option<String>,
    /// `irq`; allocated from 24 upwards for bound devices when absent.
    #[serde(default)]
    pub irq: Option<u32>,
    /// Secondary bus of a bridge with no described children.
    #[serde(default)]
    pub secondary_bus: Option<u8>,
    /// A DRM card below this device.
    #[serde(default)]
    pub drm: Option<DrmDesc>,
}

/// A DRM card (`drm/cardN`, `drm/renderD(128+N)`, connectors).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrmDesc {
    /// N of `cardN`.
    pub card: u32,
    /// Create `renderD(128+N)` (default true).
    #[serde(default = "default_true")]
    pub render: bool,
    /// Connectors (`cardN-HDMI-A-1`).
    #[serde(default)]
    pub connectors: Vec<ConnectorDesc>,
}

/// One DRM connector.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorDesc {
    /// `HDMI-A-1`, `DP-1`, …
    pub name: String,
    /// `connected`, `disconnected` or `unknown`.
    #[serde(default = "default_connector_status")]
    pub status: String,
}

/// Adds a realistic dual-socket server until the host has `functions` PCI functions.
///
/// It owns domain 0000 buses 0x16 and up and every other domain; described devices
/// must stay on domain 0000 buses 0x00–0x15.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerateDesc {
    /// Total PCI functions of the host, described ones included.
    pub functions: usize,
    /// Most VFs enabled per PF (default 64).
    #[serde(default = "default_max_vfs")]
    pub max_vfs_per_pf: u16,
}

/// A file written after generation (overwrites).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDesc {
    /// Root-relative path.
    pub path: String,
    /// Text content.
    #[serde(default)]
    pub content: Option<String>,
    /// Raw bytes instead of text (for non-UTF-8 files).
    #[serde(default)]
    pub bytes: Option<Vec<u8>>,
}

/// A symlink written after generation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkDesc {
    /// Root-relative path of the link.
    pub path: String,
    /// Target, written verbatim (relative targets resolve from the link's directory).
    pub target: String,
}

/// An empty directory.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirDesc {
    /// Root-relative path.
    pub path: String,
}

fn default_release() -> String {
    "6.1.0-18-amd64".to_string()
}
fn default_firmware() -> String {
    "efi".to_string()
}
fn default_nvidia_date() -> String {
    "Thu Feb 22 01:44:30 UTC 2024".to_string()
}
fn default_cpu_vendor() -> String {
    "AuthenticAMD".to_string()
}
fn default_cpu_name() -> String {
    "AMD Ryzen 7 5800X 8-Core Processor".to_string()
}
fn default_cpu_flags() -> String {
    "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ht syscall nx mmxext fxsr_opt pdpe1gb rdtscp lm constant_tsc rep_good nopl nonstop_tsc cpuid extd_apicid aperfmperf rapl pni pclmulqdq monitor ssse3 fma cx16 sse4_1 sse4_2 movbe popcnt aes xsave avx f16c rdrand lahf_lm cmp_legacy svm extapic cr8_legacy abm sse4a misalignsse 3dnowprefetch osvw ibs skinit wdt tce topoext perfctr_core perfctr_nb bpext perfctr_llc mwaitx cpb cat_l3 cdp_l3 hw_pstate ssbd mba ibrs ibpb stibp vmmcall fsgsbase bmi1 avx2 smep bmi2 erms invpcid cqm rdt_a rdseed adx smap clflushopt clwb sha_ni xsaveopt xsavec xgetbv1 xsaves cqm_llc cqm_occup_llc cqm_mbm_total cqm_mbm_local clzero irperf xsaveerptr rdpru wbnoinvd arat npt lbrv svm_lock nrip_save tsc_scale vmcb_clean flushbyasid decodeassists pausefilter pfthreshold avic v_vmsave_vmload vgif v_spec_ctrl umip pku ospke vaes vpclmulqdq rdpid overflow_recov succor smca fsrm".to_string()
}
fn default_processors() -> u32 {
    4
}
fn default_sockets() -> u32 {
    1
}
fn default_family() -> u32 {
    25
}
fn default_iommu_vendor() -> String {
    "none".to_string()
}
fn default_group_type() -> String {
    "DMA-FQ".to_string()
}
fn default_module_size() -> u64 {
    16384
}
fn default_module_state() -> String {
    "Live".to_string()
}
fn default_power_state() -> String {
    "D0".to_string()
}
fn default_runtime_status() -> String {
    "active".to_string()
}
fn default_control() -> String {
    "on".to_string()
}
fn default_true() -> bool {
    true
}
fn default_numa() -> i32 {
    -1
}
fn default_override() -> String {
    "(null)".to_string()
}
fn default_connector_status() -> String {
    "disconnected".to_string()
}
fn default_max_vfs() -> u16 {
    64
}
