//! The findings of every GPU (with evidence and fix), power and yearly cost, and what could
//! not be read: the parts of the page under the tree.

use crate::check::{CheckReport, Effect, Severity};
use crate::model::Snapshot;
use crate::output::power::PowerRow;
use crate::output::tree::use_word;

use super::html::{id_token, Html};

pub(super) fn render_findings(h: &mut Html, c: &CheckReport) {
    h.raw("<section id=\"findings\"><h2>Findings</h2>");
    if c.gpus.is_empty() {
        h.raw("<p>No GPU, so nothing to judge.</p>");
    }
    for g in &c.gpus {
        let addr = g.address.to_string();
        h.raw("<article id=\"f-")
            .raw(&id_token(&addr))
            .raw("\"><h3>");
        h.text(&format!("{addr} {}", g.name));
        h.raw("</h3><div class=\"verdicts\">");
        for (u, v) in &g.verdicts {
            super::render_verdict(h, *u, *v);
        }
        h.raw("</div><p>");
        h.text(&format!(
            "State: {}. Next: {}",
            g.state.state.describe(),
            g.state.next_step
        ));
        h.raw("</p><table><thead><tr><th>severity</th><th>rule</th><th>uses</th><th>finding</th><th>evidence</th><th>fix</th></tr></thead><tbody>");
        // What stands in the way first; within an effect, check's own order.
        let mut findings: Vec<_> = g.findings.iter().collect();
        findings.sort_by_key(|f| std::cmp::Reverse(f.effect));
        for f in findings {
            let sev = match f.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
                Severity::Info => "info",
            };
            let effect = match f.effect {
                Effect::Blocks => " · blocks",
                Effect::Unknown => " · unknown",
                Effect::NeedsSetup => " · needs setup",
                Effect::None => "",
            };
            h.raw("<tr><td><span class=\"sev sev-")
                .raw(sev)
                .raw("\">")
                .raw(sev)
                .raw(effect)
                .raw("</span></td><td><code class=\"rule\">")
                .raw(f.id.as_str())
                .raw("</code></td><td>");
            let uses: Vec<&str> = f.uses.iter().map(|u| use_word(*u)).collect();
            h.text(&uses.join(", "));
            h.raw("</td>");
            h.el("td", "", &f.message);
            h.el("td", "ev", &f.evidence);
            h.el("td", "fix", f.fix.as_deref().unwrap_or("—"));
            h.raw("</tr>");
        }
        h.raw("</tbody></table></article>");
    }
    h.raw("</section>\n");
}

pub(super) fn render_power(h: &mut Html, rows: &[PowerRow], price: f64) {
    h.raw("<section id=\"power\"><h2>Power and yearly cost</h2>");
    if rows.is_empty() {
        h.raw("<p>No GPU found.</p></section>\n");
        return;
    }
    h.raw("<table><thead><tr><th>GPU</th><th>state</th><th>now</th><th>a year</th></tr></thead><tbody>");
    for r in rows {
        let state = match r.reading.runtime_status.as_deref() {
            Some("suspended") => "asleep".to_string(),
            Some(s) => s.to_string(),
            None => "state unknown".into(),
        };
        let now = match r.reading.watts {
            Some(w) => format!("{w:.1} W ({})", r.reading.source.as_deref().unwrap_or("")),
            None => format!(
                "no live figure: {}",
                r.reading.unavailable.as_deref().unwrap_or("unknown")
            ),
        };
        let year = match (r.yearly_cost, r.cost_watts) {
            (Some(c), Some(w)) => format!(
                "{c:.2} at {price} per kWh ({w:.1} W, {})",
                r.cost_basis.as_deref().unwrap_or("")
            ),
            _ => "unknown: no measurement and the model is not in the catalog".into(),
        };
        h.raw("<tr>");
        h.el("td", "", &format!("{} {}", r.reading.address, r.name));
        h.el(
            "td",
            "",
            &format!(
                "{state}, {}",
                r.reading.power_state.as_deref().unwrap_or("D?")
            ),
        );
        h.el("td", "", &now);
        h.el("td", "", &year);
        h.raw("</tr>");
    }
    h.raw("</tbody></table></section>\n");
}

pub(super) fn render_issues(h: &mut Html, s: &Snapshot) {
    let issues: Vec<_> = s.all_issues().collect();
    if issues.is_empty() {
        return;
    }
    h.raw("<section id=\"issues\"><h2>Could not read</h2><ul class=\"issues\">");
    for i in issues {
        h.el("li", "", &format!("{}: {}", i.path, i.problem));
    }
    h.raw("</ul></section>\n");
}
