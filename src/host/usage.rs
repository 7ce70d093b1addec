//! What the host itself relies on: the controller of its root filesystem, the NIC of its
//! default route, the processes using its GPUs, the firmware framebuffer. passthru must never
//! hand these to a VM by accident. Read-only; some of it is complete only as root (other
//! users' `proc/<pid>/fd`, `proc/iomem` addresses), which the data says.

use std::collections::BTreeSet;

use crate::model::{DeviceUser, HostUsage, Issue, PciAddress, PciDevice};

use super::root::HostRoot;

pub fn read_host_usage(
    root: &HostRoot,
    devices: &[PciDevice],
    issues: &mut Vec<Issue>,
) -> HostUsage {
    let (boot_disk_controllers, boot_disk_evidence) = read_boot_disk(root, devices, issues);
    let (default_route_devices, default_route_evidence) = read_default_route(root, issues);
    HostUsage {
        boot_disk_controllers,
        boot_disk_evidence,
        default_route_devices,
        default_route_evidence,
        device_users: read_device_users(root, issues),
        boot_framebuffers: read_boot_framebuffers(root, issues),
        framebuffer_names: root
            .list_dir("sys/class/graphics", issues)
            .into_iter()
            .filter(|n| n.starts_with("fb"))
            .filter_map(|n| root.read_noting(&format!("sys/class/graphics/{n}/name"), issues))
            .map(|n| n.trim().to_string())
            .collect(),
        vfio_nodes: root.list_dir("dev/vfio", issues),
    }
}

/// The PCI addresses in a resolved sysfs path, outermost first.
fn pci_path(path: &str) -> Vec<PciAddress> {
    path.split('/').filter_map(|c| c.parse().ok()).collect()
}

/// Follows a block device down to the PCI controllers under it: partitions and disks through
/// their sysfs path, device-mapper and md through `slaves/`.
fn block_controllers(
    root: &HostRoot,
    name: &str,
    depth: usize,
    out: &mut BTreeSet<PciAddress>,
    issues: &mut Vec<Issue>,
) {
    if depth > 8 {
        return;
    }
    let rel = format!("sys/class/block/{name}");
    if let Some(real) = root.resolve_link(&rel) {
        if let Some(last) = pci_path(&real).last() {
            out.insert(*last);
            return;
        }
    }
    for slave in root.list_dir(&format!("{rel}/slaves"), issues) {
        block_controllers(root, &slave, depth + 1, out, issues);
    }
}

/// The root filesystem's device, from `proc/mounts` (the last mount on `/` wins).
fn read_boot_disk(
    root: &HostRoot,
    devices: &[PciDevice],
    issues: &mut Vec<Issue>,
) -> (Vec<PciAddress>, Option<String>) {
    let Some(mounts) = root.read_noting("proc/mounts", issues) else {
        return (Vec::new(), None);
    };
    let Some((source, fstype)) = mounts
        .lines()
        .rev()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3 && f[1] == "/").then(|| (f[0].to_string(), f[2].to_string()))
        })
        .next()
    else {
        return (Vec::new(), Some("proc/mounts has no / entry".into()));
    };
    let mut found = BTreeSet::new();
    if let Some(dev) = source.strip_prefix("/dev/") {
        // /dev/disk/by-uuid/... and /dev/mapper/x are links to the real node.
        let node = match root.read_link(&format!("dev/{dev}")) {
            Some(t) => t
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            None => dev.rsplit('/').next().unwrap_or(dev).to_string(),
        };
        let name = if dev.starts_with("mapper/") && !root.exists(&format!("sys/class/block/{node}"))
        {
            // A mapper name without a /dev link: find the dm-N whose dm/name matches.
            root.list_dir("sys/class/block", issues)
                .into_iter()
                .find(|b| {
                    root.read_noting(&format!("sys/class/block/{b}/dm/name"), issues)
                        .is_some_and(|n| n.trim() == node)
                })
                .unwrap_or(node)
        } else {
            node
        };
        block_controllers(root, &name, 0, &mut found, issues);
        if !found.is_empty() {
            return (
                found.into_iter().collect(),
                Some(format!(
                    "proc/mounts: / is {source} ({fstype}), on sys/class/block/{name}"
                )),
            );
        }
    }
    // ZFS and btrfs pools, overlays, or a device we could not follow: every storage controller
    // may hold the root filesystem, so each counts as one.
    let storage: Vec<PciAddress> = devices
        .iter()
        .filter(|d| d.class.is_some_and(|c| c.base() == 0x01))
        .map(|d| d.address)
        .collect();
    (
        storage,
        Some(format!(
            "proc/mounts: / is {source} ({fstype}), whose disks cannot be told from sysfs: every storage controller is treated as the boot disk's"
        )),
    )
}

/// The default route's interface (`proc/net/route`, destination and mask 0) and the PCI
/// devices under it, through bridge ports (`brif/`) and lower devices (`lower_*`).
fn read_default_route(
    root: &HostRoot,
    issues: &mut Vec<Issue>,
) -> (Vec<PciAddress>, Option<String>) {
    let Some(table) = root.read_noting("proc/net/route", issues) else {
        return (Vec::new(), None);
    };
    let Some(iface) = table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() >= 8 && f[1] == "00000000" && f[7] == "00000000").then(|| f[0].to_string())
    }) else {
        return (
            Vec::new(),
            Some("proc/net/route has no default route".into()),
        );
    };
    let mut found = BTreeSet::new();
    let mut pending = vec![(iface.clone(), 0)];
    let mut path = vec![iface.clone()];
    while let Some((name, depth)) = pending.pop() {
        if depth > 6 {
            continue;
        }
        let rel = format!("sys/class/net/{name}");
        // `device` points at the NIC's own device, which is the PCI function for most NICs
        // but a virtio device (`…/0000:00:03.0/virtio0`) or a USB interface for others: the
        // PCI function is the innermost one on its resolved path, whatever the bus between.
        // The interface's own directory first (sys/class/net/X is a link into sys/devices),
        // so that `device`'s relative target resolves from where the kernel put it.
        let dir = root.resolve_link(&rel).unwrap_or_else(|| rel.clone());
        if let Some(real) = root.resolve_link(&format!("{dir}/device")) {
            if let Some(a) = pci_path(&real).last() {
                found.insert(*a);
                continue;
            }
        }
        let mut lower: Vec<String> = root.list_dir(&format!("{dir}/brif"), issues);
        // A bond's members: `bonding/slaves` (space-separated), besides its `lower_*` links.
        if let Some(slaves) = root.read_noting(&format!("{dir}/bonding/slaves"), issues) {
            for s in slaves.split_whitespace() {
                if !lower.iter().any(|l| l == s) {
                    lower.push(s.to_string());
                }
            }
        }
        for l in root
            .list_dir(&dir, issues)
            .into_iter()
            .filter_map(|n| n.strip_prefix("lower_").map(str::to_string))
        {
            if !lower.contains(&l) {
                lower.push(l);
            }
        }
        for l in lower {
            path.push(l.clone());
            pending.push((l, depth + 1));
        }
    }
    let evidence = format!("proc/net/route: default route via {}", path.join(" -> "));
    (found.into_iter().collect(), Some(evidence))
}

/// Processes holding DRM or NVIDIA nodes open, from `proc/<pid>/fd`. Reported, never
/// signalled. Other users' processes are visible to root only.
fn read_device_users(root: &HostRoot, issues: &mut Vec<Issue>) -> Option<Vec<DeviceUser>> {
    if !root.is_dir("proc") {
        return None;
    }
    let mut users = Vec::new();
    let mut ignored = Vec::new();
    for pid in root.list_dir("proc", &mut ignored) {
        let Ok(pid_num) = pid.parse::<u32>() else {
            continue;
        };
        // Processes come and go while we look: failures here are not worth reporting.
        for fd in root.list_dir(&format!("proc/{pid}/fd"), &mut ignored) {
            let Some(target) = root.read_link(&format!("proc/{pid}/fd/{fd}")) else {
                continue;
            };
            let node = target.to_string_lossy().into_owned();
            if node.starts_with("/dev/dri/") || node.starts_with("/dev/nvidia") {
                if users
                    .iter()
                    .any(|u: &DeviceUser| u.pid == pid_num && u.node == node)
                {
                    continue;
                }
                let command = root
                    .read_noting(&format!("proc/{pid}/comm"), &mut ignored)
                    .map(|c| c.trim().to_string());
                users.push(DeviceUser {
                    pid: pid_num,
                    command,
                    node,
                });
            }
        }
    }
    let _ = issues;
    Some(users)
}

/// `BOOTFB` lines of `proc/iomem`: `  e0000000-e07e8fff : BOOTFB`.
fn read_boot_framebuffers(root: &HostRoot, issues: &mut Vec<Issue>) -> Vec<(u64, u64)> {
    let Some(text) = root.read_noting("proc/iomem", issues) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| {
            let (range, name) = l.trim().split_once(" : ")?;
            if name.trim() != "BOOTFB" {
                return None;
            }
            let (a, b) = range.split_once('-')?;
            let (a, b) = (
                u64::from_str_radix(a, 16).ok()?,
                u64::from_str_radix(b, 16).ok()?,
            );
            (b > 0).then_some((a, b))
        })
        .collect()
}

/// Memory BARs from a device's `resource` file: `0x<start> 0x<end> 0x<flags>` per line;
/// flag 0x200 marks memory (IORESOURCE_MEM).
pub fn parse_resource_table(text: &str) -> Vec<(u64, u64)> {
    text.lines()
        .filter_map(|l| {
            let mut f = l
                .split_whitespace()
                .map(|w| u64::from_str_radix(w.trim_start_matches("0x"), 16).ok());
            let (start, end, flags) = (f.next()??, f.next()??, f.next()??);
            (flags & 0x200 != 0 && end > start && start != 0).then_some((start, end))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_table_keeps_memory_bars_only() {
        let t = "0x00000000f6000000 0x00000000f6ffffff 0x0000000000040200\n0x000000e000000000 0x000000efffffffff 0x000000000014220c\n0x0000000000000000 0x0000000000000000 0x0000000000000000\n0x000000000000e000 0x000000000000e07f 0x0000000000040101\n";
        assert_eq!(
            parse_resource_table(t),
            vec![(0xf6000000, 0xf6ffffff), (0xe000000000, 0xefffffffff)]
        );
    }
}
