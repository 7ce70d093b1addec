//! Reading a cluster: the only part of `cluster` that makes API calls.
//!
//! Two rounds of parallel calls, so the time is about two answers whatever the number of
//! nodes (docs/performance.md):
//! 1. `GET /nodes`, `GET /cluster/resources?type=vm` and `GET /cluster/mapping/pci`
//!    together. Each call completes its own TLS handshake before it sends anything, so a
//!    wrong certificate still stops every one of them before the token leaves; a wrong
//!    certificate or a refused token (401) stops the whole read here.
//! 2. For every node that `GET /nodes` does not call offline: its PCI functions and the
//!    configs of its guests, at most [`PER_NODE`] calls in flight per node.
//!
//! Each call has the transport's timeout; a node that does not answer, answers an error
//! (595 from pveproxy for an unreachable node, 403, 500) or is offline keeps that error and
//! the others are read.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;

use super::{ClusterRead, GuestRead, NodeRead};
use crate::pve::api::{
    read_guest_config, read_guests, read_mappings, read_nodes, read_pci, GuestConfigMap,
    GuestEntry, PciFunction,
};
use crate::pve::{PveError, Transport};

/// The message kept for a failed call: the error, and what to do where the status says it.
pub fn describe_error(e: &PveError) -> String {
    match e.hint() {
        Some(h) => format!("{e} ({h})"),
        None => e.to_string(),
    }
}

/// The most calls in flight for one node: its PCI list and guest configs.
pub const PER_NODE: usize = 4;

/// Reads the cluster. `Err` only for what stops everything (see the module docs).
pub fn read_cluster(t: &dyn Transport) -> Result<ClusterRead, PveError> {
    let (nodes, guests, mappings) = thread::scope(|s| {
        let guests = s.spawn(|| read_guests(t));
        let mappings = s.spawn(|| read_mappings(t));
        let nodes = read_nodes(t);
        (
            nodes,
            guests.join().expect("the guest reader does not panic"),
            mappings.join().expect("the mapping reader does not panic"),
        )
    });
    // The node list decides what else can be read; a connection or credential error on any
    // of the three is the same for every other call.
    for e in [guests.as_ref().err(), mappings.as_ref().err()]
        .into_iter()
        .flatten()
    {
        if e.stops_everything() {
            return Err(e.clone());
        }
    }
    let nodes = nodes?;
    let all_guests: Vec<GuestEntry> = match &guests {
        Ok(g) => g.iter().filter(|g| !g.template).cloned().collect(),
        Err(_) => Vec::new(),
    };
    let per_node: Vec<NodeAnswers> = thread::scope(|s| {
        let handles: Vec<_> = nodes
            .iter()
            .map(|n| {
                let mine: Vec<GuestEntry> = all_guests
                    .iter()
                    .filter(|g| g.node == n.node)
                    .cloned()
                    .collect();
                let offline = n.status == "offline";
                let name = n.node.as_str();
                s.spawn(move || {
                    if offline {
                        let not_asked = mine
                            .into_iter()
                            .map(|g| {
                                let e = not_asked(&g, &format!("node {name} is offline"));
                                (g, Err(e))
                            })
                            .collect();
                        return (None, not_asked);
                    }
                    read_node(t, name, mine)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a node reader does not panic"))
            .collect()
    });
    let mut node_reads = Vec::new();
    let mut configs = Vec::new();
    for (n, (pci, cfgs)) in nodes.iter().zip(per_node) {
        let (error, devices) = match pci {
            None => (
                Some(format!(
                    "node {} is offline (GET /nodes says status offline)",
                    n.node
                )),
                Vec::new(),
            ),
            Some(Ok(d)) => (None, d),
            Some(Err(e)) if e.stops_everything() => return Err(e),
            Some(Err(e)) => (Some(describe_error(&e)), Vec::new()),
        };
        node_reads.push(NodeRead {
            node: n.node.clone(),
            status: n.status.clone(),
            error,
            devices,
        });
        for (g, r) in cfgs {
            if let Err(e) = &r {
                if e.stops_everything() {
                    return Err(e.clone());
                }
            }
            configs.push(GuestRead {
                entry: g,
                config: r.map_err(|e| describe_error(&e)),
            });
        }
    }
    node_reads.sort_by(|a, b| a.node.cmp(&b.node));
    configs.sort_by_key(|g| g.entry.vmid);
    Ok(ClusterRead {
        source: t.describe(),
        nodes: node_reads,
        guests: guests.map(|_| configs).map_err(|e| describe_error(&e)),
        mappings: mappings.map_err(|e| describe_error(&e)),
    })
}

fn not_asked(g: &GuestEntry, why: &str) -> PveError {
    PveError::Connection {
        endpoint: format!(
            "GET /nodes/{}/{}/{}/config",
            g.node,
            g.kind.as_str(),
            g.vmid
        ),
        detail: format!("not asked: {why}"),
    }
}

type NodeAnswers = (
    Option<Result<Vec<PciFunction>, PveError>>,
    Vec<(GuestEntry, Result<GuestConfigMap, PveError>)>,
);

/// One node's PCI list and guest configs, [`PER_NODE`] calls at a time. Templates never
/// start, so their configs are not read (they were left out before).
fn read_node(t: &dyn Transport, node: &str, guests: Vec<GuestEntry>) -> NodeAnswers {
    enum Job {
        Pci,
        Config(usize),
    }
    enum Done {
        Pci(Result<Vec<PciFunction>, PveError>),
        Config(usize, Result<GuestConfigMap, PveError>),
    }
    let jobs: Vec<Job> = std::iter::once(Job::Pci)
        .chain((0..guests.len()).map(Job::Config))
        .collect();
    let next = AtomicUsize::new(0);
    let done: Mutex<Vec<Done>> = Mutex::new(Vec::new());
    thread::scope(|s| {
        for _ in 0..PER_NODE.min(jobs.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(job) = jobs.get(i) else { break };
                let d = match job {
                    Job::Pci => Done::Pci(read_pci(t, node)),
                    Job::Config(k) => Done::Config(*k, read_guest_config(t, &guests[*k])),
                };
                done.lock().expect("no reader panics holding it").push(d);
            });
        }
    });
    let mut pci = None;
    let mut cfgs: Vec<Option<Result<GuestConfigMap, PveError>>> =
        guests.iter().map(|_| None).collect();
    for d in done.into_inner().expect("no reader panicked") {
        match d {
            Done::Pci(r) => pci = Some(r),
            Done::Config(k, r) => cfgs[k] = Some(r),
        }
    }
    let cfgs = guests
        .into_iter()
        .zip(cfgs)
        .map(|(g, r)| {
            let r = r.unwrap_or_else(|| Err(not_asked(&g, "no reader took it")));
            (g, r)
        })
        .collect();
    (pci, cfgs)
}
