//! Proxmox edits refuse what Proxmox would refuse: mapping ids that are not `pve-configid`s,
//! `rombar` other than 0|1, a mapping that does not exist, a ROM file that is not a file name
//! under usr/share/kvm, user values that would become extra options, locked guests. And the
//! VM settings attach changes are the ones that fit the VM (no q35 on aarch64, no OVMF under an
//! installed Windows on SeaBIOS), warned about, and undone by detach.
//!
//! Every test runs the binary over the RX 6800 XT host (03:00.0 GPU, 03:00.1 audio) with
//! Proxmox's own test configs from ../shared/corpus/proxmox.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use passthru::formats::pve_config::{parse_guest_config, parse_hostpci, GuestConfig};

const VM: &str = "etc/pve/qemu-server/100.conf";
const CT: &str = "etc/pve/lxc/200.conf";

fn qemu(name: &str) -> PathBuf {
    corpus().join("proxmox/qemu-server").join(name)
}

/// The RX 6800 XT host with VM 100 (and optionally CT 200) laid in from these texts.
fn host(vm: Option<&str>, ct: Option<&str>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    passthru_testkit::build_named("amd-navi", root).unwrap();
    std::fs::write(root.join("etc/hostname"), "pve1\n").unwrap();
    if let Some(text) = vm {
        std::fs::create_dir_all(root.join("etc/pve/qemu-server")).unwrap();
        std::fs::write(root.join(VM), text).unwrap();
    }
    if let Some(text) = ct {
        std::fs::create_dir_all(root.join("etc/pve/lxc")).unwrap();
        std::fs::write(root.join(CT), text).unwrap();
    }
    dir
}

fn corpus_text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

fn run(root: &Path, args: &[&str]) -> std::process::Output {
    let mut a = args.to_vec();
    a.extend(["--root", root.to_str().unwrap()]);
    passthru(&a)
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(o: &std::process::Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\n{}\n{}",
        o.status.code(),
        stdout(o),
        stderr(o)
    );
    stdout(o)
}

/// Exit 2 with every one of `words` in stderr.
fn refused(o: &std::process::Output, words: &[&str]) {
    let err = stderr(o);
    assert_eq!(
        o.status.code(),
        Some(2),
        "stdout:\n{}\nstderr:\n{err}",
        stdout(o)
    );
    for w in words {
        assert!(err.contains(w), "{w:?} not in stderr:\n{err}");
    }
}

fn read(root: &Path, rel: &str) -> String {
    std::fs::read_to_string(root.join(rel)).unwrap()
}

fn config(root: &Path) -> GuestConfig {
    parse_guest_config(&read(root, VM)).unwrap()
}

fn hostpci_values(cfg: &GuestConfig) -> Vec<String> {
    (0..16)
        .filter_map(|i| cfg.main_get(&format!("hostpci{i}")).map(str::to_string))
        .collect()
}

fn attach(root: &Path, extra: &[&str]) -> std::process::Output {
    let mut a = vec!["vm", "attach", "100", "03:00.0", "--force", "--yes"];
    a.extend(extra);
    run(root, &a)
}

#[test]
fn mapping_ids_are_pve_configids() {
    let t = host(None, None);
    let root = t.path();
    // pve-common JSONSchema.pm: $CONFIGID_RE = [a-z][a-z0-9_-]+ (case-insensitive).
    for bad in [
        "", "a", "1gpu", "my gpu", "gpu/0", "gpu,x", "gpu\nnic", "_gpu", "gpu.0",
    ] {
        let o = run(root, &["mapping", "create", bad, "03:00.0", "--yes"]);
        refused(&o, &["pve-configid"]);
        assert!(
            !root.join("etc/pve/mapping/pci.cfg").exists(),
            "{bad:?} wrote pci.cfg"
        );
    }
    for good in ["gpu-0_A", "Rx"] {
        ok(&run(root, &["mapping", "create", good, "03:00.0", "--yes"]));
    }
    assert!(ok(&run(root, &["mapping", "list"])).contains("gpu-0_A"));
}

#[test]
fn rombar_is_zero_or_one() {
    let plain = corpus_text(&qemu("parse-config-input/plain.conf"));
    let t = host(Some(&plain), None);
    let root = t.path();
    for bad in ["2", "-1", "yes", "on"] {
        let o = attach(root, &[&format!("--rombar={bad}")]);
        assert_eq!(o.status.code(), Some(2), "--rombar {bad}");
        assert!(stderr(&o).contains("rombar"), "{}", stderr(&o));
        assert_eq!(read(root, VM), plain);
    }
    ok(&attach(root, &["--rombar", "1"]));
    assert!(hostpci_values(&config(root))[0].contains("rombar=1"));
}

#[test]
fn mapping_must_exist_and_be_an_id() {
    let plain = corpus_text(&qemu("parse-config-input/plain.conf"));
    let t = host(Some(&plain), None);
    let root = t.path();
    // No pci.cfg at all, then one without the name.
    refused(
        &attach(root, &["--mapping", "nosuch"]),
        &["nosuch", "etc/pve/mapping/pci.cfg"],
    );
    ok(&run(
        root,
        &["mapping", "create", "rx6800", "03:00.0", "--yes"],
    ));
    refused(
        &attach(root, &["--mapping", "nosuch"]),
        &["nosuch", "etc/pve/mapping/pci.cfg"],
    );
    for bad in ["x,host=01:00.0", "rx6800,x-vga=1", "a b"] {
        refused(&attach(root, &["--mapping", bad]), &["pve-configid"]);
    }
    assert_eq!(read(root, VM), plain);
    ok(&attach(root, &["--mapping", "rx6800"]));
    let values = hostpci_values(&config(root));
    assert_eq!(values, ["mapping=rx6800,pcie=1"]);
}

#[test]
fn romfile_is_a_file_name_under_usr_share_kvm() {
    let plain = corpus_text(&qemu("parse-config-input/plain.conf"));
    let t = host(Some(&plain), None);
    let root = t.path();
    std::fs::create_dir_all(root.join("usr/share/kvm/sub")).unwrap();
    std::fs::write(root.join("usr/share/kvm/navi21.rom"), b"\x55\xaa").unwrap();
    for bad in [
        "/etc/passwd",
        "../../etc/passwd",
        "sub/x.rom",
        "..",
        "x,x-vga=1",
        "a,host=01:00.0",
        "a;b",
        "a=b",
        "a b",
        "",
    ] {
        refused(&attach(root, &["--romfile", bad]), &["--romfile"]);
        assert_eq!(read(root, VM), plain, "--romfile {bad:?} changed the VM");
    }
    // A plain name that is not there, and a directory.
    refused(
        &attach(root, &["--romfile", "missing.rom"]),
        &["usr/share/kvm"],
    );
    refused(&attach(root, &["--romfile", "sub"]), &["usr/share/kvm"]);
    ok(&attach(root, &["--romfile", "navi21.rom"]));
    let values = hostpci_values(&config(root));
    assert_eq!(values.len(), 1);
    let h = parse_hostpci(&values[0]).unwrap();
    assert_eq!(h.host, ["0000:03:00"]);
    assert!(h
        .options
        .contains(&("romfile".to_string(), "navi21.rom".to_string())));
}

#[test]
fn locked_guests_are_refused_naming_the_lock() {
    // Proxmox's own locked VM (parse-config-input/locked.conf: `lock: backup`).
    let locked = corpus_text(&qemu("parse-config-input/locked.conf"));
    let t = host(Some(&locked), None);
    let root = t.path();
    refused(&attach(root, &[]), &[VM, "lock: backup"]);
    assert_eq!(read(root, VM), locked);
    // Detach of a locked VM that has the card.
    let with_card = locked.replace(
        "lock: backup\n",
        "hostpci0: 0000:03:00,pcie=1\nlock: migrate\n",
    );
    std::fs::write(root.join(VM), &with_card).unwrap();
    refused(
        &run(root, &["vm", "detach", "100", "03:00.0", "--yes"]),
        &[VM, "lock: migrate"],
    );
    assert_eq!(read(root, VM), with_card);

    // Containers: share and unshare.
    let ct = "arch: amd64\nhostname: ct\nlock: snapshot\nostype: debian\nrootfs: local:200/vm-200-disk-0.raw,size=8G\n";
    let t = host(None, Some(ct));
    let root = t.path();
    refused(
        &run(
            root,
            &["lxc", "share", "200", "03:00.0", "--gid", "104", "--yes"],
        ),
        &[CT, "lock: snapshot"],
    );
    let shared = ct.replace(
        "lock: snapshot\n",
        "lock: backup\ndev0: /dev/dri/renderD128,gid=104\n",
    );
    std::fs::write(root.join(CT), &shared).unwrap();
    refused(
        &run(root, &["lxc", "unshare", "200", "03:00.0", "--yes"]),
        &[CT, "lock: backup"],
    );
    assert_eq!(read(root, CT), shared);
}

#[test]
fn seabios_switch_warns_and_detach_undoes_it() {
    // plain.conf: Linux (l26), no machine, no bios line (SeaBIOS), an installed disk.
    let plain = corpus_text(&qemu("parse-config-input/plain.conf"));
    let t = host(Some(&plain), None);
    let root = t.path();
    let out = ok(&attach(root, &[]));
    let cfg = config(root);
    assert_eq!(cfg.main_get("bios"), Some("ovmf"));
    assert_eq!(cfg.main_get("machine"), Some("q35"));
    assert!(out.contains("SeaBIOS"), "{out}");
    assert!(out.contains("no longer boot"), "{out}");
    // Detach takes back what attach added: the hostpci line, the machine and the bios switch.
    let out = ok(&run(root, &["vm", "detach", "100", "03:00.0", "--yes"]));
    assert_eq!(read(root, VM), plain, "{out}");

    // A bios line the user wrote (seabios) comes back as it was; a second GPU keeps OVMF.
    let seabios = plain.replace("bootdisk: scsi0\n", "bios: seabios\nbootdisk: scsi0\n");
    std::fs::write(root.join(VM), &seabios).unwrap();
    ok(&attach(root, &[]));
    assert_eq!(config(root).main_get("bios"), Some("ovmf"));
    let mut text = read(root, VM);
    text.push_str("hostpci5: 0000:07:00.0\n");
    std::fs::write(root.join(VM), &text).unwrap();
    let out = ok(&run(root, &["vm", "detach", "100", "03:00.0", "--yes"]));
    let cfg = config(root);
    assert_eq!(cfg.main_get("bios"), Some("ovmf"), "{out}");
    assert!(out.contains("hostpci5"), "{out}");
    // The other device goes by hand; detaching again restores the user's seabios line.
    let text = read(root, VM).replace("hostpci5: 0000:07:00.0\n", "");
    std::fs::write(root.join(VM), &text).unwrap();
    ok(&run(root, &["vm", "detach", "100", "03:00.0", "--yes"]));
    assert_eq!(read(root, VM), seabios);
}

#[test]
fn windows_on_seabios_keeps_its_firmware() {
    // spice-win.conf: ostype win10 on i440fx, no bios line: an installed BIOS/MBR Windows.
    let win = corpus_text(&qemu("cfg2cmd/spice-win.conf"));
    let t = host(Some(&win), None);
    let root = t.path();
    let out = ok(&attach(root, &[]));
    let cfg = config(root);
    assert_eq!(cfg.main_get("bios"), None, "{out}");
    assert_eq!(cfg.main_get("machine"), Some("pc-i440fx-4.0"));
    assert!(out.contains("SeaBIOS"), "{out}");
    assert_eq!(hostpci_values(&cfg), ["0000:03:00"]);
}

#[test]
fn aarch64_vms_get_no_q35() {
    let arm = corpus_text(&qemu("cfg2cmd/aarch64/simple-arm.conf"));
    let t = host(Some(&arm), None);
    let root = t.path();
    let out = ok(&attach(root, &[]));
    let cfg = config(root);
    assert_eq!(cfg.main_get("machine"), None, "{out}");
    assert!(out.contains("aarch64"), "{out}");
    // pcie=1 needs q35 (qemu-server PCI.pm dies "q35 machine model is not enabled").
    assert_eq!(hostpci_values(&cfg), ["0000:03:00"]);
}

#[test]
fn a_partly_attached_card_is_completed() {
    let q35 = corpus_text(&qemu("cfg2cmd/q35-linux-hostpci.conf"));
    let cfg = parse_guest_config(&q35).unwrap();
    assert!(hostpci_values(&cfg).iter().all(|v| !v.contains("03:00")));
    // Only the audio function of the card is attached.
    let text = q35.replacen("hostpci0:", "hostpci9: 03:00.1,pcie=1\nhostpci0:", 1);
    let t = host(Some(&text), None);
    let root = t.path();
    let out = ok(&attach(root, &[]));
    assert!(!out.contains("Nothing to change"), "{out}");
    let cfg = config(root);
    let card: Vec<String> = hostpci_values(&cfg)
        .into_iter()
        .filter(|v| v.contains("03:00"))
        .collect();
    assert_eq!(card.len(), 1, "{card:?}");
    let h = parse_hostpci(&card[0]).unwrap();
    assert_eq!(h.host, ["0000:03:00"], "every function of the card");
    assert_eq!(
        cfg.main_get("hostpci9"),
        Some(card[0].as_str()),
        "fixed in place"
    );
    // Now it is whole: attach again changes nothing.
    assert!(ok(&attach(root, &[])).contains("Nothing to change"));
}

#[test]
fn a_mapping_replaces_a_partial_address_entry() {
    let plain = corpus_text(&qemu("parse-config-input/plain.conf"));
    let text = plain.replace(
        "tags: foo bar\n",
        "hostpci3: 03:00.1;0000:07:00.0\ntags: foo bar\n",
    );
    let t = host(Some(&text), None);
    let root = t.path();
    ok(&run(
        root,
        &["mapping", "create", "rx6800", "03:00.0", "--yes"],
    ));
    ok(&attach(root, &["--mapping", "rx6800"]));
    let cfg = config(root);
    // The other device stays where it was; the card comes through the mapping only.
    assert_eq!(cfg.main_get("hostpci3"), Some("0000:07:00.0"));
    let values = hostpci_values(&cfg);
    assert_eq!(values, ["mapping=rx6800,pcie=1", "0000:07:00.0"]);
}
