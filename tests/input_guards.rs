//! Input that cannot mislead, through the binary as a user runs it: a snapshot is never a host
//! to change, a directory with no host in it is not a host, a closed pipe is not a failure, a
//! selector must name a GPU, and an input that cannot be read is an error naming it.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::*;
use serde_json::Value;

fn build(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    passthru_testkit::build_named(name, dir.path()).unwrap();
    dir
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A saved `scan --json` of the one-GPU desktop fixture.
fn saved_scan() -> (tempfile::TempDir, tempfile::NamedTempFile) {
    let t = build("nvidia-desktop");
    let out = passthru(&["scan", "--json", "--root", s(t.path())]);
    assert!(out.status.success(), "{}", stderr(&out));
    let saved = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(saved.path(), &out.stdout).unwrap();
    (t, saved)
}

/// Every command that changes a host, with the arguments it needs. `--dry-run` everywhere:
/// were a refusal missing, the command must not touch this machine's own `/`.
const WRITE_COMMANDS: &[&[&str]] = &[
    &["setup", "vm", "07:00.0", "--dry-run"],
    &["setup", "host", "07:00.0", "--dry-run"],
    &["rollback", "--dry-run"],
    &["vm", "attach", "100", "07:00.0", "--dry-run"],
    &["vm", "detach", "100", "07:00.0", "--dry-run"],
    &["mapping", "create", "gpu0", "07:00.0", "--dry-run"],
    &["lxc", "share", "101", "07:00.0", "--dry-run"],
    &["lxc", "unshare", "101", "07:00.0", "--dry-run"],
    &["libvirt", "attach", "win11", "07:00.0", "--dry-run"],
    &["libvirt", "detach", "win11", "07:00.0", "--dry-run"],
    &["bind", "07:00.0", "--dry-run"],
    &["unbind", "07:00.0", "--dry-run"],
    &["power", "--runtime-pm", "auto", "07:00.0", "--dry-run"],
    &["debug-apply-plan", "/nonexistent/plan.json", "--dry-run"],
];

/// Commands that read files of the host beyond what a snapshot holds.
const HOST_FILE_COMMANDS: &[&[&str]] = &[
    &["setup", "status"],
    &["mapping", "list"],
    &["docker", "07:00.0"],
];

#[test]
fn a_snapshot_is_never_a_host_to_change() {
    let (_t, saved) = saved_scan();
    for cmd in WRITE_COMMANDS {
        let mut args = cmd.to_vec();
        args.extend(["--from", s(saved.path())]);
        let out = passthru(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{cmd:?}: {err}");
        assert!(
            err.contains("a snapshot is not a host to change") && err.contains("--root"),
            "{cmd:?}: {err}"
        );
        assert!(
            out.stdout.is_empty(),
            "{cmd:?} printed a plan: {}",
            stdout(&out)
        );
    }
    for cmd in HOST_FILE_COMMANDS {
        let mut args = cmd.to_vec();
        args.extend(["--from", s(saved.path())]);
        let out = passthru(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{cmd:?}: {err}");
        assert!(
            err.contains("a snapshot does not hold") && err.contains("--root"),
            "{cmd:?}: {err}"
        );
    }
    // The commands that work from a snapshot still do.
    for cmd in [
        &["list"][..],
        &["check"][..],
        &["scan"][..],
        &["power"][..],
        &["advise", "--use", "transcode"][..],
    ] {
        let mut args = cmd.to_vec();
        args.extend(["--from", s(saved.path())]);
        let out = passthru(&args);
        // `check` exits 1 for a GPU that is not ready; anything else (2, a panic's 101) is
        // a failure to work from the snapshot.
        let ok_codes: &[i32] = if cmd[0] == "check" { &[0, 1] } else { &[0] };
        assert!(
            out.status.code().is_some_and(|c| ok_codes.contains(&c)) && !out.stdout.is_empty(),
            "{cmd:?}: exit {:?}: {}",
            out.status.code(),
            stderr(&out)
        );
    }
}

#[test]
fn a_directory_with_no_host_in_it_is_refused_by_every_command() {
    let empty = tempfile::tempdir().unwrap();
    // One level too high: the host tree is a subdirectory.
    let above = tempfile::tempdir().unwrap();
    passthru_testkit::build_named("nvidia-desktop", &above.path().join("host")).unwrap();
    let archive = above.path().join("out.tar.gz");
    let mut commands: Vec<Vec<&str>> = vec![
        vec!["list"],
        vec!["list", "--json"],
        vec!["scan"],
        vec!["scan", "--json"],
        vec!["scan", "--archive", s(&archive)],
        vec!["check"],
        vec!["power"],
        vec!["advise", "--use", "transcode"],
    ];
    commands.extend(WRITE_COMMANDS.iter().map(|c| c.to_vec()));
    commands.extend(HOST_FILE_COMMANDS.iter().map(|c| c.to_vec()));
    for dir in [empty.path(), above.path()] {
        for cmd in &commands {
            let mut args = cmd.clone();
            args.extend(["--root", s(dir)]);
            let out = passthru(&args);
            let err = stderr(&out);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{cmd:?} on {}: {err}",
                dir.display()
            );
            assert!(
                err.contains(s(dir)) && err.contains("sys/bus/pci") && err.contains("proc"),
                "{cmd:?}: {err}"
            );
            assert!(
                !stdout(&out).contains("VT-d") && !stdout(&out).contains("Everything expected"),
                "{cmd:?}: a report on no host: {}",
                stdout(&out)
            );
        }
    }
    assert!(!archive.exists(), "no archive of no host");
}

#[test]
fn trees_that_hold_a_host_are_still_accepted() {
    // Only proc (a distro fixture keeps sys/bus/pci/devices empty but present; this one has
    // neither sys nor anything else): proc alone is a host.
    let only_proc = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(only_proc.path().join("proc")).unwrap();
    std::fs::write(only_proc.path().join("proc/cmdline"), "ro quiet\n").unwrap();
    let out = passthru(&["list", "--root", s(only_proc.path())]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Only sys/bus/pci (ghw's trimmed trees have no proc).
    let only_sys = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(only_sys.path().join("sys/bus/pci/devices")).unwrap();
    let out = passthru(&["list", "--root", s(only_sys.path())]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Every distro fixture, the bundled example and a QEMU capture.
    let mut roots: Vec<std::path::PathBuf> =
        std::fs::read_dir(repo().join("tests/fixtures/distros"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_dir())
            .collect();
    roots.push(repo().join("examples/hosts/homelab"));
    roots.push(unpacked(
        &repo().join("tests/fixtures/qemu/intel-flat/root.tar.gz"),
    ));
    for r in roots {
        let out = passthru(&["list", "--root", s(&r)]);
        assert!(out.status.success(), "{}: {}", r.display(), stderr(&out));
    }
}

/// Runs passthru with a stdout pipe whose reading end is already closed, so its first write
/// fails with EPIPE whatever the size of the output.
fn run_into_closed_pipe(args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let child = Command::new(env!("CARGO_BIN_EXE_passthru"))
        .args(args)
        .env_remove("PASSTHRU_ROOT")
        .env("NO_COLOR", "1")
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn a_closed_pipe_is_success_for_every_output() {
    let (t, saved) = saved_scan();
    let root = s(t.path());
    let from = s(saved.path());
    let cases: Vec<Vec<&str>> = vec![
        vec!["list", "--root", root],
        vec!["list", "--json", "--root", root],
        vec!["list", "--gpus", "--root", root],
        vec!["list", "--gpus", "--json", "--root", root],
        vec!["scan", "--root", root],
        vec!["scan", "--json", "--root", root],
        vec!["scan", "--json", "--from", from],
        vec!["check", "--root", root],
        vec!["check", "--json", "--root", root],
        vec!["power", "--root", root],
        vec!["power", "--json", "--root", root],
        vec!["advise", "--use", "transcode", "--server", "n100"],
        vec!["advise", "--use", "transcode", "--server", "n100", "--json"],
        vec!["advise", "--use", "llm", "--model", "8b", "--from", from],
        vec!["docker", "07:00.0", "--root", root],
        vec!["setup", "status", "--root", root],
        vec!["mapping", "list", "--root", root],
        // A dry run only prints.
        vec!["bind", "07:00.0", "--force", "--dry-run", "--root", root],
        vec![
            "setup",
            "vm",
            "07:00.0",
            "--force",
            "--dry-run",
            "--root",
            root,
        ],
    ];
    for args in cases {
        let out = run_into_closed_pipe(&args);
        // `check` says 1 for a GPU that is not ready; only 2 (an error) is wrong here.
        let ok = match args[0] {
            "check" => matches!(out.status.code(), Some(0 | 1)),
            _ => out.status.success(),
        };
        assert!(ok, "{args:?}: {:?} {}", out.status, stderr(&out));
        assert!(
            !stderr(&out).contains("Broken pipe"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn a_selector_must_name_a_gpu() {
    let t = build("nvidia-desktop");
    let root = s(t.path());
    for bad in ["", " ", ".", "a", "ab", ":", "0", "07", "a b"] {
        for cmd in [
            vec!["check", bad],
            vec!["check", "--json", bad],
            vec!["bind", bad, "--dry-run"],
            vec!["setup", "vm", bad, "--dry-run"],
            vec!["docker", bad],
        ] {
            let mut args = cmd.clone();
            args.extend(["--root", root]);
            let out = passthru(&args);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(2), "{cmd:?}: {err}");
            // The GPUs there are, so the user can pick one.
            assert!(
                err.contains("0000:07:00.0") && err.contains("10de:2206"),
                "{cmd:?}: {err}"
            );
        }
    }
    for good in [
        "07:00.0",
        "0000:07:00.0",
        "07:00",
        "0000:07:00",
        "10de:2206",
        "10DE:2206",
        "3080",
        "rtx",
        "GeForce RTX",
    ] {
        let out = passthru(&[
            "check",
            "--json",
            good,
            "--root",
            root,
            "--pci-ids",
            s(&pci_ids()),
        ]);
        assert_ne!(out.status.code(), Some(2), "{good}: {}", stderr(&out));
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["gpus"][0]["address"], "0000:07:00.0", "{good}");
        assert_eq!(doc["unmatched"].as_array().unwrap().len(), 0, "{good}");
    }
    // A well-formed selector that names no GPU is reported, not an error (exit 1).
    let out = passthru(&["check", "01:00.0", "--root", root]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let out = passthru(&[
        "check",
        "radeon",
        "--root",
        root,
        "--pci-ids",
        s(&pci_ids()),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}

#[test]
fn advise_refuses_a_snapshot_it_cannot_load() {
    let out = passthru(&[
        "advise",
        "--use",
        "transcode",
        "--from",
        "/nonexistent/host.json",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("/nonexistent/host.json"),
        "{}",
        stderr(&out)
    );
    let bad = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(bad.path(), "not json").unwrap();
    let out = passthru(&["advise", "--use", "transcode", "--from", s(bad.path())]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains(s(bad.path())), "{}", stderr(&out));
}

#[test]
fn mapping_list_names_a_pci_cfg_it_cannot_read() {
    let t = build("nvidia-desktop");
    let root = t.path();
    // Absent: no mappings, which is true.
    let out = passthru(&["mapping", "list", "--root", s(root)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("No PCI resource mappings."));

    let cfg = root.join("etc/pve/mapping/pci.cfg");
    std::fs::create_dir_all(cfg.parent().unwrap()).unwrap();
    std::fs::write(
        &cfg,
        b"gpu0\n\tmap id=10de:2206,node=pve,path=0000:07:00\xff\n",
    )
    .unwrap();
    let out = passthru(&["mapping", "list", "--root", s(root)]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("etc/pve/mapping/pci.cfg"),
        "{}",
        stderr(&out)
    );
    assert!(!stdout(&out).contains("No PCI resource mappings."));

    std::fs::remove_file(&cfg).unwrap();
    std::fs::create_dir(&cfg).unwrap();
    let out = passthru(&["mapping", "list", "--root", s(root)]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("etc/pve/mapping/pci.cfg"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_closed_pipe_after_some_output_is_success() {
    // `scan --json | head -c 100`: the reader takes a little and goes away mid-output.
    let t = build("sriov-nic");
    let whole = passthru(&["scan", "--json", "--root", s(t.path())]);
    assert!(
        whole.stdout.len() > 1 << 16,
        "the output must outgrow a pipe's buffer for the writer to meet the closed end"
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_passthru"))
        .args(["scan", "--json", "--root", s(t.path())])
        .env_remove("PASSTHRU_ROOT")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 100];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    // The reading end is closed here; the JSON is larger than a pipe's buffer, so the
    // writer meets EPIPE.
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?} {}", out.status, stderr(&out));
}
