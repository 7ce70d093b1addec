//! `passthru debug-apply-plan FILE` (hidden): show and apply a plan saved as JSON, for tests
//! and debugging.

use std::io::Write;

use anyhow::{Context, Result};

use passthru::plan::Plan;

use super::{host_root, show_and_apply};
use crate::cli::{DebugApplyArgs, SourceArgs};

pub fn run(source: &SourceArgs, a: &DebugApplyArgs, out: &mut dyn Write) -> Result<()> {
    let root = host_root(source)?;
    let text = std::fs::read_to_string(&a.plan)
        .with_context(|| format!("reading plan {}", a.plan.display()))?;
    let plan: Plan = serde_json::from_str(&text)
        .with_context(|| format!("parsing plan {}", a.plan.display()))?;
    show_and_apply(&root, &plan, None, a.write, out)
}
