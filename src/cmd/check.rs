//! `passthru check`: one verdict per GPU and use, with the evidence and the fix.

use std::io::Write;

use anyhow::Result;

use passthru::check::{check_host, select_gpus, CheckRequest};
use passthru::model::ReadDetail;
use passthru::output::check::render_check;
use passthru::output::style::Style;

use super::{get_snapshot, write_json};
use crate::cli::{CheckArgs, SourceArgs};

/// Returns whether every judged GPU is ready for the judged use(s) ([`CheckReport::judged`]).
///
/// [`CheckReport::judged`]: passthru::check::CheckReport::judged
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
        render_check(out, &report, &args.uses, !args.gpus.is_empty(), style)?;
    }
    Ok(report.all_ready(&args.uses, !args.gpus.is_empty()))
}
