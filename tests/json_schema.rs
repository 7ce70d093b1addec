//! The one schema of every `--json` output (docs/schema.json) is the one made from the
//! types (schemars), and what each command really prints is valid against it: every
//! required key present, every key declared, every value of its type. The validator here
//! covers the subset of JSON Schema that schemars writes for passthru's types ($ref,
//! type, properties, required, items, prefixItems, oneOf/anyOf, enum, const).

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

#[test]
fn docs_schema_is_the_one_made_from_the_types() {
    let committed = std::fs::read_to_string(repo().join("docs/schema.json")).unwrap();
    let made = passthru::output::schema::render_output_schema();
    assert!(
        committed == made,
        "docs/schema.json is not what the types give: regenerate it with \
         `passthru generate-assets DIR && cp DIR/schema.json docs/schema.json`"
    );
}

fn resolve<'a>(root: &'a Value, s: &'a Value) -> &'a Value {
    match s.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.strip_prefix("#/$defs/").expect("local $ref");
            resolve(root, &root["$defs"][name])
        }
        None => s,
    }
}

fn type_ok(t: &str, v: &Value) -> bool {
    match t {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        other => panic!("schema type {other}"),
    }
}

/// Every way `v` fails `s`, each with its JSON path.
fn validate(root: &Value, s: &Value, v: &Value, at: &str, errs: &mut Vec<String>) {
    let s = resolve(root, s);
    if s == &Value::Bool(true) {
        return;
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(alts) = s.get(key).and_then(Value::as_array) {
            let fits = alts.iter().filter(|a| {
                let mut e = Vec::new();
                validate(root, a, v, at, &mut e);
                e.is_empty()
            });
            let n = fits.count();
            if n == 0 || (key == "oneOf" && n > 1) {
                errs.push(format!("{at}: {n} of the {key} alternatives fit {v}"));
            }
        }
    }
    if let Some(c) = s.get("const") {
        if c != v {
            errs.push(format!("{at}: {v} is not {c}"));
        }
    }
    if let Some(e) = s.get("enum").and_then(Value::as_array) {
        if !e.contains(v) {
            errs.push(format!("{at}: {v} is not one of {e:?}"));
        }
    }
    match s.get("type") {
        Some(Value::String(t)) if !type_ok(t, v) => {
            errs.push(format!("{at}: {v} is not {t}"));
            return;
        }
        Some(Value::Array(ts)) if !ts.iter().any(|t| type_ok(t.as_str().unwrap(), v)) => {
            errs.push(format!("{at}: {v} is none of {ts:?}"));
            return;
        }
        _ => {}
    }
    if let (Some(props), Some(obj)) = (s.get("properties"), v.as_object()) {
        for r in s
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if !obj.contains_key(r.as_str().unwrap()) {
                errs.push(format!("{at}: required {r} missing"));
            }
        }
        for (k, val) in obj {
            match props.get(k) {
                Some(ps) => validate(root, ps, val, &format!("{at}.{k}"), errs),
                None => errs.push(format!("{at}: key {k} is not in the schema")),
            }
        }
    }
    if let Some(arr) = v.as_array() {
        if let Some(prefix) = s.get("prefixItems").and_then(Value::as_array) {
            for (i, (ps, val)) in prefix.iter().zip(arr).enumerate() {
                validate(root, ps, val, &format!("{at}[{i}]"), errs);
            }
        } else if let Some(items) = s.get("items") {
            for (i, val) in arr.iter().enumerate() {
                validate(root, items, val, &format!("{at}[{i}]"), errs);
            }
        }
    }
}

fn check_output(schema: &Value, command: &str, root: &Path, args: &[&str]) {
    let o = passthru_fixed(root, args);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?}: not JSON ({e}):\n{}\n{}",
            stdout(&o),
            String::from_utf8_lossy(&o.stderr)
        )
    });
    let mut errs = Vec::new();
    validate(
        schema,
        &schema["properties"][command],
        &v,
        command,
        &mut errs,
    );
    assert!(
        errs.is_empty(),
        "{args:?} does not fit the schema:\n{errs:#?}"
    );
}

#[test]
fn every_json_output_fits_the_schema() {
    let schema: Value =
        serde_json::from_str(&passthru::output::schema::render_output_schema()).unwrap();
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let ok = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!(
            "{}/.",
            repo().join("examples/hosts/homelab").display()
        ))
        .arg(root)
        .status()
        .unwrap();
    assert!(ok.success());
    let gpu = "07:00.0";
    check_output(&schema, "scan", root, &["scan", "--json"]);
    check_output(&schema, "list", root, &["list", "--json"]);
    check_output(&schema, "list_gpus", root, &["list", "--gpus", "--json"]);
    check_output(&schema, "check", root, &["check", "--json"]);
    check_output(
        &schema,
        "advise",
        root,
        &["advise", "--use", "transcode", "--server", "n100", "--json"],
    );
    check_output(&schema, "power", root, &["power", "--json"]);
    check_output(&schema, "docker", root, &["docker", gpu, "--json"]);
    check_output(
        &schema,
        "mapping_list",
        root,
        &["mapping", "list", "--json"],
    );
    check_output(
        &schema,
        "plan",
        root,
        &["setup", "vm", gpu, "--force", "--dry-run", "--json"],
    );
    check_output(
        &schema,
        "plan",
        root,
        &["bind", gpu, "--force", "--dry-run", "--json"],
    );
    let o = passthru_fixed(root, &["setup", "vm", gpu, "--force", "--yes"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    check_output(
        &schema,
        "setup_status",
        root,
        &["setup", "status", "--json"],
    );
    check_output(&schema, "verify", root, &["verify", "--json"]);
    check_output(&schema, "plan", root, &["rollback", "--dry-run", "--json"]);
}

/// What `--dry-run --json` says an edit will write is what the real run writes.
#[test]
fn dry_run_json_digests_are_the_bytes_written() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let ok = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!(
            "{}/.",
            repo().join("examples/hosts/homelab").display()
        ))
        .arg(root)
        .status()
        .unwrap();
    assert!(ok.success());
    let args = ["setup", "vm", "07:00.0", "--force"];
    let o = passthru_fixed(root, &[&args[..], &["--dry-run", "--json"]].concat());
    let plan: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(plan["schema_version"], 1);
    let edits = plan["edits"].as_array().unwrap();
    assert!(!edits.is_empty());
    let digest = |p: &str| {
        std::fs::read(root.join(p))
            .ok()
            .map(|b| passthru::plan::digest(&b))
    };
    for e in edits {
        let path = e["path"].as_str().unwrap();
        assert_eq!(
            e["before_digest"].as_str().map(str::to_string),
            digest(path),
            "{path}"
        );
    }
    assert!(plan["commands"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["runs"] == false));
    let o = passthru_fixed(root, &[&args[..], &["--yes"]].concat());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for e in edits {
        let path = e["path"].as_str().unwrap();
        assert_eq!(
            e["after_digest"].as_str().map(str::to_string),
            digest(path),
            "{path}"
        );
    }
}

/// `--json` without `--dry-run` on a writing command is a usage error, not a silent apply.
#[test]
fn json_on_a_writing_command_needs_dry_run() {
    let o = passthru(&["setup", "vm", "07:00.0", "--json", "--root", "/nonexistent"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--dry-run"));
}
