//! The `passthru` binary: parse arguments, get a snapshot, run the command, print once.

mod cli;
mod power_cmd;
mod write_cmd;

use std::cell::Cell;
use std::io::{self, Write};
use std::process::ExitCode;
use std::rc::Rc;

use anyhow::{Context, Result};
use clap::Parser;

use cli::{
    CheckArgs, Cli, Command, LibvirtCommand, ListArgs, LxcCommand, MappingCommand, ScanArgs,
    SetupCommand, SourceArgs, VmCommand, WriteArgs,
};
use passthru::check::{check_host, CheckRequest, Use, Verdict};
use passthru::host::{self, HostRoot, PciIdsSource};
use passthru::model::{ReadDetail, Snapshot};
use passthru::output::check::render_check;
use passthru::output::list::{build_gpus, build_list, render_gpus, render_list};
use passthru::output::style::{sanitize, Style};
use passthru::snapshot_io::load_snapshot;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let closed = Rc::new(Cell::new(false));
    match run(&cli, &closed) {
        Ok(code) => code,
        Err(err) => {
            if closed.get() {
                return closed_pipe_exit(&cli.command);
            }
            eprintln!("passthru: error: {}", sanitize(&format!("{err:#}")));
            ExitCode::from(2)
        }
    }
}

/// The reader of stdout went away (`passthru scan --json | head -1`). For output that is all
/// a command does, that is success: the reader had what it wanted. A command that changes the
/// host stops where its output failed (before applying, if the diff could not be shown), so
/// it must not claim success.
fn closed_pipe_exit(cmd: &Command) -> ExitCode {
    match host_use(cmd) {
        HostUse::Changes { write, .. } if !write.dry_run => {
            eprintln!(
                "passthru: error: standard output was closed while changing the host; \
                 it stopped there: `passthru setup status` lists what was applied"
            );
            ExitCode::from(2)
        }
        _ => ExitCode::SUCCESS,
    }
}

/// Stdout that remembers the reader closing it. The error itself cannot carry this to
/// `main`: serde_json's error hides the `io::Error` it wraps (its `source()` is the io error's
/// own source), and any `context` could hide it again, so the writer says it instead.
struct PipeWatch<W> {
    inner: W,
    closed: Rc<Cell<bool>>,
}

impl<W: Write> PipeWatch<W> {
    fn note<T>(&self, r: io::Result<T>) -> io::Result<T> {
        if let Err(e) = &r {
            if e.kind() == io::ErrorKind::BrokenPipe {
                self.closed.set(true);
            }
        }
        r
    }
}

impl<W: Write> Write for PipeWatch<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let r = self.inner.write(buf);
        self.note(r)
    }
    fn flush(&mut self) -> io::Result<()> {
        let r = self.inner.flush();
        self.note(r)
    }
}

/// What a command does with the host it is pointed at; every command is named here, so a new
/// one cannot be added without saying whether a snapshot can stand in for the host.
enum HostUse {
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

fn host_use(cmd: &Command) -> HostUse {
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
fn refuse_snapshot_for(cmd: &Command, source: &SourceArgs) -> Result<()> {
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

fn run(cli: &Cli, closed: &Rc<Cell<bool>>) -> Result<ExitCode> {
    refuse_snapshot_for(&cli.command, &cli.source)?;
    let style = Style::for_stdout(cli.color);
    let mut out = io::BufWriter::new(PipeWatch {
        inner: io::stdout().lock(),
        closed: Rc::clone(closed),
    });
    match &cli.command {
        Command::List(args) => cmd_list(&cli.source, args, style, &mut out)?,
        Command::Scan(args) => cmd_scan(&cli.source, args, &mut out)?,
        Command::Setup(cmd) => {
            let root = host_root(&cli.source)?;
            match cmd {
                SetupCommand::Vm(a) => {
                    let snap = get_snapshot(&cli.source, ReadDetail::Check)?;
                    let req = passthru::plan::setup::SetupRequest {
                        gpu: a.gpu.clone(),
                        boot_gpu: a.boot_gpu,
                        disable_idle_d3: a.disable_idle_d3,
                        force: a.force,
                    };
                    write_cmd::setup_vm(&root, &snap, &req, a.write, &mut out)?
                }
                SetupCommand::Host(a) => {
                    let snap = get_snapshot(&cli.source, ReadDetail::Check)?;
                    write_cmd::setup_host(&root, &snap, &a.gpu, a.write, &mut out)?
                }
                SetupCommand::Status => write_cmd::status(&root, &mut out)?,
            }
        }
        Command::Bind(a) | Command::Unbind(a) => {
            let root = host_root(&cli.source)?;
            let snap = get_snapshot(&cli.source, ReadDetail::Check)?;
            let plan = match &cli.command {
                Command::Bind(_) => passthru::plan::runtime::plan_bind(&snap, &a.gpu, a.force),
                _ => passthru::plan::runtime::plan_unbind(&snap, &a.gpu),
            }
            .map_err(anyhow::Error::msg)?;
            write_cmd::runtime(&root, &plan, a.write, &mut out)?
        }
        Command::Vm(cmd) => {
            let root = host_root(&cli.source)?;
            let snap = get_snapshot(&cli.source, ReadDetail::Check)?;
            let files = passthru::host::RootFiles(&root);
            let (vmid, plan, write) = match cmd {
                VmCommand::Attach(a) => {
                    let req = passthru::plan::attach::VmAttachRequest {
                        vmid: a.vmid,
                        gpu: a.gpu.clone(),
                        primary: a.primary,
                        mapping: a.mapping.clone(),
                        rombar: a.rombar,
                        romfile: a.romfile.clone(),
                        hidden: a.hidden,
                        force: a.force,
                    };
                    (
                        a.vmid,
                        passthru::plan::attach::plan_vm_attach(&snap, &files, &req)?,
                        a.write,
                    )
                }
                VmCommand::Detach(a) => (
                    a.vmid,
                    passthru::plan::attach::plan_vm_detach(&snap, &files, a.vmid, &a.gpu)?,
                    a.write,
                ),
            };
            let lock = passthru::apply::LockTarget::QemuGuest(vmid);
            write_cmd::apply_under_guest_lock(&root, lock, &plan, write, &mut out)?
        }
        Command::Mapping(cmd) => {
            let root = host_root(&cli.source)?;
            match cmd {
                MappingCommand::Create(a) => {
                    let snap = get_snapshot(&cli.source, ReadDetail::Check)?;
                    let plan = passthru::plan::attach::plan_mapping_create(
                        &snap,
                        &passthru::host::RootFiles(&root),
                        &a.name,
                        &a.gpu,
                    )?;
                    write_cmd::show_and_apply(&root, &plan, a.write, &mut out)?
                }
                MappingCommand::List => {
                    use passthru::plan::source::FileSource;
                    const PCI_CFG: &str = "etc/pve/mapping/pci.cfg";
                    // Absent is "no mappings"; present but unreadable or not text is an
                    // error, never an empty list.
                    let text = passthru::host::RootFiles(&root)
                        .read_text(PCI_CFG)
                        .with_context(|| format!("reading {}", root.join(PCI_CFG).display()))?
                        .unwrap_or_default();
                    let maps = passthru::formats::pve_config::parse_pci_mappings(&text)
                        .with_context(|| format!("reading {}", root.join(PCI_CFG).display()))?;
                    if maps.is_empty() {
                        writeln!(out, "No PCI resource mappings.")?;
                    }
                    for m in maps {
                        writeln!(
                            out,
                            "{}{}",
                            m.id,
                            m.description
                                .map(|d| format!("  ({d})"))
                                .unwrap_or_default()
                        )?;
                        for map in m.maps {
                            let kv: Vec<String> =
                                map.iter().map(|(k, v)| format!("{k}={v}")).collect();
                            writeln!(out, "  {}", kv.join(","))?;
                        }
                    }
                }
            }
        }
        Command::Lxc(cmd) => {
            let root = host_root(&cli.source)?;
            let snap = get_snapshot(&cli.source, ReadDetail::Check)?;
            let files = passthru::host::RootFiles(&root);
            let (ctid, plan, write) = match cmd {
                LxcCommand::Share(a) => {
                    let req = passthru::plan::attach::LxcShareRequest {
                        ctid: a.ctid,
                        gpu: a.gpu.clone(),
                        gid: a.gid,
                        kfd: a.kfd,
                    };
                    (
                        a.ctid,
                        passthru::plan::attach::plan_lxc_share(&snap, &files, &req)?,
                        a.write,
                    )
                }
                LxcCommand::Unshare(a) => (
                    a.ctid,
                    passthru::plan::attach::plan_lxc_unshare(&snap, &files, a.ctid, &a.gpu)?,
                    a.write,
                ),
            };
            let lock = passthru::apply::LockTarget::LxcGuest(ctid);
            write_cmd::apply_under_guest_lock(&root, lock, &plan, write, &mut out)?
        }
        Command::Libvirt(cmd) => {
            let root = host_root(&cli.source)?;
            let snap = get_snapshot(&cli.source, ReadDetail::Check)?;
            let files = passthru::host::RootFiles(&root);
            let (plan, write) = match cmd {
                LibvirtCommand::Attach(a) => {
                    let req = passthru::plan::attach::LibvirtAttachRequest {
                        domain: a.domain.clone(),
                        gpu: a.gpu.clone(),
                        romfile: a.romfile.clone(),
                        hidden: a.hidden,
                        force: a.force,
                    };
                    (
                        passthru::plan::attach::plan_libvirt_attach(&snap, &files, &req)?,
                        a.write,
                    )
                }
                LibvirtCommand::Detach(a) => (
                    passthru::plan::attach::plan_libvirt_detach(&snap, &files, &a.domain, &a.gpu)?,
                    a.write,
                ),
            };
            write_cmd::show_and_apply(&root, &plan, write, &mut out)?
        }
        Command::Docker(a) => {
            let root = host_root(&cli.source)?;
            let snap = get_snapshot(&cli.source, ReadDetail::Check)?;
            write!(
                out,
                "{}",
                passthru::plan::attach::docker_snippet(
                    &snap,
                    &passthru::host::RootFiles(&root),
                    &a.gpu
                )?
            )?;
        }
        Command::Advise(a) => {
            // With no --server, advise for the host read (live, --root or --from).
            // A host that cannot be read is an error, not a host without GPUs.
            let host_gpus = if a.server.is_none() {
                get_snapshot(&cli.source, ReadDetail::Summary)?
                    .gpus()
                    .filter_map(|g| g.vendor_device())
                    .collect()
            } else {
                Vec::new()
            };
            let req = passthru::advise::rank::AdviseRequest {
                use_case: a.use_case,
                model: a.model.clone(),
                quant: a.quant.clone(),
                context: a.context,
                streams: a.streams,
                budget_usd: a.budget,
                server: a.server.clone(),
                price_kwh: a.price_kwh,
                host_gpus,
                nvidia_driver: None,
            };
            let report = passthru::advise::rank::advise(&req).map_err(anyhow::Error::msg)?;
            if a.json {
                serde_json::to_writer_pretty(&mut out, &report)?;
                writeln!(out)?;
            } else {
                passthru::output::advise::render_advice(&mut out, &report, a.price_kwh)?;
            }
        }
        Command::Power(a) => power_cmd::run(&cli.source, a, &mut out)?,
        Command::Rollback(a) => {
            write_cmd::rollback(&host_root(&cli.source)?, a.id.as_deref(), a.write, &mut out)?
        }
        Command::DebugApplyPlan(a) => {
            write_cmd::debug_apply(&host_root(&cli.source)?, &a.plan, a.write, &mut out)?
        }
        Command::Check(args) => {
            let ready = cmd_check(&cli.source, args, style, &mut out)?;
            out.flush()?;
            return Ok(if ready {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn host_root(source: &SourceArgs) -> Result<HostRoot> {
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
pub(crate) fn get_snapshot(source: &SourceArgs, detail: ReadDetail) -> Result<Snapshot> {
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

fn cmd_list(source: &SourceArgs, args: &ListArgs, style: Style, out: &mut dyn Write) -> Result<()> {
    // list shows only what a summary read holds, so it reads no more (docs/performance.md).
    let snap = get_snapshot(source, ReadDetail::Summary)?;
    if args.gpus {
        let report = build_gpus(&snap);
        if args.json {
            serde_json::to_writer_pretty(&mut *out, &report)?;
            writeln!(out)?;
        } else {
            render_gpus(out, &report, style)?;
        }
    } else {
        let report = build_list(&snap);
        if args.json {
            serde_json::to_writer_pretty(&mut *out, &report)?;
            writeln!(out)?;
        } else {
            render_list(out, &report, style)?;
        }
    }
    Ok(())
}

/// Returns whether every selected GPU is ready for the judged use(s).
fn cmd_check(
    source: &SourceArgs,
    args: &CheckArgs,
    style: Style,
    out: &mut dyn Write,
) -> Result<bool> {
    let snap = get_snapshot(source, ReadDetail::Check)?;
    // A selector that names nothing in particular is an error listing the GPUs (exit 2); one
    // that names a GPU not here is reported as unmatched (exit 1).
    passthru::check::select_gpus(&snap, &args.gpus)?;
    let req = CheckRequest {
        gpus: args.gpus.clone(),
        force: args.force,
    };
    let report = check_host(&snap, &req);
    if args.json {
        serde_json::to_writer_pretty(&mut *out, &report)?;
        writeln!(out)?;
    } else {
        render_check(out, &report, &args.uses, style)?;
    }
    let judged: Vec<Use> = if args.uses.is_empty() {
        vec![Use::Vm]
    } else {
        args.uses.clone()
    };
    let ready = !report.gpus.is_empty()
        && report.unmatched.is_empty()
        && report.gpus.iter().all(|g| {
            judged
                .iter()
                .all(|u| g.verdicts.get(u) == Some(&Verdict::Ready))
        });
    Ok(ready)
}

fn cmd_scan(source: &SourceArgs, args: &ScanArgs, out: &mut dyn Write) -> Result<()> {
    if let Some(path) = &args.archive {
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
        return Ok(());
    }
    let snap = get_snapshot(source, ReadDetail::Full)?;
    if args.json {
        serde_json::to_writer_pretty(&mut *out, &snap)?;
        writeln!(out)?;
        return Ok(());
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
        writeln!(out, "{} thing(s) could not be read:", issues.len())?;
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
