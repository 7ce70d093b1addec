//! Reading PCI functions from `sys/bus/pci/devices`. Read-only.
//!
//! One odd device must never abort a scan (quickpassthrough#13 lost every device to one
//! crash): each attribute that is missing is `None`, each that is garbled is `None` plus an
//! `Issue`, and a directory entry that is not a PCI address is reported and skipped.

use std::collections::BTreeSet;
use std::path::Path;

use crate::model::{
    ClassCode, Issue, LinkInfo, MdevType, NvidiaVfVgpu, PciAddress, PciDevice, PciId, PowerInfo,
    ReadDetail, ResetInfo, SriovInfo,
};

use super::root::{FileRead, HostRoot};

pub const PCI_DEVICES: &str = "sys/bus/pci/devices";

/// Reads every PCI function. Large hosts are read on several threads: the work is one small
/// file at a time, so it is bound by system-call latency, not by the disk.
pub fn read_pci_devices(
    root: &HostRoot,
    detail: ReadDetail,
    issues: &mut Vec<Issue>,
) -> Vec<PciDevice> {
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
    let mut devices = super::par_map(&addresses, |(a, n)| read_pci_device(root, *a, n, detail));
    devices.sort_by_key(|d| d.address);
    devices
}

/// Reads one function's attributes. Never fails: what cannot be read is recorded on the
/// device.
///
/// The cost is system calls (one open, read and close per attribute), so `Full` first lists
/// the directory and opens only files that exist, and `Summary` reads only what `list`
/// shows.
pub fn read_pci_device(
    root: &HostRoot,
    address: PciAddress,
    entry: &str,
    detail: ReadDetail,
) -> PciDevice {
    let dir = format!("{PCI_DEVICES}/{entry}");
    let mut dev = PciDevice::new(address);
    let listing: Option<BTreeSet<String>> = match detail {
        ReadDetail::Full | ReadDetail::Check => match root.read_dir_names(&dir) {
            Ok(names) => Some(names.into_iter().collect()),
            Err(e) => {
                dev.issues.push(Issue::new(&dir, device_dir_problem(&e)));
                return dev;
            }
        },
        // A summary does not list the directory: `class` is read first, and only when that
        // fails is the directory itself looked at.
        ReadDetail::Summary => None,
    };
    // In Full mode a file absent from the listing is known absent without opening it.
    let has = |name: &str| {
        listing
            .as_ref()
            .is_none_or(|l| l.contains(name.split('/').next().unwrap_or(name)))
    };
    let mut r = AttrReader {
        root,
        dir: &dir,
        issues: &mut dev.issues,
    };

    // The kernel always creates these; their absence is damage worth naming.
    let class = r.required_hex("class", 6).map(ClassCode);
    if class.is_none() && listing.is_none() {
        let broken = match root.metadata(&dir) {
            Ok(m) if m.is_dir() => None,
            Ok(_) => Some("not a directory".to_string()),
            Err(e) => Some(device_dir_problem(&e)),
        };
        if let Some(why) = broken {
            // One message for the directory, not one per attribute.
            *r.issues = vec![Issue::new(&dir, why)];
            return dev;
        }
    }
    let vendor = r.required_hex("vendor", 4).map(|v| PciId(v as u16));
    let device = r.required_hex("device", 4).map(|v| PciId(v as u16));
    let subsystem_vendor = r.hex("subsystem_vendor", 4).map(|v| PciId(v as u16));
    let subsystem_device = r.hex("subsystem_device", 4).map(|v| PciId(v as u16));
    let revision = r.hex("revision", 2).map(|v| v as u8);
    let driver = r.link_target("driver", true);
    let iommu_group = r.link_target("iommu_group", false);
    // The kernel creates boot_vga only for VGA-class devices; reading it elsewhere would cost a
    // system call per device for nothing.
    let boot_vga = if class.is_none_or(ClassCode::is_vga) && has("boot_vga") {
        r.flag("boot_vga")
    } else {
        None
    };
    // Only a type-1 header (a bridge class, base 0x06) has a secondary bus; skip the look
    // for every endpoint.
    let may_bridge = class.is_none_or(ClassCode::is_bridge_class);
    let has_secondary_bus = may_bridge
        && listing.as_ref().is_none_or(|l| l.contains("pci_bus"))
        && root.is_dir(&format!("{dir}/pci_bus"));
    dev.class = class;
    dev.vendor = vendor;
    dev.device = device;
    dev.subsystem_vendor = subsystem_vendor;
    dev.subsystem_device = subsystem_device;
    dev.revision = revision;
    dev.driver = driver;
    dev.iommu_group = iommu_group;
    dev.boot_vga = boot_vga;
    dev.has_secondary_bus = has_secondary_bus;
    // A GPU's VFs are GPUs too (an iGPU's share its slot): `list` must tell them from the
    // card's own functions, so a summary reads this link for GPUs (one call each).
    if class.is_some_and(ClassCode::is_gpu) || listing.is_some() {
        dev.physfn = if has("physfn") {
            r.link_target("physfn", false).and_then(|t| t.parse().ok())
        } else {
            None
        };
    }
    if detail == ReadDetail::Summary {
        return dev;
    }

    let mut r = AttrReader {
        root,
        dir: &dir,
        issues: &mut dev.detail_issues,
    };
    let text = |r: &mut AttrReader, name: &str| if has(name) { r.text(name) } else { None };
    let driver_module = if dev.driver.is_some() {
        r.link_target("driver/module", false)
    } else {
        None
    };
    let driver_override =
        text(&mut r, "driver_override").filter(|s| s != "(null)" && !s.is_empty());
    let reset = ResetInfo {
        methods: text(&mut r, "reset_method")
            .map(|s| s.split_whitespace().map(str::to_string).collect()),
        reset_file: has("reset") && listing.is_some(),
    };
    let power = PowerInfo {
        state: text(&mut r, "power_state"),
        runtime_status: text(&mut r, "power/runtime_status"),
        control: text(&mut r, "power/control"),
        d3cold_allowed: if has("d3cold_allowed") {
            r.flag("d3cold_allowed")
        } else {
            None
        },
    };
    let numa_node = if has("numa_node") {
        r.int("numa_node").map(|n| n as i32)
    } else {
        None
    };
    let link = LinkInfo {
        current_speed: text(&mut r, "current_link_speed"),
        current_width: text(&mut r, "current_link_width"),
        max_speed: text(&mut r, "max_link_speed"),
        max_width: text(&mut r, "max_link_width"),
    };
    let total_vfs = if has("sriov_totalvfs") {
        r.int("sriov_totalvfs")
    } else {
        None
    };
    let sriov = total_vfs.map(|total| {
        let num_vfs = r.int("sriov_numvfs").map(|n| n as u32);
        let names = listing
            .iter()
            .flatten()
            .filter(|n| n.starts_with("virtfn"))
            .cloned()
            .collect::<Vec<_>>();
        let drivers_autoprobe = if has("sriov_drivers_autoprobe") {
            r.flag("sriov_drivers_autoprobe")
        } else {
            None
        };
        let vf_device = if has("sriov_vf_device") {
            r.hex("sriov_vf_device", 4).map(|v| PciId(v as u16))
        } else {
            None
        };
        let vfs = read_virtfns(root, &dir, &names);
        let vf_offset_stride =
            read_sriov_offset_stride(root, &dir).or_else(|| offset_stride_of(address, &vfs));
        SriovInfo {
            total_vfs: Some(total as u32),
            num_vfs,
            vfs,
            drivers_autoprobe,
            vf_device,
            vf_offset_stride,
        }
    });
    let mdev_types = if has("mdev_supported_types") {
        root.list_dir(&format!("{dir}/mdev_supported_types"), r.issues)
    } else {
        Vec::new()
    };
    let mdev_type_details = mdev_types
        .iter()
        .map(|t| {
            read_mdev_type(
                root,
                &format!("{dir}/mdev_supported_types/{t}"),
                t,
                r.issues,
            )
        })
        .collect();
    let nvidia_vgpu = if has("nvidia") && root.is_dir(&format!("{dir}/nvidia")) {
        Some(read_nvidia_vf(root, &format!("{dir}/nvidia"), r.issues))
    } else {
        None
    };
    let modalias = text(&mut r, "modalias");
    let bars = text(&mut r, "resource")
        .map(|t| super::usage::parse_resource_table(&t))
        .unwrap_or_default();
    dev.driver_module = driver_module;
    dev.driver_override = driver_override;
    dev.reset = reset;
    dev.power = power;
    dev.numa_node = numa_node;
    dev.link = link;
    dev.sriov = sriov;
    dev.mdev_types = mdev_types;
    dev.mdev_type_details = mdev_type_details;
    dev.nvidia_vgpu = nvidia_vgpu;
    dev.modalias = modalias;
    dev.bars = bars;
    dev.detailed = true;
    dev.parents = read_parents(root, &dir, address);
    dev
}

/// The same words for a broken device directory whichever way it was found.
fn device_dir_problem(e: &std::io::Error) -> String {
    if e.raw_os_error() == Some(20) {
        "not a directory".to_string()
    } else {
        format!("not a readable device directory: {e}")
    }
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

/// First VF Offset and VF Stride from the SR-IOV extended capability (id 0x0010) in config
/// space. Only root reads past the first 64 bytes, so for others this is `None`.
fn read_sriov_offset_stride(root: &HostRoot, dir: &str) -> Option<(u16, u16)> {
    let bytes = std::fs::read(root.join(&format!("{dir}/config"))).ok()?;
    parse_sriov_offset_stride(&bytes)
}

/// Walks the extended capability list from 0x100 (header: id in bits 0-15, next offset in
/// bits 20-31), at most 64 steps so a looping list ends.
pub fn parse_sriov_offset_stride(config: &[u8]) -> Option<(u16, u16)> {
    let u16_at = |o: usize| Some(u16::from_le_bytes([*config.get(o)?, *config.get(o + 1)?]));
    let mut at = 0x100usize;
    for _ in 0..64 {
        let header = u32::from(u16_at(at)?) | (u32::from(u16_at(at + 2)?) << 16);
        if header == 0 || header == 0xffff_ffff {
            return None;
        }
        if header & 0xffff == 0x0010 {
            return Some((u16_at(at + 0x14)?, u16_at(at + 0x16)?));
        }
        at = (header >> 20) as usize;
        if at < 0x100 {
            return None;
        }
    }
    None
}

/// Offset and stride seen in VFs that exist: the first VF's routing id minus the PF's, and
/// the step between the first two.
fn offset_stride_of(pf: PciAddress, vfs: &[PciAddress]) -> Option<(u16, u16)> {
    let rid = |a: &PciAddress| {
        (u32::from(a.bus) << 8) | (u32::from(a.device) << 3) | u32::from(a.function)
    };
    let first = rid(vfs.first()?).checked_sub(rid(&pf))?;
    let stride = match vfs.get(1) {
        Some(b) => rid(b).checked_sub(rid(&vfs[0]))?,
        None => return None,
    };
    Some((u16::try_from(first).ok()?, u16::try_from(stride).ok()?))
}

/// `virtfnN` links, in N order (not name order: `virtfn10` sorts before `virtfn2`).
fn read_virtfns(root: &HostRoot, dir: &str, names: &[String]) -> Vec<PciAddress> {
    let mut vfs: Vec<(u32, PciAddress)> = names
        .iter()
        .filter_map(|n| {
            let idx = n.strip_prefix("virtfn")?.parse::<u32>().ok()?;
            let (target, _) = root.link_name(&format!("{dir}/{n}"))?;
            Some((idx, target.parse().ok()?))
        })
        .collect();
    vfs.sort_by_key(|v| v.0);
    vfs.into_iter().map(|v| v.1).collect()
}

/// One mdev type's attributes. Each file is optional in the kernel's interface (`name` and
/// `description` are), so a missing one is `None`; a garbled count is `None` and an issue.
pub(super) fn read_mdev_type(
    root: &HostRoot,
    dir: &str,
    id: &str,
    issues: &mut Vec<Issue>,
) -> MdevType {
    let mut r = AttrReader { root, dir, issues };
    let available_instances = r
        .int("available_instances")
        .and_then(|n| u32::try_from(n).ok());
    let name = r.text("name").filter(|s| !s.is_empty());
    let description = r.text("description").filter(|s| !s.is_empty());
    let device_api = r.text("device_api").filter(|s| !s.is_empty());
    let devices = if root.exists(&format!("{dir}/devices")) {
        root.list_dir(&format!("{dir}/devices"), r.issues)
    } else {
        Vec::new()
    };
    MdevType {
        id: id.to_string(),
        name,
        description,
        available_instances,
        device_api,
        devices,
    }
}

/// A VF's `nvidia/` directory (NVIDIA vGPU 17+ vendor VFIO; format from NVIDIA's
/// vgpu-device-manager docs: `1414 : NVIDIA H200X-1-18C`, one type a line).
fn read_nvidia_vf(root: &HostRoot, dir: &str, issues: &mut Vec<Issue>) -> NvidiaVfVgpu {
    let mut r = AttrReader { root, dir, issues };
    let creatable = r
        .text("creatable_vgpu_types")
        .map(|t| parse_creatable_vgpu_types(&t))
        .unwrap_or_default();
    let current = r
        .int("current_vgpu_type")
        .and_then(|n| u32::try_from(n).ok());
    NvidiaVfVgpu { creatable, current }
}

/// `ID : name` lines; a header line (`ID    : vGPU Name`) and blank lines are skipped.
pub fn parse_creatable_vgpu_types(text: &str) -> Vec<(u32, String)> {
    text.lines()
        .filter_map(|l| {
            let (id, name) = l.split_once(':')?;
            Some((id.trim().parse().ok()?, name.trim().to_string()))
        })
        .collect()
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

    /// The name a link points to. With `check_target`, a link whose target is missing still
    /// names it, with an issue, since the kernel never makes such links: the tree is damaged.
    /// (Group links are checked against the group directories instead, which costs nothing.)
    fn link_target(&mut self, name: &str, check_target: bool) -> Option<String> {
        let p = self.path(name);
        let Some(target) = self.root.read_link(&p) else {
            if self.root.exists(&p) {
                self.note(name, "expected a symbolic link, found a file or directory");
            }
            return None;
        };
        let target = target.file_name()?.to_string_lossy().into_owned();
        if check_target && !self.root.exists_through(&p) {
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
