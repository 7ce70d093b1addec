//! One module per command. Each reads what it needs (a snapshot, or the host's own files),
//! has the library plan (pure), shows the result, and for a writing command hands the plan to
//! `apply/`. What they share is here: where the host comes from, whether a snapshot can stand
//! in for it, the confirmation prompt, and the report of what was applied.

pub mod advise;
pub mod check;
pub mod docker;
pub mod list;
pub mod scan;

use std::io::Write;

use anyhow::Result;
use serde::Serialize;

use passthru::host::{self, HostRoot, PciIdsSource};
use passthru::model::{ReadDetail, Snapshot};
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
