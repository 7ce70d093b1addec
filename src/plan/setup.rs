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
use crate::model::{CmdlineParam, InitramfsKind, PciAddress, PciDevice, Snapshot};

use super::files::{EditError, ParamChange};
use super::modprobe_file::{read_vfio_binding, render_vfio_binding, VfioBinding};
use super::{FileEdit, Plan, PlannedCommand};

pub use super::source::{FileSource, ReadError};

pub const MODPROBE_FILE: &str = "etc/modprobe.d/passthru-vfio.conf";
pub const UDEV_FILE: &str = "etc/udev/rules.d/90-passthru-vfio.rules";
pub const GRUB_DROPIN: &str = "etc/default/grub.d/90-passthru.cfg";
pub use super::initramfs::{DRACUT_FILE, MKINITCPIO_FILE};

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
    /// systemd-boot entries that kernel-install rewrites: an edit to them would be lost at the
    /// next initramfs update (Debian's post-update hook runs `kernel-install add`).
    #[error("systemd-boot here is fed by kernel-install, which writes each boot entry from etc/kernel/cmdline, or from /proc/cmdline when that file is absent: an edit to the entries would be lost at the next initramfs update. Create the file with the options this host boots with, then run setup again: echo {0} > /etc/kernel/cmdline")]
    KernelInstallWithoutCmdline(String),
    #[error("kernel-install must be told about every kernel, but no installed kernel was found (usr/lib/modules/VERSION with boot/vmlinuz-VERSION or usr/lib/modules/VERSION/vmlinuz)")]
    NoInstalledKernel,
}

/// What passthru manages, read back from its own files.
#[derive(Debug, Default)]
struct Managed {
    /// passthru's lines in its modprobe file.
    binding: VfioBinding,
    /// (address, vendor, device) bound by udev rule.
    rules: BTreeSet<(String, String, String)>,
    /// The modprobe file as read: its edit splices passthru's lines into it.
    modprobe_before: Option<String>,
}

fn read_managed(src: &dyn FileSource) -> Result<Managed, SetupError> {
    let modprobe_before = src.read_text(MODPROBE_FILE)?;
    let binding = read_vfio_binding(MODPROBE_FILE, modprobe_before.as_deref())?;
    let mut m = Managed {
        binding,
        modprobe_before,
        ..Managed::default()
    };
    if let Some(text) = src.read_text(UDEV_FILE)? {
        for r in text
            .lines()
            .filter_map(crate::formats::udev::parse_vfio_override)
        {
            if let (Some(v), Some(d)) = (r.vendor, r.device) {
                m.rules.insert((r.address, v, d));
            }
        }
    }
    Ok(m)
}

/// The vfio modules to load from the initramfs, and those to drop: vfio_virqfd was merged
/// into vfio in 6.2.
fn early_modules(s: &Snapshot) -> (Vec<&'static str>, &'static [&'static str]) {
    let new_kernel = crate::check::kernel_version(s).is_some_and(|v| v >= (6, 2));
    let mut modules = vec!["vfio", "vfio_iommu_type1", "vfio_pci"];
    if !new_kernel {
        modules.push("vfio_virqfd");
    }
    let stale: &[&str] = if new_kernel { &["vfio_virqfd"] } else { &[] };
    (modules, stale)
}

/// passthru's binding files that will exist after the plan, as absolute paths: what an
/// initramfs must carry (dracut's `install_items`).
fn carried_files(m: &Managed) -> Vec<String> {
    let mut carry = Vec::new();
    if render_modprobe(m).is_some() {
        carry.push(format!("/{MODPROBE_FILE}"));
    }
    if render_udev(m).is_some() {
        carry.push(format!("/{UDEV_FILE}"));
    }
    carry
}

fn render_modprobe(m: &Managed) -> Option<Vec<u8>> {
    render_vfio_binding(m.modprobe_before.as_deref(), &m.binding)
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

/// How setup binds a card's functions to vfio-pci. Decided once, by [`binding_method`]:
/// setup acts on it and check's `driver.shared` and `ids.capture` word it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindingMethod {
    /// Other devices have ids of this card (a twin card, a shared audio id): a udev rule sets
    /// `driver_override` for each of the card's functions by address. `shared` is each such
    /// id with the device outside the card that has it.
    ByAddress { shared: Vec<(String, PciAddress)> },
    /// `options vfio-pci ids=…` in passthru's modprobe file; the ids match only this card.
    ModprobeIds(Vec<String>),
    /// vfio-pci is built into the kernel, which never reads modprobe.d for it
    /// (docs/domain-facts.md §1): `vfio-pci.ids=…` on the kernel command line.
    CmdlineIds(Vec<String>),
}

/// How setup binds the card of `gpu` (every function of its slot).
pub fn binding_method(s: &Snapshot, gpu: &PciAddress) -> BindingMethod {
    let functions = s.card_functions(gpu);
    let mut shared = Vec::new();
    for vd in functions.iter().filter_map(|d| d.vendor_device()) {
        for d in s.devices.iter().filter(|d| !d.address.same_slot(gpu)) {
            if d.vendor_device().as_deref() == Some(vd.as_str()) {
                shared.push((vd.clone(), d.address));
            }
        }
    }
    let card_ids: BTreeSet<String> = functions.iter().filter_map(|d| d.vendor_device()).collect();
    if !shared.is_empty() {
        BindingMethod::ByAddress { shared }
    } else if s.system.module_builtin("vfio_pci") == Some(true) {
        BindingMethod::CmdlineIds(card_ids.into_iter().collect())
    } else {
        BindingMethod::ModprobeIds(card_ids.into_iter().collect())
    }
}

impl BindingMethod {
    /// What setup writes, in words: "by address (a udev rule setting driver_override)".
    pub fn describe(&self) -> String {
        match self {
            BindingMethod::ByAddress { .. } => {
                "by address (a udev rule setting driver_override)".into()
            }
            BindingMethod::ModprobeIds(ids) => format!(
                "with options vfio-pci ids={} (ids that match only this card)",
                ids.join(",")
            ),
            BindingMethod::CmdlineIds(ids) => format!(
                "with vfio-pci.ids={} on the kernel command line (vfio-pci is built into the kernel)",
                ids.join(",")
            ),
        }
    }
}

/// The module behind a driver, for softdep (driver names are not module names).
pub fn module_of(d: &PciDevice) -> Option<String> {
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
    super::file_edit(src, path, after, 0o644, reason)
}

fn p(s: &str) -> CmdlineParam {
    parse_cmdline(s).remove(0)
}

/// Where vfio-pci's module options take effect on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VfioOptionPlace {
    /// `options vfio-pci …` in passthru's modprobe file.
    Modprobe,
    /// `vfio-pci.OPTION` on the kernel command line: vfio-pci is built into the kernel, and
    /// modprobe.d is never read for it.
    Cmdline,
}

pub fn vfio_option_place(s: &Snapshot) -> VfioOptionPlace {
    if s.system.module_builtin("vfio_pci") == Some(true) {
        VfioOptionPlace::Cmdline
    } else {
        VfioOptionPlace::Modprobe
    }
}

/// How setup writes a vfio-pci option here, in words for a finding's fix.
pub fn describe_vfio_option(s: &Snapshot, option: &str) -> String {
    match vfio_option_place(s) {
        VfioOptionPlace::Modprobe => format!("options vfio-pci {option} (to {MODPROBE_FILE})"),
        VfioOptionPlace::Cmdline => format!(
            "vfio-pci.{option} to the kernel command line (vfio-pci is built into this kernel, so modprobe.d is not read for it)"
        ),
    }
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
        // What --force let through, stated before the changes it leads to.
        warnings: g.forced(Use::Vm),
        prepared: vec![super::Prepared::Vfio {
            functions: functions
                .iter()
                .map(|d| super::FunctionIdentity::of(d))
                .collect(),
        }],
        ..Plan::default()
    };

    // Binding.
    let builtin = s.system.module_builtin("vfio_pci") == Some(true);
    let mut managed = read_managed(src)?;
    let mut cmdline_ids = Vec::new();
    match binding_method(s, &gpu.address) {
        BindingMethod::ByAddress { .. } => {
            for d in &functions {
                if let (Some(v), Some(dv)) = (d.vendor, d.device) {
                    managed.rules.insert((
                        d.address.to_string(),
                        format!("0x{v}"),
                        format!("0x{dv}"),
                    ));
                }
            }
            plan.notes.push("Other devices share this card's ids, so it is bound by address (a udev rule setting driver_override), not by ids=.".into());
        }
        BindingMethod::CmdlineIds(ids) => cmdline_ids = ids,
        BindingMethod::ModprobeIds(ids) => managed.binding.ids.extend(ids),
    }
    for d in &functions {
        // A function already on vfio-pci: its host driver is the one a device with the same
        // ids uses (a twin card), never vfio_pci itself (`softdep vfio_pci pre: vfio-pci`).
        let host_module = if d.driver.as_deref() == Some("vfio-pci") {
            s.devices
                .iter()
                .filter(|o| o.vendor_device().is_some() && o.vendor_device() == d.vendor_device())
                .filter(|o| o.driver.as_deref().is_some_and(|x| x != "vfio-pci"))
                .find_map(module_of)
        } else {
            module_of(d)
        };
        if let Some(m) = host_module.filter(|m| m != "vfio_pci") {
            managed.binding.softdeps.insert(m);
        }
    }
    // The user's own `options vfio-pci ids=` lines that also capture devices outside this
    // card (a twin, the host's display) are replaced: commented out, with why, in their file
    // (the journal keeps the original; rollback restores it). Right lines are left.
    let state = crate::state::card_state(s, &gpu.address);
    let mut user_edits: std::collections::BTreeMap<String, Vec<usize>> = Default::default();
    for m in
        s.vfio_config.modprobe.iter().filter(|m| {
            m.file != MODPROBE_FILE && m.command == "options" && m.args.contains("ids=")
        })
    {
        let place = format!("{}:{}", m.file, m.line);
        if state
            .user_lines
            .iter()
            .any(|l| l.place == place && !l.captures_others.is_empty())
        {
            user_edits.entry(m.file.clone()).or_default().push(m.line);
        }
    }
    for (file, lines) in &user_edits {
        let Some(text) = src.read_text(file)? else {
            continue;
        };
        let after = super::modprobe_file::comment_out_options(
            &text,
            lines,
            &format!("passthru: replaced by {MODPROBE_FILE} and {UDEV_FILE} (it also captured other devices)"),
        );
        plan.edits.extend(edit(
            src,
            file,
            Some(after.into_bytes()),
            "this ids= line also captured devices outside this card: it is replaced by a binding by address",
        )?);
        plan.notes.push(format!(
            "Your {} {} in {file} also bound other devices to vfio-pci: commented out, replaced by binding this card by address.",
            crate::output::words::agree(lines.len(), "line", "lines"),
            lines.iter().map(|l| l.to_string()).collect::<Vec<_>>().join(", ")
        ));
    }
    // A secondary VGA card opts out of VGA arbitration, so the host's console stays put.
    let mut options = Vec::new();
    if gpu.class.is_some_and(|c| c.is_vga()) && gpu.boot_vga != Some(true) {
        options.push("disable_vga=1");
    }
    if req.disable_idle_d3 || crate::check::reset::needs_disable_idle_d3(gpu) {
        options.push("disable_idle_d3=1");
    }
    let mut cmdline_options = Vec::new();
    for o in options {
        match vfio_option_place(s) {
            VfioOptionPlace::Modprobe => {
                managed.binding.options.insert(o.into());
            }
            VfioOptionPlace::Cmdline => cmdline_options.push(p(&format!("vfio-pci.{o}"))),
        }
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
    if crate::assess::diagnose_iommu(s).needs_intel_iommu_on(gpu) {
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
    change.add.extend(cmdline_options);
    for off in ["iommu=off", "intel_iommu=off", "amd_iommu=off"] {
        change.remove.push(p(off));
    }
    // rd.driver.pre loads vfio-pci before udev runs: right for ids= (vfio-pci claims the card
    // as it loads), wrong for a binding by address, where vfio-pci must load after the udev
    // rule has set driver_override (by the softdep, when the host driver's module is asked
    // for): loaded first, it finds no card to claim, and then the override keeps the host
    // driver off too, and the card has no driver (the e2e lab's dracut journey).
    let dracut = s.boot.initramfs.first().map(|i| i.kind) == Some(InitramfsKind::Dracut);
    if dracut && render_udev(&managed).is_none() {
        change.add.push(p("rd.driver.pre=vfio-pci"));
    }
    plan.extend(super::boot::plan_kernel_params(s, src, &change)?);

    // Modules in the initramfs.
    let (modules, stale) = early_modules(s);
    if !builtin {
        let carry = carried_files(&managed);
        let carry: Vec<&str> = carry.iter().map(String::as_str).collect();
        plan.extend(super::initramfs::initramfs_for(s).plan_modules(src, &modules, stale, &carry)?);
    }
    plan.notes.push(format!(
        "Reboot, then run `passthru check {}` to verify.",
        gpu.address
    ));
    if plan.edits.is_empty() {
        plan.commands.clear();
        plan.notes.clear();
        plan.warnings.clear();
    }
    Ok(plan)
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
        prepared: vec![super::Prepared::HostDriver {
            address: gpu.address,
        }],
        ..Plan::default()
    };
    managed.binding.ids.retain(|id| !card_ids.contains(id));
    managed
        .rules
        .retain(|(a, _, _)| !functions.iter().any(|f| f.address.to_string() == *a));
    if managed.binding.ids.is_empty() && managed.rules.is_empty() {
        managed.binding.softdeps.clear();
        managed.binding.options.clear();
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
    // Where vfio-pci is built in, setup vm bound the card with vfio-pci.ids= on the kernel
    // command line: that is the binding to take away, or the next boot takes the card again.
    if let BindingMethod::CmdlineIds(ids) = binding_method(s, &gpu.address) {
        let change = ParamChange {
            add: Vec::new(),
            remove: vec![p(&format!("vfio-pci.ids={}", ids.join(",")))],
        };
        plan.extend(super::boot::plan_kernel_params(s, src, &change)?);
    }
    // An initramfs drop-in that names passthru's binding files names only those left.
    let (modules, _) = early_modules(s);
    let carry = carried_files(&managed);
    let carry: Vec<&str> = carry.iter().map(String::as_str).collect();
    plan.extend(super::initramfs::initramfs_for(s).plan_carry(src, &modules, &carry)?);
    if !plan.edits.is_empty() {
        plan.commands.push(PlannedCommand {
            why: "rebuild the initramfs without this card's binding".into(),
            ..super::initramfs::initramfs_for(s).rebuild()
        });
        plan.notes.push(format!(
            "Reboot, or `passthru unbind {}` to give it back now.",
            gpu.address
        ));
    }
    Ok(plan)
}
