//! `passthru debug-apply-plan FILE` (hidden): show and apply a plan saved as JSON, for tests
//! and debugging.

use std::io::Write;

use anyhow::{Context, Result};

use passthru::plan::Plan;

use super::{change_host, host_root};
use crate::cli::{DebugApplyArgs, SourceArgs};

pub fn run(source: &SourceArgs, a: &DebugApplyArgs, out: &mut dyn Write) -> Result<()> {
    let root = host_root(source)?;
    // A saved plan is not made again after recovery: apply's digest check refuses it when
    // recovery (or anything else) changed a file it was made from.
    change_host(&root, a.write, out, || {
        let text = std::fs::read_to_string(&a.plan)
            .with_context(|| format!("reading plan {}", a.plan.display()))?;
        let plan: Plan = serde_json::from_str(&text)
            .with_context(|| format!("parsing plan {}", a.plan.display()))?;
        Ok(plan)
    })
}
