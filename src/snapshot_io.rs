//! Loading a snapshot saved by `passthru scan --json` (`--from host.json`).

use std::path::{Path, PathBuf};

use crate::model::{Snapshot, SCHEMA_VERSION};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("reading snapshot {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("snapshot {path} is not a passthru snapshot")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("snapshot {path} has schema_version {found}; this passthru reads version {SCHEMA_VERSION} (rescan with this version)")]
    Version { path: PathBuf, found: u64 },
}

/// Reads a snapshot, checking its schema version before anything else so that a newer
/// document gets a clear message instead of a field error.
pub fn load_snapshot(path: &Path) -> Result<Snapshot, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_snapshot(&text, path)
}

pub fn parse_snapshot(text: &str, path: &Path) -> Result<Snapshot, LoadError> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|source| LoadError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
    let found = value
        .get("schema_version")
        .and_then(|v| v.as_u64())
        .unwrap_or(0);
    if found != u64::from(SCHEMA_VERSION) {
        return Err(LoadError::Version {
            path: path.to_path_buf(),
            found,
        });
    }
    serde_json::from_value(value).map_err(|source| LoadError::Parse {
        path: path.to_path_buf(),
        source,
    })
}
