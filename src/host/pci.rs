//! Reading PCI functions from `sys/bus/pci/devices`. Read-only.
//!
//! One odd device must never abort a scan (quickpassthrough#13 lost every device to one
//! crash): each attribute that is missing is `None`, each that is garbled is `None` plus an
//! `Issue`, and a directory entry that is not a PCI address is reported and skipped.

use std::path::Path;

use crate::model::{
    ClassCode, Issue, LinkInfo, PciAddress, PciDevice, PciId, PowerInfo, ResetInfo, SriovInfo,
};

use super::root::{FileRead, HostRoot};

pub const PCI_DEVICES: &str = "sys/bus/pci/devices";

/// Reads every PCI function. Large hosts are read on several threads: the work is one small
/// file at a time, so it is bound by system-call latency, not by the disk.
pub fn read_pci_devices(root: &HostRoot, issues: &mut Vec<Issue>) -> Vec<PciDevice> {
    let mut addresses = Vec::new();
    for name in root.list_dir(PCI_DEVICES, issues) {
        match name.parse::<PciAddress>() {
            Ok(a) => addresses.push((a, name)),
            Err(e) => issues.push(Issue::new(
                format!("{PCI_DEVICES}/{name}"),
                format!("skipped: {e}"),
            )),
        }
    }
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    let mut devices: Vec<PciDevice> = if addresses.len() >= 256 && threads > 1 {
        let chunk = addresses.len().div_ceil(threads);
        std::thread::scope(|s| {
            let handles: Vec<_> = addresses
                .chunks(chunk)
                .map(|part| {
                    s.spawn(move || {
                        part.iter()
                            .map(|(a, n)| read_pci_device(root, *a, n))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        })
    } else {
        addresses
            .iter()
            .map(|(a, n)| read_pci_device(root, *a, n))
            .collect()
    };
    devices.sort_by_key(|d| d.address);
    devices
}

/// Reads one function's attributes. Never fails: what cannot be read is recorded on the
/// device.
pub fn read_pci_device(root: &HostRoot, address: PciAddress, entry: &str) -> PciDevice {
    let dir = format!("{PCI_DEVICES}/{entry}");
    let mut dev = PciDevice::new(address);
    let mut r = AttrReader {
        root,
        dir: &dir,
        issues: &mut dev.issues,
    };

    if !root.is_dir(&dir) {
        let why = match std::fs::metadata(root.join(&dir)) {
            Err(e) => format!("not a readable device directory: {e}"),
            Ok(_) => "not a directory".to_string(),
        };
        r.note("", why);
        return dev;
    }
    // The kernel always creates these three; their absence is damage worth naming.
    let class = r.required_hex("class", 6).map(ClassCode);
    let vendor = r.required_hex("vendor", 4).map(|v| PciId(v as u16));
    let device = r.required_hex("device", 4).map(|v| PciId(v as u16));
    let subsystem_vendor = r.hex("subsystem_vendor", 4).map(|v| PciId(v as u16));
    let subsystem_device = r.hex("subsystem_device", 4).map(|v| PciId(v as u16));
    let revision = r.hex("revision", 2).map(|v| v as u8);
    let driver = r.link_target("driver");
    let driver_module = driver.as_ref().and_then(|_| r.link_target("driver/module"));
    let driver_override = r
        .text("driver_override")
        .filter(|s| s != "(null)" && !s.is_empty());
    let iommu_group = r.link_target("iommu_group");
    // The kernel creates boot_vga only for VGA-class devices; reading it elsewhere would cost a
    // system call per device for nothing.
    let boot_vga = if class.is_none_or(ClassCode::is_vga) {
        r.flag("boot_vga")
    } else {
        None
    };
    let reset = ResetInfo {
        methods: r
            .text("reset_method")
            .map(|s| s.split_whitespace().map(str::to_string).collect()),
        reset_file: root.exists(&format!("{dir}/reset")),
    };
    let power = PowerInfo {
        state: r.text("power_state"),
        runtime_status: r.text("power/runtime_status"),
        control: r.text("power/control"),
        d3cold_allowed: r.flag("d3cold_allowed"),
    };
    let numa_node = r.int("numa_node").map(|n| n as i32);
    let link = LinkInfo {
        current_speed: r.text("current_link_speed"),
        current_width: r.text("current_link_width"),
        max_speed: r.text("max_link_speed"),
        max_width: r.text("max_link_width"),
    };
    let total_vfs = r.int("sriov_totalvfs");
    let sriov = total_vfs.map(|total| {
        let num_vfs = r.int("sriov_numvfs").map(|n| n as u32);
        let vfs = read_virtfns(root, &dir, r.issues);
        SriovInfo {
            total_vfs: Some(total as u32),
            num_vfs,
            vfs,
        }
    });
    let physfn = r.link_target("physfn").and_then(|t| t.parse().ok());
    let mdev_types = root.list_dir(&format!("{dir}/mdev_supported_types"), r.issues);
    let has_secondary_bus = root.is_dir(&format!("{dir}/pci_bus"));
    let modalias = r.text("modalias");
    let parents = read_parents(root, &dir, address);

    dev.class = class;
    dev.vendor = vendor;
    dev.device = device;
    dev.subsystem_vendor = subsystem_vendor;
    dev.subsystem_device = subsystem_device;
    dev.revision = revision;
    dev.driver = driver;
    dev.driver_module = driver_module;
    dev.driver_override = driver_override;
    dev.iommu_group = iommu_group;
    dev.boot_vga = boot_vga;
    dev.reset = reset;
    dev.power = power;
    dev.numa_node = numa_node;
    dev.link = link;
    dev.sriov = sriov;
    dev.physfn = physfn;
    dev.mdev_types = mdev_types;
    dev.has_secondary_bus = has_secondary_bus;
    dev.modalias = modalias;
    dev.parents = parents;
    dev
}

/// The bridges above a device, from its real path in `sys/devices`
/// (`devices/pci0000:00/0000:00:01.0/0000:01:00.0`). Trimmed trees that keep device
/// directories instead of links have no path to read: the chain is then empty.
fn read_parents(root: &HostRoot, dir: &str, me: PciAddress) -> Vec<PciAddress> {
    let Some(real) = root.resolve_link(dir) else {
        return Vec::new();
    };
    Path::new(&real)
        .components()
        .filter_map(|c| c.as_os_str().to_str()?.parse::<PciAddress>().ok())
        .filter(|a| *a != me)
        .collect()
}

/// `virtfnN` links, in N order (not name order: `virtfn10` sorts before `virtfn2`).
fn read_virtfns(root: &HostRoot, dir: &str, issues: &mut Vec<Issue>) -> Vec<PciAddress> {
    let mut vfs: Vec<(u32, PciAddress)> = root
        .list_dir(dir, issues)
        .into_iter()
        .filter_map(|n| {
            let idx = n.strip_prefix("virtfn")?.parse::<u32>().ok()?;
            let (target, _) = root.link_name(&format!("{dir}/{n}"))?;
            Some((idx, target.parse().ok()?))
        })
        .collect();
    vfs.sort_by_key(|v| v.0);
    vfs.into_iter().map(|v| v.1).collect()
}

/// Reads one device's attribute files, turning failures into issues on that device.
struct AttrReader<'a> {
    root: &'a HostRoot,
    dir: &'a str,
    issues: &'a mut Vec<Issue>,
}

impl AttrReader<'_> {
    fn path(&self, name: &str) -> String {
        if name.is_empty() {
            self.dir.to_string()
        } else {
            format!("{}/{name}", self.dir)
        }
    }

    fn note(&mut self, name: &str, problem: impl Into<String>) {
        let p = self.path(name);
        self.issues.push(Issue::new(p, problem));
    }

    /// A one-line attribute, trimmed. Empty counts as present-but-empty.
    fn text(&mut self, name: &str) -> Option<String> {
        match self.root.read(&self.path(name)) {
            FileRead::Text(t) => Some(t.trim().to_string()),
            FileRead::Missing => None,
            FileRead::Failed(why) => {
                self.note(name, why);
                None
            }
        }
    }

    /// Like `hex`, but a missing file is noted too.
    fn required_hex(&mut self, name: &str, digits: usize) -> Option<u32> {
        let before = self.issues.len();
        let v = self.hex(name, digits);
        if v.is_none() && self.issues.len() == before {
            self.note(name, "missing (the kernel always provides it)");
        }
        v
    }

    /// A `0x`-prefixed hex attribute of at most `digits` digits.
    fn hex(&mut self, name: &str, digits: usize) -> Option<u32> {
        let t = self.text(name)?;
        let body = t.strip_prefix("0x").unwrap_or(&t);
        if body.is_empty() || body.len() > digits || !body.bytes().all(|b| b.is_ascii_hexdigit()) {
            self.note(
                name,
                format!("not a {digits}-digit hex number: '{}'", printable(&t)),
            );
            return None;
        }
        u32::from_str_radix(body, 16).ok()
    }

    fn int(&mut self, name: &str) -> Option<i64> {
        let t = self.text(name)?;
        match t.parse::<i64>() {
            Ok(n) => Some(n),
            Err(_) => {
                self.note(name, format!("not a number: '{}'", printable(&t)));
                None
            }
        }
    }

    fn flag(&mut self, name: &str) -> Option<bool> {
        let t = self.text(name)?;
        match t.as_str() {
            "1" | "Y" | "y" => Some(true),
            "0" | "N" | "n" => Some(false),
            _ => {
                self.note(name, format!("expected 0 or 1, found '{}'", printable(&t)));
                None
            }
        }
    }

    /// The name a link points to. A link whose target is missing still names it, with an
    /// issue, since the kernel never makes such links: the tree is damaged.
    fn link_target(&mut self, name: &str) -> Option<String> {
        let p = self.path(name);
        let Some((target, exists)) = self.root.link_name(&p) else {
            if self.root.exists(&p) {
                self.note(name, "expected a symbolic link, found a file or directory");
            }
            return None;
        };
        if !exists {
            self.note(name, format!("link to '{target}' points to nothing"));
        }
        Some(target)
    }
}

/// Shortens and cleans a garbled value for a message.
pub fn printable(s: &str) -> String {
    let clean: String = s
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .take(40)
        .collect();
    if s.chars().count() > 40 {
        format!("{clean}...")
    } else {
        clean
    }
}
