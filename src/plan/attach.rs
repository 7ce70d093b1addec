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
    check_config_id, check_rom_file_name, free_dev_index, free_hostpci_index, parse_guest_config,
    parse_hostpci, parse_lxc_dev, parse_pci_mapping_file, render_hostpci, render_lxc_dev,
    GuestConfig, HostPci, LxcDev, PciMappingFile, MAX_HOSTPCI,
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
    /// A value from the command line that Proxmox would reject, or that would become more
    /// than the one option it is meant to be.
    #[error("{option} {value:?}: {why}; nothing was changed")]
    InvalidValue {
        option: String,
        value: String,
        why: String,
    },
    /// The guest config has a `lock:` line: a Proxmox task (backup, migration, snapshot...)
    /// owns the guest, and Proxmox refuses config changes until it ends.
    #[error("{file} line {line}: `lock: {lock}`: the guest is locked by a Proxmox task and Proxmox refuses changes until it ends (if no task is running, `{unlock}` clears a stale lock); nothing was changed")]
    Locked {
        file: String,
        line: usize,
        lock: String,
        unlock: String,
    },
}

fn invalid(option: &str, value: &str, why: impl Into<String>) -> AttachError {
    AttachError::InvalidValue {
        option: option.into(),
        value: value.into(),
        why: why.into(),
    }
}

/// Refuses a guest config that has a `lock:` line in its main section, as Proxmox's
/// `check_lock` (pve-guest-common `src/PVE/AbstractConfig.pm`) does for every config change.
fn check_unlocked(cfg: &GuestConfig, path: &str, unlock: &str) -> Result<(), AttachError> {
    match (cfg.main_get("lock"), cfg.main_line("lock")) {
        (Some(lock), Some(line)) => Err(AttachError::Locked {
            file: path.into(),
            line,
            lock: lock.into(),
            unlock: unlock.into(),
        }),
        _ => Ok(()),
    }
}

/// The guest id of `etc/pve/qemu-server/100.conf` or `etc/pve/lxc/100.conf`, for messages.
fn unlock_command(path: &str) -> String {
    let id = path
        .rsplit('/')
        .next()
        .and_then(|n| n.strip_suffix(".conf"))
        .unwrap_or("ID");
    if path.starts_with("etc/pve/lxc/") {
        format!("pct unlock {id}")
    } else {
        format!("qm unlock {id}")
    }
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

/// Which functions of this slot a hostpci `host` id (`07:00`, `0000:07:00.0`, `1234:f0:43`)
/// names: `None` when it names another slot, `Some(None)` for every function (no `.F`),
/// `Some(Some(f))` for one.
fn slot_function(entry: &str, gpu: &PciAddress) -> Option<Option<u8>> {
    let e = entry.trim();
    let (head, func) = match e.split_once('.') {
        Some((h, f)) => (h, Some(u8::from_str_radix(f, 16).ok()?)),
        None => (e, None),
    };
    let parts: Vec<&str> = head.split(':').collect();
    let (dom, bus, dev) = match parts[..] {
        [b, d] => ("0000", b, d),
        [dom, b, d] => (dom, b, d),
        _ => return None,
    };
    let same = u32::from_str_radix(dom, 16).ok() == Some(gpu.domain)
        && u8::from_str_radix(bus, 16).ok() == Some(gpu.bus)
        && u8::from_str_radix(dev, 16).ok() == Some(gpu.device);
    same.then_some(func)
}

/// Whether a hostpci `host` id names this slot (any of its functions).
fn names_slot(entry: &str, gpu: &PciAddress) -> bool {
    slot_function(entry, gpu).is_some()
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

/// Whether entries must name `a`'s function exactly: a VF, or a PF whose VFs share its slot
/// (an iGPU's), where the slot is several guests' devices.
fn exact_match(s: &Snapshot, a: &PciAddress) -> bool {
    s.device(a).is_some_and(|d| d.physfn.is_some())
        || s.vfs_of(a).iter().any(|v| v.address.same_slot(a))
}

/// Removes every hostpciN naming this slot from a VM config, and every `mapping=` entry for
/// one of `mappings` (the mappings that stand for this device on this node); returns the
/// entries that went. For a VF (`exact`), only entries naming that function: its PF and
/// sibling VFs share the slot.
fn drop_hostpci(
    cfg: &mut GuestConfig,
    gpu: &PciAddress,
    exact: bool,
    mappings: &[String],
) -> Vec<(String, HostPci)> {
    let mut removed = Vec::new();
    let names = |x: &str| {
        if exact {
            super::attach_shared::names_function(x, gpu)
        } else {
            names_slot(x, gpu)
        }
    };
    for i in 0..16 {
        let key = format!("hostpci{i}");
        if let Some(v) = cfg.main_get(&key).map(str::to_string) {
            let Ok(h) = parse_hostpci(&v) else {
                continue;
            };
            let mapped = h.mapping.as_ref().is_some_and(|m| mappings.contains(m));
            if (mapped || h.host.iter().any(|e| e.split(';').any(names))) && cfg.main_remove(&key) {
                removed.push((key, h));
            }
        }
    }
    removed
}

/// The mappings that stand for `gpu` on this node: every entry of theirs for the node names
/// one of the card's functions or, with `with_vfs`, one of its VFs (a pool). Their VM entries
/// go with the card's; the mappings stay (other VMs may name them). None without a node name.
fn mappings_of(
    s: &Snapshot,
    src: &dyn FileSource,
    gpu: &PciAddress,
    with_vfs: bool,
) -> Result<Vec<String>, AttachError> {
    let Some(node) = node_name(src)? else {
        return Ok(Vec::new());
    };
    let file = read_mapping_file(src)?;
    let mut set: Vec<PciAddress> = s.card_functions(gpu).iter().map(|d| d.address).collect();
    if with_vfs {
        set.extend(s.vfs_of(gpu).iter().map(|d| d.address));
    }
    Ok(super::vf_pool::mappings_naming_only(&file, &node, &set))
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
    /// `--vf auto|N`: a virtual function of the card instead of the card.
    pub vf: Option<super::attach_shared::VfChoice>,
    /// `--mdev TYPE`: a mediated device of the card (or, NVIDIA vGPU 17+, of a VF).
    pub mdev: Option<String>,
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
    plan.warnings.extend(g.forced(Use::Vm));
    if g.verdicts[&Use::Vm] != Verdict::Ready {
        plan.notes.push(format!(
            "The host is not ready for this GPU yet ({}): {} (check says {:?}).",
            g.state.state.describe(),
            g.state.next_step,
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
            check_unlocked(&cfg, &path, &unlock_command(&path))?;
            plan.edits
                .extend(edit(src, &path, Some(cfg.render()), reason)?);
        }
    }
    Ok(())
}

/// `--mapping`, `--rombar`, `--romfile` as Proxmox's `$hostpci_fmt` (qemu-server
/// `src/PVE/QemuServer/PCI.pm`) accepts them, each exactly one option value.
fn check_vm_request(src: &dyn FileSource, req: &VmAttachRequest) -> Result<(), AttachError> {
    if let Some(r) = req.rombar {
        if r > 1 {
            return Err(invalid(
                "--rombar",
                &r.to_string(),
                "rombar is a boolean in Proxmox's hostpci format: 0 (hide the ROM) or 1",
            ));
        }
    }
    if let Some(f) = &req.romfile {
        check_rom_file_name(f).map_err(|why| invalid("--romfile", f, why))?;
        let rel = format!("{ROM_DIR}/{f}");
        let present = src.list(ROM_DIR).iter().any(|n| n == f) && !src.is_dir(&rel);
        if !present {
            return Err(invalid(
                "--romfile",
                f,
                format!("no such file in {ROM_DIR}: Proxmox gives QEMU /{rel}, so the ROM must be there"),
            ));
        }
    }
    if let Some(m) = &req.mapping {
        check_config_id(m).map_err(|why| invalid("--mapping", m, why))?;
        if req.vf.is_some() {
            // A pool of VFs: the attach makes the mapping when it is not there yet.
            return Ok(());
        }
        let file = read_mapping_file(src)?;
        if !file.mappings().iter().any(|x| x.id == *m) {
            let known: Vec<&str> = file.mappings().iter().map(|x| x.id.as_str()).collect();
            let have = if known.is_empty() {
                "it has none".to_string()
            } else {
                format!("it has {}", known.join(", "))
            };
            return Err(invalid(
                "--mapping",
                m,
                format!("no such mapping in {MAPPING_FILE} ({have}); create it with `passthru mapping create {m} GPU`"),
            ));
        }
    }
    Ok(())
}

/// Where Proxmox looks for `romfile=` (it prefixes the name with `/usr/share/kvm/`).
const ROM_DIR: &str = "usr/share/kvm";
pub const MAPPING_FILE: &str = "etc/pve/mapping/pci.cfg";

/// The cluster mapping file, empty when absent.
pub fn read_mapping_file(src: &dyn FileSource) -> Result<PciMappingFile, AttachError> {
    let text = src.read_text(MAPPING_FILE)?.unwrap_or_default();
    parse_pci_mapping_file(&text).map_err(|e| AttachError::Unreadable {
        file: MAPPING_FILE.into(),
        why: e.to_string(),
    })
}

/// VM settings passthru changed at attach, with the values they had before, so that detach
/// can put them back: `var/lib/passthru/proxmox/qemu-server/VMID.settings`, one `key=before`
/// line each (`bios=` when there was no bios line). The guest config itself has no place for
/// it that Proxmox keeps and the user does not see (`#` lines are the VM's description).
fn settings_record(vmid: u32) -> String {
    format!(
        "{}/proxmox/qemu-server/{vmid}.settings",
        crate::apply::STATE_DIR
    )
}

/// What passthru sets each recorded key to.
fn recorded_value(key: &str) -> Option<&'static str> {
    match key {
        "machine" => Some("q35"),
        "bios" => Some("ovmf"),
        _ => None,
    }
}

/// `(key, value before)` pairs of a settings record; `None`: the key was absent.
fn read_settings_record(
    src: &dyn FileSource,
    path: &str,
) -> Result<Vec<(String, Option<String>)>, AttachError> {
    let Some(text) = src.read_text(path)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (k, v) = line.split_once('=').unwrap_or((line, ""));
        if recorded_value(k).is_none() {
            return Err(AttachError::Unreadable {
                file: path.into(),
                why: format!("line {}: unknown setting {k:?}", i + 1),
            });
        }
        out.push((k.to_string(), (!v.is_empty()).then(|| v.to_string())));
    }
    Ok(out)
}

fn render_settings_record(record: &[(String, Option<String>)]) -> Option<String> {
    if record.is_empty() {
        return None;
    }
    let mut out = String::from(
        "# VM settings `passthru vm attach` changed, with their values before (empty: no line).\n# `passthru vm detach` puts them back when the last hostpci entry goes.\n",
    );
    for (k, v) in record {
        out.push_str(&format!("{k}={}\n", v.as_deref().unwrap_or("")));
    }
    Some(out)
}

/// Sets `key` to the value passthru uses and records what it was (the first record wins: a
/// second attach must not record passthru's own value as "before").
fn set_recorded(cfg: &mut GuestConfig, record: &mut Vec<(String, Option<String>)>, key: &str) {
    let Some(value) = recorded_value(key) else {
        return;
    };
    if !record.iter().any(|(k, _)| k == key) {
        record.push((key.to_string(), cfg.main_get(key).map(str::to_string)));
    }
    cfg.main_set(key, value);
}

/// The VM's machine and firmware for passthrough: q35 (for `pcie=1`) where that is safe, OVMF
/// where that is safe, a note for every change that can stop an installed guest from booting
/// and for every change left to the user. Returns whether the hostpci entry gets `pcie=1`.
fn plan_vm_settings(
    cfg: &mut GuestConfig,
    vmid: u32,
    record: &mut Vec<(String, Option<String>)>,
    notes: &mut Vec<String>,
) -> bool {
    let machine = cfg.main_get("machine").map(str::to_string);
    let ostype = cfg.main_get("ostype").unwrap_or("").to_string();
    // Proxmox's Windows ostypes: wxp w2k w2k3 w2k8 wvista win7 win8 win10 win11.
    let windows = ostype.starts_with('w');
    let arch = cfg.main_get("arch").unwrap_or("x86_64").to_string();
    let q35 = machine.as_deref().is_some_and(|m| m.contains("q35"));
    let mut pcie = q35;
    if arch != "x86_64" {
        // qemu-server Machine.pm: an aarch64 VM is the `virt` machine; q35 is x86 only, and
        // pcie=1 needs q35 (PCI.pm: "q35 machine model is not enabled").
        notes.push(format!("VM {vmid} is arch {arch} (machine virt): q35 and pcie=1 are x86-only, so the machine is left as it is and the entry has no pcie=1. Passing an x86 host's GPU to an emulated {arch} guest needs KVM for that architecture; it will not start on most hosts."));
        pcie = false;
    } else if machine.is_none() && !windows {
        set_recorded(cfg, record, "machine");
        pcie = true;
        notes.push(format!("VM {vmid} had no machine line (i440fx): it is switched to q35 for pcie=1; `passthru vm detach` switches it back."));
    } else if !q35 {
        notes.push(format!("VM {vmid} uses the i440fx machine: pcie=1 needs q35{}.", if windows { " (changing it on an installed Windows VM can break its boot; leave it unless you reinstall)" } else { "; set machine: q35 to get it" }));
    }
    let bios = cfg.main_get("bios").map(str::to_string);
    if bios.as_deref() != Some("ovmf") {
        let was = bios
            .as_deref()
            .map_or(String::new(), |b| format!(" (bios: {b})"));
        if windows {
            notes.push(format!("VM {vmid} is Windows (ostype {ostype}) on SeaBIOS{was}: its firmware is left as it is, because an installed Windows on BIOS/MBR does not boot under OVMF. To switch, convert its disk first (mbr2gpt in Windows), then set bios: ovmf and add an efidisk0."));
        } else {
            set_recorded(cfg, record, "bios");
            notes.push(format!("VM {vmid} boots with SeaBIOS{was}: it is switched to OVMF (bios: ovmf), the UEFI firmware GPU passthrough works best with. A guest installed for BIOS/MBR boot will no longer boot under OVMF: if this one was, set `bios: seabios` again or run `passthru vm detach`, which switches it back."));
            if cfg.main_get("efidisk0").is_none() {
                notes.push(format!("VM {vmid} has no efidisk0: add one (Hardware > Add > EFI Disk) so OVMF keeps its settings."));
            }
        }
    }
    pcie
}

/// How the VM's current entries cover the card.
enum Coverage {
    /// Every function is attached (or the requested mapping is).
    Whole,
    /// Some functions are, through these `hostpciN` indexes (the first is fixed in place).
    Partial(Vec<u8>),
    None,
}

fn card_coverage(
    cfg: &GuestConfig,
    gpu: &PciAddress,
    fns: &[&PciDevice],
    mapping: Option<&str>,
) -> Coverage {
    let mut covered: Vec<u8> = Vec::new();
    let mut all = false;
    let mut indexes = Vec::new();
    for i in 0..MAX_HOSTPCI {
        let Some(h) = cfg
            .main_get(&format!("hostpci{i}"))
            .and_then(|v| parse_hostpci(v).ok())
        else {
            continue;
        };
        if mapping.is_some() && h.mapping.as_deref() == mapping {
            return Coverage::Whole;
        }
        let mut names = false;
        for f in h.host.iter().filter_map(|e| slot_function(e, gpu)) {
            names = true;
            match f {
                None => all = true,
                Some(f) => covered.push(f),
            }
        }
        if names {
            indexes.push(i);
        }
    }
    if all || (!indexes.is_empty() && fns.iter().all(|f| covered.contains(&f.address.function))) {
        Coverage::Whole
    } else if indexes.is_empty() {
        Coverage::None
    } else {
        Coverage::Partial(indexes)
    }
}

/// Takes this card's ids out of the entries `indexes`; an entry left with no id goes.
fn strip_card_ids(cfg: &mut GuestConfig, gpu: &PciAddress, indexes: &[u8]) {
    for &i in indexes {
        let key = format!("hostpci{i}");
        let Some(mut h) = cfg.main_get(&key).and_then(|v| parse_hostpci(v).ok()) else {
            continue;
        };
        h.host.retain(|e| !names_slot(e, gpu));
        if h.host.is_empty() && h.mapping.is_none() {
            cfg.main_remove(&key);
        } else {
            cfg.main_set(&key, &render_hostpci(&h));
        }
    }
}

/// Sets `key=value` in an option list, in place when present.
fn set_option(options: &mut Vec<(String, String)>, key: &str, value: String) {
    match options.iter_mut().find(|(k, _)| k == key) {
        Some(o) => o.1 = value,
        None => options.push((key.to_string(), value)),
    }
}

pub fn plan_vm_attach(
    s: &Snapshot,
    src: &dyn FileSource,
    req: &VmAttachRequest,
) -> Result<Plan, AttachError> {
    check_vm_request(src, req)?;
    let gpu = select(s, &req.gpu)?;
    if req.vf.is_some() || req.mdev.is_some() {
        return plan_vm_attach_shared(s, src, req, gpu);
    }
    let fns = s.card_functions(&gpu.address);
    let path = vm_conf(req.vmid);
    let mut cfg = read_config(src, &path)?;
    check_unlocked(&cfg, &path, &unlock_command(&path))?;
    let mut plan = Plan {
        title: format!("Attach {} to VM {}", gpu.address, req.vmid),
        ..Plan::default()
    };
    vm_precheck(s, gpu, req.force, &mut plan)?;

    let record_path = settings_record(req.vmid);
    let before_record = read_settings_record(src, &record_path)?;
    let mut record = before_record.clone();
    let coverage = card_coverage(&cfg, &gpu.address, &fns, req.mapping.as_deref());
    if !matches!(coverage, Coverage::Whole) {
        // Where the entry goes: the first entry that names part of the card is fixed in
        // place (with the other entries' ids for this card taken out), else the first free N.
        let (n, mut options) = match &coverage {
            Coverage::Partial(indexes) if req.mapping.is_none() => {
                let first = indexes[0];
                let key = format!("hostpci{first}");
                let old = cfg.main_get(&key).and_then(|v| parse_hostpci(v).ok());
                strip_card_ids(&mut cfg, &gpu.address, &indexes[1..]);
                plan.notes.push(format!("hostpci{first} attached only part of the card ({}): it now names every function.", old.as_ref().map(render_hostpci).unwrap_or_default()));
                (first, old.map(|h| (h.host, h.options)).unwrap_or_default())
            }
            _ => {
                // A mapping replaces the card's address ids (host and mapping exclude each
                // other in one entry).
                if let Coverage::Partial(indexes) = &coverage {
                    strip_card_ids(&mut cfg, &gpu.address, indexes);
                }
                let n = free_hostpci_index(&cfg).ok_or_else(|| {
                    AttachError::Refused(format!("VM {} uses all 16 hostpci slots", req.vmid))
                })?;
                (n, (Vec::new(), Vec::new()))
            }
        };
        let other_hosts: Vec<String> = std::mem::take(&mut options.0)
            .into_iter()
            .filter(|e| !names_slot(e, &gpu.address))
            .collect();
        let mut options = options.1;
        let pcie = plan_vm_settings(&mut cfg, req.vmid, &mut record, &mut plan.notes);
        if pcie {
            set_option(&mut options, "pcie", "1".into());
        }
        if req.primary {
            set_option(&mut options, "x-vga", "1".into());
        }
        if let Some(r) = req.rombar {
            set_option(&mut options, "rombar", r.to_string());
        }
        if let Some(f) = &req.romfile {
            set_option(&mut options, "romfile", f.clone());
        }
        let mut host = other_hosts;
        if req.mapping.is_none() {
            host.insert(0, slot_path(gpu, fns.len()));
        }
        let h = HostPci {
            host,
            mapping: req.mapping.clone(),
            options,
        };
        // What passthru writes, its own parser must read back as the same entry (the user's
        // values were checked above; this guards the combination).
        let value = render_hostpci(&h);
        if parse_hostpci(&value).as_ref() != Ok(&h) {
            return Err(AttachError::Refused(format!(
                "hostpci{n}: {value:?} would not read back as one entry"
            )));
        }
        cfg.main_set(&format!("hostpci{n}"), &value);
        if req.mapping.is_none() {
            plan.prepared.push(crate::plan::Prepared::HostPci {
                config: path.clone(),
                key: format!("hostpci{n}"),
                host: slot_path(gpu, fns.len()),
                functions: fns
                    .iter()
                    .map(|d| crate::plan::FunctionIdentity::of(d))
                    .collect(),
            });
        }
        if req.hidden {
            let cpu = cfg.main_get("cpu").unwrap_or("host").to_string();
            if !cpu.split(',').any(|o| o == "hidden=1") {
                cfg.main_set("cpu", &format!("{cpu},hidden=1"));
            }
        }
    }
    push_vm_edits(
        src,
        &mut plan,
        (
            &path,
            &cfg,
            "hostpci entry for the GPU and the VM settings it needs",
        ),
        (&record_path, &before_record, &record),
    )?;
    unshare_everywhere(s, src, gpu, &mut plan)?;
    plan.notes
        .push("Proxmox's own lock for the VM is held while the file is written.".into());
    Ok(plan)
}

/// `--vf` / `--mdev`: one hostpci entry naming one function exactly.
fn plan_vm_attach_shared(
    s: &Snapshot,
    src: &dyn FileSource,
    req: &VmAttachRequest,
    gpu: &PciDevice,
) -> Result<Plan, AttachError> {
    use super::attach_shared as sh;
    if let Some(name) = &req.mapping {
        return plan_vm_attach_pool(s, src, req, gpu, name);
    }
    let path = vm_conf(req.vmid);
    let cfg = read_config(src, &path)?;
    check_unlocked(&cfg, &path, &unlock_command(&path))?;
    let entries = sh::vm_entries(src);
    let vmid = req.vmid;
    // A VF this VM already has counts as taken only for `auto` picking another; for mdev
    // several instances may share a parent, so the parent is never "taken" by mdev entries.
    let taken = |a: &PciAddress| {
        let users: Vec<String> = sh::vms_using(&entries, a)
            .into_iter()
            .map(|v| format!("VM {v}"))
            .collect();
        (!users.is_empty()).then(|| users.join(", "))
    };
    let none_taken = |_: &PciAddress| None;
    let classic_mdev = req.mdev.is_some()
        && s.vfs_of(&sh::pf_for(s, gpu).address)
            .iter()
            .all(|v| v.nvidia_vgpu.is_none());
    let taken: &dyn Fn(&PciAddress) -> Option<String> =
        if classic_mdev { &none_taken } else { &taken };
    let t = sh::resolve_shared(s, gpu, req.vf, req.mdev.as_deref(), taken, req.force)?;
    let mut plan = Plan {
        title: match &t.mdev {
            Some(m) => format!("Attach a {m} instance of {} to VM {vmid}", t.device),
            None => format!("Attach VF {} to VM {vmid}", t.device),
        },
        ..Plan::default()
    };
    plan.notes.extend(t.notes.clone());
    plan.notes
        .extend(pool_overlap_notes(s, src, gpu, &t.device));
    push_share_entry(
        src,
        &mut plan,
        (&path, cfg),
        req,
        |pcie| sh::shared_hostpci(&t, pcie),
        "hostpci entry for the share and the VM settings it needs",
    )?;
    Ok(plan)
}

/// Adds one hostpci entry for a share (a VF, an mdev, a VF pool) to VM `req.vmid`'s config
/// `cfg` read from `path`: the VM settings it needs (with their record, for detach), the
/// entry `entry(pcie)` makes with `--rombar`/`--romfile` on it, in the first free index;
/// then both edits.
fn push_share_entry(
    src: &dyn FileSource,
    plan: &mut Plan,
    (path, mut cfg): (&str, GuestConfig),
    req: &VmAttachRequest,
    entry: impl FnOnce(bool) -> HostPci,
    reason: &str,
) -> Result<(), AttachError> {
    use super::attach_shared as sh;
    let vmid = req.vmid;
    let record_path = settings_record(vmid);
    let before_record = read_settings_record(src, &record_path)?;
    let mut record = before_record.clone();
    let pcie = plan_vm_settings(&mut cfg, vmid, &mut record, &mut plan.notes);
    let mut h = entry(pcie);
    if let Some(r) = req.rombar {
        set_option(&mut h.options, "rombar", r.to_string());
    }
    if let Some(f) = &req.romfile {
        set_option(&mut h.options, "romfile", f.clone());
    }
    let n = sh::free_index(&cfg, vmid)?;
    let value = sh::checked_value(&h, n)?;
    cfg.main_set(&format!("hostpci{n}"), &value);
    push_vm_edits(
        src,
        plan,
        (path, &cfg, reason),
        (&record_path, &before_record, &record),
    )
}

/// The VM settings attach changed, each with its value before (`None`: unset).
type SettingsRecord = [(String, Option<String>)];

/// The VM config as edited, and the settings record when attach changed it: the two edits
/// every attach to a Proxmox VM makes.
fn push_vm_edits(
    src: &dyn FileSource,
    plan: &mut Plan,
    (path, cfg, reason): (&str, &GuestConfig, &str),
    (record_path, before, record): (&str, &SettingsRecord, &SettingsRecord),
) -> Result<(), AttachError> {
    plan.edits
        .extend(edit(src, path, Some(cfg.render()), reason)?);
    if record != before {
        plan.edits.extend(edit(
            src,
            record_path,
            render_settings_record(record),
            "the VM settings attach changed, so that detach can put them back",
        )?);
    }
    Ok(())
}

pub fn plan_vm_detach(
    s: &Snapshot,
    src: &dyn FileSource,
    vmid: u32,
    sel: &str,
) -> Result<Plan, AttachError> {
    let gpu = select(s, sel)?;
    let mut plan = Plan {
        title: format!("Detach {} from VM {}", gpu.address, vmid),
        ..Plan::default()
    };
    // A PF takes its VF pools' entries with it; a VF only a mapping of that VF alone.
    let mappings = mappings_of(s, src, &gpu.address, true)?;
    plan_vm_removal(
        src,
        vmid,
        (&gpu.address, exact_match(s, &gpu.address), &mappings),
        true,
        &mut plan,
        "remove the GPU's hostpci entry",
    )?;
    Ok(plan)
}

/// Removes the card's hostpci entries from VM `vmid` and, when no hostpci entry is left, puts
/// back the settings attach recorded. `settle` also puts them back when the card was already
/// gone (a detach after the user removed the entries by hand); without it a VM that never had
/// the card is left alone. A locked VM is refused only when it would change.
fn plan_vm_removal(
    src: &dyn FileSource,
    vmid: u32,
    (gpu, exact, mappings): (&PciAddress, bool, &[String]),
    settle: bool,
    plan: &mut Plan,
    reason: &str,
) -> Result<(), AttachError> {
    let path = vm_conf(vmid);
    let mut cfg = read_config(src, &path)?;
    let dropped = drop_hostpci(&mut cfg, gpu, exact, mappings);
    for (key, h) in &dropped {
        if let Some(m) = &h.mapping {
            plan.notes.push(format!("VM {vmid}: {key} (mapping={m}) goes; mapping '{m}' stays in {MAPPING_FILE}, as other VMs may name it."));
        }
    }
    let removed = !dropped.is_empty();
    let record_path = settings_record(vmid);
    let record = if removed || settle {
        read_settings_record(src, &record_path)?
    } else {
        Vec::new()
    };
    let remaining: Vec<String> = (0..MAX_HOSTPCI)
        .map(|i| format!("hostpci{i}"))
        .filter(|k| cfg.main_get(k).is_some())
        .collect();
    let mut notes = Vec::new();
    let mut restored = false;
    if !record.is_empty() {
        if remaining.is_empty() {
            for (key, before) in &record {
                let now = cfg.main_get(key);
                if now != recorded_value(key) {
                    notes.push(format!(
                        "VM {vmid}: {key} was changed since attach ({}): left as it is.",
                        now.map_or("no line".to_string(), |v| format!("{key}: {v}"))
                    ));
                    continue;
                }
                match before {
                    Some(v) => cfg.main_set(key, v),
                    None => {
                        cfg.main_remove(key);
                    }
                }
                notes.push(format!(
                    "VM {vmid}: {key} goes back to what it was before attach ({}).",
                    before
                        .as_deref()
                        .map_or("no line".to_string(), |v| format!("{key}: {v}"))
                ));
            }
            restored = true;
        } else {
            let keys: Vec<String> = record
                .iter()
                .filter_map(|(k, _)| recorded_value(k).map(|v| format!("{k}: {v}")))
                .collect();
            notes.push(format!(
                "VM {vmid} keeps {} that attach set: {} still attached; detach the last one to switch back.",
                keys.join(" and "),
                remaining.join(", ")
            ));
        }
    }
    if removed || restored {
        check_unlocked(&cfg, &path, &unlock_command(&path))?;
        plan.edits
            .extend(edit(src, &path, Some(cfg.render()), reason)?);
    }
    if restored {
        plan.edits.extend(edit(
            src,
            &record_path,
            None,
            "the VM settings attach changed are put back",
        )?);
    }
    plan.notes.extend(notes);
    Ok(())
}

/// The node name (`etc/hostname`), for mappings.
pub fn node_name(src: &dyn FileSource) -> Result<Option<String>, super::source::ReadError> {
    Ok(src
        .read_text("etc/hostname")?
        .map(|t| t.trim().split('.').next().unwrap_or("").to_string())
        .filter(|n| !n.is_empty()))
}

/// The node name for a mapping entry, or the refusal.
fn mapping_node(src: &dyn FileSource) -> Result<String, AttachError> {
    node_name(src)?.ok_or_else(|| {
        AttachError::NotFound(
            "etc/hostname is missing: the node name is needed for the mapping".into(),
        )
    })
}

const MAPPING_REASON: &str =
    "cluster-wide PCI resource mapping (pmxcfs replicates it to every node)";

/// `mapping create NAME GPU`: one entry for the card on this node; with `vfs`, the pool of
/// the card's VFs (one entry per VF).
pub fn plan_mapping_create(
    s: &Snapshot,
    src: &dyn FileSource,
    name: &str,
    sel: &str,
    vfs: bool,
) -> Result<Plan, AttachError> {
    check_config_id(name).map_err(|why| invalid("mapping name", name, why))?;
    let gpu = select(s, sel)?;
    let node = mapping_node(src)?;
    let mut file = read_mapping_file(src)?;
    if vfs {
        let pf = super::attach_shared::pf_for(s, gpu);
        let change = super::vf_pool::plan_pool(s, &mut file, name, pf, &node)?;
        let mut plan = Plan {
            title: format!(
                "{} the PCI resource mapping '{name}': the pool of {}'s VFs on node {node}",
                if change.created { "Create" } else { "Check" },
                pf.address
            ),
            ..Plan::default()
        };
        plan.notes.extend(pool_notes(name, &change));
        plan.edits.extend(edit(
            src,
            MAPPING_FILE,
            Some(file.render()),
            MAPPING_REASON,
        )?);
        return Ok(plan);
    }
    let fns = s.card_functions(&gpu.address);
    let entry = super::vf_pool::map_entry(gpu, &node, slot_path(gpu, fns.len()))?;
    let mdev = super::vf_pool::mdev_capable(gpu);
    let mut plan = Plan {
        title: format!(
            "Create the PCI resource mapping '{name}' for {} on node {node}",
            gpu.address
        ),
        ..Plan::default()
    };
    let existing = file.mappings().iter().find(|m| m.id == name);
    if let Some(m) = existing.filter(|m| m.flag("mdev") != mdev) {
        return Err(AttachError::Refused(format!(
            "mapping '{name}' in {MAPPING_FILE} has mdev {}, but {} reports {} (Proxmox refuses the VM start when they differ)",
            u8::from(m.flag("mdev")),
            gpu.address,
            u8::from(mdev)
        )));
    }
    let has_node =
        existing.is_some_and(|m| super::vf_pool::node_entries(m, &node).next().is_some());
    if !has_node {
        let created = existing.is_none();
        file.add_map(name, entry);
        // Proxmox compares the top-level mdev with what the card reports; absent reads as 0.
        if created && mdev {
            file.add_property(name, "mdev", "1");
        }
        plan.edits.extend(edit(
            src,
            MAPPING_FILE,
            Some(file.render()),
            MAPPING_REASON,
        )?);
    }
    Ok(plan)
}

/// What a pool change tells the user.
fn pool_notes(name: &str, change: &super::vf_pool::PoolChange) -> Vec<String> {
    let added: Vec<String> = change.added.iter().map(|a| a.to_string()).collect();
    let mut notes = Vec::new();
    if change.created {
        notes.push(format!("Mapping '{name}' lists {} VFs ({}): Proxmox starts a VM naming it with the first one no running VM holds.", added.len(), added.join(", ")));
    } else if !added.is_empty() {
        notes.push(format!(
            "Mapping '{name}' gets the VFs it lacked: {}.",
            added.join(", ")
        ));
    }
    notes
}

/// `vm attach VMID PF --vf auto --mapping NAME`: the VM names the pool of the card's VFs
/// (`hostpciN: mapping=NAME`), and the pool is made or completed in the same plan. Proxmox
/// picks the VF at each start, so passthru does not.
fn plan_vm_attach_pool(
    s: &Snapshot,
    src: &dyn FileSource,
    req: &VmAttachRequest,
    gpu: &PciDevice,
    name: &str,
) -> Result<Plan, AttachError> {
    use super::attach_shared as sh;
    use super::vf_pool as pool;
    if req.mdev.is_some() {
        return Err(AttachError::Refused("--mapping with --mdev: a mapping of mediated devices is not made by passthru; leave --mapping out".into()));
    }
    if let Some(sh::VfChoice::Index(n)) = req.vf {
        return Err(AttachError::Refused(format!("--vf {n} with --mapping: a mapping is a pool and Proxmox starts the VM with the first free VF in it, so no one VF can be chosen; use --vf auto (or --vf {n} without --mapping)")));
    }
    let vmid = req.vmid;
    let path = vm_conf(vmid);
    let cfg = read_config(src, &path)?;
    check_unlocked(&cfg, &path, &unlock_command(&path))?;
    if let Some(key) = (0..MAX_HOSTPCI).map(|i| format!("hostpci{i}")).find(|k| {
        cfg.main_get(k)
            .and_then(|v| parse_hostpci(v).ok())
            .is_some_and(|h| h.mapping.as_deref() == Some(name))
    }) {
        return Err(AttachError::Refused(format!(
            "VM {vmid} already names pool '{name}' ({key}): Proxmox gives it one VF per entry, and a second entry would only take a second VF"
        )));
    }
    let pf = sh::pf_for(s, gpu);
    let node = mapping_node(src)?;
    let mut file = read_mapping_file(src)?;
    let change = pool::plan_pool(s, &mut file, name, pf, &node)?;
    let mut plan = Plan {
        title: format!(
            "Attach a VF of {} to VM {vmid} through pool mapping '{name}'",
            pf.address
        ),
        ..Plan::default()
    };
    pool_vf_checks(s, pf, req.force, &mut plan)?;
    plan.notes.extend(pool_notes(name, &change));
    let users = pool::vms_naming(&sh::vm_entries(src), name);
    plan.notes
        .extend(pool::oversubscribed(name, users.len() + 1, change.size));
    plan.edits.extend(edit(
        src,
        MAPPING_FILE,
        Some(file.render()),
        MAPPING_REASON,
    )?);
    push_share_entry(
        src,
        &mut plan,
        (&path, cfg),
        req,
        |pcie| {
            let mut h = HostPci {
                host: Vec::new(),
                mapping: Some(name.to_string()),
                options: Vec::new(),
            };
            if pcie {
                set_option(&mut h.options, "pcie", "1".into());
            }
            h
        },
        "hostpci entry naming the VF pool and the VM settings it needs",
    )?;
    Ok(plan)
}

/// A VF taken by address may also be in a pool other VMs name: `taken` counts address
/// entries only, and Proxmox hands a pool's VF to whichever VM starts first.
fn pool_overlap_notes(
    s: &Snapshot,
    src: &dyn FileSource,
    gpu: &PciDevice,
    vf: &PciAddress,
) -> Vec<String> {
    let vfs: Vec<PciAddress> = s
        .vfs_of(&super::attach_shared::pf_for(s, gpu).address)
        .iter()
        .map(|v| v.address)
        .collect();
    if !vfs.contains(vf) {
        return Vec::new();
    }
    super::vf_pool::pools_of(src, &vfs)
        .into_iter()
        .filter(|p| !p.vms.is_empty())
        .map(|p| {
            let vms: Vec<String> = p.vms.iter().map(|v| format!("VM {v}")).collect();
            format!(
                "VF {vf} is also in pool {} ({}): Proxmox gives it to whichever VM starts first.",
                p.mapping,
                vms.join(", ")
            )
        })
        .collect()
}

/// Every VF of the pool as the single-VF attach checks its one: any of them may be the one
/// Proxmox starts the VM with.
fn pool_vf_checks(
    s: &Snapshot,
    pf: &PciDevice,
    force: bool,
    plan: &mut Plan,
) -> Result<(), AttachError> {
    let vfs = s.vfs_of(&pf.address);
    if vfs.iter().any(|v| v.nvidia_vgpu.is_some()) {
        return Err(AttachError::Refused(format!("NVIDIA's VFs carry a vGPU type, which a pool entry cannot give: attach one with --vf auto --mdev nvidia-ID (types: {}/nvidia/creatable_vgpu_types), without --mapping", vfs[0].address)));
    }
    let mut blocked = Vec::new();
    let mut host_driver = Vec::new();
    for v in &vfs {
        let g = check_gpu(s, v, force);
        blocked.extend(
            g.refusals(Use::Vm, &[])
                .into_iter()
                .map(|r| format!("VF {}: {r}", v.address)),
        );
        plan.warnings.extend(g.forced(Use::Vm));
        if v.driver.as_deref() != Some("vfio-pci") {
            host_driver.push(format!(
                "{} ({})",
                v.address,
                v.driver.as_deref().unwrap_or("no driver")
            ));
        }
    }
    if !blocked.is_empty() {
        return Err(AttachError::Refused(blocked.join("; ")));
    }
    if !host_driver.is_empty() {
        plan.notes.push(format!(
            "VFs not on vfio-pci now: {}. Proxmox rebinds the one it picks at VM start; passthru share vfs {} --count N keeps every VF on vfio-pci from boot.",
            host_driver.join(", "),
            pf.address
        ));
    }
    Ok(())
}

/// The host device nodes of a GPU that exist under `dev/`, for containers.
pub fn gpu_nodes(s: &Snapshot, src: &dyn FileSource, gpu: &PciDevice) -> Vec<String> {
    let dev = src.list("dev");
    let mut nodes = Vec::new();
    if gpu.on_nvidia_driver() {
        // The driver's own minor for the card (proc/driver/nvidia/gpus/BDF/information);
        // the position among NVIDIA GPUs only where the driver does not say.
        let minor = s
            .sharing
            .nvidia_gpu(&gpu.address)
            .and_then(|i| i.device_minor)
            .map(|m| m as usize)
            .or_else(|| s.nvidia_index(&gpu.address))
            .unwrap_or(0);
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
    // On its host driver now, but vfio configuration on disk takes it at the next boot: the
    // container would lose it then (docs/states.md; check's vfio.pending says the same).
    let state = crate::state::card_state(s, &gpu.address);
    if crate::state::vfio_pending(&state) {
        return Err(AttachError::Refused(format!(
            "{} is on its host driver now, but the vfio configuration on disk takes it at the next boot ({}; {}): run `passthru setup host {}` first",
            gpu.address,
            state.state.describe(),
            state.evidence,
            gpu.address
        )));
    }
    let path = ct_conf(req.ctid);
    let mut cfg = read_config(src, &path)?;
    check_unlocked(&cfg, &path, &unlock_command(&path))?;
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
    // Moving from VM use: the VMs' hostpci entries for this GPU go in the same transaction,
    // those through a mapping of the card too; a pool of its VFs stays (the VFs are not
    // what moves).
    let mappings = mappings_of(s, src, &gpu.address, false)?;
    for name in src.list("etc/pve/qemu-server") {
        let Some(vmid) = name.strip_suffix(".conf").and_then(|n| n.parse().ok()) else {
            continue;
        };
        plan_vm_removal(
            src,
            vmid,
            (&gpu.address, exact_match(s, &gpu.address), &mappings),
            false,
            &mut plan,
            "the GPU moves to a container: this VM's hostpci entry for it goes",
        )?;
    }
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
        "Migrated {} for these nodes to devN entries (Proxmox 8.1+).",
        crate::output::words::count(removed, "legacy lxc.* line", "legacy lxc.* lines")
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
    check_unlocked(&cfg, &path, &unlock_command(&path))?;
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
    /// `--vf auto|N`: a virtual function instead of the card, by address.
    pub vf: Option<super::attach_shared::VfChoice>,
    /// `--mdev TYPE`: a live mediated device of that type no domain uses, by UUID.
    pub mdev: Option<String>,
}

/// Every libvirt domain file's text, by path.
fn all_domains(src: &dyn FileSource) -> Vec<(String, String)> {
    src.list("etc/libvirt/qemu")
        .into_iter()
        .filter(|n| n.ends_with(".xml"))
        .filter_map(|n| {
            let path = format!("etc/libvirt/qemu/{n}");
            let text = src.read_text(&path).ok()??;
            Some((path, text))
        })
        .collect()
}

/// A live mdev of `ty` on `parent` that no domain names, for `libvirt attach --mdev`.
fn free_mdev(
    s: &Snapshot,
    src: &dyn FileSource,
    parent: &crate::model::MdevParentRef<'_>,
    ty: &str,
) -> Result<String, AttachError> {
    if parent.mdev_type(ty).is_none() {
        return Err(AttachError::Refused(format!(
            "{} offers no mdev type '{ty}'{}",
            parent.name,
            if parent.types.is_empty() {
                " (it offers none)".to_string()
            } else {
                format!("; it offers {}", parent.type_ids().join(", "))
            }
        )));
    }
    let used: Vec<String> = all_domains(src)
        .iter()
        .flat_map(|(_, t)| libvirt_xml::mdev_hostdev_uuids(t))
        .map(|u| u.to_ascii_lowercase())
        .collect();
    s.sharing
        .mdevs_named(&parent.name)
        .filter(|m| m.mdev_type.as_deref() == Some(ty))
        .find(|m| !used.contains(&m.uuid.to_ascii_lowercase()))
        .map(|m| m.uuid.clone())
        .ok_or_else(|| AttachError::Refused(format!(
            "no {ty} instance on {p} is free for libvirt (libvirt uses mdevs that exist, it does not create them): make one that lasts with `passthru share mdev {p} --type {ty} --count {n} --now`, then run this again",
            p = parent.name,
            n = super::share_mdev::own_live_count(s, &parent.name, ty) + 1
        )))
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

/// The libvirt form of a host address. The domain is carried whole: libvirt's schema types it
/// as `pciDomain` = uint32 (`basictypes.rng`), and Intel VMD domains (`10000`) do not fit 16
/// bits; cut to 16 they would name another device.
fn pci(a: &PciAddress) -> PciAddr {
    PciAddr {
        domain: a.domain,
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
    if let Some(ty) = &req.mdev {
        let parent = super::share_mdev::select_mdev_parent(s, &req.gpu)
            .map_err(|e| AttachError::NotFound(e.to_string()))?;
        let (path, text) = read_domain(src, &req.domain)?;
        let uuid = free_mdev(s, src, &parent, ty)?;
        let xml =
            libvirt_xml::add_mdev_hostdev(&text, &uuid).map_err(|e| AttachError::Unreadable {
                file: path.clone(),
                why: e.to_string(),
            })?;
        let mut plan = Plan {
            title: format!(
                "Attach {ty} instance {uuid} of {} to libvirt domain {}",
                parent.name, req.domain
            ),
            ..Plan::default()
        };
        if xml != text {
            push_domain_edit(
                &mut plan,
                src,
                &path,
                xml,
                "a <hostdev type='mdev'> for the instance",
            )?;
        }
        return Ok(plan);
    }
    let gpu = select(s, &req.gpu)?;
    let gpu = match req.vf {
        None => gpu,
        Some(choice) => {
            let pf = super::attach_shared::pf_for(s, gpu);
            let domains = all_domains(src);
            let taken = |a: &PciAddress| {
                let users: Vec<String> = domains
                    .iter()
                    .filter(|(_, t)| libvirt_xml::hostdev_sources(t).contains(&pci(a)))
                    .map(|(p, _)| p.clone())
                    .collect();
                (!users.is_empty()).then(|| users.join(", "))
            };
            if gpu.physfn.is_some() {
                gpu
            } else {
                super::attach_shared::choose_vf(s, pf, choice, taken, |_| true)?
            }
        }
    };
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
///
/// With a CDI spec naming the card (etc/cdi, var/run/cdi), its CDI device first: the NVIDIA
/// Container Toolkit's current way, also Podman's. NVIDIA cards by GPU UUID from
/// proc/driver/nvidia/gpus/BDF/information, never by position (NVML's order is not kept
/// across reboots). Other GPUs by device node with the numeric gid that owns it (a group
/// name fails in images that lack the group), and /dev/kfd for AMD compute. `gid` is the
/// owner's gid of the render node, read by the command (`None`: unknown).
pub fn docker_snippet(
    s: &Snapshot,
    src: &dyn FileSource,
    sel: &str,
    gid: Option<u32>,
) -> Result<String, AttachError> {
    let gpu = select(s, sel)?;
    let nodes = gpu_nodes(s, src, gpu);
    let mut out = String::new();
    if let Some((file, name)) = super::containers::cdi_name(s, gpu, &nodes) {
        out.push_str(&format!(
            "# CDI ({file} names this card): Docker 25+ with CDI enabled, or Podman.
"
        ));
        out.push_str(&format!(
            "docker run --device {name} ...
podman run --device {name} ...

# Without CDI:
"
        ));
    }
    if gpu.on_nvidia_driver() {
        let id = match s
            .sharing
            .nvidia_gpu(&gpu.address)
            .and_then(|i| i.uuid.clone())
        {
            Some(uuid) => uuid,
            None => {
                let index = s.nvidia_index(&gpu.address).unwrap_or(0);
                out.push_str(&format!("# proc/driver/nvidia/gpus/{}/information has no GPU UUID: {index} is the card's position among NVIDIA GPUs, which NVIDIA does not keep across reboots.
", gpu.address));
                index.to_string()
            }
        };
        out.push_str(
            "# NVIDIA: needs nvidia-container-toolkit on the host.
",
        );
        out.push_str(&format!("docker run --gpus '\"device={id}\"' ...\n\n"));
        out.push_str(&format!("services:\n  app:\n    deploy:\n      resources:\n        reservations:\n          devices:\n            - driver: nvidia\n              device_ids: [\"{id}\"]\n              capabilities: [gpu, video]\n"));
        if let Some(v) = &s.system.nvidia_driver_version {
            out.push_str(&format!(
                "# host driver {v}: the toolkit mounts the matching user-space libraries\n"
            ));
        }
    } else {
        let mut devs: Vec<String> = nodes
            .iter()
            .filter(|n| n.contains("renderD"))
            .cloned()
            .collect();
        if devs.is_empty() {
            return Err(AttachError::Refused(format!(
                "{} has no render node: is its driver loaded?",
                gpu.address
            )));
        }
        // ROCm's compute interface, one node for every AMD GPU (Ollama's docs pass it).
        if gpu.vendor.map(|v| v.0) == Some(0x1002) && src.list("dev").iter().any(|n| n == "kfd") {
            devs.push("/dev/kfd".into());
        }
        let group = match gid {
            Some(g) => g.to_string(),
            None => {
                out.push_str("# the render node's group id is unknown here: put the number of the host's render group (getent group render) below.\n");
                "RENDER_GID".into()
            }
        };
        let flags: Vec<String> = devs.iter().map(|n| format!("--device {n}:{n}")).collect();
        out.push_str(&format!(
            "docker run {} --group-add {group} ...\n\n",
            flags.join(" ")
        ));
        out.push_str("services:\n  app:\n    devices:\n");
        for n in &devs {
            out.push_str(&format!("      - {n}:{n}\n"));
        }
        out.push_str(&format!("    group_add:\n      - \"{group}\"\n"));
    }
    Ok(out)
}
