//! One module per command. Each reads what it needs (a snapshot, or the host's own files),
//! has the library plan (pure), shows the result, and for a writing command hands the plan to
//! `apply/`; a writing command first takes the host lock and undoes any interrupted
//! transaction ([`start`]), and only then reads the host to plan ([`change_host`]). What they share is here: where the host comes from, whether a snapshot can stand
//! in for it, the confirmation prompt, and the report of what was applied.

pub mod advise;
pub mod bind;
pub mod check;
pub mod cluster;
pub mod debug_apply_plan;
pub mod docker;
pub mod generate_assets;
pub mod incus;
pub mod libvirt;
pub mod list;
pub mod lxc;
pub mod mapping;
pub mod power;
pub mod report;
pub mod rollback;
pub mod scan;
pub mod setup;
pub mod share;
pub mod verify;
pub mod vm;

use std::io::{self, BufRead, IsTerminal, Write};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use passthru::apply::{self, ApplyOptions, ApplyOutcome};
use passthru::host::{self, HostRoot, PciIdsSource};
use passthru::model::{ReadDetail, Snapshot};
use passthru::output::plan::{plan_document, PlanDocument};
use passthru::plan::diff::render_plan;
use passthru::plan::Plan;
use passthru::snapshot_io::load_snapshot;

use crate::cli::{
    ClusterCommand, Command, LibvirtCommand, LxcCommand, MappingCommand, SetupCommand,
    ShareCommand, SourceArgs, VmCommand, WriteArgs,
};

/// What a command does with the host it is pointed at; every command is named here, so a new
/// one cannot be added without saying whether a snapshot can stand in for the host.
pub enum HostUse {
    /// Works from what a snapshot holds: `--from` is as good as a host.
    Snapshot,
    /// Reads files of the host that a snapshot does not hold (guest configs, the journal).
    Files(&'static str),
    /// Reads nothing of any host (it writes the man pages).
    Nothing,
    /// Changes the host.
    Changes {
        command: &'static str,
        write: WriteArgs,
    },
}

pub fn host_use(cmd: &Command) -> HostUse {
    let changes = |command, write: &WriteArgs| HostUse::Changes {
        command,
        write: *write,
    };
    match cmd {
        Command::List(_)
        | Command::Scan(_)
        | Command::Check(_)
        | Command::Advise(_)
        | Command::Report(_) => HostUse::Snapshot,
        Command::Power(a) => match &a.runtime_pm {
            Some(_) => changes("power --runtime-pm", &a.write()),
            None => HostUse::Snapshot,
        },
        Command::Setup(SetupCommand::Vm(a)) => changes("setup vm", &a.write),
        Command::Setup(SetupCommand::Host(a)) => changes("setup host", &a.write),
        Command::Setup(SetupCommand::Status(_)) => {
            HostUse::Files("setup status reads the host's journal (var/lib/passthru)")
        }
        Command::Rollback(a) => changes("rollback", &a.write),
        Command::Vm(VmCommand::Attach(a)) => changes("vm attach", &a.write),
        Command::Vm(VmCommand::Detach(a)) => changes("vm detach", &a.write),
        Command::Mapping(MappingCommand::Create(a)) => changes("mapping create", &a.write),
        Command::Mapping(MappingCommand::List(_)) => {
            HostUse::Files("mapping list reads the host's etc/pve/mapping/pci.cfg")
        }
        Command::Share(ShareCommand::Vfs(a)) => changes("share vfs", &a.write),
        Command::Share(ShareCommand::Mdev(a)) => changes("share mdev", &a.write),
        Command::Lxc(LxcCommand::Share(a)) => changes("lxc share", &a.write),
        Command::Lxc(LxcCommand::Unshare(a)) => changes("lxc unshare", &a.write),
        Command::Libvirt(LibvirtCommand::Attach(a)) => changes("libvirt attach", &a.write),
        Command::Libvirt(LibvirtCommand::Detach(a)) => changes("libvirt detach", &a.write),
        Command::Bind(a) => changes("bind", &a.write),
        Command::Unbind(a) => changes("unbind", &a.write),
        Command::DebugApplyPlan(a) => changes("debug-apply-plan", &a.write),
        Command::Docker(_) => HostUse::Files("docker looks up the GPU's device nodes under dev/"),
        Command::GenerateAssets(_) => HostUse::Nothing,
        Command::Verify(_) => HostUse::Files(
            "verify reads the host's journal (var/lib/passthru), boot files and modules",
        ),
        Command::Cluster(a) => match &a.command {
            ClusterCommand::Map(m) => changes("cluster map", &m.write),
            _ => HostUse::Files("cluster commands read a Proxmox cluster through its API"),
        },
        Command::Incus(_) => {
            HostUse::Files("incus looks up the GPU's device nodes and the render group")
        }
    }
}

/// The one check that keeps a snapshot from standing in for a host: without it, a writing
/// command given `--from host.json` plans against, and writes to, this machine's own `/`.
pub fn refuse_snapshot_for(cmd: &Command, source: &SourceArgs) -> Result<()> {
    let Some(from) = &source.from else {
        return Ok(());
    };
    match host_use(cmd) {
        HostUse::Snapshot | HostUse::Nothing => Ok(()),
        HostUse::Changes { command, .. } => anyhow::bail!(
            "{command} changes a host, and a snapshot is not a host to change (--from {}): \
             use --root DIR for a host tree, or neither option for this machine",
            from.display()
        ),
        HostUse::Files(what) => anyhow::bail!(
            "{what}, which a snapshot does not hold (--from {}): use --root DIR for a host \
             tree, or neither option for this machine",
            from.display()
        ),
    }
}

pub fn host_root(source: &SourceArgs) -> Result<HostRoot> {
    // Read here rather than by clap, so that a PASSTHRU_ROOT left in the environment does not
    // conflict with --from.
    let path = source
        .root
        .clone()
        .or_else(|| {
            std::env::var_os("PASSTHRU_ROOT")
                .filter(|v| !v.is_empty())
                .map(Into::into)
        })
        .unwrap_or_else(|| "/".into());
    Ok(HostRoot::new(path)?)
}

/// The snapshot every command works from: read live/under a root, or loaded with --from.
pub fn get_snapshot(source: &SourceArgs, detail: ReadDetail) -> Result<Snapshot> {
    if let Some(from) = &source.from {
        return Ok(load_snapshot(from)?);
    }
    let root = host_root(source)?;
    let ids_source = match &source.pci_ids {
        Some(p) => PciIdsSource::File(p.clone()),
        None => PciIdsSource::Search,
    };
    let ids = host::load_pci_ids(&root, &ids_source)?;
    Ok(host::read_snapshot(&root, ids.as_ref(), detail))
}

/// A report as pretty JSON and a newline: what every `--json` prints.
pub fn write_json(out: &mut dyn Write, value: &impl Serialize) -> Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)?;
    Ok(())
}

/// Whether commands run (and sysfs is the kernel's): only on this machine's own `/`. Under
/// any other root the host's commands are listed as skipped, never run.
pub fn is_live(root: &HostRoot) -> bool {
    apply::runtime::is_live_root(root.path())
}

/// Whether the change can be confirmed: `--yes`, or a terminal to ask on.
fn can_confirm(write: WriteArgs) -> bool {
    write.yes || io::stdin().is_terminal()
}

/// Asks before a change, unless `--yes`. Without a terminal to ask on, it is not applied.
pub fn confirm(write: WriteArgs) -> Result<bool> {
    if write.yes {
        return Ok(true);
    }
    if !io::stdin().is_terminal() {
        bail!("not applied: confirm with --yes (standard input is not a terminal), or look first with --dry-run");
    }
    eprint!("Apply this change? [y/N] ");
    let mut line = String::new();
    io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}

/// Where a writing command stands before it reads the host to plan.
pub enum Start {
    /// `--dry-run`, or no way to confirm: nothing is locked, recovered or written. `pending`:
    /// an interrupted transaction waits to be undone (already shown), so no plan is made.
    Preview { pending: bool },
    /// The host lock is held and every interrupted transaction undone (and said so): plan now.
    Session(apply::HostSession),
}

/// The first step of every writing command (docs/transactions.md): take passthru's host lock
/// and undo any transaction a crash interrupted, before a file is read to plan from. The lock
/// is held through the prompt, so no other passthru changes the host between the plan shown
/// and the plan applied (a second one is refused at once, naming the lock); Proxmox's guest
/// locks are taken only after the answer ([`apply::HostSession::apply`]).
///
/// A dry run (or a run that cannot be confirmed) recovers nothing, since it writes nothing:
/// when a transaction is pending it shows what its undo will do and makes no plan, since the
/// plan would be made from files that undo changes. The real run undoes first, then plans:
/// neither ever plans over an unfinished transaction.
pub fn start(root: &HostRoot, write: WriteArgs, out: &mut dyn Write) -> Result<Start> {
    if write.dry_run || !can_confirm(write) {
        if write.json {
            // stdout holds one JSON document: the words go to stderr, the ids into it.
            let ids: Vec<String> = apply::pending_undo(root.path())?
                .into_iter()
                .map(|p| p.id)
                .collect();
            show_pending(root, &mut io::stderr())?;
            if !ids.is_empty() {
                write_json(out, &PlanDocument::pending(&ids))?;
            }
            return Ok(Start::Preview {
                pending: !ids.is_empty(),
            });
        }
        let pending = show_pending(root, out)?;
        return Ok(Start::Preview { pending });
    }
    let session = apply::begin(root.path(), &ApplyOptions::for_root(root.path()))?;
    for m in session.recovered() {
        writeln!(out, "Recovered: {m}")?;
    }
    out.flush()?;
    Ok(Start::Session(session))
}

/// The end of a preview: a dry run stops there; a run that could not be confirmed is an
/// error when there was something to apply.
pub fn end_preview(write: WriteArgs, pending: bool, changes: bool) -> Result<()> {
    if write.dry_run || !(pending || changes) {
        return Ok(());
    }
    confirm(write).map(|_| ())
}

/// Shows every transaction a real run would undo first; whether there was one.
fn show_pending(root: &HostRoot, out: &mut dyn Write) -> Result<bool> {
    let pending = apply::pending_undo(root.path())?;
    let run = is_live(root);
    for p in &pending {
        writeln!(
            out,
            "Pending: transaction {} ({}) was interrupted and is not undone yet. A run without --dry-run undoes it first:",
            p.id, p.title
        )?;
        if p.runtime {
            writeln!(
                out,
                "  every setting and driver binding it touched is put back"
            )?;
        }
        for (path, state) in &p.files {
            let what = match state {
                apply::FileUndo::Restored => "put back as it was".to_string(),
                apply::FileUndo::Untouched | apply::FileUndo::AlreadyBack => {
                    "already as it was".to_string()
                }
                apply::FileUndo::Kept(why) => format!("left as it is ({why})"),
                apply::FileUndo::Failed(why) => format!("cannot be restored: {why}"),
            };
            writeln!(out, "  {path}: {what}")?;
        }
        for argv in &p.commands {
            let how = if run {
                ""
            } else {
                " (skipped: not the live host)"
            };
            writeln!(out, "  then again: {}{how}", argv.join(" "))?;
        }
    }
    if !pending.is_empty() {
        writeln!(
            out,
            "No plan is shown: it is made after that undo, from the files as they will be then. \
             Run the command without --dry-run: it undoes first, then shows its plan and asks."
        )?;
    }
    Ok(!pending.is_empty())
}

/// What was applied, and how to undo it. `unit`: what `o.written` counts (`file(s)`,
/// `sysfs write(s)`).
/// `unit`: what was written, one and many (`("file", "files")`).
pub fn report(out: &mut dyn Write, o: &ApplyOutcome, unit: (&str, &str)) -> Result<()> {
    for m in &o.recovered {
        writeln!(out, "Recovered: {m}")?;
    }
    match &o.id {
        None => writeln!(out, "Nothing to change.")?,
        Some(id) => {
            writeln!(
                out,
                "Applied as transaction {id} ({} written).",
                passthru::output::words::count(o.written.len(), unit.0, unit.1)
            )?;
            for (argv, code) in &o.commands_run {
                writeln!(out, "  ran {} (exit {code})", argv.join(" "))?;
            }
            for argv in &o.commands_skipped {
                writeln!(out, "  skipped (not the live host): {}", argv.join(" "))?;
            }
            writeln!(out, "Undo with: passthru rollback {id}")?;
        }
    }
    Ok(())
}

/// A file-editing command from start to end: lock and recover ([`start`]), then `make_plan`
/// (which reads the host: the snapshot and the files, as recovery left them), show, confirm,
/// and apply under the locks of the guest configs the plan edits.
pub fn change_host(
    root: &HostRoot,
    write: WriteArgs,
    out: &mut dyn Write,
    make_plan: impl FnOnce() -> Result<Plan>,
) -> Result<()> {
    let run = is_live(root);
    let session = match start(root, write, out)? {
        Start::Preview { pending: true } => return end_preview(write, true, false),
        Start::Preview { pending: false } => {
            let plan = make_plan()?;
            if write.json {
                write_json(out, &plan_document(&plan, run))?;
            } else {
                render_plan(out, &plan, run)?;
            }
            out.flush()?;
            return end_preview(write, false, !plan.is_empty());
        }
        Start::Session(s) => s,
    };
    let plan = make_plan()?;
    render_plan(out, &plan, run)?;
    out.flush()?;
    if plan.is_empty() {
        return Ok(());
    }
    if !confirm(write)? {
        writeln!(out, "Not applied.")?;
        return Ok(());
    }
    let outcome = session
        .apply(&plan)
        .with_context(|| format!("applying: {}", plan.title))?;
    writeln!(out)?;
    report(out, &outcome, ("file", "files"))
}
