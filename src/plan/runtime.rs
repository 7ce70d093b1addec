//! Runtime binding without a reboot (`passthru bind` / `unbind`): which sysfs files get which
//! values, in order. Pure; `apply::runtime` performs the writes.
//!
//! Binding: for every endpoint of the card's groups, `vfio-pci` into `driver_override`, the
//! address into the current driver's `unbind`, then into `drivers_probe`. Unbinding clears
//! the override, unbinds from vfio-pci and probes again, so the host driver takes it back.
//! Refused while a process holds the GPU: unbinding a busy GPU can hang the host.

use serde::Serialize;

use crate::check::{check_gpu, RuleId, Use};
use crate::model::{PciDevice, Snapshot};

/// One write to a sysfs attribute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SysfsWrite {
    /// Root-relative path.
    pub path: String,
    pub value: String,
    pub why: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RuntimePlan {
    pub title: String,
    pub writes: Vec<SysfsWrite>,
    /// Modules to load first (`modprobe vfio-pci`).
    pub modprobe: Vec<String>,
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
        let dir = format!("sys/bus/pci/devices/{}", d.address);
        plan.writes.push(SysfsWrite {
            path: format!("{dir}/driver_override"),
            value: "vfio-pci".into(),
            why: "only vfio-pci may take it".into(),
        });
        if let Some(drv) = &d.driver {
            plan.writes.push(SysfsWrite {
                path: format!("sys/bus/pci/drivers/{drv}/unbind"),
                value: d.address.to_string(),
                why: format!("release it from {drv}"),
            });
        }
        plan.writes.push(SysfsWrite {
            path: "sys/bus/pci/drivers_probe".into(),
            value: d.address.to_string(),
            why: "let vfio-pci take it".into(),
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
        let dir = format!("sys/bus/pci/devices/{}", d.address);
        // An empty line clears driver_override; leaving it set is a known trap.
        plan.writes.push(SysfsWrite {
            path: format!("{dir}/driver_override"),
            value: "\n".into(),
            why: "clear the override".into(),
        });
        if on_vfio {
            plan.writes.push(SysfsWrite {
                path: "sys/bus/pci/drivers/vfio-pci/unbind".into(),
                value: d.address.to_string(),
                why: "release it from vfio-pci".into(),
            });
        }
        plan.writes.push(SysfsWrite {
            path: "sys/bus/pci/drivers_probe".into(),
            value: d.address.to_string(),
            why: "let its host driver take it back".into(),
        });
    }
    Ok(plan)
}
