//! `passthru scan`: the whole host in one snapshot, as a summary, JSON, or an archive of the
//! files it was read from.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

use passthru::host;
use passthru::model::ReadDetail;
use passthru::output::style::sanitize;

use super::{get_snapshot, host_root, write_json};
use crate::cli::{ScanArgs, SourceArgs};

pub fn run(source: &SourceArgs, args: &ScanArgs, out: &mut dyn Write) -> Result<()> {
    if let Some(path) = &args.archive {
        return archive(source, path);
    }
    let snap = get_snapshot(source, ReadDetail::Full)?;
    if args.json {
        return write_json(out, &snap);
    }
    let issues: Vec<_> = snap.all_issues().collect();
    writeln!(
        out,
        "Read {} PCI functions ({} GPU), {} IOMMU groups, {} DRM cards from {}.",
        snap.devices.len(),
        snap.gpus().count(),
        snap.groups.len(),
        snap.drm.len(),
        sanitize(&snap.source.root)
    )?;
    if issues.is_empty() {
        writeln!(out, "Everything expected was readable.")?;
    } else {
        writeln!(
            out,
            "{} could not be read:",
            passthru::output::words::count(issues.len(), "thing", "things")
        )?;
        for i in issues {
            writeln!(out, "  {}: {}", sanitize(&i.path), sanitize(&i.problem))?;
        }
    }
    writeln!(
        out,
        "Use --json to save the snapshot, or --archive FILE.tar.gz for a bug report."
    )?;
    Ok(())
}

/// `--archive FILE.tar.gz`: the report goes to stderr, so stdout stays empty.
fn archive(source: &SourceArgs, path: &Path) -> Result<()> {
    let root = host_root(source)?;
    let summary = host::archive::write_archive(&root, path)
        .with_context(|| format!("archiving host root {}", root.path().display()))?;
    eprintln!(
        "passthru: wrote {}: {} files, {} links, {} directories; {} placeholders listed in UNREADABLE",
        path.display(),
        summary.files,
        summary.links,
        summary.dirs,
        summary.unreadable.len()
    );
    eprintln!(
        "passthru: it holds kernel, PCI and boot configuration only; read it before sharing."
    );
    Ok(())
}
