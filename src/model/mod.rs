//! The snapshot: everything passthru knows about one host, as plain serde data.
//!
//! Pure: no I/O here. The `host` module fills it from a root directory, `--from` loads it
//! from JSON, and every command (list, check, setup ...) works only from this type, so a
//! user's `passthru scan --json` reproduces their host anywhere.

mod pci;
mod sharing;
mod system;

pub use pci::*;
pub use sharing::*;
pub use system::*;

use serde::{Deserialize, Serialize};

/// Version of the JSON document. Bump on any incompatible change to field names or meaning;
/// adding fields is compatible.
pub const SCHEMA_VERSION: u32 = 1;

/// Something that could not be read, and why. Missing hardware is data, not an error: a
/// reader records an `Issue` and goes on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Issue {
    /// Path relative to the host root (`sys/bus/pci/devices/0000:01:00.0/class`).
    pub path: String,
    /// What went wrong, in plain words (`"not a hex number: 'garbage'"`).
    pub problem: String,
}

impl Issue {
    pub fn new(path: impl Into<String>, problem: impl Into<String>) -> Self {
        Issue {
            path: path.into(),
            problem: problem.into(),
        }
    }
}

/// One IOMMU group (`sys/kernel/iommu_groups/<id>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct IommuGroup {
    /// The directory name. Opaque: usually a number, but not contiguous and not stable
    /// across hardware changes; compare as strings.
    pub id: String,
    /// `type`: `DMA`, `DMA-FQ`, `identity` (iommu=pt), `unmanaged`, `blocked`.
    pub kind: Option<String>,
    /// `name`, set to `vfio-noiommu` for no-IOMMU groups (nothing is isolated there).
    pub name: Option<String>,
    pub devices: Vec<PciAddress>,
    /// Mediated devices in the group, by UUID: an mdev gets an emulated group of its own
    /// (vfio_register_emulated_iommu_dev; seen in the QEMU lab with mtty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mdevs: Vec<String>,
}

impl IommuGroup {
    /// No-IOMMU groups exist without any isolation (vfio's unsafe mode).
    pub fn is_noiommu(&self) -> bool {
        self.name.as_deref() == Some("vfio-noiommu") || self.id.starts_with("noiommu")
    }
}

/// How much of the host a snapshot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReadDetail {
    /// What `list` shows: identity, class, names, driver and group of each device, the
    /// IOMMU, CPU, kernel, OS and boot setup. Per-device power, reset, link, SR-IOV and
    /// topology, modules, VFIO configuration and DRM are left empty.
    Summary,
    /// Everything passthru reads (`scan`).
    Full,
    /// What `check` needs: a summary of every device, every attribute of the GPUs and of the
    /// devices that share their groups or slots, and all host-level facts.
    Check,
}

/// Who made the snapshot, from where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SnapshotSource {
    /// The host root it was read from (`/` for the live host).
    pub root: String,
    /// The pci.ids file names came from, `None` when none was found (raw ids then).
    pub pci_ids: Option<String>,
    /// passthru version that read it.
    pub passthru_version: String,
    pub detail: ReadDetail,
}

/// Everything read from one host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Snapshot {
    pub schema_version: u32,
    pub source: SnapshotSource,
    pub system: SystemInfo,
    pub iommu: IommuState,
    pub boot: BootInfo,
    pub vfio_config: VfioConfig,
    pub drm: Vec<DrmCard>,
    /// What the host itself relies on: its boot disk, its network, its display users.
    #[serde(default)]
    pub host_usage: HostUsage,
    /// What sharing one GPU among guests relies on (mdevs, CDI, DKMS, Secure Boot).
    #[serde(default)]
    pub sharing: SharingInfo,
    /// Every PCI function, sorted by address.
    pub devices: Vec<PciDevice>,
    /// Every IOMMU group, sorted numerically where the ids are numbers.
    pub groups: Vec<IommuGroup>,
    /// Host-level things that could not be read by the readers a `Summary` also runs
    /// (per-device ones live on the device).
    pub issues: Vec<Issue>,
    /// Host-level things that could not be read by the readers only a `Full` read runs
    /// (modules, VFIO configuration, DRM).
    #[serde(default)]
    pub detail_issues: Vec<Issue>,
}

/// A parent of mediated devices as commands see it, PCI or virtual.
#[derive(Debug, Clone)]
pub struct MdevParentRef<'a> {
    /// Its device name: a PCI address, or a virtual parent's name (`mtty`).
    pub name: String,
    pub pci: Option<&'a PciDevice>,
    /// Root-relative directory holding `mdev_supported_types/`.
    pub dir: String,
    pub types: &'a [MdevType],
}

impl MdevParentRef<'_> {
    pub fn mdev_type(&self, id: &str) -> Option<&MdevType> {
        self.types.iter().find(|t| t.id == id)
    }
    /// The type ids, for messages.
    pub fn type_ids(&self) -> Vec<&str> {
        self.types.iter().map(|t| t.id.as_str()).collect()
    }
}

impl Snapshot {
    pub fn device(&self, address: &PciAddress) -> Option<&PciDevice> {
        self.devices
            .binary_search_by(|d| d.address.cmp(address))
            .ok()
            .map(|i| &self.devices[i])
    }

    pub fn group(&self, id: &str) -> Option<&IommuGroup> {
        self.groups.iter().find(|g| g.id == id)
    }

    pub fn gpus(&self) -> impl Iterator<Item = &PciDevice> {
        self.devices.iter().filter(|d| d.is_gpu())
    }

    /// Every function of the card `function` belongs to (same domain, bus and slot: the
    /// GPU, its audio, USB-C ...), in address order, `function` itself included when present.
    /// A card goes to a VM, is bound and is configured as a whole, so every command that
    /// acts on "the card" asks here.
    ///
    /// A virtual function is a card of its own: the VFs of an iGPU share its slot
    /// (`00:02.1`-`00:02.7` beside the PF `00:02.0`) but go to guests one by one, and the PF's
    /// card does not include them.
    pub fn card_functions(&self, function: &PciAddress) -> Vec<&PciDevice> {
        if let Some(vf) = self.device(function).filter(|d| d.physfn.is_some()) {
            return vec![vf];
        }
        self.devices
            .iter()
            .filter(|d| d.address.same_slot(function) && d.physfn.is_none())
            .collect()
    }

    /// Every parent of mediated devices: each PCI function with `mdev_supported_types`, then
    /// the virtual parents (`sys/class/mdev_bus`), each with the sysfs directory its types
    /// are in.
    pub fn mdev_parents(&self) -> Vec<MdevParentRef<'_>> {
        let pci = self
            .devices
            .iter()
            .filter(|d| !d.mdev_type_details.is_empty())
            .map(|d| MdevParentRef {
                name: d.address.to_string(),
                pci: Some(d),
                dir: format!("sys/bus/pci/devices/{}", d.address),
                types: &d.mdev_type_details,
            });
        let virt = self.sharing.mdev_parents.iter().map(|p| MdevParentRef {
            name: p.name.clone(),
            pci: None,
            dir: p
                .path
                .clone()
                .unwrap_or_else(|| format!("sys/class/mdev_bus/{}", p.name)),
            types: &p.types,
        });
        pci.chain(virt).collect()
    }

    /// The physical function of a VF.
    pub fn pf_of(&self, vf: &PciAddress) -> Option<&PciDevice> {
        self.device(self.device(vf)?.physfn.as_ref()?)
    }

    /// The VFs of a physical function, in `virtfnN` order.
    pub fn vfs_of(&self, pf: &PciAddress) -> Vec<&PciDevice> {
        self.device(pf)
            .and_then(|d| d.sriov.as_ref())
            .map(|x| x.vfs.iter().filter_map(|a| self.device(a)).collect())
            .unwrap_or_default()
    }

    /// The IOMMU groups the card's functions are in, each once, in id order.
    pub fn card_groups(&self, function: &PciAddress) -> Vec<&IommuGroup> {
        let mut ids: Vec<&str> = self
            .card_functions(function)
            .into_iter()
            .filter_map(|f| f.iommu_group.as_deref())
            .collect();
        ids.sort();
        ids.dedup();
        ids.into_iter().filter_map(|id| self.group(id)).collect()
    }

    /// Everything that goes to a VM with the card: its functions and every member of their
    /// groups (bridges included; callers that act on endpoints filter them), sorted.
    pub fn card_group_members(&self, function: &PciAddress) -> Vec<PciAddress> {
        let mut all: Vec<PciAddress> = self
            .card_groups(function)
            .iter()
            .flat_map(|g| g.devices.iter().copied())
            .collect();
        all.extend(self.card_functions(function).iter().map(|f| f.address));
        all.sort();
        all.dedup();
        all
    }

    /// The GPU's number among the GPUs on NVIDIA's driver: the driver numbers them in PCI
    /// order, so this is N in /dev/nvidiaN and the CUDA/Docker device index.
    pub fn nvidia_index(&self, address: &PciAddress) -> Option<usize> {
        self.gpus()
            .filter(|g| g.on_nvidia_driver())
            .position(|g| g.address == *address)
    }

    /// Devices that belong to no IOMMU group.
    pub fn ungrouped(&self) -> impl Iterator<Item = &PciDevice> {
        self.devices.iter().filter(|d| d.iommu_group.is_none())
    }

    /// Every issue in the snapshot: the host's and each device's.
    pub fn all_issues(&self) -> impl Iterator<Item = &Issue> {
        self.issues.iter().chain(&self.detail_issues).chain(
            self.devices
                .iter()
                .flat_map(|d| d.issues.iter().chain(&d.detail_issues)),
        )
    }
}

/// Orders group ids numerically when both are numbers, else as strings, so `2` < `10` and
/// `noiommu-0` sorts after the numbers.
pub fn compare_group_ids(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        (Ok(_), Err(_)) => std::cmp::Ordering::Less,
        (Err(_), Ok(_)) => std::cmp::Ordering::Greater,
        (Err(_), Err(_)) => a.cmp(b),
    }
}
