//! Runtime transactions: the sysfs writes of `bind` / `unbind` (and any other setting that
//! lasts until the next reboot), journaled so that an interrupted one is undone.
//!
//! Order of work, under the host lock ([`super::begin`]):
//! 1. undo whatever a crash interrupted (before the command reads the devices to plan);
//! 2. re-read every function the plan touches: a driver or `driver_override` that is no longer
//!    what the plan saw stops everything before a byte is written;
//! 3. save in the journal, fsynced, what every setting holds (`driver_override`,
//!    `power/control`...) and which driver holds every function, with the boot id; mark it
//!    `applying`;
//! 4. load the modules the plan needs, then write each attribute in order (one `write(2)`
//!    each, as the kernel wants; never a temporary file and a rename, which sysfs does not
//!    have), a journal step after each;
//! 5. mark it `committed`.
//!
//! Undoing (after a failed write, on recovery, or by `rollback`) is itself a plan,
//! `plan::runtime::plan_restore`, made from the journal and the functions as they are now:
//! settings get their saved values back, then each function that is not on the driver it had
//! is unbound and bound to that driver; before all that, an action with an inverse (an mdev
//! made) is undone by its inverse (the mdev removed) while its object is as the action left it. Every step of it is idempotent, so an undo that is
//! itself interrupted is simply done again. A transaction from an earlier boot is not undone:
//! the reboot did that.
//!
//! Under a fixture root the attributes are plain files: a write replaces the file's content
//! (creating it if needed) and no driver moves, so only what is written can be checked there.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use super::journal::{Journal, Manifest, RuntimeRecord};
use super::{crash_point, ApplyError, ApplyOptions, ApplyOutcome, TxState};
use crate::plan::runtime::{plan_restore_with, DeviceState, Restore, RuntimePlan, SysfsUndo};

/// Whether `root` is this machine's own `/`, where sysfs is the kernel's.
pub fn is_live_root(root: &Path) -> bool {
    fs::canonicalize(root).is_ok_and(|p| p == Path::new("/"))
}

/// The current boot's id (`None` where the root has none, as most fixture roots).
pub fn read_boot_id(root: &Path) -> Option<String> {
    fs::read_to_string(root.join("proc/sys/kernel/random/boot_id"))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Reads an attribute, `None` when absent.
fn read_attribute(root: &Path, rel: &str) -> Result<Option<String>, ApplyError> {
    let path = root.join(rel);
    match fs::read(&path) {
        Ok(b) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ApplyError::Io {
            op: "reading",
            path,
            err: e,
        }),
    }
}

/// Which driver holds a function now, and its `driver_override`.
pub fn read_device_state(root: &Path, address: &str) -> Result<DeviceState, ApplyError> {
    let dir = format!("sys/bus/pci/devices/{address}");
    let link = root.join(&dir).join("driver");
    let driver = match fs::read_link(&link) {
        Ok(target) => target.file_name().map(|n| n.to_string_lossy().into_owned()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(ApplyError::Io {
                op: "reading the driver link",
                path: link,
                err: e,
            })
        }
    };
    let driver_override = read_attribute(root, &format!("{dir}/driver_override"))?
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty() && s != "(null)");
    Ok(DeviceState {
        address: address.to_string(),
        driver,
        driver_override,
    })
}

/// One write(2) of the whole value. On the live host the attribute must exist (creating a
/// file in sysfs is impossible, and a missing one means the device or driver is gone).
fn write_attribute(root: &Path, rel: &str, value: &str, live: bool) -> Result<(), ApplyError> {
    let path = root.join(rel);
    let mut opts = fs::OpenOptions::new();
    opts.write(true);
    if !live {
        opts.create(true).truncate(true);
    }
    opts.open(&path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|e| ApplyError::Io {
            op: "writing to",
            path,
            err: e,
        })
}

fn show(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "none".into())
}

/// Applies a runtime plan as one journaled transaction (see the module docs): [`super::begin`],
/// then [`super::HostSession::apply_runtime`].
pub fn apply_runtime(
    root: &Path,
    plan: &RuntimePlan,
    opts: &ApplyOptions,
) -> Result<ApplyOutcome, ApplyError> {
    let session = super::begin(root, opts)?;
    let mut outcome = session.apply_runtime(plan)?;
    outcome.recovered = session.recovered().to_vec();
    Ok(outcome)
}

pub(super) fn apply_runtime_locked(
    root: &Path,
    plan: &RuntimePlan,
    opts: &ApplyOptions,
    kind: &str,
    rolls_back: Option<&str>,
) -> Result<ApplyOutcome, ApplyError> {
    let mut outcome = ApplyOutcome::default();
    // Nothing is written unless every function is still as the plan saw it.
    for planned in &plan.devices {
        let now = read_device_state(root, &planned.address)?;
        if now.driver != planned.driver || now.driver_override != planned.driver_override {
            return Err(ApplyError::DeviceChanged {
                device: planned.address.clone(),
                expected: format!(
                    "driver {}, driver_override {}",
                    show(&planned.driver),
                    show(&planned.driver_override)
                ),
                found: format!(
                    "driver {}, driver_override {}",
                    show(&now.driver),
                    show(&now.driver_override)
                ),
            });
        }
    }
    if plan.is_empty() {
        return Ok(outcome);
    }
    let mut records = Vec::new();
    for w in &plan.writes {
        let before = match w.restore {
            Restore::Value => read_attribute(root, &w.path)?,
            Restore::Binding | Restore::Inverse(_) => None,
        };
        records.push(RuntimeRecord {
            path: w.path.clone(),
            value: w.value.clone(),
            restore: w.restore.clone(),
            before,
        });
    }
    let mut j = Journal::create_runtime(
        root,
        &plan.title,
        kind,
        records,
        plan.devices.clone(),
        read_boot_id(root),
    )?;
    crash_point("journal saved");
    if let Some(target) = rolls_back {
        j.record_rolls_back(target)?;
    }
    j.set_state(TxState::Applying)?;
    crash_point("marked applying");
    outcome.id = Some(j.manifest.id.clone());

    let live = is_live_root(root);
    let result = load_modules(plan, opts, &mut j, &mut outcome).and_then(|()| {
        for w in &plan.writes {
            crash_point("before sysfs write");
            write_attribute(root, &w.path, &w.value, live)?;
            crash_point("after sysfs write");
            outcome.written.push(w.path.clone());
            j.record_step(&format!("wrote {:?} to {}", w.value.trim_end(), w.path))?;
        }
        Ok(())
    });
    super::finish(
        &mut j,
        result,
        outcome,
        |j| undo_runtime(root, &j.manifest),
        |failure| ApplyError::RuntimeUndone { failure },
    )
}

fn load_modules(
    plan: &RuntimePlan,
    opts: &ApplyOptions,
    j: &mut Journal,
    outcome: &mut ApplyOutcome,
) -> Result<(), ApplyError> {
    for m in &plan.modprobe {
        let argv = vec!["modprobe".to_string(), m.clone()];
        if !opts.run_commands {
            super::commands::record_skipped(&argv, j, outcome)?;
            continue;
        }
        match super::commands::run_recorded(&argv, j)? {
            Ok(code) => outcome.commands_run.push((argv, code)),
            Err(failure) => return Err(ApplyError::Refused(failure)),
        }
    }
    Ok(())
}

/// The plan that undoes a runtime transaction, from its journal and the functions as they
/// are now.
pub(super) fn restore_plan(root: &Path, m: &Manifest) -> Result<RuntimePlan, ApplyError> {
    let now = m
        .devices
        .iter()
        .map(|d| read_device_state(root, &d.address))
        .collect::<Result<Vec<_>, _>>()?;
    let saved: Vec<(String, Option<String>)> = m
        .runtime
        .iter()
        .filter(|r| r.restore == Restore::Value)
        .map(|r| (r.path.clone(), r.before.clone()))
        .collect();
    // An inverse is undone only while its object is as the write left it: the mdev is still
    // there to remove (its `remove` exists), or still gone to make again. That also covers
    // a crash between a write and its journal step, so every record is considered.
    let inverses: Vec<SysfsUndo> = m
        .runtime
        .iter()
        .filter_map(|r| match &r.restore {
            Restore::Inverse(u) => Some(u.clone()),
            _ => None,
        })
        .filter(|u| {
            root.join(&u.path).exists()
                && !u
                    .unless_exists
                    .as_ref()
                    .is_some_and(|p| root.join(p).exists())
        })
        .collect();
    Ok(plan_restore_with(
        &format!("roll back {} ({})", m.id, m.title),
        &m.devices,
        &saved,
        &inverses,
        &now,
    ))
}

/// Undoes a runtime transaction in place (after a failure, or on recovery).
pub(super) fn undo_runtime(root: &Path, m: &Manifest) -> Result<(), ApplyError> {
    let plan = restore_plan(root, m)?;
    let live = is_live_root(root);
    for w in &plan.writes {
        write_attribute(root, &w.path, &w.value, live)?;
    }
    Ok(())
}

/// Whether a runtime transaction was made in an earlier boot (then the reboot undid it).
pub(super) fn from_earlier_boot(root: &Path, m: &Manifest) -> bool {
    match (&m.boot_id, read_boot_id(root)) {
        (Some(then), Some(now)) => *then != now,
        _ => false,
    }
}
