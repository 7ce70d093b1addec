//! The `passthru` binary: parse arguments, get a snapshot, run the command, print once.

mod cli;
mod cmd;
mod power_cmd;
mod write_cmd;

use std::cell::Cell;
use std::io::{self, Write};
use std::process::ExitCode;
use std::rc::Rc;

use anyhow::{Context, Result};
use clap::Parser;

use cli::{Cli, Command, LibvirtCommand, LxcCommand, MappingCommand, SetupCommand, VmCommand};
use passthru::model::ReadDetail;
use passthru::output::style::{sanitize, Style};

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
    match cmd::host_use(cmd) {
        cmd::HostUse::Changes { write, .. } if !write.dry_run => {
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

fn run(cli: &Cli, closed: &Rc<Cell<bool>>) -> Result<ExitCode> {
    cmd::refuse_snapshot_for(&cli.command, &cli.source)?;
    let style = Style::for_stdout(cli.color);
    let mut out = io::BufWriter::new(PipeWatch {
        inner: io::stdout().lock(),
        closed: Rc::clone(closed),
    });
    match &cli.command {
        Command::List(a) => cmd::list::run(&cli.source, a, style, &mut out)?,
        Command::Scan(a) => cmd::scan::run(&cli.source, a, &mut out)?,
        Command::Setup(cmd) => {
            let root = cmd::host_root(&cli.source)?;
            match cmd {
                SetupCommand::Vm(a) => {
                    let snap = cmd::get_snapshot(&cli.source, ReadDetail::Check)?;
                    let req = passthru::plan::setup::SetupRequest {
                        gpu: a.gpu.clone(),
                        boot_gpu: a.boot_gpu,
                        disable_idle_d3: a.disable_idle_d3,
                        force: a.force,
                    };
                    write_cmd::setup_vm(&root, &snap, &req, a.write, &mut out)?
                }
                SetupCommand::Host(a) => {
                    let snap = cmd::get_snapshot(&cli.source, ReadDetail::Check)?;
                    write_cmd::setup_host(&root, &snap, &a.gpu, a.write, &mut out)?
                }
                SetupCommand::Status => write_cmd::status(&root, &mut out)?,
            }
        }
        Command::Bind(a) | Command::Unbind(a) => {
            let root = cmd::host_root(&cli.source)?;
            let snap = cmd::get_snapshot(&cli.source, ReadDetail::Check)?;
            let plan = match &cli.command {
                Command::Bind(_) => passthru::plan::runtime::plan_bind(&snap, &a.gpu, a.force),
                _ => passthru::plan::runtime::plan_unbind(&snap, &a.gpu),
            }
            .map_err(anyhow::Error::msg)?;
            write_cmd::runtime(&root, &plan, a.write, &mut out)?
        }
        Command::Vm(cmd) => {
            let root = cmd::host_root(&cli.source)?;
            let snap = cmd::get_snapshot(&cli.source, ReadDetail::Check)?;
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
            let root = cmd::host_root(&cli.source)?;
            match cmd {
                MappingCommand::Create(a) => {
                    let snap = cmd::get_snapshot(&cli.source, ReadDetail::Check)?;
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
            let root = cmd::host_root(&cli.source)?;
            let snap = cmd::get_snapshot(&cli.source, ReadDetail::Check)?;
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
            let root = cmd::host_root(&cli.source)?;
            let snap = cmd::get_snapshot(&cli.source, ReadDetail::Check)?;
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
        Command::Docker(a) => cmd::docker::run(&cli.source, a, &mut out)?,
        Command::Advise(a) => cmd::advise::run(&cli.source, a, &mut out)?,
        Command::Power(a) => power_cmd::run(&cli.source, a, &mut out)?,
        Command::Rollback(a) => write_cmd::rollback(
            &cmd::host_root(&cli.source)?,
            a.id.as_deref(),
            a.write,
            &mut out,
        )?,
        Command::DebugApplyPlan(a) => {
            write_cmd::debug_apply(&cmd::host_root(&cli.source)?, &a.plan, a.write, &mut out)?
        }
        Command::Check(a) => {
            let ready = cmd::check::run(&cli.source, a, style, &mut out)?;
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
