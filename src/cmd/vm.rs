//! `passthru vm attach|detach`: a GPU's hostpci entries in a Proxmox VM's config, edited
//! under the VM's own lock.

use std::io::Write;

use anyhow::Result;

use passthru::apply::LockTarget;
use passthru::host::RootFiles;
use passthru::model::ReadDetail;
use passthru::plan::attach::{plan_vm_attach, plan_vm_detach, VmAttachRequest};

use super::{get_snapshot, host_root, show_and_apply};
use crate::cli::{SourceArgs, VmCommand};

pub fn run(source: &SourceArgs, cmd: &VmCommand, out: &mut dyn Write) -> Result<()> {
    let root = host_root(source)?;
    let snap = get_snapshot(source, ReadDetail::Check)?;
    let files = RootFiles(&root);
    let (vmid, plan, write) = match cmd {
        VmCommand::Attach(a) => {
            let req = VmAttachRequest {
                vmid: a.vmid,
                gpu: a.gpu.clone(),
                primary: a.primary,
                mapping: a.mapping.clone(),
                rombar: a.rombar,
                romfile: a.romfile.clone(),
                hidden: a.hidden,
                force: a.force,
            };
            (a.vmid, plan_vm_attach(&snap, &files, &req)?, a.write)
        }
        VmCommand::Detach(a) => (
            a.vmid,
            plan_vm_detach(&snap, &files, a.vmid, &a.gpu)?,
            a.write,
        ),
    };
    show_and_apply(&root, &plan, Some(LockTarget::QemuGuest(vmid)), write, out)
}
