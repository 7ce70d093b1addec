//! Proxmox's own per-guest locks: the files `qm` and `pct` `flock` (qemu-server
//! `PVE::QemuConfig::config_file_lock`: `/var/lock/qemu-server/lock-VMID.conf`; pve-container
//! `PVE::LXC::Config::config_file_lock`: `/run/lock/lxc/pve-config-CTID.lock`). passthru takes
//! them only after the user confirmed, names them when they are busy, and re-checks its plan
//! under them. The lock holder here is this test process, as a running `qm set` would be.

mod common;

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The RX 6800 XT host with Proxmox's own q35 VM config as VM 100 and a GUI-written GPU
/// container as CT 200.
fn pve_host() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    passthru_testkit::build_named("amd-navi", root).unwrap();
    std::fs::write(root.join("etc/hostname"), "pve1\n").unwrap();
    std::fs::create_dir_all(root.join("etc/pve/qemu-server")).unwrap();
    std::fs::copy(
        corpus().join("proxmox/qemu-server/cfg2cmd/q35-linux-hostpci.conf"),
        root.join("etc/pve/qemu-server/100.conf"),
    )
    .unwrap();
    let ex = corpus().join("proxmox/lxc-gpu-examples");
    let gui = std::fs::read_dir(&ex)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("04-"))
        .unwrap();
    let text = std::fs::read_to_string(gui).unwrap();
    let text = match text.strip_prefix("# SOURCE:") {
        Some(rest) => rest.split_once('\n').unwrap().1.to_string(),
        None => text,
    };
    std::fs::create_dir_all(root.join("etc/pve/lxc")).unwrap();
    std::fs::write(root.join("etc/pve/lxc/200.conf"), text).unwrap();
    dir
}

/// Holds a lock file as qm/pct would.
fn hold(root: &Path, rel: &str) -> File {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    let f = File::create(&p).unwrap();
    f.lock().unwrap();
    f
}

fn cmd(root: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_passthru"));
    c.args(args)
        .args(["--root", root.to_str().unwrap()])
        .env_remove("PASSTHRU_ROOT")
        .env("NO_COLOR", "1")
        .env("PASSTHRU_TEST_LOCK_WAIT_MS", "3000");
    c
}

const VM_LOCK: &str = "var/lock/qemu-server/lock-100.conf";
const CT_LOCK: &str = "run/lock/lxc/pve-config-200.lock";
const VM_CONF: &str = "etc/pve/qemu-server/100.conf";
const CT_CONF: &str = "etc/pve/lxc/200.conf";

#[test]
fn the_prompt_never_holds_the_guest_lock() {
    let t = pve_host();
    let root = t.path();
    let _qm = hold(root, VM_LOCK);
    // Not confirmed (standard input is not a terminal): it must stop at the question, at
    // once, without having waited for (or taken) the lock.
    let start = Instant::now();
    let o = cmd(root, &["vm", "attach", "100", "03:00.0", "--force"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("confirm with --yes"), "{err}");
    assert!(!err.contains("lock"), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "it waited for the lock before asking: {:?}",
        start.elapsed()
    );
}

#[test]
fn a_busy_guest_lock_is_named_and_nothing_is_written() {
    let t = pve_host();
    let root = t.path();
    for (lock, conf, args) in [
        (
            VM_LOCK,
            VM_CONF,
            &["vm", "attach", "100", "03:00.0", "--force", "--yes"][..],
        ),
        (
            CT_LOCK,
            CT_CONF,
            &["lxc", "unshare", "200", "03:00.0", "--yes"][..],
        ),
    ] {
        let before = std::fs::read(root.join(conf)).unwrap();
        let _held = hold(root, lock);
        let o = cmd(root, args)
            .env("PASSTHRU_TEST_LOCK_WAIT_MS", "300")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{lock}: {err}");
        assert!(err.contains(lock), "the error names {lock}: {err}");
        assert_eq!(std::fs::read(root.join(conf)).unwrap(), before, "{conf}");
    }
}

#[test]
fn the_plan_is_rechecked_under_the_guest_lock() {
    let t = pve_host();
    let root = t.path();
    let qm = hold(root, VM_LOCK);
    let mut child = cmd(
        root,
        &["vm", "attach", "100", "03:00.0", "--force", "--yes"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // Once the plan is shown, passthru is waiting for the lock: edit the config as `qm set`
    // holding it would, then let go.
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let shown = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.contains("hostpci"));
    assert!(shown, "the plan shows the hostpci line");
    let conf = root.join(VM_CONF);
    let mut edited = std::fs::read_to_string(&conf).unwrap();
    edited.push_str("description: edited by qm set while passthru waited\n");
    std::fs::write(&conf, &edited).unwrap();
    drop(qm);
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("changed since the plan was made"), "{err}");
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), edited);
}
