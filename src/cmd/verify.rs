//! `passthru verify`: read what passthru prepared (the journal) and what the host is now and
//! will boot next, have the library compare them (`verify::check_all`, pure), print the
//! findings, and write the Prometheus textfile when asked. Exit 1 when something drifted.

use std::io::Write;

use anyhow::{Context, Result};

use passthru::apply;
use passthru::host::container_libs::read_container_libs;
use passthru::host::next_boot::{
    initramfs_image_for, read_initramfs_listing, read_kernel_modules, read_next_kernel,
    read_out_of_tree_modules, InitramfsImage,
};
use passthru::host::RootFiles;
use passthru::model::ReadDetail;
use passthru::output::verify::{render_verify, render_verify_prometheus};
use passthru::plan::digest;
use passthru::plan::source::FileSource;
use passthru::verify::{check_all, read_prepared, Scope, VerifyInputs};

use super::{get_snapshot, host_root, is_live, write_json};
use crate::cli::{SourceArgs, VerifyArgs};

/// Runs verify; whether everything holds (no finding drifted).
pub fn run(source: &SourceArgs, a: &VerifyArgs, out: &mut dyn Write) -> Result<bool> {
    let root = host_root(source)?;
    let live = is_live(&root);
    let snap = get_snapshot(source, ReadDetail::Check)?;
    let transactions = apply::list_transactions(root.path()).with_context(|| {
        format!(
            "reading passthru's journal {}",
            root.join("var/lib/passthru/journal").display()
        )
    })?;
    let prepared = read_prepared(&transactions);

    let files_now = prepared
        .files
        .keys()
        .map(|path| {
            let now = apply::read_current(root.path(), path)
                .map(|b| b.as_deref().map(digest))
                .map_err(|e| format!("reading {}: {e}", root.join(path).display()));
            (path.clone(), now)
        })
        .collect();
    let files = RootFiles::new(&root);
    let mut guest_configs = Vec::new();
    for (config, _) in prepared.hostpci.keys() {
        if guest_configs.iter().any(|(c, _)| c == config) {
            continue;
        }
        let text = files
            .read_text(config)
            .with_context(|| format!("reading {}", root.join(config).display()))?;
        guest_configs.push((config.clone(), text));
    }

    let next_kernel = read_next_kernel(&root, &snap, a.kernel.as_deref());
    let (initramfs, next_modules) = match &next_kernel {
        Some(k) => {
            let (path, argv) = initramfs_image_for(&root, &snap, &k.release);
            let listing = read_initramfs_listing(&root, &path, &argv, live);
            (
                Some(InitramfsImage {
                    path,
                    argv,
                    listing,
                }),
                read_kernel_modules(&root, &k.release),
            )
        }
        None => (None, Default::default()),
    };
    let inputs = VerifyInputs {
        snapshot: &snap,
        transactions: &transactions,
        scope: if a.next_boot {
            Scope::NextBoot
        } else {
            Scope::All
        },
        next_kernel,
        initramfs,
        next_modules,
        out_of_tree: read_out_of_tree_modules(&root),
        files_now,
        guest_configs,
        container_libs: read_container_libs(&root),
    };
    let report = check_all(&inputs);
    if a.json {
        write_json(out, &report)?;
    } else {
        render_verify(out, &report)?;
    }
    if let Some(path) = &a.prometheus {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        apply::write_textfile(
            path,
            render_verify_prometheus(&report, now).as_bytes(),
            0o644,
        )
        .with_context(|| format!("writing the Prometheus textfile {}", path.display()))?;
    }
    Ok(!report.drifted)
}
