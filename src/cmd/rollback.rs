//! `passthru rollback [ID]`: undo a transaction (the last one still in effect by default)
//! byte for byte, after showing what comes back.

use std::io::Write;

use anyhow::Result;

use passthru::apply;
use passthru::plan::runtime::Restore;

use super::{confirm, end_preview, host_root, report, start, Start};
use crate::cli::{RollbackArgs, SourceArgs};

pub fn run(source: &SourceArgs, a: &RollbackArgs, out: &mut dyn Write) -> Result<()> {
    let root = host_root(source)?;
    let id = a.id.as_deref();
    // Lock and recover first (a rollback interrupted by a crash is undone, so the
    // transaction it was rolling back is in effect again and is the one found below).
    let session = match start(&root, a.write, out)? {
        Start::Preview { pending: true } => return end_preview(a.write, true, false),
        Start::Preview { pending: false } => None,
        Start::Session(s) => Some(s),
    };
    // apply's own decision (recovery having run, or judged as it will leave things), so
    // that --dry-run refuses where --yes refuses, with the same words and exit code.
    let target = apply::rollback_target(root.path(), id, session.is_some())?;
    let t = &target;
    if a.write.json && session.is_none() {
        let mut restores: Vec<(String, String)> = t
            .files
            .iter()
            .map(|f| {
                let what = if f.original.is_some() {
                    "its saved contents"
                } else {
                    "removed (it did not exist)"
                };
                (f.path.clone(), what.to_string())
            })
            .collect();
        for d in &t.devices {
            restores.push((
                d.address.clone(),
                format!(
                    "back to driver {}, driver_override {}",
                    d.driver.as_deref().unwrap_or("none"),
                    d.driver_override.as_deref().unwrap_or("(null)")
                ),
            ));
        }
        let doc = passthru::output::plan::PlanDocument::rollback(
            format!("Roll back {} ({})", t.id, t.title),
            restores,
        );
        super::write_json(out, &doc)?;
        return end_preview(a.write, false, true);
    }
    writeln!(out, "Roll back {} ({}), restoring:", t.id, t.title)?;
    for f in &t.files {
        let what = if f.original.is_some() {
            "its saved contents"
        } else {
            "removed (it did not exist)"
        };
        writeln!(out, "  {}: {what}", f.path)?;
    }
    for d in &t.devices {
        writeln!(
            out,
            "  {}: back to driver {}, driver_override {}",
            d.address,
            d.driver.as_deref().unwrap_or("none"),
            d.driver_override.as_deref().unwrap_or("(null)")
        )?;
    }
    // A driver_override comes back with its device's line above.
    for r in t
        .runtime
        .iter()
        .filter(|r| r.restore == Restore::Value && !r.path.ends_with("/driver_override"))
    {
        if let Some(b) = &r.before {
            writeln!(out, "  /{}: back to {:?}", r.path, b.trim_end())?;
        }
    }
    // An action undone by its inverse (an mdev made is removed, one removed is made again),
    // when its object is still as the action left it.
    for r in &t.runtime {
        if let Restore::Inverse(u) = &r.restore {
            writeln!(
                out,
                "  /{}: {:?} written, undoing {:?} > /{} (if it still applies)",
                u.path,
                u.value.trim_end(),
                r.value.trim_end(),
                r.path
            )?;
        }
    }
    out.flush()?;
    let Some(session) = session else {
        return end_preview(a.write, false, true);
    };
    if !confirm(a.write)? {
        writeln!(out, "Not applied.")?;
        return Ok(());
    }
    let outcome = session.rollback(Some(&t.id))?;
    let unit = if t.is_runtime() {
        ("sysfs write", "sysfs writes")
    } else {
        ("file", "files")
    };
    report(out, &outcome, unit)
}
