//! `passthru bind|unbind`: move a GPU to vfio-pci now, or give it back to its host driver,
//! as a journaled transaction that `passthru rollback` undoes. It lasts until the next
//! reboot. Under a fixture root the attributes are written as plain files (a record of what
//! would happen), and modprobe is skipped.

use std::io::Write;

use anyhow::{Context, Result};

use passthru::apply::{self, ApplyOptions};
use passthru::model::ReadDetail;
use passthru::plan::diff::render_runtime_plan;
use passthru::plan::runtime::{plan_bind, plan_unbind};

use super::{confirm, get_snapshot, host_root, is_live, report};
use crate::cli::{BindArgs, SourceArgs};

/// Which way the GPU moves.
#[derive(Clone, Copy)]
pub enum Direction {
    Bind,
    Unbind,
}

pub fn run(
    source: &SourceArgs,
    a: &BindArgs,
    direction: Direction,
    out: &mut dyn Write,
) -> Result<()> {
    let root = host_root(source)?;
    let snap = get_snapshot(source, ReadDetail::Check)?;
    let plan = match direction {
        Direction::Bind => plan_bind(&snap, &a.gpu, a.force),
        Direction::Unbind => plan_unbind(&snap, &a.gpu),
    }
    .map_err(anyhow::Error::msg)?;
    let live = is_live(&root);
    render_runtime_plan(out, &plan, live)?;
    if plan.is_empty() {
        return Ok(());
    }
    out.flush()?;
    if a.write.dry_run || !confirm(a.write)? {
        return Ok(());
    }
    let outcome = apply::apply_runtime(root.path(), &plan, &ApplyOptions { run_commands: live })
        .with_context(|| format!("applying: {}", plan.title))?;
    report(out, &outcome, "sysfs write(s)")
}
