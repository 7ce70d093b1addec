//! GRUB with grub-mkconfig (Debian, Ubuntu, Proxmox, Arch): `GRUB_CMDLINE_LINUX_DEFAULT`, in
//! passthru's drop-in where the distribution reads `etc/default/grub.d`, then `update-grub`
//! or `grub-mkconfig -o`.

use crate::formats::grub_defaults::{grub_source_order, GrubFile, CMDLINE_DEFAULT};
use crate::model::Snapshot;

use super::super::files::ParamChange;
use super::super::setup::{SetupError, GRUB_DROPIN};
use super::super::source::{FileSource, ReadError};
use super::super::{file_edit, PlannedCommand};
use super::grub_defaults::plan_grub_params;
use super::{KernelParamTarget, Steps};

pub struct Grub;

/// `etc/default/grub` and `etc/default/grub.d/*.cfg`, in the order grub-mkconfig sources them.
pub fn read_grub_files(src: &dyn FileSource) -> Result<Vec<GrubFile>, ReadError> {
    let main_exists = src.read("etc/default/grub")?.is_some();
    let order = grub_source_order(main_exists, &src.list("etc/default/grub.d"));
    let mut files = Vec::new();
    for path in order {
        if let Some(text) = src.read_text(&path)? {
            files.push(GrubFile { path, text });
        }
    }
    Ok(files)
}

/// The command that regenerates grub.cfg on this host.
fn refresh_command(s: &Snapshot, src: &dyn FileSource) -> Result<PlannedCommand, ReadError> {
    let update_grub = s
        .boot
        .bootloaders
        .iter()
        .any(|b| b.evidence.iter().any(|e| e == "usr/sbin/update-grub"))
        || src.read("usr/sbin/update-grub")?.is_some();
    let (argv, why): (Vec<&str>, &str) = if update_grub {
        (
            vec!["update-grub"],
            "regenerate grub.cfg (on Proxmox it also refreshes every ESP)",
        )
    } else if src.read("boot/grub2/grub.cfg")?.is_some() {
        (
            vec!["grub2-mkconfig", "-o", "/boot/grub2/grub.cfg"],
            "regenerate grub.cfg",
        )
    } else {
        (
            vec!["grub-mkconfig", "-o", "/boot/grub/grub.cfg"],
            "regenerate grub.cfg",
        )
    };
    Ok(PlannedCommand {
        argv: argv.into_iter().map(String::from).collect(),
        why: why.into(),
    })
}

impl KernelParamTarget for Grub {
    fn plan_params(
        &self,
        s: &Snapshot,
        src: &dyn FileSource,
        change: &ParamChange,
    ) -> Result<Steps, SetupError> {
        // A drop-in where the distribution's grub reads etc/default/grub.d (Debian, Ubuntu,
        // Proxmox), so the user's file keeps every byte; removals still edit the file that
        // holds them.
        let dropin = src.is_dir("etc/default/grub.d").then_some(GRUB_DROPIN);
        let files = read_grub_files(src)?;
        let mut out = Steps::default();
        for (path, after) in plan_grub_params(&files, dropin, CMDLINE_DEFAULT, change)? {
            let reason = if path == GRUB_DROPIN {
                "kernel parameters (a drop-in: etc/default/grub keeps every byte)"
            } else if dropin.is_none() && path == "etc/default/grub" {
                "kernel parameters in GRUB_CMDLINE_LINUX_DEFAULT"
            } else {
                "remove kernel parameters that would undo passthrough (or give a key another value)"
            };
            out.edits.extend(file_edit(
                src,
                &path,
                after.map(String::into_bytes),
                0o644,
                reason,
            )?);
        }
        out.commands.push(refresh_command(s, src)?);
        Ok(out)
    }
}
