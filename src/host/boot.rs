//! Firmware, boot loader and initramfs system: where the next boot's command line comes
//! from, and what rebuilds the initramfs. Detected from files, never assumed from the
//! distribution's name. Read-only.

use crate::formats::cmdline::parse_cmdline;
use crate::formats::grub_defaults::{evaluate_grub_cmdline, grub_source_order, GrubFile};
use crate::model::{
    BootInfo, BootloaderFound, BootloaderKind, CmdlineParam, Firmware, InitramfsFound,
    InitramfsKind, Issue,
};

use super::root::HostRoot;

/// Places a systemd-boot / BLS loader directory lives on common layouts.
const LOADER_DIRS: &[&str] = &["boot/loader", "boot/efi/loader", "efi/loader"];

pub fn read_boot(root: &HostRoot, issues: &mut Vec<Issue>) -> BootInfo {
    let firmware = if root.is_dir("sys/firmware/efi") {
        Some(Firmware::Efi)
    } else if root.is_dir("sys/firmware") {
        Some(Firmware::Bios)
    } else {
        None
    };

    let mut found = Vec::new();
    let pbt_uuids = root
        .read_noting("etc/kernel/proxmox-boot-uuids", issues)
        .is_some_and(|t| {
            t.lines()
                .any(|l| !l.trim().is_empty() && !l.starts_with('#'))
        });
    let kernel_cmdline = root.exists("etc/kernel/cmdline");

    if pbt_uuids && kernel_cmdline {
        found.push(BootloaderFound {
            kind: BootloaderKind::ProxmoxBootTool,
            evidence: vec![
                "etc/kernel/proxmox-boot-uuids".into(),
                "etc/kernel/cmdline".into(),
            ],
            configured_params: read_kernel_cmdline_file(root, issues),
            config_files: vec!["etc/kernel/cmdline".into()],
        });
    }
    if root.exists("etc/kernelstub/configuration") {
        found.push(read_kernelstub(root, issues));
    }
    let bls_entries = read_bls_entries(root, issues);
    let grub_defaults = root.exists("etc/default/grub");
    let grub2 = root.exists("usr/sbin/grubby")
        || root.exists("usr/bin/grubby")
        || root.is_dir("boot/grub2");
    if !bls_entries.is_empty() && grub2 {
        let (entry, params) = &bls_entries[0];
        let mut evidence = vec![entry.clone()];
        if root.exists("usr/sbin/grubby") {
            evidence.push("usr/sbin/grubby".into());
        }
        found.push(BootloaderFound {
            kind: BootloaderKind::GrubBls,
            evidence,
            configured_params: params.clone(),
            config_files: vec![entry.clone()],
        });
    }
    if grub_defaults || root.exists("boot/grub/grub.cfg") {
        let (params, files) = read_grub_defaults(root, issues);
        let mut evidence: Vec<String> = [
            "etc/default/grub",
            "boot/grub/grub.cfg",
            "usr/sbin/update-grub",
        ]
        .into_iter()
        .filter(|p| root.exists(p))
        .map(str::to_string)
        .collect();
        if root.exists("etc/kernel/proxmox-boot-uuids") && !kernel_cmdline {
            // proxmox-boot-tool in GRUB mode still takes the command line from the GRUB defaults.
            evidence.push("etc/kernel/proxmox-boot-uuids".into());
        }
        found.push(BootloaderFound {
            kind: BootloaderKind::Grub,
            evidence,
            configured_params: params,
            config_files: files,
        });
    }
    let loader_conf = LOADER_DIRS
        .iter()
        .map(|d| format!("{d}/loader.conf"))
        .find(|p| root.exists(p));
    if (kernel_cmdline && !pbt_uuids) || (loader_conf.is_some() && !grub2) {
        let mut evidence = Vec::new();
        let mut config_files = Vec::new();
        if kernel_cmdline {
            evidence.push("etc/kernel/cmdline".to_string());
            config_files.push("etc/kernel/cmdline".to_string());
        }
        evidence.extend(loader_conf);
        let configured_params = if kernel_cmdline {
            read_kernel_cmdline_file(root, issues)
        } else {
            bls_entries.first().map(|e| e.1.clone()).unwrap_or_default()
        };
        found.push(BootloaderFound {
            kind: BootloaderKind::SystemdBoot,
            evidence,
            configured_params,
            config_files,
        });
    }

    let in_use = found.first().map(|b| b.kind);
    BootInfo {
        firmware,
        bootloaders: found,
        in_use,
        initramfs: read_initramfs_systems(root),
    }
}

/// `etc/kernel/cmdline`: one line, used by kernel-install and proxmox-boot-tool.
fn read_kernel_cmdline_file(root: &HostRoot, issues: &mut Vec<Issue>) -> Vec<CmdlineParam> {
    root.read_noting("etc/kernel/cmdline", issues)
        .map(|t| {
            let line: Vec<&str> = t
                .lines()
                .filter(|l| !l.trim_start().starts_with('#'))
                .collect();
            parse_cmdline(&line.join(" "))
        })
        .unwrap_or_default()
}

/// `GRUB_CMDLINE_LINUX` + `GRUB_CMDLINE_LINUX_DEFAULT` after `etc/default/grub` and then the
/// `etc/default/grub.d/*.cfg` drop-ins are sourced in order, as grub-mkconfig does (the same
/// evaluation setup plans with). What the text cannot settle is an issue naming the line, and
/// the parameters are then unknown (empty).
pub fn read_grub_defaults(
    root: &HostRoot,
    issues: &mut Vec<Issue>,
) -> (Vec<CmdlineParam>, Vec<String>) {
    let names = root.list_dir("etc/default/grub.d", issues);
    let order = grub_source_order(root.exists("etc/default/grub"), &names);
    let mut files = Vec::new();
    for path in order {
        if let Some(text) = root.read_noting(&path, issues) {
            files.push(GrubFile { path, text });
        }
    }
    match evaluate_grub_cmdline(&files) {
        Ok(v) => (parse_cmdline(&v.normal_entry()), v.files_used),
        Err(e) => {
            issues.push(Issue::new(
                &e.file,
                format!(
                    "kernel parameters cannot be read: line {}: {}",
                    e.line, e.why
                ),
            ));
            (Vec::new(), Vec::new())
        }
    }
}

/// BLS entries (`loader/entries/*.conf`), newest first by file name, with their `options`.
fn read_bls_entries(root: &HostRoot, issues: &mut Vec<Issue>) -> Vec<(String, Vec<CmdlineParam>)> {
    let mut out = Vec::new();
    for dir in LOADER_DIRS {
        let entries_dir = format!("{dir}/entries");
        let mut names = root.list_dir(&entries_dir, issues);
        names.retain(|n| n.ends_with(".conf"));
        names.reverse();
        for name in names {
            let rel = format!("{entries_dir}/{name}");
            if let Some(text) = root.read_noting(&rel, issues) {
                let options: Vec<&str> = text
                    .lines()
                    .filter_map(|l| l.trim().strip_prefix("options"))
                    .filter(|rest| rest.starts_with(char::is_whitespace))
                    .collect();
                out.push((rel, parse_cmdline(&options.join(" "))));
            }
        }
    }
    out
}

/// Pop!_OS kernelstub keeps its options in a JSON file.
fn read_kernelstub(root: &HostRoot, issues: &mut Vec<Issue>) -> BootloaderFound {
    let rel = "etc/kernelstub/configuration";
    let mut params = Vec::new();
    if let Some(text) = root.read_noting(rel, issues) {
        match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(v) => {
                if let Some(opts) = v.pointer("/user/kernel_options").and_then(|o| o.as_array()) {
                    let words: Vec<&str> = opts.iter().filter_map(|o| o.as_str()).collect();
                    params = parse_cmdline(&words.join(" "));
                }
            }
            Err(e) => issues.push(Issue::new(rel, format!("not valid JSON: {e}"))),
        }
    }
    BootloaderFound {
        kind: BootloaderKind::Kernelstub,
        evidence: vec![rel.into()],
        configured_params: params,
        config_files: vec![rel.into()],
    }
}

fn read_initramfs_systems(root: &HostRoot) -> Vec<InitramfsFound> {
    let candidates: [(InitramfsKind, &[&str]); 4] = [
        (
            InitramfsKind::InitramfsTools,
            &[
                "etc/initramfs-tools/initramfs.conf",
                "usr/sbin/update-initramfs",
                "etc/initramfs-tools/modules",
            ],
        ),
        (
            InitramfsKind::Dracut,
            &["etc/dracut.conf", "etc/dracut.conf.d", "usr/bin/dracut"],
        ),
        (
            InitramfsKind::Mkinitcpio,
            &["etc/mkinitcpio.conf", "usr/bin/mkinitcpio"],
        ),
        (
            InitramfsKind::Booster,
            &["etc/booster.yaml", "usr/bin/booster"],
        ),
    ];
    candidates
        .into_iter()
        .filter_map(|(kind, paths)| {
            let evidence: Vec<String> = paths
                .iter()
                .filter(|p| root.exists(p))
                .map(|p| p.to_string())
                .collect();
            (!evidence.is_empty()).then_some(InitramfsFound { kind, evidence })
        })
        .collect()
}
