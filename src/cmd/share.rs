//! `passthru share vfs DEVICE --count N [--now]` and `share mdev PARENT --type T --count N
//! [--now]`: the VFs or mdevs at every boot (a file transaction) and, with `--now`, at once
//! (a runtime transaction after it). One lock, one question.

use std::io::Write;

use anyhow::{Context, Result};

use passthru::host::{HostRoot, RootFiles};
use passthru::model::ReadDetail;
use passthru::plan::diff::{render_plan, render_runtime_plan};
use passthru::plan::runtime::RuntimePlan;
use passthru::plan::share::{plan_share_vfs, plan_share_vfs_now, ShareVfsRequest};
use passthru::plan::share_mdev::{plan_share_mdev, plan_share_mdev_now, ShareMdevRequest};
use passthru::plan::Plan;

use super::{confirm, end_preview, get_snapshot, host_root, is_live, report, start, Start};
use crate::cli::{ShareCommand, SourceArgs, WriteArgs};

pub fn run(source: &SourceArgs, cmd: &ShareCommand, out: &mut dyn Write) -> Result<()> {
    let root = host_root(source)?;
    let files_of = RootFiles::new(&root);
    match cmd {
        ShareCommand::Vfs(a) => {
            let req = ShareVfsRequest {
                device: a.device.clone(),
                count: a.count,
            };
            run_plans(&root, a.write, out, || {
                // Full: the PF may be any device (a NIC, an NVMe), which a check read
                // leaves summary.
                let snap = get_snapshot(source, ReadDetail::Full)?;
                let files = plan_share_vfs(&snap, &files_of, &req)?;
                let now = if a.now {
                    Some(plan_share_vfs_now(&snap, &req)?)
                } else {
                    None
                };
                Ok((files, now))
            })
        }
        ShareCommand::Mdev(a) => {
            let req = ShareMdevRequest {
                parent: a.parent.clone(),
                mdev_type: a.mdev_type.clone(),
                count: a.count,
            };
            run_plans(&root, a.write, out, || {
                let snap = get_snapshot(source, ReadDetail::Full)?;
                let mut files = plan_share_mdev(&snap, &files_of, &req)?;
                let now = if a.now {
                    let (now, notes) = plan_share_mdev_now(&snap, &req)?;
                    files.notes.extend(notes);
                    Some(now)
                } else {
                    None
                };
                Ok((files, now))
            })
        }
    }
}

/// Shows a file plan and an optional runtime plan, asks once, and applies both under one
/// lock, the files first (what lasts), then the sysfs writes.
fn run_plans(
    root: &HostRoot,
    write: WriteArgs,
    out: &mut dyn Write,
    make: impl Fn() -> Result<(Plan, Option<RuntimePlan>)>,
) -> Result<()> {
    let live = is_live(root);
    let show = |out: &mut dyn Write, files: &_, now: &Option<_>| -> Result<()> {
        render_plan(out, files, live)?;
        if let Some(now) = now {
            writeln!(out)?;
            render_runtime_plan(out, now, live)?;
        }
        out.flush()?;
        Ok(())
    };
    let session = match start(root, write, out)? {
        Start::Preview { pending: true } => return end_preview(write, true, false),
        Start::Preview { pending: false } => {
            let (files, now) = make()?;
            show(out, &files, &now)?;
            let changes = !files.is_empty() || now.as_ref().is_some_and(|n| !n.is_empty());
            return end_preview(write, false, changes);
        }
        Start::Session(s) => s,
    };
    let (files, now) = make()?;
    show(out, &files, &now)?;
    let changes = !files.is_empty() || now.as_ref().is_some_and(|n| !n.is_empty());
    if !changes {
        return Ok(());
    }
    if !confirm(write)? {
        writeln!(out, "Not applied.")?;
        return Ok(());
    }
    if !files.is_empty() {
        let outcome = session
            .apply(&files)
            .with_context(|| format!("applying: {}", files.title))?;
        writeln!(out)?;
        report(out, &outcome, ("file", "files"))?;
    }
    if let Some(now) = now.filter(|n| !n.is_empty()) {
        let outcome = session
            .apply_runtime(&now)
            .with_context(|| format!("applying: {}", now.title))?;
        writeln!(out)?;
        report(out, &outcome, ("sysfs write", "sysfs writes"))?;
    }
    Ok(())
}
