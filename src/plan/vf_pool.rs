//! Proxmox resource mappings built from the hardware, and the VF pool: one mapping whose
//! entries on this node are every VF of one card. Proxmox takes the map entries for the
//! node as alternatives and starts the VM with the first free one (PROXMOX-API §4.2 step 4;
//! pve-docs qm.adoc "Resource Mapping": "useful for devices with SR-IOV, since some times
//! it is not important which exact virtual function is passed through").
//!
//! At every VM start qemu-server checks each entry of the node against sysfs
//! (pve-guest-common `PVE::Mapping::PCI::assert_valid`): a property the hardware has and
//! the entry lacks, or one the entry has and the hardware lacks, stops the start. So an
//! entry carries exactly what `PVE::SysFSTools::pci_device_info` reports, and nothing else.

use crate::cluster::entry::{check_entry, parse_entry};
use crate::formats::pve_config::{check_property_value, PciMapping, PciMappingFile};
use crate::model::{PciAddress, PciDevice, Snapshot};
use crate::pve::api::PciFunction;

use super::attach::AttachError;
use super::source::FileSource;

/// One `map` key=value list.
pub type MapEntry = Vec<(String, String)>;

/// Whether Proxmox counts the device as mdev-capable: `pci_device_info` sets `mdev` for a
/// `mdev_supported_types/` directory or NVIDIA's `nvidia/` one (vGPU 17+ VFs). The snapshot
/// keeps the types it listed and the `nvidia/` files; an `mdev_supported_types/` directory
/// with no type in it is not told apart from none.
pub fn mdev_capable(dev: &PciDevice) -> bool {
    !dev.mdev_types.is_empty() || dev.nvidia_vgpu.is_some()
}

/// The `map` entry for `dev` on `node` at `path`: `id`, `iommugroup` (when the device is in
/// a group), `node`, `path`, `subsystem-id` (when both subsystem ids are there), in that
/// order, the sorted order the GUI writes (`PVE.Parser.printPropertyString`).
pub fn map_entry(dev: &PciDevice, node: &str, path: String) -> Result<MapEntry, AttachError> {
    let id = dev.vendor_device().ok_or_else(|| {
        AttachError::Refused(format!(
            "{}: its vendor or device id could not be read, and a mapping needs both (id=)",
            dev.address
        ))
    })?;
    let mut entry = vec![("id".to_string(), id)];
    if let Some(group) = &dev.iommu_group {
        // Proxmox reads the group as the number the iommu_group link ends in; a name that is
        // not one (noiommu) gives it no value to compare with.
        if group.is_empty() || !group.bytes().all(|b| b.is_ascii_digit()) {
            return Err(AttachError::Refused(format!(
                "{}: IOMMU group {group:?} is not a numbered group, which a Proxmox mapping needs (iommugroup=)",
                dev.address
            )));
        }
        entry.push(("iommugroup".to_string(), group.clone()));
    }
    entry.push(("node".to_string(), node.to_string()));
    entry.push(("path".to_string(), path));
    if let (Some(sv), Some(sd)) = (dev.subsystem_vendor, dev.subsystem_device) {
        entry.push(("subsystem-id".to_string(), format!("{sv}:{sd}")));
    }
    // The node name comes from the host (etc/hostname); it must still be one option value.
    for (k, v) in &entry {
        check_property_value(v).map_err(|why| AttachError::InvalidValue {
            option: format!("map {k}"),
            value: v.clone(),
            why,
        })?;
    }
    Ok(entry)
}

/// The value of `key` in a map entry.
pub fn prop<'a>(entry: &'a [(String, String)], key: &str) -> Option<&'a str> {
    entry
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The map entries of `m` for `node`.
pub fn node_entries<'a>(m: &'a PciMapping, node: &'a str) -> impl Iterator<Item = &'a MapEntry> {
    m.maps.iter().filter(move |e| prop(e, "node") == Some(node))
}

/// `map` as written in pci.cfg, for messages.
fn show(entry: &[(String, String)]) -> String {
    let parts: Vec<String> = entry.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("map {}", parts.join(","))
}

/// The functions an entry's `path` names, as qemu-server reads it: `;`-separated, a path
/// without a function is its function 0. `None` when one of them is not an address.
fn entry_functions(entry: &[(String, String)]) -> Option<Vec<PciAddress>> {
    prop(entry, "path")?
        .split(';')
        .map(|p| {
            let p = p.trim();
            let full = if p.contains('.') {
                p.to_string()
            } else {
                format!("{p}.0")
            };
            full.parse().ok()
        })
        .collect()
}

/// The mappings whose entries for `node` are there and name only functions in `set`: the
/// mappings that stand for those devices on this node.
pub fn mappings_naming_only(file: &PciMappingFile, node: &str, set: &[PciAddress]) -> Vec<String> {
    file.mappings()
        .iter()
        .filter(|m| {
            let mut entries = node_entries(m, node).peekable();
            entries.peek().is_some()
                && entries.all(|e| {
                    entry_functions(e).is_some_and(|fs| fs.iter().all(|f| set.contains(f)))
                })
        })
        .map(|m| m.id.clone())
        .collect()
}

/// Why an existing entry would fail Proxmox's start check against the VF `vf`, in this
/// command's words. The check is the project's one port of `assert_valid`
/// ([`crate::cluster::entry::check_entry`]); `mapping_mdev` is the mapping's `mdev` flag.
fn entry_mismatch(
    have: &[(String, String)],
    vf: &PciFunction,
    mapping_mdev: bool,
) -> Option<String> {
    let raw: Vec<String> = have.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let entry = match parse_entry(&raw.join(",")) {
        Ok(e) => e,
        Err(why) => return Some(why),
    };
    let problem = check_entry("", mapping_mdev, &entry, std::slice::from_ref(vf)).err()?;
    Some(match problem.property {
        Some((k, Some(hw), None)) => format!("it lacks {k}={hw}, which the hardware reports"),
        Some((k, None, Some(cfg))) => {
            format!("it has {k}={cfg}, which the hardware does not report")
        }
        Some((k, Some(hw), Some(cfg))) => format!("{k}={cfg}, but the hardware says {hw}"),
        _ => problem.message,
    })
}

/// What a pool needs from the mapping file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolChange {
    /// The mapping did not exist.
    pub created: bool,
    /// The VFs given an entry now.
    pub added: Vec<PciAddress>,
    /// The mapping's entries for this node afterwards: the pool's size.
    pub size: usize,
}

/// Makes mapping `name` in `file` the pool of `pf`'s VFs on `node`: created with one entry per
/// VF, or, when it exists, checked (every entry for this node a VF of `pf` that Proxmox's
/// start check would accept, and the same top-level `mdev`) and given the VFs it lacks.
/// Entries for other nodes are left as they are.
pub fn plan_pool(
    s: &Snapshot,
    file: &mut PciMappingFile,
    name: &str,
    pf: &PciDevice,
    node: &str,
) -> Result<PoolChange, AttachError> {
    let vfs = s.vfs_of(&pf.address);
    if vfs.is_empty() {
        return Err(AttachError::Refused(format!(
            "{} has no virtual functions now, so a pool of them would be empty: make them with `passthru share vfs {} --count N`",
            pf.address, pf.address
        )));
    }
    // `mdev` is one value for the whole mapping and Proxmox compares it with every entry.
    let mdev = mdev_capable(vfs[0]);
    if let Some(odd) = vfs.iter().find(|v| mdev_capable(v) != mdev) {
        return Err(AttachError::Refused(format!(
            "the VFs of {} differ in mdev capability ({} and {}): one mapping cannot hold both, since Proxmox checks its one mdev flag against each",
            pf.address, vfs[0].address, odd.address
        )));
    }
    let wanted: Vec<MapEntry> = vfs
        .iter()
        .map(|v| map_entry(v, node, v.address.to_string()))
        .collect::<Result<_, _>>()?;
    let existing = file.mappings().iter().find(|m| m.id == name).cloned();
    let mut present: Vec<PciAddress> = Vec::new();
    if let Some(m) = &existing {
        if m.flag("mdev") != mdev {
            return Err(AttachError::Refused(format!(
                "mapping '{name}' in {}: its mdev is {}, but the VFs of {} report {} (Proxmox refuses the VM start when they differ)",
                super::attach::MAPPING_FILE,
                u8::from(m.flag("mdev")),
                pf.address,
                u8::from(mdev)
            )));
        }
        for e in node_entries(m, node) {
            let foreign = || {
                AttachError::Refused(format!(
                    "mapping '{name}' in {} has the entry `{}` for node {node}, which is not a VF of {}: a pool holds only this card's VFs; give another mapping name, or remove that entry",
                    super::attach::MAPPING_FILE,
                    show(e),
                    pf.address
                ))
            };
            let fs = entry_functions(e).ok_or_else(foreign)?;
            let [f] = fs[..] else {
                return Err(foreign());
            };
            let k = vfs
                .iter()
                .position(|v| v.address == f)
                .ok_or_else(foreign)?;
            // `wanted` holds an entry for every VF, so each has its vendor and device ids.
            let hw = PciFunction::of_device(vfs[k], mdev).ok_or_else(foreign)?;
            if let Some(why) = entry_mismatch(e, &hw, mdev) {
                return Err(AttachError::Refused(format!(
                    "mapping '{name}' in {}: the entry `{}` does not match VF {f}: {why} (Proxmox would refuse the VM start: \"PCI device mapping invalid\"); fix or remove that entry",
                    super::attach::MAPPING_FILE,
                    show(e)
                )));
            }
            present.push(f);
        }
    }
    let mut change = PoolChange {
        created: existing.is_none(),
        ..PoolChange::default()
    };
    for (vf, entry) in vfs.iter().zip(wanted) {
        if !present.contains(&vf.address) {
            file.add_map(name, entry);
            change.added.push(vf.address);
        }
    }
    // A new mapping gets `mdev 1` only for mdev-capable VFs: Proxmox reads an absent mdev as
    // 0 (`$cluster_mapping_cfg->{mdev} ? 1 : 0` in assert_valid; schema default 0), which is
    // exactly what a plain VF reports, so nothing is written for one (as the GUI does when
    // its "Use with Mediated Devices" box is off).
    if change.created && mdev {
        file.add_property(name, "mdev", "1");
    }
    change.size = present.len() + change.added.len();
    Ok(change)
}

/// The VMs whose configs name mapping `name` (`hostpciN: mapping=NAME`).
pub fn vms_naming(
    entries: &[(u32, u8, crate::formats::pve_config::HostPci)],
    name: &str,
) -> Vec<u32> {
    let mut v: Vec<u32> = entries
        .iter()
        .filter(|(_, _, h)| h.mapping.as_deref() == Some(name))
        .map(|(id, _, _)| *id)
        .collect();
    v.dedup();
    v
}

/// The note when more VMs name the pool than it has VFs.
pub fn oversubscribed(name: &str, vms: usize, size: usize) -> Option<String> {
    (vms > size).then(|| {
        format!("{vms} VMs name pool {name} of {size} VFs: at most {size} can run at once (Proxmox: could not find a free device)")
    })
}

/// One pool of a PF's VFs as `list --gpus` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolUse {
    pub mapping: String,
    pub size: usize,
    pub vms: Vec<u32>,
}

/// The pools among the mappings: those whose entries for this node (etc/hostname) are all
/// in `vfs`, with the VMs that name them. Empty when the node or the file cannot be read:
/// this only reports.
pub fn pools_of(src: &dyn FileSource, vfs: &[PciAddress]) -> Vec<PoolUse> {
    let Ok(Some(node)) = super::attach::node_name(src) else {
        return Vec::new();
    };
    let Ok(file) = super::attach::read_mapping_file(src) else {
        return Vec::new();
    };
    let entries = super::attach_shared::vm_entries(src);
    mappings_naming_only(&file, &node, vfs)
        .into_iter()
        .map(|id| {
            let size = file
                .mappings()
                .iter()
                .find(|m| m.id == id)
                .map_or(0, |m| node_entries(m, &node).count());
            PoolUse {
                vms: vms_naming(&entries, &id),
                mapping: id,
                size,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(pairs: &[(&str, &str)]) -> MapEntry {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn mismatch_follows_assert_valid() {
        // The VF as the hardware reports it: 8086:46d1 in group 20, no subsystem ids.
        let hw = PciFunction {
            address: "0000:00:02.1".parse().unwrap(),
            class: 0x030000,
            vendor: "8086".into(),
            device: "46d1".into(),
            subsystem_vendor: None,
            subsystem_device: None,
            iommu_group: Some(20),
            mdev: false,
            vendor_name: None,
            device_name: None,
            physfn: None,
            virtfns: Vec::new(),
        };
        let at = [("node", "n"), ("path", "0000:00:02.1")];
        let want = e(&[[("id", "8086:46d1"), ("iommugroup", "20")].as_slice(), &at].concat());
        assert_eq!(entry_mismatch(&want, &hw, false), None);
        let hex = e(&[
            [("id", "0x8086:0x46d1"), ("iommugroup", "20")].as_slice(),
            &at,
        ]
        .concat());
        assert_eq!(entry_mismatch(&hex, &hw, false), None, "0x is stripped");
        let extra = e(&[
            [
                ("id", "8086:46d1"),
                ("iommugroup", "20"),
                ("subsystem-id", "1:2"),
            ]
            .as_slice(),
            &at,
        ]
        .concat());
        assert!(entry_mismatch(&extra, &hw, false)
            .unwrap()
            .contains("does not report"));
        let group = e(&[[("id", "8086:46d1"), ("iommugroup", "21")].as_slice(), &at].concat());
        assert!(entry_mismatch(&group, &hw, false)
            .unwrap()
            .contains("iommugroup=21"));
    }

    #[test]
    fn a_path_without_function_is_function_0() {
        let f = entry_functions(&e(&[("path", "0000:00:02;0000:00:02.3")])).unwrap();
        assert_eq!(f[0].to_string(), "0000:00:02.0");
        assert_eq!(f[1].to_string(), "0000:00:02.3");
        assert!(entry_functions(&e(&[("path", "zz")])).is_none());
    }
}
