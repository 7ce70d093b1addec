//! The JSON documents of the commands that print a listing (`setup status`, `mapping list`,
//! `docker`, `power`), as types: what `--json` prints is exactly these, and the schema
//! (`output::schema`) is made from them. Pure.

use serde::Serialize;

use crate::apply::{Manifest, TxState};
use crate::model::PciAddress;
use crate::plan::Prepared;

use super::power::PowerRow;

/// The version of these documents.
pub const DOCUMENT_SCHEMA_VERSION: u32 = 1;

/// `setup status --json`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct StatusDocument {
    pub schema_version: u32,
    /// The journal's transactions, oldest first.
    pub transactions: Vec<TransactionSummary>,
    /// passthru's own files on the host, with their lines that are not comments.
    pub files: Vec<OwnFile>,
}

/// A transaction without its saved bytes or command output.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct TransactionSummary {
    pub id: String,
    pub state: TxState,
    /// `apply`, `runtime` or `rollback`.
    pub kind: String,
    pub title: String,
    /// UTC, ISO 8601.
    pub created: String,
    /// The files it changed, relative to the root.
    pub files: Vec<String>,
    pub sysfs_writes: usize,
    pub prepared: Vec<Prepared>,
}

impl TransactionSummary {
    pub fn of(t: &Manifest) -> Self {
        TransactionSummary {
            id: t.id.clone(),
            state: t.state,
            kind: t.kind.clone(),
            title: t.title.clone(),
            created: t.created.clone(),
            files: t.files.iter().map(|f| f.path.clone()).collect(),
            sysfs_writes: t.runtime.len(),
            prepared: t.prepared.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct OwnFile {
    pub path: String,
    pub lines: Vec<String>,
}

/// `mapping list --json`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct MappingListDocument {
    pub schema_version: u32,
    pub mappings: Vec<MappingDoc>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct MappingDoc {
    /// The id VMs name with `mapping=ID`.
    pub id: String,
    pub description: Option<String>,
    /// Each `map` line's `key=value` pairs, in order.
    pub maps: Vec<Vec<(String, String)>>,
}

/// `docker GPU --json`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct DockerDocument {
    pub schema_version: u32,
    pub gpu: PciAddress,
    /// On the NVIDIA driver: the container toolkit gives the GPU, not device nodes.
    pub nvidia: bool,
    /// The GPU's device nodes (`/dev/dri/renderD128` ...).
    pub device_nodes: Vec<String>,
    /// The compose and CLI lines, as the text output prints them.
    pub snippet: String,
}

/// `power --json` (with `--watch`, one of these a line).
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct PowerDocument {
    pub schema_version: u32,
    pub gpus: Vec<PowerRow>,
}
