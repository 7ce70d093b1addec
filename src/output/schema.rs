//! One JSON Schema for every document passthru prints with `--json`, made from the types
//! that are serialised (schemars), never written by hand. `docs/schema.json` is this,
//! committed; a test fails when the types change without it (regenerate with
//! `passthru generate-assets DIR`, which writes DIR/schema.json).

use crate::output::documents::{
    DockerDocument, MappingListDocument, PowerDocument, StatusDocument,
};

/// Each command's `--json` output, as the properties of one object.
#[derive(schemars::JsonSchema)]
#[allow(dead_code)]
struct PassthruJsonOutput {
    /// `passthru scan --json` (and what `--from` loads).
    scan: crate::model::Snapshot,
    /// `passthru list --json`.
    list: crate::output::list::ListReport,
    /// `passthru list --gpus --json`.
    list_gpus: crate::output::list::GpuReport,
    /// `passthru check --json`.
    check: crate::check::CheckReport,
    /// `passthru advise --json`.
    advise: crate::advise::rank::AdviseReport,
    /// `passthru power --json`.
    power: PowerDocument,
    /// `passthru verify --json`.
    verify: crate::verify::VerifyReport,
    /// Every writing command's `--dry-run --json`.
    plan: crate::output::plan::PlanDocument,
    /// `passthru setup status --json`.
    setup_status: StatusDocument,
    /// `passthru mapping list --json`.
    mapping_list: MappingListDocument,
    /// `passthru docker GPU --json`.
    docker: DockerDocument,
}

/// The schema document, pretty JSON with a final newline.
pub fn render_output_schema() -> String {
    let schema = schemars::schema_for!(PassthruJsonOutput);
    let mut s = serde_json::to_string_pretty(&schema).expect("a schema is JSON");
    s.push('\n');
    s
}
