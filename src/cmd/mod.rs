//! One module per command. Each reads what it needs (a snapshot, or the host's own files),
//! has the library plan (pure), shows the result, and for a writing command hands the plan to
//! `apply/`. What they share is here: where the host comes from, whether a snapshot can stand
//! in for it, the confirmation prompt, and the report of what was applied.

pub mod advise;
pub mod bind;
pub mod check;
pub mod debug_apply_plan;
pub mod docker;
pub mod libvirt;
pub mod list;
pub mod lxc;
pub mod mapping;
pub mod power;
pub mod rollback;
pub mod scan;
pub mod setup;
pub mod vm;

use std::io::{self, BufRead, IsTerminal, Write};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use passthru::apply::{self, ApplyOptions, ApplyOutcome, LockTarget};
use passthru::host::{self, HostRoot, PciIdsSource};
use passthru::model::{ReadDetail, Snapshot};
use passthru::plan::diff::render_plan;
use passthru::plan::Plan;
use passthru::snapshot_io::load_snapshot;

use crate::cli::{
    Command, LibvirtCommand, LxcCommand, MappingCommand, SetupCommand, SourceArgs, VmCommand,
    WriteArgs,
};

/// What a command does with the host it is pointed at; every command is named here, so a new
/// one cannot be added without saying whether a snapshot can stand in for the host.
pub enum HostUse {
    /// Works from what a snapshot holds: `--from` is as good as a host.
    Snapshot,
    /// Reads files of the host that a snapshot does not hold (guest configs, the journal).
    Files(&'static str),
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
        Command::List(_) | Command::Scan(_) | Command::Check(_) | Command::Advise(_) => {
            HostUse::Snapshot
        }
        Command::Power(a) => match &a.runtime_pm {
            Some(_) => changes("power --runtime-pm", &a.write),
            None => HostUse::Snapshot,
        },
        Command::Setup(SetupCommand::Vm(a)) => changes("setup vm", &a.write),
        Command::Setup(SetupCommand::Host(a)) => changes("setup host", &a.write),
        Command::Setup(SetupCommand::Status) => {
            HostUse::Files("setup status reads the host's journal (var/lib/passthru)")
        }
        Command::Rollback(a) => changes("rollback", &a.write),
        Command::Vm(VmCommand::Attach(a)) => changes("vm attach", &a.write),
        Command::Vm(VmCommand::Detach(a)) => changes("vm detach", &a.write),
        Command::Mapping(MappingCommand::Create(a)) => changes("mapping create", &a.write),
        Command::Mapping(MappingCommand::List) => {
            HostUse::Files("mapping list reads the host's etc/pve/mapping/pci.cfg")
        }
        Command::Lxc(LxcCommand::Share(a)) => changes("lxc share", &a.write),
        Command::Lxc(LxcCommand::Unshare(a)) => changes("lxc unshare", &a.write),
        Command::Libvirt(LibvirtCommand::Attach(a)) => changes("libvirt attach", &a.write),
        Command::Libvirt(LibvirtCommand::Detach(a)) => changes("libvirt detach", &a.write),
        Command::Bind(a) => changes("bind", &a.write),
        Command::Unbind(a) => changes("unbind", &a.write),
        Command::DebugApplyPlan(a) => changes("debug-apply-plan", &a.write),
        Command::Docker(_) => HostUse::Files("docker looks up the GPU's device nodes under dev/"),
    }
}

/// The one check that keeps a snapshot from standing in for a host: without it, a writing
/// command given `--from host.json` plans against, and writes to, this machine's own `/`.
pub fn refuse_snapshot_for(cmd: &Command, source: &SourceArgs) -> Result<()> {
    let Some(from) = &source.from else {
        return Ok(());
    };
    match host_use(cmd) {
        HostUse::Snapshot => Ok(()),
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

/// What was applied, and how to undo it. `unit`: what `o.written` counts (`file(s)`,
/// `sysfs write(s)`).
pub fn report(out: &mut dyn Write, o: &ApplyOutcome, unit: &str) -> Result<()> {
    for m in &o.recovered {
        writeln!(out, "Recovered: {m}")?;
    }
    match &o.id {
        None => writeln!(out, "Nothing to change.")?,
        Some(id) => {
            writeln!(
                out,
                "Applied as transaction {id} ({} {unit} written).",
                o.written.len()
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

/// Shows a plan, then applies it when confirmed. `guest`: the Proxmox guest whose own lock
/// the edit takes; it is taken only after the user confirmed (a prompt never holds it), and
/// the plan is re-checked under it.
pub fn show_and_apply(
    root: &HostRoot,
    plan: &Plan,
    guest: Option<LockTarget>,
    write: WriteArgs,
    out: &mut dyn Write,
) -> Result<()> {
    let run = is_live(root);
    render_plan(out, plan, run)?;
    out.flush()?;
    if write.dry_run || plan.is_empty() {
        return Ok(());
    }
    if !confirm(write)? {
        writeln!(out, "Not applied.")?;
        return Ok(());
    }
    let opts = ApplyOptions { run_commands: run };
    let outcome = match guest {
        None => apply::apply_plan(root.path(), plan, &opts),
        Some(guest) => apply::apply_plan_for_guest(root.path(), guest, plan, &opts),
    }
    .with_context(|| format!("applying: {}", plan.title))?;
    writeln!(out)?;
    report(out, &outcome, "file(s)")
}
