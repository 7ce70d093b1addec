//! The VFIO configuration already on the host: modprobe.d directives, early module lists and
//! passthrough-related kernel parameters. Read-only.

use crate::formats::cmdline::is_passthrough_param;
use crate::formats::modprobe::{parse_modprobe_conf, same_module, vfio_ids_from_options};
use crate::formats::shell_vars::scan_shell;
use crate::model::{CmdlineParam, Issue, ModprobeDirective, ModuleList, UdevOverride, VfioConfig};

use super::root::HostRoot;

/// Directories modprobe reads, in its order (modprobe.d(5)); only `*.conf` files count.
const MODPROBE_DIRS: &[&str] = &[
    "etc/modprobe.d",
    "run/modprobe.d",
    "usr/local/lib/modprobe.d",
    "lib/modprobe.d",
    "usr/lib/modprobe.d",
];

/// Modules whose modprobe directives matter for passthrough: vfio itself, the GPU drivers and
/// the drivers of a GPU's companion functions (GPU-Passthrough-Manager#19 lists them).
const RELEVANT_MODULES: &[&str] = &[
    "vfio",
    "vfio_pci",
    "vfio_pci_core",
    "vfio_iommu_type1",
    "vfio_virqfd",
    "nvidia",
    "nvidia_drm",
    "nvidia_modeset",
    "nvidia_uvm",
    "nouveau",
    "nvidiafb",
    "rivafb",
    "amdgpu",
    "radeon",
    "i915",
    "xe",
    "snd_hda_intel",
    "snd_hda_codec_hdmi",
    "xhci_pci",
    "i2c_nvidia_gpu",
    "ucsi_ccg",
    "vendor_reset",
    "kvm",
    "kvm_intel",
    "kvm_amd",
    "simpledrm",
    "efifb",
    "vesafb",
];

fn is_relevant(module: &str) -> bool {
    RELEVANT_MODULES.iter().any(|m| same_module(m, module))
}

pub fn read_vfio_config(
    root: &HostRoot,
    cmdline: &[CmdlineParam],
    issues: &mut Vec<Issue>,
) -> VfioConfig {
    let mut cfg = VfioConfig::default();
    for dir in MODPROBE_DIRS {
        for name in root.list_dir(dir, issues) {
            if !name.ends_with(".conf") {
                continue;
            }
            let file = format!("{dir}/{name}");
            let Some(text) = root.read_noting(&file, issues) else {
                continue;
            };
            for l in parse_modprobe_conf(&text) {
                let relevant =
                    is_relevant(&l.module) || (l.command == "softdep" && l.args.contains("vfio"));
                if !relevant {
                    continue;
                }
                if l.command == "options" && same_module(&l.module, "vfio_pci") {
                    cfg.vfio_pci_ids.extend(vfio_ids_from_options(&l.args));
                }
                cfg.modprobe.push(ModprobeDirective {
                    file: file.clone(),
                    line: l.line,
                    command: l.command,
                    module: l.module,
                    args: l.args,
                });
            }
        }
    }

    for p in cmdline.iter().filter(|p| is_passthrough_param(&p.key)) {
        if matches!(p.key.as_str(), "vfio-pci.ids" | "vfio_pci.ids") {
            if let Some(v) = &p.value {
                cfg.vfio_pci_ids.extend(
                    v.split(',')
                        .filter(|s| !s.is_empty())
                        .map(|s| s.to_ascii_lowercase()),
                );
            }
        }
        cfg.cmdline_params.push(p.clone());
    }
    cfg.vfio_pci_ids.dedup();
    read_udev_overrides(root, &mut cfg, issues);

    read_line_lists(root, "etc/modules", "modules", &mut cfg, issues);
    read_line_lists(
        root,
        "etc/initramfs-tools/modules",
        "initramfs-tools",
        &mut cfg,
        issues,
    );
    for dir in ["etc/modules-load.d", "usr/lib/modules-load.d"] {
        for name in root.list_dir(dir, issues) {
            if name.ends_with(".conf") {
                read_line_lists(
                    root,
                    &format!("{dir}/{name}"),
                    "modules-load.d",
                    &mut cfg,
                    issues,
                );
            }
        }
    }
    for name in root.list_dir("etc/dracut.conf.d", issues) {
        let file = format!("etc/dracut.conf.d/{name}");
        // dracut.conf(5): "Files with other extensions are ignored" in dracut.conf.d.
        let ignored = !name.ends_with(".conf");
        read_shell_lists(
            root,
            &file,
            "dracut",
            &["force_drivers", "add_drivers", "drivers"],
            ignored,
            &mut cfg,
            issues,
        );
    }
    read_shell_lists(
        root,
        "etc/mkinitcpio.conf",
        "mkinitcpio",
        &["MODULES"],
        false,
        &mut cfg,
        issues,
    );
    for name in root.list_dir("etc/mkinitcpio.conf.d", issues) {
        let ignored = !name.ends_with(".conf");
        read_shell_lists(
            root,
            &format!("etc/mkinitcpio.conf.d/{name}"),
            "mkinitcpio",
            &["MODULES"],
            ignored,
            &mut cfg,
            issues,
        );
    }
    cfg
}

/// A file with one module per line (`etc/modules`, initramfs-tools, modules-load.d).
fn read_line_lists(
    root: &HostRoot,
    file: &str,
    kind: &str,
    cfg: &mut VfioConfig,
    issues: &mut Vec<Issue>,
) {
    let Some(text) = root.read_noting(file, issues) else {
        return;
    };
    let modules: Vec<String> = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    cfg.module_lists.push(ModuleList {
        file: file.to_string(),
        kind: kind.to_string(),
        modules,
        ignored_by_tool: false,
    });
}

/// A shell-style config naming modules in variables (dracut, mkinitcpio).
fn read_shell_lists(
    root: &HostRoot,
    file: &str,
    kind: &str,
    vars: &[&str],
    ignored_by_tool: bool,
    cfg: &mut VfioConfig,
    issues: &mut Vec<Issue>,
) {
    let Some(text) = root.read_noting(file, issues) else {
        return;
    };
    // The words the file spells out; an expansion (`$(…)`, `${x}`) names no module here.
    let modules: Vec<String> = scan_shell(&text)
        .assignments
        .iter()
        .filter(|a| vars.contains(&a.name.as_str()))
        .flat_map(|a| {
            a.literal_words()
                .split_whitespace()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    cfg.module_lists.push(ModuleList {
        file: file.to_string(),
        kind: kind.to_string(),
        modules,
        ignored_by_tool,
    });
}

/// udev rule directories, in udev's order; only `*.rules` files count.
const UDEV_DIRS: &[&str] = &[
    "etc/udev/rules.d",
    "run/udev/rules.d",
    "lib/udev/rules.d",
    "usr/lib/udev/rules.d",
];

/// Rules that set `ATTR{driver_override}="vfio-pci"` for a `KERNEL=="ADDRESS"` match: how
/// passthru (and some users) bind a card by address at boot.
fn read_udev_overrides(root: &HostRoot, cfg: &mut VfioConfig, issues: &mut Vec<Issue>) {
    for dir in UDEV_DIRS {
        for name in root.list_dir(dir, issues) {
            if !name.ends_with(".rules") {
                continue;
            }
            let file = format!("{dir}/{name}");
            let Some(text) = root.read_noting(&file, issues) else {
                continue;
            };
            for (i, l) in text.lines().enumerate() {
                if let Some(r) = crate::formats::udev::parse_vfio_override(l) {
                    cfg.udev_overrides.push(UdevOverride {
                        file: file.clone(),
                        line: i + 1,
                        address: r.address,
                    });
                }
            }
        }
    }
}
