//! `bind` / `unbind` are journaled transactions: what each setting held and which driver held
//! each function are saved before the first write, so an interrupted bind is undone by the
//! next run and a committed one by `passthru rollback`.
//!
//! In a fixture tree the sysfs attributes are plain files and no driver moves by itself. The
//! kernel's part is modelled here: after a run, [`kernel_moves`] reads what was written into
//! `unbind` / `drivers_probe` and re-points the functions' `driver` links as the kernel would
//! have. What cannot be modelled: a write the kernel refuses (EBUSY, ENODEV), or a driver that
//! fails to probe again; the QEMU guest test (scripts/qemu-lab/bind-test.sh) binds for real.

mod common;

use std::path::{Path, PathBuf};

use common::*;

const GPU: &str = "0000:00:02.0";
const HDA: &str = "0000:00:02.1";
/// The functions of the card in the order the bind plan writes them, with their drivers.
const FUNCTIONS: [(&str, &str); 2] = [(GPU, "bochs-drm"), (HDA, "snd_hda_intel")];

fn fixture_copy() -> tempfile::TempDir {
    let src = unpacked(&repo().join("tests/fixtures/qemu/intel-flat/root.tar.gz"));
    let dir = tempfile::tempdir().unwrap();
    assert!(std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", src.display()))
        .arg(dir.path())
        .status()
        .unwrap()
        .success());
    dir
}

fn dev(root: &Path, addr: &str, attr: &str) -> PathBuf {
    root.join("sys/bus/pci/devices").join(addr).join(attr)
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

fn driver_of(root: &Path, addr: &str) -> Option<String> {
    std::fs::read_link(dev(root, addr, "driver"))
        .ok()
        .map(|t| t.file_name().unwrap().to_string_lossy().into_owned())
}

fn set_driver(root: &Path, addr: &str, driver: Option<&str>) {
    let link = dev(root, addr, "driver");
    let _ = std::fs::remove_file(&link);
    if let Some(d) = driver {
        std::os::unix::fs::symlink(format!("../../../bus/pci/drivers/{d}"), &link).unwrap();
    }
}

/// What the kernel would have done with the bind writes found in the tree: a function whose
/// address is in its driver's `unbind` is released; one that was probed with
/// `driver_override` = vfio-pci is on vfio-pci. The bind plan writes the functions one after
/// the other, so a later function's override being set means an earlier one was probed.
/// Returns the functions that moved.
fn kernel_moves(root: &Path) -> Vec<&'static str> {
    let probe = read(&root.join("sys/bus/pci/drivers_probe"));
    let overridden: Vec<bool> = FUNCTIONS
        .iter()
        .map(|(a, _)| read(&dev(root, a, "driver_override")).trim() == "vfio-pci")
        .collect();
    let mut moved = Vec::new();
    for (i, (addr, drv)) in FUNCTIONS.iter().enumerate() {
        let released =
            read(&root.join(format!("sys/bus/pci/drivers/{drv}/unbind"))).trim() == *addr;
        let probed =
            overridden[i] && (probe.trim() == *addr || overridden[i + 1..].iter().any(|o| *o));
        if probed {
            set_driver(root, addr, Some("vfio-pci"));
            moved.push(*addr);
        } else if released {
            set_driver(root, addr, None);
            moved.push(*addr);
        }
    }
    moved
}

/// Puts a used copy back as [`fixture_copy`] made it (copying the tree takes seconds; the bind
/// touches only these files).
fn reset(root: &Path) {
    for (addr, drv) in FUNCTIONS {
        std::fs::write(dev(root, addr, "driver_override"), "(null)\n").unwrap();
        set_driver(root, addr, Some(drv));
    }
    for drv in ["bochs-drm", "snd_hda_intel", "vfio-pci"] {
        for action in ["bind", "unbind"] {
            let p = root.join(format!("sys/bus/pci/drivers/{drv}/{action}"));
            if p.exists() {
                std::fs::write(p, "").unwrap();
            }
        }
    }
    std::fs::write(root.join("sys/bus/pci/drivers_probe"), "").unwrap();
    let _ = std::fs::remove_dir_all(root.join("var/lib/passthru"));
}

fn bind(root: &Path, crash_at: Option<u32>) -> std::process::Output {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_passthru"));
    c.args(["bind", "00:02.0", "--yes", "--root", root.to_str().unwrap()])
        .env_remove("PASSTHRU_ROOT")
        .env("NO_COLOR", "1");
    if let Some(n) = crash_at {
        c.env("PASSTHRU_TEST_CRASH_AT", n.to_string());
    }
    c.output().unwrap()
}

/// The override as the kernel would show it after the restore: cleared (an empty line was
/// written) or never touched (`(null)`).
fn override_is_unset(root: &Path, addr: &str) -> bool {
    // The attribute is there (a real function always has one): only its value may be empty.
    let p = dev(root, addr, "driver_override");
    let v = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    v.trim().is_empty() || v.trim() == "(null)"
}

#[test]
fn bind_is_journaled_and_rollback_gives_the_functions_back() {
    let t = fixture_copy();
    let root = t.path();
    let o = bind(root, None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = stdout(&o);
    assert!(out.contains("Undo with: passthru rollback"), "{out}");
    let txs = passthru::apply::list_transactions(root).unwrap();
    let last = txs.last().expect("bind left a journaled transaction");
    assert_eq!(last.kind, "runtime");
    assert_eq!(last.state, passthru::apply::TxState::Committed);
    for (addr, _) in FUNCTIONS {
        assert_eq!(read(&dev(root, addr, "driver_override")), "vfio-pci");
    }
    // The kernel moves both functions to vfio-pci.
    assert_eq!(kernel_moves(root), [GPU, HDA]);

    let o = passthru(&["rollback", "--yes", "--root", root.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = stdout(&o);
    assert!(
        out.contains(&format!("{GPU}: back to driver bochs-drm")),
        "{out}"
    );
    for (addr, drv) in FUNCTIONS {
        assert!(override_is_unset(root, addr), "{addr}");
        assert_eq!(
            read(&root.join(format!("sys/bus/pci/drivers/{drv}/bind"))),
            addr,
            "{addr} is given back to {drv}"
        );
    }
    // Released from vfio-pci first (the last function written is the one left in the file).
    assert_eq!(read(&root.join("sys/bus/pci/drivers/vfio-pci/unbind")), HDA);
    let txs = passthru::apply::list_transactions(root).unwrap();
    assert!(txs
        .iter()
        .any(|t| t.kind == "runtime" && t.state == passthru::apply::TxState::RolledBack));
}

#[test]
fn a_bind_killed_at_any_point_is_undone_by_the_next_run() {
    let t = fixture_copy();
    let root = t.path();
    assert_eq!(
        read(&dev(root, GPU, "driver_override")),
        "(null)\n",
        "what reset() puts back"
    );
    let mut crashes = 0;
    for n in 1..200 {
        reset(root);
        let o = bind(root, Some(n));
        if o.status.success() {
            break;
        }
        assert_eq!(
            o.status.code(),
            None,
            "crash point {n}: it failed instead of crashing: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        crashes += 1;
        let moved = kernel_moves(root);
        // The next run (here `rollback`, which recovers first) puts everything back.
        let o = passthru(&["rollback", "--yes", "--root", root.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            o.status.success() || err.contains("no transaction to roll back"),
            "crash point {n}: {err}"
        );
        for (addr, drv) in FUNCTIONS {
            assert!(override_is_unset(root, addr), "crash point {n}: {addr}");
            let rebound = read(&root.join(format!("sys/bus/pci/drivers/{drv}/bind")));
            assert_eq!(
                rebound == addr,
                moved.contains(&addr),
                "crash point {n}: {addr} moved: {}, bound back: {rebound:?}",
                moved.contains(&addr)
            );
        }
        let txs = passthru::apply::list_transactions(root).unwrap();
        assert!(
            txs.iter().all(|t| !matches!(
                t.state,
                passthru::apply::TxState::Applying | passthru::apply::TxState::Written
            )),
            "crash point {n}: {txs:?}"
        );
    }
    eprintln!("{crashes} crash points exercised");
    assert!(crashes >= 10, "only {crashes} crash points in a bind");
}

#[test]
fn unbind_is_journaled_and_rolled_back_to_vfio() {
    let t = fixture_copy();
    let root = t.path();
    assert!(bind(root, None).status.success());
    kernel_moves(root);
    let o = passthru(&[
        "unbind",
        "00:02.0",
        "--yes",
        "--root",
        root.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The kernel gives both back to their host drivers.
    for (addr, drv) in FUNCTIONS {
        assert!(override_is_unset(root, addr));
        set_driver(root, addr, Some(drv));
    }
    // rollback undoes the unbind (the last transaction), not the bind.
    let o = passthru(&["rollback", "--yes", "--root", root.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for (addr, drv) in FUNCTIONS {
        assert_eq!(read(&dev(root, addr, "driver_override")), "vfio-pci");
        assert_eq!(
            read(&root.join(format!("sys/bus/pci/drivers/{drv}/unbind"))),
            addr
        );
    }
    assert_eq!(read(&root.join("sys/bus/pci/drivers/vfio-pci/bind")), HDA);
    assert_eq!(driver_of(root, GPU).as_deref(), Some("bochs-drm"));
}

fn plan_bind_of(root: &Path) -> passthru::plan::runtime::RuntimePlan {
    passthru::plan::runtime::plan_bind(&check_snapshot(root), "00:02.0", false).unwrap()
}

fn fixture_opts() -> passthru::apply::ApplyOptions {
    passthru::apply::ApplyOptions {
        run_commands: false,
    }
}

#[test]
fn a_function_rebound_since_the_plan_stops_the_bind_before_any_write() {
    let t = fixture_copy();
    let root = t.path();
    let plan = plan_bind_of(root);
    // Another tool moves the audio function meanwhile.
    set_driver(root, HDA, Some("vfio-pci"));
    let e = passthru::apply::apply_runtime(root, &plan, &fixture_opts()).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains(HDA) && msg.contains("changed since the plan"),
        "{msg}"
    );
    assert!(
        msg.contains("snd_hda_intel") && msg.contains("vfio-pci"),
        "{msg}"
    );
    for (addr, _) in FUNCTIONS {
        assert_eq!(read(&dev(root, addr, "driver_override")), "(null)\n");
    }
    assert!(passthru::apply::list_transactions(root).unwrap().is_empty());
}

#[test]
fn an_interrupted_bind_from_an_earlier_boot_is_not_undone() {
    let t = fixture_copy();
    let root = t.path();
    let boot_id = root.join("proc/sys/kernel/random/boot_id");
    std::fs::create_dir_all(boot_id.parent().unwrap()).unwrap();
    std::fs::write(&boot_id, "0b5c1f6e-1111-4a4a-9c9c-000000000001\n").unwrap();
    // Killed after the GPU's override was written (crash point 7: after the first write:
    // locked, manifest temporary, journal saved, its temporary, applying, before the write).
    let o = bind(root, Some(7));
    assert_eq!(
        o.status.code(),
        None,
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(read(&dev(root, GPU, "driver_override")), "vfio-pci");
    // A reboot: a new boot id, and the kernel starts with every override unset. Whatever the
    // admin set since must not be "restored" over.
    std::fs::write(&boot_id, "0b5c1f6e-2222-4a4a-9c9c-000000000002\n").unwrap();
    std::fs::write(dev(root, GPU, "driver_override"), "set-after-reboot").unwrap();
    let msgs = passthru::apply::recover(root).unwrap();
    assert!(
        msgs.iter().any(|m| m.contains("before the last reboot")),
        "{msgs:?}"
    );
    assert_eq!(read(&dev(root, GPU, "driver_override")), "set-after-reboot");
    let txs = passthru::apply::list_transactions(root).unwrap();
    assert_eq!(txs[0].state, passthru::apply::TxState::Abandoned);
}

#[test]
fn the_journal_saves_the_old_values_before_the_first_write() {
    let t = fixture_copy();
    let root = t.path();
    // Killed right after the first sysfs write: the manifest already holds what it replaced.
    let o = bind(root, Some(7));
    assert_eq!(o.status.code(), None);
    let txs = passthru::apply::list_transactions(root).unwrap();
    let m = &txs[0];
    assert_eq!(m.state, passthru::apply::TxState::Applying);
    let first = &m.runtime[0];
    assert_eq!(
        first.path,
        format!("sys/bus/pci/devices/{GPU}/driver_override")
    );
    assert_eq!(first.before.as_deref(), Some("(null)\n"));
    assert_eq!(
        m.devices
            .iter()
            .map(|d| (d.address.as_str(), d.driver.as_deref()))
            .collect::<Vec<_>>(),
        [(GPU, Some("bochs-drm")), (HDA, Some("snd_hda_intel"))]
    );
}

#[test]
fn manifests_written_before_runtime_transactions_still_load() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("var/lib/passthru/journal/20250101-120000-1");
    std::fs::create_dir_all(&dir).unwrap();
    // The manifest format of passthru 0.1 (files only).
    std::fs::write(
        dir.join("manifest.json"),
        r#"{
  "id": "20250101-120000-1",
  "kind": "apply",
  "title": "prepare 0000:03:00.0 for VM passthrough",
  "created": "2025-01-01T12:00:00Z",
  "state": "committed",
  "files": [
    {
      "path": "etc/modprobe.d/passthru-vfio.conf",
      "original": null,
      "after_digest": "00"
    }
  ],
  "commands": [],
  "steps": ["state Committed"],
  "command_log": []
}"#,
    )
    .unwrap();
    let txs = passthru::apply::list_transactions(t.path()).unwrap();
    assert_eq!(txs.len(), 1);
    assert!(!txs[0].is_runtime());
    assert!(txs[0].devices.is_empty() && txs[0].boot_id.is_none());
}
