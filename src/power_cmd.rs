//! `passthru power`: read every GPU's draw (never waking a sleeping one), show the yearly
//! cost, write the Prometheus textfile, or set runtime power management persistently.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, Result};

use passthru::advise::catalog;
use passthru::host::power::read_gpu_power;
use passthru::model::ReadDetail;
use passthru::output::power::{build_row, render_power, render_prometheus, PowerRow};
use passthru::plan::power::plan_runtime_pm;

use crate::cli::{PowerArgs, SourceArgs};

pub fn run(source: &SourceArgs, a: &PowerArgs, out: &mut dyn Write) -> Result<()> {
    let root = crate::cmd::host_root(source)?;
    if let Some(mode) = &a.runtime_pm {
        return runtime_pm(source, &root, a, mode, out);
    }
    let live = passthru::apply::runtime::is_live_root(root.path());
    loop {
        let snap = crate::cmd::get_snapshot(source, ReadDetail::Check)?;
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
            // The textfile collector reads whole files: the one atomic write, never a torn file.
            passthru::apply::write_textfile(
                path,
                render_prometheus(&rows, a.price_kwh).as_bytes(),
                0o644,
            )
            .with_context(|| format!("writing the Prometheus textfile {}", path.display()))?;
        }
        out.flush()?;
        match a.watch {
            Some(secs) if secs > 0 => std::thread::sleep(Duration::from_secs(secs)),
            _ => return Ok(()),
        }
        writeln!(out)?;
    }
}

/// A udev rule per GPU setting power/control at every boot, through the setup transaction.
fn runtime_pm(
    source: &SourceArgs,
    root: &passthru::host::HostRoot,
    a: &PowerArgs,
    mode: &str,
    out: &mut dyn Write,
) -> Result<()> {
    let sel = a.gpu.as_deref().unwrap_or_default();
    let snap = crate::cmd::get_snapshot(source, ReadDetail::Check)?;
    let plan = plan_runtime_pm(&snap, &passthru::host::RootFiles(root), sel, mode)?;
    crate::write_cmd::show_and_apply(root, &plan, a.write, out)
}
