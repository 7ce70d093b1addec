//! `passthru list`: IOMMU groups and their devices, or each GPU with its group (`--gpus`).

use std::io::Write;

use anyhow::Result;

use passthru::model::ReadDetail;
use passthru::output::list::{build_gpus, build_list, render_gpus, render_list};
use passthru::output::style::Style;

use super::{get_snapshot, write_json};
use crate::cli::{ListArgs, SourceArgs};

pub fn run(source: &SourceArgs, args: &ListArgs, style: Style, out: &mut dyn Write) -> Result<()> {
    // list shows only what a summary read holds, so it reads no more (docs/performance.md).
    let snap = get_snapshot(source, ReadDetail::Summary)?;
    match (args.gpus, args.json) {
        (true, true) => write_json(out, &build_gpus(&snap))?,
        (true, false) => render_gpus(out, &build_gpus(&snap), style)?,
        (false, true) => write_json(out, &build_list(&snap))?,
        (false, false) => render_list(out, &build_list(&snap), style)?,
    }
    Ok(())
}
