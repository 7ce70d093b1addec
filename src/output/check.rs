//! The `passthru check` report: grouped by GPU, each fix under its problem, 80 columns.

use std::io::{self, Write};

use crate::check::{CheckReport, Effect, Finding, Severity, Use, Verdict};

use super::style::{sanitize, Style};

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
    }
}

/// Wraps `text` to `WIDTH` at its spaces, the first line after `first`, the rest indented by
/// `indent`.
fn wrap(first: &str, indent: usize, text: &str) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    wrap_items(first, indent, &words)
}

/// Lays `items` out after `first`, one space apart, breaking lines only between items, so
/// that an item (a GPU's name, `IOMMU group 7`) is never split. An item too wide for a line
/// of its own runs past `WIDTH` where it is.
fn wrap_items(first: &str, indent: usize, items: &[&str]) -> String {
    let mut out = String::new();
    let mut line = first.to_string();
    let mut len = visible_width(first);
    // A heading counts as an item: the text goes after it with a space.
    let mut empty = first.trim().is_empty();
    for item in items {
        let w = item.chars().count();
        // Break before an item only if that makes it fit: an item too wide for any line
        // stays where it is rather than leave a line with nothing else on it.
        if !empty && len + 1 + w > WIDTH && indent + w <= WIDTH {
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

/// Renders the report for the uses asked for (all when empty).
pub fn render_check(
    out: &mut dyn Write,
    r: &CheckReport,
    uses: &[Use],
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
        // The name is one item: it moves to the next line whole rather than break.
        let name = sanitize(&g.name);
        write!(
            out,
            "{}",
            wrap_items(&st.bold(&g.address.to_string()), 2, &[name.as_str()])
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
                let word = verdict_word(*v);
                let word = match v {
                    Verdict::Ready => st.gpu(word),
                    _ => st.warn(word),
                };
                format!("{}: {word}", use_word(*u))
            })
            .collect();
        writeln!(out, "  {}", verdicts.join("   "))?;
        let mut findings: Vec<&Finding> = g
            .findings
            .iter()
            .filter(|f| f.uses.iter().any(|u| shown.contains(u)))
            .collect();
        findings.sort_by_key(|f| std::cmp::Reverse((f.effect, f.severity)));
        for f in findings {
            writeln!(out)?;
            let head = format!("  [{}] {}:", tag(f), f.id);
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, functions: &[&str]) -> Vec<String> {
        use crate::check::{CheckReport, GpuCheck};
        let addr = |s: &str| s.parse::<crate::model::PciAddress>().unwrap();
        let r = CheckReport {
            schema_version: 1,
            gpus: vec![GpuCheck {
                address: addr(functions[0]),
                name: name.into(),
                functions: functions.iter().map(|a| addr(a)).collect(),
                group: Some("1".into()),
                verdicts: Default::default(),
                findings: vec![],
            }],
            unmatched: vec![],
        };
        let mut out = Vec::new();
        render_check(&mut out, &r, &[], Style::PLAIN).unwrap();
        let text = String::from_utf8(out).unwrap();
        text.lines().map(str::to_string).collect()
    }

    /// The header breaks between items only: a name moves down whole, and `IOMMU group 1`
    /// stays together (it used to end a line with `IOMMU group`, and a name was cut at a
    /// space: "Radeon RX 6800/6800⏎ XT").
    #[test]
    fn the_header_never_splits_a_name_or_a_group() {
        let four = [
            "0000:01:00.0",
            "0000:01:00.1",
            "0000:01:00.2",
            "0000:01:00.3",
        ];
        // 13 + 70 columns do not fit: the name goes to the next line, whole.
        let name = format!("Vendor Corporation {} [GeForce RTX 4090]", "X".repeat(32));
        assert_eq!(name.len(), 70);
        let lines = header(&name, &four);
        assert_eq!(lines[0], "0000:01:00.0", "{lines:#?}");
        assert_eq!(lines[1], format!("  {name}"), "{lines:#?}");
        assert_eq!(
            lines[2], "  functions 0000:01:00.0, 0000:01:00.1, 0000:01:00.2, 0000:01:00.3 ·",
            "{lines:#?}"
        );
        assert_eq!(lines[3], "    IOMMU group 1", "{lines:#?}");
        // A name too long for any line stays after the address, unbroken.
        let navi =
            "Advanced Micro Devices, Inc. [AMD/ATI] Navi 21 [Radeon RX 6800/6800 XT / 6900 XT]";
        let lines = header(navi, &four[..2]);
        assert_eq!(lines[0], format!("0000:01:00.0 {navi}"), "{lines:#?}");
        assert_eq!(
            lines[1],
            "  functions 0000:01:00.0, 0000:01:00.1 · IOMMU group 1"
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
