//! `cluster map`: the API requests that create or refresh a PCI mapping so that it has one
//! entry per matching GPU on every node in scope, and, with `--ha`, the HA node-affinity rule
//! that keeps the VMs using it on those nodes.
//!
//! The entries are the ones the GUI writes (`PCIMapEdit.js`), keys in alphabetical order:
//! `id=VVVV:DDDD`, `iommugroup=N` (unless the device has none), `node=`, `path=` (the whole
//! device `0000:01:00` when the card has more functions, so they all go to the VM), and
//! `subsystem-id=` when the device has one: exactly the properties qemu-server's start-time
//! check expects (PROXMOX-API.md §4.2, §6).
//!
//! A new mapping is `POST /cluster/mapping/pci`. An existing one is `PUT
//! /cluster/mapping/pci/{id}` with the whole `map` (it replaces the array) and the `digest`
//! read with it, so Proxmox refuses the write if anyone changed the mapping file in between
//! ("detected modified configuration"). Entries of nodes out of scope (not in `--nodes`, or
//! not readable now) are kept as they are, in place; an entry that already says what passthru
//! would write is kept byte for byte, so a mapping that is up to date gets no request.
//!
//! HA rules (pve-ha-manager `src/PVE/API2/HA/Rules.pm`, PVE 9): `POST /cluster/ha/rules` with
//! `type=node-affinity`, `rule`, `resources` (`vm:100,...`, HA-managed guests only), `nodes`
//! and `strict=1` (the guests may run on those nodes only), or `PUT /cluster/ha/rules/{rule}`
//! with its digest when passthru's rule already exists. A guest can be in one node-affinity
//! rule only; one held by another rule is refused here, naming that rule.
//!
//! Pure; no I/O.

use serde::Serialize;

use super::check::entry_for;
use super::entry::{parse_entry, MapEntry};
use super::inventory::{guest_refs, node_cards, Card, Target};
use super::ClusterRead;
use crate::formats::pve_config::{check_config_id, check_property_value};
use crate::model::PciAddress;
use crate::pve::api::{GuestKind, HaRule, MappingRecord};
use crate::pve::{ApiRequest, Method};

/// Which VMs `--ha` restricts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HaTarget {
    /// Every VM whose config uses the mapping.
    Users,
    Vms(Vec<u32>),
}

/// What the user asked `cluster map` for.
#[derive(Debug, Clone)]
pub struct MapRequest {
    pub name: String,
    /// `10de:2504`, an address, or part of the name.
    pub selector: String,
    /// Only these nodes' entries are written; `None`: every node that was read.
    pub nodes: Option<Vec<String>>,
    pub ha: Option<HaTarget>,
}

/// The plan: the entries before and after, and the requests that make it so.
#[derive(Debug, Clone, Serialize)]
pub struct MapPlan {
    pub title: String,
    pub before: Vec<String>,
    pub after: Vec<String>,
    pub mdev: bool,
    #[serde(skip)]
    pub requests: Vec<ApiRequest>,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("{0}")]
    Invalid(String),
}

fn invalid(s: impl Into<String>) -> PlanError {
    PlanError::Invalid(s.into())
}

/// Whether a card is the one the selector names: `vendor:device`, an address (with or
/// without the domain) of any of its functions, or part of its name (case-insensitive).
pub fn card_matches(card: &Card, sel: &str) -> bool {
    let s = sel.trim().to_ascii_lowercase();
    if let Some((v, d)) = s.split_once(':') {
        let hex4 = |x: &str| x.len() == 4 && x.bytes().all(|b| b.is_ascii_hexdigit());
        if hex4(v) && hex4(d) {
            return card.gpu.vendor_device() == s;
        }
    }
    if let Ok(a) = s.parse::<PciAddress>() {
        return card.covers(&a);
    }
    let name = format!(
        "{} {}",
        card.gpu.vendor_name.as_deref().unwrap_or(""),
        card.gpu.device_name.as_deref().unwrap_or("")
    )
    .to_ascii_lowercase();
    !s.is_empty() && name.contains(&s)
}

/// Whether two entries say the same thing (keys in any order, hex in any case).
fn same_entry(a: &MapEntry, b: &MapEntry) -> bool {
    let l = |s: &Option<String>| s.as_ref().map(|x| x.to_ascii_lowercase());
    let extra = |e: &MapEntry| {
        crate::formats::pve_config::parse_map_value(&e.raw)
            .map(|p| {
                p.iter().any(|(k, _)| {
                    !matches!(
                        k.as_str(),
                        "node" | "path" | "id" | "subsystem-id" | "iommugroup"
                    )
                })
            })
            .unwrap_or(true)
    };
    a.node == b.node
        && a.paths == b.paths
        && l(&a.id) == l(&b.id)
        && l(&a.subsystem_id) == l(&b.subsystem_id)
        && a.iommugroup == b.iommugroup
        && !extra(a)
        && !extra(b)
}

/// Whether the mapping (if any) has an entry for `node`.
fn has_entries_on(current: Option<&MappingRecord>, node: &str) -> bool {
    current.is_some_and(|m| {
        m.map
            .iter()
            .filter_map(|r| parse_entry(r).ok())
            .any(|e| e.node == node)
    })
}

/// Plans `cluster map`. `current` is the mapping as just read with its digest (`None`: it
/// does not exist); `ha_rules` the node-affinity rules, read when `--ha` is given.
pub fn plan_map(
    c: &ClusterRead,
    current: Option<&MappingRecord>,
    ha_rules: &[HaRule],
    req: &MapRequest,
) -> Result<MapPlan, PlanError> {
    check_config_id(&req.name)
        .map_err(|why| invalid(format!("mapping name {:?}: {why}", req.name)))?;
    let scope: Vec<&super::NodeRead> = match &req.nodes {
        Some(names) => {
            let mut v = Vec::new();
            for name in names {
                let n = c.node(name).ok_or_else(|| {
                    invalid(format!(
                        "--nodes: {name} is not a node of the cluster (GET /nodes has: {})",
                        c.nodes
                            .iter()
                            .map(|n| n.node.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?;
                if let Some(e) = &n.error {
                    return Err(invalid(format!(
                        "--nodes: {name} could not be read, so its GPUs are unknown: {e}"
                    )));
                }
                v.push(n);
            }
            v
        }
        None => c.nodes.iter().filter(|n| n.is_read()).collect(),
    };
    let mut notes = Vec::new();
    for n in c.nodes.iter().filter(|n| !n.is_read()) {
        if req.nodes.is_some() {
            continue;
        }
        notes.push(if has_entries_on(current, &n.node) {
            format!(
                "{} could not be read; its entries are kept as they are",
                n.node
            )
        } else {
            format!(
                "{} could not be read, so it gets no entry now (map again when it answers)",
                n.node
            )
        });
    }
    // The new entries per node in scope.
    let mut fresh: Vec<(String, Vec<String>)> = Vec::new();
    let mut mdev_of: Vec<(String, bool)> = Vec::new();
    for n in &scope {
        let cards: Vec<Card> = node_cards(&n.devices)
            .into_iter()
            .filter(|card| card_matches(card, &req.selector))
            .collect();
        let mut entries = Vec::new();
        for card in &cards {
            check_property_value(&n.node)
                .map_err(|why| invalid(format!("node name {:?}: {why}", n.node)))?;
            entries.push(entry_for(&n.node, &card.entry_path(), card.gpu));
            mdev_of.push((format!("{} on {}", card.gpu.address, n.node), card.gpu.mdev));
        }
        if cards.is_empty() && has_entries_on(current, &n.node) {
            notes.push(format!(
                "{}: no GPU matches {:?} any more, so its entries are removed",
                n.node, req.selector
            ));
        }
        fresh.push((n.node.clone(), entries));
    }
    if fresh.iter().all(|(_, e)| e.is_empty()) {
        return Err(invalid(format!(
            "no GPU matches {:?} on {} (cluster list shows every node's GPUs)",
            req.selector,
            scope
                .iter()
                .map(|n| n.node.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let mdev = mdev_of.iter().any(|(_, m)| *m);
    if mdev && mdev_of.iter().any(|(_, m)| !*m) {
        let (with, without): (Vec<_>, Vec<_>) = mdev_of.iter().partition(|(_, m)| *m);
        return Err(invalid(format!(
            "one mapping cannot hold both mdev-capable and plain devices (qemu-server compares \
             the mapping's mdev with each device): mdev on {}, not on {}; map them under two names",
            with.iter()
                .map(|(d, _)| d.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            without
                .iter()
                .map(|(d, _)| d.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let before: Vec<String> = current.map(|m| m.map.clone()).unwrap_or_default();
    let in_scope = |node: &str| fresh.iter().any(|(n, _)| n == node);
    let mut after: Vec<String> = Vec::new();
    let mut placed: Vec<String> = Vec::new();
    let put_node = |node: &str, after: &mut Vec<String>, placed: &mut Vec<String>| {
        if placed.iter().any(|p| p == node) {
            return;
        }
        placed.push(node.to_string());
        let new = &fresh.iter().find(|(n, _)| n == node).expect("in scope").1;
        let old: Vec<MapEntry> = before
            .iter()
            .filter_map(|r| parse_entry(r).ok())
            .filter(|e| e.node == node)
            .collect();
        for raw in new {
            let ne = parse_entry(raw).expect("passthru's own entries parse");
            // An old entry that says the same is kept as written.
            match old.iter().find(|o| same_entry(o, &ne)) {
                Some(o) => after.push(o.raw.clone()),
                None => after.push(raw.clone()),
            }
        }
    };
    for raw in &before {
        match parse_entry(raw) {
            Ok(e) if in_scope(&e.node) => put_node(&e.node, &mut after, &mut placed),
            _ => after.push(raw.clone()),
        }
    }
    for (node, _) in &fresh {
        put_node(node, &mut after, &mut placed);
    }
    let mut requests = Vec::new();
    let map_params = |r: &mut ApiRequest| {
        for e in &after {
            r.params.push(("map".into(), e.clone()));
        }
    };
    match current {
        None => {
            let mut r = ApiRequest {
                method: Method::Post,
                path: "/cluster/mapping/pci".into(),
                params: vec![("id".into(), req.name.clone())],
            };
            map_params(&mut r);
            if mdev {
                r.params.push(("mdev".into(), "1".into()));
            }
            requests.push(r);
        }
        Some(m) => {
            if after != before || m.mdev != mdev {
                let mut r = ApiRequest {
                    method: Method::Put,
                    path: format!("/cluster/mapping/pci/{}", req.name),
                    params: Vec::new(),
                };
                map_params(&mut r);
                if m.mdev != mdev {
                    r.params
                        .push(("mdev".into(), if mdev { "1" } else { "0" }.into()));
                }
                let digest = m.digest.clone().ok_or_else(|| {
                    invalid(format!(
                        "GET /cluster/mapping/pci/{} returned no digest: refusing to write without one",
                        req.name
                    ))
                })?;
                r.params.push(("digest".into(), digest));
                requests.push(r);
            } else {
                notes.push(format!("mapping {} is up to date", req.name));
            }
        }
    }
    if let Some(target) = &req.ha {
        requests.extend(plan_ha(c, ha_rules, &req.name, target, &after)?);
    }
    Ok(MapPlan {
        title: format!(
            "{} the PCI mapping {} for GPUs matching {:?}",
            if current.is_some() {
                "Refresh"
            } else {
                "Create"
            },
            req.name,
            req.selector
        ),
        before,
        after,
        mdev,
        requests,
        notes,
    })
}

fn plan_ha(
    c: &ClusterRead,
    rules: &[HaRule],
    name: &str,
    target: &HaTarget,
    after: &[String],
) -> Result<Vec<ApiRequest>, PlanError> {
    let guests = c.guests.as_ref().map_err(|e| {
        invalid(format!(
            "--ha needs the guests, which could not be read: {e}"
        ))
    })?;
    let vms: Vec<&super::GuestRead> = match target {
        HaTarget::Users => guests
            .iter()
            .filter(|g| {
                guest_refs(g)
                    .iter()
                    .any(|r| matches!(&r.target, Target::Mapping(m) if m == name))
            })
            .collect(),
        HaTarget::Vms(ids) => ids
            .iter()
            .map(|id| {
                guests
                    .iter()
                    .find(|g| g.entry.vmid == *id && g.entry.kind == GuestKind::Qemu)
                    .ok_or_else(|| invalid(format!("--ha: no VM {id} in the cluster")))
            })
            .collect::<Result<_, _>>()?,
    };
    if vms.is_empty() {
        return Err(invalid(format!(
            "--ha: no VM uses mapping {name} yet; name them: --ha VMID[,VMID...]"
        )));
    }
    if let Some(g) = vms.iter().find(|g| g.entry.hastate.is_none()) {
        return Err(invalid(format!(
            "--ha: VM {} is not managed by HA, and a node-affinity rule can only name HA \
             resources: add it first (ha-manager add vm:{})",
            g.entry.vmid, g.entry.vmid
        )));
    }
    let mut nodes: Vec<String> = after
        .iter()
        .filter_map(|r| parse_entry(r).ok())
        .map(|e| e.node)
        .collect();
    nodes.sort();
    nodes.dedup();
    let mut sids: Vec<String> = vms.iter().map(|g| g.entry.ha_sid()).collect();
    sids.sort();
    let rule_id = format!("passthru-{name}");
    for sid in &sids {
        if let Some(other) = rules
            .iter()
            .find(|r| r.rule != rule_id && r.resources.split(',').any(|x| x.trim() == sid))
        {
            return Err(invalid(format!(
                "--ha: {sid} is already in node-affinity rule {} (nodes {}), and HA allows one \
                 such rule per resource: set that rule's nodes to {} instead \
                 (ha-manager rules set node-affinity {} --nodes {})",
                other.rule,
                other.nodes.as_deref().unwrap_or("?"),
                nodes.join(","),
                other.rule,
                nodes.join(",")
            )));
        }
    }
    let resources = sids.join(",");
    let node_list = nodes.join(",");
    let ours = rules.iter().find(|r| r.rule == rule_id);
    let mut out = Vec::new();
    match ours {
        Some(r) => {
            let same_nodes = r.nodes.as_deref().map(|n| {
                let mut v: Vec<&str> = n.split(',').map(str::trim).collect();
                v.sort();
                v.join(",")
            }) == Some(node_list.clone());
            let mut have: Vec<&str> = r.resources.split(',').map(str::trim).collect();
            have.sort();
            if !same_nodes || have.join(",") != resources {
                let mut p = vec![
                    ("resources".to_string(), resources),
                    ("nodes".to_string(), node_list),
                    ("strict".to_string(), "1".to_string()),
                ];
                if let Some(d) = &r.digest {
                    p.push(("digest".into(), d.clone()));
                }
                out.push(ApiRequest {
                    method: Method::Put,
                    path: format!("/cluster/ha/rules/{rule_id}"),
                    params: p,
                });
            }
        }
        None => out.push(ApiRequest {
            method: Method::Post,
            path: "/cluster/ha/rules".into(),
            params: vec![
                ("type".into(), "node-affinity".into()),
                ("rule".into(), rule_id),
                ("resources".into(), resources),
                ("nodes".into(), node_list),
                ("strict".into(), "1".into()),
                (
                    "comment".into(),
                    format!("passthru: the nodes with an entry in PCI mapping {name}"),
                ),
            ],
        }),
    }
    Ok(out)
}
