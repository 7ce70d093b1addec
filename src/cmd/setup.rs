//! `passthru setup vm|host|status`: prepare a GPU for VM passthrough or give it back to the
//! host, as one reviewed, reversible transaction; or list the journal and passthru's files.

use std::io::Write;

use anyhow::{Context, Result};

use passthru::apply;
use passthru::host::{HostRoot, RootFiles};
use passthru::model::ReadDetail;
use passthru::output::documents::{
    OwnFile, StatusDocument, TransactionSummary, DOCUMENT_SCHEMA_VERSION,
};
use passthru::output::words::count;
use passthru::plan::setup::{
    plan_setup_host, plan_setup_vm, SetupRequest, DRACUT_FILE, GRUB_DROPIN, MKINITCPIO_FILE,
    MODPROBE_FILE, UDEV_FILE,
};
use passthru::plan::source::FileSource;

use super::{change_host, get_snapshot, host_root};
use crate::cli::{SetupCommand, SourceArgs};

pub fn run(source: &SourceArgs, cmd: &SetupCommand, out: &mut dyn Write) -> Result<()> {
    let root = host_root(source)?;
    match cmd {
        SetupCommand::Vm(a) => change_host(&root, a.write, out, || {
            let snap = get_snapshot(source, ReadDetail::Check)?;
            let req = SetupRequest {
                gpu: a.gpu.clone(),
                boot_gpu: a.boot_gpu,
                disable_idle_d3: a.disable_idle_d3,
                force: a.force,
            };
            Ok(plan_setup_vm(&snap, &RootFiles::new(&root), &req)?)
        }),
        SetupCommand::Host(a) => change_host(&root, a.write, out, || {
            let snap = get_snapshot(source, ReadDetail::Check)?;
            Ok(plan_setup_host(&snap, &RootFiles::new(&root), &a.gpu)?)
        }),
        SetupCommand::Status(j) => status(&root, j.json, out),
    }
}

/// The transactions in the journal, then the files passthru writes as they are now.
fn status(root: &HostRoot, json: bool, out: &mut dyn Write) -> Result<()> {
    let txs = apply::list_transactions(root.path())?;
    if json {
        return status_json(root, &txs, out);
    }
    if txs.is_empty() {
        writeln!(out, "No passthru transactions on this host.")?;
    }
    for t in &txs {
        writeln!(
            out,
            "{}  {:<12} {}  ({})",
            t.id,
            format!("{:?}", t.state).to_lowercase(),
            t.title,
            if t.is_runtime() {
                count(t.runtime.len(), "sysfs write", "sysfs writes")
            } else {
                count(t.files.len(), "file", "files")
            }
        )?;
    }
    for f in read_own_files(root)? {
        writeln!(out, "\n{}:", f.path)?;
        for l in &f.lines {
            writeln!(out, "  {l}")?;
        }
    }
    Ok(())
}

/// passthru's own files as they are now, with their lines that are not comments. Absent is
/// not passthru's file on this host; unreadable is an error, never absent.
fn read_own_files(root: &HostRoot) -> Result<Vec<OwnFile>> {
    let files = RootFiles::new(root);
    let mut own = Vec::new();
    for f in [
        MODPROBE_FILE,
        UDEV_FILE,
        GRUB_DROPIN,
        DRACUT_FILE,
        MKINITCPIO_FILE,
    ] {
        let text = files
            .read_text(f)
            .with_context(|| format!("reading {}", root.join(f).display()))?;
        if let Some(text) = text {
            own.push(OwnFile {
                path: f.to_string(),
                lines: text
                    .lines()
                    .filter(|l| !l.starts_with('#'))
                    .map(str::to_string)
                    .collect(),
            });
        }
    }
    Ok(own)
}

/// `setup status --json`: the transactions (without their saved bytes or command output) and
/// passthru's own files with the lines that are not comments.
fn status_json(root: &HostRoot, txs: &[apply::Manifest], out: &mut dyn Write) -> Result<()> {
    let own = read_own_files(root)?;
    super::write_json(
        out,
        &StatusDocument {
            schema_version: DOCUMENT_SCHEMA_VERSION,
            transactions: txs.iter().map(TransactionSummary::of).collect(),
            files: own,
        },
    )
}
