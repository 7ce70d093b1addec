//! Containers done the current way: the CDI device that names a card, the numeric gid of
//! its render node's group, and the Incus device line. Pure.

use crate::model::{PciDevice, Snapshot};

/// `(spec file, kind=name)` of the CDI device for this card: NVIDIA's by GPU UUID (the name
/// nvidia-ctk gives each GPU besides its index), else any device whose nodes are the card's
/// (`/dev/nvidiaN` by the driver's minor, or its DRM nodes: amd-ctk and Intel's generator
/// list those). `nodes` are the card's device nodes as `gpu_nodes` gives them.
pub fn cdi_name(s: &Snapshot, gpu: &PciDevice, nodes: &[String]) -> Option<(String, String)> {
    let uuid = s
        .sharing
        .nvidia_gpu(&gpu.address)
        .and_then(|i| i.uuid.clone());
    let own: Vec<&String> = nodes
        .iter()
        .filter(|n| n.contains("renderD") || n.starts_with("/dev/dri/card") || is_nvidia_minor(n))
        .collect();
    for spec in &s.sharing.cdi_specs {
        let Some(kind) = &spec.kind else { continue };
        if let Some(u) = &uuid {
            if let Some(d) = spec.devices.iter().find(|d| &d.name == u) {
                return Some((spec.file.clone(), format!("{kind}={}", d.name)));
            }
        }
        // A device for this card alone: its nodes include the card's and no other card's.
        let found = spec.devices.iter().find(|d| {
            d.name != "all"
                && !own.is_empty()
                && own.iter().any(|n| d.nodes.contains(n))
                && d.nodes
                    .iter()
                    .all(|n| !looks_like_card_node(n) || own.contains(&n))
        });
        if let Some(d) = found {
            return Some((spec.file.clone(), format!("{kind}={}", d.name)));
        }
    }
    None
}

fn is_nvidia_minor(n: &str) -> bool {
    n.strip_prefix("/dev/nvidia")
        .is_some_and(|m| !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit()))
}

fn looks_like_card_node(n: &str) -> bool {
    n.contains("renderD") || n.starts_with("/dev/dri/card") || is_nvidia_minor(n)
}

/// How Incus is to give the card to an instance (Incus doc/reference/devices_gpu.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IncusShare {
    /// The card itself: containers (and VMs); `gid` owns the nodes in a container.
    Physical { gid: Option<u32> },
    /// A VF, for a VM: Incus picks an unbound VF of the parent and binds it itself.
    Sriov,
    /// An mdev of this type, for a VM.
    Mdev(String),
}

/// `incus config device add INSTANCE gpu0 gpu gputype=… pci=BDF …` as an argument vector.
pub fn incus_argv(
    instance: &str,
    device: &str,
    gpu: &PciDevice,
    share: &IncusShare,
) -> Vec<String> {
    let mut argv: Vec<String> = ["incus", "config", "device", "add", instance, device, "gpu"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    // Incus selects a VF by its parent's address (gpu_sriov.go getVF).
    let pci = gpu.physfn.unwrap_or(gpu.address);
    match share {
        IncusShare::Physical { gid } => {
            argv.push("gputype=physical".into());
            argv.push(format!("pci={}", gpu.address));
            if let Some(g) = gid {
                argv.push(format!("gid={g}"));
            }
        }
        IncusShare::Sriov => {
            argv.push("gputype=sriov".into());
            argv.push(format!("pci={pci}"));
        }
        IncusShare::Mdev(t) => {
            argv.push("gputype=mdev".into());
            argv.push(format!("mdev={t}"));
            argv.push(format!("pci={}", gpu.address));
        }
    }
    argv
}

/// The gid of `group` in a group file's text.
pub fn group_gid(text: &str, group: &str) -> Option<u32> {
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 3 && f[0] == group)
            .then(|| f[2].parse().ok())
            .flatten()
    })
}
