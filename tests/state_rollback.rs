//! `rollback --dry-run` decides as `rollback --yes`: the same refusal, in the same words,
//! with the same exit code (already rolled back, changed since).

mod common;

use std::path::Path;

use common::*;

fn run(root: &Path, args: &[&str]) -> std::process::Output {
    let mut a: Vec<&str> = args.to_vec();
    a.extend(["--root", root.to_str().unwrap()]);
    passthru(&a)
}

fn tx_id(o: &std::process::Output) -> String {
    let text = stdout(o);
    text.lines()
        .find_map(|l| l.strip_prefix("Undo with: passthru rollback "))
        .unwrap_or_else(|| panic!("no transaction id in:\n{text}"))
        .trim()
        .to_string()
}

/// The dry run's and the real run's exit codes and errors, each on a copy of `root`.
fn both(root: &Path, args: &[&str]) -> ((Option<i32>, String), (Option<i32>, String)) {
    let mut out = Vec::new();
    for mode in ["--dry-run", "--yes"] {
        let t = tempfile::tempdir().unwrap();
        let copy = t.path().join("root");
        assert!(std::process::Command::new("cp")
            .arg("-a")
            .arg(root)
            .arg(&copy)
            .status()
            .unwrap()
            .success());
        let mut a = args.to_vec();
        a.push(mode);
        let o = run(&copy, &a);
        // The journal's directory is named by its real path, which differs per copy.
        let err = String::from_utf8_lossy(&o.stderr).replace(copy.to_str().unwrap(), "ROOT");
        out.push((o.status.code(), err));
    }
    let real = out.pop().unwrap();
    (out.pop().unwrap(), real)
}

#[test]
fn dry_run_refuses_a_transaction_already_rolled_back_as_the_real_run_does() {
    let t = compose_distro("nvidia-desktop", "debian12-grub");
    let root = t.path();
    let id = tx_id(&run(root, &["setup", "vm", "07:00.0", "--force", "--yes"]));
    let o = run(root, &["rollback", &id, "--yes"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (dry, real) = both(root, &["rollback", &id]);
    assert_eq!(real.0, Some(2), "the real run refuses: {}", real.1);
    assert!(real.1.contains("not committed"), "{}", real.1);
    assert_eq!(dry, real);
}

#[test]
fn dry_run_refuses_a_transaction_whose_file_changed_since_as_the_real_run_does() {
    let t = compose_distro("nvidia-desktop", "debian12-grub");
    let root = t.path();
    let id = tx_id(&run(root, &["setup", "vm", "07:00.0", "--force", "--yes"]));
    let f = root.join("etc/modprobe.d/passthru-vfio.conf");
    let mut text = std::fs::read_to_string(&f).unwrap();
    text.push_str("# my own note\n");
    std::fs::write(&f, text).unwrap();
    for args in [&["rollback", id.as_str()][..], &["rollback"]] {
        let (dry, real) = both(root, args);
        assert_eq!(real.0, Some(2), "the real run refuses: {}", real.1);
        assert!(
            real.1.contains("was changed after transaction"),
            "{}",
            real.1
        );
        assert_eq!(dry, real, "{args:?}");
    }
}
