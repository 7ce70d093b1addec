//! Writes a host root tree from a [`HostDesc`].
//!
//! Only touches paths below the given root. Symlinks are relative, computed
//! the way sysfs computes them, so the tree can be moved or committed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use crate::desc::{DeviceDesc, HostDesc};
use crate::generate;

/// A parsed `DDDD:BB:SS.F`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Bdf {
    pub domain: u16,
    pub bus: u8,
    pub slot: u8,
    pub func: u8,
}

impl Bdf {
    pub(crate) fn parse(s: &str) -> Option<Bdf> {
        let (domain, rest) = s.split_once(':')?;
        let (bus, rest) = rest.split_once(':')?;
        let (slot, func) = rest.split_once('.')?;
        if domain.len() != 4 || bus.len() != 2 || slot.len() != 2 || func.len() != 1 {
            return None;
        }
        let b = Bdf {
            domain: u16::from_str_radix(domain, 16).ok()?,
            bus: u8::from_str_radix(bus, 16).ok()?,
            slot: u8::from_str_radix(slot, 16).ok()?,
            func: u8::from_str_radix(func, 16).ok()?,
        };
        (b.slot < 32 && b.func < 8).then_some(b)
    }
}

impl std::fmt::Display for Bdf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.slot, self.func
        )
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// Relative path from directory `from_dir` to `to` (both root-relative).
pub(crate) fn rel(from_dir: &Path, to: &Path) -> PathBuf {
    let a: Vec<Component<'_>> = from_dir.components().collect();
    let b: Vec<Component<'_>> = to.components().collect();
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut p = PathBuf::new();
    for _ in common..a.len() {
        p.push("..");
    }
    for c in &b[common..] {
        p.push(c);
    }
    p
}

/// Small writer rooted at the output directory; every path is root-relative.
struct Tree<'a> {
    root: &'a Path,
}

impl Tree<'_> {
    fn abs(&self, p: &Path) -> PathBuf {
        self.root.join(p)
    }

    fn dir(&self, p: impl AsRef<Path>) -> io::Result<()> {
        fs::create_dir_all(self.abs(p.as_ref()))
    }

    fn clear(&self, abs: &Path) -> io::Result<()> {
        match fs::symlink_metadata(abs) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(abs),
            Ok(_) => fs::remove_file(abs),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn file(&self, p: impl AsRef<Path>, content: impl AsRef<[u8]>) -> io::Result<()> {
        let abs = self.abs(p.as_ref());
        if let Some(parent) = abs.parent() {
            fs::create_dir_all(parent)?;
        }
        if fs::symlink_metadata(&abs).is_ok_and(|m| m.file_type().is_symlink()) {
            fs::remove_file(&abs)?;
        }
        fs::write(abs, content)
    }

    /// A sysfs attribute: the value plus the trailing newline.
    fn attr(&self, p: impl AsRef<Path>, value: impl std::fmt::Display) -> io::Result<()> {
        self.file(p, format!("{value}\n"))
    }

    fn link(&self, p: impl AsRef<Path>, target: impl AsRef<Path>) -> io::Result<()> {
        let abs = self.abs(p.as_ref());
        if let Some(parent) = abs.parent() {
            fs::create_dir_all(parent)?;
        }
        self.clear(&abs)?;
        std::os::unix::fs::symlink(target.as_ref(), abs)
    }

    /// A symlink at `p` pointing at root-relative `to`, written relatively.
    fn rlink(&self, p: impl AsRef<Path>, to: impl AsRef<Path>) -> io::Result<()> {
        let p = p.as_ref();
        let dir = p.parent().unwrap_or(Path::new(""));
        self.link(p, rel(dir, to.as_ref()))
    }
}

/// Everything derived from the device list before writing.
struct Topology<'d> {
    devs: Vec<&'d DeviceDesc>,
    bdfs: Vec<Bdf>,
    index: HashMap<Bdf, usize>,
    parent: Vec<Option<usize>>,
    children: Vec<Vec<usize>>,
    paths: Vec<PathBuf>,
}

fn is_bridge(class: u32) -> bool {
    matches!(class >> 8, 0x0604 | 0x0609)
}

impl<'d> Topology<'d> {
    fn new(devs: Vec<&'d DeviceDesc>) -> io::Result<Topology<'d>> {
        let mut bdfs = Vec::with_capacity(devs.len());
        let mut index = HashMap::with_capacity(devs.len());
        for (i, d) in devs.iter().enumerate() {
            let b = Bdf::parse(&d.address).ok_or_else(|| {
                invalid(format!(
                    "device address {:?} is not DDDD:BB:SS.F",
                    d.address
                ))
            })?;
            if index.insert(b, i).is_some() {
                return Err(invalid(format!("device {b} is described twice")));
            }
            bdfs.push(b);
        }
        let lookup = |s: &str, what: &str, of: &str| -> io::Result<usize> {
            Bdf::parse(s)
                .and_then(|b| index.get(&b).copied())
                .ok_or_else(|| invalid(format!("{what} {s:?} of {of} is not a described device")))
        };
        let mut parent = vec![None; devs.len()];
        for (i, d) in devs.iter().enumerate() {
            parent[i] = match (&d.parent, &d.physfn) {
                (Some(p), _) => Some(lookup(p, "parent", &d.address)?),
                (None, Some(pf)) => devs[lookup(pf, "physfn", &d.address)?]
                    .parent
                    .as_deref()
                    .map(|p| lookup(p, "parent", &d.address))
                    .transpose()?,
                (None, None) => None,
            };
        }
        let mut children = vec![Vec::new(); devs.len()];
        for (i, p) in parent.iter().enumerate() {
            if let Some(p) = p {
                if !is_bridge(devs[*p].class) {
                    return Err(invalid(format!(
                        "parent {} of {} is not a bridge (class 0x0604xx)",
                        devs[*p].address, devs[i].address
                    )));
                }
                children[*p].push(i);
            }
        }
        let mut paths: Vec<Option<PathBuf>> = vec![None; devs.len()];
        for i in 0..devs.len() {
            let mut chain = vec![i];
            let mut cur = i;
            while let Some(p) = parent[cur] {
                if chain.len() > devs.len() {
                    return Err(invalid(format!("parent loop at {}", devs[i].address)));
                }
                chain.push(p);
                cur = p;
            }
            let top = bdfs[cur];
            let mut path =
                PathBuf::from(format!("sys/devices/pci{:04x}:{:02x}", top.domain, top.bus));
            for &c in chain.iter().rev() {
                path.push(bdfs[c].to_string());
            }
            paths[i] = Some(path);
        }
        let paths = paths.into_iter().flatten().collect();
        Ok(Topology {
            devs,
            bdfs,
            index,
            parent,
            children,
            paths,
        })
    }

    /// (secondary, subordinate) bus numbers of bridge `i`.
    fn buses(&self, i: usize) -> Option<(u8, u8)> {
        let sec = self.children[i]
            .iter()
            .map(|&c| self.bdfs[c].bus)
            .min()
            .or(self.devs[i].secondary_bus)?;
        let mut sub = sec;
        let mut stack = self.children[i].clone();
        while let Some(c) = stack.pop() {
            sub = sub.max(self.bdfs[c].bus);
            if let Some((_, s)) = self.buses_shallow(c) {
                sub = sub.max(s);
            }
            stack.extend(self.children[c].iter().copied());
        }
        Some((sec, sub))
    }

    fn buses_shallow(&self, i: usize) -> Option<(u8, u8)> {
        self.devs[i].secondary_bus.map(|s| (s, s))
    }

    fn multifunction(&self, i: usize) -> bool {
        if self.devs[i].physfn.is_some() {
            return false;
        }
        let b = self.bdfs[i];
        (0..8u8).any(|f| {
            f != b.func
                && self
                    .index
                    .get(&Bdf { func: f, ..b })
                    .is_some_and(|&j| self.devs[j].physfn.is_none())
        })
    }
}

/// The 64 bytes an unprivileged reader gets from `config`.
fn config_space(
    d: &DeviceDesc,
    multifunction: bool,
    buses: Option<(u8, u8)>,
    primary: u8,
) -> [u8; 64] {
    let mut c = [0u8; 64];
    c[0..2].copy_from_slice(&d.vendor.to_le_bytes());
    c[2..4].copy_from_slice(&d.device.to_le_bytes());
    let command: u16 = if d.driver.is_some() { 0x0406 } else { 0x0000 };
    c[4..6].copy_from_slice(&command.to_le_bytes());
    // Status: capability list present; the list itself lies beyond byte 63.
    c[6..8].copy_from_slice(&0x0010u16.to_le_bytes());
    c[8] = d.revision;
    c[9] = (d.class & 0xff) as u8;
    c[10] = ((d.class >> 8) & 0xff) as u8;
    c[11] = ((d.class >> 16) & 0xff) as u8;
    c[0x0c] = 0x10;
    let bridge = is_bridge(d.class);
    c[0x0e] = u8::from(bridge) | if multifunction { 0x80 } else { 0 };
    if bridge {
        c[0x18] = primary;
        if let Some((sec, sub)) = buses {
            c[0x19] = sec;
            c[0x1a] = sub;
        }
        c[0x3e..0x40].copy_from_slice(&0x0010u16.to_le_bytes());
    } else {
        c[0x2c..0x2e].copy_from_slice(&d.subsystem_vendor.to_le_bytes());
        c[0x2e..0x30].copy_from_slice(&d.subsystem_device.to_le_bytes());
    }
    c[0x34] = 0x40;
    c[0x3c] = 0xff;
    c[0x3d] = 0x01;
    c
}

/// Module name for a device's driver; `None` = no `module` link.
fn module_of(d: &DeviceDesc) -> Option<String> {
    let driver = d.driver.as_deref()?;
    match d.module.as_deref() {
        Some("") => None,
        Some(m) => Some(m.to_string()),
        None if driver == "pcieport" => None,
        None => Some(driver.replace('-', "_")),
    }
}

fn cpulist(n: u32) -> String {
    if n <= 1 {
        "0".to_string()
    } else {
        format!("0-{}", n - 1)
    }
}

/// Writes the whole tree for `desc` under `root`.
pub(crate) fn build(desc: &HostDesc, root: &Path) -> io::Result<()> {
    let t = Tree { root };
    fs::create_dir_all(root)?;
    let generated = match &desc.generate {
        Some(g) => generate::server(g, desc)?,
        None => Vec::new(),
    };
    let devs: Vec<&DeviceDesc> = desc.devices.iter().chain(generated.iter()).collect();
    let topo = Topology::new(devs)?;

    write_proc(&t, desc, &topo)?;
    write_firmware(&t, desc)?;
    write_pci(&t, desc, &topo)?;
    write_iommu_units(&t, desc, &topo)?;
    write_extras(&t, desc)
}

fn write_proc(t: &Tree<'_>, desc: &HostDesc, topo: &Topology<'_>) -> io::Result<()> {
    let h = &desc.host;
    let cpu = &desc.cpu;
    let rel_ = &h.kernel_release;
    t.attr("proc/sys/kernel/osrelease", rel_)?;
    let version = h.proc_version.clone().unwrap_or_else(|| {
        format!(
            "Linux version {rel_} (builder@buildhost) (gcc (GCC) 12.2.0, GNU ld (GNU Binutils) 2.40) #1 SMP PREEMPT_DYNAMIC"
        )
    });
    t.attr("proc/version", version)?;
    t.attr("proc/cmdline", &h.cmdline)?;
    if let Some(os) = &h.os_release {
        t.file("etc/os-release", os)?;
    }

    // cpuinfo
    let n = cpu.processors.max(1);
    let sockets = cpu.sockets.max(1);
    let per_socket = n.div_ceil(sockets);
    let mut s = String::new();
    for i in 0..n {
        let intel = cpu.vendor_id == "GenuineIntel";
        s.push_str(&format!(
            "processor\t: {i}\nvendor_id\t: {}\ncpu family\t: {}\nmodel\t\t: {}\nmodel name\t: {}\nstepping\t: {}\nmicrocode\t: {}\ncpu MHz\t\t: 3400.000\ncache size\t: {}\nphysical id\t: {}\nsiblings\t: {per_socket}\ncore id\t\t: {}\ncpu cores\t: {per_socket}\napicid\t\t: {i}\ninitial apicid\t: {i}\nfpu\t\t: yes\nfpu_exception\t: yes\ncpuid level\t: {}\nwp\t\t: yes\nflags\t\t: {}\nbugs\t\t: {}\nbogomips\t: 6800.00\nclflush size\t: 64\ncache_alignment\t: 64\naddress sizes\t: {}\npower management:{}\n\n",
            cpu.vendor_id,
            cpu.family,
            cpu.model,
            cpu.model_name,
            cpu.stepping,
            if intel { "0x2c" } else { "0xa201205" },
            if intel { "16384 KB" } else { "512 KB" },
            i / per_socket,
            i % per_socket,
            if intel { 22 } else { 16 },
            cpu.flags,
            if intel { "spectre_v1 spectre_v2 spec_store_bypass swapgs" } else { "sysret_ss_attrs spectre_v1 spectre_v2 spec_rstack_overflow" },
            if intel { "46 bits physical, 48 bits virtual" } else { "48 bits physical, 48 bits virtual" },
            if intel { "" } else { " ts ttp tm hwpstate cpb eff_freq_ro [13] [14]" },
        ));
    }
    t.file("proc/cpuinfo", s)?;

    // modules: described ones first, then every driver module not built in.
    let builtin: BTreeSet<String> = h
        .modules_builtin
        .iter()
        .filter_map(|l| Path::new(l).file_stem().and_then(|s| s.to_str()))
        .map(|s| s.replace('-', "_"))
        .collect();
    let mut lines = Vec::new();
    let mut loaded = BTreeSet::new();
    for m in &desc.modules {
        let deps = if m.deps.is_empty() {
            "-".to_string()
        } else {
            m.deps.iter().map(|d| format!("{d},")).collect::<String>()
        };
        let taint = m
            .taint
            .as_ref()
            .map(|t| format!(" ({t})"))
            .unwrap_or_default();
        lines.push(format!(
            "{} {} {} {} {} 0x0000000000000000{taint}",
            m.name, m.size, m.refcount, deps, m.state
        ));
        loaded.insert(m.name.clone());
    }
    for d in &topo.devs {
        if let Some(m) = module_of(d) {
            if !builtin.contains(&m) && loaded.insert(m.clone()) {
                lines.push(format!("{m} 16384 0 - Live 0x0000000000000000"));
            }
        }
    }
    let mut modules = lines.join("\n");
    if !modules.is_empty() {
        modules.push('\n');
    }
    t.file("proc/modules", modules)?;
    for m in &loaded {
        t.attr(format!("sys/module/{m}/initstate"), "live")?;
        let refc = desc
            .modules
            .iter()
            .find(|x| &x.name == m)
            .map_or(0, |x| x.refcount);
        t.attr(format!("sys/module/{m}/refcnt"), refc)?;
        t.file(format!("sys/module/{m}/uevent"), "")?;
    }
    let mut builtin_text = h.modules_builtin.join("\n");
    if !builtin_text.is_empty() {
        builtin_text.push('\n');
    }
    t.file(format!("lib/modules/{rel_}/modules.builtin"), builtin_text)?;
    for (key, value) in &h.params {
        let (m, p) = key
            .split_once('.')
            .ok_or_else(|| invalid(format!("module parameter {key:?} is not MODULE.PARAM")))?;
        t.attr(format!("sys/module/{m}/parameters/{p}"), value)?;
    }

    if let Some(v) = &h.nvidia_version {
        t.file(
            "proc/driver/nvidia/version",
            format!(
                "NVRM version: NVIDIA UNIX x86_64 Kernel Module  {v}  {}\nGCC version:  gcc version 12.2.0 (Debian 12.2.0-14) \n",
                h.nvidia_build_date
            ),
        )?;
    }

    // proc/devices
    let mut chars: Vec<(u32, String)> = [
        (1, "mem"),
        (4, "/dev/vc/0"),
        (4, "tty"),
        (4, "ttyS"),
        (5, "/dev/tty"),
        (5, "/dev/console"),
        (5, "/dev/ptmx"),
        (7, "vcs"),
        (10, "misc"),
        (13, "input"),
        (21, "sg"),
        (29, "fb"),
        (116, "alsa"),
        (128, "ptm"),
        (136, "pts"),
        (180, "usb"),
        (189, "usb_device"),
        (226, "drm"),
        (242, "hidraw"),
        (243, "vfio"),
        (250, "bsg"),
        (251, "watchdog"),
        (252, "ptp"),
        (253, "pps"),
        (254, "rtc"),
    ]
    .iter()
    .map(|(n, s)| (*n, s.to_string()))
    .collect();
    for c in &h.char_devices {
        let (maj, name) = c
            .trim()
            .split_once(' ')
            .ok_or_else(|| invalid(format!("char device {c:?} is not \"MAJOR name\"")))?;
        let maj: u32 = maj
            .parse()
            .map_err(|_| invalid(format!("char device {c:?}: bad major")))?;
        chars.push((maj, name.trim().to_string()));
    }
    chars.sort_by_key(|(n, _)| *n);
    let mut s = String::from("Character devices:\n");
    for (n, name) in &chars {
        s.push_str(&format!("{n:>3} {name}\n"));
    }
    s.push_str("\nBlock devices:\n  7 loop\n  8 sd\n  9 md\n 65 sd\n253 device-mapper\n254 mdp\n259 blkext\n");
    t.file("proc/devices", s)?;

    // interrupts
    let ir = desc.iommu.interrupt_remapping;
    let pre = if ir { "IR-" } else { "" };
    let mut s = String::from("           ");
    for i in 0..n {
        s.push_str(&format!("{:<11}", format!("CPU{i}")));
    }
    s = s.trim_end().to_string();
    s.push('\n');
    let counts = |seed: u64| -> String {
        (0..n)
            .map(|c| format!(" {:>10}", (seed * 7919 + u64::from(c) * 104_729) % 100_000))
            .collect()
    };
    for (irq, hw, name) in [
        (0u32, "2-edge", "timer"),
        (1, "1-edge", "i8042"),
        (8, "8-edge", "rtc0"),
        (9, "9-fasteoi", "acpi"),
    ] {
        s.push_str(&format!(
            "{irq:>4}:{}  {pre}IO-APIC   {hw}      {name}\n",
            counts(u64::from(irq))
        ));
    }
    for (i, d) in topo.devs.iter().enumerate() {
        if let (Some(drv), Some(irq)) = (d.driver.as_deref(), irq_of(topo, i)) {
            s.push_str(&format!(
                "{irq:>4}:{}  {pre}PCI-MSI-{}    0-edge      {drv}\n",
                counts(u64::from(irq)),
                topo.bdfs[i]
            ));
        }
    }
    for (name, text) in [
        ("NMI", "Non-maskable interrupts"),
        ("LOC", "Local timer interrupts"),
        ("RES", "Rescheduling interrupts"),
    ] {
        s.push_str(&format!("{name}:{}   {text}\n", counts(3)));
    }
    s.push_str("ERR:          0\nMIS:          0\n");
    t.file("proc/interrupts", s)
}

/// IRQs are described or allocated from 24 upwards, in device order, for bound devices.
fn irq_of(topo: &Topology<'_>, i: usize) -> Option<u32> {
    let d = topo.devs[i];
    if let Some(irq) = d.irq {
        return Some(irq);
    }
    d.driver.as_ref()?;
    let before = topo.devs[..i]
        .iter()
        .filter(|x| x.driver.is_some() && x.irq.is_none())
        .count();
    Some(24 + u32::try_from(before).expect("fewer than 2^32 devices"))
}

fn write_firmware(t: &Tree<'_>, desc: &HostDesc) -> io::Result<()> {
    match desc.host.firmware.as_str() {
        "efi" => {
            t.attr("sys/firmware/efi/fw_platform_size", 64)?;
            t.file(
                "sys/firmware/efi/systab",
                "ACPI20=0xbb4f4000\nSMBIOS3=0xbc6c6000\n",
            )?;
        }
        "bios" => {}
        other => {
            return Err(invalid(format!(
                "host.firmware {other:?} is not \"efi\" or \"bios\""
            )))
        }
    }
    let iommu = &desc.iommu;
    let table = match iommu.vendor.as_str() {
        "intel" => Some("DMAR"),
        "amd" => Some("IVRS"),
        "none" => None,
        other => {
            return Err(invalid(format!(
                "iommu.vendor {other:?} is not intel, amd or none"
            )))
        }
    };
    if let Some(table) = table {
        if iommu.firmware_table.unwrap_or(true) {
            t.file(format!("sys/firmware/acpi/tables/{table}"), "")?;
        }
    }
    t.file("sys/firmware/acpi/tables/DSDT", "")?;
    t.file("sys/firmware/acpi/tables/FACP", "")
}

fn write_pci(t: &Tree<'_>, desc: &HostDesc, topo: &Topology<'_>) -> io::Result<()> {
    t.dir("sys/bus/pci/devices")?;
    t.file("sys/bus/pci/drivers_probe", "")?;
    t.file("sys/bus/pci/rescan", "")?;
    t.attr("sys/bus/pci/drivers_autoprobe", 1)?;
    let cpus = desc.cpu.processors.max(1);
    let sockets = desc.cpu.sockets.max(1);
    let per_socket = cpus.div_ceil(sockets);
    let mut root_buses = BTreeSet::new();
    let mut drivers = BTreeMap::new();
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut virtfns: HashMap<usize, Vec<usize>> = HashMap::new();

    for (i, d) in topo.devs.iter().enumerate() {
        let b = topo.bdfs[i];
        let p = &topo.paths[i];
        if topo.parent[i].is_none() {
            root_buses.insert((b.domain, b.bus));
        }
        t.rlink(format!("sys/bus/pci/devices/{b}"), p)?;
        let attr = |name: &str, v: &dyn std::fmt::Display| t.attr(p.join(name), v);
        attr("vendor", &format_args!("0x{:04x}", d.vendor))?;
        attr("device", &format_args!("0x{:04x}", d.device))?;
        attr(
            "subsystem_vendor",
            &format_args!("0x{:04x}", d.subsystem_vendor),
        )?;
        attr(
            "subsystem_device",
            &format_args!("0x{:04x}", d.subsystem_device),
        )?;
        attr("class", &format_args!("0x{:06x}", d.class))?;
        attr("revision", &format_args!("0x{:02x}", d.revision))?;
        attr(
            "modalias",
            &format_args!(
                "pci:v{:08X}d{:08X}sv{:08X}sd{:08X}bc{:02X}sc{:02X}i{:02X}",
                d.vendor,
                d.device,
                d.subsystem_vendor,
                d.subsystem_device,
                d.class >> 16,
                (d.class >> 8) & 0xff,
                d.class & 0xff
            ),
        )?;
        attr("enable", &u8::from(d.driver.is_some()))?;
        attr("irq", &irq_of(topo, i).unwrap_or(0))?;
        let (cpul, node) = if d.numa_node >= 0 {
            let node = u32::try_from(d.numa_node).expect("checked non-negative");
            let first = node * per_socket;
            (format!("{first}-{}", first + per_socket - 1), d.numa_node)
        } else {
            (cpulist(cpus), -1)
        };
        attr("local_cpulist", &cpul)?;
        attr("numa_node", &node)?;
        attr("dma_mask_bits", &64)?;
        attr("driver_override", &d.driver_override)?;
        attr("power_state", &d.power_state)?;
        attr("d3cold_allowed", &u8::from(d.d3cold_allowed))?;
        attr("power/runtime_status", &d.runtime_status)?;
        attr("power/control", &d.control)?;
        attr("power/runtime_suspended_time", &0)?;
        attr("power/runtime_active_time", &123_456)?;
        if d.class >> 8 == 0x0300 {
            attr("boot_vga", &u8::from(d.boot_vga))?;
        }
        if let Some(r) = &d.reset_method {
            attr("reset_method", r)?;
            t.file(p.join("reset"), "")?;
        }
        if let Some(s) = &d.link_speed {
            attr("current_link_speed", s)?;
            attr("max_link_speed", s)?;
        }
        if let Some(w) = &d.link_width {
            attr("current_link_width", w)?;
            attr("max_link_width", w)?;
        }
        // Never meaningful to read: empty placeholders, as a safe capture leaves them.
        t.file(p.join("resource0"), "")?;
        t.file(p.join("rom"), "")?;
        t.file(p.join("remove"), "")?;
        t.file(p.join("rescan"), "")?;
        let resource: String =
            "0x0000000000000000 0x0000000000000000 0x0000000000000000\n".repeat(13);
        t.file(p.join("resource"), resource)?;
        let buses = topo.buses(i);
        let primary = b.bus;
        t.file(
            p.join("config"),
            config_space(d, topo.multifunction(i), buses, primary),
        )?;
        if is_bridge(d.class) {
            if let Some((sec, _)) = buses {
                attr(
                    &format!("pci_bus/{:04x}:{:02x}/cpulistaffinity", b.domain, sec),
                    &cpul,
                )?;
            }
            attr("secondary_bus_number", &buses.map_or(0, |(s, _)| s))?;
            attr("subordinate_bus_number", &buses.map_or(0, |(_, s)| s))?;
        }
        t.rlink(p.join("subsystem"), "sys/bus/pci")?;
        if let Some(drv) = &d.driver {
            let ddir = PathBuf::from(format!("sys/bus/pci/drivers/{drv}"));
            t.rlink(p.join("driver"), &ddir)?;
            t.rlink(ddir.join(b.to_string()), p)?;
            drivers.insert(drv.clone(), module_of(d));
        }
        if let Some(g) = &d.iommu_group {
            t.rlink(
                p.join("iommu_group"),
                format!("sys/kernel/iommu_groups/{g}"),
            )?;
            groups.entry(g.clone()).or_default().push(i);
        }
        if let Some(pf) = &d.physfn {
            let pfi = Bdf::parse(pf)
                .and_then(|x| topo.index.get(&x).copied())
                .ok_or_else(|| invalid(format!("physfn {pf} of {b} is not described")))?;
            t.rlink(p.join("physfn"), &topo.paths[pfi])?;
            virtfns.entry(pfi).or_default().push(i);
        }
        if let Some(drm) = &d.drm {
            write_drm(t, p, b, drm)?;
        }
    }

    for (pfi, mut vfs) in virtfns {
        vfs.sort_by_key(|&v| topo.bdfs[v]);
        let pfp = &topo.paths[pfi];
        for (n, &v) in vfs.iter().enumerate() {
            t.rlink(pfp.join(format!("virtfn{n}")), &topo.paths[v])?;
        }
        let pf = topo.devs[pfi];
        let numvfs = pf
            .sriov_numvfs
            .unwrap_or(u16::try_from(vfs.len()).expect("fewer than 65536 VFs"));
        t.attr(pfp.join("sriov_numvfs"), numvfs)?;
        t.attr(
            pfp.join("sriov_vf_device"),
            format_args!("{:04x}", topo.devs[vfs[0]].device),
        )?;
    }
    for (i, d) in topo.devs.iter().enumerate() {
        let p = &topo.paths[i];
        if let Some(total) = d.sriov_totalvfs {
            t.attr(p.join("sriov_totalvfs"), total)?;
            t.attr(p.join("sriov_drivers_autoprobe"), 1)?;
            if !t.abs(&p.join("sriov_numvfs")).exists() {
                t.attr(p.join("sriov_numvfs"), d.sriov_numvfs.unwrap_or(0))?;
            }
        }
    }

    for (domain, bus) in root_buses {
        t.attr(
            format!("sys/devices/pci{domain:04x}:{bus:02x}/pci_bus/{domain:04x}:{bus:02x}/cpulistaffinity"),
            cpulist(cpus),
        )?;
    }

    for (drv, module) in drivers {
        let ddir = PathBuf::from(format!("sys/bus/pci/drivers/{drv}"));
        for f in ["bind", "unbind", "new_id", "remove_id", "uevent"] {
            t.file(ddir.join(f), "")?;
        }
        if let Some(m) = module {
            t.rlink(ddir.join("module"), format!("sys/module/{m}"))?;
            t.rlink(format!("sys/module/{m}/drivers/pci:{drv}"), &ddir)?;
            let uevent = t.abs(Path::new(&format!("sys/module/{m}/uevent")));
            if !uevent.exists() {
                t.file(format!("sys/module/{m}/uevent"), "")?;
            }
        }
    }

    for (g, members) in groups {
        let gdir = PathBuf::from(format!("sys/kernel/iommu_groups/{g}"));
        let ty = desc
            .iommu
            .group_types
            .get(&g)
            .unwrap_or(&desc.iommu.group_type);
        t.attr(gdir.join("type"), ty)?;
        t.file(
            gdir.join("reserved_regions"),
            "0x00000000fee00000 0x00000000feefffff msi\n",
        )?;
        for i in members {
            t.rlink(
                gdir.join("devices").join(topo.bdfs[i].to_string()),
                &topo.paths[i],
            )?;
        }
    }
    Ok(())
}

fn write_drm(t: &Tree<'_>, p: &Path, b: Bdf, drm: &crate::desc::DrmDesc) -> io::Result<()> {
    let n = drm.card;
    let card = format!("card{n}");
    let cdir = p.join("drm").join(&card);
    t.attr(cdir.join("dev"), format_args!("226:{n}"))?;
    t.link(cdir.join("device"), format!("../../../{b}"))?;
    t.rlink(cdir.join("subsystem"), "sys/class/drm")?;
    t.rlink(format!("sys/class/drm/{card}"), &cdir)?;
    t.attr("sys/class/drm/version", "drm 1.1.0 20060810")?;
    t.file(format!("dev/dri/{card}"), "")?;
    t.link(
        format!("dev/dri/by-path/pci-{b}-card"),
        format!("../{card}"),
    )?;
    if drm.render {
        let r = format!("renderD{}", 128 + n);
        let rdir = p.join("drm").join(&r);
        t.attr(rdir.join("dev"), format_args!("226:{}", 128 + n))?;
        t.link(rdir.join("device"), format!("../../../{b}"))?;
        t.rlink(format!("sys/class/drm/{r}"), &rdir)?;
        t.file(format!("dev/dri/{r}"), "")?;
        t.link(format!("dev/dri/by-path/pci-{b}-render"), format!("../{r}"))?;
    }
    for c in &drm.connectors {
        let name = format!("{card}-{}", c.name);
        let kdir = cdir.join(&name);
        let on = c.status == "connected";
        t.attr(kdir.join("status"), &c.status)?;
        t.attr(
            kdir.join("enabled"),
            if on { "enabled" } else { "disabled" },
        )?;
        t.attr(kdir.join("dpms"), if on { "On" } else { "Off" })?;
        t.file(
            kdir.join("modes"),
            if on {
                "3840x2160\n2560x1440\n1920x1080\n"
            } else {
                ""
            },
        )?;
        t.link(kdir.join("device"), format!("../../{card}"))?;
        t.rlink(format!("sys/class/drm/{name}"), &kdir)?;
    }
    Ok(())
}

fn write_iommu_units(t: &Tree<'_>, desc: &HostDesc, topo: &Topology<'_>) -> io::Result<()> {
    let iommu = &desc.iommu;
    let (prefix, default_units) = match iommu.vendor.as_str() {
        "intel" => ("dmar", 1),
        "amd" => ("ivhd", 1),
        _ => ("", 0),
    };
    let units = iommu.units.unwrap_or(default_units);
    if units > 0 && prefix.is_empty() {
        return Err(invalid("iommu.units needs vendor intel or amd".to_string()));
    }
    let base = match (&iommu.unit_device, prefix) {
        (Some(dev), "ivhd") => {
            let i = Bdf::parse(dev)
                .and_then(|b| topo.index.get(&b).copied())
                .ok_or_else(|| invalid(format!("iommu.unit_device {dev} is not described")))?;
            topo.paths[i].join("iommu")
        }
        _ => PathBuf::from("sys/devices/virtual/iommu"),
    };
    // Devices covered by the IOMMU: those in groups, spread over the units.
    let grouped: Vec<usize> = (0..topo.devs.len())
        .filter(|&i| topo.devs[i].iommu_group.is_some())
        .collect();
    for u in 0..units {
        let name = format!("{prefix}{u}");
        let udir = base.join(&name);
        if prefix == "dmar" {
            t.attr(udir.join("intel-iommu/version"), "1:0")?;
            t.attr(udir.join("intel-iommu/cap"), "d2008c40660462")?;
            // ecap bit 3 = interrupt remapping support.
            let ecap = if iommu.interrupt_remapping {
                "f050da"
            } else {
                "f050d2"
            };
            t.attr(udir.join("intel-iommu/ecap"), ecap)?;
            t.attr(
                udir.join("intel-iommu/address"),
                format_args!("fed9{u:x}000"),
            )?;
        } else {
            t.attr(udir.join("amd-iommu/cap"), "0x00190040")?;
            t.attr(udir.join("amd-iommu/features"), "58f77ef22294ade")?;
        }
        t.rlink(udir.join("subsystem"), "sys/class/iommu")?;
        t.rlink(format!("sys/class/iommu/{name}"), &udir)?;
        let units_usize = usize::try_from(units).expect("small");
        for (k, &i) in grouped.iter().enumerate() {
            if k % units_usize == usize::try_from(u).expect("small") {
                t.rlink(
                    udir.join("devices").join(topo.bdfs[i].to_string()),
                    &topo.paths[i],
                )?;
            }
        }
    }
    Ok(())
}

fn write_extras(t: &Tree<'_>, desc: &HostDesc) -> io::Result<()> {
    let check = |p: &str| -> io::Result<PathBuf> {
        let path = PathBuf::from(p);
        if path
            .components()
            .any(|c| !matches!(c, Component::Normal(_)))
        {
            return Err(invalid(format!(
                "extra path {p:?} must be relative without .."
            )));
        }
        Ok(path)
    };
    for d in &desc.dirs {
        t.dir(check(&d.path)?)?;
    }
    for f in &desc.files {
        let path = check(&f.path)?;
        let bytes: Vec<u8> = match (&f.content, &f.bytes) {
            (Some(c), None) => c.clone().into_bytes(),
            (None, Some(b)) => b.clone(),
            (None, None) => Vec::new(),
            (Some(_), Some(_)) => {
                return Err(invalid(format!(
                    "file {:?} has both content and bytes",
                    f.path
                )))
            }
        };
        let abs = t.abs(&path);
        if fs::symlink_metadata(&abs).is_ok_and(|m| m.is_dir()) {
            fs::remove_dir_all(&abs)?;
        }
        t.file(&path, bytes)?;
    }
    for l in &desc.links {
        t.link(check(&l.path)?, &l.target)?;
    }
    for r in &desc.remove {
        let abs = t.abs(&check(r)?);
        t.clear(&abs)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rel_paths_match_sysfs() {
        assert_eq!(
            rel(
                Path::new("sys/bus/pci/devices"),
                Path::new("sys/devices/pci0000:00/0000:00:01.1/0000:01:00.0")
            ),
            PathBuf::from("../../../devices/pci0000:00/0000:00:01.1/0000:01:00.0")
        );
        assert_eq!(
            rel(
                Path::new("sys/devices/pci0000:00/0000:00:01.1/0000:01:00.0"),
                Path::new("sys/bus/pci/drivers/nvme")
            ),
            PathBuf::from("../../../../bus/pci/drivers/nvme")
        );
    }

    #[test]
    fn bdf_round_trip() {
        let b = Bdf::parse("0001:0a:1f.7").unwrap();
        assert_eq!(b.to_string(), "0001:0a:1f.7");
        assert!(Bdf::parse("0000:00:20.0").is_none());
        assert!(Bdf::parse("not-a-bdf").is_none());
    }
}
