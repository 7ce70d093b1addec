//! `passthru share mdev PARENT --type TYPE --count N [--now]`: N mediated devices of one
//! type that exist at every boot (a file plan) and, with `--now`, at once (a runtime plan).
//! Pure, like `share vfs`.
//!
//! An mdev is made by writing a UUID to `<parent>/mdev_supported_types/<type>/create` and
//! removed by writing `1` to `sys/bus/mdev/devices/<uuid>/remove`
//! (Documentation/driver-api/vfio-mediated-device.rst; drivers/vfio/mdev/mdev_sysfs.c
//! `create_store` takes the 36-character UUID with or without a newline). libvirt uses
//! mdevs that exist (its `<hostdev type='mdev'>` names the UUID), so they must be there
//! before a domain starts; Proxmox instead makes one at VM start from `hostpciN: …,mdev=`
//! and passthru refuses to make them there (they would take the instances Proxmox needs).
//!
//! The UUIDs are derived from the parent, the type and the instance's number, so the plan is
//! the same every time: running it again changes nothing, a larger count keeps the
//! instances a domain already names, and `--now` finds its own instances among others'.
//!
//! What persists is a udev rule per parent and type
//! (`etc/udev/rules.d/61-passthru-mdev-<parent>-<type>.rules`). The kernel announces a
//! parent with a `change` event carrying `MDEV_STATE=registered` (mdev_core.c
//! `mdev_register_parent`); a parent registered before udevd started (a driver loaded in the
//! initramfs) is seen at coldplug's `add` event. Either way the rule creates each instance
//! that is not there yet.

use sha2::{Digest, Sha256};

use crate::check::select_one;
use crate::model::{MdevParentRef, PciAddress, Snapshot};

use super::runtime::{Restore, RuntimePlan, SysfsUndo, SysfsWrite};
use super::share::ShareError;
use super::source::FileSource;
use super::{file_edit, Plan, PlannedCommand};

/// More instances than any parent offers (an NVIDIA P40 offers 24 of its smallest type,
/// mtty 24 ports): the bound on `--count`, and how far `--now` looks for its own UUIDs.
pub const MAX_INSTANCES: u32 = 64;

/// What the user asked.
#[derive(Debug, Clone)]
pub struct ShareMdevRequest {
    /// The parent: a virtual parent's name (`mtty`), a PCI address or a GPU selector.
    pub parent: String,
    /// The type id (`mdev_supported_types/<id>`).
    pub mdev_type: String,
    pub count: u32,
}

/// The rule file for one parent and type.
pub fn mdev_rule_file(parent: &str, mdev_type: &str) -> String {
    format!("etc/udev/rules.d/61-passthru-mdev-{parent}-{mdev_type}.rules")
}

/// The UUID of instance `index` of `mdev_type` on `parent`: RFC 9562 version 8 (custom),
/// its bits from SHA-256 of the three. Stable across runs and hosts; unique per host, which
/// is all an mdev UUID must be.
pub fn instance_uuid(parent: &str, mdev_type: &str, index: u32) -> String {
    let mut h = Sha256::new();
    h.update(format!("passthru mdev\n{parent}\n{mdev_type}\n{index}").as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x80; // version 8
    b[8] = (b[8] & 0x3f) | 0x80; // variant 10
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// How many of passthru's instances of `ty` on `parent` are live now: `share mdev … --count`
/// one more than this makes one more.
pub fn own_live_count(s: &Snapshot, parent: &str, ty: &str) -> u32 {
    let live = live_instances(s, parent, ty);
    (0..MAX_INSTANCES)
        .filter(|&i| live.contains(&instance_uuid(parent, ty, i).as_str()))
        .count() as u32
}

/// The UUIDs of the live instances of `ty` on `parent`, whoever made them.
fn live_instances<'a>(s: &'a Snapshot, parent: &'a str, ty: &'a str) -> Vec<&'a str> {
    s.sharing
        .mdevs_named(parent)
        .filter(|m| m.mdev_type.as_deref() == Some(ty))
        .map(|m| m.uuid.as_str())
        .collect()
}

/// A parent and type as a sysfs name may be written: what the kernel makes them of. A name
/// from the user is checked before it goes into a path or a udev rule.
fn check_name(what: &str, v: &str) -> Result<(), String> {
    let ok = !v.is_empty()
        && v.len() <= 64
        && !v.starts_with('.')
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} '{v}' is not a sysfs name (letters, digits, - _ . : only)"
        ))
    }
}

fn refused(device: &str, why: impl Into<String>) -> ShareError {
    ShareError::Refused {
        device: device.to_string(),
        why: why.into(),
    }
}

/// The mdev parent `sel` names: a virtual parent's name (`mtty`), a PCI function's address,
/// else the GPU it selects. A PCI function that offers no types comes back with none, for the
/// caller to refuse in its own words.
pub fn select_mdev_parent<'a>(
    s: &'a Snapshot,
    sel: &str,
) -> Result<MdevParentRef<'a>, crate::check::SelectError> {
    let parents = s.mdev_parents();
    if let Some(p) = parents.iter().find(|p| p.name == sel) {
        return Ok(p.clone());
    }
    let dev = match sel.parse::<PciAddress>().ok().and_then(|a| s.device(&a)) {
        Some(d) => d,
        None => select_one(s, sel)?,
    };
    Ok(parents
        .into_iter()
        .find(|p| p.pci.is_some_and(|d| d.address == dev.address))
        .unwrap_or(MdevParentRef {
            name: dev.address.to_string(),
            pci: Some(dev),
            dir: format!("sys/bus/pci/devices/{}", dev.address),
            types: &[],
        }))
}

/// The parent the request names ([`select_mdev_parent`]); it must offer the type.
fn find_parent<'a>(
    s: &'a Snapshot,
    req: &ShareMdevRequest,
) -> Result<MdevParentRef<'a>, ShareError> {
    check_name("the parent", &req.parent).map_err(|w| refused(&req.parent, w))?;
    check_name("the type", &req.mdev_type).map_err(|w| refused(&req.parent, w))?;
    let parent = select_mdev_parent(s, &req.parent)?;
    if parent.types.is_empty() {
        let others: Vec<String> = s.mdev_parents().into_iter().map(|p| p.name).collect();
        return Err(refused(
            &parent.name,
            format!(
                "it offers no mediated devices (no mdev_supported_types: its driver does not make mdevs){}",
                if others.is_empty() {
                    String::new()
                } else {
                    format!("; the parents here are {}", others.join(", "))
                }
            ),
        ));
    }
    if parent.mdev_type(&req.mdev_type).is_none() {
        return Err(refused(
            &parent.name,
            format!(
                "it offers no mdev type '{}' (it offers {})",
                req.mdev_type,
                parent.type_ids().join(", ")
            ),
        ));
    }
    if s.system.proxmox.is_some() {
        return Err(refused(
            &parent.name,
            format!(
                "this is a Proxmox host, which makes an mdev when its VM starts and removes it at stop: instances made ahead would take the ones it needs. Use passthru vm attach VMID {} --mdev {}",
                parent.name, req.mdev_type
            ),
        ));
    }
    if req.count > MAX_INSTANCES {
        return Err(refused(
            &parent.name,
            format!("--count {} is more than {MAX_INSTANCES}", req.count),
        ));
    }
    Ok(parent)
}

/// The persistent part: the udev rule (none for `--count 0`).
pub fn plan_share_mdev(
    s: &Snapshot,
    src: &dyn FileSource,
    req: &ShareMdevRequest,
) -> Result<Plan, ShareError> {
    let parent = find_parent(s, req)?;
    let ty = &req.mdev_type;
    let mut plan = Plan {
        title: if req.count == 0 {
            format!(
                "Stop making {ty} mediated devices on {} at boot",
                parent.name
            )
        } else {
            format!(
                "Make {} {ty} mediated {} on {} at every boot",
                req.count,
                if req.count == 1 { "device" } else { "devices" },
                parent.name
            )
        },
        ..Plan::default()
    };
    let rule = (req.count > 0).then(|| render_mdev_rule(&parent, ty, req.count).into_bytes());
    plan.edits.extend(file_edit(
        src,
        &mdev_rule_file(&parent.name, ty),
        rule,
        0o644,
        if req.count == 0 {
            "no instances at boot"
        } else {
            "make the instances when the parent registers, with UUIDs that stay the same"
        },
    )?);
    if !plan.edits.is_empty() {
        plan.commands.push(PlannedCommand {
            argv: vec!["udevadm".into(), "control".into(), "--reload".into()],
            why: "load the rule".into(),
        });
        plan.notes.push(if req.count == 0 {
            format!(
                "The instances stay until the next boot, or go now with passthru share mdev {} --type {ty} --count 0 --now.",
                parent.name
            )
        } else {
            format!(
                "The instances appear at the next boot, or now with --now. Their UUIDs: {}.",
                (0..req.count)
                    .map(|i| instance_uuid(&parent.name, ty, i))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        });
    }
    Ok(plan)
}

/// The rule: for each instance, create it when the parent's type directory is there and the
/// instance is not (the TEST keys keep a repeated event from failing with EEXIST).
pub fn render_mdev_rule(parent: &MdevParentRef<'_>, mdev_type: &str, count: u32) -> String {
    let p = &parent.name;
    let mut out = format!(
        "# Written by passthru share mdev {p} --type {mdev_type} --count {count};\n\
         # `passthru share mdev {p} --type {mdev_type} --count 0` or `passthru rollback` takes it away.\n\
         # The kernel sends `change` with MDEV_STATE=registered when {p} registers its types;\n\
         # a parent registered before udevd started is seen at coldplug's `add`.\n"
    );
    for i in 0..count {
        let u = instance_uuid(p, mdev_type, i);
        out.push_str(&format!(
            "ACTION==\"add|change\", KERNEL==\"{p}\", TEST==\"mdev_supported_types/{mdev_type}/create\", TEST!=\"/sys/bus/mdev/devices/{u}\", ATTR{{mdev_supported_types/{mdev_type}/create}}=\"{u}\"\n"
        ));
    }
    out
}

/// The part that happens now: the instances passthru's UUIDs name below the count made,
/// those at or above it removed. Instances with other UUIDs are left alone (a note says so).
pub fn plan_share_mdev_now(
    s: &Snapshot,
    req: &ShareMdevRequest,
) -> Result<(RuntimePlan, Vec<String>), ShareError> {
    let parent = find_parent(s, req)?;
    let ty = &req.mdev_type;
    let p = &parent.name;
    let live = live_instances(s, p, ty);
    let ours = |u: &str| (0..MAX_INSTANCES).position(|i| instance_uuid(p, ty, i) == u);
    let create = format!("{}/mdev_supported_types/{ty}/create", parent.dir);
    let mut plan = RuntimePlan {
        title: match req.count {
            0 => format!("Remove passthru's {ty} mediated devices on {p} now"),
            1 => format!("Make 1 {ty} mediated device on {p} now"),
            n => format!("Make {n} {ty} mediated devices on {p} now"),
        },
        lasting: Some(if req.count == 0 {
            "Without the rule, none are made at the next boot either.".to_string()
        } else {
            format!(
                "They last until the next reboot; the udev rule ({}) makes them at every boot.",
                mdev_rule_file(p, ty)
            )
        }),
        ..RuntimePlan::default()
    };
    let mut notes = Vec::new();
    let missing: Vec<String> = (0..req.count)
        .map(|i| instance_uuid(p, ty, i))
        .filter(|u| !live.contains(&u.as_str()))
        .collect();
    let available = parent.mdev_type(ty).and_then(|t| t.available_instances);
    match available {
        Some(n) if (n as usize) < missing.len() => {
            return Err(refused(
                p,
                format!(
                    "{ty} has {n} {} free (available_instances) and {} more {} needed",
                    if n == 1 { "instance" } else { "instances" },
                    missing.len(),
                    if missing.len() == 1 { "is" } else { "are" }
                ),
            ))
        }
        None if !missing.is_empty() => {
            return Err(refused(
                p,
                format!("available_instances of {ty} could not be read"),
            ))
        }
        _ => {}
    }
    for u in &missing {
        plan.writes.push(SysfsWrite {
            path: create.clone(),
            value: u.clone(),
            why: "make the instance".into(),
            restore: Restore::Inverse(SysfsUndo {
                path: format!("sys/bus/mdev/devices/{u}/remove"),
                value: "1".into(),
                unless_exists: None,
            }),
        });
    }
    for u in &live {
        match ours(u) {
            Some(i) if (i as u32) >= req.count => plan.writes.push(SysfsWrite {
                path: format!("sys/bus/mdev/devices/{u}/remove"),
                value: "1".into(),
                why: "remove the instance".into(),
                restore: Restore::Inverse(SysfsUndo {
                    path: create.clone(),
                    value: u.to_string(),
                    unless_exists: Some(format!("sys/bus/mdev/devices/{u}")),
                }),
            }),
            Some(_) => {}
            None => notes.push(format!(
                "{ty} instance {u} on {p} was not made by passthru: left alone."
            )),
        }
    }
    Ok((plan, notes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_uuids_are_version_8_stable_and_distinct() {
        let a = instance_uuid("mtty", "mtty-2", 0);
        assert_eq!(a, instance_uuid("mtty", "mtty-2", 0));
        assert_ne!(a, instance_uuid("mtty", "mtty-2", 1));
        assert_ne!(a, instance_uuid("mtty", "mtty-1", 0));
        assert_ne!(a, instance_uuid("0000:00:02.0", "mtty-2", 0));
        let parts: Vec<&str> = a.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('8'), "{a}: version nibble");
        assert!(
            matches!(&parts[3][..1], "8" | "9" | "a" | "b"),
            "{a}: variant"
        );
        assert!(a
            .chars()
            .all(|c| c == '-' || c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    }

    #[test]
    fn names_that_could_leave_a_path_or_a_rule_are_refused() {
        for bad in ["", "..", ".x", "a/b", "a\"b", "a b", "a\nb", "a,b", "a{b}"] {
            assert!(check_name("x", bad).is_err(), "{bad:?} accepted");
        }
        for good in [
            "mtty",
            "mtty-2",
            "i915-GVTg_V5_4",
            "nvidia-63",
            "0000:00:02.0",
        ] {
            assert!(check_name("x", good).is_ok(), "{good:?} refused");
        }
    }
}
