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

/// Wraps `text` to `WIDTH`, the first line after `first`, the rest indented by `indent`.
fn wrap(first: &str, indent: usize, text: &str) -> String {
    let mut out = String::new();
    let mut line = first.to_string();
    let mut len = first.chars().count();
    // A heading counts as a word: the text goes after it with a space.
    let mut empty = first.trim().is_empty();
    for word in text.split_whitespace() {
        let w = word.chars().count();
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
        line.push_str(word);
        len += w;
        empty = false;
    }
    out.push_str(line.trim_end());
    out.push('\n');
    out
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
        write!(
            out,
            "{}",
            wrap(&st.bold(&g.address.to_string()), 2, &sanitize(&g.name))
        )?;
        let funcs: Vec<String> = g.functions.iter().map(|a| a.to_string()).collect();
        let group = g
            .group
            .as_deref()
            .map_or("no IOMMU group".to_string(), |id| {
                format!("IOMMU group {}", sanitize(id))
            });
        write!(
            out,
            "{}",
            wrap("  functions", 4, &format!("{} · {group}", funcs.join(", ")))
        )?;
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

    #[test]
    fn wrapping_keeps_lines_within_80_columns() {
        let text = "word ".repeat(60);
        let w = wrap("  head:", 6, &text);
        assert!(w.lines().all(|l| l.chars().count() <= WIDTH), "{w}");
        assert!(w.lines().skip(1).all(|l| l.starts_with("      word")));
    }
}
