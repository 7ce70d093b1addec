//! The `passthru cluster` reports as text: list, check, place, and a map plan.
//!
//! Pure: a function of the data; every value from the cluster goes through [`sanitize`], since
//! names, descriptions and error messages come from another machine.

use std::io::{self, Write};

use crate::cluster::check::CheckReport;
use crate::cluster::inventory::{ClusterList, UseRef};
use crate::cluster::place::Placement;
use crate::cluster::plan::MapPlan;
use crate::pve::ApiRequest;

use super::style::sanitize;

fn use_line(u: &UseRef) -> String {
    format!(
        "{} {}{} ({}{}) {}",
        if u.kind == crate::pve::api::GuestKind::Qemu {
            "VM"
        } else {
            "CT"
        },
        u.vmid,
        u.name
            .as_deref()
            .map(|n| format!(" {n}"))
            .unwrap_or_default(),
        if u.running { "running" } else { "stopped" },
        if u.one_of {
            ", one of the mapping's entries"
        } else {
            ""
        },
        u.via
    )
}

/// `cluster list`.
pub fn render_cluster_list(out: &mut dyn Write, l: &ClusterList) -> io::Result<()> {
    writeln!(out, "Cluster read through {}", sanitize(&l.source))?;
    for n in &l.nodes {
        writeln!(out)?;
        match &n.error {
            Some(e) => writeln!(out, "{} ({}): not read: {}", n.node, n.status, sanitize(e))?,
            None => writeln!(
                out,
                "{} ({}): {} GPU{}",
                n.node,
                n.status,
                n.gpus.len(),
                if n.gpus.len() == 1 { "" } else { "s" }
            )?,
        }
        for g in &n.gpus {
            let name = match (&g.vendor_name, &g.name) {
                (Some(v), Some(d)) => format!(" {v} {d}"),
                (None, Some(d)) => format!(" {d}"),
                _ => String::new(),
            };
            writeln!(
                out,
                "  {} [{}:{}]{}",
                g.address,
                g.vendor,
                g.device,
                sanitize(&name)
            )?;
            let mut facts = vec![match &g.iommu_group {
                Some(x) => format!("IOMMU group {x}"),
                None => "no IOMMU group".to_string(),
            }];
            if let Some(s) = &g.subsystem {
                facts.push(format!("subsystem {s}"));
            }
            if g.functions.len() > 1 {
                let others: Vec<&str> = g.functions[1..]
                    .iter()
                    .map(|f| f.address.as_str())
                    .collect();
                facts.push(format!("with {}", others.join(", ")));
            }
            if g.mdev {
                facts.push("mdev-capable".into());
            }
            if let Some(p) = &g.physfn {
                facts.push(format!("SR-IOV VF of {p}"));
            }
            if !g.virtfns.is_empty() {
                facts.push(format!("{} SR-IOV VFs", g.virtfns.len()));
            }
            writeln!(out, "    {}", facts.join("; "))?;
            if !g.mappings.is_empty() {
                writeln!(out, "    mappings: {}", g.mappings.join(", "))?;
            }
            for u in &g.used_by {
                writeln!(out, "    used by {}", sanitize(&use_line(u)))?;
            }
        }
        for u in &n.device_nodes {
            writeln!(
                out,
                "  device nodes (which card is not known): {}",
                sanitize(&use_line(u))
            )?;
        }
    }
    if !l.mappings.is_empty() {
        writeln!(out)?;
        writeln!(out, "PCI mappings")?;
    }
    for m in &l.mappings {
        writeln!(
            out,
            "  {}{}{}",
            m.name,
            if m.mdev { " (mdev)" } else { "" },
            m.description
                .as_deref()
                .map(|d| format!("  {}", sanitize(d)))
                .unwrap_or_default()
        )?;
        for e in &m.entries {
            let state = match &e.problem {
                None => "ok".to_string(),
                Some(p) => sanitize(p),
            };
            writeln!(out, "    {} {}: {}", e.node, e.path, state)?;
        }
    }
    for e in &l.errors {
        writeln!(out)?;
        writeln!(out, "Not read: {}", sanitize(e))?;
    }
    Ok(())
}

/// `cluster check`.
pub fn render_cluster_check(out: &mut dyn Write, r: &CheckReport) -> io::Result<()> {
    writeln!(out, "Cluster read through {}", sanitize(&r.source))?;
    if r.findings.is_empty() {
        writeln!(
            out,
            "Every mapping entry matches its node's hardware, and every guest's GPU line names the card it did."
        )?;
    }
    for f in &r.findings {
        let sev = match f.severity {
            crate::check::Severity::Error => "error",
            crate::check::Severity::Warning => "warning",
            crate::check::Severity::Info => "info",
        };
        writeln!(out)?;
        writeln!(
            out,
            "{sev} [{}] {}{}: {}",
            f.rule,
            sanitize(&f.subject),
            f.node
                .as_deref()
                .map(|n| format!(" on {n}"))
                .unwrap_or_default(),
            sanitize(&f.message)
        )?;
        if !f.evidence.is_empty() {
            writeln!(out, "  read: {}", sanitize(&f.evidence))?;
        }
        if let Some(fix) = &f.fix {
            writeln!(out, "  fix: {}", sanitize(fix))?;
        }
    }
    Ok(())
}

/// `cluster place`.
pub fn render_placement(out: &mut dyn Write, p: &Placement) -> io::Result<()> {
    let what = match p.vmid {
        Some(v) => format!("VM {v}"),
        None => format!(
            "a VM using {}",
            p.needs.keys().cloned().collect::<Vec<_>>().join(", ")
        ),
    };
    if p.candidates.is_empty() {
        writeln!(out, "No node can start {what} now.")?;
    } else {
        writeln!(out, "Nodes that can start {what} now, best first:")?;
    }
    for c in &p.candidates {
        writeln!(
            out,
            "  {}{}: {} spare entr{} after it",
            c.node,
            if c.current { " (where it is now)" } else { "" },
            c.spare,
            if c.spare == 1 { "y" } else { "ies" }
        )?;
    }
    if !p.excluded.is_empty() {
        writeln!(out, "Left out:")?;
    }
    for e in &p.excluded {
        writeln!(out, "  {}: {}", e.node, sanitize(&e.reason))?;
    }
    Ok(())
}

/// A `cluster map` plan: the entries before and after, and the requests.
pub fn render_map_plan(out: &mut dyn Write, p: &MapPlan) -> io::Result<()> {
    writeln!(out, "{}", sanitize(&p.title))?;
    writeln!(out, "Entries{}:", if p.mdev { " (mdev 1)" } else { "" })?;
    for e in &p.before {
        if !p.after.contains(e) {
            writeln!(out, "- {}", sanitize(e))?;
        }
    }
    for e in &p.after {
        let mark = if p.before.contains(e) { ' ' } else { '+' };
        writeln!(out, "{mark} {}", sanitize(e))?;
    }
    for n in &p.notes {
        writeln!(out, "Note: {}", sanitize(n))?;
    }
    if p.requests.is_empty() {
        writeln!(out, "Nothing to change.")?;
    } else {
        writeln!(out, "Requests:")?;
        for r in &p.requests {
            writeln!(out, "  {}", render_request(r))?;
        }
    }
    Ok(())
}

/// A request as the plan shows it (no header, so no token).
pub fn render_request(r: &ApiRequest) -> String {
    let mut out = format!("{} /api2/json{}", r.method.http(), sanitize(&r.path));
    for (k, v) in &r.params {
        out.push_str(&format!("\n      {}={}", sanitize(k), sanitize(v)));
    }
    out
}
