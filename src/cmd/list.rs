//! `passthru list`: IOMMU groups and their devices, or each GPU with its group (`--gpus`).

use std::io::Write;

use anyhow::Result;

use passthru::check::{check_host, CheckRequest};
use passthru::model::ReadDetail;
use passthru::output::list::{build_gpus, build_list, render_gpus, render_list};
use passthru::output::list::{build_list as list_header, render_header};
use passthru::output::style::Style;
use passthru::output::tree::{build_tree, render_tree};

use super::{get_snapshot, write_json};
use crate::cli::{ListArgs, SourceArgs};

pub fn run(source: &SourceArgs, args: &ListArgs, style: Style, out: &mut dyn Write) -> Result<()> {
    if args.tree {
        return run_tree(source, style, out);
    }
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

/// `list --tree`: the host header, then the topology. The bridge chains, the host's own
/// devices and the verdicts need a full read (a summary holds no chains), and every GPU is
/// checked so that its verdicts and blockers show, as in `report`.
fn run_tree(source: &SourceArgs, style: Style, out: &mut dyn Write) -> Result<()> {
    let snap = get_snapshot(source, ReadDetail::Full)?;
    let check = check_host(&snap, &CheckRequest::default());
    render_header(out, &list_header(&snap), style)?;
    writeln!(out)?;
    render_tree(out, &snap, &build_tree(&snap, Some(&check)), style)?;
    Ok(())
}
