//! What the next boot runs: which kernel, what its initramfs holds, which modules were built
//! for it; and which out-of-tree modules the running kernel has loaded. Read-only.
//!
//! The initramfs is listed by the distribution's own lister (`lsinitramfs`, `lsinitrd`,
//! `lsinitcpio`), run as an argument vector, never through a shell, and only on the live
//! host. Under any other root (a fixture, an unpacked archive) the listing is read from a
//! file beside the image, `IMAGE.list` (the lister's output, saved), so tests need no real
//! initramfs and a bug report can carry one.

use std::process::Command;

use serde::Serialize;

use crate::model::{BootloaderKind, InitramfsKind, Snapshot};

use super::root::{FileRead, HostRoot};

/// The kernel the next boot runs, and how that was decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct NextKernel {
    pub release: String,
    /// `GRUB's default entry (boot/grub/grub.cfg, GRUB_DEFAULT=0)`, `the newest installed
    /// kernel` ...
    pub how: String,
}

/// What an initramfs listing gave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Listing {
    /// The paths in the image, without a leading `/` or `./`.
    Files { files: Vec<String> },
    /// No image at the path.
    NoImage,
    /// The image is there but could not be listed: why.
    Failed { why: String },
}

/// One initramfs image and its listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct InitramfsImage {
    /// Relative to the root: `boot/initrd.img-6.1.0-18-amd64`.
    pub path: String,
    /// The lister, as run (or as it would be run on the live host).
    pub argv: Vec<String>,
    pub listing: Listing,
}

/// The modules installed for one kernel release.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct KernelModules {
    /// `lib/modules/6.1.0-18-amd64`, or `None` when no such directory exists.
    pub dir: Option<String>,
    /// Module names (`vendor_reset`, `-` as `_`), from every `*.ko*` file below the directory.
    pub files: Vec<String>,
    /// Built-in modules (`modules.builtin`), same spelling.
    pub builtin: Vec<String>,
}

impl KernelModules {
    pub fn has(&self, module: &str) -> bool {
        let m = module.replace('-', "_");
        self.files.contains(&m) || self.builtin.contains(&m)
    }
}

/// Compares kernel releases as version numbers: `6.8.12-4-pve` after `6.8.9-1-pve`.
pub fn compare_releases(a: &str, b: &str) -> std::cmp::Ordering {
    fn parts(s: &str) -> Vec<Result<u64, String>> {
        let mut out = Vec::new();
        let mut cur = String::new();
        let mut digits = false;
        for c in s.chars() {
            let d = c.is_ascii_digit();
            if !cur.is_empty() && d != digits {
                out.push(if digits {
                    Ok(cur.parse().unwrap_or(u64::MAX))
                } else {
                    Err(std::mem::take(&mut cur))
                });
                cur.clear();
            }
            digits = d;
            cur.push(c);
        }
        if !cur.is_empty() {
            out.push(if digits {
                Ok(cur.parse().unwrap_or(u64::MAX))
            } else {
                Err(cur)
            });
        }
        out
    }
    parts(a).cmp(&parts(b))
}

/// Kernel releases with modules installed (`lib/modules/*`, `usr/lib/modules/*`) and a
/// kernel image (`boot/vmlinuz-R` or `…/modules/R/vmlinuz`), oldest first.
pub fn read_installed_kernels(root: &HostRoot) -> Vec<String> {
    let mut found = Vec::new();
    for base in ["lib/modules", "usr/lib/modules"] {
        let Ok(names) = root.read_dir_names(base) else {
            continue;
        };
        for r in names {
            let image = root.exists(&format!("boot/vmlinuz-{r}"))
                || root.exists(&format!("{base}/{r}/vmlinuz"));
            if image && !found.contains(&r) {
                found.push(r);
            }
        }
    }
    found.sort_by(|a, b| compare_releases(a, b));
    found
}

/// The kernel the next boot runs: `given` (the kernel a postinst hook was called for), else
/// what the boot loader in use will start, else the newest installed kernel, else the
/// running one.
pub fn read_next_kernel(root: &HostRoot, s: &Snapshot, given: Option<&str>) -> Option<NextKernel> {
    if let Some(r) = given {
        return Some(NextKernel {
            release: r.to_string(),
            how: "given with --kernel".into(),
        });
    }
    let installed = read_installed_kernels(root);
    let newest = || {
        installed.last().map(|r| NextKernel {
            release: r.clone(),
            how: "the newest installed kernel, the boot menu's default".into(),
        })
    };
    let grub = matches!(s.boot.in_use, Some(BootloaderKind::Grub) | None);
    if s.boot.in_use == Some(BootloaderKind::ProxmoxBootTool) {
        if let FileRead::Text(pin) = root.read("etc/kernel/proxmox-boot-pin") {
            let pin = pin.trim();
            if !pin.is_empty() {
                return Some(NextKernel {
                    release: pin.to_string(),
                    how: "pinned with proxmox-boot-tool kernel pin, etc/kernel/proxmox-boot-pin"
                        .into(),
                });
            }
        }
    } else if grub {
        if let Some(k) = read_grub_default_kernel(root) {
            return Some(k);
        }
    }
    newest().or_else(|| {
        s.system.kernel_release.clone().map(|r| NextKernel {
            release: r,
            how: "the running kernel; no other kernel is installed".into(),
        })
    })
}

/// The kernel of GRUB's default entry, where GRUB_DEFAULT is 0 (or unset) or a saved entry
/// that grub.cfg names: the first `linux` line of the entry.
fn read_grub_default_kernel(root: &HostRoot) -> Option<NextKernel> {
    let FileRead::Text(cfg) = root.read("boot/grub/grub.cfg") else {
        return None;
    };
    let default = match root.read("etc/default/grub") {
        FileRead::Text(t) => t
            .lines()
            .rev()
            .find_map(|l| l.trim().strip_prefix("GRUB_DEFAULT="))
            .map(|v| v.trim_matches(|c| c == '"' || c == '\'').to_string()),
        _ => None,
    }
    .unwrap_or_else(|| "0".into());
    let wanted = if default == "saved" {
        let FileRead::Text(env) = root.read("boot/grub/grubenv") else {
            return None;
        };
        env.lines()
            .find_map(|l| l.strip_prefix("saved_entry="))
            .map(str::to_string)
            .unwrap_or_else(|| "0".into())
    } else {
        default.clone()
    };
    let release = if wanted == "0" {
        cfg.lines().find_map(kernel_of_linux_line)
    } else {
        // A title or id, possibly `submenu>entry`: the entry is the last part.
        let last = wanted.rsplit('>').next().unwrap_or(&wanted);
        let mut inside = false;
        let mut found = None;
        for l in cfg.lines() {
            let t = l.trim_start();
            if t.starts_with("menuentry ") {
                inside = t.contains(&format!("'{last}'")) || t.contains(&format!("\"{last}\""));
            } else if inside {
                if let Some(r) = kernel_of_linux_line(l) {
                    found = Some(r);
                    break;
                }
            }
        }
        found
    }?;
    Some(NextKernel {
        release,
        how: format!("GRUB's default entry in boot/grub/grub.cfg, GRUB_DEFAULT={default}"),
    })
}

/// `linux /boot/vmlinuz-6.1.0-18-amd64 root=…` gives `6.1.0-18-amd64`.
fn kernel_of_linux_line(l: &str) -> Option<String> {
    let mut w = l.split_whitespace();
    if !matches!(w.next(), Some("linux" | "linux16" | "linuxefi")) {
        return None;
    }
    let image = w.next()?;
    let name = image.rsplit('/').next()?;
    name.strip_prefix("vmlinuz-").map(str::to_string)
}

/// The initramfs image for `release` and the lister that reads it, for the initramfs system
/// found (initramfs-tools when none was).
pub fn initramfs_image_for(root: &HostRoot, s: &Snapshot, release: &str) -> (String, Vec<String>) {
    let kind = s
        .boot
        .initramfs
        .first()
        .map(|i| i.kind)
        .unwrap_or(InitramfsKind::InitramfsTools);
    let (path, lister) = match kind {
        InitramfsKind::InitramfsTools | InitramfsKind::Booster => {
            (format!("boot/initrd.img-{release}"), "lsinitramfs")
        }
        // Debian's dracut writes boot/initrd.img-VERSION (its dracut.sh default when that
        // file is there; the e2e lab's dracut journey), Fedora's boot/initramfs-VERSION.img.
        InitramfsKind::Dracut => {
            let debian = format!("boot/initrd.img-{release}");
            if root.exists(&debian) {
                (debian, "lsinitrd")
            } else {
                (format!("boot/initramfs-{release}.img"), "lsinitrd")
            }
        }
        InitramfsKind::Mkinitcpio => {
            let versioned = format!("boot/initramfs-{release}.img");
            if root.exists(&versioned) {
                (versioned, "lsinitcpio")
            } else {
                ("boot/initramfs-linux.img".to_string(), "lsinitcpio")
            }
        }
    };
    let argv = vec![lister.to_string(), format!("/{path}")];
    (path, argv)
}

/// Lists the initramfs image at `path` (root-relative): with `argv` on the live host, from
/// `path.list` under any other root.
pub fn read_initramfs_listing(root: &HostRoot, path: &str, argv: &[String], live: bool) -> Listing {
    if !root.exists(path) {
        return Listing::NoImage;
    }
    let text = if live {
        let Some((prog, args)) = argv.split_first() else {
            return Listing::Failed {
                why: "no lister".into(),
            };
        };
        match Command::new(prog).args(args).output() {
            Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
            Ok(o) => {
                return Listing::Failed {
                    why: format!(
                        "{} failed (exit {}): {}",
                        argv.join(" "),
                        o.status.code().unwrap_or(-1),
                        String::from_utf8_lossy(&o.stderr).trim()
                    ),
                }
            }
            Err(e) => {
                return Listing::Failed {
                    why: format!("{} could not be started: {e}", argv.join(" ")),
                }
            }
        }
    } else {
        let saved = format!("{path}.list");
        match root.read(&saved) {
            FileRead::Text(t) => t,
            FileRead::Missing => {
                return Listing::Failed {
                    why: format!(
                    "not the live host, so {} is not run, and no saved listing {saved} is there",
                    argv.join(" ")
                ),
                }
            }
            FileRead::Failed(why) => {
                return Listing::Failed {
                    why: format!("reading {saved}: {why}"),
                }
            }
        }
    };
    Listing::Files {
        files: parse_listing(&text),
    }
}

/// The paths of a lister's output. lsinitramfs prints one path a line (`usr/lib/…`);
/// lsinitrd and lsinitcpio with `-l` print `ls -l` columns, the path last; both may start
/// paths with `./` or `/`.
pub fn parse_listing(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim_end();
            let path = if l.len() > 10 && l.as_bytes()[0] != b'.' && l.contains(' ') {
                // `-rw-r--r--   1 root root  123 Jan  1 00:00 usr/lib/…` or a link `a -> b`.
                let last = l.split(" -> ").next().unwrap_or(l);
                last.rsplit(' ').next().unwrap_or(last)
            } else {
                l
            };
            let p = path.trim_start_matches("./").trim_start_matches('/');
            (!p.is_empty() && p != ".").then(|| p.to_string())
        })
        .collect()
}

/// Module name of a module file name: `vfio-pci.ko.zst` gives `vfio_pci`.
pub fn module_of_file(name: &str) -> Option<String> {
    let base = name.rsplit('/').next()?;
    let stem = base.split(".ko").next()?;
    (base.len() > stem.len() && base[stem.len()..].starts_with(".ko"))
        .then(|| stem.replace('-', "_"))
}

/// The modules installed for `release`: every `*.ko*` below `lib/modules/R` (or
/// `usr/lib/modules/R`), and `modules.builtin`.
pub fn read_kernel_modules(root: &HostRoot, release: &str) -> KernelModules {
    let Some(dir) = ["lib/modules", "usr/lib/modules"]
        .iter()
        .map(|b| format!("{b}/{release}"))
        .find(|d| root.is_dir(d))
    else {
        return KernelModules::default();
    };
    let mut files = Vec::new();
    let mut stack = vec![dir.clone()];
    // A module tree is a few thousand files; the bound keeps a looping tree finite.
    let mut budget = 100_000;
    while let Some(d) = stack.pop() {
        let Ok(names) = root.read_dir_names(&d) else {
            continue;
        };
        for n in names {
            budget -= 1;
            if budget == 0 {
                break;
            }
            let rel = format!("{d}/{n}");
            if let Some(m) = module_of_file(&n) {
                files.push(m);
            } else if root.metadata(&rel).is_ok_and(|m| m.is_dir())
                && root.read_link(&rel).is_none()
            {
                stack.push(rel);
            }
        }
    }
    files.sort();
    files.dedup();
    let builtin = match root.read(&format!("{dir}/modules.builtin")) {
        FileRead::Text(t) => t.lines().filter_map(module_of_file).collect(),
        _ => Vec::new(),
    };
    KernelModules {
        dir: Some(dir),
        files,
        builtin,
    }
}

/// Loaded modules built outside the kernel tree: what a new kernel must have built for it
/// too (vendor-reset, i915-sriov, nvidia from DKMS). `proc/modules` marks them with `O` in
/// the taint flags (`nvidia 56717312 97 - Live 0x0 (POE)`); `sys/module/M/taint` where
/// proc/modules cannot be read.
pub fn read_out_of_tree_modules(root: &HostRoot) -> Vec<String> {
    if let FileRead::Text(t) = root.read("proc/modules") {
        return parse_out_of_tree(&t);
    }
    let Ok(mut names) = root.read_dir_names("sys/module") else {
        return Vec::new();
    };
    names.sort();
    names
        .into_iter()
        .filter(|m| match root.read(&format!("sys/module/{m}/taint")) {
            FileRead::Text(t) => t.trim().contains('O'),
            _ => false,
        })
        .collect()
}

/// The modules `proc/modules` marks out of tree (`O` among the taint flags), sorted.
pub fn parse_out_of_tree(proc_modules: &str) -> Vec<String> {
    let mut out: Vec<String> = proc_modules
        .lines()
        .filter_map(|l| {
            let name = l.split_whitespace().next()?;
            let flags = l.trim_end().rsplit(' ').next()?;
            let flags = flags.strip_prefix('(')?.strip_suffix(')')?;
            flags.contains('O').then(|| name.to_string())
        })
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_compare_as_numbers() {
        use std::cmp::Ordering::*;
        assert_eq!(compare_releases("6.8.12-4-pve", "6.8.9-1-pve"), Greater);
        assert_eq!(compare_releases("6.1.0-18-amd64", "6.1.0-9-amd64"), Greater);
        assert_eq!(compare_releases("6.1.0-18-amd64", "6.1.0-18-amd64"), Equal);
    }

    #[test]
    fn listings_of_each_lister_give_paths() {
        let lsinitramfs = ".\nusr/lib/modules/6.1.0-18-amd64/kernel/drivers/vfio/pci/vfio-pci.ko\netc/modprobe.d/passthru-vfio.conf\n";
        assert_eq!(
            parse_listing(lsinitramfs),
            vec![
                "usr/lib/modules/6.1.0-18-amd64/kernel/drivers/vfio/pci/vfio-pci.ko",
                "etc/modprobe.d/passthru-vfio.conf"
            ]
        );
        let lsinitrd = "-rw-r--r--   1 root     root          312 Jan  1 00:00 etc/modprobe.d/passthru-vfio.conf\nlrwxrwxrwx   1 root     root            7 Jan  1 00:00 bin -> usr/bin\n";
        assert_eq!(
            parse_listing(lsinitrd),
            vec!["etc/modprobe.d/passthru-vfio.conf", "bin"]
        );
    }

    #[test]
    fn out_of_tree_modules_from_proc_modules() {
        let t = "nvidia_drm 77824 4 - Live 0x0000000000000000 (POE)\nsnd_hda_intel 57344 4 - Live 0x0000000000000000\nvendor_reset 110592 0 - Live 0x0000000000000000 (OE)\nkvm 1142784 1 kvm_amd, Live 0x0000000000000000\n";
        assert_eq!(parse_out_of_tree(t), vec!["nvidia_drm", "vendor_reset"]);
    }

    #[test]
    fn module_names_from_files() {
        assert_eq!(
            module_of_file("vfio-pci.ko.zst").as_deref(),
            Some("vfio_pci")
        );
        assert_eq!(
            module_of_file("kernel/drivers/vfio/vfio.ko").as_deref(),
            Some("vfio")
        );
        assert_eq!(module_of_file("modules.dep"), None);
        assert_eq!(
            module_of_file("vendor-reset.ko").as_deref(),
            Some("vendor_reset")
        );
    }

    #[test]
    fn grub_linux_lines_name_the_kernel() {
        assert_eq!(
            kernel_of_linux_line("\tlinux\t/boot/vmlinuz-6.1.0-18-amd64 root=UUID=x ro quiet")
                .as_deref(),
            Some("6.1.0-18-amd64")
        );
        assert_eq!(kernel_of_linux_line("\tinitrd /boot/initrd.img-6.1"), None);
    }
}
