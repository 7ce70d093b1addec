//! passthru: read a home server's PCI devices, IOMMU groups, drivers and boot setup into one
//! snapshot, and (in later stages) judge, plan and apply GPU passthrough from it.
//!
//! The flow is read -> snapshot -> check -> plan -> apply. This crate keeps the stages in
//! separate modules with one direction of use:
//! - [`model`]: the snapshot types; pure data.
//! - [`host`]: the only code that reads the host, always below a [`host::HostRoot`].
//! - [`formats`]: pure `parse_*` functions for the text formats the host uses.
//! - [`pciids`]: names from pci.ids, formed as lspci forms them.
//! - [`assess`]: pure judgements shown by the reading commands.
//! - [`output`]: rendering to any `io::Write`.
//! - [`snapshot_io`]: loading a snapshot from `--from host.json`.
//! - [`pve`]: the Proxmox VE API client (pvesh or HTTPS with a token); the only code that
//!   talks to a cluster.
//! - [`cluster`]: pure judgements and plans over what [`pve`] read from a cluster.

pub mod advise;
pub mod apply;
pub mod assess;
pub mod check;
pub mod cluster;
pub mod formats;
pub mod host;
pub mod model;
pub mod output;
pub mod pciids;
pub mod plan;
pub mod pve;
pub mod snapshot_io;
pub mod state;
pub mod verify;
