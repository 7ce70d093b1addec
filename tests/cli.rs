//! The binary as a user runs it: list and scan on fixture roots and saved snapshots, exit
//! codes, the JSON contract, and the archive round trip.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

fn build(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    passthru_testkit::build_named(name, dir.path()).unwrap();
    dir
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn scan_json(root: &Path, file: &Path) {
    let out = passthru(&[
        "scan",
        "--json",
        "--root",
        s(root),
        "--pci-ids",
        s(&pci_ids()),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(file, &out.stdout).unwrap();
}

#[test]
fn list_from_a_saved_scan_prints_what_list_on_the_root_prints() {
    let qemu = unpacked(&repo().join("tests/fixtures/qemu/intel-switch/root.tar.gz"));
    let roots = [build("nvidia-desktop"), build("broken"), build("no-iommu")];
    let mut all: Vec<&Path> = roots.iter().map(|t| t.path()).collect();
    all.push(&qemu);
    for root in all {
        let saved = tempfile::NamedTempFile::new().unwrap();
        scan_json(root, saved.path());
        let ids = pci_ids();
        for extra in [
            &[][..],
            &["--json"][..],
            &["--gpus"][..],
            &["--gpus", "--json"][..],
        ] {
            let mut live = vec!["list", "--root", s(root), "--pci-ids", s(&ids)];
            live.extend(extra);
            let mut from = vec!["list", "--from", s(saved.path())];
            from.extend(extra);
            let (a, b) = (passthru(&live), passthru(&from));
            assert!(a.status.success() && b.status.success());
            assert_eq!(stdout(&a), stdout(&b), "{} {extra:?}", root.display());
        }
    }
}

#[test]
fn list_json_has_the_documented_shape() {
    let t = build("nvidia-desktop");
    let out = passthru(&[
        "list",
        "--json",
        "--root",
        s(t.path()),
        "--pci-ids",
        s(&pci_ids()),
    ]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["schema_version"], 1);
    let groups = doc["groups"].as_array().unwrap();
    assert!(!groups.is_empty());
    for g in groups {
        assert!(g["id"].is_string());
        for d in g["devices"].as_array().unwrap() {
            let addr = d["address"].as_str().unwrap();
            assert!(
                addr.parse::<passthru::model::PciAddress>().is_ok(),
                "{addr}"
            );
            let class = d["class"].as_str().unwrap();
            assert!(
                class.len() == 6
                    && class
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            );
            for k in ["vendor", "device"] {
                let v = d[k].as_str().unwrap();
                assert!(
                    v.len() == 4 && !v.starts_with("0x") && v == v.to_lowercase(),
                    "{k} {v}"
                );
            }
            assert!(d["name"].is_string());
            assert!(d["driver"].is_string() || d["driver"].is_null());
        }
    }
    assert!(doc["ungrouped"].is_array());
    // The GPU is marked, and an unbound device has driver null.
    let gpu = groups
        .iter()
        .flat_map(|g| g["devices"].as_array().unwrap())
        .find(|d| d["gpu"] == true)
        .expect("a GPU");
    assert_eq!(gpu["vendor"], "10de");
}

#[test]
fn unbound_device_has_null_driver() {
    let qemu = unpacked(&repo().join("tests/fixtures/qemu/intel-bridges/root.tar.gz"));
    let out = passthru(&[
        "list",
        "--json",
        "--root",
        s(&qemu),
        "--pci-ids",
        s(&pci_ids()),
    ]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ati = doc["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["devices"].as_array().unwrap())
        .find(|d| d["vendor"] == "1002")
        .unwrap();
    assert!(ati["driver"].is_null(), "{ati}");
}

#[test]
fn no_iommu_host_says_so_with_reason_and_next_step() {
    let t = build("no-iommu");
    let out = passthru(&["list", "--root", s(t.path())]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(text.contains("IOMMU off"), "{text}");
    assert!(text.contains("why:") && text.contains("next:"), "{text}");
    assert!(
        text.contains("Devices (no IOMMU groups on this host)"),
        "{text}"
    );
    let json = passthru(&["list", "--json", "--root", s(t.path())]);
    let doc: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(doc["iommu"]["status"], "off");
    assert!(doc["groups"].as_array().unwrap().is_empty());
    assert!(!doc["ungrouped"].as_array().unwrap().is_empty());

    // The counterpart: with an IOMMU on, no reason or next step is given.
    let on = build("nvidia-desktop");
    let doc: Value =
        serde_json::from_slice(&passthru(&["list", "--json", "--root", s(on.path())]).stdout)
            .unwrap();
    assert_eq!(doc["iommu"]["status"], "on");
    assert!(doc["iommu"]["next_step"].is_null());
}

#[test]
fn gpus_view_names_group_companions_and_their_relation() {
    let t = build("apu-shared-group");
    let out = passthru(&[
        "list",
        "--gpus",
        "--json",
        "--root",
        s(t.path()),
        "--pci-ids",
        s(&pci_ids()),
    ]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let gpu = &doc["gpus"][0];
    let rel: Vec<&str> = gpu["companions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["relation"].as_str().unwrap())
        .collect();
    assert!(
        rel.contains(&"same-card"),
        "the APU's audio function: {rel:?}"
    );
    assert!(
        rel.contains(&"other"),
        "chipset devices share the APU's group: {rel:?}"
    );

    let t = build("nvidia-desktop");
    let out = passthru(&["list", "--gpus", "--json", "--root", s(t.path())]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rel: Vec<&str> = doc["gpus"][0]["companions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["relation"].as_str().unwrap())
        .collect();
    assert!(
        !rel.contains(&"other"),
        "the desktop GPU's group holds only its own functions and bridges: {rel:?}"
    );
}

#[test]
fn bad_inputs_are_errors_with_exit_2() {
    let out = passthru(&["list", "--root", "/nonexistent/passthru-root"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/passthru-root"));

    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), r#"{"schema_version": 99}"#).unwrap();
    let out = passthru(&["list", "--from", s(f.path())]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("schema_version 99"));

    std::fs::write(f.path(), "not json").unwrap();
    assert_eq!(
        passthru(&["list", "--from", s(f.path())]).status.code(),
        Some(2)
    );
    assert_eq!(
        passthru(&["list", "--pci-ids", "/nonexistent/pci.ids", "--root", "/"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(passthru(&["frobnicate"]).status.code(), Some(2));
}

#[test]
fn scan_archive_round_trips_to_the_same_snapshot() {
    for name in ["nvidia-desktop", "sriov-nic", "amd-navi", "apu-in-use"] {
        let t = build(name);
        let archive = tempfile::tempdir().unwrap().keep().join("host.tar.gz");
        let out = passthru(&["scan", "--archive", s(&archive), "--root", s(t.path())]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let unpacked = unpack(&archive);
        assert_same_snapshot(name, t.path(), unpacked.path());
        // Safety: BARs and ROMs are empty placeholders, config at most 64 bytes.
        let listing = std::fs::read_to_string(unpacked.path().join("UNREADABLE")).unwrap();
        assert!(
            listing.contains("resource0\tBAR or ROM: never read"),
            "{name}"
        );
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(
            std::fs::File::open(&archive).unwrap(),
        ));
        for e in ar.entries().unwrap() {
            let e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            let file = path.rsplit('/').next().unwrap().to_string();
            if file == "config" && path.starts_with("sys/") {
                assert!(e.size() <= 64, "{path}: {} bytes", e.size());
            }
            if file == "rom" || (file.starts_with("resource") && file != "resource") {
                assert_eq!(e.size(), 0, "{path}");
            }
        }
    }
}

/// `check` and `list` on the unpacked archive say what they say on the host: the archive
/// carries what the safety checks read (proc/mounts, proc/net/route, proc/iomem and the
/// sys/class/{block,net,graphics} links with what is behind them), not only the PCI tree.
#[test]
fn archive_keeps_what_the_safety_checks_read() {
    let t = build("apu-in-use");
    let archive = tempfile::tempdir().unwrap().keep().join("host.tar.gz");
    let out = passthru(&["scan", "--archive", s(&archive), "--root", s(t.path())]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let back = unpack(&archive);
    let ids = pci_ids();
    let run = |root: &Path, args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--root", s(root), "--pci-ids", s(&ids)]);
        stdout(&passthru(&all))
    };
    let host = run(t.path(), &["check", "--json"]);
    let doc: Value = serde_json::from_str(&host).unwrap();
    let fired: Vec<&str> = doc["gpus"][0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    for id in ["safety.boot-disk", "safety.network", "console.framebuffer"] {
        assert!(
            fired.contains(&id),
            "the fixture must make {id} fire: {fired:?}"
        );
    }
    assert_eq!(
        host,
        run(back.path(), &["check", "--json"]),
        "check differs on the unpacked archive"
    );
    assert_eq!(run(t.path(), &["check"]), run(back.path(), &["check"]));
    assert_eq!(
        run(t.path(), &["list", "--json"]),
        run(back.path(), &["list", "--json"])
    );
    // The links stay links, so the unpacked tree resolves them as the host does.
    for link in [
        "proc/mounts",
        "proc/self",
        "proc/net",
        "dev/mapper/pve-root",
        "sys/class/block/dm-1",
        "sys/class/block/sda3",
        "sys/class/net/vmbr0",
        "sys/class/net/enp1s8",
        "sys/class/graphics/fb0",
    ] {
        let meta = std::fs::symlink_metadata(back.path().join(link))
            .unwrap_or_else(|e| panic!("{link}: {e}"));
        assert!(meta.file_type().is_symlink(), "{link} is not a link");
    }
}

#[test]
fn archive_of_a_real_kernel_tree_reads_back_the_same() {
    let qemu = unpacked(&repo().join("tests/fixtures/qemu/amd-rootports/root.tar.gz"));
    let archive = tempfile::tempdir().unwrap().keep().join("host.tar.gz");
    assert!(
        passthru(&["scan", "--archive", s(&archive), "--root", s(&qemu)])
            .status
            .success()
    );
    let back = unpack(&archive);
    assert_same_snapshot("amd-rootports", &qemu, back.path());
}

/// Compares two snapshots part by part (except where they were read from), so a difference
/// prints as the one part that differs.
fn assert_same_snapshot(label: &str, a: &Path, b: &Path) {
    let mut a = serde_json::to_value(snapshot(a)).unwrap();
    let mut b = serde_json::to_value(snapshot(b)).unwrap();
    a["source"]["root"] = Value::Null;
    b["source"]["root"] = Value::Null;
    for key in a.as_object().unwrap().keys() {
        if key == "devices" {
            for (x, y) in a[key]
                .as_array()
                .unwrap()
                .iter()
                .zip(b[key].as_array().unwrap())
            {
                assert_eq!(x, y, "{label}: device differs after the archive round trip");
            }
        }
        assert_eq!(
            a[key], b[key],
            "{label}: '{key}' differs after the archive round trip"
        );
    }
}

#[test]
fn root_comes_from_the_environment_too() {
    let t = build("intel-n100");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_passthru"))
        .args(["list", "--json"])
        .env("PASSTHRU_ROOT", t.path())
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(doc["groups"][0]["devices"][0]["address"].is_string());
}

#[test]
fn an_environment_root_does_not_conflict_with_from() {
    let t = build("intel-n100");
    let saved = tempfile::NamedTempFile::new().unwrap();
    scan_json(t.path(), saved.path());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_passthru"))
        .args(["list", "--from", s(saved.path())])
        .env("PASSTHRU_ROOT", "/nonexistent")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // But both on the command line is a usage error.
    let out = passthru(&["list", "--from", s(saved.path()), "--root", s(t.path())]);
    assert_eq!(out.status.code(), Some(2));
}
