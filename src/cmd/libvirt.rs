//! `passthru libvirt attach|detach`: one `<hostdev>` per function of the GPU's card in a
//! libvirt domain's XML.

use std::io::Write;

use anyhow::Result;

use passthru::host::RootFiles;
use passthru::model::ReadDetail;
use passthru::plan::attach::{plan_libvirt_attach, plan_libvirt_detach, LibvirtAttachRequest};

use super::{get_snapshot, host_root, show_and_apply};
use crate::cli::{LibvirtCommand, SourceArgs};

pub fn run(source: &SourceArgs, cmd: &LibvirtCommand, out: &mut dyn Write) -> Result<()> {
    let root = host_root(source)?;
    let snap = get_snapshot(source, ReadDetail::Check)?;
    let files = RootFiles(&root);
    let (plan, write) = match cmd {
        LibvirtCommand::Attach(a) => {
            let req = LibvirtAttachRequest {
                domain: a.domain.clone(),
                gpu: a.gpu.clone(),
                romfile: a.romfile.clone(),
                hidden: a.hidden,
                force: a.force,
            };
            (plan_libvirt_attach(&snap, &files, &req)?, a.write)
        }
        LibvirtCommand::Detach(a) => (
            plan_libvirt_detach(&snap, &files, &a.domain, &a.gpu)?,
            a.write,
        ),
    };
    show_and_apply(&root, &plan, None, write, out)
}
