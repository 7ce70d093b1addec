//! Kernel parameters for Pop!_OS's kernelstub: `user.kernel_options` in
//! `etc/kernelstub/configuration` (JSON), one parameter per string. Only that array's bytes
//! change; key order, indentation and every other value stay as kernelstub wrote them, so the
//! review shows the change and nothing else.

use crate::formats::cmdline::parse_param;
use crate::formats::json_spans::json_value_span;
use crate::model::Snapshot;

use super::super::files::{render_param, EditError, ParamChange};
use super::super::setup::SetupError;
use super::super::source::FileSource;
use super::super::{file_edit, PlannedCommand};
use super::{KernelParamTarget, Steps};

pub struct Kernelstub;

impl KernelParamTarget for Kernelstub {
    fn plan_params(
        &self,
        _: &Snapshot,
        src: &dyn FileSource,
        change: &ParamChange,
    ) -> Result<Steps, SetupError> {
        let text = src.read_text(KERNELSTUB_CONFIG)?.unwrap_or_default();
        let after = edit_kernelstub_config(&text, change)?;
        let mut out = Steps::default();
        out.edits.extend(file_edit(
            src,
            KERNELSTUB_CONFIG,
            Some(after.into_bytes()),
            0o644,
            "kernel parameters in kernelstub's configuration",
        )?);
        out.commands.push(PlannedCommand {
            argv: vec!["kernelstub".into()],
            why: "write the boot entry from the configuration".into(),
        });
        Ok(out)
    }
}

pub const KERNELSTUB_CONFIG: &str = "etc/kernelstub/configuration";

/// The configuration with `change` applied to `user.kernel_options`; the text itself when
/// nothing changes.
pub fn edit_kernelstub_config(text: &str, change: &ParamChange) -> Result<String, EditError> {
    let err = |why: String| EditError {
        file: KERNELSTUB_CONFIG.into(),
        line: 0,
        why,
    };
    // The whole document must be JSON kernelstub can read back.
    serde_json::from_str::<serde_json::Value>(text).map_err(|e| EditError {
        file: KERNELSTUB_CONFIG.into(),
        line: e.line(),
        why: format!("not JSON: {e}"),
    })?;
    let span = json_value_span(text, &["user", "kernel_options"])
        .map_err(|e| err(format!("no user.kernel_options list ({e})")))?;
    let old: Vec<String> = serde_json::from_str(&text[span.clone()])
        .map_err(|e| err(format!("user.kernel_options is not a list of strings: {e}")))?;
    let mut new: Vec<String> = old
        .iter()
        .filter(|o| !change.drops(&parse_param(o)))
        .cloned()
        .collect();
    for a in &change.add {
        let have: Vec<_> = new.iter().map(|o| parse_param(o)).collect();
        if !ParamChange::present(&have, a) {
            new.push(render_param(a));
        }
    }
    if new == old {
        return Ok(text.to_string());
    }
    let rendered = render_like(&text[span.clone()], &new);
    Ok(format!(
        "{}{rendered}{}",
        &text[..span.start],
        &text[span.end..]
    ))
}

/// The array in the layout of the one it replaces: one element per line with the same
/// indentation when it spanned lines, otherwise on one line.
fn render_like(old: &str, items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|s| serde_json::Value::String(s.clone()).to_string())
        .collect();
    if !old.contains('\n') || items.is_empty() {
        return format!("[{}]", quoted.join(", "));
    }
    let lines: Vec<&str> = old.lines().collect();
    let indent_of = |l: &str| l[..l.len() - l.trim_start().len()].to_string();
    let item_indent = lines
        .get(1)
        .map(|l| indent_of(l))
        .unwrap_or_else(|| "  ".into());
    let close_indent = lines.last().map(|l| indent_of(l)).unwrap_or_default();
    let body: Vec<String> = quoted.iter().map(|q| format!("{item_indent}{q}")).collect();
    format!("[\n{}\n{close_indent}]", body.join(",\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::cmdline::parse_cmdline;

    #[test]
    fn only_the_options_array_changes() {
        let text = "{\n  \"user\": {\n    \"kernel_options\": [\n      \"quiet\",\n      \"iommu=off\"\n    ],\n    \"esp_path\": \"/boot/efi\"\n  },\n  \"a\": 1\n}";
        let change = ParamChange {
            add: parse_cmdline("intel_iommu=on iommu=pt"),
            remove: parse_cmdline("iommu=off"),
        };
        let out = edit_kernelstub_config(text, &change).unwrap();
        assert_eq!(
            out,
            "{\n  \"user\": {\n    \"kernel_options\": [\n      \"quiet\",\n      \"intel_iommu=on\",\n      \"iommu=pt\"\n    ],\n    \"esp_path\": \"/boot/efi\"\n  },\n  \"a\": 1\n}"
        );
        assert_eq!(edit_kernelstub_config(&out, &change).unwrap(), out);
        assert!(edit_kernelstub_config("{\"user\": {}}", &change).is_err());
        assert!(edit_kernelstub_config("{", &change).is_err());
    }
}
