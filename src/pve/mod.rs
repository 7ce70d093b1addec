//! Talking to a Proxmox VE cluster through its own API, and nothing else: never ssh, never an
//! agent on the nodes (issue 13, docs/cluster.md).
//!
//! Two transports give the same [`Transport`]:
//! - [`pvesh::Pvesh`], on a cluster node: runs `pvesh <get|create|set> PATH ... --output-format
//!   json` as an argv (no shell). pvesh runs the API handlers as root and proxies requests for
//!   other nodes itself.
//! - [`https::Https`], from anywhere: `https://HOST:8006/api2/json/PATH` with an API token
//!   from a file ([`token`]), TLS verified against the system's CAs or pinned to the SHA-256
//!   fingerprint `pvenode cert info` prints ([`fingerprint`]). No request leaves before the
//!   certificate is accepted, so a wrong pin never sees the token.
//!
//! [`api`] turns the JSON answers into typed records, accepting Perl's loose types
//! ([`loose`]). Everything here reads or writes through the API only; the decisions are made
//! in [`crate::cluster`], from the data.

pub mod api;
pub mod fingerprint;
pub mod https;
pub mod loose;
pub mod pvesh;
pub mod token;

use std::fmt;
use std::time::Duration;

/// An API method, by the HTTP verb; pvesh calls them `get`, `create` and `set`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
}

impl Method {
    pub fn http(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
        }
    }
    pub fn pvesh(self) -> &'static str {
        match self {
            Method::Get => "get",
            Method::Post => "create",
            Method::Put => "set",
        }
    }
}

/// One API call: method, path below `/api2/json` and parameters in order. A parameter given
/// more than once is an array (`map=a&map=b`, `--map a --map b`), as Proxmox reads it
/// (PROXMOX-API.md §1.0, §2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiRequest {
    pub method: Method,
    pub path: String,
    pub params: Vec<(String, String)>,
}

impl ApiRequest {
    pub fn get(path: impl Into<String>) -> Self {
        ApiRequest {
            method: Method::Get,
            path: path.into(),
            params: Vec::new(),
        }
    }
    pub fn param(mut self, k: &str, v: impl Into<String>) -> Self {
        self.params.push((k.to_string(), v.into()));
        self
    }
    /// `GET /nodes/pve1/hardware/pci`: how errors and messages name the call.
    pub fn endpoint(&self) -> String {
        format!("{} {}", self.method.http(), self.path)
    }
}

impl fmt::Display for ApiRequest {
    /// The request as `--dry-run` shows it: method, path, then one `key=value` per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} /api2/json{}", self.method.http(), self.path)?;
        for (k, v) in &self.params {
            write!(f, "\n    {k}={v}")?;
        }
        Ok(())
    }
}

/// Why a call failed. Each variant names the endpoint; none carries the token (the HTTPS
/// client never puts it anywhere but the request header).
#[derive(Debug, Clone, thiserror::Error)]
pub enum PveError {
    /// The API answered with an error status. 595 is pveproxy's own "could not reach the
    /// node it proxies to" (the node is down or unreachable).
    #[error("{endpoint}: HTTP {status}: {message}")]
    Status {
        endpoint: String,
        status: u16,
        message: String,
    },
    /// No complete answer within the per-node timeout.
    #[error("{endpoint}: no answer within {} s (--timeout)", timeout.as_secs_f64())]
    Timeout { endpoint: String, timeout: Duration },
    /// The server's certificate is not the pinned one: nothing was sent to it.
    #[error(
        "{host}: the server's TLS certificate has fingerprint {seen}, not the pinned {pinned}; \
         nothing was sent (compare with `pvenode cert info` on the node)"
    )]
    FingerprintMismatch {
        host: String,
        seen: String,
        pinned: String,
    },
    /// The certificate does not verify against the system's CAs: nothing was sent.
    #[error(
        "{host}: the server's TLS certificate is not trusted by the system's CAs ({detail}); \
         nothing was sent. If `pvenode cert info` on the node shows fingerprint {seen}, pin \
         it with --fingerprint {seen}"
    )]
    Untrusted {
        host: String,
        detail: String,
        seen: String,
    },
    /// Connecting, TLS or reading failed.
    #[error("{endpoint}: {detail}")]
    Connection { endpoint: String, detail: String },
    /// `pvesh` failed (or could not be run).
    #[error("{endpoint}: pvesh {detail}")]
    Pvesh { endpoint: String, detail: String },
    /// The answer is not the JSON shape the API documents.
    #[error("{endpoint}: unexpected answer: {detail}")]
    Decode { endpoint: String, detail: String },
}

impl PveError {
    /// Errors that are about the connection or the credentials, not one node: reading
    /// anything else would fail the same way (and a 401 costs 3 s each,
    /// `PVE/APIServer/AnyEvent.pm`), so the command stops.
    pub fn stops_everything(&self) -> bool {
        match self {
            PveError::FingerprintMismatch { .. } | PveError::Untrusted { .. } => true,
            PveError::Status { status, .. } => *status == 401,
            _ => false,
        }
    }

    /// A hint for the user about what to do, where the status says it.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            PveError::Status { status: 401, .. } => Some(
                "the API token was refused: check the token file (USER@REALM!TOKENID=SECRET) \
                 and that the token exists and has not expired (`pveum user token list USER`)",
            ),
            PveError::Status { status: 403, .. } => Some(
                "the token lacks a privilege: docs/cluster.md lists the least privileges \
                 each command needs",
            ),
            PveError::Status { status: 595, .. } => {
                Some("pveproxy could not reach the node (offline, or its pveproxy is down)")
            }
            _ => None,
        }
    }
}

/// Where API calls go. Implementations are shared between the per-node threads.
pub trait Transport: Sync {
    /// Makes one call and returns its `data` (pvesh prints it without the envelope).
    fn call(&self, req: &ApiRequest) -> Result<serde_json::Value, PveError>;
    /// `pvesh on this node` or `https://pve1:8006`, for messages.
    fn describe(&self) -> String;
}
