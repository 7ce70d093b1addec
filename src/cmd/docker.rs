//! `passthru docker`: the compose and CLI lines that give a container this GPU.

use std::io::Write;

use anyhow::Result;

use passthru::host::RootFiles;
use passthru::model::ReadDetail;
use passthru::plan::attach::docker_snippet;

use super::{get_snapshot, host_root};
use crate::cli::{DockerArgs, SourceArgs};

pub fn run(source: &SourceArgs, a: &DockerArgs, out: &mut dyn Write) -> Result<()> {
    let root = host_root(source)?;
    let snap = get_snapshot(source, ReadDetail::Check)?;
    let snippet = docker_snippet(&snap, &RootFiles::new(&root), &a.gpu)?;
    if a.json {
        let gpu = passthru::check::select_one(&snap, &a.gpu)?;
        let doc = passthru::output::documents::DockerDocument {
            schema_version: passthru::output::documents::DOCUMENT_SCHEMA_VERSION,
            gpu: gpu.address,
            nvidia: gpu.on_nvidia_driver(),
            device_nodes: passthru::plan::attach::gpu_nodes(&snap, &RootFiles::new(&root), gpu),
            snippet,
        };
        return super::write_json(out, &doc);
    }
    write!(out, "{snippet}")?;
    Ok(())
}
