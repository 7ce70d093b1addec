//! Boot Loader Specification entries (`loader/entries/*.conf`): systemd-boot without
//! `etc/kernel/cmdline`, and GRUB with BLS on Fedora/RHEL, where `GRUB_CMDLINE_LINUX` in
//! `etc/default/grub` also gives kernels installed later their parameters.

use crate::formats::grub_defaults::CMDLINE_LINUX;
use crate::model::Snapshot;

use super::super::file_edit;
use super::super::files::{edit_bls_entry, ParamChange};
use super::super::setup::SetupError;
use super::super::source::FileSource;
use super::grub::read_grub_files;
use super::grub_defaults::plan_grub_params;
use super::{KernelParamTarget, Steps};

const ENTRY_DIRS: [&str; 3] = [
    "boot/loader/entries",
    "boot/efi/loader/entries",
    "efi/loader/entries",
];

pub struct BlsEntries;
pub struct GrubBls;

/// Edits the `options` line of every entry (journaled, so rollback is exact).
fn plan_entries(src: &dyn FileSource, change: &ParamChange) -> Result<Steps, SetupError> {
    let mut out = Steps::default();
    for dir in ENTRY_DIRS {
        for name in src.list(dir).into_iter().filter(|n| n.ends_with(".conf")) {
            let path = format!("{dir}/{name}");
            let text = src.read_text(&path)?.unwrap_or_default();
            let after = edit_bls_entry(&path, &text, change)?;
            out.edits.extend(file_edit(
                src,
                &path,
                Some(after.into_bytes()),
                0o644,
                "kernel parameters of this boot entry",
            )?);
        }
    }
    Ok(out)
}

impl KernelParamTarget for BlsEntries {
    fn plan_params(
        &self,
        _: &Snapshot,
        src: &dyn FileSource,
        change: &ParamChange,
    ) -> Result<Steps, SetupError> {
        plan_entries(src, change)
    }
}

impl KernelParamTarget for GrubBls {
    fn plan_params(
        &self,
        _: &Snapshot,
        src: &dyn FileSource,
        change: &ParamChange,
    ) -> Result<Steps, SetupError> {
        let mut out = plan_entries(src, change)?;
        if src.read("etc/default/grub")?.is_some() {
            let files = read_grub_files(src)?;
            for (path, after) in plan_grub_params(&files, None, CMDLINE_LINUX, change)? {
                out.edits.extend(file_edit(
                    src,
                    &path,
                    after.map(String::into_bytes),
                    0o644,
                    "kernel parameters for kernels installed later",
                )?);
            }
        }
        Ok(out)
    }
}
