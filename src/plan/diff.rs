//! Shows a plan as a unified diff plus the commands it will run. Pure.

use std::io::{self, Write};

use similar::TextDiff;

use super::runtime::RuntimePlan;
use super::Plan;

pub fn render_plan(out: &mut dyn Write, plan: &Plan, run_commands: bool) -> io::Result<()> {
    writeln!(out, "{}", plan.title)?;
    render_warnings(out, &plan.warnings)?;
    if plan.is_empty() {
        writeln!(
            out,
            "Nothing to change: the host is already set up this way."
        )?;
        return Ok(());
    }
    for e in &plan.edits {
        writeln!(out)?;
        writeln!(out, "# {}: {}", e.path, e.reason)?;
        write!(out, "{}", render_unified_diff(e))?;
    }
    if !plan.commands.is_empty() {
        writeln!(out)?;
        writeln!(
            out,
            "Then {}:",
            if run_commands {
                "run"
            } else {
                "(skipped: not the live host) would run"
            }
        )?;
        for c in &plan.commands {
            writeln!(out, "  {}    # {}", c.argv.join(" "), c.why)?;
        }
    }
    for n in &plan.notes {
        writeln!(out, "Note: {n}")?;
    }
    Ok(())
}

/// Shows a runtime plan: the modules it loads and the sysfs writes, in order. `live`: whether
/// the modprobe runs (only on this machine's own `/`).
pub fn render_runtime_plan(out: &mut dyn Write, plan: &RuntimePlan, live: bool) -> io::Result<()> {
    writeln!(out, "{}", plan.title)?;
    render_warnings(out, &plan.warnings)?;
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
        "{}",
        plan.lasting
            .as_deref()
            .unwrap_or("This lasts until the next reboot; `passthru setup` makes it permanent.")
    )
}

/// The warnings a plan states before its changes, one per line.
fn render_warnings(out: &mut dyn Write, warnings: &[String]) -> io::Result<()> {
    for w in warnings {
        writeln!(out, "Warning: {w}")?;
    }
    Ok(())
}

/// One edit as a unified diff (`--- a/PATH` / `+++ b/PATH`, `/dev/null` for a file created or
/// removed), three lines of context: what the text plan shows and the JSON plan carries.
pub fn render_unified_diff(e: &super::FileEdit) -> String {
    let before = e
        .before
        .as_deref()
        .map(String::from_utf8_lossy)
        .unwrap_or_default();
    let after = e
        .after
        .as_deref()
        .map(String::from_utf8_lossy)
        .unwrap_or_default();
    let old = if e.before.is_some() {
        format!("a/{}", e.path)
    } else {
        "/dev/null".into()
    };
    let new = if e.after.is_some() {
        format!("b/{}", e.path)
    } else {
        "/dev/null".into()
    };
    TextDiff::from_lines(before.as_ref(), after.as_ref())
        .unified_diff()
        .context_radius(3)
        .header(&old, &new)
        .to_string()
}
