//! The GPUs of each node, who uses them and which mappings name them (`cluster list`).
//!
//! A GPU is a display controller (class 0x03) with the other functions of its slot (the HDMI
//! audio at `.1`, a USB-C controller): the functions that go to a VM together. SR-IOV
//! virtual functions (`physfn` set) are cards of their own, since each goes to a different
//! guest, and they are not counted as functions of their physical function's slot.
//!
//! A guest references a card by `hostpciN: BDF` (any function of the card), by `hostpciN:
//! mapping=NAME` (the mapping's entries for the guest's node; with several entries, any one
//! of them, since the API does not say which one a running VM took), or, for a container, by
//! a `devN: /dev/dri/...` or `/dev/nvidia*` device node. The API does not say which card a
//! device node belongs to, so such a reference is put on the node's card only when the node
//! has exactly one, and listed on the node otherwise.
//!
//! Pure; no I/O.

use serde::Serialize;

use super::entry::{check_entry, parse_entry, path_covers, MapEntry};
use super::{ClusterRead, GuestRead, NodeRead};
use crate::formats::pve_config::{parse_hostpci, parse_lxc_dev};
use crate::model::PciAddress;
use crate::pve::api::{GuestKind, MappingRecord, PciFunction};

/// A GPU: its display function and every function that goes with it.
#[derive(Debug, Clone)]
pub struct Card<'a> {
    pub gpu: &'a PciFunction,
    /// The display function first, then the others of the slot in address order.
    pub functions: Vec<&'a PciFunction>,
}

impl Card<'_> {
    pub fn covers(&self, a: &PciAddress) -> bool {
        self.functions.iter().any(|f| f.address == *a)
    }
    /// The path a mapping entry uses: the whole device (`0000:01:00`) when the card has
    /// more functions and the GPU is function 0 (the function qemu-server checks for a
    /// whole-device path); the GPU's address otherwise.
    pub fn entry_path(&self) -> String {
        let a = self.gpu.address;
        if self.functions.len() > 1 && a.function == 0 {
            format!("{:04x}:{:02x}:{:02x}", a.domain, a.bus, a.device)
        } else {
            a.to_string()
        }
    }
}

/// The GPUs among a node's devices, in address order.
pub fn node_cards(devices: &[PciFunction]) -> Vec<Card<'_>> {
    let mut cards: Vec<Card> = Vec::new();
    for d in devices.iter().filter(|d| d.is_display()) {
        if d.physfn.is_some() {
            cards.push(Card {
                gpu: d,
                functions: vec![d],
            });
            continue;
        }
        if cards
            .iter()
            .any(|c| c.gpu.physfn.is_none() && c.gpu.address.same_slot(&d.address))
        {
            continue; // a second display function of a card already listed
        }
        let mut functions = vec![d];
        functions.extend(
            devices
                .iter()
                .filter(|o| o.address != d.address && o.address.same_slot(&d.address))
                .filter(|o| o.physfn.is_none()),
        );
        cards.push(Card { gpu: d, functions });
    }
    cards
}

/// What a guest's config line points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `hostpciN: BDF[;BDF]` (ids as written; the domain may be missing).
    Host(Vec<String>),
    /// `hostpciN: mapping=NAME`.
    Mapping(String),
    /// `devN: /dev/...` of a container.
    Dev(String),
}

/// One GPU-related line of a guest's config.
#[derive(Debug, Clone)]
pub struct GuestRef<'a> {
    pub guest: &'a GuestRead,
    /// `hostpci0`, `dev1`.
    pub key: String,
    /// The whole value, as configured.
    pub value: String,
    pub target: Target,
}

/// Whether a `hostpciN` host id (`01:00.0`, `0000:01:00`, domain optional) covers `a`.
pub fn host_id_covers(id: &str, a: &PciAddress) -> bool {
    let full = if id.split(':').count() == 2 {
        format!("0000:{id}")
    } else {
        id.to_string()
    };
    path_covers(&full, a)
}

/// The GPU-related lines of a guest's config: every `hostpciN` of a VM, and the `devN`
/// device nodes of a container that are GPU nodes (`/dev/dri/...`, `/dev/nvidia...`,
/// `/dev/kfd`).
pub fn guest_refs(g: &GuestRead) -> Vec<GuestRef<'_>> {
    let Ok(cfg) = &g.config else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, v) in cfg {
        match g.entry.kind {
            GuestKind::Qemu if is_indexed(k, "hostpci") => {
                if let Ok(h) = parse_hostpci(v) {
                    let target = match h.mapping {
                        Some(m) => Target::Mapping(m),
                        None => Target::Host(h.host),
                    };
                    out.push(GuestRef {
                        guest: g,
                        key: k.clone(),
                        value: v.clone(),
                        target,
                    });
                }
            }
            GuestKind::Lxc if is_indexed(k, "dev") => {
                if let Ok(d) = parse_lxc_dev(v) {
                    let gpu_node = d.path.starts_with("/dev/dri/")
                        || d.path.starts_with("/dev/nvidia")
                        || d.path == "/dev/kfd";
                    if gpu_node {
                        out.push(GuestRef {
                            guest: g,
                            key: k.clone(),
                            value: v.clone(),
                            target: Target::Dev(d.path),
                        });
                    }
                }
            }
            _ => {}
        }
    }
    out
}

fn is_indexed(key: &str, prefix: &str) -> bool {
    key.strip_prefix(prefix)
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The entries of mapping `m` on `node`, parsed (unparsable entries left out).
pub fn entries_on(m: &MappingRecord, node: &str) -> Vec<MapEntry> {
    m.map
        .iter()
        .filter_map(|raw| parse_entry(raw).ok())
        .filter(|e| e.node == node)
        .collect()
}

/// Whether a reference names `card` on `node`; `Some(one_of)` when it does, `one_of` when the
/// reference is a mapping with several entries on the node (any one may be the one in use).
pub fn ref_names_card(
    c: &ClusterRead,
    r: &GuestRef,
    node: &NodeRead,
    cards: &[Card],
    card: &Card,
) -> Option<bool> {
    if r.guest.entry.node != node.node {
        return None;
    }
    match &r.target {
        Target::Host(ids) => card
            .functions
            .iter()
            .any(|f| ids.iter().any(|id| host_id_covers(id, &f.address)))
            .then_some(false),
        Target::Mapping(name) => {
            let m = c.mapping(name)?;
            let entries = entries_on(m, &node.node);
            entries
                .iter()
                .any(|e| card.functions.iter().any(|f| e.covers(&f.address)))
                .then_some(entries.len() > 1)
        }
        Target::Dev(_) => (cards.len() == 1).then_some(false),
    }
}

/// `cluster list --json`: `schema_version` 1.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterList {
    pub schema_version: u32,
    pub source: String,
    pub nodes: Vec<NodeList>,
    pub mappings: Vec<MappingList>,
    /// Parts of the cluster that could not be read (guests, mappings, guest configs).
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeList {
    pub node: String,
    pub status: String,
    pub error: Option<String>,
    pub gpus: Vec<GpuList>,
    /// Container device nodes that cannot be put on one card (the node has several).
    pub device_nodes: Vec<UseRef>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GpuList {
    pub address: String,
    pub vendor: String,
    pub device: String,
    pub subsystem: Option<String>,
    pub vendor_name: Option<String>,
    pub name: Option<String>,
    pub iommu_group: Option<String>,
    pub functions: Vec<FunctionList>,
    /// Can create mediated devices (vGPU, GVT-g).
    pub mdev: bool,
    /// SR-IOV: this is a virtual function of that device.
    pub physfn: Option<String>,
    /// SR-IOV: its virtual functions.
    pub virtfns: Vec<String>,
    pub used_by: Vec<UseRef>,
    /// The mappings with an entry for this card.
    pub mappings: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FunctionList {
    pub address: String,
    pub class: String,
    pub vendor: String,
    pub device: String,
    pub name: Option<String>,
    pub iommu_group: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct UseRef {
    #[serde(rename = "type")]
    pub kind: GuestKind,
    pub vmid: u32,
    pub name: Option<String>,
    pub running: bool,
    /// The config line: `hostpci0: mapping=rtx3060,pcie=1`.
    pub via: String,
    /// Through a mapping with several entries on the node: this card is one of them.
    pub one_of: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct MappingList {
    pub name: String,
    pub description: Option<String>,
    pub mdev: bool,
    pub entries: Vec<EntryList>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EntryList {
    pub node: String,
    pub path: String,
    /// Checked against the node's hardware and matching.
    pub ok: bool,
    /// Why not (qemu-server's message), or why it could not be checked.
    pub problem: Option<String>,
    pub entry: String,
}

fn use_ref(r: &GuestRef, one_of: bool) -> UseRef {
    UseRef {
        kind: r.guest.entry.kind,
        vmid: r.guest.entry.vmid,
        name: r.guest.entry.name.clone(),
        running: r.guest.entry.running(),
        via: format!("{}: {}", r.key, r.value),
        one_of,
    }
}

/// Checks one stored entry for `list` and `check`: `Ok(())`, or the problem, or why it was
/// not checked.
pub fn entry_status(
    c: &ClusterRead,
    m: &MappingRecord,
    raw: &str,
) -> (Option<MapEntry>, Result<(), String>) {
    let e = match parse_entry(raw) {
        Ok(e) => e,
        Err(why) => return (None, Err(why)),
    };
    let r = match c.node(&e.node) {
        None => Err(format!(
            "node {} is not in the cluster (GET /nodes)",
            e.node
        )),
        Some(n) => match &n.error {
            Some(err) => Err(format!("not checked: {err}")),
            None => check_entry(&m.id, m.mdev, &e, &n.devices).map_err(|p| p.message),
        },
    };
    (Some(e), r)
}

/// Everything `cluster list` shows.
pub fn list_cluster(c: &ClusterRead) -> ClusterList {
    let refs: Vec<GuestRef> = c.guests().iter().flat_map(guest_refs).collect();
    let hex_class = |f: &PciFunction| format!("0x{:06x}", f.class);
    let nodes = c
        .nodes
        .iter()
        .map(|n| {
            let cards = node_cards(&n.devices);
            let gpus = cards
                .iter()
                .map(|card| {
                    let g = card.gpu;
                    let used_by = refs
                        .iter()
                        .filter_map(|r| {
                            ref_names_card(c, r, n, &cards, card).map(|one| use_ref(r, one))
                        })
                        .collect();
                    let mappings = c
                        .mappings()
                        .iter()
                        .filter(|m| {
                            entries_on(m, &n.node)
                                .iter()
                                .any(|e| card.functions.iter().any(|f| e.covers(&f.address)))
                        })
                        .map(|m| m.id.clone())
                        .collect();
                    GpuList {
                        address: g.address.to_string(),
                        vendor: g.vendor.clone(),
                        device: g.device.clone(),
                        subsystem: g.subsystem_id(),
                        vendor_name: g.vendor_name.clone(),
                        name: g.device_name.clone(),
                        iommu_group: g.iommu_group.map(|x| x.to_string()),
                        functions: card
                            .functions
                            .iter()
                            .map(|f| FunctionList {
                                address: f.address.to_string(),
                                class: hex_class(f),
                                vendor: f.vendor.clone(),
                                device: f.device.clone(),
                                name: f.device_name.clone(),
                                iommu_group: f.iommu_group.map(|x| x.to_string()),
                            })
                            .collect(),
                        mdev: g.mdev,
                        physfn: g.physfn.map(|p| p.to_string()),
                        virtfns: g.virtfns.iter().map(|v| v.to_string()).collect(),
                        used_by,
                        mappings,
                    }
                })
                .collect();
            let device_nodes = if cards.len() == 1 {
                Vec::new()
            } else {
                refs.iter()
                    .filter(|r| r.guest.entry.node == n.node && matches!(r.target, Target::Dev(_)))
                    .map(|r| use_ref(r, false))
                    .collect()
            };
            NodeList {
                node: n.node.clone(),
                status: n.status.clone(),
                error: n.error.clone(),
                gpus,
                device_nodes,
            }
        })
        .collect();
    let mappings = c
        .mappings()
        .iter()
        .map(|m| MappingList {
            name: m.id.clone(),
            description: m.description.clone(),
            mdev: m.mdev,
            entries: m
                .map
                .iter()
                .map(|raw| {
                    let (e, status) = entry_status(c, m, raw);
                    EntryList {
                        node: e.as_ref().map(|e| e.node.clone()).unwrap_or_default(),
                        path: e.as_ref().map(|e| e.paths.join(";")).unwrap_or_default(),
                        ok: status.is_ok(),
                        problem: status.err(),
                        entry: raw.clone(),
                    }
                })
                .collect(),
        })
        .collect();
    let mut errors = Vec::new();
    if let Err(e) = &c.guests {
        errors.push(e.clone());
    }
    if let Err(e) = &c.mappings {
        errors.push(e.clone());
    }
    for g in c.guests() {
        if let Err(e) = &g.config {
            errors.push(e.clone());
        }
    }
    ClusterList {
        schema_version: 1,
        source: c.source.clone(),
        nodes,
        mappings,
        errors,
    }
}
