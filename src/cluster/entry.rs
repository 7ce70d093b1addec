//! PCI mapping entries, and the check qemu-server makes of them when a VM starts.
//!
//! An entry is a property string, `id=10de:2204,iommugroup=14,node=pve1,path=0000:01:00,
//! subsystem-id=1458:403b` (pve-guest-common `src/PVE/Mapping/PCI.pm`, `$map_fmt`), keys in
//! any order. `path` is one or more `;`-separated addresses with the domain; an address
//! without `.F` means the whole multifunction device and is checked as function `.0`.
//!
//! [`check_entry`] ports `PVE::Mapping::PCI::assert_valid` (PROXMOX-API.md §4.2): for each
//! path it compares `id`, `iommugroup` (first path only), `mdev` and `subsystem-id` in that
//! (sorted) order with what the hardware reports, and stops at the first difference with
//! Proxmox's own message, so `cluster check` says what `qm start` would say. A property
//! the hardware has and the entry lacks is an error too ("missing expected property"): a
//! mapping needs exactly the properties the hardware reports.
//!
//! Pure; no I/O.

use serde::Serialize;

use crate::formats::pve_config::parse_map_value;
use crate::model::PciAddress;
use crate::pve::api::PciFunction;

/// One `map` entry of a mapping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MapEntry {
    /// The entry as stored.
    pub raw: String,
    pub node: String,
    /// The `path` addresses as written (`0000:01:00`, `0000:01:00.0`).
    pub paths: Vec<String>,
    pub id: Option<String>,
    pub subsystem_id: Option<String>,
    pub iommugroup: Option<String>,
}

/// Parses a stored entry. `node` and `path` are required (`$map_fmt`); each path must be an
/// address with its domain.
pub fn parse_entry(raw: &str) -> Result<MapEntry, String> {
    let pairs = parse_map_value(raw)?;
    let get = |k: &str| {
        pairs
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let node = get("node").ok_or_else(|| format!("entry {raw:?} has no node="))?;
    let path = get("path").ok_or_else(|| format!("entry {raw:?} has no path="))?;
    let paths: Vec<String> = path.split(';').map(str::to_string).collect();
    if let Some(bad) = paths.iter().find(|p| path_address(p).is_none()) {
        return Err(format!(
            "entry {raw:?}: path {bad:?} is not an address with its domain (0000:01:00[.0])"
        ));
    }
    Ok(MapEntry {
        raw: raw.to_string(),
        node,
        paths,
        id: get("id"),
        subsystem_id: get("subsystem-id"),
        iommugroup: get("iommugroup"),
    })
}

/// The address a path is checked at: itself, or function `.0` of a whole device.
pub fn path_address(p: &str) -> Option<PciAddress> {
    if p.split(':').count() != 3 {
        return None; // the domain is mandatory in a mapping path
    }
    if p.contains('.') {
        p.parse().ok()
    } else {
        format!("{p}.0").parse().ok()
    }
}

/// Whether `path` covers the function at `a`: the same address, or any function of the
/// device when the path names the whole device.
pub fn path_covers(path: &str, a: &PciAddress) -> bool {
    match path_address(path) {
        Some(p) if !path.contains('.') => p.same_slot(a),
        Some(p) => p == *a,
        None => false,
    }
}

impl MapEntry {
    /// Whether the entry names the function at `a` (any of its paths).
    pub fn covers(&self, a: &PciAddress) -> bool {
        self.paths.iter().any(|p| path_covers(p, a))
    }
}

/// Why an entry does not match its node's hardware: the text qemu-server's `assert_valid`
/// dies with, which `qm start` shows after "PCI device mapping invalid (hardware probably
/// changed): ".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntryProblem {
    pub message: String,
    /// For a property that differs: which, what the hardware reports and what the entry
    /// says (`None`: absent). `None` when the device itself was not found.
    #[serde(skip)]
    pub property: Option<(String, Option<String>, Option<String>)>,
}

/// Checks one entry against its node's devices, as `assert_valid` does at VM start.
/// `mapping_mdev` is the mapping's top-level `mdev` (default 0).
pub fn check_entry(
    mapping_id: &str,
    mapping_mdev: bool,
    e: &MapEntry,
    devices: &[PciFunction],
) -> Result<(), EntryProblem> {
    let fail = |message: String| {
        Err(EntryProblem {
            message,
            property: None,
        })
    };
    let differs = |message: String, prop: &str, hw: Option<String>, cfg: Option<String>| {
        Err(EntryProblem {
            message,
            property: Some((prop.to_string(), hw, cfg)),
        })
    };
    for (i, path) in e.paths.iter().enumerate() {
        let Some(addr) = path_address(path) else {
            return fail(format!("pci device '{path}' not found"));
        };
        let Some(d) = devices.iter().find(|d| d.address == addr) else {
            return fail(format!("pci device '{path}' not found"));
        };
        // Sorted key order, as assert_valid walks them.
        let hw_mdev = if d.mdev { "1" } else { "0" };
        let cfg_mdev = if mapping_mdev { "1" } else { "0" };
        let props: [(&str, Option<String>, Option<String>); 4] = [
            ("id", Some(d.vendor_device()), e.id.clone()),
            (
                "iommugroup",
                if i == 0 {
                    d.iommu_group.map(|g| g.to_string())
                } else {
                    None
                },
                if i == 0 { e.iommugroup.clone() } else { None },
            ),
            ("mdev", Some(hw_mdev.into()), Some(cfg_mdev.into())),
            ("subsystem-id", d.subsystem_id(), e.subsystem_id.clone()),
        ];
        for (prop, hw, cfg) in props {
            // assert_valid removes every `0x` (`s/0x//g`, pve-guest-common PCI.pm), so
            // `0x8086:0x46d1` is `8086:46d1`.
            let strip = |s: &str| s.trim().replace("0x", "").to_ascii_lowercase();
            let message = match (&hw, &cfg) {
                (Some(_), None) => {
                    format!("missing expected property '{prop}' for device '{path}'")
                }
                (None, Some(_)) => {
                    format!("unexpected property '{prop}' configured for device '{path}'")
                }
                (Some(h), Some(c)) if strip(h) != strip(c) => {
                    format!("'{prop}' does not match for '{mapping_id}' ({h} != {c})")
                }
                _ => continue,
            };
            return differs(message, prop, hw, cfg);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(addr: &str, id: &str, sub: Option<&str>, group: Option<i64>, mdev: bool) -> PciFunction {
        let (v, d) = id.split_once(':').unwrap();
        let (sv, sd) = match sub.and_then(|s| s.split_once(':')) {
            Some((a, b)) => (Some(a.to_string()), Some(b.to_string())),
            None => (None, None),
        };
        PciFunction {
            address: addr.parse().unwrap(),
            class: 0x030000,
            vendor: v.into(),
            device: d.into(),
            subsystem_vendor: sv,
            subsystem_device: sd,
            iommu_group: group,
            mdev,
            vendor_name: None,
            device_name: None,
            physfn: None,
            virtfns: vec![],
        }
    }

    fn hw() -> Vec<PciFunction> {
        vec![
            dev(
                "0000:01:00.0",
                "10de:2204",
                Some("1458:403b"),
                Some(14),
                false,
            ),
            dev(
                "0000:01:00.1",
                "10de:1aef",
                Some("1458:403b"),
                Some(14),
                false,
            ),
            dev("0000:00:02.0", "8086:1912", None, None, true),
        ]
    }

    fn check(raw: &str, mdev: bool) -> Result<(), String> {
        let e = parse_entry(raw).unwrap();
        check_entry("gpu0", mdev, &e, &hw()).map_err(|p| p.message)
    }

    #[test]
    fn an_entry_that_matches_passes_keys_in_any_order() {
        check(
            "id=10de:2204,iommugroup=14,node=pve1,path=0000:01:00,subsystem-id=1458:403b",
            false,
        )
        .unwrap();
        check(
            "node=pve1,path=0000:01:00.0,subsystem-id=1458:403B,iommugroup=14,id=10DE:2204",
            false,
        )
        .unwrap();
        // No IOMMU group and no subsystem on the hardware: the entry must not have them.
        check("node=pve1,path=0000:00:02.0,id=8086:1912", true).unwrap();
    }

    #[test]
    fn each_difference_gives_the_message_qm_start_gives() {
        let base = "node=pve1,path=0000:01:00,subsystem-id=1458:403b";
        assert_eq!(
            check(&format!("{base},id=10de:2204,iommugroup=22"), false).unwrap_err(),
            "'iommugroup' does not match for 'gpu0' (14 != 22)"
        );
        assert_eq!(
            check(&format!("{base},id=10de:2504,iommugroup=14"), false).unwrap_err(),
            "'id' does not match for 'gpu0' (10de:2204 != 10de:2504)"
        );
        assert_eq!(
            check(
                "node=pve1,path=0000:01:00,id=10de:2204,subsystem-id=1458:403b",
                false
            )
            .unwrap_err(),
            "missing expected property 'iommugroup' for device '0000:01:00'"
        );
        assert_eq!(
            check(
                "node=pve1,path=0000:00:02.0,id=8086:1912,iommugroup=0",
                true
            )
            .unwrap_err(),
            "unexpected property 'iommugroup' configured for device '0000:00:02.0'"
        );
        assert_eq!(
            check("node=pve1,path=0000:00:02.0,id=8086:1912", false).unwrap_err(),
            "'mdev' does not match for 'gpu0' (1 != 0)"
        );
        assert_eq!(
            check("node=pve1,path=0000:41:00,id=10de:2204", false).unwrap_err(),
            "pci device '0000:41:00' not found"
        );
    }

    #[test]
    fn the_group_is_checked_on_the_first_path_only() {
        let mut devices = hw();
        devices.push(dev(
            "0000:02:00.0",
            "10de:2204",
            Some("1458:403b"),
            Some(15),
            false,
        ));
        let e = parse_entry(
            "node=pve1,path=0000:01:00.0;0000:02:00.0,id=10de:2204,iommugroup=14,subsystem-id=1458:403b",
        )
        .unwrap();
        assert_eq!(e.paths.len(), 2);
        check_entry("gpu0", false, &e, &devices).unwrap();
        let swapped = parse_entry(
            "node=pve1,path=0000:02:00.0;0000:01:00.0,id=10de:2204,iommugroup=14,subsystem-id=1458:403b",
        )
        .unwrap();
        assert!(check_entry("gpu0", false, &swapped, &devices).is_err());
    }

    #[test]
    fn paths_need_the_domain_and_cover_their_functions() {
        assert!(parse_entry("node=pve1,path=01:00.0,id=10de:2204").is_err());
        assert!(parse_entry("path=0000:01:00.0,id=10de:2204").is_err());
        let e = parse_entry("node=pve1,path=0000:01:00,id=10de:2204").unwrap();
        assert!(e.covers(&"0000:01:00.1".parse().unwrap()));
        let e = parse_entry("node=pve1,path=0000:01:00.0,id=10de:2204").unwrap();
        assert!(!e.covers(&"0000:01:00.1".parse().unwrap()));
    }
}
