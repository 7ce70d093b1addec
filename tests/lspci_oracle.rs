//! Oracle: for every fixture tree, `passthru list --json` must agree with pciutils' own
//! `lspci -nnk -A linux-sysfs -O sysfs.path=<tree>/sys/bus/pci` on each device's address,
//! class, ids, name and driver. lspci is not ours, so it judges our reading and naming.
//!
//! Both sides use the corpus pci.ids, and lspci runs with `-O hwdb.disable=1`: otherwise
//! udev's hwdb answers for subsystems that pci.ids lacks, with the device's name.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

/// Compares one tree; returns the differences found, each naming the fixture and device.
fn compare(label: &str, root: &Path) -> Vec<String> {
    let out = passthru(&[
        "list",
        "--json",
        "--root",
        root.to_str().unwrap(),
        "--pci-ids",
        pci_ids().to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{label}: passthru failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut ours: BTreeMap<String, Value> = BTreeMap::new();
    for g in doc["groups"].as_array().unwrap() {
        for d in g["devices"].as_array().unwrap() {
            ours.insert(d["address"].as_str().unwrap().to_string(), d.clone());
        }
    }
    for d in doc["ungrouped"].as_array().unwrap() {
        ours.insert(d["address"].as_str().unwrap().to_string(), d.clone());
    }
    let theirs = parse_lspci_nnk(&lspci_over(root));
    let mut diffs = Vec::new();
    if theirs.len() != ours.len() {
        diffs.push(format!(
            "{label}: lspci lists {} devices, passthru {}",
            theirs.len(),
            ours.len()
        ));
    }
    for l in &theirs {
        let Some(d) = ours.get(&l.address) else {
            diffs.push(format!("{label}: {} missing from passthru", l.address));
            continue;
        };
        let s = |k: &str| d[k].as_str().map(str::to_string);
        let mut check = |what: &str, mine: Option<String>, lspci: Option<String>| {
            if mine != lspci {
                diffs.push(format!(
                    "{label} {} {what}: passthru {mine:?}, lspci {lspci:?}",
                    l.address
                ));
            }
        };
        check(
            "class",
            s("class").map(|c| c[..4].to_string()),
            Some(l.class4.clone()),
        );
        check("class name", s("class_name"), Some(l.class_name.clone()));
        check("vendor", s("vendor"), Some(l.vendor.clone()));
        check("device", s("device"), Some(l.device.clone()));
        check("name", s("name"), Some(l.name.clone()));
        check("driver", s("driver"), l.driver.clone());
        check(
            "revision",
            s("revision"),
            l.rev
                .clone()
                .or_else(|| s("revision").filter(|r| r == "00")),
        );
        if let Some(ids) = &l.subsystem_ids {
            let mine = s("subsystem_vendor")
                .zip(s("subsystem_device"))
                .map(|(v, d)| format!("{v}:{d}"));
            check("subsystem ids", mine, Some(ids.clone()));
        }
    }
    diffs
}

/// lspci refuses a device without the 64-byte config header; ghw's trimmed trees have none.
/// The copy gets a zero-filled one: pciutils then takes ids, class and revision from the
/// sysfs attribute files (its PCI_FILL_IDENT/CLASS path), the same files passthru reads.
fn with_config_headers(src: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", src.display()))
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    let devices = dir.path().join("sys/bus/pci/devices");
    if let Ok(rd) = std::fs::read_dir(&devices) {
        for e in rd {
            let config = e.unwrap().path().join("config");
            if !config.exists() {
                std::fs::write(&config, [0u8; 64]).unwrap();
            }
        }
    }
    dir
}

#[test]
fn qemu_trees_agree_with_lspci() {
    if !require_lspci() {
        return;
    }
    let mut diffs = Vec::new();
    for (name, dir) in qemu_fixtures() {
        diffs.extend(compare(&name, &unpacked(&dir.join("root.tar.gz"))));
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

#[test]
fn real_machine_trees_agree_with_lspci() {
    if !require_lspci() {
        return;
    }
    let mut diffs = Vec::new();
    let mut compared = 0;
    let ghw = corpus().join("sysfs/ghw");
    let mut archives: Vec<PathBuf> = std::fs::read_dir(&ghw)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    archives.sort();
    for a in archives {
        let tree = unpack(&a);
        if !tree.path().join("sys/bus/pci/devices").is_dir() {
            continue; // the offline-CPUs snapshot has no PCI at all
        }
        let copy = with_config_headers(tree.path());
        diffs.extend(compare(
            &a.file_name().unwrap().to_string_lossy(),
            copy.path(),
        ));
        compared += 1;
    }
    assert_eq!(compared, 5, "five ghw snapshots have PCI devices");
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

#[test]
fn synthetic_trees_agree_with_lspci() {
    if !require_lspci() {
        return;
    }
    let mut diffs = Vec::new();
    let names = passthru_testkit::synthetic_names().unwrap();
    assert!(names.len() >= 10, "synthetic descriptions: {names:?}");
    for name in names {
        if name == "server-4096" {
            continue; // compared in its own test below, it is big
        }
        if name == "broken" {
            // lspci aborts on this tree ("sysfs_scan: Couldn't parse entry name"), which is
            // what passthru must not do; tests/broken_hosts.rs covers it.
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        passthru_testkit::build_named(&name, dir.path()).unwrap();
        diffs.extend(compare(&name, dir.path()));
    }
    diffs.extend(compare(
        "examples/hosts/homelab",
        &repo().join("examples/hosts/homelab"),
    ));
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

#[test]
fn four_thousand_function_server_agrees_with_lspci() {
    if !require_lspci() {
        return;
    }
    // 170,000 files: on tmpfs when there is one (like sysfs, in memory), seconds not a minute.
    let dir = tempfile::tempdir_in(passthru_testkit::scratch_dir()).unwrap();
    passthru_testkit::build_named("server-4096", dir.path()).unwrap();
    let diffs = compare("server-4096", dir.path());
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}
