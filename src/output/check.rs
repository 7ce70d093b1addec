//! The `passthru check` report: grouped by GPU, each fix under its problem, 80 columns.

use std::io::{self, Write};

use crate::check::{CheckReport, Effect, Finding, RuleId, Severity, Use, Verdict};

use super::style::{sanitize, Style};
use super::words;

const WIDTH: usize = 80;

fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Ready => "ready",
        Verdict::NeedsSetup => "needs-setup",
        Verdict::Unknown => "unknown",
        Verdict::Blocked => "blocked",
    }
}

fn use_word(u: Use) -> &'static str {
    match u {
        Use::Vm => "vm",
        Use::Lxc => "lxc",
        Use::Host => "host",
        Use::Shared => "shared",
    }
}

/// Wraps `text` to `WIDTH` at its spaces, the first line after `first`, the rest indented by
/// `indent`.
fn wrap(first: &str, indent: usize, text: &str) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    wrap_items(first, indent, &words)
}

/// Lays `items` out after `first`, one space apart, breaking lines only between items, so
/// that an item (a device name, `IOMMU group 7`) is never split. Only an item too wide for
/// any line is broken, at its spaces: the report keeps to `WIDTH` columns.
fn wrap_items(first: &str, indent: usize, items: &[&str]) -> String {
    let mut out = String::new();
    let mut line = first.to_string();
    let mut len = visible_width(first);
    // A heading counts as an item: the text goes after it with a space.
    let mut empty = first.trim().is_empty();
    let atoms = items.iter().flat_map(|item| {
        if indent + item.chars().count() > WIDTH {
            item.split_whitespace().collect::<Vec<_>>()
        } else {
            vec![*item]
        }
    });
    for item in atoms {
        let w = item.chars().count();
        if !empty && len + 1 + w > WIDTH {
            out.push_str(line.trim_end());
            out.push('\n');
            line = " ".repeat(indent);
            len = indent;
            empty = true;
        }
        if !empty {
            line.push(' ');
            len += 1;
        }
        line.push_str(item);
        len += w;
        empty = false;
    }
    out.push_str(line.trim_end());
    out.push('\n');
    out
}

/// The columns `s` takes on a terminal: its characters, less the colour escapes.
fn visible_width(s: &str) -> usize {
    let mut n = 0;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // `ESC [ ... m`
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            n += 1;
        }
    }
    n
}

fn tag(f: &Finding) -> &'static str {
    match (f.effect, f.severity) {
        (Effect::Blocks, _) => "BLOCKS",
        (Effect::Unknown, _) => "UNKNOWN",
        (Effect::NeedsSetup, _) => "SETUP",
        (_, Severity::Error) => "ERROR",
        (_, Severity::Warning) => "WARN",
        (_, Severity::Info) => "info",
    }
}

/// Whether a finding is only a fact in this report: a card that cannot be split blocks the
/// shared use, which a plain `check` (no `--for`) shows beside the others; there it is not
/// something to fix, so it reads as info and the verdict as "cannot split". Asked for
/// (`--for shared`), it blocks as it is.
fn fact_only(f: &Finding, uses: &[Use]) -> bool {
    uses.is_empty() && f.id == RuleId::SharedNone
}

/// Renders the report for the uses asked for (all when empty).
pub fn render_check(
    out: &mut dyn Write,
    r: &CheckReport,
    uses: &[Use],
    named: bool,
    st: Style,
) -> io::Result<()> {
    for sel in &r.unmatched {
        writeln!(out, "No GPU matches '{}'.", sanitize(sel))?;
    }
    if r.gpus.is_empty() && r.unmatched.is_empty() {
        writeln!(out, "No GPU found (no PCI function of class 03xx).")?;
    }
    for (i, g) in r.gpus.iter().enumerate() {
        if i > 0 {
            writeln!(out)?;
        }
        // The vendor's and the device's names are items: each moves to the next line whole.
        let parts: Vec<String> = if g.name_parts.is_empty() {
            vec![sanitize(&g.name)]
        } else {
            g.name_parts.iter().map(|p| sanitize(p)).collect()
        };
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        write!(
            out,
            "{}",
            wrap_items(&st.bold(&g.address.to_string()), 2, &parts)
        )?;
        let group = g
            .group
            .as_deref()
            .map_or("no IOMMU group".to_string(), |id| {
                format!("IOMMU group {}", sanitize(id))
            });
        // Items with their separators: `0000:01:00.0,` … `0000:01:00.1 ·` `IOMMU group 1`.
        let mut items: Vec<String> = g.functions.iter().map(|a| format!("{a},")).collect();
        if let Some(last) = items.last_mut() {
            last.pop();
            last.push_str(" ·");
        }
        items.push(group);
        let items: Vec<&str> = items.iter().map(String::as_str).collect();
        write!(out, "{}", wrap_items("  functions", 4, &items))?;
        let shown: Vec<Use> = if uses.is_empty() {
            g.verdicts.keys().copied().collect()
        } else {
            uses.to_vec()
        };
        let verdicts: Vec<String> = shown
            .iter()
            .filter_map(|u| g.verdicts.get(u).map(|v| (u, v)))
            .map(|(u, v)| {
                let unsplittable = *u == Use::Shared
                    && *v == Verdict::Blocked
                    && g.findings
                        .iter()
                        .filter(|f| f.effect == Effect::Blocks && f.uses.contains(&Use::Shared))
                        .all(|f| fact_only(f, uses));
                if unsplittable {
                    return format!("{}: cannot split", use_word(*u));
                }
                let word = verdict_word(*v);
                let word = match v {
                    Verdict::Ready => st.gpu(word),
                    _ => st.warn(word),
                };
                format!("{}: {word}", use_word(*u))
            })
            .collect();
        writeln!(out, "  {}", verdicts.join("   "))?;
        let state = format!("{}; next: {}", g.state.state.describe(), g.state.next_step);
        write!(out, "{}", wrap("  state:", 4, &sanitize(&state)))?;
        let mut findings: Vec<&Finding> = g
            .findings
            .iter()
            .filter(|f| f.uses.iter().any(|u| shown.contains(u)))
            .collect();
        let rank = |f: &Finding| {
            if fact_only(f, uses) {
                (Effect::None, Severity::Info)
            } else {
                (f.effect, f.severity)
            }
        };
        findings.sort_by_key(|f| std::cmp::Reverse(rank(f)));
        for f in findings {
            writeln!(out)?;
            let t = if fact_only(f, uses) { "info" } else { tag(f) };
            let head = format!("  [{t}] {}:", f.id);
            write!(out, "{}", wrap(&head, 6, &sanitize(&f.message)))?;
            if !f.evidence.is_empty() {
                write!(
                    out,
                    "{}",
                    wrap("      evidence:", 8, &sanitize(&f.evidence))
                )?;
            }
            if let Some(fix) = &f.fix {
                write!(out, "{}", wrap("      fix:", 8, &sanitize(fix)))?;
            }
        }
    }
    // Say so when the exit code judges fewer GPUs than are shown (CheckReport::judged).
    let judged = r.judged(uses, named);
    if !judged.is_empty() && judged.len() < r.gpus.len() {
        let list: Vec<String> = judged.iter().map(|g| g.address.to_string()).collect();
        writeln!(out)?;
        let text = format!(
            "The exit code judges the {} set up for vfio-pci ({}); the other GPUs stay with \
             the host (name one to judge it).",
            words::agree(judged.len(), "card", "cards"),
            list.join(", ")
        );
        write!(out, "{}", wrap("", 0, &text))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &[&str], functions: &[&str]) -> Vec<String> {
        use crate::check::{CheckReport, GpuCheck};
        let addr = |s: &str| s.parse::<crate::model::PciAddress>().unwrap();
        let r = CheckReport {
            schema_version: 1,
            gpus: vec![GpuCheck {
                address: addr(functions[0]),
                name: name.join(" "),
                name_parts: name.iter().map(|p| p.to_string()).collect(),
                functions: functions.iter().map(|a| addr(a)).collect(),
                group: Some("1".into()),
                verdicts: Default::default(),
                state: Default::default(),
                findings: vec![],
            }],
            unmatched: vec![],
        };
        let mut out = Vec::new();
        render_check(&mut out, &r, &[], false, Style::PLAIN).unwrap();
        let text = String::from_utf8(out).unwrap();
        text.lines().map(str::to_string).collect()
    }

    /// The header breaks between items only: the device's name moves down whole, and
    /// `IOMMU group 1` stays together (a name was cut at any space, "Radeon RX
    /// 6800/6800⏎ XT", and a line ended with `IOMMU group`).
    #[test]
    fn the_header_never_splits_a_name_or_a_group() {
        let four = [
            "0000:01:00.0",
            "0000:01:00.1",
            "0000:01:00.2",
            "0000:01:00.3",
        ];
        let navi = [
            "Advanced Micro Devices, Inc. [AMD/ATI]",
            "Navi 21 [Radeon RX 6800/6800 XT / 6900 XT]",
        ];
        let lines = header(&navi, &four);
        assert_eq!(lines[0], format!("0000:01:00.0 {}", navi[0]), "{lines:#?}");
        assert_eq!(lines[1], format!("  {}", navi[1]), "{lines:#?}");
        assert_eq!(
            lines[2], "  functions 0000:01:00.0, 0000:01:00.1, 0000:01:00.2, 0000:01:00.3 ·",
            "{lines:#?}"
        );
        assert_eq!(lines[3], "    IOMMU group 1", "{lines:#?}");
        // What fits stays on one line.
        let lines = header(
            &["NVIDIA Corporation", "GA102 [GeForce RTX 3080]"],
            &four[..2],
        );
        assert_eq!(
            lines[0],
            "0000:01:00.0 NVIDIA Corporation GA102 [GeForce RTX 3080]"
        );
        assert_eq!(
            lines[1],
            "  functions 0000:01:00.0, 0000:01:00.1 · IOMMU group 1"
        );
        // Only a part too wide for any line is broken, and the lines keep to 80 columns.
        let long = "W".repeat(40) + " " + &"V".repeat(45);
        let lines = header(&[&long], &four[..1]);
        assert!(
            lines.iter().all(|l| l.chars().count() <= WIDTH),
            "{lines:#?}"
        );
    }

    #[test]
    fn colour_escapes_take_no_columns() {
        let bold = Style { color: true }.bold("0000:01:00.0");
        assert_eq!(visible_width(&bold), 12);
        let w = wrap_items(&bold, 2, &["x".repeat(67).as_str()]);
        assert_eq!(w.lines().count(), 1, "12 + 1 + 67 = 80 fits: {w:?}");
    }

    #[test]
    fn wrapping_keeps_lines_within_80_columns() {
        let text = "word ".repeat(60);
        let w = wrap("  head:", 6, &text);
        assert!(w.lines().all(|l| l.chars().count() <= WIDTH), "{w}");
        assert!(w.lines().skip(1).all(|l| l.starts_with("      word")));
    }
}
