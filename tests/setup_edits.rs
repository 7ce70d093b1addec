//! `passthru setup vm` on GRUB hosts whose defaults files hold what broke earlier releases,
//! judged by the shell grub-mkconfig uses (dash on Debian) after the real command ran.

mod common;

use std::path::Path;
use std::process::Command;

use common::{compose_distro, passthru, stdout};

fn setup(root: &Path) -> std::process::Output {
    passthru(&[
        "setup",
        "vm",
        "07:00.0",
        "--force",
        "--yes",
        "--root",
        root.to_str().unwrap(),
    ])
}

/// (GRUB_CMDLINE_LINUX, GRUB_CMDLINE_LINUX_DEFAULT) as dash sources them.
fn grub_vars(root: &Path) -> (String, String) {
    let script = r#"set -e; cd "$1"; . ./etc/default/grub; for f in ./etc/default/grub.d/*.cfg; do if [ -e "$f" ]; then . "$f"; fi; done; printf '%s\n%s\n' "$GRUB_CMDLINE_LINUX" "$GRUB_CMDLINE_LINUX_DEFAULT""#;
    let out = Command::new("dash")
        .args(["-c", script, "dash"])
        .arg(root)
        .output()
        .expect("dash is needed");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "dash: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = text.lines().map(str::to_string);
    (
        lines.next().unwrap_or_default(),
        lines.next().unwrap_or_default(),
    )
}

#[test]
fn setup_leaves_valid_shell_with_escaped_quotes() {
    // With and without etc/default/grub.d (Arch has none: the value is edited in place), and
    // with a word to remove (which edits the file in place everywhere).
    for (grub_d, extra) in [(true, " iommu=off"), (false, ""), (false, " iommu=off")] {
        let t = compose_distro("nvidia-desktop", "debian12-grub");
        if !grub_d {
            let _ = std::fs::remove_dir_all(t.path().join("etc/default/grub.d"));
        }
        let grub = t.path().join("etc/default/grub");
        std::fs::write(
            &grub,
            format!("GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT=\"quiet dyndbg=\\\"file a.c +p\\\"{extra}\"\nGRUB_CMDLINE_LINUX=\"\"\n"),
        )
        .unwrap();
        let o = setup(t.path());
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let (linux, default) = grub_vars(t.path());
        assert_eq!(linux, "");
        assert!(
            default.starts_with("quiet dyndbg=\"file a.c +p\" "),
            "{default}"
        );
        assert!(default.contains("iommu=pt"), "{default}");
        assert!(!default.contains("iommu=off"), "{default}");
    }
}

#[test]
fn setup_removes_iommu_off_from_both_variables() {
    let t = compose_distro("nvidia-desktop", "debian12-grub");
    std::fs::write(
        t.path().join("etc/default/grub"),
        "GRUB_CMDLINE_LINUX_DEFAULT=\"iommu=off quiet \\\nsplash\"\nGRUB_CMDLINE_LINUX=\"amd_iommu=off console=ttyS0\"\n",
    )
    .unwrap();
    let o = setup(t.path());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (linux, default) = grub_vars(t.path());
    let all = format!("{linux} {default}");
    assert!(!all.contains("=off"), "{all}");
    assert_eq!(linux, "console=ttyS0");
    assert!(default.starts_with("quiet splash"), "{default}");
    // And again: nothing left to change.
    let again = setup(t.path());
    assert!(
        stdout(&again).contains("Nothing to change"),
        "{}",
        stdout(&again)
    );
}

#[test]
fn setup_refuses_a_value_it_cannot_rewrite_and_changes_nothing() {
    let t = compose_distro("nvidia-desktop", "debian12-grub");
    let text = "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet $(cat /etc/extra-args)\"\n";
    std::fs::write(t.path().join("etc/default/grub"), text).unwrap();
    let o = setup(t.path());
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("etc/default/grub, line 1"), "{err}");
    assert_eq!(
        std::fs::read_to_string(t.path().join("etc/default/grub")).unwrap(),
        text
    );
    assert!(!t.path().join("etc/modprobe.d/passthru-vfio.conf").exists());
}

#[test]
fn kernelstub_review_shows_only_the_change() {
    // Reproduction: the JSON was re-serialised with sorted keys, a 28-line diff for one word.
    let t = compose_distro("turing-usbc", "popos-kernelstub");
    let path = t.path().join("etc/kernelstub/configuration");
    let before = std::fs::read_to_string(&path).unwrap();
    let o = passthru(&[
        "setup",
        "vm",
        "01:00.0",
        "--force",
        "--yes",
        "--root",
        t.path().to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let after = std::fs::read_to_string(&path).unwrap();
    let old: Vec<&str> = before.lines().collect();
    let new: Vec<&str> = after.lines().collect();
    // Every old line is still there, in order; the new lines are the added parameters.
    let mut i = 0;
    let mut added = Vec::new();
    for l in &new {
        if i < old.len() && old[i].trim_end_matches(',') == l.trim_end_matches(',') {
            i += 1;
        } else {
            added.push(l.trim().trim_end_matches(','));
        }
    }
    assert_eq!(i, old.len(), "lines lost or reordered:\n{after}");
    assert!(!added.is_empty() && added.len() <= 3, "{added:?}");
    assert!(added.iter().all(|a| a.starts_with('"')), "{added:?}");
    let v: serde_json::Value = serde_json::from_str(&after).unwrap();
    assert!(v["user"]["kernel_options"]
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o == "iommu=pt"));
}

#[test]
fn built_in_vfio_pci_takes_its_options_on_the_command_line() {
    // modprobe.d is never read for a module built into the kernel: `disable_idle_d3=1` there
    // would be silently ignored.
    let t = compose_distro("amd-navi", "proxmox8-grub");
    let host = passthru::host::HostRoot::new(t.path()).unwrap();
    let mut s = common::snapshot(t.path());
    let req = passthru::plan::setup::SetupRequest {
        gpu: "03:00.0".into(),
        disable_idle_d3: true,
        force: true,
        ..Default::default()
    };
    let text = |plan: &passthru::plan::Plan, path: &str| {
        plan.edits
            .iter()
            .find(|e| e.path == path)
            .and_then(|e| e.after.clone())
            .map(|b| String::from_utf8(b).unwrap())
            .unwrap_or_default()
    };
    let files = passthru::host::RootFiles::new(&host);
    let modular = passthru::plan::setup::plan_setup_vm(&s, &files, &req).unwrap();
    assert!(text(&modular, "etc/modprobe.d/passthru-vfio.conf").contains("disable_idle_d3=1"));
    s.system.builtin_modules = Some(
        ["vfio", "vfio_pci", "vfio_iommu_type1"]
            .map(String::from)
            .into_iter()
            .collect(),
    );
    let builtin = passthru::plan::setup::plan_setup_vm(&s, &files, &req).unwrap();
    assert!(!text(&builtin, "etc/modprobe.d/passthru-vfio.conf").contains("disable_idle_d3"));
    assert!(
        text(&builtin, "etc/default/grub.d/90-passthru.cfg").contains("vfio-pci.disable_idle_d3=1"),
        "{builtin:#?}"
    );
}

#[test]
fn a_plan_is_never_made_from_a_file_outside_the_root() {
    // etc/default is a link that climbs out of the root: the GRUB file behind it is not the
    // host's, so setup refuses to read it (before, its bytes showed in the diff).
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(
        outside.path().join("grub"),
        "GRUB_CMDLINE_LINUX_DEFAULT=\"outside-secret\"\n",
    )
    .unwrap();
    let t = compose_distro("nvidia-desktop", "debian12-grub");
    let default = t.path().join("etc/default");
    std::fs::remove_dir_all(&default).unwrap();
    let depth = t.path().components().count();
    let climb = "../".repeat(depth) + outside.path().to_str().unwrap().trim_start_matches('/');
    std::os::unix::fs::symlink(&climb, &default).unwrap();
    assert!(
        default.join("grub").exists(),
        "the link reaches the outside file"
    );
    let o = passthru(&[
        "setup",
        "vm",
        "07:00.0",
        "--force",
        "--dry-run",
        "--root",
        t.path().to_str().unwrap(),
    ]);
    let out = format!("{}{}", stdout(&o), String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.status.code(), Some(2), "{out}");
    assert!(!out.contains("outside-secret"), "{out}");
    assert!(out.contains("etc/default"), "{out}");
}

#[test]
fn a_dracut_list_built_with_a_command_substitution_names_only_its_written_modules() {
    // `$(…)` is the shell's to expand: none of its words are modules (the old reader took
    // `a)` from `$(cmd a)` as one).
    let t = compose_distro("tesla-p40", "fedora40-grubby-dracut");
    std::fs::write(
        t.path().join("etc/dracut.conf.d/50-user.conf"),
        "add_drivers+=\" $(cmd a) vfio \"\n",
    )
    .unwrap();
    let host = passthru::host::HostRoot::new(t.path()).unwrap();
    let mut issues = Vec::new();
    let cfg = passthru::host::vfio_config::read_vfio_config(&host, &[], &mut issues);
    let list = cfg
        .module_lists
        .iter()
        .find(|l| l.file.ends_with("50-user.conf"))
        .expect("the user's dracut file is read");
    assert_eq!(list.modules, ["vfio"]);
}
