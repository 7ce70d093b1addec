//! `passthru power`: read every GPU's draw (never waking a sleeping one), show the yearly
//! cost, write the Prometheus textfile, or set runtime power management persistently.

use std::io::Write;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use passthru::advise::catalog;
use passthru::host::power::read_gpu_power;
use passthru::model::ReadDetail;
use passthru::output::power::{build_row, render_power, render_prometheus, PowerRow};
use passthru::plan::{FileEdit, Plan, PlannedCommand};

use crate::cli::{PowerArgs, SourceArgs};

pub fn run(source: &SourceArgs, a: &PowerArgs, out: &mut dyn Write) -> Result<()> {
    let root = crate::host_root(source)?;
    if let Some(mode) = &a.runtime_pm {
        return runtime_pm(source, &root, a, mode, out);
    }
    let live = std::fs::canonicalize(root.path()).is_ok_and(|p| p == std::path::Path::new("/"));
    loop {
        let snap = crate::get_snapshot(source, ReadDetail::Check)?;
        let rows: Vec<PowerRow> = snap
            .gpus()
            .map(|g| {
                // --from has no live files: the snapshot's own state is all there is.
                let reading = if source.from.is_some() {
                    passthru::host::power::PowerReading {
                        address: g.address.to_string(),
                        runtime_status: g.power.runtime_status.clone(),
                        power_state: g.power.state.clone(),
                        watts: None,
                        source: None,
                        unavailable: Some("read from a saved snapshot: no live figure".into()),
                    }
                } else {
                    read_gpu_power(&root, g, Duration::from_millis(500), live)
                };
                let spec = g.vendor_device().and_then(|vd| catalog::gpu_by_pci_id(&vd));
                build_row(
                    g.names.name.clone(),
                    reading,
                    spec.map(|s| s.idle_w),
                    a.price_kwh,
                )
            })
            .collect();
        if a.json {
            serde_json::to_writer_pretty(&mut *out, &rows)?;
            writeln!(out)?;
        } else {
            render_power(out, &rows, a.price_kwh)?;
        }
        if let Some(path) = &a.prometheus {
            // The textfile collector reads whole files: write a temporary one and rename it.
            let tmp = path.with_extension("prom.tmp");
            std::fs::write(&tmp, render_prometheus(&rows, a.price_kwh))
                .with_context(|| format!("writing {}", tmp.display()))?;
            std::fs::rename(&tmp, path)
                .with_context(|| format!("renaming into {}", path.display()))?;
        }
        out.flush()?;
        match a.watch {
            Some(secs) if secs > 0 => std::thread::sleep(Duration::from_secs(secs)),
            _ => return Ok(()),
        }
        writeln!(out)?;
    }
}

const RULES: &str = "etc/udev/rules.d/91-passthru-runtime-pm.rules";

/// A udev rule per GPU setting power/control at every boot, through the setup transaction.
fn runtime_pm(
    source: &SourceArgs,
    root: &passthru::host::HostRoot,
    a: &PowerArgs,
    mode: &str,
    out: &mut dyn Write,
) -> Result<()> {
    if mode != "on" && mode != "auto" {
        bail!("--runtime-pm takes on or auto, not '{mode}'");
    }
    let sel = a.gpu.as_deref().unwrap_or_default();
    let snap = crate::get_snapshot(source, ReadDetail::Check)?;
    let gpu = passthru::check::select_one(&snap, sel)?;
    let before = std::fs::read(root.join(RULES)).ok();
    let text = before
        .as_deref()
        .map(String::from_utf8_lossy)
        .unwrap_or_default()
        .into_owned();
    let tag = format!("KERNEL==\"{}\"", gpu.address);
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| !l.contains(&tag) && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    lines.push(format!(
        "ACTION==\"add\", SUBSYSTEM==\"pci\", {tag}, ATTR{{power/control}}=\"{mode}\""
    ));
    let after = format!(
        "# Written by passthru: runtime power management per GPU.\n{}\n",
        lines.join("\n")
    );
    let mut plan = Plan {
        title: format!(
            "Runtime power management {mode} for {} ({})",
            gpu.address, gpu.names.name
        ),
        ..Plan::default()
    };
    if Some(after.as_bytes()) != before.as_deref() {
        plan.edits.push(FileEdit {
            path: RULES.into(),
            before,
            after: Some(after.into_bytes()),
            new_mode: 0o644,
            reason: "set power/control at every boot".into(),
        });
        plan.commands.push(PlannedCommand {
            argv: vec![
                "udevadm".into(),
                "trigger".into(),
                "--action=add".into(),
                format!("/sys/bus/pci/devices/{}", gpu.address),
            ],
            why: "apply it now".into(),
        });
    }
    crate::write_cmd::show_and_apply(root, &plan, a.write, out)
}
