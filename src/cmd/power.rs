//! `passthru power`: read every GPU's draw (never waking a sleeping one), show the yearly
//! cost, write the Prometheus textfile, or set runtime power management persistently.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, Result};

use passthru::advise::catalog;
use passthru::host::power::{read_gpu_power, saved_gpu_power};
use passthru::host::{HostRoot, RootFiles};
use passthru::model::{ReadDetail, Snapshot};
use passthru::output::power::{build_row, render_power, render_prometheus, PowerRow};
use passthru::plan::power::plan_runtime_pm;

use super::{change_host, get_snapshot, host_root, is_live, write_json};
use crate::cli::{PowerArgs, SourceArgs};

pub fn run(source: &SourceArgs, a: &PowerArgs, out: &mut dyn Write) -> Result<()> {
    let root = host_root(source)?;
    if let Some(mode) = &a.runtime_pm {
        return runtime_pm(source, &root, a, mode, out);
    }
    loop {
        let snap = get_snapshot(source, ReadDetail::Check)?;
        let rows = read_power_rows(source, &root, &snap, a.price_kwh);
        if a.json {
            let doc = passthru::output::documents::PowerDocument {
                schema_version: passthru::output::documents::DOCUMENT_SCHEMA_VERSION,
                gpus: rows.clone(),
            };
            if a.watch.is_some() {
                // JSON lines: one document a reading, each on its own line.
                serde_json::to_writer(&mut *out, &doc)?;
                writeln!(out)?;
            } else {
                write_json(out, &doc)?;
            }
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
        if !a.json {
            writeln!(out)?;
        }
    }
}

/// Every GPU's power row: read now from the host (never waking a sleeping GPU), or the
/// snapshot's own state with `--from`, priced with the catalog's idle figure when there is
/// no measurement. `report` shows the same rows.
pub fn read_power_rows(
    source: &SourceArgs,
    root: &HostRoot,
    snap: &Snapshot,
    price_kwh: f64,
) -> Vec<PowerRow> {
    let live = is_live(root);
    snap.gpus()
        .map(|g| {
            // --from has no live files: the snapshot's own state is all there is.
            let reading = if source.from.is_some() {
                saved_gpu_power(g)
            } else {
                read_gpu_power(root, g, Duration::from_millis(500), live)
            };
            let spec = g.vendor_device().and_then(|vd| catalog::gpu_by_pci_id(&vd));
            build_row(
                g.names.name.clone(),
                reading,
                spec.map(|s| s.idle_w),
                price_kwh,
            )
        })
        .collect()
}

/// A udev rule per GPU setting power/control at every boot, through the setup transaction.
fn runtime_pm(
    source: &SourceArgs,
    root: &HostRoot,
    a: &PowerArgs,
    mode: &str,
    out: &mut dyn Write,
) -> Result<()> {
    let sel = a.gpu.as_deref().unwrap_or_default();
    change_host(root, a.write(), out, || {
        let snap = get_snapshot(source, ReadDetail::Check)?;
        Ok(plan_runtime_pm(&snap, &RootFiles::new(root), sel, mode)?)
    })
}
