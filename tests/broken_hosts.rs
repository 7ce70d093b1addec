//! A host whose files are wrong in every way a reader must survive
//! (tests/fixtures/synthetic/broken.toml lists the damage). The scan must finish, exit 0,
//! and name each problem with its file: "unknown, and why", never a panic.

mod common;

use common::*;

fn build(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    passthru_testkit::build_named(name, dir.path()).unwrap();
    dir
}

fn issue_for<'a>(
    snap: &'a passthru::model::Snapshot,
    path_part: &str,
) -> Option<&'a passthru::model::Issue> {
    snap.all_issues().find(|i| i.path.contains(path_part))
}

#[test]
fn every_kind_of_damage_is_named_and_the_scan_goes_on() {
    let t = build("broken");
    let snap = snapshot(t.path());

    // The healthy devices are read in full.
    let igpu = snap.device(&"0000:00:02.0".parse().unwrap()).unwrap();
    assert_eq!(igpu.driver.as_deref(), Some("i915"));
    assert!(igpu.issues.is_empty(), "{:?}", igpu.issues);

    let class = issue_for(&snap, "0000:00:14.3/class").expect("missing class is named");
    assert!(class.problem.contains("missing"), "{class:?}");
    let vendor = issue_for(&snap, "0000:00:16.0/vendor").expect("garbled vendor is named");
    assert!(vendor.problem.contains("garbage"), "{vendor:?}");
    let empty = snap.device(&"0000:00:1a.0".parse().unwrap()).unwrap();
    assert!(empty.class.is_none() && empty.vendor.is_none());
    assert!(empty.issues.len() >= 3, "{:?}", empty.issues);
    let nic = snap.device(&"0000:00:1f.6".parse().unwrap()).unwrap();
    assert_eq!(
        nic.driver.as_deref(),
        Some("e1000e"),
        "the dangling link still names its driver"
    );
    assert!(issue_for(&snap, "0000:00:1f.6/driver")
        .unwrap()
        .problem
        .contains("points to nothing"));
    assert!(
        snap.all_issues().any(|i| i.problem.contains("'99'")),
        "the group that does not exist"
    );
    assert!(
        issue_for(&snap, "iommu_groups/7/devices").is_some(),
        "the empty group directory"
    );
    assert!(
        issue_for(&snap, "proc/modules").is_some(),
        "malformed proc/modules lines"
    );
    assert!(issue_for(&snap, "etc/os-release")
        .unwrap()
        .problem
        .contains("UTF-8"));
    assert!(issue_for(&snap, "devices/not-a-bdf").is_some());
    assert!(issue_for(&snap, "devices/README").is_some());
    let looped = snap.device(&"0000:00:1b.0".parse().unwrap()).unwrap();
    assert_eq!(
        looped.issues.len(),
        1,
        "one message for a looping link, not one per file: {:?}",
        looped.issues
    );
    assert!(
        issue_for(&snap, "0000:00:1f.3/revision").is_some(),
        "empty revision"
    );
    assert!(issue_for(&snap, "0000:00:1f.4/iommu_group")
        .unwrap()
        .problem
        .contains("symbolic link"));
    assert_eq!(snap.system.cmdline.as_deref(), Some(""));
    assert!(snap.system.cmdline_params.is_empty());
}

#[test]
fn list_of_a_broken_host_exits_0_and_shows_the_unknowns() {
    let t = build("broken");
    let out = passthru(&[
        "list",
        "--root",
        t.path().to_str().unwrap(),
        "--pci-ids",
        pci_ids().to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = stdout(&out);
    assert!(
        text.contains(
            "unknown: sys/bus/pci/devices/0000:00:16.0/vendor: not a 4-digit hex number: 'garbage'"
        ),
        "{text}"
    );
    assert!(
        text.contains("[????]"),
        "a device without class shows it: {text}"
    );
    assert!(text.contains("Could not read"), "{text}");
    let json = passthru(&["list", "--json", "--root", t.path().to_str().unwrap()]);
    assert!(json.status.success());
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert!(!doc["issues"].as_array().unwrap().is_empty());
    // scan also completes, in both forms.
    for args in [&["scan"][..], &["scan", "--json"][..]] {
        let mut a = args.to_vec();
        a.extend(["--root", t.path().to_str().unwrap()]);
        assert!(passthru(&a).status.success(), "{a:?}");
    }
}

#[test]
fn healthy_fixtures_have_no_issues() {
    // The counterpart: a clean tree must not produce "unknown"s.
    for name in [
        "nvidia-desktop",
        "amd-navi",
        "turing-usbc",
        "intel-n100",
        "tesla-p40",
    ] {
        let t = build(name);
        let snap = snapshot(t.path());
        let issues: Vec<_> = snap.all_issues().collect();
        assert!(issues.is_empty(), "{name}: {issues:?}");
    }
}
