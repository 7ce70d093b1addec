//! Reading a cluster: the only part of `cluster` that makes API calls.
//!
//! `GET /nodes` first, alone: it names the nodes, and a wrong certificate or a refused token
//! stops the command there, before any other request. Then, in parallel: the guests
//! (`/cluster/resources`), the mappings (`/cluster/mapping/pci`) and every node's PCI
//! functions (one thread per node); then every node's guest configs (one thread per node,
//! the configs of one node in turn). So the time is about three answers plus one node's
//! configs, whatever the number of nodes (docs/performance.md).
//!
//! Each call has the transport's timeout; a node that does not answer, answers an error
//! (595 from pveproxy for an unreachable node, 403, 500) or is offline keeps that error and
//! the others are read. Errors that are not about one node (the certificate, a 401) stop the
//! whole read.

use std::collections::BTreeMap;
use std::thread;

use super::{ClusterRead, GuestRead, NodeRead};
use crate::pve::api::{read_guest_config, read_guests, read_mappings, read_nodes, read_pci};
use crate::pve::{PveError, Transport};

/// The message kept for a failed call: the error, and what to do where the status says it.
pub fn describe_error(e: &PveError) -> String {
    match e.hint() {
        Some(h) => format!("{e} ({h})"),
        None => e.to_string(),
    }
}

/// Reads the cluster. `Err` only for what stops everything (see the module docs).
pub fn read_cluster(t: &dyn Transport) -> Result<ClusterRead, PveError> {
    let nodes = read_nodes(t)?;
    let (guests, mappings, devices) = thread::scope(|s| {
        let guests = s.spawn(|| read_guests(t));
        let mappings = s.spawn(|| read_mappings(t));
        let per_node: Vec<_> = nodes
            .iter()
            .map(|n| {
                let offline = n.status == "offline";
                let name = n.node.as_str();
                s.spawn(move || {
                    if offline {
                        None
                    } else {
                        Some(read_pci(t, name))
                    }
                })
            })
            .collect();
        let devices: Vec<_> = per_node
            .into_iter()
            .map(|h| h.join().expect("a node reader does not panic"))
            .collect();
        (
            guests.join().expect("the guest reader does not panic"),
            mappings.join().expect("the mapping reader does not panic"),
            devices,
        )
    });
    for r in [guests.as_ref().err(), mappings.as_ref().err()]
        .into_iter()
        .flatten()
        .chain(devices.iter().filter_map(|d| d.as_ref()?.as_ref().err()))
    {
        if r.stops_everything() {
            return Err(r.clone());
        }
    }
    let mut node_reads: Vec<NodeRead> = nodes
        .iter()
        .zip(devices)
        .map(|(n, d)| {
            let (error, devices) = match d {
                None => (
                    Some(format!(
                        "node {} is offline (GET /nodes says status offline)",
                        n.node
                    )),
                    Vec::new(),
                ),
                Some(Ok(d)) => (None, d),
                Some(Err(e)) => (Some(describe_error(&e)), Vec::new()),
            };
            NodeRead {
                node: n.node.clone(),
                status: n.status.clone(),
                error,
                devices,
            }
        })
        .collect();
    node_reads.sort_by(|a, b| a.node.cmp(&b.node));
    let guests = match guests {
        Ok(g) => Ok(read_configs(t, &node_reads, g)?),
        Err(e) => Err(describe_error(&e)),
    };
    Ok(ClusterRead {
        source: t.describe(),
        nodes: node_reads,
        guests,
        mappings: mappings.map_err(|e| describe_error(&e)),
    })
}

/// Every guest's config, one thread per node. Guests of a node that could not be read are
/// not asked for (the call would be proxied to the same node and fail the same way), and
/// templates never start, so they are left out.
fn read_configs(
    t: &dyn Transport,
    nodes: &[NodeRead],
    guests: Vec<crate::pve::api::GuestEntry>,
) -> Result<Vec<GuestRead>, PveError> {
    let mut by_node: BTreeMap<String, Vec<crate::pve::api::GuestEntry>> = BTreeMap::new();
    for g in guests.into_iter().filter(|g| !g.template) {
        by_node.entry(g.node.clone()).or_default().push(g);
    }
    let results: Vec<Vec<(crate::pve::api::GuestEntry, Result<_, PveError>)>> =
        thread::scope(|s| {
            let handles: Vec<_> = by_node
                .into_iter()
                .map(|(node, gs)| {
                    let node_error = nodes
                        .iter()
                        .find(|n| n.node == node)
                        .map(|n| n.error.clone())
                        .unwrap_or_else(|| Some(format!("node {node} is not in GET /nodes")));
                    s.spawn(move || {
                        gs.into_iter()
                            .map(|g| {
                                let r = match &node_error {
                                    Some(e) => Err(PveError::Connection {
                                        endpoint: format!(
                                            "GET /nodes/{}/{}/{}/config",
                                            g.node,
                                            g.kind.as_str(),
                                            g.vmid
                                        ),
                                        detail: format!("not asked: {e}"),
                                    }),
                                    None => read_guest_config(t, &g),
                                };
                                (g, r)
                            })
                            .collect()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a config reader does not panic"))
                .collect()
        });
    let mut out = Vec::new();
    for (g, r) in results.into_iter().flatten() {
        if let Err(e) = &r {
            if e.stops_everything() {
                return Err(e.clone());
            }
        }
        out.push(GuestRead {
            entry: g,
            config: r.map_err(|e| describe_error(&e)),
        });
    }
    out.sort_by_key(|g| g.entry.vmid);
    Ok(out)
}
