//! Attach and share on a Proxmox host tree: Proxmox's own configs (qemu-server and
//! pve-container test data, and real GPU-sharing CT configs from ../shared/corpus/proxmox),
//! libvirt's own domain XML (../shared/corpus/libvirt), all edited through the setup
//! transaction. Attach, attach again (no change), detach, rollback: byte-identical at the end.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// The RX 6800 XT host (Proxmox VE 8.1) with the given guest configs laid in.
fn pve_host(vms: &[(u32, &Path)], cts: &[(u32, &Path)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    passthru_testkit::build_named("amd-navi", root).unwrap();
    std::fs::write(root.join("etc/hostname"), "pve1\n").unwrap();
    for (id, src) in vms {
        std::fs::create_dir_all(root.join("etc/pve/qemu-server")).unwrap();
        std::fs::copy(src, root.join(format!("etc/pve/qemu-server/{id}.conf"))).unwrap();
    }
    for (id, src) in cts {
        std::fs::create_dir_all(root.join("etc/pve/lxc")).unwrap();
        let text = std::fs::read_to_string(src).unwrap();
        // The GPU examples carry a `# SOURCE:` line added by the corpus; strip it.
        let text = if text.starts_with("# SOURCE:") {
            text.split_once('\n').unwrap().1.to_string()
        } else {
            text
        };
        std::fs::write(root.join(format!("etc/pve/lxc/{id}.conf")), text).unwrap();
    }
    dir
}

fn run(root: &Path, args: &[&str]) -> std::process::Output {
    let mut a = args.to_vec();
    a.extend(["--root", root.to_str().unwrap()]);
    passthru(&a)
}

fn ok(o: &std::process::Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\n{}\n{}",
        o.status.code(),
        stdout(o),
        String::from_utf8_lossy(&o.stderr)
    );
    stdout(o)
}

fn read(root: &Path, rel: &str) -> String {
    std::fs::read_to_string(root.join(rel)).unwrap()
}

#[test]
fn vm_attach_detach_rollback_on_proxmox_configs() {
    let qs = corpus().join("proxmox/qemu-server");
    let configs = [
        qs.join("parse-config-input/snapshots.conf"),
        qs.join("parse-config-input/regular-vm-efi.conf"),
        qs.join("parse-config-input/cloudinit-snapshot.conf"),
        qs.join("cfg2cmd/q35-linux-hostpci.conf"),
        qs.join("cfg2cmd/i440fx-win10-hostpci.conf"),
        qs.join("snapshot-input/commit/qemu-server/101.conf"),
        qs.join("snapshot-input/commit/qemu-server/201.conf"),
    ];
    for src in &configs {
        let t = pve_host(&[(100, src)], &[]);
        let root = t.path();
        let rel = "etc/pve/qemu-server/100.conf";
        let original = read(root, rel);
        let orig_cfg = passthru::formats::pve_config::parse_guest_config(&original).unwrap();
        if let Some(lock) = orig_cfg.main_get("lock") {
            // 101.conf is mid-snapshot (`lock: snapshot`): Proxmox refuses to change it.
            let o = run(
                root,
                &["vm", "attach", "100", "03:00.0", "--force", "--yes"],
            );
            assert_eq!(o.status.code(), Some(2), "{}", src.display());
            assert!(String::from_utf8_lossy(&o.stderr).contains(&format!("lock: {lock}")));
            assert_eq!(read(root, rel), original);
            continue;
        }
        let out = ok(&run(
            root,
            &["vm", "attach", "100", "03:00.0", "--force", "--yes"],
        ));
        assert!(out.contains("Applied"), "{}: {out}", src.display());
        let attached = read(root, rel);
        let cfg = passthru::formats::pve_config::parse_guest_config(&attached).unwrap();
        let value = (0..16)
            .find_map(|i| {
                cfg.main_get(&format!("hostpci{i}"))
                    .filter(|v| v.starts_with("0000:03:00"))
                    .map(str::to_string)
            })
            .unwrap_or_else(|| panic!("{}: no hostpci for the card:\n{attached}", src.display()));
        let h = passthru::formats::pve_config::parse_hostpci(&value).unwrap();
        assert_eq!(h.host, ["0000:03:00"], "all functions of the slot");
        let windows = cfg.main_get("ostype").is_some_and(|o| o.starts_with('w'));
        let orig_bios = passthru::formats::pve_config::parse_guest_config(&original)
            .unwrap()
            .main_get("bios")
            .map(str::to_string);
        if windows && orig_bios.as_deref() != Some("ovmf") {
            // An installed Windows on SeaBIOS keeps its firmware, with a note saying why.
            assert_eq!(
                cfg.main_get("bios"),
                orig_bios.as_deref(),
                "{}",
                src.display()
            );
            assert!(out.contains("SeaBIOS"), "{}: {out}", src.display());
        } else {
            assert_eq!(cfg.main_get("bios"), Some("ovmf"), "{}", src.display());
        }
        let q35 = cfg.main_get("machine").is_some_and(|m| m.contains("q35"));
        assert_eq!(
            h.options.iter().any(|(k, v)| k == "pcie" && v == "1"),
            q35,
            "{}: pcie=1 exactly when q35",
            src.display()
        );
        if windows && !q35 {
            assert!(
                out.contains("i440fx"),
                "an existing Windows VM on i440fx is warned about, not changed"
            );
        }
        // Sections are untouched: only the main section changed.
        for sec in orig_cfg.section_names() {
            let start = |t: &str| t.find(&format!("[{sec}]")).map(|i| t[i..].to_string());
            assert_eq!(
                start(&attached),
                start(&original),
                "section [{sec}] changed"
            );
        }
        // Again: no change.
        assert!(ok(&run(
            root,
            &["vm", "attach", "100", "03:00.0", "--force", "--yes"]
        ))
        .contains("Nothing to change"));
        // Detach removes the entry; then both rollbacks restore the original bytes.
        ok(&run(root, &["vm", "detach", "100", "03:00.0", "--yes"]));
        assert!(!read(root, rel).contains("0000:03:00"));
        ok(&run(root, &["rollback", "--yes"]));
        assert_eq!(read(root, rel), attached, "rollback of the detach");
        let status = ok(&run(root, &["setup", "status"]));
        let first = status
            .lines()
            .next()
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_string();
        ok(&run(root, &["rollback", &first, "--yes"]));
        assert_eq!(
            read(root, rel),
            original,
            "{}: not byte-identical after rollback",
            src.display()
        );
    }
}

#[test]
fn vm_attach_options_and_refusals() {
    let src = corpus().join("proxmox/qemu-server/parse-config-input/plain.conf");
    let t = pve_host(&[(100, &src)], &[]);
    let root = t.path();
    // The RX 6800 XT is this host's only display: refused without --force.
    let o = run(root, &["vm", "attach", "100", "03:00.0", "--yes"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("safety.only-display"));
    ok(&run(
        root,
        &[
            "vm",
            "attach",
            "100",
            "03:00.0",
            "--primary",
            "--rombar",
            "0",
            "--hidden",
            "--force",
            "--yes",
        ],
    ));
    let cfg = passthru::formats::pve_config::parse_guest_config(&read(
        root,
        "etc/pve/qemu-server/100.conf",
    ))
    .unwrap();
    let v = (0..16)
        .find_map(|i| cfg.main_get(&format!("hostpci{i}")))
        .unwrap()
        .to_string();
    assert!(v.contains("x-vga=1") && v.contains("rombar=0"), "{v}");
    assert!(cfg.main_get("cpu").unwrap().contains("hidden=1"));
    // A VM that does not exist is an error naming the file.
    let o = run(
        root,
        &["vm", "attach", "999", "03:00.0", "--force", "--yes"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("etc/pve/qemu-server/999.conf"));
}

#[test]
fn mapping_create_and_list() {
    let t = pve_host(&[], &[]);
    let root = t.path();
    ok(&run(
        root,
        &["mapping", "create", "rx6800", "03:00.0", "--yes"],
    ));
    let text = read(root, "etc/pve/mapping/pci.cfg");
    assert!(text.starts_with("rx6800\n\tmap "), "{text}");
    let maps = passthru::formats::pve_config::parse_pci_mappings(&text).unwrap();
    let map: std::collections::BTreeMap<_, _> = maps[0].maps[0].iter().cloned().collect();
    assert_eq!(map["id"], "1002:73bf");
    assert_eq!(map["node"], "pve1");
    assert_eq!(map["path"], "0000:03:00");
    assert_eq!(map["iommugroup"], "15");
    assert!(ok(&run(
        root,
        &["mapping", "create", "rx6800", "03:00.0", "--yes"]
    ))
    .contains("Nothing to change"));
    assert!(ok(&run(root, &["mapping", "list"])).contains("node=pve1"));
    // A VM can then use it by name.
    let src = corpus().join("proxmox/qemu-server/parse-config-input/plain.conf");
    std::fs::create_dir_all(root.join("etc/pve/qemu-server")).unwrap();
    std::fs::copy(&src, root.join("etc/pve/qemu-server/100.conf")).unwrap();
    ok(&run(
        root,
        &[
            "vm",
            "attach",
            "100",
            "03:00.0",
            "--mapping",
            "rx6800",
            "--force",
            "--yes",
        ],
    ));
    assert!(read(root, "etc/pve/qemu-server/100.conf").contains("mapping=rx6800"));
    // Detach takes the entry that names the card through its mapping; the mapping stays.
    let mapping = read(root, "etc/pve/mapping/pci.cfg");
    ok(&run(root, &["vm", "detach", "100", "03:00.0", "--yes"]));
    assert!(!read(root, "etc/pve/qemu-server/100.conf").contains("mapping=rx6800"));
    assert_eq!(read(root, "etc/pve/mapping/pci.cfg"), mapping);
}

#[test]
fn lxc_share_matches_the_real_forms() {
    let ex = corpus().join("proxmox/lxc-gpu-examples");
    let gui = std::fs::read_dir(&ex)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("04-"))
        .unwrap();
    let t = pve_host(&[], &[(100, &gui)]);
    let root = t.path();
    let rel = "etc/pve/lxc/100.conf";
    // The GUI already wrote dev0 card0 and dev1 renderD128 with gid 993: nothing to add.
    let before = read(root, rel);
    assert!(ok(&run(
        root,
        &["lxc", "share", "100", "03:00.0", "--gid", "993", "--yes"]
    ))
    .contains("Nothing to change"));
    assert_eq!(read(root, rel), before);
    // Unshare removes exactly those two lines.
    ok(&run(root, &["lxc", "unshare", "100", "03:00.0", "--yes"]));
    let after = read(root, rel);
    assert_eq!(
        after,
        before
            .replace("dev0: /dev/dri/card0,gid=993\n", "")
            .replace("dev1: /dev/dri/renderD128,gid=993\n", "")
    );
    // Sharing again needs the container's gids: its rootfs is not reachable here.
    let o = run(root, &["lxc", "share", "100", "03:00.0", "--yes"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("pct exec 100 -- getent group"));
    ok(&run(
        root,
        &["lxc", "share", "100", "03:00.0", "--gid", "993", "--yes"],
    ));
    let shared = read(root, rel);
    assert!(
        shared.contains(": /dev/dri/renderD128,gid=993\n")
            && shared.contains(": /dev/dri/card0,gid=993\n"),
        "{shared}"
    );

    // Proxmox before 8.1: raw lines, in the forms the community scripts use.
    let old = pve_host(&[], &[(101, &gui)]);
    let root = old.path();
    let status = read(root, "var/lib/dpkg/status").replace("Version: 8.1.4", "Version: 7.4-17");
    std::fs::write(root.join("var/lib/dpkg/status"), status).unwrap();
    ok(&run(root, &["lxc", "unshare", "101", "03:00.0", "--yes"]));
    ok(&run(root, &["lxc", "share", "101", "03:00.0", "--yes"]));
    let text = read(root, "etc/pve/lxc/101.conf");
    assert!(
        text.contains("lxc.cgroup2.devices.allow: c 226:* rwm\n"),
        "{text}"
    );
    assert!(text.contains("lxc.mount.entry: /dev/dri/renderD128 dev/dri/renderD128 none bind,optional,create=file\n"), "{text}");
    assert!(
        ok(&run(root, &["lxc", "share", "101", "03:00.0", "--yes"])).contains("Nothing to change"),
        "no duplicate lines"
    );
}

#[test]
fn moving_between_vm_and_container_cleans_the_other_side() {
    let ex = corpus().join("proxmox/lxc-gpu-examples");
    let gui = std::fs::read_dir(&ex)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("04-"))
        .unwrap();
    let vm = corpus().join("proxmox/qemu-server/parse-config-input/plain.conf");
    let t = pve_host(&[(100, &vm)], &[(200, &gui)]);
    let root = t.path();
    let out = ok(&run(
        root,
        &["vm", "attach", "100", "03:00.0", "--force", "--yes"],
    ));
    // The VM config, the record of the settings attach changed (for detach), the container.
    assert!(out.contains("3 files written"), "{out}");
    assert!(
        !read(root, "etc/pve/lxc/200.conf").contains("/dev/dri/renderD128"),
        "the container's references went in the same transaction"
    );
    // And back: sharing with the container removes the VM's hostpci.
    ok(&run(
        root,
        &["lxc", "share", "200", "03:00.0", "--gid", "993", "--yes"],
    ));
    assert!(!read(root, "etc/pve/qemu-server/100.conf").contains("0000:03:00"));
    assert!(read(root, "etc/pve/lxc/200.conf").contains("/dev/dri/renderD128"));
}

#[test]
fn libvirt_attach_validates_and_detaches_byte_identically() {
    let dir = corpus().join("libvirt");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "xml"))
        .collect();
    files.sort();
    let validate = |p: &Path| {
        if std::env::var_os("PASSTHRU_SKIP_VIRT_XML").is_some_and(|v| v == "1") {
            skip_or_fail("schema validation (PASSTHRU_SKIP_VIRT_XML=1)");
            return;
        }
        let o = Command::new("virt-xml-validate")
            .arg(p)
            .arg("domain")
            .output()
            .expect("virt-xml-validate (libvirt-clients) is needed");
        assert!(
            o.status.success(),
            "{}: {}{}",
            p.display(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    };
    let mut n = 0;
    for f in files {
        let xml = std::fs::read_to_string(&f).unwrap();
        // hostdev-vfio.xml uses a model the installed schema does not know; see tests/libvirt_xml.rs.
        let validates = !f.ends_with("hostdev-vfio.xml");
        let name = passthru::formats::libvirt_xml::domain_name(&xml).unwrap();
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        passthru_testkit::build_named("amd-navi", root).unwrap();
        let rel = format!("etc/libvirt/qemu/{name}.xml");
        std::fs::create_dir_all(root.join("etc/libvirt/qemu")).unwrap();
        std::fs::write(root.join(&rel), &xml).unwrap();
        ok(&run(
            root,
            &[
                "libvirt", "attach", &name, "03:00.0", "--hidden", "--force", "--yes",
            ],
        ));
        let attached = read(root, &rel);
        assert_eq!(
            passthru::formats::libvirt_xml::hostdev_sources(&attached)
                .iter()
                .filter(|a| a.bus == 3)
                .count(),
            2,
            "{name}: both functions"
        );
        if validates {
            validate(&root.join(&rel));
        }
        assert!(ok(&run(
            root,
            &["libvirt", "attach", &name, "03:00.0", "--hidden", "--force", "--yes"]
        ))
        .contains("Nothing to change"));
        ok(&run(
            root,
            &["libvirt", "detach", &name, "03:00.0", "--yes"],
        ));
        ok(&run(root, &["rollback", "--yes"]));
        assert_eq!(read(root, &rel), attached);
        let first = ok(&run(root, &["setup", "status"]))
            .lines()
            .next()
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_string();
        ok(&run(root, &["rollback", &first, "--yes"]));
        assert_eq!(
            read(root, &rel),
            xml,
            "{name}: not byte-identical after rollback"
        );
        n += 1;
    }
    assert!(n >= 12, "{n} domains");
}

#[test]
fn docker_snippets() {
    let t = pve_host(&[], &[]);
    let out = ok(&run(t.path(), &["docker", "03:00.0"]));
    assert!(
        out.contains("--device /dev/dri/renderD128:/dev/dri/renderD128")
            && out.contains("group_add"),
        "{out}"
    );
    let d = tempfile::tempdir().unwrap();
    passthru_testkit::build_named("nvidia-desktop", d.path()).unwrap();
    let out = ok(&run(d.path(), &["docker", "07:00.0"]));
    assert!(
        out.contains("driver: nvidia") && out.contains("--gpus"),
        "{out}"
    );
}

#[test]
fn nvidia_sharing_migrates_legacy_lines_to_devn() {
    // The desktop's RTX 3080 on Proxmox 8.2, with a container set up the old way (corpus 05:
    // cgroup rules with hard-coded majors and bind mounts).
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    passthru_testkit::build_named("nvidia-desktop", root).unwrap();
    std::fs::create_dir_all(root.join("etc/pve/lxc")).unwrap();
    std::fs::create_dir_all(root.join("var/lib/dpkg")).unwrap();
    std::fs::write(
        root.join("var/lib/dpkg/status"),
        "Package: pve-manager\nStatus: install ok installed\nVersion: 8.2.4\n",
    )
    .unwrap();
    for n in [
        "nvidia0",
        "nvidiactl",
        "nvidia-uvm",
        "nvidia-uvm-tools",
        "nvidia-modeset",
    ] {
        std::fs::write(root.join("dev").join(n), "").unwrap();
    }
    let ex = corpus().join("proxmox/lxc-gpu-examples");
    let legacy = std::fs::read_dir(&ex)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("05-"))
        .unwrap();
    let text = std::fs::read_to_string(legacy).unwrap();
    let body = text.split_once('\n').unwrap().1;
    std::fs::write(
        root.join("etc/pve/lxc/300.conf"),
        format!("arch: amd64\nhostname: jellyfin\nunprivileged: 1\n{body}"),
    )
    .unwrap();
    let out = ok(&run(root, &["lxc", "share", "300", "07:00.0", "--yes"]));
    assert!(
        out.contains("550.54.14"),
        "the host driver version the container must match:\n{out}"
    );
    let cfg = read(root, "etc/pve/lxc/300.conf");
    for n in [
        "/dev/nvidia0",
        "/dev/nvidiactl",
        "/dev/nvidia-uvm",
        "/dev/nvidia-uvm-tools",
        "/dev/nvidia-modeset",
    ] {
        assert!(cfg.contains(&format!(": {n}\n")), "{n} as devN:\n{cfg}");
    }
    assert!(
        !cfg.contains("lxc.mount.entry") && !cfg.contains("lxc.cgroup2"),
        "legacy lines migrated:\n{cfg}"
    );
    assert!(
        ok(&run(root, &["lxc", "share", "300", "07:00.0", "--yes"])).contains("Nothing to change")
    );
    ok(&run(root, &["rollback", "--yes"]));
    assert_eq!(
        read(root, "etc/pve/lxc/300.conf"),
        format!("arch: amd64\nhostname: jellyfin\nunprivileged: 1\n{body}")
    );
}
