//! `passthru advise`: which GPU for a job, for a named server box or the host read.

use std::io::Write;

use anyhow::Result;

use passthru::advise::rank::{advise, AdviseRequest};
use passthru::model::ReadDetail;
use passthru::output::advise::render_advice;

use super::{get_snapshot, write_json};
use crate::cli::{AdviseArgs, SourceArgs};

pub fn run(source: &SourceArgs, a: &AdviseArgs, out: &mut dyn Write) -> Result<()> {
    // With no --server, advise for the host read (live, --root or --from).
    // A host that cannot be read is an error, not a host without GPUs.
    let host_gpus = if a.server.is_none() {
        get_snapshot(source, ReadDetail::Summary)?
            .gpus()
            .filter_map(|g| g.vendor_device())
            .collect()
    } else {
        Vec::new()
    };
    let req = AdviseRequest {
        use_case: a.use_case,
        model: a.model.clone(),
        quant: a.quant.clone(),
        context: a.context,
        streams: a.streams,
        budget_usd: a.budget,
        server: a.server.clone(),
        price_kwh: a.price_kwh,
        host_gpus,
        nvidia_driver: None,
    };
    let report = advise(&req).map_err(anyhow::Error::msg)?;
    if a.json {
        write_json(out, &report)
    } else {
        Ok(render_advice(out, &report, a.price_kwh)?)
    }
}
