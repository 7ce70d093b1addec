//! systemd-boot fed by kernel-install, as Debian 12's systemd-boot package sets it up
//! (tests/fixtures/distros/debian12-systemd-boot: its hooks and kernel-install are the
//! shipped files of systemd 252.39). Two facts the e2e lab's systemd-boot journey rests on:
//! - kernel-install 252 has `add`, `remove` and `inspect` only; `add-all` (what setup ran)
//!   came with systemd 255. Setup tells it about each installed kernel instead.
//! - Without etc/kernel/cmdline, kernel-install writes each entry from /proc/cmdline, and
//!   Debian's initramfs hook runs it on every update-initramfs: an edit to the entries is
//!   lost at once. Setup refuses and gives the command that creates the file; run as
//!   given, setup then goes through.

mod common;

use std::path::Path;

use common::*;

fn run(root: &Path, args: &[&str]) -> std::process::Output {
    let mut a: Vec<&str> = args.to_vec();
    a.extend(["--root", root.to_str().unwrap()]);
    passthru(&a)
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The shipped kernel-install knows no `add-all`: the premise of the per-kernel commands.
#[test]
fn debians_kernel_install_has_no_add_all() {
    let script = std::fs::read_to_string(
        repo().join("tests/fixtures/distros/debian12-systemd-boot/usr/bin/kernel-install"),
    )
    .unwrap();
    assert!(
        script.contains("add KERNEL-VERSION KERNEL-IMAGE"),
        "{script}"
    );
    assert!(!script.contains("add-all"));
}

#[test]
fn without_etc_kernel_cmdline_setup_refuses_and_its_command_makes_setup_work() {
    let t = compose_distro("nvidia-desktop", "debian12-systemd-boot");
    let root = t.path();
    let entry =
        root.join("boot/efi/loader/entries/8d3f5a2e7c1b9d044f8c2b7d1e9a4c6b-6.1.0-57-amd64.conf");
    let entry_before = std::fs::read(&entry).unwrap();
    let o = run(root, &["setup", "vm", "07:00.0", "--force", "--yes"]);
    assert!(!o.status.success(), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(err.contains("kernel-install"), "{err}");
    assert_eq!(
        std::fs::read(&entry).unwrap(),
        entry_before,
        "no entry edited"
    );
    assert!(!root.join("etc/kernel/cmdline").exists());
    // The command it gives, run by the shell with /etc under the fixture root.
    let cmd = err
        .split("run setup again: ")
        .nth(1)
        .unwrap_or_else(|| panic!("no command in: {err}"))
        .trim()
        .replace(" /etc/", &format!(" {}/etc/", root.display()));
    let sh = std::process::Command::new("bash")
        .args(["-c", &cmd])
        .status()
        .unwrap();
    assert!(sh.success(), "{cmd}");
    // What kernel-install would have used: the entry's options, less what it adds itself.
    assert_eq!(
        std::fs::read_to_string(root.join("etc/kernel/cmdline")).unwrap(),
        "root=UUID=0b6f3c2e-8a31-4a8e-9d0b-1f2a3b4c5d6e ro quiet\n"
    );
    let o = run(root, &["setup", "vm", "07:00.0", "--force", "--yes"]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let cmdline = std::fs::read_to_string(root.join("etc/kernel/cmdline")).unwrap();
    assert!(
        cmdline.starts_with("root=UUID=0b6f3c2e-8a31-4a8e-9d0b-1f2a3b4c5d6e ro quiet ")
            && cmdline.contains("iommu=pt"),
        "{cmdline}"
    );
}

#[test]
fn setup_tells_kernel_install_about_each_kernel_in_version_order() {
    let t = compose_distro("nvidia-desktop", "debian12-systemd-boot");
    let root = t.path();
    std::fs::write(
        root.join("etc/kernel/cmdline"),
        "root=UUID=0b6f3c2e-8a31-4a8e-9d0b-1f2a3b4c5d6e ro quiet\n",
    )
    .unwrap();
    let o = run(root, &["setup", "vm", "07:00.0", "--force", "--dry-run"]);
    let text = stdout(&o);
    assert!(o.status.success(), "{text}\n{}", stderr(&o));
    let add = |v: &str| format!("kernel-install add {v} /boot/vmlinuz-{v} /boot/initrd.img-{v}");
    let (old, new) = (add("6.1.0-9-amd64"), add("6.1.0-57-amd64"));
    let (i, j) = (
        text.find(&old)
            .unwrap_or_else(|| panic!("{old} not in:\n{text}")),
        text.find(&new)
            .unwrap_or_else(|| panic!("{new} not in:\n{text}")),
    );
    assert!(i < j, "6.1.0-9 sorts before 6.1.0-57:\n{text}");
    assert!(!text.contains("add-all"), "{text}");
}
