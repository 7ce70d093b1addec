//! `passthru setup` and `rollback` on fixture roots: a synthetic host's PCI tree with a real
//! distribution's boot files laid over it (tests/fixtures/distros, see its SOURCES.md). Every
//! plan is applied, applied again (no change), checked by the real tools that will read the
//! files (kmod's modprobe, bash), and rolled back to a byte-identical tree.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// Path -> (bytes or link target, mode) for every file and link below `root`, except
/// passthru's own journal.
fn snapshot_tree(root: &Path) -> BTreeMap<String, (Vec<u8>, u32)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for e in std::fs::read_dir(root.join(&rel)).unwrap() {
            let e = e.unwrap();
            let r = rel.join(e.file_name());
            let rs = r.to_string_lossy().into_owned();
            if rs.starts_with("var/lib/passthru") {
                continue;
            }
            let meta = std::fs::symlink_metadata(e.path()).unwrap();
            if meta.file_type().is_symlink() {
                out.insert(
                    rs,
                    (
                        std::fs::read_link(e.path())
                            .unwrap()
                            .to_string_lossy()
                            .into_owned()
                            .into_bytes(),
                        0,
                    ),
                );
            } else if meta.is_dir() {
                stack.push(r);
            } else {
                out.insert(
                    rs,
                    (
                        std::fs::read(e.path()).unwrap(),
                        meta.permissions().mode() & 0o7777,
                    ),
                );
            }
        }
    }
    out
}

/// A host: `pci` (a synthetic description) with the `distro` tree's boot files over it.
fn compose(pci: &str, distro: &str) -> tempfile::TempDir {
    common::compose_distro(pci, distro)
}

fn run(root: &Path, args: &[&str]) -> std::process::Output {
    let mut a: Vec<&str> = args.to_vec();
    a.extend(["--root", root.to_str().unwrap()]);
    passthru(&a)
}

fn ok(o: &std::process::Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        stdout(o),
        String::from_utf8_lossy(&o.stderr)
    );
    stdout(o)
}

/// kmod reads what we wrote to modprobe.d the way the boot will.
fn modprobe_config(root: &Path) -> String {
    let out = Command::new("modprobe")
        .arg("-C")
        .arg(root.join("etc/modprobe.d"))
        .arg("--showconfig")
        .output()
        .or_else(|_| {
            Command::new("/sbin/modprobe")
                .arg("-C")
                .arg(root.join("etc/modprobe.d"))
                .arg("--showconfig")
                .output()
        })
        .expect("modprobe (kmod) is needed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// bash reads the GRUB defaults (and drop-ins) the way grub-mkconfig does.
fn grub_cmdline(root: &Path) -> String {
    let script = r#"cd "$1"; . ./etc/default/grub 2>/dev/null; for f in ./etc/default/grub.d/*.cfg; do [ -e "$f" ] && . "$f"; done; echo "$GRUB_CMDLINE_LINUX $GRUB_CMDLINE_LINUX_DEFAULT""#;
    let out = Command::new("bash")
        .args(["-c", script, "bash"])
        .arg(root)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

struct Case {
    pci: &'static str,
    distro: &'static str,
    gpu: &'static str,
}

const CASES: &[Case] = &[
    Case {
        pci: "nvidia-desktop",
        distro: "debian12-grub",
        gpu: "07:00.0",
    },
    Case {
        pci: "amd-navi",
        distro: "proxmox8-grub",
        gpu: "03:00.0",
    },
    Case {
        pci: "amd-navi",
        distro: "proxmox8-zfs-systemd-boot",
        gpu: "03:00.0",
    },
    Case {
        pci: "intel-n100",
        distro: "ubuntu2404-grub",
        gpu: "00:02.0",
    },
    Case {
        pci: "tesla-p40",
        distro: "fedora40-grubby-dracut",
        gpu: "03:00.0",
    },
    Case {
        pci: "nvidia-desktop",
        distro: "arch-mkinitcpio",
        gpu: "07:00.0",
    },
    Case {
        pci: "turing-usbc",
        distro: "popos-kernelstub",
        gpu: "01:00.0",
    },
];

#[test]
fn every_plan_applies_converges_validates_and_rolls_back() {
    for c in CASES {
        let t = compose(c.pci, c.distro);
        let root = t.path();
        let label = format!("{} on {}", c.pci, c.distro);
        let before = snapshot_tree(root);

        // A dry run writes nothing.
        let dry = ok(&run(root, &["setup", "vm", c.gpu, "--force", "--dry-run"]));
        assert!(
            dry.contains("+++ b/"),
            "{label}: the plan shows a diff:\n{dry}"
        );
        assert_eq!(
            snapshot_tree(root),
            before,
            "{label}: --dry-run wrote something"
        );
        // Without --yes and without a terminal, nothing is applied either.
        let o = run(root, &["setup", "vm", c.gpu, "--force"]);
        assert_eq!(o.status.code(), Some(2), "{label}");
        assert_eq!(snapshot_tree(root), before);

        let applied = ok(&run(root, &["setup", "vm", c.gpu, "--force", "--yes"]));
        assert!(
            applied.contains("Applied as transaction"),
            "{label}:\n{applied}"
        );
        assert!(
            applied.contains("skipped (not the live host)"),
            "{label}: host commands never run under --root"
        );
        let after = snapshot_tree(root);
        assert_ne!(after, before, "{label}");

        // What the boot will read, read by the real readers.
        let config = modprobe_config(root);
        assert!(
            config.contains("softdep"),
            "{label}: kmod sees our softdep:\n{config}"
        );
        if c.distro == "ubuntu2404-grub" {
            // vfio built in: ids go on the command line, modprobe.d options would be ignored.
            assert!(
                grub_cmdline(root).contains("vfio-pci.ids=8086:46d1"),
                "{label}: {}",
                grub_cmdline(root)
            );
        } else if c.pci == "tesla-p40" {
            // Two identical P40s: bound by address, not by ids=.
            assert!(
                !config.contains("options vfio_pci ids="),
                "{label}:\n{config}"
            );
            let rules =
                std::fs::read_to_string(root.join("etc/udev/rules.d/90-passthru-vfio.rules"))
                    .unwrap();
            assert!(
                rules.contains("KERNEL==\"0000:03:00.0\"") && !rules.contains("0000:81:00.0"),
                "{label}:\n{rules}"
            );
        } else {
            assert!(
                config.contains("options vfio_pci ids="),
                "{label}: kmod sees our options:\n{config}"
            );
        }
        match c.distro {
            "debian12-grub" | "proxmox8-grub" | "ubuntu2404-grub" => {
                let line = grub_cmdline(root);
                assert!(line.contains("iommu=pt"), "{label}: bash reads {line}");
                // etc/default/grub itself keeps every byte: the change is a drop-in.
                assert_eq!(
                    after["etc/default/grub"], before["etc/default/grub"],
                    "{label}"
                );
            }
            "fedora40-grubby-dracut" => {
                let entry = after
                    .iter()
                    .find(|(k, _)| k.starts_with("boot/loader/entries/"))
                    .unwrap();
                let text = String::from_utf8_lossy(&entry.1 .0);
                // Two P40s: bound by address (a udev rule), so vfio-pci must not load before
                // udev sets driver_override: no rd.driver.pre, and dracut only adds the
                // modules (add_drivers); the softdep loads vfio-pci before nvidia. The e2e
                // lab's dracut journey left the card with no driver the other way.
                assert!(
                    root.join("etc/udev/rules.d/90-passthru-vfio.rules")
                        .exists(),
                    "{label}"
                );
                assert!(
                    text.contains("intel_iommu=on")
                        && text.contains("iommu=pt")
                        && !text.contains("rd.driver.pre=vfio-pci"),
                    "{label}:\n{text}"
                );
                let dracut = root.join("etc/dracut.conf.d/90-passthru-vfio.conf");
                let sourced = Command::new("bash")
                    .args([
                        "-c",
                        ". \"$1\"; echo \"[${force_drivers:-}][$add_drivers]\"",
                        "bash",
                    ])
                    .arg(&dracut)
                    .output()
                    .unwrap();
                assert_eq!(
                    String::from_utf8_lossy(&sourced.stdout).trim(),
                    "[][ vfio vfio_iommu_type1 vfio_pci ]",
                    "{label}: dracut needs the spaces"
                );
                assert!(
                    grub_cmdline(root).contains("iommu=pt"),
                    "{label}: new kernels get it too"
                );
            }
            "proxmox8-zfs-systemd-boot" => {
                let line = std::fs::read_to_string(root.join("etc/kernel/cmdline")).unwrap();
                assert_eq!(
                    line, "root=ZFS=rpool/ROOT/pve-1 boot=zfs iommu=pt\n",
                    "{label}"
                );
            }
            "arch-mkinitcpio" => {
                let entry =
                    String::from_utf8_lossy(&after["boot/loader/entries/arch.conf"].0).into_owned();
                assert!(
                    entry.contains(" rw iommu=pt\n"),
                    "{label}: the systemd-boot entry's options:\n{entry}"
                );
                let script = r#"cd "$1"; . ./etc/mkinitcpio.conf; for f in ./etc/mkinitcpio.conf.d/*.conf; do . "$f"; done; echo "${MODULES[@]}""#;
                let out = Command::new("bash")
                    .args(["-c", script, "bash"])
                    .arg(root)
                    .output()
                    .unwrap();
                assert!(
                    String::from_utf8_lossy(&out.stdout)
                        .starts_with("vfio vfio_iommu_type1 vfio_pci"),
                    "{label}"
                );
            }
            "popos-kernelstub" => {
                let v: serde_json::Value =
                    serde_json::from_slice(&after["etc/kernelstub/configuration"].0).unwrap();
                let opts = v["user"]["kernel_options"].as_array().unwrap();
                assert!(opts.iter().any(|o| o == "iommu=pt"), "{label}");
                assert!(
                    opts.iter().any(|o| o == "quiet"),
                    "{label}: existing options kept"
                );
            }
            _ => {}
        }

        // Again: nothing to change.
        let again = ok(&run(root, &["setup", "vm", c.gpu, "--force", "--yes"]));
        assert!(
            again.contains("Nothing to change"),
            "{label}: not idempotent:\n{again}"
        );
        assert_eq!(snapshot_tree(root), after, "{label}");

        // Rollback restores every byte and mode.
        let rb = ok(&run(root, &["rollback", "--yes"]));
        assert!(rb.contains("Applied as transaction"), "{label}:\n{rb}");
        assert_eq!(
            snapshot_tree(root),
            before,
            "{label}: rollback is not exact"
        );
        let status = ok(&run(root, &["setup", "status"]));
        assert!(status.contains("rolledback"), "{label}:\n{status}");
    }
}

#[test]
fn setup_host_gives_the_card_back() {
    let t = compose("nvidia-desktop", "debian12-grub");
    let root = t.path();
    ok(&run(root, &["setup", "vm", "07:00.0", "--force", "--yes"]));
    assert!(root.join("etc/modprobe.d/passthru-vfio.conf").exists());
    let out = ok(&run(root, &["setup", "host", "07:00.0", "--yes"]));
    assert!(out.contains("Applied"), "{out}");
    assert!(
        !root.join("etc/modprobe.d/passthru-vfio.conf").exists(),
        "the binding file goes when it binds nothing"
    );
    assert!(ok(&run(root, &["setup", "host", "07:00.0", "--yes"])).contains("Nothing to change"));
}

#[test]
fn safety_refusals_without_force() {
    // The desktop's only display GPU.
    let t = compose("nvidia-desktop", "debian12-grub");
    let o = run(t.path(), &["setup", "vm", "07:00.0", "--yes"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("safety.only-display"));
    // A group shared with chipset devices cannot be fixed by setup, even with --force.
    let t = compose("apu-shared-group", "debian12-grub");
    let o = run(t.path(), &["setup", "vm", "02:00.0", "--yes", "--force"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("group.shared"));
    assert!(
        !t.path().join("var/lib/passthru/journal").exists(),
        "nothing was journaled"
    );

    // The boot disk and the default-route NIC in the card's group (the snapshot says so).
    let base = check_snapshot(compose("nvidia-desktop", "debian12-grub").path());
    let audio = "0000:07:00.1".parse().unwrap();
    for field in ["disk", "net"] {
        let mut s = base.clone();
        match field {
            "disk" => s.host_usage.boot_disk_controllers = vec![audio],
            _ => s.host_usage.default_route_devices = vec![audio],
        }
        let files = Empty;
        let req = |force| passthru::plan::setup::SetupRequest {
            gpu: "07:00.0".into(),
            force,
            ..Default::default()
        };
        let e = passthru::plan::setup::plan_setup_vm(&s, &files, &req(false)).unwrap_err();
        let want = if field == "disk" {
            "safety.boot-disk"
        } else {
            "safety.network"
        };
        assert!(e.to_string().contains(want), "{e}");
        assert!(passthru::plan::setup::plan_setup_vm(&s, &files, &req(true)).is_ok());
    }
}

struct Empty;
impl passthru::plan::setup::FileSource for Empty {
    fn read(&self, _: &str) -> Result<Option<Vec<u8>>, passthru::plan::source::ReadError> {
        Ok(None)
    }
    fn list(&self, _: &str) -> Vec<String> {
        Vec::new()
    }
    fn is_dir(&self, _: &str) -> bool {
        false
    }
}

/// The plan for the desktop's RTX 3080 on this root (forced: it is the only display).
fn desktop_plan(root: &Path) -> passthru::plan::Plan {
    let s = check_snapshot(root);
    let host = passthru::host::HostRoot::new(root).unwrap();
    let req = passthru::plan::setup::SetupRequest {
        gpu: "07:00.0".into(),
        force: true,
        ..Default::default()
    };
    passthru::plan::setup::plan_setup_vm(&s, &passthru::host::RootFiles::new(&host), &req).unwrap()
}

#[test]
fn a_file_changed_after_planning_stops_everything() {
    let t = compose("nvidia-desktop", "debian12-grub");
    let root = t.path();
    let plan = desktop_plan(root);
    let before = snapshot_tree(root);
    // Someone edits a file the plan touches between planning and applying.
    let modules = root.join("etc/initramfs-tools/modules");
    let mut text = std::fs::read_to_string(&modules).unwrap();
    text.push_str("loop\n");
    std::fs::write(&modules, &text).unwrap();
    let mut expected = before.clone();
    expected.get_mut("etc/initramfs-tools/modules").unwrap().0 = text.into_bytes();
    let e = passthru::apply::apply_plan(root, &plan, &Default::default()).unwrap_err();
    assert!(
        e.to_string()
            .contains("etc/initramfs-tools/modules changed since the plan was made"),
        "{e}"
    );
    assert_eq!(snapshot_tree(root), expected, "nothing else was written");
}

#[test]
fn a_crash_at_any_step_is_undone_on_the_next_run() {
    let t = compose("nvidia-desktop", "debian12-grub");
    let root = t.path();
    let plan = desktop_plan(root);
    assert!(plan.edits.len() >= 3);
    let plan_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(plan_file.path(), serde_json::to_vec(&plan).unwrap()).unwrap();
    let original = snapshot_tree(root);
    let mut crashes = 0;
    for n in 1.. {
        let o = Command::new(env!("CARGO_BIN_EXE_passthru"))
            .args([
                "debug-apply-plan",
                plan_file.path().to_str().unwrap(),
                "--yes",
                "--root",
                root.to_str().unwrap(),
            ])
            .env("PASSTHRU_TEST_CRASH_AT", n.to_string())
            .output()
            .unwrap();
        if o.status.success() {
            // Past the last crash point: it completed. Undo it for the next round... and stop.
            ok(&run(root, &["rollback", "--yes"]));
            assert_eq!(snapshot_tree(root), original);
            break;
        }
        crashes += 1;
        // The next run of passthru finds the interrupted transaction and undoes it (or, when
        // the crash came after the commit, rollback undoes the committed one).
        let next = run(root, &["rollback", "--yes"]);
        let text = format!("{}{}", stdout(&next), String::from_utf8_lossy(&next.stderr));
        assert!(
            next.status.success()
                || text.contains("no transaction to roll back")
                || text.contains("no committed transaction"),
            "crash point {n}: {text}"
        );
        assert_eq!(
            snapshot_tree(root),
            original,
            "crash point {n}: the tree is not as it was ({text})"
        );
        assert!(n < 200, "runaway");
    }
    eprintln!("{crashes} crash points exercised, each undone");
    assert!(crashes >= 20, "only {crashes} crash points exercised");
}

/// What kmod will do with the vfio-pci module, read from `modprobe --showconfig` over the
/// root's modprobe.d: the ids the kernel gets (all `options vfio_pci` lines are joined in
/// order and the last `ids=` wins, as for any string parameter) and every other option word.
fn kmod_vfio_pci(config: &str) -> (Vec<String>, Vec<String>) {
    let words: Vec<&str> = config
        .lines()
        .filter_map(|l| l.strip_prefix("options vfio_pci "))
        .flat_map(str::split_whitespace)
        .collect();
    let ids = words
        .iter()
        .rev()
        .find_map(|w| w.strip_prefix("ids="))
        .map(|v| v.split(',').map(str::to_string).collect())
        .unwrap_or_default();
    let others = words
        .iter()
        .filter(|w| !w.starts_with("ids="))
        .map(|w| w.to_string())
        .collect();
    (ids, others)
}

/// Lines of `--showconfig` output that are not about vfio-pci (neither its options nor a
/// softdep on it), and not taken from this machine's /proc/cmdline.
fn kmod_other_lines(config: &str) -> Vec<String> {
    config
        .lines()
        .take_while(|l| !l.starts_with("# End of configuration files"))
        .filter(|l| !l.starts_with("options vfio_pci "))
        .filter(|l| !(l.starts_with("softdep ") && l.contains(" pre: vfio-pci")))
        .map(str::to_string)
        .collect()
}

const PASSTHRU_MODPROBE: &str = "etc/modprobe.d/passthru-vfio.conf";

/// Hand edits to passthru's own modprobe file: another module's options, a blacklist, an
/// install command and a comment. Setup again and setup host keep each byte of them.
#[test]
fn hand_edits_to_the_modprobe_file_are_kept() {
    let t = compose("nvidia-desktop", "debian12-grub");
    let root = t.path();
    ok(&run(root, &["setup", "vm", "07:00.0", "--force", "--yes"]));
    let file = root.join(PASSTHRU_MODPROBE);
    let written = std::fs::read_to_string(&file).unwrap();
    let hand = "# my own notes\noptions snd_hda_intel power_save=0\nblacklist nouveau\ninstall pcspkr /bin/true\n";
    std::fs::write(&file, format!("{written}{hand}")).unwrap();
    let kmod_before = kmod_other_lines(&modprobe_config(root));
    assert!(kmod_before.contains(&"options snd_hda_intel power_save=0".to_string()));

    let again = ok(&run(root, &["setup", "vm", "07:00.0", "--force", "--yes"]));
    assert!(again.contains("Nothing to change"), "{again}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.ends_with(hand),
        "hand edits kept byte for byte:\n{text}"
    );
    let config = modprobe_config(root);
    let (ids, others) = kmod_vfio_pci(&config);
    assert_eq!(ids, ["10de:1aef", "10de:2206"], "{config}");
    assert!(
        !others.iter().any(|o| o.contains("power_save")),
        "snd_hda_intel's option is not vfio-pci's:\n{config}"
    );
    assert_eq!(kmod_other_lines(&config), kmod_before, "{config}");

    // Giving the card back removes passthru's lines, and only those.
    ok(&run(root, &["setup", "host", "07:00.0", "--yes"]));
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.ends_with(hand), "{text}");
    let config = modprobe_config(root);
    assert_eq!(kmod_vfio_pci(&config), (vec![], vec![]), "{config}");
    assert_eq!(kmod_other_lines(&config), kmod_before, "{config}");
    assert!(!config.contains("pre: vfio-pci"), "{config}");
}

/// A user bound a second card by hand, writing its ids over two lines with a backslash.
/// kmod joins them into one `ids=` value; setup must add to it, not turn the continued part
/// into an option, and setup host must take away only this card's ids.
#[test]
fn continued_ids_line_in_the_modprobe_file() {
    let t = compose("nvidia-desktop", "debian12-grub");
    let root = t.path();
    let file = root.join(PASSTHRU_MODPROBE);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let hand = "options vfio-pci ids=10de:1b80,\\\n10de:10f0\n";
    std::fs::write(&file, hand).unwrap();
    let (ids, _) = kmod_vfio_pci(&modprobe_config(root));
    assert_eq!(ids, ["10de:1b80", "10de:10f0"], "kmod joins the lines");

    ok(&run(root, &["setup", "vm", "07:00.0", "--force", "--yes"]));
    let config = modprobe_config(root);
    let (ids, others) = kmod_vfio_pci(&config);
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        ["10de:10f0", "10de:1aef", "10de:1b80", "10de:2206"],
        "{config}"
    );
    assert!(
        others.iter().all(|o| !o.contains("10de")),
        "an id became an option:\n{config}"
    );
    let again = ok(&run(root, &["setup", "vm", "07:00.0", "--force", "--yes"]));
    assert!(again.contains("Nothing to change"), "{again}");

    ok(&run(root, &["setup", "host", "07:00.0", "--yes"]));
    let config = modprobe_config(root);
    let (mut ids, _) = kmod_vfio_pci(&config);
    ids.sort();
    assert_eq!(ids, ["10de:10f0", "10de:1b80"], "{config}");
}

/// A function already on vfio-pci (its module is vfio_pci) gets no softdep: vfio-pci cannot
/// be loaded before itself.
#[test]
fn no_softdep_of_vfio_pci_on_itself() {
    let mut s = check_snapshot(compose("nvidia-desktop", "debian12-grub").path());
    for d in s
        .devices
        .iter_mut()
        .filter(|d| d.address.to_string().starts_with("0000:07:00."))
    {
        d.driver = Some("vfio-pci".into());
        d.driver_module = Some("vfio_pci".into());
    }
    let req = passthru::plan::setup::SetupRequest {
        gpu: "07:00.0".into(),
        force: true,
        ..Default::default()
    };
    let plan = passthru::plan::setup::plan_setup_vm(&s, &Empty, &req).unwrap();
    let edit = plan
        .edits
        .iter()
        .find(|e| e.path == PASSTHRU_MODPROBE)
        .expect("the modprobe file is planned");
    let text = String::from_utf8_lossy(edit.after.as_deref().unwrap_or_default());
    assert!(text.contains("options vfio-pci ids="), "{text}");
    assert!(
        !text.lines().any(|l| l.starts_with("softdep vfio")),
        "{text}"
    );
}
