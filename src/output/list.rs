//! `passthru list`: IOMMU groups and their devices, GPUs highlighted, with a short host
//! header; `--gpus` shows each GPU with its group companions. Text and JSON renderings of
//! the same data.

use std::io::{self, Write};

use serde::Serialize;

use crate::assess::{summarize_iommu, IommuStatus, IommuSummary};
use crate::model::{
    compare_group_ids, BootloaderKind, Firmware, InitramfsKind, Issue, PciAddress, PciDevice,
    Snapshot, SCHEMA_VERSION,
};

use super::style::{sanitize, Style};
use super::words::count;
use crate::plan::boot::cmdline_source;
use crate::plan::boot::kernel_cmdline::KERNEL_CMDLINE;

/// One device as `list --json` shows it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ListDevice {
    pub address: PciAddress,
    /// 24-bit class, 6 lowercase hex digits; `null` when unreadable.
    pub class: Option<String>,
    pub vendor: Option<String>,
    pub device: Option<String>,
    pub subsystem_vendor: Option<String>,
    pub subsystem_device: Option<String>,
    pub revision: Option<String>,
    /// Vendor and device name as `lspci -nn` prints them.
    pub name: String,
    pub class_name: String,
    pub driver: Option<String>,
    pub iommu_group: Option<String>,
    pub gpu: bool,
    pub bridge: bool,
    pub boot_vga: Option<bool>,
    /// What could not be read about this device.
    pub issues: Vec<Issue>,
}

impl ListDevice {
    fn from_device(d: &PciDevice) -> Self {
        ListDevice {
            address: d.address,
            class: d.class.map(|c| c.to_string()),
            vendor: d.vendor.map(|v| v.to_string()),
            device: d.device.map(|v| v.to_string()),
            subsystem_vendor: d.subsystem_vendor.map(|v| v.to_string()),
            subsystem_device: d.subsystem_device.map(|v| v.to_string()),
            revision: d.revision.map(|r| format!("{r:02x}")),
            name: d.names.name.clone(),
            class_name: d.names.class.clone(),
            driver: d.driver.clone(),
            iommu_group: d.iommu_group.clone(),
            gpu: d.is_gpu(),
            bridge: d.is_bridge(),
            boot_vga: d.boot_vga,
            issues: d.issues.clone(),
        }
    }

    /// A device a group lists but `sys/bus/pci/devices` does not have.
    fn missing(address: PciAddress) -> Self {
        ListDevice {
            address,
            class: None,
            vendor: None,
            device: None,
            subsystem_vendor: None,
            subsystem_device: None,
            revision: None,
            name: "Device".into(),
            class_name: "Class".into(),
            driver: None,
            iommu_group: None,
            gpu: false,
            bridge: false,
            boot_vga: None,
            issues: vec![Issue::new(
                format!("sys/bus/pci/devices/{address}"),
                "listed by its IOMMU group but absent from sys/bus/pci/devices",
            )],
        }
    }
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ListGroup {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub devices: Vec<ListDevice>,
    /// Mediated devices in the group, by UUID (each has an emulated group of its own).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mdevs: Vec<String>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct HostHeader {
    pub os: Option<String>,
    pub kernel: Option<String>,
    pub cpu: Option<String>,
    /// `vmx`, `svm` or null.
    pub virtualization: Option<String>,
    pub hypervisor: bool,
    pub proxmox: Option<String>,
    pub firmware: Option<Firmware>,
    pub bootloader: Option<BootloaderKind>,
    /// Where that boot loader takes the kernel command line from, the files setup edits
    /// (`etc/kernel/cmdline`, `loader/entries/*.conf`, ...).
    pub cmdline_from: Vec<String>,
    pub initramfs: Vec<InitramfsKind>,
}

/// The whole `list --json` document.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ListReport {
    pub schema_version: u32,
    pub host: HostHeader,
    pub iommu: IommuSummary,
    pub groups: Vec<ListGroup>,
    /// Devices in no IOMMU group.
    pub ungrouped: Vec<ListDevice>,
    /// Host-level things that could not be read.
    pub issues: Vec<Issue>,
}

pub fn build_list(s: &Snapshot) -> ListReport {
    let mut grouped = std::collections::HashSet::new();
    let mut groups: Vec<ListGroup> = s
        .groups
        .iter()
        .map(|g| ListGroup {
            id: g.id.clone(),
            kind: g.kind.clone(),
            devices: g
                .devices
                .iter()
                .map(|a| {
                    grouped.insert(*a);
                    s.device(a)
                        .map_or_else(|| ListDevice::missing(*a), ListDevice::from_device)
                })
                .collect(),
            mdevs: g.mdevs.clone(),
        })
        .collect();
    groups.sort_by(|a, b| compare_group_ids(&a.id, &b.id));
    let ungrouped = s
        .devices
        .iter()
        .filter(|d| !grouped.contains(&d.address))
        .map(ListDevice::from_device)
        .collect();
    ListReport {
        schema_version: SCHEMA_VERSION,
        host: build_header(s),
        iommu: summarize_iommu(s),
        groups,
        ungrouped,
        issues: s.issues.clone(),
    }
}

/// The host lines `list` and `report` open with: OS, kernel, CPU, firmware, boot loader.
pub fn build_header(s: &Snapshot) -> HostHeader {
    let sys = &s.system;
    HostHeader {
        os: sys.os.pretty_name.clone().or_else(|| sys.os.id.clone()),
        kernel: sys.kernel_release.clone(),
        cpu: sys
            .cpu
            .model_name
            .clone()
            .or_else(|| sys.cpu.vendor_id.clone()),
        virtualization: sys.cpu.virt_flag.clone(),
        hypervisor: sys.cpu.hypervisor,
        proxmox: sys.proxmox.as_ref().map(|p| {
            p.version
                .clone()
                .unwrap_or_else(|| "unknown version".into())
        }),
        firmware: s.boot.firmware,
        bootloader: s.boot.in_use,
        cmdline_from: cmdline_files(s),
        initramfs: s.boot.initramfs.iter().map(|i| i.kind).collect(),
    }
}

/// The files the boot loader in use takes the command line from, decided as setup decides
/// which file to edit (`plan::boot::cmdline_source`). Whether `etc/kernel/cmdline` exists is
/// read from the snapshot: the boot reader lists it among the in-use setup's config files
/// exactly when it is there.
fn cmdline_files(s: &Snapshot) -> Vec<String> {
    let Some(kind) = s.boot.in_use else {
        return Vec::new();
    };
    let has_kernel_cmdline = s
        .boot
        .bootloaders
        .iter()
        .any(|b| b.kind == kind && b.config_files.iter().any(|f| f == KERNEL_CMDLINE));
    cmdline_source(kind, has_kernel_cmdline)
        .files()
        .iter()
        .map(|f| f.to_string())
        .collect()
}

fn bootloader_name(k: BootloaderKind) -> &'static str {
    match k {
        BootloaderKind::Grub => "GRUB",
        BootloaderKind::GrubBls => "GRUB with BLS entries",
        BootloaderKind::ProxmoxBootTool => "proxmox-boot-tool",
        BootloaderKind::SystemdBoot => "systemd-boot",
        BootloaderKind::Kernelstub => "kernelstub",
    }
}

/// `systemd-boot (loader/entries/*.conf)`: the boot loader and where its command line is.
pub fn bootloader_label(k: BootloaderKind, from: &[String]) -> String {
    let name = bootloader_name(k);
    if from.is_empty() {
        name.to_string()
    } else {
        let files: Vec<String> = from.iter().map(|f| sanitize(f)).collect();
        format!("{name} ({})", files.join(", "))
    }
}

pub fn initramfs_name(k: InitramfsKind) -> &'static str {
    match k {
        InitramfsKind::InitramfsTools => "initramfs-tools",
        InitramfsKind::Dracut => "dracut",
        InitramfsKind::Mkinitcpio => "mkinitcpio",
        InitramfsKind::Booster => "booster",
    }
}

pub fn render_header(out: &mut dyn Write, r: &ListReport, st: Style) -> io::Result<()> {
    let h = &r.host;
    let unknown = || "unknown".to_string();
    let virt = match (h.virtualization.as_deref(), h.hypervisor) {
        (Some("vmx"), _) => " (VT-x)",
        (Some("svm"), _) => " (AMD-V)",
        (_, true) => " (no VT-x/AMD-V flag)",
        _ => " (no VT-x/AMD-V flag)",
    };
    let mut host = format!(
        "{} · kernel {} · {}{virt}",
        sanitize(&h.os.clone().unwrap_or_else(unknown)),
        sanitize(&h.kernel.clone().unwrap_or_else(unknown)),
        sanitize(&h.cpu.clone().unwrap_or_else(|| "CPU unknown".into())),
    );
    if h.hypervisor {
        host.push_str(" · running as a VM");
    }
    if let Some(p) = &h.proxmox {
        host.push_str(&format!(" · Proxmox VE {}", sanitize(p)));
    }
    writeln!(out, "{} {host}", st.bold("Host "))?;
    let firmware = match h.firmware {
        Some(Firmware::Efi) => "EFI",
        Some(Firmware::Bios) => "BIOS",
        None => "firmware unknown",
    };
    let boot = h
        .bootloader
        .map_or("boot loader not found".to_string(), |k| {
            bootloader_label(k, &h.cmdline_from)
        });
    let initramfs = if h.initramfs.is_empty() {
        "initramfs system not found".to_string()
    } else {
        h.initramfs
            .iter()
            .map(|k| initramfs_name(*k))
            .collect::<Vec<_>>()
            .join(", ")
    };
    writeln!(
        out,
        "{} {firmware} · {boot} · {initramfs}",
        st.bold("Boot ")
    )?;
    match r.iommu.status {
        IommuStatus::On => writeln!(out, "{} {}", st.bold("IOMMU"), r.iommu.summary)?,
        _ => {
            writeln!(out, "{} {}", st.bold("IOMMU"), st.warn(&r.iommu.summary))?;
            if let Some(why) = &r.iommu.reason {
                writeln!(out, "      why:  {why}")?;
            }
            if let Some(next) = &r.iommu.next_step {
                writeln!(out, "      next: {next}")?;
            }
        }
    }
    Ok(())
}

fn device_line(d: &ListDevice, st: Style) -> String {
    let class = d
        .class
        .as_deref()
        .map_or("????".to_string(), |c| c[..4].to_string());
    let ids = format!(
        "{}:{}",
        d.vendor.as_deref().unwrap_or("????"),
        d.device.as_deref().unwrap_or("????")
    );
    let driver = d.driver.as_deref().map_or("-".to_string(), sanitize);
    let mut tags = Vec::new();
    if d.gpu {
        tags.push("GPU".to_string());
    }
    if d.boot_vga == Some(true) {
        tags.push("boot VGA".to_string());
    }
    if d.bridge {
        tags.push("bridge".to_string());
    }
    let text = format!("{} [{class}] {} [{ids}]", d.address, sanitize(&d.name));
    let text = if d.gpu { st.gpu(&text) } else { text };
    let tags = if tags.is_empty() {
        String::new()
    } else {
        format!("  ({})", tags.join(", "))
    };
    format!(
        "{} {text}  {}{tags}",
        if d.gpu { "*" } else { " " },
        st.dim(&driver)
    )
}

fn render_device(out: &mut dyn Write, d: &ListDevice, st: Style) -> io::Result<()> {
    writeln!(out, "{}", device_line(d, st))?;
    for i in &d.issues {
        writeln!(
            out,
            "      {} {}: {}",
            st.warn("unknown:"),
            sanitize(&i.path),
            sanitize(&i.problem)
        )?;
    }
    Ok(())
}

fn render_issues(out: &mut dyn Write, issues: &[Issue], st: Style) -> io::Result<()> {
    if issues.is_empty() {
        return Ok(());
    }
    writeln!(out)?;
    writeln!(
        out,
        "{}",
        st.warn(&format!(
            "Could not read {}:",
            count(issues.len(), "host file", "host files")
        ))
    )?;
    for i in issues {
        writeln!(out, "  {}: {}", sanitize(&i.path), sanitize(&i.problem))?;
    }
    Ok(())
}

/// The text form of `passthru list`.
pub fn render_list(out: &mut dyn Write, r: &ListReport, st: Style) -> io::Result<()> {
    render_header(out, r, st)?;
    for g in &r.groups {
        writeln!(out)?;
        let kind = g
            .kind
            .as_deref()
            .map(|k| format!("  ({})", sanitize(k)))
            .unwrap_or_default();
        writeln!(
            out,
            "{}{kind}",
            st.bold(&format!("IOMMU group {}", sanitize(&g.id)))
        )?;
        for d in &g.devices {
            render_device(out, d, st)?;
        }
        for m in &g.mdevs {
            writeln!(out, "  mdev {}  (mediated device)", sanitize(m))?;
        }
    }
    if !r.ungrouped.is_empty() {
        writeln!(out)?;
        let title = if r.groups.is_empty() {
            "Devices (no IOMMU groups on this host)".to_string()
        } else {
            "Devices in no IOMMU group".to_string()
        };
        writeln!(out, "{}", st.bold(&title))?;
        for d in &r.ungrouped {
            render_device(out, d, st)?;
        }
    }
    if r.groups.is_empty() && r.ungrouped.is_empty() {
        writeln!(out)?;
        writeln!(out, "No PCI devices found under sys/bus/pci/devices.")?;
    }
    render_issues(out, &r.issues, st)
}

/// How a group member relates to the GPU it is listed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Relation {
    /// Another function of the same card (HDMI audio, USB-C).
    SameCard,
    /// A bridge or root port: does not stand in the way of assignment.
    Bridge,
    /// Any other endpoint: it must go to the VM with the GPU.
    Other,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Companion {
    pub relation: Relation,
    #[serde(flatten)]
    pub device: ListDevice,
}

/// A virtual function of a GPU, with who uses it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct VfEntry {
    #[serde(flatten)]
    pub device: ListDevice,
    /// The guests whose configs name this VF (`VM 100`, `libvirt desk`); filled by the
    /// command from the host's files, empty from a snapshot.
    pub users: Vec<String>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct GpuEntry {
    #[serde(flatten)]
    pub device: ListDevice,
    pub companions: Vec<Companion>,
    /// Its virtual functions (a VF is listed here, under its PF, not as a GPU of its own).
    pub vfs: Vec<VfEntry>,
    /// Proxmox mappings that pool its VFs on this node, with the guests that name them (such
    /// a guest gets whichever VF is free at its start, so it is a user of the pool, not of one
    /// VF). Filled by the command from the host's files, empty from a snapshot.
    pub pools: Vec<PoolEntry>,
}

/// A Proxmox mapping whose entries on this node are VFs of one card.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct PoolEntry {
    /// The mapping's id (`hostpciN: mapping=ID`).
    pub mapping: String,
    /// Its entries on this node: at most this many of its guests run at once.
    pub size: usize,
    /// The guests whose configs name it (`VM 101`).
    pub users: Vec<String>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct GpuReport {
    pub schema_version: u32,
    pub host: HostHeader,
    pub iommu: IommuSummary,
    pub gpus: Vec<GpuEntry>,
}

pub fn build_gpus(s: &Snapshot) -> GpuReport {
    let list = build_list(s);
    let gpus = s
        .gpus()
        .filter(|g| g.physfn.is_none())
        .map(|g| {
            let companions = g
                .iommu_group
                .as_deref()
                .and_then(|id| s.group(id))
                .map(|grp| {
                    grp.devices
                        .iter()
                        .filter(|a| **a != g.address)
                        .map(|a| {
                            let dev = s.device(a);
                            let relation = if a.same_slot(&g.address) {
                                Relation::SameCard
                            } else if dev.is_some_and(PciDevice::is_bridge) {
                                Relation::Bridge
                            } else {
                                Relation::Other
                            };
                            Companion {
                                relation,
                                device: dev.map_or_else(
                                    || ListDevice::missing(*a),
                                    ListDevice::from_device,
                                ),
                            }
                        })
                        .collect()
                })
                .unwrap_or_default();
            let vfs = s
                .gpus()
                .filter(|v| v.physfn == Some(g.address))
                .map(|v| VfEntry {
                    device: ListDevice::from_device(v),
                    users: Vec::new(),
                })
                .collect();
            GpuEntry {
                device: ListDevice::from_device(g),
                companions,
                vfs,
                pools: Vec::new(),
            }
        })
        .collect();
    GpuReport {
        schema_version: SCHEMA_VERSION,
        host: list.host,
        iommu: list.iommu,
        gpus,
    }
}

pub fn render_gpus(out: &mut dyn Write, r: &GpuReport, st: Style) -> io::Result<()> {
    let header = ListReport {
        schema_version: r.schema_version,
        host: r.host.clone(),
        iommu: r.iommu.clone(),
        groups: Vec::new(),
        ungrouped: Vec::new(),
        issues: Vec::new(),
    };
    render_header(out, &header, st)?;
    if r.gpus.is_empty() {
        writeln!(out)?;
        writeln!(out, "No GPU found (no PCI function of class 03xx).")?;
    }
    for g in &r.gpus {
        writeln!(out)?;
        render_device(out, &g.device, st)?;
        match &g.device.iommu_group {
            None => writeln!(out, "    not in an IOMMU group")?,
            Some(id) if g.companions.is_empty() => {
                writeln!(out, "    IOMMU group {}: alone", sanitize(id))?
            }
            Some(id) => {
                writeln!(out, "    IOMMU group {} also holds:", sanitize(id))?;
                for c in &g.companions {
                    let what = match c.relation {
                        Relation::SameCard => "same card",
                        Relation::Bridge => "bridge, no obstacle",
                        Relation::Other => "other device: goes with the GPU",
                    };
                    writeln!(out, "    {}  <- {what}", device_line(&c.device, st))?;
                }
            }
        }
        if !g.vfs.is_empty() {
            writeln!(
                out,
                "    {}:",
                count(g.vfs.len(), "virtual function", "virtual functions")
            )?;
            for v in &g.vfs {
                let group = v
                    .device
                    .iommu_group
                    .as_deref()
                    .map_or("no group".to_string(), |id| {
                        format!("group {}", sanitize(id))
                    });
                let users = if v.users.is_empty() {
                    "free".to_string()
                } else {
                    format!("used by {}", sanitize(&v.users.join(", ")))
                };
                writeln!(
                    out,
                    "      {}  {}  {group}  {users}",
                    v.device.address,
                    sanitize(v.device.driver.as_deref().unwrap_or("no driver"))
                )?;
            }
        }
        for p in &g.pools {
            let users = if p.users.is_empty() {
                "no VM".to_string()
            } else {
                sanitize(&p.users.join(", "))
            };
            writeln!(
                out,
                "    pool {} ({}): {users}",
                sanitize(&p.mapping),
                count(p.size, "VF", "VFs")
            )?;
        }
    }
    Ok(())
}
