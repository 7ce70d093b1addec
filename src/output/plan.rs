//! Plans as data, for `--dry-run --json`: each edit with the digests of the bytes before and
//! after (and the unified diff), the commands with whether they would run here, the notes,
//! and what the plan prepares. Pure.

use serde::Serialize;

use crate::plan::runtime::RuntimePlan;
use crate::plan::{digest, Plan, PlannedCommand, Prepared};

/// The version of every `--dry-run --json` document.
pub const PLAN_SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct EditDoc {
    pub path: String,
    pub reason: String,
    /// `create`, `modify` or `delete`.
    pub action: &'static str,
    /// SHA-256 of the bytes the plan was made from; `None`: the file does not exist.
    pub before_digest: Option<String>,
    /// SHA-256 of the new bytes; `None`: the file is removed.
    pub after_digest: Option<String>,
    /// The mode a created file gets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_mode: Option<u32>,
    /// The unified diff, as the text output shows it.
    pub diff: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct CommandDoc {
    pub argv: Vec<String>,
    pub why: String,
    /// Whether applying runs it (only on the live host; under --root it is skipped).
    pub runs: bool,
}

/// A file plan (`setup`, `vm`, `lxc`, `libvirt`, `mapping create`, `power --runtime-pm`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct PlanDocument {
    pub schema_version: u32,
    /// `files`, `runtime` (bind, unbind), `rollback`, or `pending` (an interrupted
    /// transaction must be undone first; no plan is made).
    pub kind: &'static str,
    pub title: String,
    pub warnings: Vec<String>,
    pub edits: Vec<EditDoc>,
    pub commands: Vec<CommandDoc>,
    pub notes: Vec<String>,
    pub prepared: Vec<Prepared>,
    /// A runtime plan's sysfs writes, modules and devices.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<RuntimePlan>,
    /// For `rollback`: each file and what it gets back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restores: Vec<(String, String)>,
}

impl PlanDocument {
    fn empty(kind: &'static str, title: String) -> Self {
        PlanDocument {
            schema_version: PLAN_SCHEMA_VERSION,
            kind,
            title,
            warnings: Vec::new(),
            edits: Vec::new(),
            commands: Vec::new(),
            notes: Vec::new(),
            prepared: Vec::new(),
            runtime: None,
            restores: Vec::new(),
        }
    }

    /// No plan: an interrupted transaction is undone first (`ids`).
    pub fn pending(ids: &[String]) -> Self {
        let mut d = Self::empty(
            "pending",
            format!(
                "interrupted transaction(s) {} to undo first",
                ids.join(", ")
            ),
        );
        d.notes.push("No plan is made: it is made after that undo. Run the command without --dry-run: it undoes first, then shows its plan and asks.".into());
        d
    }

    pub fn rollback(title: String, restores: Vec<(String, String)>) -> Self {
        let mut d = Self::empty("rollback", title);
        d.restores = restores;
        d
    }

    pub fn runtime(plan: &RuntimePlan) -> Self {
        let mut d = Self::empty("runtime", plan.title.clone());
        d.warnings = plan.warnings.clone();
        d.runtime = Some(plan.clone());
        d
    }
}

fn command_doc(c: &PlannedCommand, runs: bool) -> CommandDoc {
    CommandDoc {
        argv: c.argv.clone(),
        why: c.why.clone(),
        runs,
    }
}

pub fn plan_document(plan: &Plan, run_commands: bool) -> PlanDocument {
    let mut d = PlanDocument::empty("files", plan.title.clone());
    d.warnings = plan.warnings.clone();
    d.notes = plan.notes.clone();
    d.prepared = plan.prepared.clone();
    d.edits = plan
        .edits
        .iter()
        .map(|e| {
            let diff = crate::plan::diff::render_unified_diff(e);
            EditDoc {
                path: e.path.clone(),
                reason: e.reason.clone(),
                action: match (&e.before, &e.after) {
                    (None, _) => "create",
                    (Some(_), None) => "delete",
                    _ => "modify",
                },
                before_digest: e.before.as_deref().map(digest),
                after_digest: e.after.as_deref().map(digest),
                new_mode: e.before.is_none().then_some(e.new_mode),
                diff,
            }
        })
        .collect();
    // The commands run only when something is written.
    let runs = run_commands && !plan.is_empty();
    d.commands = plan.commands.iter().map(|c| command_doc(c, runs)).collect();
    d
}
