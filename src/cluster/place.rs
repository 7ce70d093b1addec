//! `cluster place`: which nodes could start a VM now, best first, and why each other node is
//! left out.
//!
//! A node can start the VM when, for every `hostpciN: mapping=NAME` of the VM:
//! 1. the node is online and was read;
//! 2. NAME has an entry for the node (else `PCI device mapping not found`);
//! 3. every entry of NAME for the node matches the hardware (qemu-server validates them all
//!    and refuses to start if any fails, PROXMOX-API.md §4.2);
//! 4. enough entries are free: an entry is taken when a running guest other than this VM
//!    names its device by address, and each running guest on the node that uses NAME holds
//!    one of them (which one is not visible through the API, so they are counted, not named).
//!
//! A raw `hostpciN: BDF` names a device on the VM's own node only: the VM can start there
//! (if the device is present and no running guest holds it) and nowhere else.
//!
//! Best first: the most spare entries after this VM takes its own, then the node the VM is
//! on (no migration), then the node name.
//!
//! Pure; no I/O.

use std::collections::BTreeMap;

use serde::Serialize;

use super::check::check_raw_hostpci;
use super::entry::check_entry;
use super::inventory::{entries_on, guest_refs, host_id_covers, GuestRef, Target};
use super::{ClusterRead, NodeRead};
use crate::pve::api::GuestKind;

/// The answer of `cluster place --json`: `schema_version` 1.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Placement {
    pub schema_version: u32,
    /// The VM placed, or `None` for `--mapping NAME`.
    pub vmid: Option<u32>,
    /// The node the VM is on now.
    pub current_node: Option<String>,
    /// Mapping name → entries the VM needs on a node.
    pub needs: BTreeMap<String, usize>,
    /// Raw `hostpciN` addresses, which pin the VM to its node.
    pub raw: Vec<String>,
    /// Nodes that can start it, best first.
    pub candidates: Vec<Candidate>,
    /// The other nodes and why.
    pub excluded: Vec<Excluded>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Candidate {
    pub node: String,
    /// Free entries left over after this VM takes what it needs (the smallest over its
    /// mappings).
    pub spare: usize,
    pub current: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Excluded {
    pub node: String,
    pub reason: String,
}

/// Why a placement cannot be answered at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlaceError {
    #[error("{0}")]
    Unknown(String),
}

/// Places VM `vmid`.
pub fn place_vm(c: &ClusterRead, vmid: u32) -> Result<Placement, PlaceError> {
    let guests = c
        .guests
        .as_ref()
        .map_err(|e| PlaceError::Unknown(format!("the guests could not be read: {e}")))?;
    let g = guests
        .iter()
        .find(|g| g.entry.vmid == vmid)
        .ok_or_else(|| {
            PlaceError::Unknown(format!(
                "no guest {vmid} in GET /cluster/resources (templates are not placed)"
            ))
        })?;
    if g.entry.kind != GuestKind::Qemu {
        return Err(PlaceError::Unknown(format!(
            "{vmid} is a container; place places VMs (containers share device nodes, not PCI devices)"
        )));
    }
    if let Err(e) = &g.config {
        return Err(PlaceError::Unknown(format!(
            "the config of VM {vmid} could not be read: {e}"
        )));
    }
    let refs = guest_refs(g);
    let mut needs: BTreeMap<String, usize> = BTreeMap::new();
    let mut raw = Vec::new();
    for r in &refs {
        match &r.target {
            Target::Mapping(m) => *needs.entry(m.clone()).or_default() += 1,
            Target::Host(ids) => raw.extend(ids.iter().cloned()),
            Target::Dev(_) => {}
        }
    }
    if needs.is_empty() && raw.is_empty() {
        return Err(PlaceError::Unknown(format!(
            "VM {vmid} has no hostpciN: any node can start it as far as PCI devices go"
        )));
    }
    Ok(place(c, Some(vmid), Some(g.entry.node.clone()), needs, raw))
}

/// Places a VM that would use one entry of mapping `name`.
pub fn place_mapping(c: &ClusterRead, name: &str) -> Result<Placement, PlaceError> {
    if let Err(e) = &c.mappings {
        return Err(PlaceError::Unknown(format!(
            "the mappings could not be read: {e}"
        )));
    }
    if c.mapping(name).is_none() {
        let known: Vec<&str> = c.mappings().iter().map(|m| m.id.as_str()).collect();
        return Err(PlaceError::Unknown(format!(
            "no PCI mapping {name} (there are: {})",
            if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            }
        )));
    }
    Ok(place(
        c,
        None,
        None,
        BTreeMap::from([(name.to_string(), 1)]),
        Vec::new(),
    ))
}

fn place(
    c: &ClusterRead,
    vmid: Option<u32>,
    current: Option<String>,
    needs: BTreeMap<String, usize>,
    raw: Vec<String>,
) -> Placement {
    // Running guests other than this VM, with their GPU lines.
    let others: Vec<GuestRef> = c
        .guests()
        .iter()
        .filter(|g| g.entry.running() && Some(g.entry.vmid) != vmid)
        .flat_map(guest_refs)
        .collect();
    // This VM's own raw lines, to check that they still name the card they did.
    let own: Vec<GuestRef> = c
        .guests()
        .iter()
        .filter(|g| Some(g.entry.vmid) == vmid)
        .flat_map(guest_refs)
        .collect();
    let own_raw: Vec<&GuestRef> = own
        .iter()
        .filter(|r| matches!(r.target, Target::Host(_)))
        .collect();
    let mut candidates = Vec::new();
    let mut excluded = Vec::new();
    for n in &c.nodes {
        let is_current = current.as_deref() == Some(n.node.as_str());
        match judge_node(c, n, &needs, &raw, is_current, &others, &own_raw) {
            Ok(spare) => candidates.push(Candidate {
                node: n.node.clone(),
                spare,
                current: is_current,
            }),
            Err(reason) => excluded.push(Excluded {
                node: n.node.clone(),
                reason,
            }),
        }
    }
    candidates.sort_by(|a, b| {
        b.spare
            .cmp(&a.spare)
            .then(b.current.cmp(&a.current))
            .then(a.node.cmp(&b.node))
    });
    Placement {
        schema_version: 1,
        vmid,
        current_node: current,
        needs,
        raw,
        candidates,
        excluded,
    }
}

fn holder(r: &GuestRef) -> String {
    let name = r
        .guest
        .entry
        .name
        .as_deref()
        .map(|n| format!(" ({n})"))
        .unwrap_or_default();
    format!("running VM {}{name}", r.guest.entry.vmid)
}

/// `Ok(spare entries)` or why the node cannot start the VM.
fn judge_node(
    c: &ClusterRead,
    n: &NodeRead,
    needs: &BTreeMap<String, usize>,
    raw: &[String],
    is_current: bool,
    others: &[GuestRef],
    own_raw: &[&GuestRef],
) -> Result<usize, String> {
    if let Some(e) = &n.error {
        return Err(format!("not read: {e}"));
    }
    if n.status != "online" {
        return Err(format!("status {}", n.status));
    }
    let on_node: Vec<&GuestRef> = others
        .iter()
        .filter(|r| r.guest.entry.node == n.node)
        .collect();
    if !raw.is_empty() {
        if !is_current {
            return Err(format!(
                "raw hostpci address {} names a device on the VM's own node only: use a mapping to run it elsewhere",
                raw.join(", ")
            ));
        }
        for r in own_raw {
            if let Target::Host(ids) = &r.target {
                if let Some((why, _)) = check_raw_hostpci(c, r, n, ids) {
                    return Err(why);
                }
            }
        }
        for id in raw {
            if !n.devices.iter().any(|d| host_id_covers(id, &d.address)) {
                return Err(format!("no device at {id} (raw hostpci address)"));
            }
            if let Some(r) = on_node.iter().find(|r| match &r.target {
                Target::Host(ids) => n
                    .devices
                    .iter()
                    .filter(|d| host_id_covers(id, &d.address))
                    .any(|d| ids.iter().any(|o| host_id_covers(o, &d.address))),
                _ => false,
            }) {
                return Err(format!("{id} is in use by {}", holder(r)));
            }
        }
    }
    let mut spare = usize::MAX;
    for (name, need) in needs {
        let Some(m) = c.mapping(name) else {
            return Err(format!("mapping {name} does not exist"));
        };
        let entries = entries_on(m, &n.node);
        if entries.is_empty() {
            return Err(format!("mapping {name} has no entry for {}", n.node));
        }
        if let Some((e, p)) = entries.iter().find_map(|e| {
            check_entry(&m.id, m.mdev, e, &n.devices)
                .err()
                .map(|p| (e, p))
        }) {
            return Err(format!(
                "mapping {name}'s entry {} does not match the hardware: {}",
                e.raw, p.message
            ));
        }
        // Entries whose device a running guest holds by address.
        let mut taken_by: Vec<String> = Vec::new();
        let free_entries = entries
            .iter()
            .filter(|e| {
                let holder_of = on_node.iter().find(|r| match &r.target {
                    Target::Host(ids) => n
                        .devices
                        .iter()
                        .filter(|d| e.covers(&d.address))
                        .any(|d| ids.iter().any(|id| host_id_covers(id, &d.address))),
                    _ => false,
                });
                if let Some(r) = holder_of {
                    taken_by.push(holder(r));
                }
                holder_of.is_none()
            })
            .count();
        let mapped_users: Vec<String> = on_node
            .iter()
            .filter(|r| matches!(&r.target, Target::Mapping(x) if x == name))
            .map(|r| holder(r))
            .collect();
        taken_by.extend(mapped_users.iter().cloned());
        let free = free_entries.saturating_sub(mapped_users.len());
        if free < *need {
            return Err(format!(
                "mapping {name}: {} of {} entr{} on {} in use (by {}), {} needed",
                entries.len() - free,
                entries.len(),
                if entries.len() == 1 { "y" } else { "ies" },
                n.node,
                taken_by.join(", "),
                need
            ));
        }
        spare = spare.min(free - need);
    }
    Ok(if spare == usize::MAX { 0 } else { spare })
}
