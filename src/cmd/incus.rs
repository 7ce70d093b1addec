//! `passthru incus INSTANCE GPU`: the `incus config device add` line that gives an instance
//! this GPU, printed; with `--yes` on the live host it is run, as an argument vector (no
//! shell). The whole card (`gputype=physical`, with the render group's gid for containers), a
//! VF for a VM (`gputype=sriov`: Incus picks an unbound VF of the parent and binds it), or an
//! mdev type for a VM (`gputype=mdev`).

use std::io::Write;

use anyhow::{bail, Context, Result};

use passthru::host::sharing::read_render_gid;
use passthru::host::RootFiles;
use passthru::model::ReadDetail;
use passthru::plan::containers::{incus_argv, IncusShare};

use super::docker::render_node;
use super::{get_snapshot, host_root, is_live};
use crate::cli::{IncusArgs, SourceArgs};

pub fn run(source: &SourceArgs, a: &IncusArgs, out: &mut dyn Write) -> Result<()> {
    let root = host_root(source)?;
    let snap = get_snapshot(source, ReadDetail::Check)?;
    let gpu = passthru::check::select_one(&snap, &a.gpu)?;
    let files = RootFiles::new(&root);
    let live = is_live(&root);
    let share = match (&a.mdev, a.vf) {
        (Some(t), _) => {
            if !gpu.mdev_types.iter().any(|x| x == t) {
                bail!(
                    "{} offers no mdev type '{t}' (it offers: {})",
                    gpu.address,
                    if gpu.mdev_types.is_empty() {
                        "none".to_string()
                    } else {
                        gpu.mdev_types.join(", ")
                    }
                );
            }
            IncusShare::Mdev(t.clone())
        }
        (None, true) => {
            let pf = snap.pf_of(&gpu.address).unwrap_or(gpu);
            if snap.vfs_of(&pf.address).is_empty() {
                bail!(
                    "{} has no virtual functions: make them with passthru share vfs {} --count N",
                    pf.address,
                    pf.address
                );
            }
            IncusShare::Sriov
        }
        (None, false) => IncusShare::Physical {
            gid: render_node(&snap, &files, &a.gpu).and_then(|n| read_render_gid(&root, &n, live)),
        },
    };
    let argv = incus_argv(&a.instance, &a.device, gpu, &share);
    writeln!(out, "{}", argv.join(" "))?;
    if matches!(share, IncusShare::Sriov) {
        writeln!(out, "# For a VM. Incus takes a VF that no driver holds: passthru share vfs keeps them on vfio-pci, which Incus does not pick; leave them unbound for Incus (autoprobe 0).")?;
    }
    if !a.yes {
        return Ok(());
    }
    if !live {
        writeln!(out, "skipped (not the live host): {}", argv.join(" "))?;
        return Ok(());
    }
    let status = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .status()
        .with_context(|| format!("running {}", argv.join(" ")))?;
    if !status.success() {
        bail!("{} exited with {status}", argv.join(" "));
    }
    Ok(())
}
