//! `passthru vm attach|detach`: a GPU's hostpci entries in a Proxmox VM's config, edited
//! under the VM's own lock (and the lock of every container config the plan edits too).

use std::io::Write;

use anyhow::Result;

use passthru::host::RootFiles;
use passthru::model::ReadDetail;
use passthru::plan::attach::{plan_vm_attach, plan_vm_detach, VmAttachRequest};

use super::{change_host, get_snapshot, host_root};
use crate::cli::{SourceArgs, VmCommand};

pub fn run(source: &SourceArgs, cmd: &VmCommand, out: &mut dyn Write) -> Result<()> {
    let root = host_root(source)?;
    let files = RootFiles::new(&root);
    match cmd {
        VmCommand::Attach(a) => change_host(&root, a.write, out, || {
            let snap = get_snapshot(source, ReadDetail::Check)?;
            let req = VmAttachRequest {
                vmid: a.vmid,
                gpu: a.gpu.clone(),
                primary: a.primary,
                mapping: a.mapping.clone(),
                rombar: a.rombar,
                romfile: a.romfile.clone(),
                hidden: a.hidden,
                force: a.force,
                vf: a.vf,
                mdev: a.mdev.clone(),
            };
            Ok(plan_vm_attach(&snap, &files, &req)?)
        }),
        VmCommand::Detach(a) => change_host(&root, a.write, out, || {
            let snap = get_snapshot(source, ReadDetail::Check)?;
            Ok(plan_vm_detach(&snap, &files, a.vmid, &a.gpu)?)
        }),
    }
}
