//! The `passthru` binary: parse the arguments, run the command (`cmd/`, one file each), print
//! an error once, and pick the exit code (README "Exit codes").

mod cli;
mod cmd;

use std::cell::Cell;
use std::io::{self, Write};
use std::process::ExitCode;
use std::rc::Rc;

use anyhow::Result;
use clap::Parser;

use cli::{Cli, Command};
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
        cmd::HostUse::Changes { command, write } if !write.dry_run && command == "cluster map" => {
            eprintln!(
                "passthru: error: standard output was closed while writing to the cluster; \
                 it stopped there: `passthru cluster list` shows the mappings as they are now"
            );
            ExitCode::from(2)
        }
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
    let source = &cli.source;
    match &cli.command {
        Command::List(a) => cmd::list::run(source, a, style, &mut out)?,
        Command::Scan(a) => cmd::scan::run(source, a, &mut out)?,
        Command::Check(a) => {
            let ready = cmd::check::run(source, a, style, &mut out)?;
            out.flush()?;
            return Ok(if ready {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
        Command::Verify(a) => {
            let holds = cmd::verify::run(source, a, &mut out)?;
            out.flush()?;
            return Ok(if holds {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
        Command::Cluster(a) => {
            let code = cmd::cluster::run(a, style, &mut out)?;
            out.flush()?;
            return Ok(ExitCode::from(code));
        }
        Command::Setup(c) => cmd::setup::run(source, c, &mut out)?,
        Command::Rollback(a) => cmd::rollback::run(source, a, &mut out)?,
        Command::Bind(a) => cmd::bind::run(source, a, cmd::bind::Direction::Bind, &mut out)?,
        Command::Unbind(a) => cmd::bind::run(source, a, cmd::bind::Direction::Unbind, &mut out)?,
        Command::Vm(c) => cmd::vm::run(source, c, &mut out)?,
        Command::Mapping(c) => cmd::mapping::run(source, c, &mut out)?,
        Command::Lxc(c) => cmd::lxc::run(source, c, &mut out)?,
        Command::Share(c) => cmd::share::run(source, c, &mut out)?,
        Command::Libvirt(c) => cmd::libvirt::run(source, c, &mut out)?,
        Command::Docker(a) => cmd::docker::run(source, a, &mut out)?,
        Command::Incus(a) => cmd::incus::run(source, a, &mut out)?,
        Command::Advise(a) => cmd::advise::run(source, a, &mut out)?,
        Command::Power(a) => cmd::power::run(source, a, &mut out)?,
        Command::Report(a) => cmd::report::run(source, a, &mut out)?,
        Command::DebugApplyPlan(a) => cmd::debug_apply_plan::run(source, a, &mut out)?,
        Command::GenerateAssets(a) => cmd::generate_assets::run(a, &mut out)?,
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
