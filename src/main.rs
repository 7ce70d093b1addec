//! The `passthru` binary: parse arguments, get a snapshot, run the command, print once.

mod cli;
mod power_cmd;
mod write_cmd;

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;

use cli::{
    CheckArgs, Cli, Command, LibvirtCommand, ListArgs, LxcCommand, MappingCommand, ScanArgs,
    SetupCommand, SourceArgs, VmCommand,
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
    match run(&cli) {
        Ok(code) => code,
        Err(err) => {
            // A closed pipe (`passthru list | head`) is not a failure.
            if err.chain().any(|e| {
                e.downcast_ref::<io::Error>()
                    .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("passthru: error: {}", sanitize(&format!("{err:#}")));
            ExitCode::from(2)
        }
    }
}

fn run(cli: &Cli) -> Result<ExitCode> {
    let style = Style::for_stdout(cli.color);
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    match &cli.command {
        Command::List(args) => cmd_list(&cli.source, args, style, &mut out)?,
        Command::Scan(args) => cmd_scan(&cli.source, args, &mut out)?,
        Command::Setup(cmd) => {
            let root = host_root(&cli.source)?;
            if cli.source.from.is_some() {
                anyhow::bail!("setup changes a host: it takes --root, not --from");
            }
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
                    let text = std::fs::read_to_string(root.join("etc/pve/mapping/pci.cfg"))
                        .unwrap_or_default();
                    let maps = passthru::formats::pve_config::parse_pci_mappings(&text)
                        .context("reading etc/pve/mapping/pci.cfg")?;
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
            let host_gpus = if a.server.is_none() {
                get_snapshot(&cli.source, ReadDetail::Summary)
                    .map(|s| s.gpus().filter_map(|g| g.vendor_device()).collect())
                    .unwrap_or_default()
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
