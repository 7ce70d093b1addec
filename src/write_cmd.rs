//! The writing commands: setup, rollback. Each builds a plan, shows it, asks (unless --yes),
//! and hands it to the transactional writer. Under a `--root` other than `/` the host's
//! commands are listed as skipped, never run.

use std::io::{self, BufRead, IsTerminal, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};

use passthru::apply::{self, ApplyOptions, ApplyOutcome};
use passthru::host::{HostRoot, RootFiles};
use passthru::model::Snapshot;
use passthru::plan::diff::render_plan;
use passthru::plan::setup::{plan_setup_host, plan_setup_vm, SetupRequest};
use passthru::plan::Plan;

use crate::cli::WriteArgs;

/// Whether commands run: only on the live host.
fn live(root: &HostRoot) -> bool {
    apply::runtime::is_live_root(root.path())
}

fn confirm(write: WriteArgs) -> Result<bool> {
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

/// `unit`: what `o.written` counts (`file(s)`, `sysfs write(s)`).
fn report(out: &mut dyn Write, o: &ApplyOutcome, unit: &str) -> Result<()> {
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

/// Shows a plan, then applies it when confirmed.
pub fn show_and_apply(
    root: &HostRoot,
    plan: &Plan,
    write: WriteArgs,
    out: &mut dyn Write,
) -> Result<()> {
    let run = live(root);
    render_plan(out, plan, run)?;
    out.flush()?;
    if write.dry_run || plan.is_empty() {
        return Ok(());
    }
    if !confirm(write)? {
        writeln!(out, "Not applied.")?;
        return Ok(());
    }
    let outcome = apply::apply_plan(root.path(), plan, &ApplyOptions { run_commands: run })
        .with_context(|| format!("applying: {}", plan.title))?;
    writeln!(out)?;
    report(out, &outcome, "file(s)")
}

pub fn setup_vm(
    root: &HostRoot,
    snap: &Snapshot,
    req: &SetupRequest,
    write: WriteArgs,
    out: &mut dyn Write,
) -> Result<()> {
    let plan = plan_setup_vm(snap, &RootFiles(root), req)?;
    show_and_apply(root, &plan, write, out)
}

pub fn setup_host(
    root: &HostRoot,
    snap: &Snapshot,
    gpu: &str,
    write: WriteArgs,
    out: &mut dyn Write,
) -> Result<()> {
    let plan = plan_setup_host(snap, &RootFiles(root), gpu)?;
    show_and_apply(root, &plan, write, out)
}

pub fn rollback(
    root: &HostRoot,
    id: Option<&str>,
    write: WriteArgs,
    out: &mut dyn Write,
) -> Result<()> {
    if !write.dry_run {
        for m in apply::recover(root.path())? {
            writeln!(out, "Recovered: {m}")?;
        }
    }
    let txs = apply::list_transactions(root.path())?;
    let target = match id {
        Some(id) => txs.iter().find(|t| t.id == id),
        None => txs
            .iter()
            .rev()
            .find(|t| apply::is_default_rollback_target(root.path(), t)),
    };
    let Some(t) = target else {
        bail!(
            "no transaction to roll back{}",
            id.map(|i| format!(" with id {i}")).unwrap_or_default()
        );
    };
    writeln!(out, "Roll back {} ({}), restoring:", t.id, t.title)?;
    for f in &t.files {
        let what = if f.original.is_some() {
            "its saved contents"
        } else {
            "removed (it did not exist)"
        };
        writeln!(out, "  {}: {what}", f.path)?;
    }
    for d in &t.devices {
        writeln!(
            out,
            "  {}: back to driver {}, driver_override {}",
            d.address,
            d.driver.as_deref().unwrap_or("none"),
            d.driver_override.as_deref().unwrap_or("(null)")
        )?;
    }
    for r in t.runtime.iter().filter(|r| {
        r.restore == passthru::plan::runtime::Restore::Value
            && !r.path.ends_with("/driver_override")
    }) {
        if let Some(b) = &r.before {
            writeln!(out, "  /{}: back to {:?}", r.path, b.trim_end())?;
        }
    }
    out.flush()?;
    if write.dry_run {
        return Ok(());
    }
    if !confirm(write)? {
        writeln!(out, "Not applied.")?;
        return Ok(());
    }
    let outcome = apply::rollback(
        root.path(),
        Some(&t.id),
        &ApplyOptions {
            run_commands: live(root),
        },
    )?;
    let unit = if t.is_runtime() {
        "sysfs write(s)"
    } else {
        "file(s)"
    };
    report(out, &outcome, unit)
}

pub fn status(root: &HostRoot, out: &mut dyn Write) -> Result<()> {
    let txs = apply::list_transactions(root.path())?;
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
                format!("{} sysfs write(s)", t.runtime.len())
            } else {
                format!("{} file(s)", t.files.len())
            }
        )?;
    }
    for f in [
        passthru::plan::setup::MODPROBE_FILE,
        passthru::plan::setup::UDEV_FILE,
        passthru::plan::setup::GRUB_DROPIN,
        passthru::plan::setup::DRACUT_FILE,
        passthru::plan::setup::MKINITCPIO_FILE,
    ] {
        if let Ok(text) = std::fs::read_to_string(root.join(f)) {
            writeln!(out, "\n{f}:")?;
            for l in text.lines().filter(|l| !l.starts_with('#')) {
                writeln!(out, "  {l}")?;
            }
        }
    }
    Ok(())
}

pub fn debug_apply(
    root: &HostRoot,
    plan_file: &Path,
    write: WriteArgs,
    out: &mut dyn Write,
) -> Result<()> {
    let text = std::fs::read_to_string(plan_file)
        .with_context(|| format!("reading plan {}", plan_file.display()))?;
    let plan: Plan = serde_json::from_str(&text)
        .with_context(|| format!("parsing plan {}", plan_file.display()))?;
    show_and_apply(root, &plan, write, out)
}

/// Shows a runtime plan (sysfs writes in order), then applies it when confirmed, as a
/// journaled transaction that `passthru rollback` undoes. Under a fixture root the attributes
/// are written as plain files (a record of what would happen), and modprobe is skipped.
pub fn runtime(
    root: &HostRoot,
    plan: &passthru::plan::runtime::RuntimePlan,
    write: WriteArgs,
    out: &mut dyn Write,
) -> Result<()> {
    let live = live(root);
    writeln!(out, "{}", plan.title)?;
    if plan.is_empty() {
        writeln!(out, "Nothing to change.")?;
        return Ok(());
    }
    for m in &plan.modprobe {
        writeln!(
            out,
            "  modprobe {m}{}",
            if live {
                ""
            } else {
                "    (skipped: not the live host)"
            }
        )?;
    }
    for w in &plan.writes {
        writeln!(
            out,
            "  echo {:?} > /{}    # {}",
            w.value.trim_end(),
            w.path,
            w.why
        )?;
    }
    writeln!(
        out,
        "This lasts until the next reboot; `passthru setup` makes it permanent."
    )?;
    out.flush()?;
    if write.dry_run || !confirm(write)? {
        return Ok(());
    }
    let outcome = apply::apply_runtime(root.path(), plan, &ApplyOptions { run_commands: live })
        .with_context(|| format!("applying: {}", plan.title))?;
    report(out, &outcome, "sysfs write(s)")
}

/// Shows and applies a plan for a Proxmox guest. The guest's own lock is taken only after the
/// user confirmed (a prompt never holds it), and the plan is re-checked under it.
pub fn apply_under_guest_lock(
    root: &HostRoot,
    guest: apply::LockTarget,
    plan: &Plan,
    write: WriteArgs,
    out: &mut dyn Write,
) -> Result<()> {
    let run = live(root);
    render_plan(out, plan, run)?;
    out.flush()?;
    if write.dry_run || plan.is_empty() {
        return Ok(());
    }
    if !confirm(write)? {
        writeln!(out, "Not applied.")?;
        return Ok(());
    }
    let outcome = apply::apply_plan_for_guest(
        root.path(),
        guest,
        plan,
        &ApplyOptions { run_commands: run },
    )
    .with_context(|| format!("applying: {}", plan.title))?;
    writeln!(out)?;
    report(out, &outcome, "file(s)")
}
