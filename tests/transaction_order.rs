//! The order of a writing command: host lock, recovery, then the plan (made from the
//! recovered files), show, confirm, guest locks, digest re-check, apply. And the locks: the
//! Proxmox lock of every guest config a plan edits, VMs and containers alike, and a rollback
//! killed after its commit that ends in one consistent state.

mod common;

use std::fs::File;
use std::path::Path;
use std::process::{Command, Output};

use common::*;

fn corpus_text(rel: &str) -> String {
    let text = std::fs::read_to_string(corpus().join(rel)).unwrap();
    match text.strip_prefix("# SOURCE:") {
        Some(rest) => rest.split_once('\n').unwrap().1.to_string(),
        None => text,
    }
}

/// The RX 6800 XT Proxmox host with VM 100 (plain, or holding the card) and CT 200 (sharing
/// the card, or not).
fn pve(vm_has_card: bool, ct_has_card: bool) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    passthru_testkit::build_named("amd-navi", root).unwrap();
    std::fs::write(root.join("etc/hostname"), "pve1\n").unwrap();
    let mut vm = corpus_text("proxmox/qemu-server/parse-config-input/plain.conf");
    if vm_has_card {
        vm.push_str("hostpci0: 0000:03:00,pcie=1\n");
    }
    let mut ct = corpus_text("proxmox/lxc-gpu-examples/04-pironex9-pve8-devN-passthrough.conf");
    if !ct_has_card {
        ct = ct
            .replace("dev0: /dev/dri/card0,gid=993\n", "")
            .replace("dev1: /dev/dri/renderD128,gid=993\n", "");
    }
    for (rel, text) in [
        ("etc/pve/qemu-server/100.conf", vm),
        ("etc/pve/lxc/200.conf", ct),
    ] {
        std::fs::create_dir_all(root.join(rel).parent().unwrap()).unwrap();
        std::fs::write(root.join(rel), text).unwrap();
    }
    d
}

fn cmd(root: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_passthru"));
    c.args(args)
        .args(["--root", root.to_str().unwrap()])
        .arg("--pci-ids")
        .arg(pci_ids())
        .env_remove("PASSTHRU_ROOT")
        .env_remove("PASSTHRU_TEST_CRASH_AT")
        .env("NO_COLOR", "1")
        .env("PASSTHRU_TEST_LOCK_WAIT_MS", "300");
    c
}

fn run(root: &Path, args: &[&str]) -> Output {
    cmd(root, args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n{}{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Holds a lock file as qm/pct would.
fn hold(root: &Path, rel: &str) -> File {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    let f = File::create(&p).unwrap();
    f.lock().unwrap();
    f
}

const VM_CONF: &str = "etc/pve/qemu-server/100.conf";
const CT_CONF: &str = "etc/pve/lxc/200.conf";
const VM_LOCK: &str = "var/lock/qemu-server/lock-100.conf";
const CT_LOCK: &str = "run/lock/lxc/pve-config-200.lock";

/// `vm attach` edits the container's config too (it takes the card from it), so it must hold
/// the container's lock as well as the VM's; and `lxc share` the VM's.
#[test]
fn every_guest_config_a_plan_edits_is_edited_under_its_own_lock() {
    for (vm_has, ct_has, args, other_lock) in [
        (
            false,
            true,
            &["vm", "attach", "100", "03:00.0", "--force", "--yes"][..],
            CT_LOCK,
        ),
        (
            true,
            false,
            &["lxc", "share", "200", "03:00.0", "--gid", "993", "--yes"][..],
            VM_LOCK,
        ),
    ] {
        let t = pve(vm_has, ct_has);
        let root = t.path();
        let vm = std::fs::read(root.join(VM_CONF)).unwrap();
        let ct = std::fs::read(root.join(CT_CONF)).unwrap();
        // The plan edits both configs.
        let dry = run(root, &[args, &["--dry-run"]].concat());
        let dry_out = text(&dry);
        assert!(
            dry_out.contains(&format!("+++ b/{VM_CONF}"))
                && dry_out.contains(&format!("+++ b/{CT_CONF}")),
            "{dry_out}"
        );
        let held = hold(root, other_lock);
        let o = run(root, args);
        let out = text(&o);
        assert_eq!(o.status.code(), Some(2), "{out}");
        assert!(
            out.contains(other_lock),
            "the error names {other_lock}: {out}"
        );
        assert_eq!(std::fs::read(root.join(VM_CONF)).unwrap(), vm, "{out}");
        assert_eq!(std::fs::read(root.join(CT_CONF)).unwrap(), ct, "{out}");
        // Let go: it applies, both configs in one transaction.
        drop(held);
        let o = run(root, args);
        assert!(o.status.success(), "{}", text(&o));
        assert!(text(&o).contains("Applied as transaction"));
    }
}

/// An interrupted transaction is undone before the plan is made: the plan is made from the
/// restored files, and the re-run does the whole change (not "Nothing to change", not the
/// remainder only).
#[test]
fn the_plan_is_made_after_recovery() {
    let t = pve(false, true);
    let root = t.path();
    let args = ["vm", "attach", "100", "03:00.0", "--force", "--yes"];
    // Killed right after the plan's first file was written.
    let o = cmd(root, &args)
        .env("PASSTHRU_TEST_CRASH_AT", "@after write")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), None, "killed: {}", text(&o));
    let o = run(root, &args);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    let recovered = out.find("Recovered: transaction").expect(&out);
    let plan = out.find("Attach 0000:03:00.0 to VM 100").expect(&out);
    assert!(recovered < plan, "{out}");
    assert!(out.contains("3 files written"), "the whole change: {out}");
    let vm = std::fs::read_to_string(root.join(VM_CONF)).unwrap();
    let ct = std::fs::read_to_string(root.join(CT_CONF)).unwrap();
    assert!(vm.contains("0000:03:00"), "{vm}");
    assert!(!ct.contains("/dev/dri/renderD128"), "{ct}");
}

/// A dry run recovers nothing (it writes nothing), but it never shows "Nothing to change"
/// while a transaction waits to be undone: it shows the undo instead.
#[test]
fn a_dry_run_shows_a_pending_undo_and_writes_nothing() {
    let t = pve(false, true);
    let root = t.path();
    let args = ["vm", "attach", "100", "03:00.0", "--force", "--yes"];
    let o = cmd(root, &args)
        .env("PASSTHRU_TEST_CRASH_AT", "@marked written")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), None, "killed: {}", text(&o));
    let vm = std::fs::read(root.join(VM_CONF)).unwrap();
    let dry = run(
        root,
        &["vm", "attach", "100", "03:00.0", "--force", "--dry-run"],
    );
    let out = text(&dry);
    assert!(dry.status.success(), "{out}");
    assert!(out.contains("Pending: transaction"), "{out}");
    assert!(
        out.contains(&format!("{VM_CONF}: put back as it was")),
        "{out}"
    );
    assert!(!out.contains("Nothing to change"), "{out}");
    assert_eq!(std::fs::read(root.join(VM_CONF)).unwrap(), vm);
    assert!(passthru::apply::list_transactions(root).unwrap()[0].is_unfinished());
    // Without --yes and without a terminal: the same preview, and not applied.
    let o = run(root, &["vm", "attach", "100", "03:00.0", "--force"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("Pending: transaction"));
    assert!(passthru::apply::list_transactions(root).unwrap()[0].is_unfinished());
}

/// Killed after the rollback committed but before it marked the transaction it rolled back:
/// the next run finishes that, so there is one consistent state (the transaction rolled
/// back) and no false "changed after transaction ...; restore it by hand".
#[test]
fn a_rollback_killed_after_its_commit_ends_consistent() {
    let t = pve(false, true);
    let root = t.path();
    let vm = std::fs::read(root.join(VM_CONF)).unwrap();
    let o = run(
        root,
        &["vm", "attach", "100", "03:00.0", "--force", "--yes"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = cmd(root, &["rollback", "--yes"])
        .env("PASSTHRU_TEST_CRASH_AT", "@rollback committed")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), None, "killed: {}", text(&o));
    assert_eq!(std::fs::read(root.join(VM_CONF)).unwrap(), vm);
    let o = run(root, &["rollback", "--yes"]);
    let out = text(&o);
    assert!(!out.contains("restore it by hand"), "{out}");
    assert!(out.contains("no transaction to roll back"), "{out}");
    let states: Vec<_> = passthru::apply::list_transactions(root)
        .unwrap()
        .into_iter()
        .map(|t| (t.kind, t.state))
        .collect();
    use passthru::apply::TxState::*;
    assert_eq!(
        states,
        [
            ("apply".to_string(), RolledBack),
            ("rollback".to_string(), Committed)
        ]
    );
    assert_eq!(std::fs::read(root.join(VM_CONF)).unwrap(), vm);
}
