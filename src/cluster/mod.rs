//! `passthru cluster`: a Proxmox VE cluster's GPUs, the PCI resource mappings that name them,
//! and where a VM can run (issue 13, docs/cluster.md).
//!
//! The flow is the house one: [`read`] is the only part that talks to the cluster (through a
//! [`crate::pve::Transport`]) and returns a [`ClusterRead`], plain data; everything else is
//! a pure function of that data:
//! - [`inventory`]: the GPUs of each node (a card's functions, SR-IOV, mdev), which guests
//!   reference them and which mappings name them (`cluster list`);
//! - [`entry`]: mapping entries (`node=...,path=...,id=...`) and the check qemu-server makes
//!   of them at VM start, ported (`assert_valid`);
//! - [`check`]: findings over the whole cluster (`cluster check`);
//! - [`plan`]: the API requests that create or refresh a mapping, and the HA rule
//!   (`cluster map`);
//! - [`place`]: the nodes that could start a VM now, best first (`cluster place`).

pub mod check;
pub mod entry;
pub mod inventory;
pub mod place;
pub mod plan;
pub mod read;

use serde::Serialize;

use crate::pve::api::{GuestConfigMap, GuestEntry, MappingRecord, PciFunction};

/// Everything `cluster` commands read, as read. A part that could not be read holds its
/// error (the endpoint and what went wrong), and the rest is still there.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterRead {
    /// Where it was read from (`pvesh on this node`, `https://pve1:8006`).
    pub source: String,
    pub nodes: Vec<NodeRead>,
    /// The guests, or why `GET /cluster/resources` failed.
    pub guests: Result<Vec<GuestRead>, String>,
    /// The PCI mappings, or why `GET /cluster/mapping/pci` failed.
    pub mappings: Result<Vec<MappingRecord>, String>,
}

/// One node: its status from `GET /nodes` and its PCI functions.
#[derive(Debug, Clone, Serialize)]
pub struct NodeRead {
    pub node: String,
    /// `online`, `offline`, `unknown` (`GET /nodes`).
    pub status: String,
    /// Why its devices could not be read (offline, timeout, HTTP error); `None` when read.
    pub error: Option<String>,
    pub devices: Vec<PciFunction>,
}

impl NodeRead {
    /// Read, with its devices.
    pub fn is_read(&self) -> bool {
        self.error.is_none()
    }
}

/// One guest with its config, or why the config could not be read.
#[derive(Debug, Clone, Serialize)]
pub struct GuestRead {
    pub entry: GuestEntry,
    pub config: Result<GuestConfigMap, String>,
}

impl ClusterRead {
    pub fn node(&self, name: &str) -> Option<&NodeRead> {
        self.nodes.iter().find(|n| n.node == name)
    }
    pub fn guests(&self) -> &[GuestRead] {
        self.guests.as_deref().unwrap_or(&[])
    }
    pub fn mappings(&self) -> &[MappingRecord] {
        self.mappings.as_deref().unwrap_or(&[])
    }
    pub fn mapping(&self, id: &str) -> Option<&MappingRecord> {
        self.mappings().iter().find(|m| m.id == id)
    }
    /// Whether every part was read: `list` and `check` exit 1 otherwise.
    pub fn complete(&self) -> bool {
        self.nodes.iter().all(NodeRead::is_read)
            && self.guests.is_ok()
            && self.mappings.is_ok()
            && self.guests().iter().all(|g| g.config.is_ok())
    }
}
