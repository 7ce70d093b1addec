//! `passthru report --html FILE`: the host on one self-contained page (`output::report`).

use std::io::Write;

use anyhow::{Context, Result};

use passthru::check::{check_host, CheckRequest};
use passthru::model::ReadDetail;
use passthru::output::report::{render_html, ReportInput};

use super::power::read_power_rows;
use super::{get_snapshot, host_root};
use crate::cli::{ReportArgs, SourceArgs};

pub fn run(source: &SourceArgs, a: &ReportArgs, out: &mut dyn Write) -> Result<()> {
    // The tree needs every device's bridge chain and the host's own devices: a full read.
    let snap = get_snapshot(source, ReadDetail::Full)?;
    let check = check_host(&snap, &CheckRequest::default());
    let power = read_power_rows(source, &host_root(source)?, &snap, a.price_kwh);
    let page = render_html(&ReportInput {
        snapshot: &snap,
        check: &check,
        power: &power,
        price_kwh: a.price_kwh,
    });
    if a.html.as_os_str() == "-" {
        out.write_all(page.as_bytes())?;
        return Ok(());
    }
    // Atomic, as every file passthru writes: a browser reloading the page never sees half.
    passthru::apply::write_textfile(&a.html, page.as_bytes(), 0o644)
        .with_context(|| format!("writing the report {}", a.html.display()))?;
    writeln!(
        out,
        "Wrote {} ({} KiB): open it in a browser; it loads nothing from the network.",
        a.html.display(),
        page.len().div_ceil(1024)
    )?;
    Ok(())
}
