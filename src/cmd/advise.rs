//! `passthru advise`: which GPU for a job, for a named server box or the host read.

use std::io::Write;

use anyhow::Result;

use passthru::advise::rank::{advise, AdviseRequest};
use passthru::model::ReadDetail;
use passthru::output::advise::render_advice;

use super::{get_snapshot, write_json};
use crate::cli::{AdviseArgs, SourceArgs};

pub fn run(source: &SourceArgs, a: &AdviseArgs, out: &mut dyn Write) -> Result<()> {
    // With no --server, advise for the host read (live, --root or --from): its GPUs (iGPU
    // included) by PCI id, and its NVIDIA driver for the NVENC session cap. Full detail is
    // what reads `proc/driver/nvidia/version`. A host that cannot be read is an error, not a
    // host without GPUs.
    let (host_gpus, nvidia_driver) = if a.server.is_none() {
        let snap = get_snapshot(source, ReadDetail::Full)?;
        let ids = snap.gpus().filter_map(|g| g.vendor_device()).collect();
        (ids, snap.system.nvidia_driver_version.clone())
    } else {
        (Vec::new(), None)
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
        nvidia_driver,
        only_gpus: a.gpu.clone(),
    };
    let report = advise(&req)?;
    if a.json {
        write_json(out, &report)
    } else {
        Ok(render_advice(out, &report, a.price_kwh)?)
    }
}
