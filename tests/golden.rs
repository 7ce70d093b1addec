//! Golden tests: what a user sees from `list`, `check` and `setup --dry-run`, for the bundled
//! host and every distro fixture, kept as insta snapshots in tests/snapshots/. Any change of
//! user-visible output shows up as a snapshot diff to review (docs/testing.md says how).
//!
//! The binary runs with a fixed environment (no colour, C locale, the corpus pci.ids) and
//! every root is a fresh temporary copy, so the output may only depend on the fixture: the
//! temporary path is replaced by `<ROOT>` and the corpus path by `<PCI_IDS>`. Anything else
//! that changes from run to run is a bug in passthru, not something to filter here.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// One host to snapshot: its name (the snapshot prefix), how to build its root, the GPU
/// `setup vm` is given.
struct Case {
    name: &'static str,
    host: Host,
    gpu: &'static str,
}

enum Host {
    /// A tree under examples/hosts, copied as it is.
    Example(&'static str),
    /// A synthetic PCI host with a distro fixture's files over it (`compose_distro`).
    Distro {
        pci: &'static str,
        distro: &'static str,
    },
}

/// Declares the cases and one `#[test]` for each, so that a failure names the host.
macro_rules! cases {
    ($($test:ident: $name:literal, $host:expr, $gpu:literal;)*) => {
        const CASES: &[Case] = &[$(Case { name: $name, host: $host, gpu: $gpu }),*];
        $(
            #[test]
            fn $test() {
                golden(case($name));
            }
        )*
    };
}

// The same pairs as tests/setup.rs: each distro on a PCI host whose GPU suits it.
cases! {
    golden_homelab: "homelab", Host::Example("homelab"), "07:00.0";
    golden_debian12_grub: "debian12-grub",
        Host::Distro { pci: "nvidia-desktop", distro: "debian12-grub" }, "07:00.0";
    golden_proxmox8_grub: "proxmox8-grub",
        Host::Distro { pci: "amd-navi", distro: "proxmox8-grub" }, "03:00.0";
    golden_proxmox8_zfs_systemd_boot: "proxmox8-zfs-systemd-boot",
        Host::Distro { pci: "amd-navi", distro: "proxmox8-zfs-systemd-boot" }, "03:00.0";
    golden_debian12_systemd_boot: "debian12-systemd-boot",
        Host::Distro { pci: "amd-navi", distro: "debian12-systemd-boot" }, "03:00.0";
    golden_ubuntu2404_grub: "ubuntu2404-grub",
        Host::Distro { pci: "intel-n100", distro: "ubuntu2404-grub" }, "00:02.0";
    golden_fedora40_grubby_dracut: "fedora40-grubby-dracut",
        Host::Distro { pci: "tesla-p40", distro: "fedora40-grubby-dracut" }, "03:00.0";
    golden_arch_mkinitcpio: "arch-mkinitcpio",
        Host::Distro { pci: "nvidia-desktop", distro: "arch-mkinitcpio" }, "07:00.0";
    golden_popos_kernelstub: "popos-kernelstub",
        Host::Distro { pci: "turing-usbc", distro: "popos-kernelstub" }, "01:00.0";
}

fn build(host: &Host) -> tempfile::TempDir {
    match host {
        Host::Example(name) => {
            let dir = tempfile::tempdir().unwrap();
            let src = repo().join("examples/hosts").join(name);
            let ok = Command::new("cp")
                .arg("-a")
                .arg(format!("{}/.", src.display()))
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(ok.success(), "copying {}", src.display());
            dir
        }
        Host::Distro { pci, distro } => compose_distro(pci, distro),
    }
}

/// The commands snapshotted for every host: (snapshot suffix, arguments). `GPU` stands for
/// the case's GPU.
const COMMANDS: &[(&str, &[&str])] = &[
    ("list", &["list"]),
    ("list_gpus", &["list", "--gpus"]),
    ("list_tree", &["list", "--tree"]),
    ("check", &["check"]),
    ("check_json", &["check", "--json"]),
    ("check_for_lxc", &["check", "--for", "lxc"]),
    ("check_for_host", &["check", "--for", "host"]),
    (
        "setup_vm_dry_run",
        &["setup", "vm", "GPU", "--force", "--dry-run"],
    ),
];

/// What the user sees from one command: the command line, the exit code, stdout and stderr,
/// with the machine-specific paths replaced.
fn transcript(root: &Path, args: &[&str]) -> String {
    let o = passthru_fixed(root, args);
    let text = |b: &[u8]| {
        let s = String::from_utf8(b.to_vec()).expect("passthru prints UTF-8");
        mask_paths(&s, root)
    };
    format!(
        "$ passthru {}\nexit: {}\n--- stdout\n{}--- stderr\n{}",
        args.join(" "),
        o.status
            .code()
            .map_or_else(|| "signal".to_string(), |c| c.to_string()),
        text(&o.stdout),
        text(&o.stderr),
    )
}

/// Replaces the root (as given and as the kernel resolves it) and the corpus pci.ids path.
fn mask_paths(s: &str, root: &Path) -> String {
    let mut out = s.to_string();
    let ids = pci_ids();
    for (path, name) in [
        (ids.canonicalize().unwrap(), "<PCI_IDS>"),
        (ids.clone(), "<PCI_IDS>"),
        (root.canonicalize().unwrap(), "<ROOT>"),
        (root.to_path_buf(), "<ROOT>"),
    ] {
        out = out.replace(path.to_str().unwrap(), name);
    }
    out
}

/// Runs every command on a fresh root for the case and compares each with its snapshot.
/// Every mismatch is shown (insta prints each diff) before the test fails.
fn golden(case: &Case) {
    refuse_writing_snapshots_in_ci();
    let t = build(&case.host);
    let mut failed = Vec::new();
    for (suffix, args) in COMMANDS {
        let args: Vec<&str> = args
            .iter()
            .map(|a| if *a == "GPU" { case.gpu } else { a })
            .collect();
        let got = transcript(t.path(), &args);
        let name = format!("{}__{suffix}", case.name);
        let r = std::panic::catch_unwind(|| {
            insta::with_settings!({ prepend_module_to_snapshot => false, omit_expression => true }, {
                insta::assert_snapshot!(name, got);
            });
        });
        if r.is_err() {
            failed.push(format!("{}__{suffix}", case.name));
        }
    }
    assert!(
        failed.is_empty(),
        "output changed (review with `cargo insta review`, or see docs/testing.md): {failed:?}"
    );
}

/// Under CI a snapshot is only ever compared: `INSTA_UPDATE=always` or `INSTA_FORCE_PASS`
/// there would turn a changed output into a pass.
fn refuse_writing_snapshots_in_ci() {
    let ci = std::env::var("CI").is_ok_and(|v| !matches!(v.as_str(), "" | "0" | "false"));
    if !ci {
        return;
    }
    let update = std::env::var("INSTA_UPDATE").unwrap_or_default();
    assert!(
        matches!(update.as_str(), "" | "auto" | "no"),
        "INSTA_UPDATE={update} under CI would write snapshots instead of checking them"
    );
    assert!(
        std::env::var_os("INSTA_FORCE_PASS").is_none(),
        "INSTA_FORCE_PASS under CI would hide changed output"
    );
}

/// `list --tree` on every QEMU real-kernel capture: real sysfs links, so real bridge chains
/// (root ports, switches, PCI bridges and what hangs below them).
#[test]
fn golden_qemu_list_tree() {
    refuse_writing_snapshots_in_ci();
    let mut failed = Vec::new();
    for (name, dir) in qemu_fixtures() {
        let root = unpacked(&dir.join("root.tar.gz"));
        let got = transcript(&root, &["list", "--tree"]);
        let snap = format!("qemu-{name}__list_tree");
        let r = std::panic::catch_unwind(|| {
            insta::with_settings!({ prepend_module_to_snapshot => false, omit_expression => true }, {
                insta::assert_snapshot!(snap, got);
            });
        });
        if r.is_err() {
            failed.push(format!("qemu-{name}__list_tree"));
        }
    }
    assert!(
        failed.is_empty(),
        "output changed (cargo insta review): {failed:?}"
    );
}

/// `list --tree` on a synthetic host that shows what the other fixtures do not: the host's
/// boot disk and network in a GPU's group (`apu-in-use`). The 4,096-function tree is checked
/// by tests/report_html.rs, which builds that host anyway (building it is the slow part).
#[test]
fn golden_synthetic_list_tree() {
    refuse_writing_snapshots_in_ci();
    let dir = tempfile::tempdir().unwrap();
    passthru_testkit::build_named("apu-in-use", dir.path()).unwrap();
    let got = transcript(dir.path(), &["list", "--tree"]);
    insta::with_settings!({ prepend_module_to_snapshot => false, omit_expression => true }, {
        insta::assert_snapshot!("synthetic-apu-in-use__list_tree", got);
    });
}

fn case(name: &str) -> &'static Case {
    CASES.iter().find(|c| c.name == name).unwrap()
}

/// A distro fixture or example host added without golden tests fails here.
#[test]
fn every_fixture_has_golden_tests() {
    let mut have: Vec<String> = CASES
        .iter()
        .map(|c| match c.host {
            Host::Example(n) => format!("examples/hosts/{n}"),
            Host::Distro { distro, .. } => format!("tests/fixtures/distros/{distro}"),
        })
        .collect();
    have.sort();
    let mut want = Vec::new();
    for dir in ["examples/hosts", "tests/fixtures/distros"] {
        for e in std::fs::read_dir(repo().join(dir)).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                want.push(format!("{dir}/{}", e.file_name().to_string_lossy()));
            }
        }
    }
    want.sort();
    assert_eq!(have, want);
}
