//! The Proxmox config editor (`formats::pve_config`) against Proxmox's own test data in the
//! shared corpus: qemu-server and pve-container test configs, and real CT configs that share a
//! GPU (`proxmox/lxc-gpu-examples`).

mod common;
use common::*;

use passthru::formats::pve_config::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn proxmox() -> PathBuf {
    corpus().join("proxmox")
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The corpus text of a guest config: the lxc-gpu-examples carry an added `# SOURCE:` line 1.
fn guest_text(path: &Path) -> String {
    let text = read(path);
    if path.parent().and_then(|p| p.file_name()) == Some("lxc-gpu-examples".as_ref()) {
        let (first, rest) = text.split_once('\n').unwrap();
        assert!(first.starts_with("# SOURCE: "), "{}", path.display());
        rest.to_string()
    } else {
        text
    }
}

/// Every guest config in the corpus, grouped by the directory it counts under.
fn guest_configs() -> BTreeMap<&'static str, Vec<PathBuf>> {
    let root = proxmox();
    let mut all = Vec::new();
    walk(&root, &mut all);
    all.sort();
    let groups = [
        "qemu-server/cfg2cmd",
        "qemu-server/parse-config-input",
        "qemu-server/parse-config-expected",
        "qemu-server/snapshot-input",
        "qemu-server/snapshot-expected",
        "pve-container/snapshot-input",
        "pve-container/snapshot-expected",
        "lxc-gpu-examples",
    ];
    let mut out: BTreeMap<&str, Vec<PathBuf>> = BTreeMap::new();
    let mut others = Vec::new();
    for path in all {
        let rel = path
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let group = groups.iter().find(|g| rel.starts_with(&format!("{g}/")));
        match group {
            Some(g) if rel.ends_with(".conf") => out.entry(*g).or_default().push(path),
            _ => others.push(rel),
        }
    }
    // What is not a guest config: the expected KVM command lines, the cfg2cmd README, Proxmox's
    // strict-mode error texts, pve-container's storage.cfg and replication.cfg (the storage and
    // replication definitions its tests run against) and an API schema excerpt.
    let cmd = others.iter().filter(|r| r.ends_with(".conf.cmd")).count();
    let strict = others
        .iter()
        .filter(|r| r.ends_with(".strict.error"))
        .count();
    let rest: BTreeSet<&str> = others
        .iter()
        .filter(|r| !r.ends_with(".conf.cmd") && !r.ends_with(".strict.error"))
        .map(String::as_str)
        .collect();
    assert_eq!(cmd, 95);
    assert_eq!(strict, 4);
    assert_eq!(
        rest,
        BTreeSet::from([
            "api-schema-excerpt.json",
            "pve-container/snapshot-input/replication.cfg",
            "pve-container/snapshot-input/storage.cfg",
            "qemu-server/cfg2cmd/README.adoc",
        ])
    );
    out
}

#[test]
fn every_guest_config_round_trips_byte_for_byte() {
    let groups = guest_configs();
    let counts: Vec<(&str, usize)> = groups.iter().map(|(g, v)| (*g, v.len())).collect();
    assert_eq!(
        counts,
        vec![
            ("lxc-gpu-examples", 8),
            ("pve-container/snapshot-expected", 42),
            ("pve-container/snapshot-input", 42),
            ("qemu-server/cfg2cmd", 105),
            ("qemu-server/parse-config-expected", 4),
            ("qemu-server/parse-config-input", 10),
            ("qemu-server/snapshot-expected", 51),
            ("qemu-server/snapshot-input", 51),
        ]
    );
    let mut n = 0;
    for path in groups.values().flatten() {
        let text = guest_text(path);
        let mut cfg =
            parse_guest_config(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(cfg.render(), text, "{}", path.display());
        // A no-op edit leaves the bytes alone too.
        assert!(!cfg.main_remove("no-such-key"));
        assert!(!cfg.main_remove_value("memory", "no such value"));
        assert_eq!(cfg.render(), text, "{}", path.display());
        n += 1;
    }
    assert_eq!(n, 313);
}

/// Sections Proxmox keeps (`parse_vm_config`): `[PENDING]`, `[special:cloudinit]`,
/// `[special:fleecing]` and snapshots named `[a-z][a-z0-9_-]+` (case-insensitive). Others
/// (`[special:unknown123]`, `[:3]`) are skipped with their lines.
fn proxmox_keeps_section(name: &str) -> bool {
    let snapshot = name.len() >= 2
        && name.as_bytes()[0].is_ascii_alphabetic()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    name.eq_ignore_ascii_case("PENDING")
        || name == "special:cloudinit"
        || name == "special:fleecing"
        || snapshot
}

/// qemu-server's parse-and-write test: for the 4 inputs with a `parse-config-expected` twin,
/// what we read is what Proxmox kept. (The other 6 inputs are written back unchanged by
/// Proxmox, which our byte-exact round trip already matches.)
///
/// Our parser is not strict and accepts all 4 inputs whose `*.strict.error` shows Proxmox's
/// strict mode refusing them: it keeps duplicate sections (`duplicate section: pending`; reads
/// use the later one, as Proxmox does), unknown sections (`skipping unknown section:
/// 'special:unknown123'`; listed by `section_names`, never read by passthru), and values that
/// fail Proxmox's type checks (`numa: verify meee~ :)` in a snapshot; no values are
/// type-checked here). Rendering keeps all of it verbatim instead of collapsing it the way
/// Proxmox's writer does, since passthru only edits the main section.
#[test]
fn reading_agrees_with_proxmox_parse_config_expected() {
    let dir = proxmox().join("qemu-server");
    let mut twins = 0;
    for entry in std::fs::read_dir(dir.join("parse-config-expected")).unwrap() {
        let expected_path = entry.unwrap().path();
        let name = expected_path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if let Some(conf) = name.strip_suffix(".strict.error") {
            // Our reader accepts what strict Proxmox refuses (see above).
            let input = read(&dir.join("parse-config-input").join(conf));
            assert!(parse_guest_config(&input).is_ok(), "{conf}");
            continue;
        }
        twins += 1;
        let ours = parse_guest_config(&read(&dir.join("parse-config-input").join(&name))).unwrap();
        let theirs = parse_guest_config(&read(&expected_path)).unwrap();

        // Main section: the same keys, and our last value is the one Proxmox kept.
        let our_keys: BTreeSet<String> = ours.main_keys().into_iter().collect();
        let their_keys: BTreeSet<String> = theirs.main_keys().into_iter().collect();
        assert_eq!(our_keys, their_keys, "{name}");
        for key in &their_keys {
            assert_eq!(ours.main_get(key), theirs.main_get(key), "{name}: {key}");
        }

        // Sections: the names Proxmox keeps, each read from the later copy.
        let their_sections = theirs.section_names();
        let kept: BTreeSet<String> = ours
            .section_names()
            .into_iter()
            .filter(|s| proxmox_keeps_section(s))
            .collect();
        assert_eq!(kept, their_sections.iter().cloned().collect(), "{name}");
        for section in &their_sections {
            let their_keys = theirs.section_keys(section);
            for key in &their_keys {
                assert_eq!(
                    ours.section_get(section, key),
                    theirs.section_get(section, key),
                    "{name}: [{section}] {key}"
                );
            }
            // The only setting we read that Proxmox dropped is the one that fails its
            // boolean type check.
            for key in ours.section_keys(section) {
                if !their_keys.contains(&key) {
                    assert_eq!(
                        (key.as_str(), ours.section_get(section, &key)),
                        ("numa", Some("verify meee~ :)")),
                        "{name}: [{section}]"
                    );
                }
            }
        }
    }
    assert_eq!(twins, 4);
}

#[test]
fn duplicate_sections_read_the_later_copy() {
    let path = proxmox().join("qemu-server/parse-config-input/duplicate-sections.conf");
    let cfg = parse_guest_config(&read(&path)).unwrap();
    assert_eq!(
        cfg.section_names(),
        vec![
            "PENDING",
            "PENDING",
            "special:cloudinit",
            "special:cloudinit",
            "foo",
            "foo"
        ]
    );
    // The first [PENDING] has `bios: ovmf`, the second `vga: qxl`; Proxmox keeps the second.
    assert_eq!(cfg.section_get("PENDING", "bios"), None);
    assert_eq!(cfg.section_get("PENDING", "vga"), Some("qxl"));
    assert_eq!(cfg.section_get("special:cloudinit", "name"), Some("deb123"));
    assert_eq!(cfg.section_get("foo", "cores"), Some("4"));
}

/// The `-device 'vfio-pci,...'` arguments of a `.conf.cmd`, by their `id=`.
fn vfio_devices(cmd: &str) -> BTreeMap<String, String> {
    cmd.lines()
        .filter_map(|l| l.trim().strip_prefix("-device 'vfio-pci,"))
        .map(|d| d.trim_end_matches(['\\', ' ']).trim_end_matches('\''))
        .map(|d| {
            let id = d
                .split(',')
                .find_map(|p| p.strip_prefix("id="))
                .unwrap()
                .to_string();
            (id, d.to_string())
        })
        .collect()
}

fn option<'a>(h: &'a HostPci, key: &str) -> Option<&'a str> {
    h.options
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

#[test]
fn hostpci_values_match_the_kvm_command_lines() {
    let dir = proxmox().join("qemu-server/cfg2cmd");
    let files = [
        "q35-linux-hostpci.conf",
        "q35-linux-hostpci-multifunction.conf",
        "q35-linux-hostpci-mapping.conf",
        "q35-linux-hostpci-x-pci-overrides.conf",
        "q35-linux-hostpci-template.conf",
        "q35-linux-hostpci-driver-keep.conf",
        "q35-win10-hostpci.conf",
        "i440fx-win10-hostpci.conf",
    ];
    let mut values = 0;
    for file in files {
        let cfg = parse_guest_config(&read(&dir.join(file))).unwrap();
        let devices = vfio_devices(&read(&dir.join(format!("{file}.cmd"))));
        let template = cfg.main_get("template") == Some("1");
        // A template is never started: its command line has no passthrough devices.
        assert_eq!(template, devices.is_empty(), "{file}");
        for key in cfg.main_keys() {
            let Some(n) = key.strip_prefix("hostpci") else {
                continue;
            };
            let value = cfg.main_get(&key).unwrap();
            let h = parse_hostpci(value).unwrap_or_else(|e| panic!("{file}: {key}: {e}"));
            assert_eq!(render_hostpci(&h), value, "{file}: {key}");
            values += 1;
            if template {
                continue;
            }
            // One device per host function; all functions get `id=hostpciN.F`.
            let mine: Vec<&String> = devices
                .iter()
                .filter(|(id, _)| *id == &key || id.starts_with(&format!("{key}.")))
                .map(|(_, d)| d)
                .collect();
            assert!(!mine.is_empty(), "{file}: {key}");
            for id in &h.host {
                let full = if id.matches(':').count() == 2 {
                    id.clone()
                } else {
                    format!("0000:{id}")
                };
                let prefix = if id.contains('.') {
                    format!("host={full},")
                } else {
                    format!("host={full}.") // a device without `.F` means all its functions
                };
                assert!(
                    mine.iter().any(|d| d.starts_with(&prefix)),
                    "{file}: {key}: {prefix} in {mine:?}"
                );
            }
            // `pcie=1` puts the device behind ich9 root port N+1; otherwise it is on pci.N.
            let bus = if option(&h, "pcie") == Some("1") {
                format!("bus=ich9-pcie-port-{},", n.parse::<u32>().unwrap() + 1)
            } else {
                "bus=pci.".to_string()
            };
            assert!(mine.iter().all(|d| d.contains(&bus)), "{file}: {key}");
            if option(&h, "rombar") == Some("0") {
                assert!(mine[0].contains(",rombar=0"), "{file}: {key}");
            }
            for (opt, arg) in [
                ("vendor-id", "x-pci-vendor-id"),
                ("device-id", "x-pci-device-id"),
                ("sub-vendor-id", "x-pci-sub-vendor-id"),
                ("sub-device-id", "x-pci-sub-device-id"),
            ] {
                if let Some(v) = option(&h, opt) {
                    assert!(mine[0].contains(&format!(",{arg}={v}")), "{file}: {key}");
                }
            }
            if let Some(m) = &h.mapping {
                // The mapping resolves on the host; `mdev=` makes a mediated device instead.
                assert!(h.host.is_empty());
                let expected = if option(&h, "mdev").is_some() {
                    "sysfsdev=/sys/bus/mdev/devices/"
                } else {
                    "host=0000:07:10."
                };
                assert!(mine[0].starts_with(expected), "{file}: {key} ({m})");
            }
        }
    }
    assert_eq!(values, 29);

    let cfg = |file: &str, key: &str| {
        let cfg = parse_guest_config(&read(&dir.join(file))).unwrap();
        parse_hostpci(cfg.main_get(key).unwrap()).unwrap()
    };
    let h = cfg("q35-linux-hostpci.conf", "hostpci1");
    assert_eq!(
        h,
        HostPci {
            host: vec!["d0:13.0".into()],
            mapping: None,
            options: vec![("pcie".into(), "1".into())]
        }
    );
    let h = cfg("q35-linux-hostpci-multifunction.conf", "hostpci0");
    assert_eq!(h.host, vec!["f0:43"]);
    let h = cfg("q35-linux-hostpci-multifunction.conf", "hostpci1");
    assert_eq!(h.host, vec!["1234:f0:43"]);
    let h = cfg("q35-linux-hostpci-mapping.conf", "hostpci1");
    assert_eq!(h.mapping.as_deref(), Some("someGpu"));
    assert_eq!(h.options, vec![("mdev".into(), "some-model".into())]);
    let h = cfg("q35-linux-hostpci-driver-keep.conf", "hostpci0");
    assert_eq!(h.host, vec!["00:ff.1"]);
    assert_eq!(option(&h, "driver"), Some("keep"));
    let h = cfg("q35-linux-hostpci-driver-keep.conf", "hostpci1");
    assert_eq!(option(&h, "driver"), Some("vfio"));
    let h = cfg("q35-linux-hostpci-x-pci-overrides.conf", "hostpci0");
    assert_eq!(option(&h, "sub-device-id"), Some("0x0000"));
}

/// Splits rendered text at its first `[section]` header line.
fn split_main(text: &str) -> (&str, &str) {
    let at = if text.starts_with('[') {
        Some(0)
    } else {
        text.find("\n[").map(|i| i + 1)
    };
    at.map_or((text, ""), |i| text.split_at(i))
}

/// Adds and removes GPU lines in every corpus config that has sections: the sections stay
/// byte for byte, and undoing the edit restores the file exactly.
#[test]
fn edits_change_only_the_main_section() {
    let mut edited = 0;
    for path in guest_configs().values().flatten() {
        let text = guest_text(path);
        let cfg = parse_guest_config(&text).unwrap();
        if cfg.section_names().is_empty() {
            continue;
        }
        let (main, sections) = split_main(&text);
        let is_ct = path.to_string_lossy().contains("/lxc/");
        let mut cfg2 = cfg.clone();
        let added: Vec<(String, String)> = if is_ct {
            let n = free_dev_index(&cfg).unwrap();
            vec![
                (format!("dev{n}"), "/dev/dri/renderD128,gid=104".into()),
                ("lxc.cgroup2.devices.allow".into(), "c 226:* rwm".into()),
                ("lxc.cgroup2.devices.allow".into(), "c 226:* rwm".into()),
            ]
        } else {
            let n = free_hostpci_index(&cfg).unwrap();
            vec![(format!("hostpci{n}"), "0000:01:00,pcie=1,x-vga=1".into())]
        };
        for (k, v) in &added {
            if k.starts_with("lxc.") {
                cfg2.main_add(k, v);
            } else {
                cfg2.main_set(k, v);
            }
        }
        let out = cfg2.render();
        let (main2, sections2) = split_main(&out);
        assert_eq!(sections2, sections, "{}", path.display());
        // The main section gained exactly the added lines, in one block.
        let new_lines: Vec<String> = added.iter().map(|(k, v)| format!("{k}: {v}\n")).collect();
        let block = new_lines.concat();
        assert!(main2.contains(&block), "{}", path.display());
        assert_eq!(main2.replacen(&block, "", 1), main, "{}", path.display());
        for (k, v) in &added {
            assert!(cfg2.main_get_all(k).contains(&v.as_str()));
            assert_eq!(cfg2.section_get(&cfg2.section_names()[0], k), None);
        }
        // Undo.
        for (k, _) in &added {
            cfg2.main_remove(k);
        }
        assert_eq!(cfg2.render(), text, "{}", path.display());
        // Changing a value in place keeps its position.
        let first = cfg.main_keys()[0].clone();
        let mut cfg3 = cfg.clone();
        cfg3.main_set(&first, "changed");
        let out = cfg3.render();
        assert_eq!(split_main(&out).1, sections, "{}", path.display());
        assert_eq!(cfg3.main_keys(), cfg.main_keys());
        assert_eq!(cfg3.main_get(&first), Some("changed"));
        edited += 1;
    }
    // 152 of the 313 configs have at least one `[section]`.
    assert_eq!(edited, 152);
}

fn gpu_example(prefix: &str) -> GuestConfig {
    let dir = proxmox().join("lxc-gpu-examples");
    let path = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .unwrap();
    parse_guest_config(&guest_text(&path)).unwrap()
}

#[test]
fn lxc_dev_lines_written_by_the_gui() {
    let cfg = gpu_example("04-");
    let devs: Vec<LxcDev> = ["dev0", "dev1"]
        .iter()
        .map(|k| parse_lxc_dev(cfg.main_get(k).unwrap()).unwrap())
        .collect();
    assert_eq!(
        devs,
        vec![
            LxcDev {
                path: "/dev/dri/card0".into(),
                gid: Some(993),
                uid: None,
                mode: None,
                deny_write: false
            },
            LxcDev {
                path: "/dev/dri/renderD128".into(),
                gid: Some(993),
                uid: None,
                mode: None,
                deny_write: false
            },
        ]
    );
    assert_eq!(render_lxc_dev(&devs[0]), cfg.main_get("dev0").unwrap());
    assert_eq!(render_lxc_dev(&devs[1]), cfg.main_get("dev1").unwrap());
    assert_eq!(free_dev_index(&cfg), Some(2));
    assert_eq!(cfg.main_get("unprivileged"), Some("1"));
}

/// Proxmox reads `lxc.*` values with `(.*?)\s*$` and never strips a trailing `# ...`: the
/// comment is part of the value it stores and writes back (and hands to LXC).
#[test]
fn raw_lxc_values_keep_trailing_comments() {
    let cfg = gpu_example("05-");
    assert_eq!(
        cfg.main_get_all("lxc.cgroup2.devices.allow"),
        vec![
            "c 195:* rwm # Die 195 anpassen",
            "c 511:* rwm # Die 511 anpassen"
        ]
    );
    assert_eq!(cfg.main_get_all("lxc.mount.entry").len(), 5);

    let cfg = gpu_example("06-");
    assert_eq!(
        cfg.main_get_all("lxc.cgroup2.devices.allow"),
        vec!["c 195:* rwm", "c 504:* rwm", "c 507:* rwm"]
    );
    assert_eq!(
        cfg.main_get("lxc.mount.entry"),
        Some("/dev/nvidia-caps dev/nvidia-caps none bind,optional,create=dir")
    );

    let cfg = gpu_example("07-");
    assert_eq!(
        cfg.main_get("lxc.hook.pre-start"),
        Some("sh -c \"chown 100000:100989 /dev/dri/renderD128\"")
    );
    let mut cfg = gpu_example("08-");
    assert_eq!(
        cfg.main_get_all("lxc.cap.drop"),
        vec!["", "mac_override sys_time sys_module sys_rawio"]
    );
    assert_eq!(
        cfg.main_get_all("lxc.cgroup.devices.allow"),
        vec!["c 116:* rwm"]
    );
    // Removing one value leaves its neighbours with the same key alone.
    assert!(cfg.main_remove_value("lxc.cgroup2.devices.allow", "c 4:7 rwm"));
    assert_eq!(
        cfg.main_get_all("lxc.cgroup2.devices.allow"),
        vec!["c 226:0 rwm", "c 226:128 rwm", "c 29:0 rwm"]
    );
}
