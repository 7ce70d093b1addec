//! Runtime binding without a reboot (`passthru bind` / `unbind`): which sysfs files get which
//! values, in order, and what each device looked like when the plan was made. Pure;
//! `apply::runtime` re-checks the devices, journals what they held and performs the writes.
//!
//! Binding: for every endpoint of the card's groups, `vfio-pci` into `driver_override`, the
//! address into the current driver's `unbind`, then into `drivers_probe`. Unbinding clears
//! the override, unbinds from vfio-pci and probes again, so the host driver takes it back.
//! Refused while a process holds the GPU: unbinding a busy GPU can hang the host.

use serde::{Deserialize, Serialize};

use crate::check::{check_gpu, RuleId, Use};
use crate::model::{PciDevice, Snapshot};

/// How a write is undone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Restore {
    /// A setting (`driver_override`, `power/control`): undone by writing back what it held,
    /// which the journal saves before the write.
    Value,
    /// An action on the device its value names (`unbind`, `bind`, `drivers_probe`): it has no
    /// value to save; undone by giving the device back to the driver it had before.
    Binding,
    /// An action whose inverse is another action: a UUID into an mdev type's `create` is
    /// undone by `1` into that mdev's `remove`, and a removal by creating it again.
    Inverse(SysfsUndo),
}

/// The write that undoes an [`Restore::Inverse`] action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SysfsUndo {
    /// Root-relative path. The undo is skipped when it is absent: an mdev's `remove` goes
    /// with the mdev, so nothing is left to undo.
    pub path: String,
    pub value: String,
    /// Skipped when this root-relative path exists: the object is back already (creating an
    /// mdev whose UUID exists fails with EEXIST).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unless_exists: Option<String>,
}

/// One write to a sysfs attribute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SysfsWrite {
    /// Root-relative path.
    pub path: String,
    pub value: String,
    pub why: String,
    pub restore: Restore,
}

/// Which driver holds a PCI function, and its `driver_override`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DeviceState {
    /// `0000:01:00.0`.
    pub address: String,
    /// `None`: no driver bound.
    pub driver: Option<String>,
    /// `None`: unset (the kernel shows `(null)`).
    pub driver_override: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RuntimePlan {
    pub title: String,
    /// Each safety block `--force` overrode, shown right under the title.
    #[serde(default)]
    pub warnings: Vec<String>,
    pub writes: Vec<SysfsWrite>,
    /// Modules to load first (`modprobe vfio-pci`).
    pub modprobe: Vec<String>,
    /// Every function the writes touch, as the plan saw it. Apply refuses when one is no
    /// longer so (another tool rebound it), like a file that lost its `before` bytes.
    pub devices: Vec<DeviceState>,
    /// Whether and how the change outlasts a reboot, one sentence said under the writes;
    /// `None`: it lasts until the reboot, and `passthru setup` makes it permanent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lasting: Option<String>,
}

impl RuntimePlan {
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty() && self.modprobe.is_empty()
    }
}

fn state_of(d: &PciDevice) -> DeviceState {
    DeviceState {
        address: d.address.to_string(),
        driver: d.driver.clone(),
        driver_override: d.driver_override.clone(),
    }
}

fn override_path(address: &str) -> String {
    format!("sys/bus/pci/devices/{address}/driver_override")
}

/// The value that sets `driver_override` to `v`; an empty line clears it (writing nothing, or
/// `(null)`, does not).
fn override_value(v: Option<&str>) -> String {
    match v {
        Some(v) if !v.is_empty() && v != "(null)" => v.to_string(),
        _ => "\n".to_string(),
    }
}

/// Undoes a runtime transaction: every saved setting gets its old value back (newest first,
/// so `driver_override` is cleared before a driver is asked to bind), then every function
/// that is not on the driver it had is unbound from the one it has and bound to the old one.
/// `saved` holds (path, value before) of the `Value` writes; `now` the functions as they are.
pub fn plan_restore(
    title: &str,
    before: &[DeviceState],
    saved: &[(String, Option<String>)],
    now: &[DeviceState],
) -> RuntimePlan {
    plan_restore_with(title, before, saved, &[], now)
}

/// [`plan_restore`] with the inverse actions first (`inverses`: the undo of each
/// [`Restore::Inverse`] write, in the order they were written, already filtered to those
/// that still apply): the newest is undone first, before any setting goes back.
pub fn plan_restore_with(
    title: &str,
    before: &[DeviceState],
    saved: &[(String, Option<String>)],
    inverses: &[SysfsUndo],
    now: &[DeviceState],
) -> RuntimePlan {
    let mut plan = RuntimePlan {
        title: title.to_string(),
        devices: now.to_vec(),
        ..RuntimePlan::default()
    };
    for u in inverses.iter().rev() {
        plan.writes.push(SysfsWrite {
            path: u.path.clone(),
            value: u.value.clone(),
            why: "undo what it made or removed".into(),
            restore: Restore::Binding,
        });
    }
    for (path, old) in saved.iter().rev() {
        // An attribute that did not exist has nothing to go back to.
        let Some(old) = old else { continue };
        let old = old.trim_end();
        let value = if path.ends_with("/driver_override") {
            override_value(Some(old))
        } else {
            old.to_string()
        };
        plan.writes.push(SysfsWrite {
            path: path.clone(),
            value,
            why: "put back what it held".into(),
            restore: Restore::Value,
        });
    }
    for b in before {
        let current = now
            .iter()
            .find(|n| n.address == b.address)
            .and_then(|n| n.driver.clone());
        if current == b.driver {
            continue;
        }
        if let Some(c) = &current {
            plan.writes.push(SysfsWrite {
                path: format!("sys/bus/pci/drivers/{c}/unbind"),
                value: b.address.clone(),
                why: format!("release it from {c}"),
                restore: Restore::Binding,
            });
        }
        if let Some(o) = &b.driver {
            plan.writes.push(SysfsWrite {
                path: format!("sys/bus/pci/drivers/{o}/bind"),
                value: b.address.clone(),
                why: format!("give it back to {o}"),
                restore: Restore::Binding,
            });
        }
    }
    plan
}

fn devices_of<'a>(s: &'a Snapshot, gpu: &PciDevice) -> Vec<&'a PciDevice> {
    s.card_group_members(&gpu.address)
        .iter()
        .filter_map(|a| s.device(a))
        .filter(|d| !d.is_bridge())
        .collect()
}

/// Binds a GPU (and every endpoint of its groups) to vfio-pci now.
pub fn plan_bind(s: &Snapshot, sel: &str, force: bool) -> Result<RuntimePlan, String> {
    let gpu = crate::check::select_one(s, sel).map_err(|e| e.to_string())?;
    let g = check_gpu(s, gpu, force);
    // Binding now needs what a VM needs, except what only setup (a reboot) provides.
    let blocking = g.refusals(Use::Vm, &[RuleId::IommuKernelOff, RuleId::ConsoleInUse]);
    if !blocking.is_empty() {
        return Err(format!(
            "refusing to bind {}: {}",
            gpu.address,
            blocking.join("; ")
        ));
    }
    let mut plan = RuntimePlan {
        title: format!("Bind {} ({}) to vfio-pci now", gpu.address, gpu.names.name),
        warnings: g.forced(Use::Vm),
        ..RuntimePlan::default()
    };
    if s.system.module_loaded("vfio_pci") != Some(true)
        && s.system.module_builtin("vfio_pci") != Some(true)
    {
        plan.modprobe.push("vfio-pci".into());
    }
    for d in devices_of(s, gpu) {
        if d.driver.as_deref() == Some("vfio-pci") {
            continue;
        }
        plan.devices.push(state_of(d));
        plan.writes.push(SysfsWrite {
            path: override_path(&d.address.to_string()),
            value: "vfio-pci".into(),
            why: "only vfio-pci may take it".into(),
            restore: Restore::Value,
        });
        if let Some(drv) = &d.driver {
            plan.writes.push(SysfsWrite {
                path: format!("sys/bus/pci/drivers/{drv}/unbind"),
                value: d.address.to_string(),
                why: format!("release it from {drv}"),
                restore: Restore::Binding,
            });
        }
        plan.writes.push(SysfsWrite {
            path: "sys/bus/pci/drivers_probe".into(),
            value: d.address.to_string(),
            why: "let vfio-pci take it".into(),
            restore: Restore::Binding,
        });
    }
    Ok(plan)
}

/// Gives a GPU bound to vfio-pci back to its host driver now.
pub fn plan_unbind(s: &Snapshot, sel: &str) -> Result<RuntimePlan, String> {
    let gpu = crate::check::select_one(s, sel).map_err(|e| e.to_string())?;
    let mut plan = RuntimePlan {
        title: format!(
            "Give {} ({}) back to its host driver now",
            gpu.address, gpu.names.name
        ),
        ..RuntimePlan::default()
    };
    for d in devices_of(s, gpu) {
        let on_vfio = d.driver.as_deref() == Some("vfio-pci");
        let overridden = d.driver_override.as_deref() == Some("vfio-pci");
        if !on_vfio && !overridden {
            continue;
        }
        plan.devices.push(state_of(d));
        // An empty line clears driver_override; leaving it set is a known trap.
        plan.writes.push(SysfsWrite {
            path: override_path(&d.address.to_string()),
            value: override_value(None),
            why: "clear the override".into(),
            restore: Restore::Value,
        });
        if on_vfio {
            plan.writes.push(SysfsWrite {
                path: "sys/bus/pci/drivers/vfio-pci/unbind".into(),
                value: d.address.to_string(),
                why: "release it from vfio-pci".into(),
                restore: Restore::Binding,
            });
        }
        plan.writes.push(SysfsWrite {
            path: "sys/bus/pci/drivers_probe".into(),
            value: d.address.to_string(),
            why: "let its host driver take it back".into(),
            restore: Restore::Binding,
        });
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(address: &str, driver: Option<&str>, ov: Option<&str>) -> DeviceState {
        DeviceState {
            address: address.into(),
            driver: driver.map(Into::into),
            driver_override: ov.map(Into::into),
        }
    }

    fn steps(p: &RuntimePlan) -> Vec<String> {
        p.writes
            .iter()
            .map(|w| format!("{} < {:?}", w.path, w.value))
            .collect()
    }

    const OV: &str = "sys/bus/pci/devices/0000:01:00.0/driver_override";

    #[test]
    fn restore_after_a_bind_clears_the_override_then_rebinds_the_old_driver() {
        let before = [st("0000:01:00.0", Some("amdgpu"), None)];
        let saved = [(OV.to_string(), Some("(null)\n".to_string()))];
        // Interrupted after drivers_probe: on vfio-pci.
        let now = [st("0000:01:00.0", Some("vfio-pci"), Some("vfio-pci"))];
        assert_eq!(
            steps(&plan_restore("t", &before, &saved, &now)),
            [
                format!("{OV} < \"\\n\""),
                "sys/bus/pci/drivers/vfio-pci/unbind < \"0000:01:00.0\"".into(),
                "sys/bus/pci/drivers/amdgpu/bind < \"0000:01:00.0\"".into(),
            ]
        );
        // Interrupted after the unbind: no driver; only the bind back.
        let now = [st("0000:01:00.0", None, Some("vfio-pci"))];
        assert_eq!(
            steps(&plan_restore("t", &before, &saved, &now))[1..],
            ["sys/bus/pci/drivers/amdgpu/bind < \"0000:01:00.0\""]
        );
        // Interrupted before the unbind: the driver never moved.
        let now = [st("0000:01:00.0", Some("amdgpu"), Some("vfio-pci"))];
        assert_eq!(steps(&plan_restore("t", &before, &saved, &now)).len(), 1);
    }

    #[test]
    fn restore_after_an_unbind_gives_it_back_to_vfio_and_sets_the_override_again() {
        let before = [st("0000:01:00.0", Some("vfio-pci"), Some("vfio-pci"))];
        let saved = [(OV.to_string(), Some("vfio-pci\n".to_string()))];
        let now = [st("0000:01:00.0", Some("amdgpu"), None)];
        assert_eq!(
            steps(&plan_restore("t", &before, &saved, &now)),
            [
                format!("{OV} < \"vfio-pci\""),
                "sys/bus/pci/drivers/amdgpu/unbind < \"0000:01:00.0\"".into(),
                "sys/bus/pci/drivers/vfio-pci/bind < \"0000:01:00.0\"".into(),
            ]
        );
    }

    #[test]
    fn restore_puts_settings_back_newest_first_and_skips_absent_ones() {
        let saved = [
            ("a/power/control".to_string(), Some("auto\n".to_string())),
            ("b/power/control".to_string(), None),
            ("a/power/control".to_string(), Some("on\n".to_string())),
        ];
        assert_eq!(
            steps(&plan_restore("t", &[], &saved, &[])),
            ["a/power/control < \"on\"", "a/power/control < \"auto\""]
        );
    }
}
