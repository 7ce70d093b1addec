//! `cluster check`: every mapping entry against its node's hardware, nodes that hold a
//! matching GPU but no entry, and guests whose config points at a device that is not the
//! one it was (issue 13). Each finding says what `qm start` would do and the exact fix.
//!
//! The rules, by id (each has a test where it fires and one where it must not):
//! - `mapping.entry-invalid` (error): an entry does not match its node's device (qemu-server's
//!   `assert_valid` message); the VM fails to start on that node.
//! - `mapping.entry-malformed` (error): an entry that is not a valid property string.
//! - `mapping.node-missing` (warning): an online node has a GPU with the mapping's
//!   vendor:device (and subsystem) but no entry, so the VM cannot run or fail over there.
//! - `mapping.not-checked` (warning): the entry's node could not be read.
//! - `guest.mapping-unknown` (error): `hostpciN: mapping=NAME` names no mapping.
//! - `guest.mapping-no-entry` (error): the mapping has no entry for the guest's node
//!   (`PCI device mapping not found for 'NAME'` at start).
//! - `guest.hostpci-moved` (error): a raw `hostpciN: BDF` names no device any more, or a
//!   device that is not the card it was: a mapping entry for the same node and path records
//!   another vendor:device, or `x-vga=1` points at something that is not a display controller.
//!   Raw addresses are not checked by Proxmox at all (PROXMOX-API.md §4.2), so the VM would
//!   start with the wrong device.
//! - `node.unread` (warning): a node could not be read; nothing on it was checked.
//!
//! Pure; no I/O.

use serde::Serialize;

use super::entry::MapEntry;
use super::inventory::{entry_status, guest_refs, host_id_covers, node_cards, GuestRef, Target};
use super::{ClusterRead, NodeRead};
use crate::check::Severity;
use crate::formats::pve_config::{parse_hostpci, render_hostpci};
use crate::pve::api::{MappingRecord, PciFunction};

/// One finding of `cluster check`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterFinding {
    /// The stable rule id (`mapping.entry-invalid`).
    pub rule: &'static str,
    pub severity: Severity,
    pub node: Option<String>,
    /// The mapping, guest or node it is about (`mapping rtx3060`, `VM 100`).
    pub subject: String,
    pub message: String,
    /// What was read: the entry, the config line, the device.
    pub evidence: String,
    /// The command or setting that fixes it.
    pub fix: Option<String>,
}

/// The report of `cluster check --json`: `schema_version` 1.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub schema_version: u32,
    pub source: String,
    pub findings: Vec<ClusterFinding>,
    /// Nothing is wrong and every part of the cluster was read.
    pub ok: bool,
}

/// Runs every rule.
pub fn check_cluster(c: &ClusterRead) -> CheckReport {
    let mut f = Vec::new();
    for n in c.nodes.iter().filter(|n| !n.is_read()) {
        f.push(ClusterFinding {
            rule: "node.unread",
            severity: Severity::Warning,
            node: Some(n.node.clone()),
            subject: format!("node {}", n.node),
            message: "could not be read: its mapping entries and guests were not checked".into(),
            evidence: n.error.clone().unwrap_or_default(),
            fix: None,
        });
    }
    for m in c.mappings() {
        f.extend(check_mapping_entries(c, m));
        f.extend(check_nodes_missing(c, m));
    }
    let refs: Vec<GuestRef> = c.guests().iter().flat_map(guest_refs).collect();
    for r in &refs {
        f.extend(check_guest_ref(c, r));
    }
    let ok = c.complete() && f.iter().all(|x| x.severity < Severity::Warning);
    CheckReport {
        schema_version: 1,
        source: c.source.clone(),
        findings: f,
        ok,
    }
}

/// The fields of a fresh entry for the card at `gpu` on `node`, in the order the GUI writes
/// them (alphabetical): what `cluster map` would write.
pub fn entry_for(node: &str, path: &str, gpu: &PciFunction) -> String {
    let mut parts = vec![format!("id={}", gpu.vendor_device())];
    if let Some(g) = gpu.iommu_group {
        parts.push(format!("iommugroup={g}"));
    }
    parts.push(format!("node={node}"));
    parts.push(format!("path={path}"));
    if let Some(s) = gpu.subsystem_id() {
        parts.push(format!("subsystem-id={s}"));
    }
    parts.join(",")
}

/// The GPU cards on `node` with this vendor:device (and subsystem, when given).
fn cards_like<'a>(
    n: &'a NodeRead,
    id: &str,
    subsystem: Option<&str>,
) -> Vec<super::inventory::Card<'a>> {
    node_cards(&n.devices)
        .into_iter()
        .filter(|c| c.gpu.vendor_device().eq_ignore_ascii_case(id))
        .filter(|c| {
            subsystem.is_none_or(|s| {
                c.gpu
                    .subsystem_id()
                    .is_some_and(|h| h.eq_ignore_ascii_case(s))
            })
        })
        .collect()
}

fn map_cmd(m: &str, id: &str, node: &str) -> String {
    format!("passthru cluster map {m} --gpu {id} --nodes {node}")
}

fn check_mapping_entries(c: &ClusterRead, m: &MappingRecord) -> Vec<ClusterFinding> {
    let mut out = Vec::new();
    for raw in &m.map {
        let (e, status) = entry_status(c, m, raw);
        let Err(problem) = status else { continue };
        let Some(e) = e else {
            out.push(ClusterFinding {
                rule: "mapping.entry-malformed",
                severity: Severity::Error,
                node: None,
                subject: format!("mapping {}", m.id),
                message: problem,
                evidence: format!("map {raw}"),
                fix: Some(format!(
                    "recreate the entry: passthru cluster map {} --gpu VENDOR:DEVICE --nodes NODE",
                    m.id
                )),
            });
            continue;
        };
        let node = c.node(&e.node).filter(|n| n.is_read());
        let Some(node) = node else {
            out.push(ClusterFinding {
                rule: "mapping.not-checked",
                severity: Severity::Warning,
                node: Some(e.node.clone()),
                subject: format!("mapping {}", m.id),
                message: problem,
                evidence: format!("map {raw}"),
                fix: None,
            });
            continue;
        };
        out.push(ClusterFinding {
            rule: "mapping.entry-invalid",
            severity: Severity::Error,
            node: Some(e.node.clone()),
            subject: format!("mapping {}", m.id),
            message: format!(
                "a VM using it fails to start on {}: PCI device mapping invalid (hardware \
                 probably changed): {problem}",
                e.node
            ),
            evidence: format!("map {raw}; {}", device_at(node, &e)),
            fix: Some(fix_for_entry(m, &e, node)),
        });
    }
    out
}

/// What the node has at the entry's first path.
fn device_at(n: &NodeRead, e: &MapEntry) -> String {
    let Some(p) = e.paths.first() else {
        return String::new();
    };
    let addr = super::entry::path_address(p);
    match addr.and_then(|a| n.devices.iter().find(|d| d.address == a)) {
        None => format!("{} has no device at {p}", n.node),
        Some(d) => format!(
            "{} has {} at {} (subsystem {}, IOMMU group {})",
            n.node,
            d.vendor_device(),
            d.address,
            d.subsystem_id().unwrap_or_else(|| "none".into()),
            d.iommu_group.map_or("none".into(), |g| g.to_string()),
        ),
    }
}

fn fix_for_entry(m: &MappingRecord, e: &MapEntry, n: &NodeRead) -> String {
    let Some(id) = e.id.as_deref() else {
        return format!(
            "the entry has no id=: recreate it with `passthru cluster map {} --gpu VENDOR:DEVICE --nodes {}`",
            m.id, n.node
        );
    };
    let like = cards_like(n, id, e.subsystem_id.as_deref());
    let like = if like.is_empty() {
        cards_like(n, id, None)
    } else {
        like
    };
    if like.is_empty() {
        return format!(
            "no {id} card is on {} any more: put it back, or drop the entry with `{}` \
             (it writes the node's entries from the cards it has)",
            n.node,
            map_cmd(&m.id, id, &n.node)
        );
    }
    let entries: Vec<String> = like
        .iter()
        .map(|c| entry_for(&n.node, &c.entry_path(), c.gpu))
        .collect();
    format!(
        "`{}` refreshes the node's entries to: {}",
        map_cmd(&m.id, id, &n.node),
        entries.join(" ; ")
    )
}

/// The vendor:device ids (and subsystems) a mapping's entries name.
fn mapping_ids(m: &MappingRecord) -> Vec<(String, Option<String>)> {
    let mut ids: Vec<(String, Option<String>)> = Vec::new();
    for e in m
        .map
        .iter()
        .filter_map(|r| super::entry::parse_entry(r).ok())
    {
        if let Some(id) = e.id {
            let key = (
                id.to_ascii_lowercase(),
                e.subsystem_id.map(|s| s.to_ascii_lowercase()),
            );
            if !ids.contains(&key) {
                ids.push(key);
            }
        }
    }
    ids
}

fn check_nodes_missing(c: &ClusterRead, m: &MappingRecord) -> Vec<ClusterFinding> {
    let ids = mapping_ids(m);
    let mut out = Vec::new();
    for n in c.nodes.iter().filter(|n| n.is_read()) {
        let has_entry = m
            .map
            .iter()
            .filter_map(|r| super::entry::parse_entry(r).ok())
            .any(|e| e.node == n.node);
        if has_entry {
            continue;
        }
        for (id, sub) in &ids {
            let like = cards_like(n, id, sub.as_deref());
            if let Some(card) = like.first() {
                out.push(ClusterFinding {
                    rule: "mapping.node-missing",
                    severity: Severity::Warning,
                    node: Some(n.node.clone()),
                    subject: format!("mapping {}", m.id),
                    message: format!(
                        "{} has a matching GPU ({id} at {}) but no entry: a VM using {} cannot \
                         start or fail over there",
                        n.node, card.gpu.address, m.id
                    ),
                    evidence: format!("no map entry with node={}", n.node),
                    fix: Some(format!(
                        "`{}` adds: {}",
                        map_cmd(&m.id, id, &n.node),
                        like.iter()
                            .map(|c| entry_for(&n.node, &c.entry_path(), c.gpu))
                            .collect::<Vec<_>>()
                            .join(" ; ")
                    )),
                });
                break;
            }
        }
    }
    out
}

fn check_guest_ref(c: &ClusterRead, r: &GuestRef) -> Vec<ClusterFinding> {
    let g = &r.guest.entry;
    let subject = format!(
        "{} {}",
        if g.kind == crate::pve::api::GuestKind::Qemu {
            "VM"
        } else {
            "CT"
        },
        g.vmid
    );
    let evidence = format!("{}: {}", r.key, r.value);
    let Some(node) = c.node(&g.node).filter(|n| n.is_read()) else {
        return Vec::new(); // node.unread says so
    };
    let finding = |rule, message: String, fix: Option<String>| ClusterFinding {
        rule,
        severity: Severity::Error,
        node: Some(g.node.clone()),
        subject: subject.clone(),
        message,
        evidence: evidence.clone(),
        fix,
    };
    match &r.target {
        Target::Mapping(name) => {
            if c.mappings.is_err() {
                return Vec::new();
            }
            let Some(m) = c.mapping(name) else {
                return vec![finding(
                    "guest.mapping-unknown",
                    format!(
                        "{} names mapping {name}, which does not exist: it does not start",
                        r.key
                    ),
                    Some(format!("passthru cluster map {name} --gpu VENDOR:DEVICE")),
                )];
            };
            let on_node = super::inventory::entries_on(m, &g.node);
            if on_node.is_empty() {
                let id = mapping_ids(m)
                    .first()
                    .map(|(i, _)| i.clone())
                    .unwrap_or("VENDOR:DEVICE".into());
                return vec![finding(
                    "guest.mapping-no-entry",
                    format!(
                        "mapping {name} has no entry for {}: the VM fails to start there (PCI device mapping not found for '{name}')",
                        g.node
                    ),
                    Some(map_cmd(name, &id, &g.node)),
                )];
            }
            Vec::new()
        }
        Target::Host(ids) => check_raw_hostpci(c, r, node, ids)
            .map(|(message, fix)| vec![finding("guest.hostpci-moved", message, fix)])
            .unwrap_or_default(),
        Target::Dev(_) => Vec::new(),
    }
}

/// A raw address that no longer names the card it did: `Some((message, fix))`.
pub fn check_raw_hostpci(
    c: &ClusterRead,
    r: &GuestRef,
    node: &NodeRead,
    ids: &[String],
) -> Option<(String, Option<String>)> {
    let parsed = parse_hostpci(&r.value).ok()?;
    let x_vga = parsed.options.iter().any(|(k, v)| k == "x-vga" && v == "1");
    for id in ids {
        let present: Vec<&PciFunction> = node
            .devices
            .iter()
            .filter(|d| host_id_covers(id, &d.address))
            .collect();
        // What a mapping entry for this node and path says the device was.
        let recorded = c.mappings().iter().find_map(|m| {
            super::inventory::entries_on(m, &node.node)
                .into_iter()
                .find(|e| e.paths.iter().any(|p| same_target(p, id)))
                .and_then(|e| e.id.map(|i| (m.id.clone(), i, e.subsystem_id)))
        });
        let fix = |want: Option<(&str, Option<&str>)>| -> Option<String> {
            let (vd, sub) = want?;
            let cards = cards_like(node, vd, sub);
            let [card] = cards.as_slice() else {
                return None;
            };
            let mut h = parsed.clone();
            h.host = vec![card.entry_path()];
            Some(format!(
                "qm set {} --{} {}   (on {}; or better, a mapping: passthru cluster map NAME --gpu {vd}, then --{} mapping=NAME)",
                r.guest.entry.vmid,
                r.key,
                render_hostpci(&h),
                node.node,
                r.key
            ))
        };
        let generic = format!(
            "point {} at the card's current address, or use a mapping, which Proxmox checks at \
             every start: passthru cluster map NAME --gpu VENDOR:DEVICE, then qm set {} --{} mapping=NAME",
            r.key, r.guest.entry.vmid, r.key
        );
        if present.is_empty() {
            let want = recorded
                .as_ref()
                .map(|(_, i, s)| (i.as_str(), s.as_deref()));
            return Some((
                format!(
                    "{} names {id}, and {} has no device there any more (a card moved or was removed): the VM does not start",
                    r.key, node.node
                ),
                fix(want).or(Some(generic)),
            ));
        }
        if let Some((m, want, sub)) = &recorded {
            let first = present[0];
            if !first.vendor_device().eq_ignore_ascii_case(want) {
                return Some((
                    format!(
                        "{} names {id}, where mapping {m} recorded {want}; {} now has {} there: \
                         the VM would start with the wrong device (Proxmox does not check raw addresses)",
                        r.key,
                        node.node,
                        first.vendor_device()
                    ),
                    fix(Some((want.as_str(), sub.as_deref()))).or(Some(generic)),
                ));
            }
        }
        if x_vga && !present.iter().any(|d| d.is_display()) {
            let d = present[0];
            return Some((
                format!(
                    "{} names {id} with x-vga=1 (a GPU), but {} has {} there, class 0x{:06x}, not a display controller: the card moved",
                    r.key,
                    node.node,
                    d.vendor_device(),
                    d.class
                ),
                Some(generic),
            ));
        }
    }
    None
}

/// Whether a mapping path and a hostpci host id name the same device.
fn same_target(path: &str, host_id: &str) -> bool {
    let full = if host_id.split(':').count() == 2 {
        format!("0000:{host_id}")
    } else {
        host_id.to_string()
    };
    let norm = |s: &str| s.strip_suffix(".0").unwrap_or(s).to_ascii_lowercase();
    norm(path) == norm(&full)
}
