//! CPU, kernel, command line, modules, OS and Proxmox. Read-only.

use crate::formats::cmdline::parse_cmdline;
use crate::formats::os_release::parse_os_release;
use crate::model::{CpuInfo, Issue, LoadedModule, OsRelease, ProxmoxInfo, ReadDetail, SystemInfo};

use super::root::{FileRead, HostRoot};

/// Kernel config options that decide passthrough behaviour (`boot/config-<release>`).
const KERNEL_CONFIG_KEYS: &[&str] = &[
    "CONFIG_INTEL_IOMMU",
    "CONFIG_INTEL_IOMMU_DEFAULT_ON",
    "CONFIG_INTEL_IOMMU_DEFAULT_ON_INTGPU_OFF",
    "CONFIG_INTEL_IOMMU_DEFAULT_OFF",
    "CONFIG_AMD_IOMMU",
    "CONFIG_IRQ_REMAP",
    "CONFIG_VFIO",
    "CONFIG_VFIO_PCI",
    "CONFIG_VFIO_IOMMU_TYPE1",
    "CONFIG_VFIO_NOIOMMU",
    "CONFIG_VFIO_VIRQFD",
    "CONFIG_SYSFB_SIMPLEFB",
    "CONFIG_IOMMU_DEFAULT_PASSTHROUGH",
];

/// Reads the system facts. `issues` takes problems of what a `Summary` reads too;
/// `detail_issues` those of what only a `Full` read looks at.
pub fn read_system(
    root: &HostRoot,
    detail: ReadDetail,
    issues: &mut Vec<Issue>,
    detail_issues: &mut Vec<Issue>,
) -> SystemInfo {
    let kernel_release = read_kernel_release(root, issues);
    let cmdline = root
        .read_noting("proc/cmdline", issues)
        .map(|s| s.trim().to_string());
    let cmdline_params = cmdline.as_deref().map(parse_cmdline).unwrap_or_default();
    let kernel_config = kernel_release
        .as_deref()
        .map(|rel| read_kernel_config(root, rel, issues))
        .unwrap_or_default();
    let mut info = SystemInfo {
        cpu: read_cpu(root, issues),
        os: read_os_release(root, issues),
        proxmox: read_proxmox(root, issues),
        kernel_release,
        cmdline,
        cmdline_params,
        kernel_config,
        ..SystemInfo::default()
    };
    if detail != ReadDetail::Summary {
        info.builtin_modules = info
            .kernel_release
            .as_deref()
            .and_then(|rel| read_builtin_modules(root, rel, detail_issues));
        info.loaded_modules = read_loaded_modules(root, detail_issues);
        info.nvidia_driver_version = read_nvidia_version(root, detail_issues);
        info.char_majors = read_char_majors(root, detail_issues);
    }
    info
}

fn read_kernel_release(root: &HostRoot, issues: &mut Vec<Issue>) -> Option<String> {
    if let Some(r) = root.read_noting("proc/sys/kernel/osrelease", issues) {
        let r = r.trim();
        if !r.is_empty() {
            return Some(r.to_string());
        }
    }
    // `Linux version 6.1.0-18-amd64 (...)`
    let version = root.read_noting("proc/version", issues)?;
    let mut words = version.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some("Linux"), Some("version"), Some(rel)) => Some(rel.to_string()),
        _ => {
            issues.push(Issue::new(
                "proc/version",
                "not in the 'Linux version X' form",
            ));
            None
        }
    }
}

/// `proc/cpuinfo`: vendor, model and flags of the first processor, and the processor count.
pub fn read_cpu(root: &HostRoot, issues: &mut Vec<Issue>) -> CpuInfo {
    let mut cpu = CpuInfo::default();
    let Some(text) = root.read_noting("proc/cpuinfo", issues) else {
        return cpu;
    };
    let mut flags_seen = false;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        match key {
            "processor" => cpu.threads += 1,
            "vendor_id" if cpu.vendor_id.is_none() => cpu.vendor_id = Some(value.to_string()),
            "model name" if cpu.model_name.is_none() => cpu.model_name = Some(value.to_string()),
            "flags" if !flags_seen => {
                flags_seen = true;
                let flags: Vec<&str> = value.split_whitespace().collect();
                cpu.virt_flag = ["vmx", "svm"]
                    .into_iter()
                    .find(|f| flags.contains(f))
                    .map(str::to_string);
                cpu.hypervisor = flags.contains(&"hypervisor");
            }
            _ => {}
        }
    }
    if !flags_seen && cpu.threads > 0 {
        issues.push(Issue::new(
            "proc/cpuinfo",
            "no 'flags' line: virtualisation support unknown",
        ));
    }
    cpu
}

fn read_os_release(root: &HostRoot, issues: &mut Vec<Issue>) -> OsRelease {
    for rel in ["etc/os-release", "usr/lib/os-release"] {
        match root.read(rel) {
            FileRead::Text(t) => return parse_os_release(&t),
            FileRead::Missing => continue,
            FileRead::Failed(why) => {
                issues.push(Issue::new(rel, why));
                return OsRelease::default();
            }
        }
    }
    OsRelease::default()
}

/// Proxmox VE: its cluster filesystem mount point or tools, and pve-manager's version from
/// the dpkg database (read only when Proxmox shows itself: the database is large).
fn read_proxmox(root: &HostRoot, issues: &mut Vec<Issue>) -> Option<ProxmoxInfo> {
    let evidence: Vec<String> = ["etc/pve", "usr/bin/pveversion", "usr/share/pve-manager"]
        .into_iter()
        .filter(|p| root.exists(p))
        .map(str::to_string)
        .collect();
    if evidence.is_empty() {
        return None;
    }
    let version = root
        .read_noting("var/lib/dpkg/status", issues)
        .and_then(|status| dpkg_installed_version(&status, "pve-manager"));
    Some(ProxmoxInfo { version, evidence })
}

/// The version of an installed package in a dpkg status database.
pub fn dpkg_installed_version(status: &str, package: &str) -> Option<String> {
    for para in status.split("\n\n") {
        let mut name = None;
        let mut installed = false;
        let mut version = None;
        for line in para.lines() {
            if let Some(v) = line.strip_prefix("Package: ") {
                name = Some(v.trim());
            } else if let Some(v) = line.strip_prefix("Status: ") {
                installed = v.trim().ends_with(" installed");
            } else if let Some(v) = line.strip_prefix("Version: ") {
                version = Some(v.trim());
            }
        }
        if name == Some(package) && installed {
            return version.map(str::to_string);
        }
    }
    None
}

/// `proc/modules`: `name size refcount deps state address`, deps `a,b,` or `-`.
fn read_loaded_modules(root: &HostRoot, issues: &mut Vec<Issue>) -> Option<Vec<LoadedModule>> {
    let text = root.read_noting("proc/modules", issues)?;
    let mut modules = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 4 || fields[1].parse::<u64>().is_err() {
            if !line.trim().is_empty() {
                issues.push(Issue::new(
                    "proc/modules",
                    format!("line {}: not in the kernel's format; skipped", i + 1),
                ));
            }
            continue;
        }
        let used_by = fields[3]
            .split(',')
            .filter(|s| !s.is_empty() && *s != "-")
            .map(str::to_string)
            .collect();
        modules.push(LoadedModule {
            name: fields[0].to_string(),
            used_by,
        });
    }
    Some(modules)
}

/// Module names from `modules.builtin` (`kernel/drivers/vfio/vfio.ko` gives `vfio`).
fn read_builtin_modules(
    root: &HostRoot,
    release: &str,
    issues: &mut Vec<Issue>,
) -> Option<Vec<String>> {
    for base in ["lib/modules", "usr/lib/modules"] {
        let rel = format!("{base}/{release}/modules.builtin");
        match root.read(&rel) {
            FileRead::Text(t) => {
                let mut names: Vec<String> = t
                    .lines()
                    .filter_map(|l| {
                        let file = l.trim().rsplit('/').next()?;
                        let name = file.strip_suffix(".ko")?;
                        Some(name.replace('-', "_"))
                    })
                    .collect();
                names.sort();
                names.dedup();
                return Some(names);
            }
            FileRead::Missing => continue,
            FileRead::Failed(why) => {
                issues.push(Issue::new(rel, why));
                return None;
            }
        }
    }
    None
}

fn read_kernel_config(
    root: &HostRoot,
    release: &str,
    issues: &mut Vec<Issue>,
) -> Vec<(String, String)> {
    let Some(text) = root.read_noting(&format!("boot/config-{release}"), issues) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for line in text.lines() {
        if let Some((k, v)) = line.split_once('=') {
            if KERNEL_CONFIG_KEYS.contains(&k) {
                out.push((k.to_string(), v.to_string()));
            }
        } else if let Some(rest) = line.strip_prefix("# ") {
            // `# CONFIG_X is not set`
            if let Some(k) = rest.strip_suffix(" is not set") {
                if KERNEL_CONFIG_KEYS.contains(&k) {
                    out.push((k.to_string(), "n".to_string()));
                }
            }
        }
    }
    out
}

/// `proc/driver/nvidia/version`: `NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14  ...`
/// (or `... Open Kernel Module for x86_64  ...`). The version is the first dotted number.
fn read_nvidia_version(root: &HostRoot, issues: &mut Vec<Issue>) -> Option<String> {
    let rel = "proc/driver/nvidia/version";
    let text = root.read_noting(rel, issues)?;
    let first = text.lines().next().unwrap_or_default();
    let found = first.split_whitespace().find(|w| {
        w.contains('.')
            && w.split('.')
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    });
    if found.is_none() {
        issues.push(Issue::new(rel, "no version number in the first line"));
    }
    found.map(str::to_string)
}

/// Character device majors from `proc/devices`.
fn read_char_majors(root: &HostRoot, issues: &mut Vec<Issue>) -> Vec<(u32, String)> {
    let Some(text) = root.read_noting("proc/devices", issues) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut in_char = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with("Character devices") {
            in_char = true;
        } else if line.starts_with("Block devices") {
            in_char = false;
        } else if in_char {
            if let Some((major, name)) = line.split_once(char::is_whitespace) {
                if let Ok(m) = major.parse() {
                    out.push((m, name.trim().to_string()));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpkg_version_of_installed_package_only() {
        let status = "Package: pve-manager\nStatus: deinstall ok config-files\nVersion: 7.4-1\n\nPackage: pve-manager\nStatus: install ok installed\nVersion: 8.2.4\n\nPackage: x\nStatus: install ok installed\nVersion: 1\n";
        assert_eq!(
            dpkg_installed_version(status, "pve-manager").as_deref(),
            Some("8.2.4")
        );
        assert_eq!(dpkg_installed_version(status, "y"), None);
    }
}
