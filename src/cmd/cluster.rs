//! `passthru cluster list|check|map|place`: read the cluster through its API (`pve/`), judge
//! or plan from the data (`cluster/`), print (`output/cluster.rs`), and for `map` send the
//! planned requests after showing them.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use passthru::cluster::check::check_cluster;
use passthru::cluster::inventory::list_cluster;
use passthru::cluster::place::{place_mapping, place_vm};
use passthru::cluster::plan::{plan_map, HaTarget, MapRequest};
use passthru::cluster::read::{describe_error, read_cluster};
use passthru::cluster::ClusterRead;
use passthru::output::cluster::{
    render_cluster_check, render_cluster_list, render_map_plan, render_placement, render_request,
};
use passthru::output::style::Style;
use passthru::pve::api::{read_ha_node_rules, read_mapping};
use passthru::pve::fingerprint::parse_fingerprint;
use passthru::pve::https::{parse_api_url, Https, Trust};
use passthru::pve::pvesh::Pvesh;
use passthru::pve::token::{read_token_file, readable_by_others};
use passthru::pve::Transport;

use super::{confirm, write_json};
use crate::cli::{ClusterArgs, ClusterCommand, ClusterConnArgs, ClusterMapArgs};

/// The environment variable naming the token file when `--token-file` is not given.
pub const TOKEN_FILE_ENV: &str = "PASSTHRU_PVE_TOKEN_FILE";

/// Runs a cluster command; the exit code (README "Exit codes", `cluster --help`).
pub fn run(a: &ClusterArgs, _style: Style, out: &mut dyn Write) -> Result<u8> {
    let t = transport(&a.conn)?;
    let t = t.as_ref();
    match &a.command {
        ClusterCommand::List(l) => {
            let c = read(t)?;
            let list = list_cluster(&c);
            if l.json {
                write_json(out, &list)?;
            } else {
                render_cluster_list(out, &list)?;
            }
            Ok(if c.complete() { 0 } else { 1 })
        }
        ClusterCommand::Check(l) => {
            let c = read(t)?;
            let report = check_cluster(&c);
            if l.json {
                write_json(out, &report)?;
            } else {
                render_cluster_check(out, &report)?;
            }
            Ok(if report.ok { 0 } else { 1 })
        }
        ClusterCommand::Place(p) => {
            let c = read(t)?;
            let placement = match (&p.vmid, &p.mapping) {
                (Some(v), None) => place_vm(&c, *v)?,
                (None, Some(m)) => place_mapping(&c, m)?,
                _ => bail!("give a VMID or --mapping NAME, not both"),
            };
            if p.json {
                write_json(out, &placement)?;
            } else {
                render_placement(out, &placement)?;
            }
            Ok(if placement.candidates.is_empty() {
                1
            } else {
                0
            })
        }
        ClusterCommand::Map(m) => map(t, m, out).map(|()| 0),
    }
}

fn read(t: &dyn Transport) -> Result<ClusterRead> {
    read_cluster(t)
        .map_err(|e| anyhow::anyhow!(describe_error(&e)))
        .with_context(|| format!("reading the cluster through {}", t.describe()))
}

/// The transport the options ask for: HTTPS with a token for `--api`, pvesh otherwise.
fn transport(conn: &ClusterConnArgs) -> Result<Box<dyn Transport>> {
    if !(conn.timeout.is_finite() && conn.timeout > 0.0 && conn.timeout <= 3600.0) {
        bail!(
            "--timeout {}: give seconds between 0 and 3600",
            conn.timeout
        );
    }
    let timeout = Duration::from_secs_f64(conn.timeout);
    let Some(url) = &conn.api else {
        if conn.token_file.is_some() || conn.fingerprint.is_some() {
            bail!(
                "--token-file and --fingerprint are for --api https://HOST:8006; without --api \
                 passthru runs pvesh on this node, as root, which needs neither"
            );
        }
        return Ok(Box::new(Pvesh::new(timeout)));
    };
    let (host, port) = parse_api_url(url).map_err(anyhow::Error::msg)?;
    let token_path: PathBuf = match &conn.token_file {
        Some(p) => p.clone(),
        None => match std::env::var_os(TOKEN_FILE_ENV).filter(|v| !v.is_empty()) {
            Some(p) => p.into(),
            None => bail!(
                "--api needs an API token: --token-file FILE or {TOKEN_FILE_ENV}=FILE, the file \
                 holding one line USER@REALM!TOKENID=SECRET (a token is never taken from the \
                 command line, where `ps` shows it)"
            ),
        },
    };
    let token = read_token_file(&token_path)?;
    if readable_by_others(&token_path) {
        eprintln!(
            "passthru: warning: the token file {} can be read by other users (chmod 600 it)",
            token_path.display()
        );
    }
    let trust = match &conn.fingerprint {
        Some(f) => Trust::Pinned(parse_fingerprint(f)?),
        None => Trust::SystemCas,
    };
    let https = Https::new(host, port, trust, token, timeout).map_err(anyhow::Error::msg)?;
    Ok(Box::new(https))
}

fn map(t: &dyn Transport, a: &ClusterMapArgs, out: &mut dyn Write) -> Result<()> {
    let c = read(t)?;
    let current = read_mapping(t, &a.name)
        .map_err(|e| anyhow::anyhow!(describe_error(&e)))
        .with_context(|| format!("reading mapping {}", a.name))?;
    let ha = a.ha.as_ref().map(|v| {
        if v.is_empty() {
            HaTarget::Users
        } else {
            HaTarget::Vms(v.clone())
        }
    });
    let rules = match ha {
        Some(_) => read_ha_node_rules(t)
            .map_err(|e| anyhow::anyhow!(describe_error(&e)))
            .context("reading the HA rules for --ha")?,
        None => Vec::new(),
    };
    let req = MapRequest {
        name: a.name.clone(),
        selector: a.gpu.clone(),
        nodes: (!a.nodes.is_empty()).then(|| a.nodes.clone()),
        ha,
    };
    let plan = plan_map(&c, current.as_ref(), &rules, &req)?;
    render_map_plan(out, &plan)?;
    out.flush()?;
    if a.write.dry_run || plan.requests.is_empty() {
        return Ok(());
    }
    if !confirm(a.write)? {
        writeln!(out, "Not applied.")?;
        return Ok(());
    }
    for (i, r) in plan.requests.iter().enumerate() {
        if let Err(e) = t.call(r) {
            let done: Vec<String> = plan.requests[..i].iter().map(render_request).collect();
            bail!(
                "{}{}",
                describe_error(&e),
                if done.is_empty() {
                    " (nothing was changed)".to_string()
                } else {
                    format!("; already applied: {}", done.join("; "))
                }
            );
        }
        writeln!(out, "Done: {} {}", r.method.http(), r.path)?;
    }
    let now = read_mapping(t, &a.name)
        .map_err(|e| anyhow::anyhow!(describe_error(&e)))
        .context("verifying the mapping")?;
    match now {
        Some(m) if m.map == plan.after => writeln!(
            out,
            "Verified: GET /cluster/mapping/pci/{} has the {} planned entr{}.",
            a.name,
            m.map.len(),
            if m.map.len() == 1 { "y" } else { "ies" }
        )?,
        Some(m) => bail!(
            "the mapping {} was written, but reading it back gives other entries: {}",
            a.name,
            m.map.join(" ; ")
        ),
        None => bail!(
            "the mapping {} was written, but reading it back finds none",
            a.name
        ),
    }
    Ok(())
}
