//! `passthru lxc share|unshare`: a GPU's device nodes in a Proxmox container's config,
//! edited under the container's own lock.

use std::io::Write;

use anyhow::Result;

use passthru::apply::LockTarget;
use passthru::host::RootFiles;
use passthru::model::ReadDetail;
use passthru::plan::attach::{plan_lxc_share, plan_lxc_unshare, LxcShareRequest};

use super::{get_snapshot, host_root, show_and_apply};
use crate::cli::{LxcCommand, SourceArgs};

pub fn run(source: &SourceArgs, cmd: &LxcCommand, out: &mut dyn Write) -> Result<()> {
    let root = host_root(source)?;
    let snap = get_snapshot(source, ReadDetail::Check)?;
    let files = RootFiles(&root);
    let (ctid, plan, write) = match cmd {
        LxcCommand::Share(a) => {
            let req = LxcShareRequest {
                ctid: a.ctid,
                gpu: a.gpu.clone(),
                gid: a.gid,
                kfd: a.kfd,
            };
            (a.ctid, plan_lxc_share(&snap, &files, &req)?, a.write)
        }
        LxcCommand::Unshare(a) => (
            a.ctid,
            plan_lxc_unshare(&snap, &files, a.ctid, &a.gpu)?,
            a.write,
        ),
    };
    show_and_apply(&root, &plan, Some(LockTarget::LxcGuest(ctid)), write, out)
}
