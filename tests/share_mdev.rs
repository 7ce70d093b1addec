//! `passthru share mdev` on fixture roots: the rule per parent and type, the instances made
//! and removed now through a runtime transaction, rollback by the inverse action, and what
//! is refused. Under a fixture root no kernel makes an mdev when its UUID is written to
//! `create`, so where a test needs one it lays out what the kernel made in the QEMU lab
//! (`make_instance`); the real kernel and udevd are judged by scripts/qemu-lab/mdev-test.sh.

mod common;

use std::path::Path;

use common::*;

const RULE: &str = "etc/udev/rules.d/61-passthru-mdev-mtty-mtty-2.rules";
const PARENT: &str = "sys/devices/virtual/mtty/mtty";
/// The instance made by hand in the fixture (mtty-1): never passthru's to touch.
const HAND: &str = "83b8f4f2-509f-482f-bc1e-e6bfe0fa1001";

fn host() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    passthru_testkit::build_named("mtty-sample", dir.path()).unwrap();
    dir
}

fn ok(o: &std::process::Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn refused(o: &std::process::Output, why: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "not refused: {why}");
    assert!(err.contains(why), "refusal without {why:?}:\n{err}");
}

/// The UUIDs the rule's ATTR assignments write, in order.
fn rule_uuids(root: &Path) -> Vec<String> {
    std::fs::read_to_string(root.join(RULE))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let v = l.rsplit_once("=\"").unwrap().1;
            v.trim_end_matches('"').to_string()
        })
        .collect()
}

/// What the kernel leaves for a live instance of `ty` (as the lab's 6.1 kernel did).
fn make_instance(root: &Path, ty: &str, uuid: &str) {
    let dev = root.join(PARENT).join(uuid);
    std::fs::create_dir_all(&dev).unwrap();
    std::fs::write(dev.join("remove"), "").unwrap();
    std::os::unix::fs::symlink(
        format!("../mdev_supported_types/{ty}"),
        dev.join("mdev_type"),
    )
    .unwrap();
    let bus = root.join("sys/bus/mdev/devices");
    std::fs::create_dir_all(&bus).unwrap();
    let rel = PARENT.strip_prefix("sys/").unwrap();
    std::os::unix::fs::symlink(format!("../../../{rel}/{uuid}"), bus.join(uuid)).unwrap();
}

/// What the kernel leaves after `1 > remove`.
fn drop_instance(root: &Path, uuid: &str) {
    std::fs::remove_dir_all(root.join(PARENT).join(uuid)).unwrap();
    std::fs::remove_file(root.join("sys/bus/mdev/devices").join(uuid)).unwrap();
}

/// The runtime records (path, value) of the newest transaction.
fn newest_runtime(root: &Path) -> Vec<(String, String)> {
    let j = root.join("var/lib/passthru/journal");
    let mut ids: Vec<String> = std::fs::read_dir(&j)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    ids.sort();
    let m: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(j.join(ids.last().unwrap()).join("manifest.json")).unwrap(),
    )
    .unwrap();
    m["runtime"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["path"].as_str().unwrap().to_string(),
                r["value"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn is_v8_uuid(u: &str) -> bool {
    let parts: Vec<&str> = u.split('-').collect();
    parts.iter().map(|p| p.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
        && u.chars()
            .all(|c| c == '-' || c.is_ascii_digit() || ('a'..='f').contains(&c))
        && parts[2].starts_with('8')
        && matches!(&parts[3][..1], "8" | "9" | "a" | "b")
}

#[test]
fn share_mdev_writes_the_rule_and_makes_the_instances_it_names_now() {
    let h = host();
    let root = h.path();
    let out = ok(&passthru_fixed(
        root,
        &[
            "share", "mdev", "mtty", "--type", "mtty-2", "--count", "2", "--now", "--yes",
        ],
    ));
    let uuids = rule_uuids(root);
    assert_eq!(uuids.len(), 2, "{out}");
    assert!(uuids.iter().all(|u| is_v8_uuid(u)), "{uuids:?}");
    assert_ne!(uuids[0], uuids[1]);
    // Each rule line makes its instance only where the type is and the instance is not.
    let rule = std::fs::read_to_string(root.join(RULE)).unwrap();
    for u in &uuids {
        assert!(rule.contains(&format!("ACTION==\"add|change\", KERNEL==\"mtty\", TEST==\"mdev_supported_types/mtty-2/create\", TEST!=\"/sys/bus/mdev/devices/{u}\", ATTR{{mdev_supported_types/mtty-2/create}}=\"{u}\"\n")), "{rule}");
    }
    // Now: the same UUIDs into the type's create, in the parent's own directory.
    let create = format!("{PARENT}/mdev_supported_types/mtty-2/create");
    assert_eq!(
        newest_runtime(root),
        uuids
            .iter()
            .map(|u| (create.clone(), u.clone()))
            .collect::<Vec<_>>()
    );
    assert!(
        out.contains(&format!("Their UUIDs: {}, {}.", uuids[0], uuids[1])),
        "{out}"
    );

    // Again: the same rule, so nothing to write (the instances are the kernel's business).
    let again = ok(&passthru_fixed(
        root,
        &[
            "share", "mdev", "mtty", "--type", "mtty-2", "--count", "2", "--yes",
        ],
    ));
    assert!(again.contains("Nothing to change"), "{again}");
    assert_eq!(rule_uuids(root), uuids);
    // A larger count keeps the first two instances (a domain may name them).
    let three = ok(&passthru_fixed(
        root,
        &[
            "share",
            "mdev",
            "mtty",
            "--type",
            "mtty-2",
            "--count",
            "3",
            "--dry-run",
        ],
    ));
    for u in &uuids {
        assert!(three.contains(u.as_str()), "{three}");
    }
}

#[test]
fn rollback_of_now_removes_what_it_made_and_leaves_other_instances() {
    let h = host();
    let root = h.path();
    ok(&passthru_fixed(
        root,
        &[
            "share", "mdev", "mtty", "--type", "mtty-2", "--count", "2", "--now", "--yes",
        ],
    ));
    let uuids = rule_uuids(root);
    // The kernel made them.
    for u in &uuids {
        make_instance(root, "mtty-2", u);
    }
    let out = ok(&passthru_fixed(root, &["rollback", "--yes"]));
    assert!(out.contains("(2 sysfs writes written)"), "{out}");
    for u in &uuids {
        assert_eq!(
            std::fs::read_to_string(root.join(format!("sys/bus/mdev/devices/{u}/remove"))).unwrap(),
            "1",
            "{u} not removed:\n{out}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(root.join(format!("{PARENT}/{HAND}/remove"))).unwrap(),
        "",
        "the instance made by hand was touched"
    );
    // The second rollback takes the rule away.
    ok(&passthru_fixed(root, &["rollback", "--yes"]));
    assert!(!root.join(RULE).exists());
}

#[test]
fn rollback_makes_nothing_that_is_already_gone_or_back() {
    let h = host();
    let root = h.path();
    ok(&passthru_fixed(
        root,
        &[
            "share", "mdev", "mtty", "--type", "mtty-2", "--count", "1", "--now", "--yes",
        ],
    ));
    let u = rule_uuids(root)[0].clone();
    // The instance never appeared (or something removed it): there is nothing to remove,
    // and no `remove` file is made where the kernel has none.
    let out = ok(&passthru_fixed(root, &["rollback", "--yes"]));
    assert!(out.contains("Nothing to change."), "{out}");
    assert!(!root.join(format!("sys/bus/mdev/devices/{u}")).exists());
}

#[test]
fn count_zero_now_removes_passthrus_instances_and_rollback_makes_them_again() {
    let h = host();
    let root = h.path();
    ok(&passthru_fixed(
        root,
        &[
            "share", "mdev", "mtty", "--type", "mtty-2", "--count", "2", "--yes",
        ],
    ));
    let uuids = rule_uuids(root);
    for u in &uuids {
        make_instance(root, "mtty-2", u);
    }
    // A third mtty-2 instance someone else made stays.
    let other = "0b1c2d3e-4f50-4612-8734-a5b6c7d8e9f0";
    make_instance(root, "mtty-2", other);
    let out = ok(&passthru_fixed(
        root,
        &[
            "share", "mdev", "mtty", "--type", "mtty-2", "--count", "0", "--now", "--yes",
        ],
    ));
    assert!(!root.join(RULE).exists(), "{out}");
    assert!(
        out.contains(&format!(
            "mtty-2 instance {other} on mtty was not made by passthru: left alone."
        )),
        "{out}"
    );
    let mut removed: Vec<String> = newest_runtime(root)
        .into_iter()
        .map(|(p, v)| {
            assert_eq!(v, "1");
            p
        })
        .collect();
    removed.sort();
    let mut want: Vec<String> = uuids
        .iter()
        .map(|u| format!("sys/bus/mdev/devices/{u}/remove"))
        .collect();
    want.sort();
    assert_eq!(removed, want);
    // The kernel removed them; rollback makes both again with their UUIDs.
    for u in &uuids {
        drop_instance(root, u);
    }
    ok(&passthru_fixed(root, &["rollback", "--yes"]));
    let create = format!("{PARENT}/mdev_supported_types/mtty-2/create");
    let mut made: Vec<(String, String)> = newest_runtime(root);
    made.sort();
    let mut want: Vec<(String, String)> =
        uuids.iter().map(|u| (create.clone(), u.clone())).collect();
    want.sort();
    assert_eq!(made, want);
    // And the next rollback puts the rule back, byte for byte.
    ok(&passthru_fixed(root, &["rollback", "--yes"]));
    assert_eq!(rule_uuids(root), uuids);
}

#[test]
fn what_share_mdev_refuses() {
    let h = host();
    let root = h.path();
    let run = |args: &[&str]| {
        let mut a = vec!["share", "mdev"];
        a.extend_from_slice(args);
        a.push("--dry-run");
        passthru_fixed(root, &a)
    };
    refused(
        &run(&["mtty", "--type", "mtty-9", "--count", "1"]),
        "it offers no mdev type 'mtty-9' (it offers mtty-1, mtty-2)",
    );
    refused(
        &run(&["mtty", "--type", "mtty-2", "--count", "12", "--now"]),
        "mtty-2 has 11 instances free (available_instances) and 12 more are needed",
    );
    refused(
        &run(&["07:00.0", "--type", "nvidia-47", "--count", "1"]),
        "it offers no mediated devices (no mdev_supported_types: its driver does not make mdevs); the parents here are mtty",
    );
    for bad in ["../x", "mtty\"", "a b"] {
        refused(
            &run(&["mtty", "--type", bad, "--count", "1"]),
            "is not a sysfs name",
        );
    }
    refused(
        &run(&["mtty", "--type", "mtty-2", "--count", "65"]),
        "--count 65 is more than 64",
    );
    // The count fits without --now: no instance is made now.
    ok(&run(&["mtty", "--type", "mtty-2", "--count", "12"]));
    // Proxmox makes the instance at VM start: none made ahead.
    std::fs::create_dir_all(root.join("etc/pve")).unwrap();
    refused(
        &run(&["mtty", "--type", "mtty-2", "--count", "1"]),
        "this is a Proxmox host, which makes an mdev when its VM starts",
    );
    assert!(!root.join(RULE).exists());
    assert!(!root.join("var/lib/passthru/journal").exists());
}

#[test]
fn a_journal_whose_undo_leaves_the_root_is_refused() {
    let h = host();
    let root = h.path();
    ok(&passthru_fixed(
        root,
        &[
            "share", "mdev", "mtty", "--type", "mtty-2", "--count", "1", "--now", "--yes",
        ],
    ));
    let j = root.join("var/lib/passthru/journal");
    let mut ids: Vec<_> = std::fs::read_dir(&j)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    ids.sort();
    let m = ids.last().unwrap().join("manifest.json");
    let text = std::fs::read_to_string(&m).unwrap();
    let bad = text.replacen(
        "\"path\": \"sys/bus/mdev/devices/",
        "\"path\": \"../../etc/",
        1,
    );
    assert_ne!(bad, text);
    std::fs::write(&m, bad).unwrap();
    refused(
        &passthru_fixed(root, &["rollback", "--yes"]),
        "names the setting",
    );
}

#[test]
fn a_virtual_parent_and_its_instance_are_read_and_listed() {
    let h = host();
    let root = h.path();
    let scan: serde_json::Value =
        serde_json::from_str(&ok(&passthru_fixed(root, &["scan", "--json"]))).unwrap();
    let parents = scan["sharing"]["mdev_parents"].as_array().unwrap();
    assert_eq!(parents.len(), 1);
    assert_eq!(parents[0]["name"], "mtty");
    assert_eq!(parents[0]["path"], PARENT);
    let types: Vec<(&str, u64)> = parents[0]["types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["id"].as_str().unwrap(),
                t["available_instances"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(types, [("mtty-1", 23), ("mtty-2", 11)]);
    let mdevs = scan["sharing"]["mdevs"].as_array().unwrap();
    assert_eq!(mdevs.len(), 1);
    assert_eq!(mdevs[0]["uuid"], HAND);
    assert_eq!(mdevs[0]["parent_name"], "mtty");
    assert_eq!(mdevs[0]["parent"], serde_json::Value::Null);
    assert_eq!(mdevs[0]["mdev_type"], "mtty-1");
    let issues = format!("{}{}", scan["issues"], scan["detail_issues"]);
    assert!(
        !issues.contains(HAND),
        "the mdev was reported as unreadable: {issues}"
    );
    let group = scan["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["id"] == "30")
        .expect("group 30");
    assert_eq!(group["mdevs"][0], HAND);
    let list = ok(&passthru_fixed(root, &["list"]));
    assert!(
        list.contains(&format!(
            "IOMMU group 30  (DMA)\n  mdev {HAND}  (mediated device)\n"
        )),
        "{list}"
    );
    assert!(!list.contains("Could not read"), "{list}");
}

#[test]
fn a_crash_after_the_first_create_is_undone_by_removing_that_instance() {
    let h = host();
    let root = h.path();
    let args = [
        "share", "mdev", "mtty", "--type", "mtty-2", "--count", "2", "--now", "--yes",
    ];
    let crashed = std::process::Command::new(env!("CARGO_BIN_EXE_passthru"))
        .args(args)
        .arg("--root")
        .arg(root)
        .arg("--pci-ids")
        .arg(pci_ids())
        .env("NO_COLOR", "1")
        .env("PASSTHRU_TEST_CRASH_AT", "@after sysfs write")
        .output()
        .unwrap();
    assert!(
        !crashed.status.success(),
        "the crash point was never reached"
    );
    let uuids = rule_uuids(root);
    // The kernel made the first instance before the crash; the second was never asked for.
    make_instance(root, "mtty-2", &uuids[0]);
    let out = ok(&passthru_fixed(root, &args));
    assert_eq!(
        std::fs::read_to_string(root.join(format!("sys/bus/mdev/devices/{}/remove", uuids[0])))
            .unwrap(),
        "1",
        "the interrupted transaction's instance was not removed:\n{out}"
    );
    assert!(
        !root
            .join(format!("sys/bus/mdev/devices/{}", uuids[1]))
            .exists(),
        "an undo made something for the instance that never was"
    );
}

/// What `passthru scan --archive` kept of the lab guest's real kernel (6.1, the sample mtty
/// driver) with passthru's two mtty-2 instances live (`mdev-test.sh --record`): read back,
/// it is the same host, with the instances in their emulated groups and nothing unreadable.
#[test]
fn the_real_kernels_archive_reads_back_with_its_instances() {
    let dir = unpack(&repo().join("tests/fixtures/qemu/intel-mdev/archive.tar.gz"));
    let root = dir.path();
    let s = check_snapshot(root);
    let parents = s.mdev_parents();
    let names: Vec<&str> = parents.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["mtty"]);
    assert_eq!(parents[0].dir, PARENT);
    assert_eq!(parents[0].type_ids(), ["mtty-1", "mtty-2"]);
    // 24 ports: two dual-port instances leave 20 single and 10 dual.
    let free: Vec<Option<u32>> = parents[0]
        .types
        .iter()
        .map(|t| t.available_instances)
        .collect();
    assert_eq!(free, [Some(20), Some(10)]);
    let mut live: Vec<(String, Option<String>, Option<String>)> = s
        .sharing
        .mdevs
        .iter()
        .map(|m| (m.uuid.clone(), m.parent_name.clone(), m.mdev_type.clone()))
        .collect();
    live.sort();
    // The rule the guest's passthru wrote names the same two.
    let mut rule = rule_uuids(root);
    rule.sort();
    assert_eq!(
        live,
        rule.iter()
            .map(|u| (
                u.clone(),
                Some("mtty".to_string()),
                Some("mtty-2".to_string())
            ))
            .collect::<Vec<_>>()
    );
    // Each is alone in an emulated group, and no issue names either.
    for u in &rule {
        let g: Vec<&passthru::model::IommuGroup> =
            s.groups.iter().filter(|g| g.mdevs.contains(u)).collect();
        assert_eq!(g.len(), 1, "{u}: {g:?}");
        assert!(g[0].devices.is_empty(), "{g:?}");
    }
    let issues = format!("{:?}{:?}", s.issues, s.detail_issues);
    assert!(
        !rule.iter().any(|u| issues.contains(u.as_str())),
        "{issues}"
    );
    // The UUIDs are the ones any passthru derives: the same plan on another run and host.
    let mut derived: Vec<String> = (0..2)
        .map(|i| passthru::plan::share_mdev::instance_uuid("mtty", "mtty-2", i))
        .collect();
    derived.sort();
    assert_eq!(rule, derived);
    // And the guest's own passthru sees nothing to do for the same request.
    let again = ok(&passthru_fixed(
        root,
        &[
            "share",
            "mdev",
            "mtty",
            "--type",
            "mtty-2",
            "--count",
            "2",
            "--now",
            "--dry-run",
        ],
    ));
    assert!(again.matches("Nothing to change").count() >= 2, "{again}");
}
