//! `passthru bind|unbind`: move a GPU to vfio-pci now, or give it back to its host driver,
//! as a journaled transaction that `passthru rollback` undoes. It lasts until the next
//! reboot. Under a fixture root the attributes are written as plain files (a record of what
//! would happen), and modprobe is skipped.

use std::io::Write;

use anyhow::{Context, Result};

use passthru::model::ReadDetail;
use passthru::plan::diff::render_runtime_plan;
use passthru::plan::runtime::{plan_bind, plan_unbind};

use super::{confirm, end_preview, get_snapshot, host_root, is_live, report, start, Start};
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
    let live = is_live(&root);
    // The devices are read after recovery: an interrupted bind put back first.
    let make_plan = || {
        let snap = get_snapshot(source, ReadDetail::Check)?;
        match direction {
            Direction::Bind => plan_bind(&snap, &a.gpu, a.force),
            Direction::Unbind => plan_unbind(&snap, &a.gpu),
        }
        .map_err(anyhow::Error::msg)
    };
    let session = match start(&root, a.write, out)? {
        Start::Preview { pending: true } => return end_preview(a.write, true, false),
        Start::Preview { pending: false } => {
            let plan = make_plan()?;
            if a.write.json {
                super::write_json(out, &passthru::output::plan::PlanDocument::runtime(&plan))?;
                out.flush()?;
                return end_preview(a.write, false, !plan.is_empty());
            }
            render_runtime_plan(out, &plan, live)?;
            out.flush()?;
            return end_preview(a.write, false, !plan.is_empty());
        }
        Start::Session(s) => s,
    };
    let plan = make_plan()?;
    render_runtime_plan(out, &plan, live)?;
    out.flush()?;
    if plan.is_empty() || !confirm(a.write)? {
        return Ok(());
    }
    let outcome = session
        .apply_runtime(&plan)
        .with_context(|| format!("applying: {}", plan.title))?;
    report(out, &outcome, ("sysfs write", "sysfs writes"))
}
