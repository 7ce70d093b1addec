//! Attach and share: the GPU in a Proxmox VM (`hostpciN`), a cluster resource mapping, LXC
//! containers (`devN` or raw `lxc.*` lines), or a libvirt domain (`<hostdev>`). Pure plan
//! builders over the snapshot and the current files; every edit goes through the same
//! transaction as setup, so `rollback` undoes it.
//!
//! Moving a GPU between VM and container use removes the other side's references in the
//! same plan: a GPU is in VM mode (vfio-pci) or host/container mode, never both.

use crate::check::{check_gpu, Use, Verdict};
use crate::formats::libvirt_xml::{self, HostdevSpec, PciAddr};
use crate::formats::pve_config::{
    free_dev_index, free_hostpci_index, parse_guest_config, parse_hostpci, parse_lxc_dev,
    parse_pci_mappings, render_hostpci, render_lxc_dev, render_pci_mappings, GuestConfig, HostPci,
    LxcDev, PciMapping,
};
use crate::model::{PciAddress, PciDevice, Snapshot};

use super::setup::FileSource;
use super::{FileEdit, Plan, PlannedCommand};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttachError {
    #[error("{0}")]
    NotFound(String),
    #[error("refusing: {0}")]
    Refused(String),
    #[error("{file}: {why}; left untouched")]
    Unreadable { file: String, why: String },
    #[error(transparent)]
    Read(#[from] super::source::ReadError),
}

fn select<'a>(s: &'a Snapshot, sel: &str) -> Result<&'a PciDevice, AttachError> {
    crate::check::select_one(s, sel).map_err(|e| AttachError::NotFound(e.to_string()))
}

/// `0000:07:00` (every function of the slot), or `0000:07:00.0` for a single-function card.
fn slot_path(gpu: &PciDevice, nfunctions: usize) -> String {
    let a = gpu.address;
    if nfunctions > 1 {
        format!("{:04x}:{:02x}:{:02x}", a.domain, a.bus, a.device)
    } else {
        a.to_string()
    }
}

/// Whether a hostpci `host` entry (`07:00`, `0000:07:00.0`, `1234:f0:43`) names this slot.
fn names_slot(entry: &str, gpu: &PciAddress) -> bool {
    let e = entry.trim();
    let (head, _func) = e.split_once('.').unwrap_or((e, ""));
    let parts: Vec<&str> = head.split(':').collect();
    let (dom, bus, dev) = match parts[..] {
        [b, d] => ("0000", b, d),
        [dom, b, d] => (dom, b, d),
        _ => return false,
    };
    u32::from_str_radix(dom, 16).ok() == Some(gpu.domain)
        && u8::from_str_radix(bus, 16).ok() == Some(gpu.bus)
        && u8::from_str_radix(dev, 16).ok() == Some(gpu.device)
}

fn edit(
    src: &dyn FileSource,
    path: &str,
    after: Option<String>,
    reason: &str,
) -> Result<Option<FileEdit>, super::source::ReadError> {
    let before = src.read(path)?;
    let after = after.map(String::into_bytes);
    Ok((before != after).then(|| FileEdit {
        path: path.into(),
        before,
        after,
        new_mode: 0o640,
        reason: reason.into(),
    }))
}

fn read_config(src: &dyn FileSource, path: &str) -> Result<GuestConfig, AttachError> {
    let bytes = src
        .read(path)?
        .ok_or_else(|| AttachError::NotFound(format!("{path} does not exist")))?;
    let text = String::from_utf8(bytes).map_err(|_| AttachError::Unreadable {
        file: path.into(),
        why: "not UTF-8".into(),
    })?;
    parse_guest_config(&text).map_err(|e| AttachError::Unreadable {
        file: path.into(),
        why: e.to_string(),
    })
}

fn vm_conf(vmid: u32) -> String {
    format!("etc/pve/qemu-server/{vmid}.conf")
}
fn ct_conf(ctid: u32) -> String {
    format!("etc/pve/lxc/{ctid}.conf")
}

/// Removes every hostpciN naming this slot from a VM config; returns whether any went.
fn drop_hostpci(cfg: &mut GuestConfig, gpu: &PciAddress) -> bool {
    let mut changed = false;
    for i in 0..16 {
        let key = format!("hostpci{i}");
        if let Some(v) = cfg.main_get(&key).map(str::to_string) {
            if parse_hostpci(&v).is_ok_and(|h| {
                h.host
                    .iter()
                    .any(|e| e.split(';').any(|x| names_slot(x, gpu)))
            }) {
                changed |= cfg.main_remove(&key);
            }
        }
    }
    changed
}

#[derive(Debug, Clone, Default)]
pub struct VmAttachRequest {
    pub vmid: u32,
    pub gpu: String,
    pub primary: bool,
    pub mapping: Option<String>,
    pub rombar: Option<u8>,
    pub romfile: Option<String>,
    /// Hide the hypervisor from the guest (cpu hidden=1): old GeForce drivers (Code 43).
    pub hidden: bool,
    pub force: bool,
}

/// The GPU's check for VM use: blocked is refused; not-ready is a note.
fn vm_precheck(
    s: &Snapshot,
    gpu: &PciDevice,
    force: bool,
    plan: &mut Plan,
) -> Result<(), AttachError> {
    let g = check_gpu(s, gpu, force);
    let blocking = g.refusals(Use::Vm, &[]);
    if !blocking.is_empty() {
        return Err(AttachError::Refused(blocking.join("; ")));
    }
    if g.verdicts[&Use::Vm] != Verdict::Ready {
        plan.notes.push(format!(
            "The host is not ready for this GPU yet: run `passthru setup vm {}` (check says {:?}).",
            gpu.address,
            g.verdicts[&Use::Vm]
        ));
    }
    Ok(())
}

/// Containers that share this GPU's nodes: their configs with those references removed.
fn unshare_everywhere(
    s: &Snapshot,
    src: &dyn FileSource,
    gpu: &PciDevice,
    plan: &mut Plan,
) -> Result<(), AttachError> {
    let nodes = gpu_nodes(s, src, gpu);
    edit_each_config(
        src,
        "etc/pve/lxc",
        plan,
        "the GPU moves to a VM: this container's references to it go",
        |cfg| remove_ct_refs(cfg, &nodes),
    )
}

/// Applies `change` to every guest config in `dir` (`etc/pve/lxc`, `etc/pve/qemu-server`) and
/// plans an edit for each one it changed.
fn edit_each_config(
    src: &dyn FileSource,
    dir: &str,
    plan: &mut Plan,
    reason: &str,
    mut change: impl FnMut(&mut GuestConfig) -> bool,
) -> Result<(), AttachError> {
    for name in src.list(dir).into_iter().filter(|n| n.ends_with(".conf")) {
        let path = format!("{dir}/{name}");
        let mut cfg = read_config(src, &path)?;
        if change(&mut cfg) {
            plan.edits
                .extend(edit(src, &path, Some(cfg.render()), reason)?);
        }
    }
    Ok(())
}

pub fn plan_vm_attach(
    s: &Snapshot,
    src: &dyn FileSource,
    req: &VmAttachRequest,
) -> Result<Plan, AttachError> {
    let gpu = select(s, &req.gpu)?;
    let fns = s.card_functions(&gpu.address);
    let path = vm_conf(req.vmid);
    let mut cfg = read_config(src, &path)?;
    let mut plan = Plan {
        title: format!("Attach {} to VM {}", gpu.address, req.vmid),
        ..Plan::default()
    };
    vm_precheck(s, gpu, req.force, &mut plan)?;

    let already = (0..16).any(|i| {
        cfg.main_get(&format!("hostpci{i}"))
            .and_then(|v| parse_hostpci(v).ok())
            .is_some_and(|h| {
                h.host
                    .iter()
                    .any(|e| e.split(';').any(|x| names_slot(x, &gpu.address)))
                    || (req.mapping.is_some() && h.mapping == req.mapping)
            })
    });
    if !already {
        let n = free_hostpci_index(&cfg).ok_or_else(|| {
            AttachError::Refused(format!("VM {} uses all 16 hostpci slots", req.vmid))
        })?;
        let machine = cfg.main_get("machine").map(str::to_string);
        let ostype = cfg.main_get("ostype").unwrap_or("").to_string();
        let windows = ostype.starts_with('w');
        let q35 = machine.as_deref().is_some_and(|m| m.contains("q35"));
        let mut pcie = q35;
        if machine.is_none() && !windows {
            cfg.main_set("machine", "q35");
            pcie = true;
        } else if !q35 {
            plan.notes.push(format!("VM {} uses the i440fx machine: pcie=1 needs q35{}.", req.vmid, if windows { " (changing it on an installed Windows VM can break its boot; leave it unless you reinstall)" } else { "; set machine: q35 to get it" }));
        }
        let mut options = Vec::new();
        if pcie {
            options.push(("pcie".to_string(), "1".to_string()));
        }
        if req.primary {
            options.push(("x-vga".into(), "1".into()));
        }
        if let Some(r) = req.rombar {
            options.push(("rombar".into(), r.to_string()));
        }
        if let Some(f) = &req.romfile {
            options.push(("romfile".into(), f.clone()));
        }
        let h = HostPci {
            host: if req.mapping.is_some() {
                vec![]
            } else {
                vec![slot_path(gpu, fns.len())]
            },
            mapping: req.mapping.clone(),
            options,
        };
        cfg.main_set(&format!("hostpci{n}"), &render_hostpci(&h));
        if cfg.main_get("bios") != Some("ovmf") {
            cfg.main_set("bios", "ovmf");
            if cfg.main_get("efidisk0").is_none() {
                plan.notes.push(format!("VM {} has no efidisk0: add one (Hardware > Add > EFI Disk) so OVMF keeps its settings.", req.vmid));
            }
        }
        if req.hidden {
            let cpu = cfg.main_get("cpu").unwrap_or("host").to_string();
            if !cpu.split(',').any(|o| o == "hidden=1") {
                cfg.main_set("cpu", &format!("{cpu},hidden=1"));
            }
        }
    }
    plan.edits.extend(edit(
        src,
        &path,
        Some(cfg.render()),
        "hostpci entry for the GPU and the VM settings it needs",
    )?);
    unshare_everywhere(s, src, gpu, &mut plan)?;
    plan.notes
        .push("Proxmox's own lock for the VM is held while the file is written.".into());
    Ok(plan)
}

pub fn plan_vm_detach(
    s: &Snapshot,
    src: &dyn FileSource,
    vmid: u32,
    sel: &str,
) -> Result<Plan, AttachError> {
    let gpu = select(s, sel)?;
    let path = vm_conf(vmid);
    let mut cfg = read_config(src, &path)?;
    let mut plan = Plan {
        title: format!("Detach {} from VM {}", gpu.address, vmid),
        ..Plan::default()
    };
    if drop_hostpci(&mut cfg, &gpu.address) {
        plan.edits.extend(edit(
            src,
            &path,
            Some(cfg.render()),
            "remove the GPU's hostpci entry",
        )?);
    }
    Ok(plan)
}

/// The node name (`etc/hostname`), for mappings.
fn node_name(src: &dyn FileSource) -> Result<Option<String>, super::source::ReadError> {
    Ok(src
        .read_text("etc/hostname")?
        .map(|t| t.trim().split('.').next().unwrap_or("").to_string())
        .filter(|n| !n.is_empty()))
}

pub fn plan_mapping_create(
    s: &Snapshot,
    src: &dyn FileSource,
    name: &str,
    sel: &str,
) -> Result<Plan, AttachError> {
    let gpu = select(s, sel)?;
    let fns = s.card_functions(&gpu.address);
    let node = node_name(src)?.ok_or_else(|| {
        AttachError::NotFound(
            "etc/hostname is missing: the node name is needed for the mapping".into(),
        )
    })?;
    let path = "etc/pve/mapping/pci.cfg";
    let text = src.read_text(path)?.unwrap_or_default();
    let mut maps = parse_pci_mappings(&text).map_err(|e| AttachError::Unreadable {
        file: path.into(),
        why: e.to_string(),
    })?;
    let mut entry = vec![
        ("id".to_string(), gpu.vendor_device().unwrap_or_default()),
        (
            "iommugroup".to_string(),
            gpu.iommu_group.clone().unwrap_or_default(),
        ),
        ("node".to_string(), node.clone()),
        ("path".to_string(), slot_path(gpu, fns.len())),
    ];
    if let (Some(sv), Some(sd)) = (gpu.subsystem_vendor, gpu.subsystem_device) {
        entry.push(("subsystem-id".into(), format!("{sv}:{sd}")));
    }
    entry.retain(|(_, v)| !v.is_empty());
    let mut plan = Plan {
        title: format!(
            "Create the PCI resource mapping '{name}' for {} on node {node}",
            gpu.address
        ),
        ..Plan::default()
    };
    match maps.iter_mut().find(|m| m.id == name) {
        Some(m)
            if m.maps
                .iter()
                .any(|mp| mp.iter().any(|(k, v)| k == "node" && *v == node)) => {}
        Some(m) => m.maps.push(entry),
        None => maps.push(PciMapping {
            id: name.into(),
            maps: vec![entry],
            ..Default::default()
        }),
    }
    let after = render_pci_mappings(&maps);
    if after != text {
        plan.edits.extend(edit(
            src,
            path,
            Some(after),
            "cluster-wide PCI resource mapping (pmxcfs replicates it to every node)",
        )?);
    }
    Ok(plan)
}

/// The host device nodes of a GPU that exist under `dev/`, for containers.
pub fn gpu_nodes(s: &Snapshot, src: &dyn FileSource, gpu: &PciDevice) -> Vec<String> {
    let dev = src.list("dev");
    let mut nodes = Vec::new();
    if gpu.on_nvidia_driver() {
        let minor = s.nvidia_index(&gpu.address).unwrap_or(0);
        for n in [
            format!("nvidia{minor}"),
            "nvidiactl".into(),
            "nvidia-uvm".into(),
            "nvidia-uvm-tools".into(),
            "nvidia-modeset".into(),
        ] {
            if dev.contains(&n) {
                nodes.push(format!("/dev/{n}"));
            }
        }
        for cap in src.list("dev/nvidia-caps") {
            nodes.push(format!("/dev/nvidia-caps/{cap}"));
        }
    } else if let Some(card) = s.drm.iter().find(|c| c.device == Some(gpu.address)) {
        if let Some(r) = &card.render_node {
            nodes.push(format!("/dev/dri/{r}"));
        }
        nodes.push(format!("/dev/dri/{}", card.name));
    }
    nodes
}

/// Removes a container's references to these nodes (devN and raw lxc lines); returns
/// whether anything went.
fn remove_ct_refs(cfg: &mut GuestConfig, nodes: &[String]) -> bool {
    let mut changed = false;
    for i in 0..256u16 {
        let key = format!("dev{i}");
        if let Some(v) = cfg.main_get(&key).map(str::to_string) {
            if parse_lxc_dev(&v).is_ok_and(|d| nodes.contains(&d.path)) {
                changed |= cfg.main_remove(&key);
            }
        }
    }
    for v in cfg
        .main_get_all("lxc.mount.entry")
        .into_iter()
        .map(str::to_string)
        .collect::<Vec<_>>()
    {
        if v.split_whitespace()
            .next()
            .is_some_and(|src| nodes.iter().any(|n| n == src))
        {
            changed |= cfg.main_remove_value("lxc.mount.entry", &v);
        }
    }
    changed
}

#[derive(Debug, Clone, Default)]
pub struct LxcShareRequest {
    pub ctid: u32,
    pub gpu: String,
    /// The container's render (or video) gid when its etc/group cannot be read.
    pub gid: Option<u32>,
    /// Also /dev/kfd (ROCm compute on AMD).
    pub kfd: bool,
}

/// The gid of `group` in the container's own etc/group, when its root filesystem is
/// reachable (a ZFS subvolume under rpool/data, or a directory given by the storage).
fn container_gid(src: &dyn FileSource, cfg: &GuestConfig, group: &str) -> Option<u32> {
    let rootfs = cfg.main_get("rootfs")?;
    let volume = rootfs.split(',').next()?.split(':').nth(1)?;
    for base in ["rpool/data", "var/lib/vz/images"] {
        // An unreadable group file is the same as none: the gid falls back to the host's.
        if let Ok(Some(text)) = src.read(&format!("{base}/{volume}/etc/group")) {
            let text = String::from_utf8_lossy(&text);
            return text.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() >= 3 && f[0] == group)
                    .then(|| f[2].parse().ok())
                    .flatten()
            });
        }
    }
    None
}

fn pve_at_least(s: &Snapshot, major: u32, minor: u32) -> bool {
    let Some(v) = s.system.proxmox.as_ref().and_then(|p| p.version.as_deref()) else {
        return true; // unknown: assume a current Proxmox
    };
    let mut it = v
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|x| x.parse::<u32>().ok());
    (it.next().unwrap_or(0), it.next().unwrap_or(0)) >= (major, minor)
}

pub fn plan_lxc_share(
    s: &Snapshot,
    src: &dyn FileSource,
    req: &LxcShareRequest,
) -> Result<Plan, AttachError> {
    let gpu = select(s, &req.gpu)?;
    if gpu.driver.as_deref().is_none_or(|d| d == "vfio-pci") {
        return Err(AttachError::Refused(format!(
            "{} has no host driver bound (it is {}): run `passthru setup host {}` first",
            gpu.address,
            gpu.driver.as_deref().unwrap_or("unbound"),
            gpu.address
        )));
    }
    let path = ct_conf(req.ctid);
    let mut cfg = read_config(src, &path)?;
    let mut nodes = gpu_nodes(s, src, gpu);
    if req.kfd && src.list("dev").iter().any(|n| n == "kfd") {
        nodes.push("/dev/kfd".into());
    }
    if nodes.is_empty() {
        return Err(AttachError::Refused(format!(
            "no device nodes for {} under dev/ (is its driver loaded?)",
            gpu.address
        )));
    }
    let mut plan = Plan {
        title: format!("Share {} with container {}", gpu.address, req.ctid),
        ..Plan::default()
    };
    let nvidia = nodes.iter().any(|n| n.starts_with("/dev/nvidia"));
    if nvidia {
        if let Some(v) = &s.system.nvidia_driver_version {
            plan.notes.push(format!("The container's NVIDIA user space must be version {v}, the host driver's (install it with --no-kernel-module)."));
        }
    }
    let by_path: Vec<&String> = s
        .drm
        .iter()
        .filter(|c| c.device == Some(gpu.address))
        .flat_map(|c| c.by_path.iter())
        .collect();
    if !by_path.is_empty() {
        plan.notes.push(format!("Stable names for these nodes: {} (cardN/renderD numbers can change between boots; re-run this after hardware changes).", by_path.iter().map(|p| format!("/dev/dri/by-path/{p}")).collect::<Vec<_>>().join(", ")));
    }
    let major = |name: &str| s.system.char_major(name);
    if pve_at_least(s, 8, 1) {
        // Legacy lines for these nodes (bind mounts and the cgroup rules for their majors) are
        // migrated to devN rather than left beside it.
        let known: Vec<u32> = s.system.char_majors.iter().map(|(m, _)| *m).collect();
        migrate_legacy_lines(&mut cfg, &nodes, nvidia, &known, &major, &mut plan);
        // devN: Proxmox stats the host node at start and creates it in the container with the
        // container-side gid; no device numbers are written.
        let existing: Vec<String> = (0..256u16)
            .filter_map(|i| {
                cfg.main_get(&format!("dev{i}"))
                    .and_then(|v| parse_lxc_dev(v).ok())
                    .map(|d| d.path)
            })
            .collect();
        for node in &nodes {
            if existing.contains(node) {
                continue;
            }
            let group = if node.contains("renderD") || node == "/dev/kfd" {
                Some("render")
            } else if node.contains("/dri/card") {
                Some("video")
            } else {
                None
            };
            let gid = match group {
                Some(g) => match req.gid.or_else(|| container_gid(src, &cfg, g)) {
                    Some(gid) => Some(gid),
                    None => {
                        return Err(AttachError::Refused(format!(
                            "cannot read the container's '{g}' group (its rootfs is not reachable here): run `pct exec {} -- getent group {g}` and pass the number with --gid",
                            req.ctid
                        )))
                    }
                },
                None => None,
            };
            let n = free_dev_index(&cfg)
                .ok_or_else(|| AttachError::Refused("all dev0..dev255 are used".into()))?;
            cfg.main_set(
                &format!("dev{n}"),
                &render_lxc_dev(&LxcDev {
                    path: node.clone(),
                    gid,
                    uid: None,
                    mode: None,
                    deny_write: false,
                }),
            );
        }
    } else {
        // Proxmox before 8.1: cgroup rules with the host's device numbers (read from
        // proc/devices: nvidia-uvm's is dynamic) and bind mounts.
        let known: Vec<u32> = s.system.char_majors.iter().map(|(m, _)| *m).collect();
        for v in cfg.main_get_all("lxc.cgroup2.devices.allow") {
            if let Some(m) = rule_major(v).filter(|m| !known.is_empty() && !known.contains(m)) {
                plan.notes.push(format!("This container allows `{v}`, but major {m} is not in the host's proc/devices (hard-coded from another host?)."));
            }
        }
        let mut rules = Vec::new();
        if nvidia {
            rules.push("c 195:* rwm".to_string());
            for name in ["nvidia-uvm", "nvidia-caps"] {
                if let Some(m) = major(name) {
                    rules.push(format!("c {m}:* rwm"));
                }
            }
        } else {
            rules.push(format!("c {}:* rwm", major("drm").unwrap_or(226)));
        }
        let have: Vec<String> = cfg
            .main_get_all("lxc.cgroup2.devices.allow")
            .into_iter()
            .map(|v| v.split('#').next().unwrap_or("").trim().to_string())
            .collect();
        for r in rules {
            if !have.contains(&r) {
                cfg.main_add("lxc.cgroup2.devices.allow", &r);
            }
        }
        let mounts: Vec<String> = cfg
            .main_get_all("lxc.mount.entry")
            .into_iter()
            .map(str::to_string)
            .collect();
        for node in &nodes {
            let inside = node.trim_start_matches('/');
            let line = format!("{node} {inside} none bind,optional,create=file");
            if !mounts
                .iter()
                .any(|m| m.split_whitespace().next() == Some(node.as_str()))
            {
                cfg.main_add("lxc.mount.entry", &line);
            }
        }
    }
    plan.edits.extend(edit(
        src,
        &path,
        Some(cfg.render()),
        "device nodes for the GPU",
    )?);
    // Moving from VM use: the VMs' hostpci entries for this GPU go in the same transaction.
    edit_each_config(
        src,
        "etc/pve/qemu-server",
        &mut plan,
        "the GPU moves to a container: this VM's hostpci entry for it goes",
        |cfg| drop_hostpci(cfg, &gpu.address),
    )?;
    Ok(plan)
}

/// The major of a cgroup rule `c 195:* rwm # comment`.
fn rule_major(rule: &str) -> Option<u32> {
    let body = rule.split('#').next()?.trim();
    let spec = body.strip_prefix("c ")?.split_whitespace().next()?;
    spec.split(':').next()?.parse().ok()
}

/// Replaces raw `lxc.mount.entry` lines for these nodes, and the cgroup rules for their
/// majors that nothing else needs any more, by the devN entries the caller adds.
fn migrate_legacy_lines(
    cfg: &mut GuestConfig,
    nodes: &[String],
    nvidia: bool,
    known: &[u32],
    major: &dyn Fn(&str) -> Option<u32>,
    plan: &mut Plan,
) {
    let mut removed = 0;
    for v in cfg
        .main_get_all("lxc.mount.entry")
        .into_iter()
        .map(str::to_string)
        .collect::<Vec<_>>()
    {
        if v.split_whitespace()
            .next()
            .is_some_and(|src| nodes.iter().any(|n| n == src))
            && cfg.main_remove_value("lxc.mount.entry", &v)
        {
            removed += 1;
        }
    }
    if removed == 0 {
        return;
    }
    let majors: Vec<u32> = if nvidia {
        [Some(195), major("nvidia-uvm"), major("nvidia-caps")]
            .into_iter()
            .flatten()
            .collect()
    } else {
        vec![major("drm").unwrap_or(226)]
    };
    let prefix = if nvidia { "/dev/nvidia" } else { "/dev/dri" };
    let still_mounted = cfg
        .main_get_all("lxc.mount.entry")
        .iter()
        .any(|v| v.starts_with(prefix));
    if !still_mounted {
        for v in cfg
            .main_get_all("lxc.cgroup2.devices.allow")
            .into_iter()
            .map(str::to_string)
            .collect::<Vec<_>>()
        {
            // A rule for a major no device of this host has (511 copied from a guide written
            // on another host) belongs to the old way too: it goes, and the note says so.
            let stale = rule_major(&v)
                .is_some_and(|m| majors.contains(&m) || (!known.is_empty() && !known.contains(&m)));
            if stale && cfg.main_remove_value("lxc.cgroup2.devices.allow", &v) {
                removed += 1;
            }
        }
    }
    plan.notes.push(format!(
        "Migrated {removed} legacy lxc.* line(s) for these nodes to devN entries (Proxmox 8.1+)."
    ));
}

pub fn plan_lxc_unshare(
    s: &Snapshot,
    src: &dyn FileSource,
    ctid: u32,
    sel: &str,
) -> Result<Plan, AttachError> {
    let gpu = select(s, sel)?;
    let path = ct_conf(ctid);
    let mut cfg = read_config(src, &path)?;
    let mut nodes = gpu_nodes(s, src, gpu);
    nodes.push("/dev/kfd".into());
    let mut plan = Plan {
        title: format!("Stop sharing {} with container {}", gpu.address, ctid),
        ..Plan::default()
    };
    if remove_ct_refs(&mut cfg, &nodes) {
        plan.edits.extend(edit(
            src,
            &path,
            Some(cfg.render()),
            "remove the GPU's device nodes",
        )?);
    }
    Ok(plan)
}

#[derive(Debug, Clone, Default)]
pub struct LibvirtAttachRequest {
    pub domain: String,
    pub gpu: String,
    pub romfile: Option<String>,
    pub hidden: bool,
    pub force: bool,
}

fn domain_file(domain: &str) -> Result<String, AttachError> {
    if domain.is_empty() || domain.contains('/') || domain.starts_with('.') {
        return Err(AttachError::NotFound(format!(
            "'{domain}' is not a domain name"
        )));
    }
    Ok(format!("etc/libvirt/qemu/{domain}.xml"))
}

/// The domain's XML file and its text.
fn read_domain(src: &dyn FileSource, domain: &str) -> Result<(String, String), AttachError> {
    let path = domain_file(domain)?;
    let text = src
        .read_text(&path)?
        .ok_or_else(|| AttachError::NotFound(format!("{path} does not exist")))?;
    Ok((path, text))
}

/// Adds the edit of a domain file and the `virsh define` a running libvirtd needs to see it.
fn push_domain_edit(
    plan: &mut Plan,
    src: &dyn FileSource,
    path: &str,
    xml: String,
    reason: &str,
) -> Result<(), AttachError> {
    plan.edits.extend(edit(src, path, Some(xml), reason)?);
    plan.commands.push(PlannedCommand {
        argv: vec!["virsh".into(), "define".into(), format!("/{path}")],
        why: "a running libvirtd ignores direct edits: define the domain from the file".into(),
    });
    Ok(())
}

fn pci(a: &PciAddress) -> PciAddr {
    PciAddr {
        domain: a.domain as u16,
        bus: a.bus,
        slot: a.device,
        function: a.function,
    }
}

pub fn plan_libvirt_attach(
    s: &Snapshot,
    src: &dyn FileSource,
    req: &LibvirtAttachRequest,
) -> Result<Plan, AttachError> {
    let gpu = select(s, &req.gpu)?;
    let fns = s.card_functions(&gpu.address);
    let (path, text) = read_domain(src, &req.domain)?;
    let mut plan = Plan {
        title: format!("Attach {} to libvirt domain {}", gpu.address, req.domain),
        ..Plan::default()
    };
    vm_precheck(s, gpu, req.force, &mut plan)?;
    let bad = |e: libvirt_xml::XmlEditError| AttachError::Unreadable {
        file: path.clone(),
        why: e.to_string(),
    };
    let present = libvirt_xml::hostdev_sources(&text);
    let mut xml = text.clone();
    if !fns.iter().all(|f| present.contains(&pci(&f.address))) {
        let used = libvirt_xml::used_guest_slots(&text, 0);
        let slot = (0x10..0x1f)
            .find(|s| !used.contains(s))
            .ok_or_else(|| AttachError::Refused("no free guest slot on bus 0".into()))?;
        let specs: Vec<HostdevSpec> = fns
            .iter()
            .map(|f| HostdevSpec {
                source: pci(&f.address),
                guest: Some(PciAddr {
                    domain: 0,
                    bus: 0,
                    slot,
                    function: f.address.function,
                }),
                multifunction: fns.len() > 1 && f.address.function == 0,
                rom_file: if f.address == gpu.address {
                    req.romfile.clone()
                } else {
                    None
                },
            })
            .collect();
        xml = libvirt_xml::add_hostdevs(&xml, &specs).map_err(bad)?;
    }
    if req.hidden {
        let unreadable = |e: libvirt_xml::XmlEditError| AttachError::Unreadable {
            file: path.clone(),
            why: e.to_string(),
        };
        xml = match libvirt_xml::set_hidden_features(&xml, Some("passthru")) {
            Ok(x) => x,
            // <hyperv mode='passthrough'> takes no vendor_id: hide KVM only.
            Err(libvirt_xml::XmlEditError::Conflict { .. }) => {
                plan.notes.push("The domain passes Hyper-V through as a whole (mode='passthrough'), which takes no vendor_id: only KVM is hidden.".into());
                libvirt_xml::set_hidden_features(&xml, None).map_err(unreadable)?
            }
            Err(e) => return Err(unreadable(e)),
        };
    }
    if xml != text {
        push_domain_edit(
            &mut plan,
            src,
            &path,
            xml,
            "one <hostdev> per function of the card",
        )?;
    }
    Ok(plan)
}

pub fn plan_libvirt_detach(
    s: &Snapshot,
    src: &dyn FileSource,
    domain: &str,
    sel: &str,
) -> Result<Plan, AttachError> {
    let gpu = select(s, sel)?;
    let (path, text) = read_domain(src, domain)?;
    let sources: Vec<PciAddr> = s
        .card_functions(&gpu.address)
        .iter()
        .map(|f| pci(&f.address))
        .collect();
    let xml =
        libvirt_xml::remove_hostdevs(&text, &sources).map_err(|e| AttachError::Unreadable {
            file: path.clone(),
            why: e.to_string(),
        })?;
    let mut plan = Plan {
        title: format!("Detach {} from libvirt domain {domain}", gpu.address),
        ..Plan::default()
    };
    if xml != text {
        push_domain_edit(
            &mut plan,
            src,
            &path,
            xml,
            "remove the card's <hostdev> elements",
        )?;
    }
    Ok(plan)
}

/// `passthru docker GPU`: the compose and CLI snippets (printed, nothing written).
pub fn docker_snippet(
    s: &Snapshot,
    src: &dyn FileSource,
    sel: &str,
) -> Result<String, AttachError> {
    let gpu = select(s, sel)?;
    let nodes = gpu_nodes(s, src, gpu);
    let mut out = String::new();
    if gpu.on_nvidia_driver() {
        let index = s.nvidia_index(&gpu.address).unwrap_or(0);
        out.push_str("# NVIDIA: needs nvidia-container-toolkit on the host.\n");
        out.push_str(&format!("docker run --gpus '\"device={index}\"' ...\n\n"));
        out.push_str(&format!("services:\n  app:\n    deploy:\n      resources:\n        reservations:\n          devices:\n            - driver: nvidia\n              device_ids: [\"{index}\"]\n              capabilities: [gpu, video]\n"));
        if let Some(v) = &s.system.nvidia_driver_version {
            out.push_str(&format!(
                "# host driver {v}: the toolkit mounts the matching user-space libraries\n"
            ));
        }
    } else {
        let render: Vec<&String> = nodes.iter().filter(|n| n.contains("renderD")).collect();
        if render.is_empty() {
            return Err(AttachError::Refused(format!(
                "{} has no render node: is its driver loaded?",
                gpu.address
            )));
        }
        let devs: Vec<String> = render.iter().map(|n| format!("--device {n}:{n}")).collect();
        out.push_str(&format!(
            "docker run {} --group-add render ...\n\n",
            devs.join(" ")
        ));
        out.push_str("services:\n  app:\n    devices:\n");
        for n in render {
            out.push_str(&format!("      - {n}:{n}\n"));
        }
        out.push_str("    group_add:\n      - render\n");
    }
    Ok(out)
}
