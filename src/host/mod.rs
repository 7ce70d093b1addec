//! Reading the host: the only code that touches `sys`, `proc`, `etc`, `boot`, `lib` or `dev`,
//! always below a [`HostRoot`]. Everything returns data; a missing or garbled file becomes an
//! [`Issue`](crate::model::Issue), never a panic or an abort.

pub mod archive;
pub mod boot;
pub mod container_libs;
pub mod drm;
pub mod iommu;
pub mod next_boot;
pub mod nvml;
pub mod pci;
pub mod power;
pub mod root;
pub mod sharing;
pub mod system;
pub mod usage;
pub mod vfio_config;

use std::path::{Path, PathBuf};

use crate::model::{PciDevice, ReadDetail, Snapshot, SnapshotSource, SCHEMA_VERSION};
use crate::pciids::{lookup_names, PciIds, SYSTEM_PCI_IDS};

pub use root::{Access, HostRoot, RootError};

/// Where names come from.
#[derive(Debug, Clone, Default)]
pub enum PciIdsSource {
    /// pci.ids under the root, then on the real system (`/usr/share/misc/pci.ids` ...).
    #[default]
    Search,
    /// This file (`--pci-ids FILE`).
    File(PathBuf),
    /// No names: raw ids only.
    None,
}

/// A pci.ids given explicitly that cannot be read is the user's error, not host data.
#[derive(Debug, thiserror::Error)]
#[error("reading the PCI ID database {path}")]
pub struct PciIdsError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// Finds and loads the name database.
pub fn load_pci_ids(root: &HostRoot, source: &PciIdsSource) -> Result<Option<PciIds>, PciIdsError> {
    match source {
        PciIdsSource::None => Ok(None),
        PciIdsSource::File(path) => PciIds::load(path).map(Some).map_err(|source| PciIdsError {
            path: path.clone(),
            source,
        }),
        PciIdsSource::Search => {
            let under_root = SYSTEM_PCI_IDS.iter().map(|rel| root.join(rel));
            let system = SYSTEM_PCI_IDS.iter().map(|rel| Path::new("/").join(rel));
            Ok(under_root.chain(system).find_map(|p| PciIds::load(&p).ok()))
        }
    }
}

/// Reads the host into one snapshot. `Summary` reads only what `list` shows, a third of the
/// system calls of `Full` (see docs/performance.md).
pub fn read_snapshot(root: &HostRoot, ids: Option<&PciIds>, detail: ReadDetail) -> Snapshot {
    let mut issues = Vec::new();
    let device_detail = match detail {
        ReadDetail::Check => ReadDetail::Summary,
        d => d,
    };
    let mut devices = pci::read_pci_devices(root, device_detail, &mut issues);
    let mut groups = iommu::read_iommu_groups(root, &mut issues);
    if detail == ReadDetail::Check {
        read_devices_of_interest(root, &mut devices, &groups);
    }
    name_devices(&mut devices, ids);
    if !root.exists(iommu::IOMMU_GROUPS) && devices.iter().any(|d| d.iommu_group.is_some()) {
        groups = groups_from_device_links(&mut devices);
        issues.push(crate::model::Issue::new(
            iommu::IOMMU_GROUPS,
            "missing (a trimmed tree?): groups were taken from the devices' iommu_group links",
        ));
    }
    note_group_mismatches(&devices, &groups, &mut issues);
    let iommu = iommu::read_iommu_state(root, &groups, &mut issues);
    let mut detail_issues = Vec::new();
    let system = system::read_system(root, detail, &mut issues, &mut detail_issues);
    let boot = boot::read_boot(root, &mut issues);
    let (vfio_config, drm, host_usage, sharing) = match detail {
        ReadDetail::Full | ReadDetail::Check => (
            vfio_config::read_vfio_config(root, &system.cmdline_params, &mut detail_issues),
            drm::read_drm(root, &mut detail_issues),
            usage::read_host_usage(root, &devices, &mut detail_issues),
            sharing::read_sharing(root, system.kernel_release.as_deref(), &mut detail_issues),
        ),
        // `list --gpus` shows who uses each VF: the live mdevs are all it needs of these.
        ReadDetail::Summary => (
            Default::default(),
            Vec::new(),
            Default::default(),
            Default::default(),
        ),
    };
    Snapshot {
        schema_version: SCHEMA_VERSION,
        source: SnapshotSource {
            root: root.path().display().to_string(),
            pci_ids: ids.map(|i| i.path().display().to_string()),
            passthru_version: env!("CARGO_PKG_VERSION").to_string(),
            detail,
        },
        system,
        iommu,
        boot,
        vfio_config,
        drm,
        host_usage,
        sharing,
        devices,
        groups,
        issues,
        detail_issues,
    }
}

/// Re-reads in full the GPUs and every device that shares a group or a slot with one: what
/// `check` judges. The rest keep their summary, which is what makes `check` on a large server
/// cost about what `list` costs.
fn read_devices_of_interest(
    root: &HostRoot,
    devices: &mut [PciDevice],
    groups: &[crate::model::IommuGroup],
) {
    let gpus: Vec<&PciDevice> = devices.iter().filter(|d| d.is_gpu()).collect();
    let mut wanted: std::collections::BTreeSet<crate::model::PciAddress> = Default::default();
    for g in &gpus {
        wanted.insert(g.address);
        if let Some(group) = g
            .iommu_group
            .as_deref()
            .and_then(|id| groups.iter().find(|x| x.id == id))
        {
            wanted.extend(group.devices.iter().copied());
        }
        wanted.extend(
            devices
                .iter()
                .filter(|d| d.address.same_slot(&g.address))
                .map(|d| d.address),
        );
    }
    for d in devices.iter_mut().filter(|d| wanted.contains(&d.address)) {
        let entry = d.address.to_string();
        *d = pci::read_pci_device(root, d.address, &entry, ReadDetail::Full);
    }
}

/// Maps `f` over `items`, on several threads when there are many. Reading the host is one
/// small file at a time, bound by system-call latency rather than by the disk, so threads
/// divide the wall time; below a few hundred items starting them costs more than it saves.
pub(crate) fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    if items.len() < 256 {
        return items.iter().map(f).collect();
    }
    // Asked only now: the answer costs a dozen system calls (cgroup quota files).
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    if threads < 2 {
        return items.iter().map(f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| s.spawn(move || part.iter().map(f).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| match h.join() {
                Ok(v) => v,
                // A reader never panics on host data; if one did, re-raise it here.
                Err(p) => std::panic::resume_unwind(p),
            })
            .collect()
    })
}

/// Names every device. Servers repeat the same few models thousands of times, so each
/// distinct id combination is looked up once.
pub fn name_devices(devices: &mut [PciDevice], ids: Option<&PciIds>) {
    let mut cache: std::collections::HashMap<_, crate::model::DeviceNames> = Default::default();
    for d in devices {
        let key = (
            d.class,
            d.vendor,
            d.device,
            d.subsystem_vendor,
            d.subsystem_device,
        );
        if let Some(n) = cache.get(&key) {
            d.names = n.clone();
            continue;
        }
        name_device(d, ids);
        cache.insert(key, d.names.clone());
    }
}

/// Fills in names as lspci would print them.
pub fn name_device(d: &mut PciDevice, ids: Option<&PciIds>) {
    let n = lookup_names(
        ids,
        d.class.map(|c| (c.base(), c.sub())),
        d.vendor.map(|v| v.0),
        d.device.map(|v| v.0),
        d.subsystem_vendor
            .zip(d.subsystem_device)
            .map(|(a, b)| (a.0, b.0)),
    );
    d.names.name = n.name;
    d.names.class = n.class;
    d.names.vendor = n.vendor;
    d.names.device = n.device;
    d.names.subsystem = n.subsystem;
}

/// Rebuilds groups from the devices' own `iommu_group` links, for trees that kept the links
/// but not `sys/kernel/iommu_groups` (ghw's snapshots do this). The links' dangling targets
/// are then expected and not reported one by one.
fn groups_from_device_links(devices: &mut [PciDevice]) -> Vec<crate::model::IommuGroup> {
    let mut groups: Vec<crate::model::IommuGroup> = Vec::new();
    for d in devices.iter_mut() {
        let Some(id) = d.iommu_group.clone() else {
            continue;
        };
        d.issues.retain(|i| !i.path.ends_with("/iommu_group"));
        match groups.iter_mut().find(|g| g.id == id) {
            Some(g) => g.devices.push(d.address),
            None => groups.push(crate::model::IommuGroup {
                id,
                kind: None,
                name: None,
                devices: vec![d.address],
                mdevs: Vec::new(),
            }),
        }
    }
    for g in &mut groups {
        g.devices.sort();
    }
    groups.sort_by(|a, b| crate::model::compare_group_ids(&a.id, &b.id));
    groups
}

/// A device whose `iommu_group` link names a group that does not list it (or does not
/// exist) means a damaged or trimmed tree; say so rather than guess.
fn note_group_mismatches(
    devices: &[PciDevice],
    groups: &[crate::model::IommuGroup],
    issues: &mut Vec<crate::model::Issue>,
) {
    for d in devices {
        if let Some(id) = &d.iommu_group {
            match groups.iter().find(|g| &g.id == id) {
                None => issues.push(crate::model::Issue::new(
                    format!("{}/{}/iommu_group", pci::PCI_DEVICES, d.address),
                    format!("names group '{id}', which sys/kernel/iommu_groups does not have"),
                )),
                Some(g) if !g.devices.contains(&d.address) => {
                    issues.push(crate::model::Issue::new(
                        format!("{}/{id}/devices", iommu::IOMMU_GROUPS),
                        format!(
                            "does not list {}, whose iommu_group link names this group",
                            d.address
                        ),
                    ))
                }
                Some(_) => {}
            }
        }
    }
}

/// The plan builders' view of the files below a root.
///
/// One view per plan: each file is read once and every later read gives the same bytes, so
/// a plan's `before` (what apply checks the file still holds) is exactly what its `after`
/// was computed from, even when the file changes while the plan is made.
pub struct RootFiles<'a> {
    root: &'a HostRoot,
    read: std::cell::RefCell<std::collections::HashMap<String, FileRead>>,
}

/// What one read of a file gave.
type FileRead = Result<Option<Vec<u8>>, crate::plan::source::ReadError>;

impl<'a> RootFiles<'a> {
    pub fn new(root: &'a HostRoot) -> Self {
        RootFiles {
            root,
            read: Default::default(),
        }
    }
}

impl crate::plan::source::FileSource for RootFiles<'_> {
    fn read(&self, rel: &str) -> Result<Option<Vec<u8>>, crate::plan::source::ReadError> {
        if let Some(r) = self.read.borrow().get(rel) {
            return r.clone();
        }
        self.root.note(rel, root::Access::Read);
        // The same confined resolution apply/ writes through: a plan is never made from a
        // file outside the root (a planted link in `etc/default` would otherwise show an
        // outside file's bytes in the diff).
        let r = crate::apply::read_confined(self.root.path(), rel)
            .map(|f| f.map(|f| f.bytes))
            .map_err(|e| crate::plan::source::ReadError {
                file: rel.to_string(),
                why: e.to_string(),
            });
        self.read.borrow_mut().insert(rel.to_string(), r.clone());
        r
    }
    fn list(&self, rel: &str) -> Vec<String> {
        let mut ignored = Vec::new();
        self.root.list_dir(rel, &mut ignored)
    }
    fn is_dir(&self, rel: &str) -> bool {
        self.root.is_dir(rel)
    }
}
