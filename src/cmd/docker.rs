//! `passthru docker`: the compose and CLI lines that give a container this GPU.

use std::io::Write;

use anyhow::Result;

use passthru::host::sharing::read_render_gid;
use passthru::host::RootFiles;
use passthru::model::ReadDetail;
use passthru::plan::attach::{docker_snippet, gpu_nodes};

use super::{get_snapshot, host_root, is_live};
use crate::cli::{DockerArgs, SourceArgs};

pub fn run(source: &SourceArgs, a: &DockerArgs, out: &mut dyn Write) -> Result<()> {
    let root = host_root(source)?;
    let snap = get_snapshot(source, ReadDetail::Check)?;
    let files = RootFiles::new(&root);
    let gid =
        render_node(&snap, &files, &a.gpu).and_then(|n| read_render_gid(&root, &n, is_live(&root)));
    let snippet = docker_snippet(&snap, &files, &a.gpu, gid)?;
    if a.json {
        let gpu = passthru::check::select_one(&snap, &a.gpu)?;
        let doc = passthru::output::documents::DockerDocument {
            schema_version: passthru::output::documents::DOCUMENT_SCHEMA_VERSION,
            gpu: gpu.address,
            nvidia: gpu.on_nvidia_driver(),
            device_nodes: passthru::plan::attach::gpu_nodes(&snap, &files, gpu),
            snippet,
        };
        return super::write_json(out, &doc);
    }
    write!(out, "{snippet}")?;
    Ok(())
}

/// The GPU's render node (`/dev/dri/renderD128`), when it has one.
pub fn render_node(
    snap: &passthru::model::Snapshot,
    files: &RootFiles,
    sel: &str,
) -> Option<String> {
    let gpu = passthru::check::select_one(snap, sel).ok()?;
    gpu_nodes(snap, files, gpu)
        .into_iter()
        .find(|n| n.contains("renderD"))
}
