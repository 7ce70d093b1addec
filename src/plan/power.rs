//! `passthru power --runtime-pm on|auto GPU`: a udev rule per GPU that sets `power/control`
//! at every boot, and `udevadm trigger` so that it takes effect now. Pure: the rule file's
//! current bytes come from a [`FileSource`]; `apply` writes it as a journaled transaction.

use super::source::{FileSource, ReadError};
use super::{FileEdit, Plan, PlannedCommand};
use crate::check::SelectError;
use crate::model::Snapshot;

/// passthru's own rule file for runtime power management.
pub const RUNTIME_PM_RULES: &str = "etc/udev/rules.d/91-passthru-runtime-pm.rules";

const HEADER: &str = "# Written by passthru: runtime power management per GPU.";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PowerPlanError {
    #[error("--runtime-pm takes on or auto, not '{0}'")]
    Mode(String),
    #[error(transparent)]
    Select(#[from] SelectError),
    #[error(transparent)]
    Read(#[from] ReadError),
}

/// Sets `power/control` of one GPU to `mode` (`on`: never suspend; `auto`: let it sleep) at
/// every boot. The GPU's old line in the rule file is replaced; other GPUs' lines are kept.
pub fn plan_runtime_pm(
    s: &Snapshot,
    src: &dyn FileSource,
    sel: &str,
    mode: &str,
) -> Result<Plan, PowerPlanError> {
    if mode != "on" && mode != "auto" {
        return Err(PowerPlanError::Mode(mode.to_string()));
    }
    let gpu = crate::check::select_one(s, sel)?;
    // Unreadable (or not text) stops the plan: planning over it would lose what it holds.
    let text = src.read_text(RUNTIME_PM_RULES)?;
    let tag = format!("KERNEL==\"{}\"", gpu.address);
    let mut lines: Vec<&str> = text
        .as_deref()
        .unwrap_or_default()
        .lines()
        .filter(|l| *l != HEADER && !l.contains(&tag))
        .collect();
    let line =
        format!("ACTION==\"add\", SUBSYSTEM==\"pci\", {tag}, ATTR{{power/control}}=\"{mode}\"");
    lines.push(&line);
    let after = format!("{HEADER}\n{}\n", lines.join("\n"));
    let mut plan = Plan {
        title: format!(
            "Runtime power management {mode} for {} ({})",
            gpu.address, gpu.names.name
        ),
        ..Plan::default()
    };
    if text.as_deref() == Some(after.as_str()) {
        return Ok(plan);
    }
    plan.edits.push(FileEdit {
        path: RUNTIME_PM_RULES.into(),
        before: text.map(String::into_bytes),
        after: Some(after.into_bytes()),
        new_mode: 0o644,
        reason: "set power/control at every boot".into(),
    });
    plan.commands.push(PlannedCommand {
        argv: vec![
            "udevadm".into(),
            "trigger".into(),
            "--action=add".into(),
            format!("/sys/bus/pci/devices/{}", gpu.address),
        ],
        why: "apply it now".into(),
    });
    Ok(plan)
}
