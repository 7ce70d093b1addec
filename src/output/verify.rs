//! `passthru verify` as text and as the node_exporter textfile. Pure rendering.

use std::io::{self, Write};

use crate::verify::{Status, VerifyReport};

use super::power::prometheus_label as label;

pub fn render_verify(out: &mut dyn Write, r: &VerifyReport) -> io::Result<()> {
    match &r.next_kernel {
        Some(k) => writeln!(out, "Next boot: kernel {} ({})", k.release, k.how)?,
        None => writeln!(out, "Next boot: no kernel found")?,
    }
    if r.transactions.is_empty() {
        writeln!(
            out,
            "No passthru transaction is in effect on this host: nothing to verify."
        )?;
    }
    for f in &r.findings {
        writeln!(out)?;
        writeln!(
            out,
            "[{}] {} {}: {}",
            f.status.word(),
            f.id,
            f.subject,
            f.message
        )?;
        if !f.evidence.is_empty() {
            writeln!(out, "    evidence: {}", f.evidence)?;
        }
        if let Some(fix) = &f.fix {
            writeln!(out, "    fix: {fix}")?;
        }
    }
    let count = |s: Status| r.findings.iter().filter(|f| f.status == s).count();
    writeln!(out)?;
    writeln!(
        out,
        "{}: {} ok, {} drifted, {} pending, {} unknown, {}.",
        if r.drifted { "DRIFTED" } else { "All holds" },
        count(Status::Ok),
        count(Status::Drifted),
        count(Status::Pending),
        count(Status::Unknown),
        super::words::count(count(Status::Note), "note", "notes")
    )
}

/// The node_exporter textfile-collector format: one gauge for the whole, one per finding,
/// and when it ran (seconds since the epoch).
pub fn render_verify_prometheus(r: &VerifyReport, now_secs: u64) -> String {
    let scope = match r.scope {
        crate::verify::Scope::All => "all",
        crate::verify::Scope::NextBoot => "next-boot",
    };
    let mut t = String::new();
    t.push_str("# HELP passthru_verify_drifted 1 when passthru verify found the host drifted from what passthru prepared.\n# TYPE passthru_verify_drifted gauge\n");
    t.push_str(&format!(
        "passthru_verify_drifted{{scope=\"{scope}\"}} {}\n",
        u8::from(r.drifted)
    ));
    t.push_str("# HELP passthru_verify_finding 1 for each check verify made, by check, subject and status.\n# TYPE passthru_verify_finding gauge\n");
    for f in &r.findings {
        t.push_str(&format!(
            "passthru_verify_finding{{check=\"{}\",subject=\"{}\",status=\"{}\"}} 1\n",
            f.id,
            label(&f.subject),
            serde_json::to_value(f.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        ));
    }
    t.push_str("# HELP passthru_verify_last_run_timestamp_seconds When passthru verify last ran.\n# TYPE passthru_verify_last_run_timestamp_seconds gauge\n");
    t.push_str(&format!(
        "passthru_verify_last_run_timestamp_seconds{{scope=\"{scope}\"}} {now_secs}\n"
    ));
    t
}
