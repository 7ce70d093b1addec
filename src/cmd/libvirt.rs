//! `passthru libvirt attach|detach`: one `<hostdev>` per function of the GPU's card in a
//! libvirt domain's XML.

use std::io::Write;

use anyhow::Result;

use passthru::host::RootFiles;
use passthru::model::ReadDetail;
use passthru::plan::attach::{plan_libvirt_attach, plan_libvirt_detach, LibvirtAttachRequest};

use super::{change_host, get_snapshot, host_root};
use crate::cli::{LibvirtCommand, SourceArgs};

pub fn run(source: &SourceArgs, cmd: &LibvirtCommand, out: &mut dyn Write) -> Result<()> {
    let root = host_root(source)?;
    let files = RootFiles::new(&root);
    match cmd {
        LibvirtCommand::Attach(a) => change_host(&root, a.write, out, || {
            let snap = get_snapshot(source, ReadDetail::Check)?;
            let req = LibvirtAttachRequest {
                domain: a.domain.clone(),
                gpu: a.gpu.clone(),
                romfile: a.romfile.clone(),
                hidden: a.hidden,
                force: a.force,
                vf: a.vf,
                mdev: a.mdev.clone(),
            };
            Ok(plan_libvirt_attach(&snap, &files, &req)?)
        }),
        LibvirtCommand::Detach(a) => change_host(&root, a.write, out, || {
            let snap = get_snapshot(source, ReadDetail::Check)?;
            Ok(plan_libvirt_detach(&snap, &files, &a.domain, &a.gpu)?)
        }),
    }
}
