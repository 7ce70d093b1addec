//! The PCI topology as a tree — root buses, root ports, switches and bridges, endpoints —
//! with what each device is to the host and to its GPUs. One builder for `list --tree` (text,
//! [`render_tree`]) and for `report --html` (`output::report`), so the two never disagree.
//!
//! Pure: a function of the snapshot and, when given, the check report. The tree is kept as
//! rows in depth-first order (each with the guides a renderer needs to draw its branch), since
//! both renderers draw row by row and an IOMMU group is drawn as a box around consecutive rows.
//!
//! Parents come from each device's bridge chain (`PciDevice::parents`, read from its real
//! sysfs path by a full read); a VF is drawn under its PF (`physfn`), where a reader looks for
//! it. Runs of identical, singly grouped leaf functions (SR-IOV VFs, mostly) are collapsed
//! into one row, which is what keeps a 4,096-function server readable.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Write};

use crate::check::{CheckReport, Effect, RuleId, Use, Verdict};
use crate::model::{PciAddress, PciDevice, Snapshot};

use super::style::{sanitize, Style};

/// Fewer identical siblings than this are shown one by one: collapsing three rows saves
/// nothing and hides addresses a reader may be looking for.
pub const COLLAPSE_MIN: usize = 4;

/// What a device is to the host itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum HostRole {
    /// Controller of the root filesystem's disk (`host_usage.boot_disk_controllers`).
    BootDisk,
    /// Network device of the default route (`host_usage.default_route_devices`).
    Network,
    /// The firmware's boot display (`boot_vga` = 1).
    BootDisplay,
    /// A GPU with a monitor connected now (a DRM connector reads `connected`).
    Display,
}

impl HostRole {
    pub fn label(self) -> &'static str {
        match self {
            HostRole::BootDisk => "boot disk",
            HostRole::Network => "host network",
            HostRole::BootDisplay => "boot display",
            HostRole::Display => "monitor connected",
        }
    }
}

/// A GPU's verdict for each use, from `check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuVerdicts {
    pub verdicts: Vec<(Use, Verdict)>,
}

/// One PCI function in the tree, with what the renderers mark on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceNode {
    pub address: PciAddress,
    pub group: Option<String>,
    /// How many functions that group holds (0 when the device is in none).
    pub group_size: usize,
    pub roles: Vec<HostRole>,
    /// Set for a GPU the check report judged.
    pub verdicts: Option<GpuVerdicts>,
    /// The GPUs whose VM use this device blocks: it shares their IOMMU group and is neither
    /// one of their functions nor a bridge (the `group.shared` rule fired for them).
    pub blocks: Vec<PciAddress>,
    /// Drawn under its PF.
    pub vf_of: Option<PciAddress>,
}

/// Identical sibling functions drawn as one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollapsedRun {
    /// Each function with its IOMMU group, in address order.
    pub members: Vec<(PciAddress, Option<String>)>,
}

impl CollapsedRun {
    /// The first function: the others are identical to it (ids, class, driver, PF).
    pub fn first(&self) -> PciAddress {
        self.members[0].0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TreeItem {
    /// A root bus (`pciDDDD:BB`): the root complex the chains start from.
    RootBus {
        domain: u32,
        bus: u8,
    },
    Device(DeviceNode),
    Collapsed(CollapsedRun),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeRow {
    /// 0 for a root bus.
    pub depth: usize,
    /// For each ancestor level below the root (depth 1 .. depth-1): whether that ancestor has
    /// siblings still to come, so a vertical line passes this row there.
    pub guides: Vec<bool>,
    /// The last child of its parent (draws `└─` rather than `├─`).
    pub last: bool,
    pub item: TreeItem,
}

/// The whole tree, depth first, children in address order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceTree {
    pub rows: Vec<TreeRow>,
    /// The snapshot holds no bridge chains although the host has more than a root bus (a
    /// summary snapshot, or a trimmed tree without the sysfs links): every device is then
    /// drawn on its own bus, and the renderers say so. A flat host (every device on its root
    /// bus) has empty chains too, and is drawn right.
    pub chains_unknown: bool,
}

/// Builds the tree. `check`, when given, adds the GPUs' verdicts and the devices that block
/// them; without it the tree still marks GPUs and the host's own devices.
pub fn build_tree(s: &Snapshot, check: Option<&CheckReport>) -> DeviceTree {
    let marks = Marks::new(s, check);
    let present: HashMap<PciAddress, &PciDevice> =
        s.devices.iter().map(|d| (d.address, d)).collect();
    // Parent of each device: its PF when it is a VF, else the nearest bridge of its chain
    // that the snapshot holds; none means it sits on a root bus.
    let mut children: BTreeMap<Parent, Vec<PciAddress>> = BTreeMap::new();
    for d in &s.devices {
        let parent = d
            .physfn
            .filter(|pf| present.contains_key(pf) && *pf != d.address)
            .or_else(|| {
                d.parents
                    .iter()
                    .rev()
                    .find(|p| present.contains_key(p))
                    .copied()
            });
        let key = match parent {
            Some(p) => Parent::Device(p),
            None => {
                let top = d.parents.first().unwrap_or(&d.address);
                Parent::Root(top.domain, top.bus)
            }
        };
        children.entry(key).or_default().push(d.address);
    }
    for list in children.values_mut() {
        list.sort();
    }
    let roots: Vec<Parent> = children
        .keys()
        .filter(|k| matches!(k, Parent::Root(..)))
        .copied()
        .collect();
    let mut b = Builder {
        s,
        marks: &marks,
        children: &children,
        rows: Vec::new(),
    };
    for root in roots {
        if let Parent::Root(domain, bus) = root {
            b.rows.push(TreeRow {
                depth: 0,
                guides: Vec::new(),
                last: true,
                item: TreeItem::RootBus { domain, bus },
            });
            b.walk(root, 1, &mut Vec::new());
        }
    }
    DeviceTree {
        rows: b.rows,
        chains_unknown: chains_unknown(s),
    }
}

/// No chain anywhere, yet either the chains were never read (no device read in detail) or
/// devices sit on several buses of one domain, which only bridges make possible.
fn chains_unknown(s: &Snapshot) -> bool {
    if s.devices.is_empty() || s.devices.iter().any(|d| !d.parents.is_empty()) {
        return false;
    }
    let never_read = s.devices.iter().all(|d| !d.detailed);
    let first = &s.devices[0].address;
    let several_buses = s
        .devices
        .iter()
        .any(|d| d.address.domain == first.domain && d.address.bus != first.bus);
    never_read || several_buses
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Parent {
    Root(u32, u8),
    Device(PciAddress),
}

struct Builder<'a> {
    s: &'a Snapshot,
    marks: &'a Marks,
    children: &'a BTreeMap<Parent, Vec<PciAddress>>,
    rows: Vec<TreeRow>,
}

/// A child list with identical runs already grouped.
enum Child {
    One(PciAddress),
    Run(Vec<PciAddress>),
}

impl Builder<'_> {
    fn walk(&mut self, parent: Parent, depth: usize, guides: &mut Vec<bool>) {
        let Some(kids) = self.children.get(&parent) else {
            return;
        };
        let items = self.collapse(kids);
        let n = items.len();
        for (i, item) in items.into_iter().enumerate() {
            let last = i + 1 == n;
            match item {
                Child::One(a) => {
                    self.rows.push(TreeRow {
                        depth,
                        guides: guides.clone(),
                        last,
                        item: TreeItem::Device(self.marks.node(self.s, a)),
                    });
                    guides.push(!last);
                    self.walk(Parent::Device(a), depth + 1, guides);
                    guides.pop();
                }
                Child::Run(members) => self.rows.push(TreeRow {
                    depth,
                    guides: guides.clone(),
                    last,
                    item: TreeItem::Collapsed(CollapsedRun {
                        members: members
                            .iter()
                            .map(|a| (*a, self.s.device(a).and_then(|d| d.iommu_group.clone())))
                            .collect(),
                    }),
                }),
            }
        }
    }

    /// Groups runs of at least [`COLLAPSE_MIN`] consecutive siblings that are the same
    /// function (ids, class, driver, PF), have no children, are alone in their IOMMU group
    /// and carry no mark: nothing a reader needs is hidden by drawing them as one row.
    fn collapse(&self, kids: &[PciAddress]) -> Vec<Child> {
        let mut out: Vec<Child> = Vec::new();
        let mut run: Vec<PciAddress> = Vec::new();
        let flush = |run: &mut Vec<PciAddress>, out: &mut Vec<Child>| {
            if run.len() >= COLLAPSE_MIN {
                out.push(Child::Run(std::mem::take(run)));
            } else {
                out.extend(run.drain(..).map(Child::One));
            }
        };
        for a in kids {
            let key = self.collapse_key(*a);
            let joins = match (&key, run.first()) {
                (Some(k), Some(first)) => self.collapse_key(*first).as_ref() == Some(k),
                _ => false,
            };
            if !joins {
                flush(&mut run, &mut out);
            }
            if key.is_some() {
                run.push(*a);
            } else {
                out.push(Child::One(*a));
            }
        }
        flush(&mut run, &mut out);
        out
    }

    /// What makes two functions the same for collapsing; `None` for one that must stay a
    /// row of its own.
    fn collapse_key(&self, a: PciAddress) -> Option<CollapseKey> {
        let d = self.s.device(&a)?;
        let alone = match d.iommu_group.as_deref() {
            Some(id) => self.marks.group_size(id) == 1,
            None => true,
        };
        let leaf = !self.children.contains_key(&Parent::Device(a));
        if !alone || !leaf || d.is_gpu() || d.is_bridge() || self.marks.is_marked(&a) {
            return None;
        }
        Some(CollapseKey {
            ids: (
                d.vendor.map(|v| v.0),
                d.device.map(|v| v.0),
                d.subsystem_vendor.map(|v| v.0),
                d.subsystem_device.map(|v| v.0),
            ),
            class: d.class.map(|c| c.0),
            driver: d.driver.clone(),
            physfn: d.physfn,
        })
    }
}

#[derive(Debug, PartialEq, Eq)]
struct CollapseKey {
    ids: (Option<u16>, Option<u16>, Option<u16>, Option<u16>),
    class: Option<u32>,
    driver: Option<String>,
    physfn: Option<PciAddress>,
}

/// What the tree marks on devices, computed once.
struct Marks {
    /// Members per group id: looked up for every row, so not a scan of the group list.
    group_sizes: HashMap<String, usize>,
    roles: HashMap<PciAddress, Vec<HostRole>>,
    verdicts: HashMap<PciAddress, GpuVerdicts>,
    blocks: HashMap<PciAddress, Vec<PciAddress>>,
}

impl Marks {
    fn new(s: &Snapshot, check: Option<&CheckReport>) -> Self {
        let mut roles: HashMap<PciAddress, Vec<HostRole>> = HashMap::new();
        let u = &s.host_usage;
        for a in &u.boot_disk_controllers {
            roles.entry(*a).or_default().push(HostRole::BootDisk);
        }
        for a in &u.default_route_devices {
            roles.entry(*a).or_default().push(HostRole::Network);
        }
        for d in s.devices.iter().filter(|d| d.boot_vga == Some(true)) {
            roles
                .entry(d.address)
                .or_default()
                .push(HostRole::BootDisplay);
        }
        for card in &s.drm {
            let connected = card
                .connectors
                .iter()
                .any(|c| c.status.as_deref() == Some("connected"));
            if let (Some(a), true) = (card.device, connected) {
                roles.entry(a).or_default().push(HostRole::Display);
            }
        }
        for r in roles.values_mut() {
            r.sort();
            r.dedup();
        }
        let mut verdicts = HashMap::new();
        let mut blocks: HashMap<PciAddress, Vec<PciAddress>> = HashMap::new();
        for g in check.map(|c| c.gpus.as_slice()).unwrap_or_default() {
            verdicts.insert(
                g.address,
                GpuVerdicts {
                    verdicts: g.verdicts.iter().map(|(u, v)| (*u, *v)).collect(),
                },
            );
            // The same members the group.shared rule names: the card's group mates that are
            // neither its own functions nor bridges. Only when the rule blocked the GPU, so
            // a forced or info-only finding marks nothing.
            let shared = g
                .findings
                .iter()
                .any(|f| f.id == RuleId::GroupShared && f.effect == Effect::Blocks);
            if !shared {
                continue;
            }
            for a in s.card_group_members(&g.address) {
                let bridge = s.device(&a).is_some_and(PciDevice::is_bridge);
                if !a.same_slot(&g.address) && !bridge {
                    blocks.entry(a).or_default().push(g.address);
                }
            }
        }
        Marks {
            group_sizes: s
                .groups
                .iter()
                .map(|g| (g.id.clone(), g.devices.len()))
                .collect(),
            roles,
            verdicts,
            blocks,
        }
    }

    fn group_size(&self, id: &str) -> usize {
        self.group_sizes.get(id).copied().unwrap_or(0)
    }

    fn is_marked(&self, a: &PciAddress) -> bool {
        self.roles.contains_key(a) || self.verdicts.contains_key(a) || self.blocks.contains_key(a)
    }

    fn node(&self, s: &Snapshot, a: PciAddress) -> DeviceNode {
        let d = s.device(&a);
        let group = d.and_then(|d| d.iommu_group.clone());
        DeviceNode {
            address: a,
            group_size: group.as_deref().map_or(0, |g| self.group_size(g)),
            group,
            roles: self.roles.get(&a).cloned().unwrap_or_default(),
            verdicts: self.verdicts.get(&a).cloned(),
            blocks: self.blocks.get(&a).cloned().unwrap_or_default(),
            vf_of: d.and_then(|d| d.physfn),
        }
    }
}

/// `vm: blocked · lxc: ready · host: ready`.
pub fn verdict_words(v: &GpuVerdicts) -> String {
    v.verdicts
        .iter()
        .map(|(u, v)| format!("{}: {}", use_word(*u), verdict_word(*v)))
        .collect::<Vec<_>>()
        .join(" · ")
}

pub fn use_word(u: Use) -> &'static str {
    match u {
        Use::Vm => "vm",
        Use::Lxc => "lxc",
        Use::Host => "host",
        Use::Shared => "shared",
    }
}

pub fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Ready => "ready",
        Verdict::NeedsSetup => "needs-setup",
        Verdict::Unknown => "unknown",
        Verdict::Blocked => "blocked",
    }
}

/// `[0300] NVIDIA Corporation GA102 [GeForce RTX 3080] [10de:2206]`, sanitized for a
/// terminal; the HTML escapes the same parts itself.
pub fn describe_function(d: Option<&PciDevice>) -> String {
    let Some(d) = d else {
        return "(listed by its group, absent from sys/bus/pci/devices)".into();
    };
    let class = d
        .class
        .map_or("????".to_string(), |c| format!("{:04x}", c.class16()));
    let ids = d.vendor_device().unwrap_or_else(|| "????:????".into());
    format!("[{class}] {} [{ids}]", sanitize(&d.names.name))
}

/// The first and last group of a run: `groups 100–131`, or the one group.
pub fn run_groups(run: &CollapsedRun) -> String {
    let ids: Vec<&str> = run
        .members
        .iter()
        .filter_map(|(_, g)| g.as_deref())
        .collect();
    match (ids.first(), ids.last()) {
        (Some(a), Some(b)) if a != b => format!("groups {}–{}, one each", sanitize(a), sanitize(b)),
        (Some(a), _) => format!("group {}", sanitize(a)),
        _ => "no IOMMU group".into(),
    }
}

/// `list --tree`: the tree as text, one row a line.
pub fn render_tree(out: &mut dyn Write, s: &Snapshot, t: &DeviceTree, st: Style) -> io::Result<()> {
    if t.chains_unknown {
        writeln!(
            out,
            "{}",
            st.warn("No bridge chains in this snapshot (a summary read or a trimmed tree): devices are shown on their own bus.")
        )?;
    }
    if t.rows.is_empty() {
        writeln!(out, "No PCI devices found under sys/bus/pci/devices.")?;
    }
    for (i, row) in t.rows.iter().enumerate() {
        let mut line = branch_prefix(row);
        match &row.item {
            TreeItem::RootBus { domain, bus } => {
                if i > 0 {
                    writeln!(out)?;
                }
                line.push_str(&st.bold(&format!("root bus {domain:04x}:{bus:02x}")));
            }
            TreeItem::Device(n) => line.push_str(&device_text(s, n, st)),
            TreeItem::Collapsed(run) => {
                let first = s.device(&run.first());
                let last = run.members[run.members.len() - 1].0;
                let driver = first
                    .and_then(|d| d.driver.as_deref())
                    .map_or("-".into(), sanitize);
                line.push_str(&format!(
                    "{} × {}  {}  {} … {}  ({})",
                    run.members.len(),
                    describe_function(first),
                    st.dim(&driver),
                    run.first(),
                    last,
                    run_groups(run)
                ));
            }
        }
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// `│  ├─ `: the guides of the ancestors, then this row's branch.
fn branch_prefix(row: &TreeRow) -> String {
    if row.depth == 0 {
        return String::new();
    }
    let mut p = String::new();
    for g in &row.guides {
        p.push_str(if *g { "│  " } else { "   " });
    }
    p.push_str(if row.last { "└─ " } else { "├─ " });
    p
}

fn device_text(s: &Snapshot, n: &DeviceNode, st: Style) -> String {
    let d = s.device(&n.address);
    let driver = d
        .and_then(|d| d.driver.as_deref())
        .map_or("-".into(), sanitize);
    let group = match &n.group {
        Some(id) => {
            let size = n.group_size;
            if size > 1 {
                format!("group {} ({size} devices)", sanitize(id))
            } else {
                format!("group {}", sanitize(id))
            }
        }
        None => "no group".into(),
    };
    let gpu = d.is_some_and(PciDevice::is_gpu);
    let mut tags: Vec<String> = Vec::new();
    if gpu {
        tags.push("GPU".into());
    }
    if d.is_some_and(PciDevice::is_bridge) {
        tags.push("bridge".into());
    }
    if let Some(pf) = n.vf_of {
        tags.push(format!("VF of {pf}"));
    }
    tags.extend(n.roles.iter().map(|r| r.label().to_string()));
    for g in &n.blocks {
        tags.push(st.warn(&format!("blocks GPU {g} for vm")));
    }
    let text = format!("{} {}", n.address, describe_function(d));
    let text = if gpu { st.gpu(&text) } else { text };
    let mut line = format!("{text}  {}  {group}", st.dim(&driver));
    if !tags.is_empty() {
        line.push_str(&format!("  ({})", tags.join(", ")));
    }
    if let Some(v) = &n.verdicts {
        line.push_str(&format!("  [{}]", verdict_words(v)));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ClassCode, IommuGroup, PciId, ReadDetail, SnapshotSource};

    fn dev(a: &str, class: u32, group: &str, parents: &[&str]) -> PciDevice {
        let mut d = PciDevice::new(a.parse().unwrap());
        d.class = Some(ClassCode(class));
        d.vendor = Some(PciId(0x8086));
        d.device = Some(PciId(0x154c));
        d.iommu_group = Some(group.into());
        d.parents = parents.iter().map(|p| p.parse().unwrap()).collect();
        d.detailed = true;
        d
    }

    fn snap(devices: Vec<PciDevice>) -> Snapshot {
        let mut groups: BTreeMap<String, Vec<PciAddress>> = BTreeMap::new();
        for d in &devices {
            if let Some(g) = &d.iommu_group {
                groups.entry(g.clone()).or_default().push(d.address);
            }
        }
        let mut devices = devices;
        devices.sort_by_key(|d| d.address);
        Snapshot {
            schema_version: 1,
            source: SnapshotSource {
                root: "/".into(),
                pci_ids: None,
                passthru_version: "test".into(),
                detail: ReadDetail::Full,
            },
            system: Default::default(),
            iommu: Default::default(),
            boot: Default::default(),
            vfio_config: Default::default(),
            drm: Vec::new(),
            host_usage: Default::default(),
            sharing: Default::default(),
            devices,
            groups: groups
                .into_iter()
                .map(|(id, devices)| IommuGroup {
                    id,
                    kind: None,
                    name: None,
                    devices,
                    mdevs: Vec::new(),
                })
                .collect(),
            issues: Vec::new(),
            detail_issues: Vec::new(),
        }
    }

    #[test]
    fn bridges_nest_and_vfs_hang_under_their_pf_and_collapse() {
        let mut devices = vec![
            dev("0000:00:00.0", 0x060000, "0", &[]),
            dev("0000:00:01.0", 0x060400, "1", &[]),
            dev("0000:01:00.0", 0x020000, "2", &["0000:00:01.0"]),
        ];
        for f in 0..6 {
            let mut vf = dev(
                &format!("0000:01:02.{f}"),
                0x020000,
                &format!("{}", 10 + f),
                &["0000:00:01.0"],
            );
            vf.physfn = Some("0000:01:00.0".parse().unwrap());
            devices.push(vf);
        }
        let s = snap(devices);
        let t = build_tree(&s, None);
        let shape: Vec<(usize, String)> = t
            .rows
            .iter()
            .map(|r| {
                let what = match &r.item {
                    TreeItem::RootBus { bus, .. } => format!("root {bus:02x}"),
                    TreeItem::Device(n) => n.address.to_string(),
                    TreeItem::Collapsed(c) => format!("{} VFs", c.members.len()),
                };
                (r.depth, what)
            })
            .collect();
        assert_eq!(
            shape,
            vec![
                (0, "root 00".to_string()),
                (1, "0000:00:00.0".to_string()),
                (1, "0000:00:01.0".to_string()),
                (2, "0000:01:00.0".to_string()),
                (3, "6 VFs".to_string()),
            ]
        );
        assert!(!t.chains_unknown);
    }

    #[test]
    fn a_run_shorter_than_the_minimum_stays_expanded() {
        let mut devices = vec![dev("0000:00:00.0", 0x020000, "0", &[])];
        for f in 1..COLLAPSE_MIN {
            devices.push(dev(
                &format!("0000:00:00.{f}"),
                0x020000,
                &f.to_string(),
                &[],
            ));
        }
        // Same ids and groups of one, but only COLLAPSE_MIN functions, the first kept apart
        // by a shared group: the rest are one short of a run.
        devices[0].iommu_group = Some("1".into());
        let s = snap(devices);
        let t = build_tree(&s, None);
        assert!(t
            .rows
            .iter()
            .all(|r| !matches!(r.item, TreeItem::Collapsed(_))));
    }

    #[test]
    fn missing_chains_are_said_only_when_bridges_must_exist() {
        // A flat host: every device on the root bus, chains read and empty. Nothing to say.
        let flat = snap(vec![
            dev("0000:00:00.0", 0x060000, "0", &[]),
            dev("0000:00:02.0", 0x030000, "1", &[]),
        ]);
        assert!(!build_tree(&flat, None).chains_unknown);
        // Bus 01 without a chain: some bridge above it was not read.
        let trimmed = snap(vec![
            dev("0000:00:01.0", 0x060400, "0", &[]),
            dev("0000:01:00.0", 0x030000, "1", &[]),
        ]);
        let t = build_tree(&trimmed, None);
        assert!(t.chains_unknown);
        // Both are drawn, each on its own bus, rather than one lost.
        let roots = t
            .rows
            .iter()
            .filter(|r| matches!(r.item, TreeItem::RootBus { .. }))
            .count();
        assert_eq!((roots, t.rows.len()), (2, 4));
    }
}
