//! `passthru lxc share|unshare`: a GPU's device nodes in a Proxmox container's config,
//! edited under the container's own lock (and the lock of every VM config the plan edits too).

use std::io::Write;

use anyhow::Result;

use passthru::host::RootFiles;
use passthru::model::ReadDetail;
use passthru::plan::attach::{plan_lxc_share, plan_lxc_unshare, LxcShareRequest};

use super::{change_host, get_snapshot, host_root};
use crate::cli::{LxcCommand, SourceArgs};

pub fn run(source: &SourceArgs, cmd: &LxcCommand, out: &mut dyn Write) -> Result<()> {
    let root = host_root(source)?;
    let files = RootFiles::new(&root);
    match cmd {
        LxcCommand::Share(a) => change_host(&root, a.write, out, || {
            let snap = get_snapshot(source, ReadDetail::Check)?;
            let req = LxcShareRequest {
                ctid: a.ctid,
                gpu: a.gpu.clone(),
                gid: a.gid,
                kfd: a.kfd,
            };
            Ok(plan_lxc_share(&snap, &files, &req)?)
        }),
        LxcCommand::Unshare(a) => change_host(&root, a.write, out, || {
            let snap = get_snapshot(source, ReadDetail::Check)?;
            Ok(plan_lxc_unshare(&snap, &files, a.ctid, &a.gpu)?)
        }),
    }
}
