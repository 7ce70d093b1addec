//! The transaction in hostile trees and partial failures (issue 10): every path confined to
//! the root, planted journals and temporary files, symbolic links in and at the paths
//! passthru writes, an edit landing right before the rename, ENOSPC, read-only and immutable
//! targets, umask 000, setuid files and extended attributes.
//!
//! In each: nothing is written outside the root, the transaction ends in a definite state,
//! and messages keep the OS error text and name the real file. Tests that need root (mount,
//! chattr, chown, trusted.* attributes) say SKIP and return where the capability is missing (a failure under CI=true);
//! CI runs as root.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use passthru::apply::{apply_plan, list_transactions, recover, rollback, ApplyOptions, TxState};
use passthru::plan::{digest, FileEdit, Plan};

/// A fresh directory holding `root/` (a host: it has `proc`) and `outside/` beside it, on the
/// target directory's filesystem (a real one: chattr and user xattrs work there, not on
/// every tmpfs).
struct Host {
    _t: tempfile::TempDir,
    base: PathBuf,
}

impl Host {
    fn new() -> Host {
        let t = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let base = t.path().to_path_buf();
        std::fs::create_dir_all(base.join("a/root/proc")).unwrap();
        std::fs::create_dir_all(base.join("outside")).unwrap();
        std::fs::write(base.join("outside/victim"), "victim\n").unwrap();
        Host { _t: t, base }
    }
    /// `base/a/root`: two levels down, so `../../outside` from the root is `base/outside`.
    fn root(&self) -> PathBuf {
        self.base.join("a/root")
    }
    fn outside(&self) -> PathBuf {
        self.base.join("outside")
    }
    fn put(&self, rel: &str, bytes: &[u8]) -> PathBuf {
        let p = self.root().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
        p
    }
}

/// Every entry below `dir`: file bytes, link targets, directories, with mode and owner.
fn tree(dir: &Path) -> BTreeMap<String, (String, u32, u32)> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, (String, u32, u32)>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.map(|e| e.unwrap()) {
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
            let what = if m.file_type().is_symlink() {
                format!("-> {}", std::fs::read_link(&p).unwrap().display())
            } else if m.is_dir() {
                walk(base, &p, out);
                "dir".to_string()
            } else {
                format!("{:?}", std::fs::read(&p).unwrap())
            };
            out.insert(rel, (what, m.mode() & 0o7777, m.uid()));
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The tree without passthru's own state (`var/lib/passthru`, and `var/lib`, `var` when
/// passthru made them).
fn host_tree(root: &Path) -> BTreeMap<String, (String, u32, u32)> {
    tree(root)
        .into_iter()
        .filter(|(k, _)| !(k == "var" || k == "var/lib" || k.starts_with("var/lib/passthru")))
        .collect()
}

fn edit(path: &str, before: Option<&[u8]>, after: Option<&[u8]>) -> FileEdit {
    FileEdit {
        path: path.to_string(),
        before: before.map(<[u8]>::to_vec),
        after: after.map(<[u8]>::to_vec),
        new_mode: 0o644,
        reason: "test".into(),
    }
}

fn plan(edits: Vec<FileEdit>) -> Plan {
    Plan {
        title: "hostile test".into(),
        edits,
        ..Plan::default()
    }
}

fn opts() -> ApplyOptions {
    ApplyOptions::default()
}

fn states(root: &Path) -> Vec<(String, TxState)> {
    list_transactions(root)
        .unwrap()
        .into_iter()
        .map(|m| (m.kind, m.state))
        .collect()
}

/// Runs passthru with `args` through `sh -c "PREFIX passthru ARGS"`, so a test can set the
/// umask or run it under strace (`prefix` ends with `exec` or a wrapper command).
fn passthru_sh(prefix: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(format!("{prefix} \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_passthru"))
        .args(args)
        .env_remove("PASSTHRU_ROOT")
        .env_remove("PASSTHRU_TEST_CRASH_AT");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn apply_with_binary(root: &Path, p: &Plan, prefix: &str, env: &[(&str, &str)]) -> Output {
    let file = root.parent().unwrap().join("plan.json");
    std::fs::write(&file, serde_json::to_vec(p).unwrap()).unwrap();
    passthru_sh(
        prefix,
        &[
            "debug-apply-plan",
            file.to_str().unwrap(),
            "--yes",
            "--root",
            root.to_str().unwrap(),
        ],
        env,
    )
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Every temporary file passthru's writes use (`.NAME.passthru-PID`) below `dir`.
fn temporaries(dir: &Path) -> Vec<String> {
    tree(dir)
        .into_keys()
        .filter(|k| {
            k.rsplit('/')
                .next()
                .is_some_and(|n| n.starts_with('.') && n.contains(".passthru-"))
        })
        .collect()
}

// --- Every path confined to the root -----------------------------------------------------

#[test]
fn a_plan_naming_a_path_outside_the_root_is_refused_before_anything_is_written() {
    let h = Host::new();
    let root = h.root();
    let before = tree(&h.base);
    let abs = h.outside().join("pwned");
    for bad in [
        "../../outside/pwned".to_string(),
        "etc/../../../outside/pwned".to_string(),
        abs.to_string_lossy().into_owned(),
        "etc/x\0y".to_string(),
    ] {
        let e = apply_plan(
            &root,
            &plan(vec![edit(&bad, None, Some(b"pwned\n"))]),
            &opts(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("refusing the path"), "{bad:?}: {e}");
    }
    assert!(!abs.exists());
    // Nothing at all was written, not even a journal.
    let after: BTreeMap<_, _> = tree(&h.base)
        .into_iter()
        .filter(|(k, _)| !k.starts_with("a/root/var"))
        .collect();
    assert_eq!(after, before);
    assert!(states(&root).is_empty());
}

/// A transaction planted in the journal: state `applying`, one file to restore to `bytes`.
fn plant_journal(root: &Path, id: &str, path: &str, bytes: &[u8]) -> PathBuf {
    let dir = root.join("var/lib/passthru/journal").join(id);
    std::fs::create_dir_all(dir.join("files")).unwrap();
    std::fs::write(dir.join("files/0"), bytes).unwrap();
    let manifest = serde_json::json!({
        "id": id, "kind": "apply", "title": "planted", "created": "2099-01-01T00:00:00Z",
        "state": "applying",
        "files": [{
            "path": path,
            "original": {"mode": 0o644, "uid": 0, "gid": 0, "digest": digest(bytes)},
            "after_digest": null
        }],
        "commands": [], "steps": [], "command_log": []
    });
    std::fs::write(
        dir.join("manifest.json"),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();
    for d in [
        "var/lib/passthru",
        "var/lib/passthru/journal",
        &format!("var/lib/passthru/journal/{id}"),
        &format!("var/lib/passthru/journal/{id}/files"),
    ] {
        std::fs::set_permissions(root.join(d), std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    std::fs::set_permissions(
        dir.join("manifest.json"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    dir
}

#[test]
fn a_planted_journal_naming_a_path_outside_the_root_is_refused() {
    let h = Host::new();
    let root = h.root();
    let dir = plant_journal(
        &root,
        "20990101-000000-1",
        "../../outside/pwned",
        b"pwned\n",
    );
    let outside = tree(&h.outside());
    let e = recover(&root).unwrap_err().to_string();
    assert!(
        e.contains("names the file \"../../outside/pwned\"") && e.contains("manifest.json"),
        "{e}"
    );
    assert_eq!(
        tree(&h.outside()),
        outside,
        "nothing written outside the root"
    );
    assert!(!h.outside().join("pwned").exists());
    // Every writing command stops on it; the planted manifest is left for the admin to read.
    let e = apply_plan(&root, &plan(vec![edit("etc/x", None, Some(b"x"))]), &opts())
        .unwrap_err()
        .to_string();
    assert!(e.contains("../../outside/pwned"), "{e}");
    assert!(!root.join("etc/x").exists());
    assert!(dir.join("manifest.json").exists());
}

#[test]
fn a_journal_another_user_could_write_is_refused() {
    let h = Host::new();
    let root = h.root();
    let dir = plant_journal(
        &root,
        "20990101-000000-1",
        "etc/cron.d/evil",
        b"* * * * * root sh -c pwned\n",
    );
    // Under umask 000 (before issue 10) the journal directories were 0777: anyone could
    // have written this transaction.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let e = recover(&root).unwrap_err().to_string();
    assert!(
        e.contains("writable by everyone") && e.contains("20990101-000000-1"),
        "{e}"
    );
    assert!(!root.join("etc/cron.d/evil").exists());

    // Group-writable state directory.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let state = root.join("var/lib/passthru");
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o770)).unwrap();
    let e = recover(&root).unwrap_err().to_string();
    assert!(e.contains("writable by its group"), "{e}");
    assert!(!root.join("etc/cron.d/evil").exists());
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();

    if !is_root() {
        common::skip_or_fail("the ownership part: chown needs root");
        return;
    }
    // Owned by another user, even with a private mode.
    std::os::unix::fs::chown(dir.join("manifest.json"), Some(65534), Some(65534)).unwrap();
    let e = recover(&root).unwrap_err().to_string();
    assert!(e.contains("owned by uid 65534"), "{e}");
    assert!(!root.join("etc/cron.d/evil").exists());
}

#[test]
fn symbolic_links_that_leave_the_root_are_refused() {
    let h = Host::new();
    let root = h.root();
    let out = h.outside();
    std::fs::create_dir_all(out.join("default")).unwrap();
    std::fs::write(out.join("default/grub"), "GRUB_CMDLINE_LINUX=\"\"\n").unwrap();
    std::fs::create_dir_all(out.join("modprobe.d")).unwrap();
    std::fs::create_dir_all(out.join("state")).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    let outside = tree(&h.base.join("outside"));

    // etc/default -> /abs/outside/default: absolute targets are taken inside the root, where
    // there is no such directory.
    std::os::unix::fs::symlink(out.join("default"), root.join("etc/default")).unwrap();
    let grub = b"GRUB_CMDLINE_LINUX=\"\"\n";
    let e = apply_plan(
        &root,
        &plan(vec![edit(
            "etc/default/grub",
            Some(grub),
            Some(b"GRUB_CMDLINE_LINUX=\"intel_iommu=on\"\n"),
        )]),
        &opts(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("etc/default") && e.contains("symbolic link"),
        "{e}"
    );

    // etc/modprobe.d -> ../../outside/modprobe.d: climbs above the root.
    std::os::unix::fs::symlink("../../../outside/modprobe.d", root.join("etc/modprobe.d")).unwrap();
    let e = apply_plan(
        &root,
        &plan(vec![edit(
            "etc/modprobe.d/vfio.conf",
            None,
            Some(b"options vfio-pci ids=10de:2206\n"),
        )]),
        &opts(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("above the host root"), "{e}");
    assert_eq!(tree(&h.base.join("outside")), outside);

    // var/lib/passthru -> outside: passthru's own state follows no link at all.
    std::fs::remove_dir_all(root.join("var/lib/passthru")).unwrap();
    std::os::unix::fs::symlink(out.join("state"), root.join("var/lib/passthru")).unwrap();
    h.put("etc/x.conf", b"old\n");
    let e = apply_plan(
        &root,
        &plan(vec![edit("etc/x.conf", Some(b"old\n"), Some(b"new\n"))]),
        &opts(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("var/lib/passthru") && e.contains("symbolic link"),
        "{e}"
    );
    assert_eq!(std::fs::read(root.join("etc/x.conf")).unwrap(), b"old\n");
    assert_eq!(
        tree(&h.base.join("outside")),
        outside,
        "nothing written outside"
    );
}

#[test]
fn a_link_inside_the_root_is_followed_to_the_real_file_and_kept() {
    // Proxmox's etc/pve/qemu-server is a link to nodes/NODE/qemu-server.
    let h = Host::new();
    let root = h.root();
    h.put("etc/pve/nodes/pve/qemu-server/100.conf", b"memory: 4096\n");
    std::os::unix::fs::symlink("nodes/pve/qemu-server", root.join("etc/pve/qemu-server")).unwrap();
    let p = plan(vec![edit(
        "etc/pve/qemu-server/100.conf",
        Some(b"memory: 4096\n"),
        Some(b"memory: 4096\nhostpci0: 0000:01:00\n"),
    )]);
    apply_plan(&root, &p, &opts()).unwrap();
    assert_eq!(
        std::fs::read(root.join("etc/pve/nodes/pve/qemu-server/100.conf")).unwrap(),
        b"memory: 4096\nhostpci0: 0000:01:00\n"
    );
    assert!(std::fs::symlink_metadata(root.join("etc/pve/qemu-server"))
        .unwrap()
        .file_type()
        .is_symlink());
    rollback(&root, None, &opts()).unwrap();
    assert_eq!(
        std::fs::read(root.join("etc/pve/nodes/pve/qemu-server/100.conf")).unwrap(),
        b"memory: 4096\n"
    );
}

#[test]
fn a_symbolic_link_at_a_target_is_refused_and_kept() {
    let h = Host::new();
    let root = h.root();
    std::fs::create_dir_all(root.join("etc/default")).unwrap();
    // Dangling: planning sees no file, so the plan creates one.
    std::os::unix::fs::symlink("/nonexistent/grub", root.join("etc/default/grub")).unwrap();
    let before = tree(&root);
    let e = apply_plan(
        &root,
        &plan(vec![edit(
            "etc/default/grub",
            None,
            Some(b"GRUB_TIMEOUT=5\n"),
        )]),
        &opts(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("etc/default/grub is a symbolic link (to /nonexistent/grub)"),
        "{e}"
    );
    assert_eq!(host_tree(&root), before);
    // And one to a file inside the root.
    h.put("etc/grub.real", b"GRUB_TIMEOUT=5\n");
    std::fs::remove_file(root.join("etc/default/grub")).unwrap();
    std::os::unix::fs::symlink("../grub.real", root.join("etc/default/grub")).unwrap();
    let e = apply_plan(
        &root,
        &plan(vec![edit(
            "etc/default/grub",
            Some(b"GRUB_TIMEOUT=5\n"),
            Some(b"GRUB_TIMEOUT=1\n"),
        )]),
        &opts(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("is a symbolic link"), "{e}");
    assert_eq!(
        std::fs::read(root.join("etc/grub.real")).unwrap(),
        b"GRUB_TIMEOUT=5\n"
    );
}

#[test]
fn a_planted_temporary_file_link_is_never_followed() {
    let h = Host::new();
    let root = h.root();
    h.put("etc/default/grub", b"GRUB_TIMEOUT=5\n");
    // The name the old code opened with O_CREAT|O_TRUNC, as this process will use it.
    let planted = root.join(format!("etc/default/.grub.passthru-{}", std::process::id()));
    std::os::unix::fs::symlink(h.outside().join("victim"), &planted).unwrap();
    let victim = h.outside().join("victim");
    let victim_mode = mode(&victim);
    apply_plan(
        &root,
        &plan(vec![edit(
            "etc/default/grub",
            Some(b"GRUB_TIMEOUT=5\n"),
            Some(b"GRUB_TIMEOUT=1\n"),
        )]),
        &opts(),
    )
    .unwrap();
    assert_eq!(
        std::fs::read(&victim).unwrap(),
        b"victim\n",
        "the link was followed"
    );
    assert_eq!(mode(&victim), victim_mode);
    let grub = root.join("etc/default/grub");
    assert!(std::fs::symlink_metadata(&grub).unwrap().is_file());
    assert_eq!(std::fs::read(&grub).unwrap(), b"GRUB_TIMEOUT=1\n");
}

// --- Races ---------------------------------------------------------------------------------

#[test]
fn an_edit_landing_right_before_the_rename_is_kept_and_nothing_is_written() {
    let h = Host::new();
    let root = h.root();
    h.put("etc/modules", b"vfio\n");
    h.put("etc/default/grub", b"GRUB_TIMEOUT=5\n");
    let p = plan(vec![
        edit("etc/modules", Some(b"vfio\n"), Some(b"vfio\nvfio_pci\n")),
        edit(
            "etc/default/grub",
            Some(b"GRUB_TIMEOUT=5\n"),
            Some(b"GRUB_TIMEOUT=1\n"),
        ),
    ]);
    // The hook runs right before the last check of each file about to be replaced: the
    // admin's edit of etc/default/grub lands in that window (etc/modules was written first).
    let o = apply_with_binary(
        &root,
        &p,
        "exec",
        &[(
            "PASSTHRU_TEST_BEFORE_REPLACE",
            r#"case "$1" in */grub) printf 'GRUB_DEFAULT=saved\n' >> "$1";; esac"#,
        )],
    );
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains("etc/default/grub changed since the plan was made"),
        "{t}"
    );
    assert_eq!(
        std::fs::read(root.join("etc/default/grub")).unwrap(),
        b"GRUB_TIMEOUT=5\nGRUB_DEFAULT=saved\n",
        "the edit made in the window is kept"
    );
    assert_eq!(std::fs::read(root.join("etc/modules")).unwrap(), b"vfio\n");
    assert_eq!(states(&root), vec![("apply".to_string(), TxState::Undone)]);
    assert!(temporaries(&root).is_empty(), "{:?}", temporaries(&root));
}

// --- Exact undo ------------------------------------------------------------------------------

#[test]
fn directories_the_transaction_created_are_removed_by_rollback() {
    let h = Host::new();
    let root = h.root();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    let before = host_tree(&root);
    let p = plan(vec![
        edit(
            "etc/udev/rules.d/91-passthru.rules",
            None,
            Some(b"ACTION==\"add\"\n"),
        ),
        edit("etc/default/grub.d/passthru.cfg", None, Some(b"X=1\n")),
    ]);
    apply_plan(&root, &p, &opts()).unwrap();
    assert!(root.join("etc/udev/rules.d/91-passthru.rules").is_file());
    let m = &list_transactions(&root).unwrap()[0];
    assert_eq!(
        m.created_dirs,
        vec![
            "etc/udev",
            "etc/udev/rules.d",
            "etc/default",
            "etc/default/grub.d"
        ]
    );
    rollback(&root, None, &opts()).unwrap();
    assert_eq!(host_tree(&root), before);
}

#[test]
fn a_created_directory_someone_else_used_is_kept() {
    let h = Host::new();
    let root = h.root();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    apply_plan(
        &root,
        &plan(vec![edit(
            "etc/udev/rules.d/91-passthru.rules",
            None,
            Some(b"x\n"),
        )]),
        &opts(),
    )
    .unwrap();
    h.put("etc/udev/rules.d/70-admin.rules", b"admin\n");
    rollback(&root, None, &opts()).unwrap();
    assert!(!root.join("etc/udev/rules.d/91-passthru.rules").exists());
    assert_eq!(
        std::fs::read(root.join("etc/udev/rules.d/70-admin.rules")).unwrap(),
        b"admin\n"
    );
}

#[test]
fn setuid_and_setgid_bits_survive_a_change_of_owner() {
    if !is_root() {
        common::skip_or_fail("giving a file to another owner needs root");
        return;
    }
    let h = Host::new();
    let root = h.root();
    for (rel, m) in [
        ("usr/local/bin/tool", 0o4755),
        ("usr/local/bin/gtool", 0o2755),
    ] {
        let p = h.put(rel, b"#!/bin/sh\n");
        std::os::unix::fs::chown(&p, Some(1234), Some(1234)).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(m)).unwrap();
    }
    let before = host_tree(&root);
    let p = plan(vec![
        edit(
            "usr/local/bin/tool",
            Some(b"#!/bin/sh\n"),
            Some(b"#!/bin/sh\ntrue\n"),
        ),
        edit(
            "usr/local/bin/gtool",
            Some(b"#!/bin/sh\n"),
            Some(b"#!/bin/sh\ntrue\n"),
        ),
    ]);
    apply_plan(&root, &p, &opts()).unwrap();
    let tool = root.join("usr/local/bin/tool");
    assert_eq!(mode(&tool), 0o4755);
    assert_eq!(std::fs::metadata(&tool).unwrap().uid(), 1234);
    assert_eq!(mode(&root.join("usr/local/bin/gtool")), 0o2755);
    rollback(&root, None, &opts()).unwrap();
    assert_eq!(host_tree(&root), before);
}

fn xattrs(p: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut names = vec![0u8; 4096];
    let n = rustix::fs::listxattr(p, &mut names[..]).unwrap();
    names[..n]
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .map(|n| {
            let name = String::from_utf8(n.to_vec()).unwrap();
            let mut v = vec![0u8; 4096];
            let len = rustix::fs::getxattr(p, name.as_str(), &mut v[..]).unwrap();
            v.truncate(len);
            (name, v)
        })
        .collect()
}

/// A POSIX ACL as the kernel stores it in `system.posix_acl_access`: owner rw, user 1234 r,
/// group r, mask r, other r.
fn acl_bytes() -> Vec<u8> {
    let mut b = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in [
        (0x01u16, 6u16, u32::MAX),
        (0x02, 4, 1234),
        (0x04, 4, u32::MAX),
        (0x10, 4, u32::MAX),
        (0x20, 4, u32::MAX),
    ] {
        b.extend(tag.to_le_bytes());
        b.extend(perm.to_le_bytes());
        b.extend(id.to_le_bytes());
    }
    b
}

#[test]
fn extended_attributes_and_acls_are_carried_over_and_restored() {
    let h = Host::new();
    let root = h.root();
    let p = h.put(
        "etc/modprobe.d/local.conf",
        b"options snd_hda_intel power_save=0\n",
    );
    let set =
        |name: &str, v: &[u8]| rustix::fs::setxattr(&p, name, v, rustix::fs::XattrFlags::empty());
    if let Err(e) = set("user.passthru_test", b"kept") {
        common::skip_or_fail(&format!("this filesystem takes no user.* attributes ({e})"));
        return;
    }
    let mut wanted = vec!["user.passthru_test"];
    match set("system.posix_acl_access", &acl_bytes()) {
        Ok(()) => wanted.push("system.posix_acl_access"),
        Err(e) => eprintln!("note: no ACLs here ({e})"),
    }
    for name in ["security.passthru_test", "trusted.passthru_test"] {
        match set(name, b"label") {
            Ok(()) => wanted.push(name),
            Err(e) => eprintln!("note: cannot set {name} here ({e})"),
        }
    }
    let before = xattrs(&p);
    let mode_before = mode(&p);
    for w in &wanted {
        assert!(before.contains_key(*w), "{w} not set: {before:?}");
    }
    apply_plan(
        &root,
        &plan(vec![edit(
            "etc/modprobe.d/local.conf",
            Some(b"options snd_hda_intel power_save=0\n"),
            Some(b"options snd_hda_intel power_save=1\n"),
        )]),
        &opts(),
    )
    .unwrap();
    assert_eq!(xattrs(&p), before, "attributes carried to the new file");
    assert_eq!(mode(&p), mode_before);
    rollback(&root, None, &opts()).unwrap();
    assert_eq!(xattrs(&p), before, "attributes kept by rollback");
    assert_eq!(
        std::fs::read(&p).unwrap(),
        b"options snd_hda_intel power_save=0\n"
    );

    // Undone after a crash, from the journal's saved copy: the same attributes again.
    h.put("etc/modules", b"vfio\n");
    let two = plan(vec![
        edit(
            "etc/modprobe.d/local.conf",
            Some(b"options snd_hda_intel power_save=0\n"),
            Some(b"options snd_hda_intel power_save=1\n"),
        ),
        edit("etc/modules", Some(b"vfio\n"), Some(b"vfio\nvfio_pci\n")),
    ]);
    let root_s = root.to_str().unwrap().to_string();
    let mut undone = 0;
    for n in 1..80 {
        let o = apply_with_binary(
            &root,
            &two,
            "exec",
            &[("PASSTHRU_TEST_CRASH_AT", &n.to_string())],
        );
        if o.status.success() {
            break;
        }
        let written = std::fs::read(&p).unwrap() != b"options snd_hda_intel power_save=0\n";
        undone += usize::from(written);
        passthru_sh("exec", &["rollback", "--yes", "--root", &root_s], &[]);
        assert_eq!(
            std::fs::read(&p).unwrap(),
            b"options snd_hda_intel power_save=0\n",
            "crash point {n}"
        );
        assert_eq!(xattrs(&p), before, "crash point {n}: attributes restored");
    }
    assert!(
        undone > 0,
        "no crash left the file written: the test proves nothing"
    );
}

#[test]
fn bytes_that_are_not_utf8_come_back_byte_for_byte() {
    let h = Host::new();
    let root = h.root();
    let old = b"# caf\xe9 \xff\xfe (Latin-1, not UTF-8)\nvfio\n".to_vec();
    h.put("etc/modules", &old);
    apply_plan(
        &root,
        &plan(vec![edit(
            "etc/modules",
            Some(&old),
            Some(b"vfio\nvfio_pci\n"),
        )]),
        &opts(),
    )
    .unwrap();
    rollback(&root, None, &opts()).unwrap();
    assert_eq!(std::fs::read(root.join("etc/modules")).unwrap(), old);
}

#[test]
fn a_crash_during_rollback_ends_in_one_consistent_state() {
    let h = Host::new();
    let root = h.root();
    h.put("etc/modules", b"vfio\n");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    let original = host_tree(&root);
    let p = plan(vec![
        edit("etc/modules", Some(b"vfio\n"), Some(b"vfio\nvfio_pci\n")),
        edit("etc/udev/rules.d/91-passthru.rules", None, Some(b"x\n")),
    ]);
    let root_s = root.to_str().unwrap().to_string();
    let mut crashes = 0;
    for n in 1.. {
        apply_plan(&root, &p, &opts()).unwrap();
        let applied = host_tree(&root);
        let o = passthru_sh(
            "exec",
            &["rollback", "--yes", "--root", &root_s],
            &[("PASSTHRU_TEST_CRASH_AT", &n.to_string())],
        );
        if o.status.success() {
            assert_eq!(host_tree(&root), original);
            break;
        }
        crashes += 1;
        // The next run finds what the crash left and ends it: the rollback undone (the
        // transaction still in effect) or finished (it is rolled back), never both.
        let next = passthru_sh("exec", &["rollback", "--yes", "--root", &root_s], &[]);
        let t = text(&next);
        assert!(
            !t.contains("by hand"),
            "crash point {n}: a false 'restore it by hand': {t}"
        );
        assert!(
            next.status.success()
                || t.contains("no committed transaction")
                || t.contains("no transaction to roll back"),
            "crash point {n}: {t}"
        );
        assert_eq!(host_tree(&root), original, "crash point {n}: {t}");
        let committed = list_transactions(&root)
            .unwrap()
            .into_iter()
            .filter(|m| m.kind == "apply" && m.state == TxState::Committed)
            .count();
        assert_eq!(committed, 0, "crash point {n}: {:?}", states(&root));
        assert!(
            temporaries(&root).is_empty(),
            "crash point {n}: {:?}",
            temporaries(&root)
        );
        assert_ne!(applied, original);
        assert!(n < 200, "runaway");
    }
    eprintln!("{crashes} crash points in rollback, each ended in one state");
    assert!(crashes >= 10, "only {crashes} crash points");
}

#[test]
fn temporary_copies_a_crash_left_are_removed_when_the_transaction_ends() {
    let h = Host::new();
    let root = h.root();
    h.put("etc/modules", b"vfio\n");
    let original = host_tree(&root);
    let p = plan(vec![edit(
        "etc/modules",
        Some(b"vfio\n"),
        Some(b"vfio\nvfio_pci\n"),
    )]);
    let root_s = root.to_str().unwrap().to_string();
    let mut left = 0;
    for n in 1..60 {
        let o = apply_with_binary(
            &root,
            &p,
            "exec",
            &[("PASSTHRU_TEST_CRASH_AT", &n.to_string())],
        );
        if o.status.success() {
            break;
        }
        left += usize::from(!temporaries(&root).is_empty());
        let next = passthru_sh("exec", &["rollback", "--yes", "--root", &root_s], &[]);
        assert_eq!(
            host_tree(&root),
            original,
            "crash point {n}: {}",
            text(&next)
        );
        assert!(
            temporaries(&root).is_empty(),
            "crash point {n}: {:?}",
            temporaries(&root)
        );
    }
    assert!(
        left > 0,
        "no crash point left a temporary file: the test proves nothing"
    );
}

// --- Partial failure -----------------------------------------------------------------------

/// A mount made for one test, undone when dropped.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn mount(args: &[&str], at: &Path) -> Option<Mounted> {
    let o = Command::new("mount").args(args).arg(at).output().ok()?;
    if o.status.success() {
        Some(Mounted(at.to_path_buf()))
    } else {
        common::skip_or_fail(&format!(
            "mount {args:?} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        ));
        None
    }
}

#[test]
fn enospc_ends_undone_with_the_os_error_and_the_real_file() {
    let h = Host::new();
    let root = h.root();
    let Some(_m) = mount(&["-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs"], &root) else {
        return;
    };
    h.put("proc/.keep", b"");
    h.put("etc/a.conf", b"old a\n");
    let before = host_tree(&root);
    let big = vec![b'#'; 256 * 1024];
    let e = apply_plan(
        &root,
        &plan(vec![
            edit("etc/a.conf", Some(b"old a\n"), Some(b"new a\n")),
            edit("etc/big.conf", None, Some(&big)),
        ]),
        &opts(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("No space left on device"), "{e}");
    assert!(
        e.contains(&format!("{}/etc/big.conf", root.display())),
        "{e}"
    );
    assert!(
        !e.contains(".big.conf.passthru"),
        "names the temporary file: {e}"
    );
    assert!(e.contains("restored"), "{e}");
    assert_eq!(host_tree(&root), before);
    assert_eq!(states(&root), vec![("apply".to_string(), TxState::Undone)]);
}

#[test]
fn a_read_only_mount_ends_undone_with_the_os_error_and_the_real_file() {
    let h = Host::new();
    let root = h.root();
    h.put("etc/a.conf", b"old a\n");
    h.put("etc/ro/b.conf", b"old b\n");
    let ro = root.join("etc/ro");
    let Some(_bind) = mount(&["--bind", ro.to_str().unwrap()], &ro) else {
        return;
    };
    let Some(_ro) = mount(&["-o", "remount,bind,ro"], &ro) else {
        return;
    };
    let before = host_tree(&root);
    let e = apply_plan(
        &root,
        &plan(vec![
            edit("etc/a.conf", Some(b"old a\n"), Some(b"new a\n")),
            edit("etc/ro/b.conf", Some(b"old b\n"), Some(b"new b\n")),
        ]),
        &opts(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("Read-only file system"), "{e}");
    assert!(
        e.contains(&format!("{}/etc/ro/b.conf", root.display())),
        "{e}"
    );
    assert!(!e.contains(".passthru-"), "names the temporary file: {e}");
    assert_eq!(host_tree(&root), before);
    assert_eq!(states(&root), vec![("apply".to_string(), TxState::Undone)]);
}

#[test]
fn a_read_only_file_keeps_its_mode() {
    let h = Host::new();
    let root = h.root();
    let p = h.put("etc/modprobe.d/ro.conf", b"old\n");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o444)).unwrap();
    apply_plan(
        &root,
        &plan(vec![edit(
            "etc/modprobe.d/ro.conf",
            Some(b"old\n"),
            Some(b"new\n"),
        )]),
        &opts(),
    )
    .unwrap();
    assert_eq!(mode(&p), 0o444);
    assert_eq!(std::fs::read(&p).unwrap(), b"new\n");
}

/// `chattr +i`, undone when dropped (a tempdir holding an immutable file cannot be removed).
struct Immutable(PathBuf);

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

#[test]
fn an_immutable_target_ends_undone_with_the_os_error_and_the_real_file() {
    let h = Host::new();
    let root = h.root();
    h.put("etc/a.conf", b"old a\n");
    let b = h.put("etc/b.conf", b"old b\n");
    match Command::new("chattr").arg("+i").arg(&b).output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            common::skip_or_fail(&format!(
                "chattr +i failed: {}",
                String::from_utf8_lossy(&o.stderr)
            ));
            return;
        }
        Err(e) => {
            common::skip_or_fail(&format!("no chattr: {e}"));
            return;
        }
    }
    let _guard = Immutable(b.clone());
    let before = host_tree(&root);
    let e = apply_plan(
        &root,
        &plan(vec![
            edit("etc/a.conf", Some(b"old a\n"), Some(b"new a\n")),
            edit("etc/b.conf", Some(b"old b\n"), Some(b"new b\n")),
        ]),
        &opts(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("Operation not permitted"), "{e}");
    assert!(e.contains(&format!("{}", b.display())), "{e}");
    assert!(!e.contains(".passthru-"), "names the temporary file: {e}");
    assert_eq!(host_tree(&root), before);
    assert!(temporaries(&root).is_empty(), "{:?}", temporaries(&root));
    assert_eq!(states(&root), vec![("apply".to_string(), TxState::Undone)]);
}

#[test]
fn umask_000_changes_no_mode() {
    let h = Host::new();
    let root = h.root();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    let p = plan(vec![edit(
        "etc/udev/rules.d/91-passthru.rules",
        None,
        Some(b"ACTION==\"add\"\n"),
    )]);
    let o = apply_with_binary(&root, &p, "umask 000; exec", &[]);
    assert!(o.status.success(), "{}", text(&o));
    let m = |rel: &str| mode(&root.join(rel));
    assert_eq!(m("etc/udev"), 0o755);
    assert_eq!(m("etc/udev/rules.d"), 0o755);
    assert_eq!(m("etc/udev/rules.d/91-passthru.rules"), 0o644);
    assert_eq!(m("var/lib/passthru"), 0o700);
    assert_eq!(m("var/lib/passthru/journal"), 0o700);
    assert_eq!(m("var/lib/passthru/lock"), 0o600);
    let id = &list_transactions(&root).unwrap()[0].id;
    let tx = format!("var/lib/passthru/journal/{id}");
    assert_eq!(m(&tx), 0o700);
    assert_eq!(m(&format!("{tx}/files")), 0o700);
    assert_eq!(m(&format!("{tx}/manifest.json")), 0o600);
    // And a pre-image saved under umask 000.
    let o = apply_with_binary(
        &root,
        &plan(vec![edit(
            "etc/udev/rules.d/91-passthru.rules",
            Some(b"ACTION==\"add\"\n"),
            Some(b"ACTION==\"change\"\n"),
        )]),
        "umask 000; exec",
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let id = &list_transactions(&root).unwrap()[1].id;
    assert_eq!(m(&format!("var/lib/passthru/journal/{id}/files/0")), 0o600);
}

#[test]
fn a_new_journal_directory_is_fsynced_into_its_parent_before_it_is_used() {
    let h = Host::new();
    let root = h.root();
    h.put("etc/modules", b"vfio\n");
    let p = plan(vec![edit(
        "etc/modules",
        Some(b"vfio\n"),
        Some(b"vfio\nvfio_pci\n"),
    )]);
    let log = h.base.join("strace.log");
    let prefix = format!(
        "strace -f -o {} -e trace=mkdirat,fsync,openat",
        log.display()
    );
    if !common::strace_works() {
        common::skip_or_fail("strace cannot trace here");
        return;
    }
    let o = apply_with_binary(&root, &p, &format!("exec {prefix}"), &[]);
    assert!(o.status.success(), "passthru under strace: {}", text(&o));
    let log = std::fs::read_to_string(&log).unwrap();
    let calls: Vec<&str> = log.lines().collect();
    let id = &list_transactions(&root).unwrap()[0].id;
    let made = calls
        .iter()
        .position(|l| l.contains("mkdirat(") && l.contains(&format!("\"{id}\", 0700) = 0")))
        .unwrap_or_else(|| panic!("no mkdirat of {id}:\n{log}"));
    let parent = calls[made]
        .split_once("mkdirat(")
        .and_then(|(_, r)| r.split_once(','))
        .map(|(fd, _)| fd.trim().to_string())
        .unwrap();
    let first_use = calls[made..]
        .iter()
        .position(|l| l.contains("manifest.json") || l.contains("\"files\""))
        .unwrap_or_else(|| panic!("the directory is never used:\n{log}"));
    assert!(
        calls[made..made + first_use]
            .iter()
            .any(|l| l.contains(&format!("fsync({parent})"))),
        "the journal directory {id} is used before its parent is fsynced:\n{log}"
    );
}
