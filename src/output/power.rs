//! `passthru power`: a table of every GPU's state and draw, yearly cost, and the
//! node_exporter textfile format. Pure rendering.

use std::io::{self, Write};

use serde::Serialize;

use crate::host::power::PowerReading;

use super::style::sanitize;

/// One GPU's line.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct PowerRow {
    pub name: String,
    #[serde(flatten)]
    pub reading: PowerReading,
    /// Typical idle draw from the catalog, when the model is in it.
    pub catalog_idle_w: Option<f64>,
    /// The watts the yearly cost uses: measured when awake and measured, else the catalog's
    /// idle figure (a sleeping GPU draws less than that; the cost is then an upper bound).
    pub cost_watts: Option<f64>,
    pub cost_basis: Option<String>,
    pub yearly_cost: Option<f64>,
}

/// Energy cost of a constant draw for a year (8,760 hours), in the price's currency.
pub fn yearly_cost(watts: f64, price_per_kwh: f64) -> f64 {
    watts * 8760.0 / 1000.0 * price_per_kwh
}

pub fn build_row(
    name: String,
    reading: PowerReading,
    catalog_idle_w: Option<f64>,
    price: f64,
) -> PowerRow {
    let (cost_watts, basis) = match (reading.watts, catalog_idle_w) {
        (Some(w), _) => (
            Some(w),
            Some(format!(
                "measured ({})",
                reading.source.clone().unwrap_or_default()
            )),
        ),
        (None, Some(c)) => (Some(c), Some("catalog idle figure".to_string())),
        (None, None) => (None, None),
    };
    PowerRow {
        name,
        yearly_cost: cost_watts.map(|w| yearly_cost(w, price)),
        reading,
        catalog_idle_w,
        cost_watts,
        cost_basis: basis,
    }
}

pub fn render_power(out: &mut dyn Write, rows: &[PowerRow], price: f64) -> io::Result<()> {
    if rows.is_empty() {
        writeln!(out, "No GPU found (no PCI function of class 03xx).")?;
    }
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
        writeln!(out, "{} {}", r.reading.address, sanitize(&r.name))?;
        writeln!(
            out,
            "  {state}, {}: {now}",
            r.reading.power_state.as_deref().unwrap_or("D?")
        )?;
        match (r.yearly_cost, r.cost_watts) {
            (Some(c), Some(w)) => writeln!(
                out,
                "  {w:.1} W all year costs {c:.2} at {price} per kWh ({})",
                r.cost_basis.as_deref().unwrap_or("")
            )?,
            _ => writeln!(
                out,
                "  yearly cost unknown: no measurement and the model is not in the catalog"
            )?,
        }
    }
    Ok(())
}

/// A Prometheus label value, escaped.
pub fn prometheus_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', " ")
}

/// The node_exporter textfile-collector format.
pub fn render_prometheus(rows: &[PowerRow], price: f64) -> String {
    let mut t = String::new();
    t.push_str("# HELP passthru_gpu_power_watts GPU power draw now, where the driver reports it.\n# TYPE passthru_gpu_power_watts gauge\n");
    for r in rows.iter().filter(|r| r.reading.watts.is_some()) {
        t.push_str(&format!(
            "passthru_gpu_power_watts{{pci=\"{}\",name=\"{}\",source=\"{}\"}} {}\n",
            r.reading.address,
            prometheus_label(&r.name),
            prometheus_label(r.reading.source.as_deref().unwrap_or("")),
            r.reading.watts.unwrap_or(0.0)
        ));
    }
    t.push_str("# HELP passthru_gpu_runtime_suspended 1 when the GPU is runtime-suspended (asleep).\n# TYPE passthru_gpu_runtime_suspended gauge\n");
    for r in rows {
        let asleep = u8::from(r.reading.runtime_status.as_deref() == Some("suspended"));
        t.push_str(&format!(
            "passthru_gpu_runtime_suspended{{pci=\"{}\",name=\"{}\"}} {asleep}\n",
            r.reading.address,
            prometheus_label(&r.name)
        ));
    }
    t.push_str(&format!("# HELP passthru_gpu_yearly_cost Energy cost of the GPU's draw for a year at {price} per kWh.\n# TYPE passthru_gpu_yearly_cost gauge\n"));
    for r in rows.iter().filter(|r| r.yearly_cost.is_some()) {
        t.push_str(&format!(
            "passthru_gpu_yearly_cost{{pci=\"{}\",name=\"{}\",basis=\"{}\"}} {:.2}\n",
            r.reading.address,
            prometheus_label(&r.name),
            prometheus_label(r.cost_basis.as_deref().unwrap_or("")),
            r.yearly_cost.unwrap_or(0.0)
        ));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yearly_cost_is_watts_times_hours_times_price() {
        // 10 W all year = 87.6 kWh.
        assert!((yearly_cost(10.0, 0.30) - 26.28).abs() < 1e-9);
    }
}
