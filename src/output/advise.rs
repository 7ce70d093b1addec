//! The `passthru advise` table: picks ranked with their reasons, then what was ruled out.

use std::io::{self, Write};

use crate::advise::rank::AdviseReport;

pub fn render_advice(out: &mut dyn Write, r: &AdviseReport, price: f64) -> io::Result<()> {
    if r.picks.is_empty() {
        writeln!(out, "No card in the catalog fits this job here.")?;
    }
    for (i, p) in r.picks.iter().enumerate().take(8) {
        let integrated = crate::advise::catalog::gpu_by_key(&p.key)
            .is_some_and(|g| g.kind == crate::advise::catalog::Kind::Integrated);
        let price_s = match p.used_price_usd {
            Some(v) => format!("~${v:.0} used"),
            None if integrated => "comes with the CPU".to_string(),
            None => "price unknown".to_string(),
        };
        writeln!(
            out,
            "{}. {}  ({price_s}; idle {} W = {:.0}/year at {price}/kWh)",
            i + 1,
            p.name,
            p.idle_w,
            p.yearly_idle_cost
        )?;
        for why in &p.reasons {
            writeln!(out, "     - {why}")?;
        }
    }
    if !r.ruled_out.is_empty() {
        writeln!(out)?;
        writeln!(out, "Ruled out:")?;
        for p in &r.ruled_out {
            writeln!(
                out,
                "  {}: {}",
                p.name,
                p.ruled_out.as_deref().unwrap_or("")
            )?;
        }
    }
    for n in &r.notes {
        writeln!(out)?;
        writeln!(out, "Note: {n}")?;
    }
    Ok(())
}
