//! `vm attach VMID GPU --vf auto|N` and `--mdev TYPE`: a share of a split card to a Proxmox
//! VM, and the libvirt counterparts. Pure, like `attach`.
//!
//! A VF is a card of its own (one function, its own group), but it shares a slot with its
//! PF on an iGPU (`00:02.1` beside `00:02.0`): whether a guest already has it is decided on
//! the exact function, never on the slot, so one VF's entry is not taken for another's.
//! An mdev share names its parent (the PF, or with NVIDIA's vendor VFIO the VF) with
//! `mdev=TYPE`; Proxmox creates the instance at VM start and removes it at stop
//! (qemu-server `src/PVE/QemuServer/PCI/Mdev.pm`, pve-docs qm-pci-passthrough.adoc).

use crate::check::{check_gpu, Use};
use crate::formats::pve_config::{free_hostpci_index, parse_hostpci, render_hostpci, HostPci};
use crate::model::{PciAddress, PciDevice, Snapshot};

use super::attach::AttachError;
use super::setup::FileSource;

/// Which VF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VfChoice {
    /// The first VF no guest references (with `--mdev`, one that can take the type).
    Auto,
    /// `virtfnN`.
    Index(u32),
}

impl std::str::FromStr for VfChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(VfChoice::Auto),
            n => n
                .parse()
                .map(VfChoice::Index)
                .map_err(|_| format!("'{n}' is not auto or a VF number (0, 1, ...)")),
        }
    }
}

/// Whether a hostpci host id names exactly `a`: the full function, or the slot without a
/// function (which Proxmox expands to every function, VFs in it included).
pub fn names_function(entry: &str, a: &PciAddress) -> bool {
    let e = entry.trim();
    let full = if e.matches(':').count() == 1 {
        format!("0000:{e}")
    } else {
        e.to_string()
    };
    match full.parse::<PciAddress>() {
        Ok(x) => x == *a,
        Err(_) => format!("{full}.0")
            .parse::<PciAddress>()
            .is_ok_and(|x| x.same_slot(a)),
    }
}

/// Every hostpci entry of every VM config: (vmid, index, entry).
pub fn vm_entries(src: &dyn FileSource) -> Vec<(u32, u8, HostPci)> {
    let mut out = Vec::new();
    for name in src.list("etc/pve/qemu-server") {
        let Some(vmid) = name
            .strip_suffix(".conf")
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(Some(text)) = src.read_text(&format!("etc/pve/qemu-server/{name}")) else {
            continue;
        };
        let Ok(cfg) = crate::formats::pve_config::parse_guest_config(&text) else {
            continue;
        };
        for i in 0..crate::formats::pve_config::MAX_HOSTPCI {
            if let Some(h) = cfg
                .main_get(&format!("hostpci{i}"))
                .and_then(|v| parse_hostpci(v).ok())
            {
                out.push((vmid, i, h));
            }
        }
    }
    out
}

/// The VMs whose configs name `a` exactly.
pub fn vms_using(entries: &[(u32, u8, HostPci)], a: &PciAddress) -> Vec<u32> {
    let mut v: Vec<u32> = entries
        .iter()
        .filter(|(_, _, h)| {
            h.host
                .iter()
                .flat_map(|e| e.split(';'))
                .any(|e| names_function(e, a))
        })
        .map(|(id, _, _)| *id)
        .collect();
    v.dedup();
    v
}

/// The PF a request names (the GPU itself, or the PF of a VF).
pub fn pf_for<'a>(s: &'a Snapshot, gpu: &'a PciDevice) -> &'a PciDevice {
    s.pf_of(&gpu.address).unwrap_or(gpu)
}

/// `nvidia-923` -> 923.
fn nvidia_type_id(t: &str) -> Option<u32> {
    t.strip_prefix("nvidia-")?.parse().ok()
}

/// Picks the VF: by number, or the first that `taken` does not hold and `fits`.
pub fn choose_vf<'a>(
    s: &'a Snapshot,
    pf: &PciDevice,
    choice: VfChoice,
    taken: impl Fn(&PciAddress) -> Option<String>,
    fits: impl Fn(&PciDevice) -> bool,
) -> Result<&'a PciDevice, AttachError> {
    let vfs = s.vfs_of(&pf.address);
    if vfs.is_empty() {
        return Err(AttachError::Refused(format!(
            "{} has no virtual functions: make them with passthru share vfs {} --count N",
            pf.address, pf.address
        )));
    }
    match choice {
        VfChoice::Index(n) => {
            let vf = vfs.get(n as usize).copied().ok_or_else(|| {
                AttachError::Refused(format!(
                    "{} has {} VFs (virtfn0..virtfn{}): no virtfn{n}",
                    pf.address,
                    vfs.len(),
                    vfs.len() - 1
                ))
            })?;
            if let Some(who) = taken(&vf.address) {
                return Err(AttachError::Refused(format!(
                    "VF {} is already used by {who}",
                    vf.address
                )));
            }
            if !fits(vf) {
                return Err(AttachError::Refused(format!(
                    "VF {} cannot take the requested type now",
                    vf.address
                )));
            }
            Ok(vf)
        }
        VfChoice::Auto => vfs
            .iter()
            .copied()
            .find(|v| taken(&v.address).is_none() && fits(v))
            .ok_or_else(|| {
                let used: Vec<String> = vfs
                    .iter()
                    .map(|v| {
                        format!(
                            "{} ({})",
                            v.address,
                            taken(&v.address)
                                .unwrap_or_else(|| "free, but cannot take the type".into())
                        )
                    })
                    .collect();
                AttachError::Refused(format!(
                    "no free VF of {}: {}; add VFs with passthru share vfs {} --count N",
                    pf.address,
                    used.join(", "),
                    pf.address
                ))
            }),
    }
}

/// What a shared attach resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedTarget {
    /// The function the hostpci entry names.
    pub device: PciAddress,
    /// `mdev=` for it.
    pub mdev: Option<String>,
    pub notes: Vec<String>,
}

/// Resolves `--vf` / `--mdev` for VM `vmid`: which function, which type, after the checks
/// (a VF no other guest has, an mdev type with an instance free).
pub fn resolve_shared(
    s: &Snapshot,
    gpu: &PciDevice,
    vf: Option<VfChoice>,
    mdev: Option<&str>,
    taken: &dyn Fn(&PciAddress) -> Option<String>,
    force: bool,
) -> Result<SharedTarget, AttachError> {
    let pf = pf_for(s, gpu);
    let vfs = s.vfs_of(&pf.address);
    let nvidia_vfio = vfs.iter().any(|v| v.nvidia_vgpu.is_some());
    let mut notes = Vec::new();
    if let Some(t) = mdev {
        if nvidia_vfio {
            // NVIDIA vGPU 17+: the type goes on a VF whose creatable types list it.
            let id = nvidia_type_id(t).ok_or_else(|| {
                AttachError::Refused(format!("'{t}' is not an NVIDIA vGPU type: give nvidia-ID, one of the ids in the VFs' nvidia/creatable_vgpu_types"))
            })?;
            let fits = |v: &PciDevice| {
                v.nvidia_vgpu.as_ref().is_some_and(|n| {
                    n.current.unwrap_or(0) == 0 && n.creatable.iter().any(|(i, _)| *i == id)
                })
            };
            let target = match (gpu.physfn, vf) {
                (Some(_), None) => {
                    if taken(&gpu.address).is_some() || !fits(gpu) {
                        return Err(AttachError::Refused(format!(
                            "VF {} cannot take {t} now (in use, or not among its creatable types)",
                            gpu.address
                        )));
                    }
                    gpu
                }
                (_, choice) => choose_vf(s, pf, choice.unwrap_or(VfChoice::Auto), taken, fits)?,
            };
            notes.push(format!("Proxmox writes {id} to {}/nvidia/current_vgpu_type when the VM starts; the VF stays on the nvidia driver.", target.address));
            return Ok(SharedTarget {
                device: target.address,
                mdev: Some(t.to_string()),
                notes,
            });
        }
        if vf.is_some() {
            return Err(AttachError::Refused("--vf with --mdev is for NVIDIA vGPU on VFs; this card's mdev types are on the card itself".into()));
        }
        let Some(ty) = gpu.mdev_type_details.iter().find(|x| x.id == t) else {
            let offered: Vec<&str> = gpu.mdev_types.iter().map(String::as_str).collect();
            return Err(AttachError::Refused(format!(
                "{} offers no mdev type '{t}'{}",
                gpu.address,
                if offered.is_empty() {
                    " (it offers none)".to_string()
                } else {
                    format!("; it offers {}", offered.join(", "))
                }
            )));
        };
        match ty.available_instances {
            Some(n) if n > 0 => {}
            Some(_) => {
                return Err(AttachError::Refused(format!(
                    "{t} on {} has no instance free (available_instances 0): stop a guest that holds one",
                    gpu.address
                )))
            }
            None => {
                return Err(AttachError::Refused(format!(
                    "available_instances of {t} on {} could not be read",
                    gpu.address
                )))
            }
        }
        notes.push(format!("Proxmox creates the {t} instance when the VM starts and removes it at stop; available_instances counts live instances only, so other stopped VMs configured with {t} take theirs first."));
        return Ok(SharedTarget {
            device: gpu.address,
            mdev: Some(t.to_string()),
            notes,
        });
    }
    let choice = vf.unwrap_or(VfChoice::Auto);
    let target = if gpu.physfn.is_some() {
        if let Some(who) = taken(&gpu.address) {
            return Err(AttachError::Refused(format!(
                "VF {} is already used by {who}",
                gpu.address
            )));
        }
        gpu
    } else {
        choose_vf(s, pf, choice, taken, |_| true)?
    };
    if nvidia_vfio {
        return Err(AttachError::Refused(format!("NVIDIA's VFs carry a vGPU type: give --mdev nvidia-ID (types: {}/nvidia/creatable_vgpu_types)", target.address)));
    }
    let g = check_gpu(s, target, force);
    let blocking = g.refusals(Use::Vm, &[]);
    if !blocking.is_empty() {
        return Err(AttachError::Refused(blocking.join("; ")));
    }
    if target.driver.as_deref() != Some("vfio-pci") {
        notes.push(format!(
            "VF {} is on {} now: Proxmox rebinds it to vfio-pci at VM start; passthru share vfs {} --count N keeps every VF on vfio-pci from boot.",
            target.address,
            target.driver.as_deref().unwrap_or("no driver"),
            pf.address
        ));
    }
    Ok(SharedTarget {
        device: target.address,
        mdev: None,
        notes,
    })
}

/// The hostpci entry for a shared target; `pcie` from the VM's machine.
pub fn shared_hostpci(t: &SharedTarget, pcie: bool) -> HostPci {
    let mut options = Vec::new();
    if pcie {
        options.push(("pcie".to_string(), "1".to_string()));
    }
    if let Some(m) = &t.mdev {
        options.push(("mdev".to_string(), m.clone()));
    }
    HostPci {
        host: vec![t.device.to_string()],
        mapping: None,
        options,
    }
}

/// A free hostpci index, or the refusal.
pub fn free_index(
    cfg: &crate::formats::pve_config::GuestConfig,
    vmid: u32,
) -> Result<u8, AttachError> {
    free_hostpci_index(cfg)
        .ok_or_else(|| AttachError::Refused(format!("VM {vmid} uses all 16 hostpci slots")))
}

/// Renders and reads back the entry, as `plan_vm_attach` guards its own.
pub fn checked_value(h: &HostPci, n: u8) -> Result<String, AttachError> {
    let value = render_hostpci(h);
    if parse_hostpci(&value).as_ref() != Ok(h) {
        return Err(AttachError::Refused(format!(
            "hostpci{n}: {value:?} would not read back as one entry"
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_names_a_vf_only_by_its_function_or_the_bare_slot() {
        let vf1: PciAddress = "0000:00:02.1".parse().unwrap();
        assert!(names_function("0000:00:02.1", &vf1));
        assert!(names_function("00:02.1", &vf1));
        assert!(
            names_function("00:02", &vf1),
            "a bare slot is every function"
        );
        assert!(!names_function("0000:00:02.2", &vf1));
        assert!(!names_function("0000:00:02.0", &vf1));
        assert!(!names_function("0000:01:00.0", &vf1));
    }

    #[test]
    fn vf_choice_parses() {
        assert_eq!("auto".parse::<VfChoice>(), Ok(VfChoice::Auto));
        assert_eq!("3".parse::<VfChoice>(), Ok(VfChoice::Index(3)));
        assert!("x".parse::<VfChoice>().is_err());
    }
}
