//! `passthru setup vm GPU` and `setup host GPU` as plans. Pure: a function of the snapshot,
//! the current bytes of the files it touches (through `FileSource`) and the request.
//!
//! What it writes, for the boot loader and initramfs system the snapshot found:
//! - kernel parameters: only what is needed (intel_iommu=on where the kernel does not enable
//!   the Intel IOMMU by default; never amd_iommu=on), iommu=pt, initcall_blacklist=sysfb_init
//!   for a boot GPU when asked or when a firmware framebuffer holds it, and the removal of
//!   iommu=off / intel_iommu=off / amd_iommu=off;
//! - the vfio modules for the initramfs (vfio_virqfd only before 6.2);
//! - binding: `options vfio-pci ids=` with `softdep DRIVER pre: vfio-pci` when those ids
//!   match only this card, otherwise a udev rule setting driver_override per address, so a
//!   twin card or a host GPU of the same model is untouched. Never a blacklist.
//!
//! passthru's own files are rendered from everything it manages, so running setup for a
//! second GPU, or the same one twice, converges. The modprobe file is edited, not rewritten:
//! the user's own lines in it stay (plan/modprobe_file.rs).

use std::collections::BTreeSet;

use crate::check::{check_gpu, select_one, RuleId, Use};
use crate::formats::cmdline::parse_cmdline;
use crate::model::{BootloaderKind, CmdlineParam, InitramfsKind, PciDevice, Snapshot};

use super::files::{
    apply_params, edit_bls_entry, edit_cmdline_file, edit_module_list, EditError, ParamChange,
};
use super::modprobe_file::{read_vfio_binding, render_vfio_binding, VfioBinding};
use super::{FileEdit, Plan, PlannedCommand};

pub use super::source::{FileSource, ReadError};

pub const MODPROBE_FILE: &str = "etc/modprobe.d/passthru-vfio.conf";
pub const UDEV_FILE: &str = "etc/udev/rules.d/90-passthru-vfio.rules";
pub const GRUB_DROPIN: &str = "etc/default/grub.d/90-passthru.cfg";
pub const DRACUT_FILE: &str = "etc/dracut.conf.d/90-passthru-vfio.conf";
pub const MKINITCPIO_FILE: &str = "etc/mkinitcpio.conf.d/90-passthru-vfio.conf";

#[derive(Debug, Clone, Default)]
pub struct SetupRequest {
    /// The GPU (address, vendor:device or name, as for check).
    pub gpu: String,
    /// Keep the firmware framebuffer off the boot GPU (initcall_blacklist=sysfb_init).
    pub boot_gpu: bool,
    /// vfio-pci disable_idle_d3=1 (check warns where the family needs it).
    pub disable_idle_d3: bool,
    /// Take the host's only display, boot disk controller or network anyway.
    pub force: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Select(#[from] crate::check::SelectError),
    #[error("refusing to set up {gpu}: {reasons}")]
    Refused { gpu: String, reasons: String },
    #[error(transparent)]
    Edit(#[from] EditError),
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("no boot loader found (GRUB, systemd-boot, proxmox-boot-tool, grubby/BLS, kernelstub): add {0} to the kernel command line by hand")]
    NoBootloader(String),
}

/// What passthru manages, read back from its own files.
#[derive(Debug, Default)]
struct Managed {
    ids: BTreeSet<String>,
    softdeps: BTreeSet<String>,
    options: BTreeSet<String>,
    /// (address, vendor, device) bound by udev rule.
    rules: BTreeSet<(String, String, String)>,
    /// The modprobe file as read: its edit splices passthru's lines into it.
    modprobe_before: Option<String>,
}

fn read_managed(src: &dyn FileSource) -> Result<Managed, SetupError> {
    let modprobe_before = src.read_text(MODPROBE_FILE)?;
    let b = read_vfio_binding(MODPROBE_FILE, modprobe_before.as_deref())?;
    let mut m = Managed {
        ids: b.ids,
        softdeps: b.softdeps,
        options: b.options,
        modprobe_before,
        ..Managed::default()
    };
    if let Some(text) = src.read(UDEV_FILE)? {
        for l in String::from_utf8_lossy(&text).lines() {
            let field = |k: &str| {
                let i = l.find(&format!("{k}==\""))? + k.len() + 3;
                Some(l[i..].split('"').next()?.to_string())
            };
            if let (Some(a), Some(v), Some(d)) = (
                field("KERNEL"),
                field("ATTR{vendor}"),
                field("ATTR{device}"),
            ) {
                m.rules.insert((a, v, d));
            }
        }
    }
    Ok(m)
}

fn render_modprobe(m: &Managed) -> Option<Vec<u8>> {
    let want = VfioBinding {
        ids: m.ids.clone(),
        softdeps: m.softdeps.clone(),
        options: m.options.clone(),
    };
    render_vfio_binding(m.modprobe_before.as_deref(), &want)
}

fn render_udev(m: &Managed) -> Option<Vec<u8>> {
    if m.rules.is_empty() {
        return None;
    }
    let mut t = String::from("# Written by passthru: bind these PCI functions to vfio-pci by address at boot,\n# leaving other devices with the same ids to their drivers.\n");
    for (a, v, d) in &m.rules {
        t.push_str(&format!(
            "ACTION==\"add\", SUBSYSTEM==\"pci\", KERNEL==\"{a}\", ATTR{{vendor}}==\"{v}\", ATTR{{device}}==\"{d}\", ATTR{{driver_override}}=\"vfio-pci\"\n"
        ));
    }
    Some(t.into_bytes())
}

/// The module behind a driver, for softdep (driver names are not module names).
fn module_of(d: &PciDevice) -> Option<String> {
    if let Some(m) = &d.driver_module {
        return Some(m.replace('-', "_"));
    }
    let drv = d.driver.as_deref()?;
    let known = match drv {
        "xhci_hcd" => "xhci_pci",
        "nvidia-gpu" => "i2c_nvidia_gpu",
        "pcieport" | "vfio-pci" => return None,
        other => other,
    };
    Some(known.replace('-', "_"))
}

fn edit(
    src: &dyn FileSource,
    path: &str,
    after: Option<Vec<u8>>,
    reason: &str,
) -> Result<Option<FileEdit>, ReadError> {
    let before = src.read(path)?;
    Ok((before != after).then(|| FileEdit {
        path: path.to_string(),
        before,
        after,
        new_mode: 0o644,
        reason: reason.to_string(),
    }))
}

fn p(s: &str) -> CmdlineParam {
    parse_cmdline(s).remove(0)
}

/// Prepares a GPU for VM passthrough.
pub fn plan_setup_vm(
    s: &Snapshot,
    src: &dyn FileSource,
    req: &SetupRequest,
) -> Result<Plan, SetupError> {
    let gpu = select_one(s, &req.gpu)?;
    let g = check_gpu(s, gpu, req.force);
    let blocking = g.refusals(Use::Vm, &[]);
    if !blocking.is_empty() {
        return Err(SetupError::Refused {
            gpu: gpu.address.to_string(),
            reasons: blocking.join("; "),
        });
    }
    let functions = s.card_functions(&gpu.address);
    let mut plan = Plan {
        title: format!(
            "Prepare {} ({}) for VM passthrough",
            gpu.address, gpu.names.name
        ),
        ..Plan::default()
    };

    // Binding.
    let builtin = s.system.module_builtin("vfio_pci") == Some(true);
    let mut managed = read_managed(src)?;
    let card_ids: BTreeSet<String> = functions.iter().filter_map(|d| d.vendor_device()).collect();
    let captures_others = s
        .devices
        .iter()
        .filter(|d| !d.address.same_slot(&gpu.address))
        .any(|d| d.vendor_device().is_some_and(|vd| card_ids.contains(&vd)));
    let mut cmdline_ids = Vec::new();
    if captures_others {
        for d in &functions {
            if let (Some(v), Some(dv)) = (d.vendor, d.device) {
                managed
                    .rules
                    .insert((d.address.to_string(), format!("0x{v}"), format!("0x{dv}")));
            }
        }
        plan.notes.push("Other devices share this card's ids, so it is bound by address (a udev rule setting driver_override), not by ids=.".into());
    } else if builtin {
        cmdline_ids = card_ids.iter().cloned().collect();
    } else {
        managed.ids.extend(card_ids.iter().cloned());
    }
    for d in &functions {
        if let Some(m) = module_of(d) {
            managed.softdeps.insert(m);
        }
    }
    // A secondary VGA card opts out of VGA arbitration, so the host's console stays put.
    if gpu.class.is_some_and(|c| c.is_vga()) && gpu.boot_vga != Some(true) {
        managed.options.insert("disable_vga=1".into());
    }
    if req.disable_idle_d3 || g.fired(RuleId::PmD3coldRisk) {
        managed.options.insert("disable_idle_d3=1".into());
    }
    plan.edits.extend(edit(
        src,
        MODPROBE_FILE,
        render_modprobe(&managed),
        "vfio-pci options and load order (softdep), never a blacklist",
    )?);
    plan.edits.extend(edit(
        src,
        UDEV_FILE,
        render_udev(&managed),
        "bind this card's functions by address",
    )?);

    // Kernel command line.
    let mut change = ParamChange::default();
    if crate::assess::diagnose_iommu(s).needs_intel_iommu_on() {
        change.add.push(p("intel_iommu=on"));
    }
    change.add.push(p("iommu=pt"));
    if req.boot_gpu || g.fired(RuleId::ConsoleFramebuffer) {
        change.add.push(p("initcall_blacklist=sysfb_init"));
    }
    if !cmdline_ids.is_empty() {
        change
            .add
            .push(p(&format!("vfio-pci.ids={}", cmdline_ids.join(","))));
    }
    for off in ["iommu=off", "intel_iommu=off", "amd_iommu=off"] {
        change.remove.push(p(off));
    }
    let dracut = s.boot.initramfs.first().map(|i| i.kind) == Some(InitramfsKind::Dracut);
    if dracut {
        change.add.push(p("rd.driver.pre=vfio-pci"));
    }
    plan_cmdline(s, src, &change, &mut plan)?;

    // Modules in the initramfs.
    let new_kernel = crate::check::kernel_version(s).is_some_and(|v| v >= (6, 2));
    let mut modules = vec!["vfio", "vfio_iommu_type1", "vfio_pci"];
    if !new_kernel {
        modules.push("vfio_virqfd");
    }
    let stale: &[&str] = if new_kernel { &["vfio_virqfd"] } else { &[] };
    if !builtin {
        match s.boot.initramfs.first().map(|i| i.kind) {
            Some(InitramfsKind::InitramfsTools) | None => {
                let path = "etc/initramfs-tools/modules";
                let text = src.read_text(path)?.unwrap_or_default();
                let after = edit_module_list(&text, &modules, stale);
                plan.edits.extend(edit(src, path, Some(after.into_bytes()), "load vfio early, from the initramfs")?);
                plan.commands.push(PlannedCommand { argv: vec!["update-initramfs".into(), "-u".into(), "-k".into(), "all".into()], why: "rebuild every initramfs with the vfio modules and modprobe.d".into() });
            }
            Some(InitramfsKind::Dracut) => {
                // dracut reads only *.conf in dracut.conf.d, and wants spaces inside the quotes.
                let text = format!("# Written by passthru: load vfio early.\nforce_drivers+=\" {} \"\n", modules.join(" "));
                plan.edits.extend(edit(src, DRACUT_FILE, Some(text.into_bytes()), "load vfio early, from the initramfs")?);
                plan.commands.push(PlannedCommand { argv: vec!["dracut".into(), "--regenerate-all".into(), "--force".into()], why: "rebuild every initramfs".into() });
            }
            Some(InitramfsKind::Mkinitcpio) => {
                // Drop-ins override the main file: keep its MODULES after ours.
                let text = format!("# Written by passthru: load vfio before the GPU drivers.\nMODULES=({} \"${{MODULES[@]}}\")\n", modules.join(" "));
                plan.edits.extend(edit(src, MKINITCPIO_FILE, Some(text.into_bytes()), "load vfio before the GPU drivers")?);
                plan.commands.push(PlannedCommand { argv: vec!["mkinitcpio".into(), "-P".into()], why: "rebuild every initramfs".into() });
            }
            Some(InitramfsKind::Booster) => plan.notes.push("booster: add vfio_pci vfio vfio_iommu_type1 to modules_force_load in /etc/booster.yaml by hand".into()),
        }
    }
    plan.notes.push(format!(
        "Reboot, then run `passthru check {}` to verify.",
        gpu.address
    ));
    if plan.edits.is_empty() {
        plan.commands.clear();
        plan.notes.clear();
    }
    Ok(plan)
}

/// `etc/default/grub` and `etc/default/grub.d/*.cfg`, in the order grub-mkconfig sources them.
fn read_grub_files(
    src: &dyn FileSource,
) -> Result<Vec<crate::formats::grub_defaults::GrubFile>, ReadError> {
    let main_exists = src.read("etc/default/grub")?.is_some();
    let order = crate::formats::grub_defaults::grub_source_order(
        main_exists,
        &src.list("etc/default/grub.d"),
    );
    let mut files = Vec::new();
    for path in order {
        if let Some(text) = src.read_text(&path)? {
            files.push(crate::formats::grub_defaults::GrubFile { path, text });
        }
    }
    Ok(files)
}

/// Writes the command-line change where the boot loader in use reads it.
fn plan_cmdline(
    s: &Snapshot,
    src: &dyn FileSource,
    change: &ParamChange,
    plan: &mut Plan,
) -> Result<(), SetupError> {
    let Some(kind) = s.boot.in_use else {
        let words: Vec<String> = change.add.iter().map(super::files::render_param).collect();
        return Err(SetupError::NoBootloader(words.join(" ")));
    };
    let text_of = |path: &str| src.read_text(path);
    let has_kernel_cmdline = src.read("etc/kernel/cmdline")?.is_some();
    match kind {
        BootloaderKind::Grub => {
            // A drop-in where the distribution's grub reads etc/default/grub.d (Debian,
            // Ubuntu, Proxmox), so the user's file keeps every byte; removals still edit the
            // file that holds them.
            let dropin = src.is_dir("etc/default/grub.d").then_some(GRUB_DROPIN);
            let grub_files = read_grub_files(src)?;
            for (path, after) in super::grub::plan_grub_params(
                &grub_files,
                dropin,
                crate::formats::grub_defaults::CMDLINE_DEFAULT,
                change,
            )? {
                let reason = if path == GRUB_DROPIN {
                    "kernel parameters (a drop-in: etc/default/grub keeps every byte)"
                } else {
                    "remove kernel parameters that would undo passthrough (or give a key another value)"
                };
                let reason = if dropin.is_none() && path == "etc/default/grub" {
                    "kernel parameters in GRUB_CMDLINE_LINUX_DEFAULT"
                } else {
                    reason
                };
                plan.edits
                    .extend(edit(src, &path, after.map(String::into_bytes), reason)?);
            }
            let (cmd, why) = if s
                .boot
                .bootloaders
                .iter()
                .any(|b| b.evidence.iter().any(|e| e == "usr/sbin/update-grub"))
                || src.read("usr/sbin/update-grub")?.is_some()
            {
                (
                    vec!["update-grub".to_string()],
                    "regenerate grub.cfg (on Proxmox it also refreshes every ESP)",
                )
            } else if src.read("boot/grub2/grub.cfg")?.is_some() {
                (
                    vec![
                        "grub2-mkconfig".into(),
                        "-o".into(),
                        "/boot/grub2/grub.cfg".into(),
                    ],
                    "regenerate grub.cfg",
                )
            } else {
                (
                    vec![
                        "grub-mkconfig".into(),
                        "-o".into(),
                        "/boot/grub/grub.cfg".into(),
                    ],
                    "regenerate grub.cfg",
                )
            };
            plan.commands.push(PlannedCommand {
                argv: cmd,
                why: why.into(),
            });
        }
        BootloaderKind::ProxmoxBootTool | BootloaderKind::SystemdBoot if has_kernel_cmdline => {
            let text = text_of("etc/kernel/cmdline")?.unwrap_or_default();
            plan.edits.extend(edit(
                src,
                "etc/kernel/cmdline",
                Some(edit_cmdline_file(&text, change).into_bytes()),
                "kernel parameters (one line, read by proxmox-boot-tool / kernel-install)",
            )?);
            let cmd = if kind == BootloaderKind::ProxmoxBootTool {
                vec!["proxmox-boot-tool".into(), "refresh".into()]
            } else {
                vec!["kernel-install".into(), "add-all".into()]
            };
            plan.commands.push(PlannedCommand {
                argv: cmd,
                why: "write the new command line into the boot entries".into(),
            });
        }
        BootloaderKind::SystemdBoot | BootloaderKind::ProxmoxBootTool | BootloaderKind::GrubBls => {
            // BLS entries hold the command line; edit each (journaled, so rollback is exact).
            for dir in [
                "boot/loader/entries",
                "boot/efi/loader/entries",
                "efi/loader/entries",
            ] {
                for name in src.list(dir).into_iter().filter(|n| n.ends_with(".conf")) {
                    let path = format!("{dir}/{name}");
                    let text = text_of(&path)?.unwrap_or_default();
                    let after = edit_bls_entry(&path, &text, change)?;
                    plan.edits.extend(edit(
                        src,
                        &path,
                        Some(after.into_bytes()),
                        "kernel parameters of this boot entry",
                    )?);
                }
            }
            if kind == BootloaderKind::GrubBls && src.read("etc/default/grub")?.is_some() {
                // New kernels take GRUB_CMDLINE_LINUX on Fedora/RHEL.
                let grub_files = read_grub_files(src)?;
                for (path, after) in super::grub::plan_grub_params(
                    &grub_files,
                    None,
                    crate::formats::grub_defaults::CMDLINE_LINUX,
                    change,
                )? {
                    plan.edits.extend(edit(
                        src,
                        &path,
                        after.map(String::into_bytes),
                        "kernel parameters for kernels installed later",
                    )?);
                }
            }
        }
        BootloaderKind::Kernelstub => {
            let path = "etc/kernelstub/configuration";
            let text = text_of(path)?.unwrap_or_default();
            let mut v: serde_json::Value = serde_json::from_str(&text).map_err(|e| EditError {
                file: path.into(),
                line: e.line(),
                why: format!("not JSON: {e}"),
            })?;
            let opts = v
                .pointer_mut("/user/kernel_options")
                .and_then(|o| o.as_array_mut())
                .ok_or_else(|| EditError {
                    file: path.into(),
                    line: 0,
                    why: "no user.kernel_options list".into(),
                })?;
            let line: Vec<String> = opts
                .iter()
                .filter_map(|o| o.as_str().map(str::to_string))
                .collect();
            let new = apply_params(&line.join(" "), change);
            *opts = new
                .split_whitespace()
                .map(|w| serde_json::Value::String(w.into()))
                .collect();
            // kernelstub writes 2-space JSON; keep its final newline or its lack of one.
            let mut out = serde_json::to_string_pretty(&v).expect("JSON serialises");
            if text.ends_with('\n') {
                out.push('\n');
            }
            plan.edits.extend(edit(
                src,
                path,
                Some(out.into_bytes()),
                "kernel parameters in kernelstub's configuration",
            )?);
            plan.commands.push(PlannedCommand {
                argv: vec!["kernelstub".into()],
                why: "write the boot entry from the configuration".into(),
            });
        }
    }
    Ok(())
}

/// Gives a GPU back to its host driver: removes it from passthru's binding files. Kernel
/// parameters stay (the IOMMU is useful for other devices; `rollback` removes them).
pub fn plan_setup_host(s: &Snapshot, src: &dyn FileSource, sel: &str) -> Result<Plan, SetupError> {
    let gpu = select_one(s, sel)?;
    let functions = s.card_functions(&gpu.address);
    let mut managed = read_managed(src)?;
    let card_ids: BTreeSet<String> = functions.iter().filter_map(|d| d.vendor_device()).collect();
    let mut plan = Plan {
        title: format!(
            "Give {} ({}) back to its host driver",
            gpu.address, gpu.names.name
        ),
        ..Plan::default()
    };
    managed.ids.retain(|id| !card_ids.contains(id));
    managed
        .rules
        .retain(|(a, _, _)| !functions.iter().any(|f| f.address.to_string() == *a));
    if managed.ids.is_empty() && managed.rules.is_empty() {
        managed.softdeps.clear();
        managed.options.clear();
    }
    plan.edits.extend(edit(
        src,
        MODPROBE_FILE,
        render_modprobe(&managed),
        "stop binding this card to vfio-pci",
    )?);
    plan.edits.extend(edit(
        src,
        UDEV_FILE,
        render_udev(&managed),
        "stop binding this card by address",
    )?);
    if !plan.edits.is_empty() {
        let cmd = match s.boot.initramfs.first().map(|i| i.kind) {
            Some(InitramfsKind::Dracut) => {
                vec!["dracut".into(), "--regenerate-all".into(), "--force".into()]
            }
            Some(InitramfsKind::Mkinitcpio) => vec!["mkinitcpio".into(), "-P".into()],
            _ => vec![
                "update-initramfs".into(),
                "-u".into(),
                "-k".into(),
                "all".into(),
            ],
        };
        plan.commands.push(PlannedCommand {
            argv: cmd,
            why: "rebuild the initramfs without this card's binding".into(),
        });
        plan.notes.push(format!(
            "Reboot, or `passthru unbind {}` to give it back now.",
            gpu.address
        ));
    }
    Ok(plan)
}
