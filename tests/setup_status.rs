//! `setup status` shows passthru's own files as they are on the host. One that is there but
//! cannot be read (a directory in its place, bytes that are not text) is reported as
//! unreadable, naming it, never skipped as if it were absent.

mod common;

use common::*;

const MODPROBE: &str = "etc/modprobe.d/passthru-vfio.conf";

fn host() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    passthru_testkit::build_named("amd-navi", dir.path()).unwrap();
    dir
}

fn status(root: &std::path::Path) -> std::process::Output {
    passthru(&["setup", "status", "--root", root.to_str().unwrap()])
}

#[test]
fn status_lists_passthru_files_that_are_there() {
    let t = host();
    let p = t.path().join(MODPROBE);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, "# passthru\noptions vfio-pci ids=1002:73bf\n").unwrap();
    let o = status(t.path());
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(
        stdout(&o),
        "No passthru transactions on this host.\n\
         \netc/modprobe.d/passthru-vfio.conf:\n  options vfio-pci ids=1002:73bf\n"
    );
}

#[test]
fn status_reports_a_passthru_file_it_cannot_read() {
    for (what, make) in [
        (
            "a directory in its place",
            (|p: &std::path::Path| std::fs::create_dir_all(p).unwrap()) as fn(&std::path::Path),
        ),
        ("bytes that are not UTF-8", |p: &std::path::Path| {
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"options vfio-pci ids=\xff\n").unwrap();
        }),
    ] {
        let t = host();
        make(&t.path().join(MODPROBE));
        let o = status(t.path());
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{what}: {o:?}");
        assert!(err.contains("passthru-vfio.conf"), "{what}: {err}");
    }
}
