//! The pvesh transport: Proxmox's own shell client, on a cluster node.
//!
//! `pvesh <get|create|set> PATH [--KEY VALUE]... --output-format json` (pve-manager
//! `PVE/CLI/pvesh.pm`): it runs the API handlers directly as root, without HTTP and without a
//! token, and proxies requests for other nodes to them itself. With `--output-format json` it
//! prints the result as one line of JSON without the `{"data": ...}` envelope, and nothing
//! for a `null` result (pve-common `CLIFormatter::print_api_result`). An array parameter is
//! the option repeated (`--map a --map b`).
//!
//! It is always run as an argv (`std::process::Command`), never through a shell, so no value
//! is ever parsed as shell syntax. A call that does not finish within the timeout is killed.

use std::io::Read;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::{ApiRequest, PveError, Transport};

/// The pvesh transport. `program` is `pvesh`, found on `PATH` as any command is.
#[derive(Debug, Clone)]
pub struct Pvesh {
    pub program: String,
    pub timeout: Duration,
}

impl Pvesh {
    pub fn new(timeout: Duration) -> Self {
        Pvesh {
            program: "pvesh".into(),
            timeout,
        }
    }
}

/// The arguments pvesh gets for `req` (after the program name).
pub fn pvesh_argv(req: &ApiRequest) -> Vec<String> {
    let mut argv = vec![req.method.pvesh().to_string(), req.path.clone()];
    for (k, v) in &req.params {
        argv.push(format!("--{k}"));
        argv.push(v.clone());
    }
    argv.push("--output-format".into());
    argv.push("json".into());
    argv
}

impl Transport for Pvesh {
    fn call(&self, req: &ApiRequest) -> Result<serde_json::Value, PveError> {
        let endpoint = req.endpoint();
        let fail = |detail: String| PveError::Pvesh {
            endpoint: endpoint.clone(),
            detail,
        };
        let mut child = Command::new(&self.program)
            .args(pvesh_argv(req))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    fail(
                        "is not on PATH: run passthru on a Proxmox VE node, or talk to one \
                         with --api https://HOST:8006 --token-file FILE"
                            .into(),
                    )
                } else {
                    fail(format!("could not be started: {e}"))
                }
            })?;
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let out_reader = thread::spawn(move || {
            let mut b = Vec::new();
            stdout.read_to_end(&mut b).map(|_| b)
        });
        let err_reader = thread::spawn(move || {
            let mut b = Vec::new();
            stderr.read_to_end(&mut b).map(|_| b)
        });
        let deadline = Instant::now() + self.timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) if Instant::now() >= deadline => {
                    // Kill only the child this call started, by its handle.
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(PveError::Timeout {
                        endpoint,
                        timeout: self.timeout,
                    });
                }
                Ok(None) => thread::sleep(Duration::from_millis(5)),
                Err(e) => return Err(fail(format!("waiting for it: {e}"))),
            }
        };
        let out = out_reader
            .join()
            .map_err(|_| fail("output reader panicked".into()))?
            .map_err(|e| fail(format!("reading its output: {e}")))?;
        let err = err_reader
            .join()
            .map_err(|_| fail("error reader panicked".into()))?
            .unwrap_or_default();
        if !status.success() {
            let text = String::from_utf8_lossy(&err);
            let text = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join("; ");
            let text = text.as_str();
            return Err(fail(format!(
                "failed ({status}): {}",
                if text.is_empty() {
                    "(no message)"
                } else {
                    text
                }
            )));
        }
        let text = String::from_utf8_lossy(&out);
        if text.trim().is_empty() {
            return Ok(serde_json::Value::Null);
        }
        // A task-starting call prints its UPID (proxmoxer's command backend treats that as
        // success); passthru's calls are synchronous, but a UPID is still an answer.
        if text.trim_start().starts_with("UPID:") {
            return Ok(serde_json::Value::String(text.trim().to_string()));
        }
        serde_json::from_str(text.trim()).map_err(|e| PveError::Decode {
            endpoint,
            detail: format!("pvesh printed something that is not JSON ({e})"),
        })
    }

    fn describe(&self) -> String {
        "pvesh on this node".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pve::Method;

    #[test]
    fn argv_is_verb_path_options_and_json_output() {
        let r = ApiRequest::get("/nodes/pve1/hardware/pci").param("pci-class-blacklist", "");
        assert_eq!(
            pvesh_argv(&r),
            [
                "get",
                "/nodes/pve1/hardware/pci",
                "--pci-class-blacklist",
                "",
                "--output-format",
                "json"
            ]
        );
        let w = ApiRequest {
            method: Method::Post,
            path: "/cluster/mapping/pci".into(),
            params: vec![
                ("id".into(), "gpu".into()),
                ("map".into(), "a".into()),
                ("map".into(), "b".into()),
            ],
        };
        assert_eq!(
            pvesh_argv(&w)[..8],
            [
                "create",
                "/cluster/mapping/pci",
                "--id",
                "gpu",
                "--map",
                "a",
                "--map",
                "b"
            ]
        );
    }
}
