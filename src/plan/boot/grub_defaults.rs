//! GRUB defaults files: where to write kernel parameters so that grub-mkconfig sees exactly the
//! words asked for. Pure: a function of the files' current texts.
//!
//! - Every `GRUB_CMDLINE_LINUX` and `GRUB_CMDLINE_LINUX_DEFAULT` assignment that holds a
//!   parameter to remove (`iommu=off`, `intel_iommu=off`, a conflicting value of a key being
//!   set) is edited in place, in whichever file holds it: both variables reach the kernel.
//! - What must be added goes into passthru's own drop-in where the distribution reads
//!   `etc/default/grub.d` (the user's file keeps every byte), otherwise into the assignment
//!   of the target variable that takes effect.
//! - The result is evaluated again, as grub-mkconfig would source it; if some later file
//!   still overrides the value, the plan is refused, naming that file and line.

use crate::formats::cmdline::parse_cmdline;
use crate::formats::grub_defaults::{
    evaluate_grub_cmdline, scan_grub_file, source_order_key, GrubFile, CMDLINE_VARS, GRUB_DEFAULTS,
};
use crate::formats::shell_vars::{render_shell_value, Assignment, Part};
use crate::model::CmdlineParam;

use super::super::files::{
    edit_assignment, edit_shell_var, render_param, same_key, EditError, ParamChange,
};

/// The header and the one line of passthru's drop-in.
fn render_dropin(path: &str, var: &str, params: &[CmdlineParam]) -> Result<String, EditError> {
    let words: Vec<String> = params.iter().map(render_param).collect();
    let value = render_shell_value(
        &[
            Part::Var(var.to_string()),
            Part::Lit(format!(" {}", words.join(" "))),
        ],
        false,
    )
    .map_err(|why| EditError {
        file: path.into(),
        line: 0,
        why,
    })?;
    Ok(format!(
        "# Written by passthru: kernel parameters for GPU passthrough.\n# Undo with `passthru rollback`.\n{var}={value}\n"
    ))
}

/// The parameters an assignment itself spells out (its variables standing as spaces).
fn written_params(a: &Assignment) -> Vec<CmdlineParam> {
    parse_cmdline(&a.literal_words())
}

/// The parameters passthru's existing drop-in adds (what an earlier setup asked for).
fn read_dropin_params(f: &GrubFile, var: &str) -> Vec<CmdlineParam> {
    let Ok(scanned) = scan_grub_file(f) else {
        return Vec::new();
    };
    scanned
        .assignments
        .iter()
        .filter(|a| a.name == var)
        .flat_map(written_params)
        .collect()
}

/// The files to change (path, new text; `None` deletes) so that the command line grub-mkconfig
/// builds has `change` applied. `files` are the current files in source order; `dropin` is
/// passthru's own drop-in path where `etc/default/grub.d` is read, `None` to edit `target` in
/// place in `etc/default/grub`.
pub fn plan_grub_params(
    files: &[GrubFile],
    dropin: Option<&str>,
    target: &str,
    change: &ParamChange,
) -> Result<Vec<(String, Option<String>)>, EditError> {
    let existing_dropin = dropin.and_then(|d| files.iter().find(|f| f.path == d));
    // What an earlier run put in the drop-in stays wanted (setup for a second GPU must not
    // drop the first one's parameters), unless this change sets another value for its key.
    let mut wanted: Vec<CmdlineParam> = change.add.clone();
    if let Some(f) = existing_dropin {
        for p in read_dropin_params(f, target) {
            let superseded = wanted.iter().any(|w| same_key(&w.key, &p.key));
            if !superseded && !change.removes(&p) {
                wanted.push(p);
            }
        }
    }
    let change = ParamChange {
        add: wanted,
        remove: change.remove.clone(),
    };

    // 1. Remove, in place, wherever a parameter that must go is written.
    let mut texts: Vec<GrubFile> = files
        .iter()
        .filter(|f| Some(f.path.as_str()) != dropin)
        .cloned()
        .collect();
    for f in &mut texts {
        let scanned = scan_grub_file(f)?;
        let mut text = f.text.clone();
        // From the last assignment to the first, so earlier spans stay valid.
        for a in scanned.assignments.iter().rev() {
            if !CMDLINE_VARS.contains(&a.name.as_str()) || a.conditional {
                continue;
            }
            // Drop what must go and what conflicts with a value being set.
            let conflicting = ParamChange {
                add: Vec::new(),
                remove: written_params(a)
                    .into_iter()
                    .filter(|p| change.drops(p))
                    .collect(),
            };
            if !conflicting.remove.is_empty() {
                text = edit_assignment(&f.path, &text, a, &conflicting)?;
            }
        }
        f.text = text;
    }

    // 2. Add what the other files do not already give.
    let base = evaluate_grub_cmdline(&texts)?;
    let have = parse_cmdline(&base.normal_entry());
    let missing: Vec<CmdlineParam> = change
        .add
        .iter()
        .filter(|a| !ParamChange::present(&have, a))
        .cloned()
        .collect();
    let mut result_files = texts.clone();
    match dropin {
        Some(d) if !missing.is_empty() => {
            result_files.push(GrubFile {
                path: d.to_string(),
                text: render_dropin(d, target, &missing)?,
            });
            result_files.sort_by(|a, b| source_order_key(&a.path).cmp(&source_order_key(&b.path)));
        }
        Some(_) => {}
        None if !missing.is_empty() => {
            // No etc/default/grub yet: grub-mkconfig then uses its built-in defaults, and
            // a new file with the one assignment is what it will read first.
            let i = match result_files.iter().position(|f| f.path == GRUB_DEFAULTS) {
                Some(i) => i,
                None => {
                    result_files.insert(
                        0,
                        GrubFile {
                            path: GRUB_DEFAULTS.into(),
                            text: String::new(),
                        },
                    );
                    0
                }
            };
            let main = &mut result_files[i];
            let add = ParamChange {
                add: missing.clone(),
                remove: Vec::new(),
            };
            main.text = edit_shell_var(&main.path, &main.text, target, &add)?;
        }
        None => {}
    }

    // 3. Check the result as grub-mkconfig will read it.
    let after = evaluate_grub_cmdline(&result_files)?;
    let line = parse_cmdline(&after.normal_entry());
    let recovery = parse_cmdline(&after.linux);
    let failed_add = change.add.iter().find(|a| !ParamChange::present(&line, a));
    let failed_remove = line.iter().chain(&recovery).find(|p| change.removes(p));
    if let Some(bad) = failed_add.or(failed_remove) {
        let (file, l) = after
            .default_set_at
            .clone()
            .or(after.linux_set_at.clone())
            .unwrap_or_else(|| (GRUB_DEFAULTS.into(), 0));
        return Err(EditError {
            file,
            line: l,
            why: format!(
                "after the edit grub-mkconfig would still not see '{}' as asked: this assignment overrides it",
                render_param(bad)
            ),
        });
    }

    // The files whose text changes.
    let mut out = Vec::new();
    for f in &result_files {
        let before = files.iter().find(|o| o.path == f.path).map(|o| &o.text);
        if before != Some(&f.text) {
            out.push((f.path.clone(), Some(f.text.clone())));
        }
    }
    if let (Some(d), Some(_)) = (dropin, existing_dropin) {
        if !result_files.iter().any(|f| f.path == d) {
            out.push((d.to_string(), None));
        }
    }
    Ok(out)
}
