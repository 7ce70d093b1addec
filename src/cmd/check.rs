//! `passthru check`: one verdict per GPU and use, with the evidence and the fix.

use std::io::Write;

use anyhow::Result;

use passthru::check::{check_host, select_gpus, CheckReport, CheckRequest, Use, Verdict};
use passthru::model::ReadDetail;
use passthru::output::check::render_check;
use passthru::output::style::Style;

use super::{get_snapshot, write_json};
use crate::cli::{CheckArgs, SourceArgs};

/// Returns whether every selected GPU is ready for the judged use(s).
pub fn run(
    source: &SourceArgs,
    args: &CheckArgs,
    style: Style,
    out: &mut dyn Write,
) -> Result<bool> {
    let snap = get_snapshot(source, ReadDetail::Check)?;
    // A selector that names nothing in particular is an error listing the GPUs (exit 2); one
    // that names a GPU not here is reported as unmatched (exit 1).
    select_gpus(&snap, &args.gpus)?;
    let req = CheckRequest {
        gpus: args.gpus.clone(),
        force: args.force,
    };
    let report = check_host(&snap, &req);
    if args.json {
        write_json(out, &report)?;
    } else {
        render_check(out, &report, &args.uses, style)?;
    }
    Ok(all_ready(&report, &args.uses))
}

/// Every selected GPU is ready for every judged use (`vm` when none was named), and every
/// selector matched a GPU.
// This judgement belongs with check/ (a `CheckReport` method); it stays here only while
// that module is being reworked in parallel.
fn all_ready(report: &CheckReport, uses: &[Use]) -> bool {
    let judged: &[Use] = if uses.is_empty() { &[Use::Vm] } else { uses };
    !report.gpus.is_empty()
        && report.unmatched.is_empty()
        && report.gpus.iter().all(|g| {
            judged
                .iter()
                .all(|u| g.verdicts.get(u) == Some(&Verdict::Ready))
        })
}
