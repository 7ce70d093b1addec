//! The transaction killed at every step, then the SAME command run again (not `rollback`):
//! the result must be the full result of a clean run, byte for byte (the journal aside), or a
//! clear refusal; never a partial success, never "Nothing to change" while an interrupted
//! transaction waits to be undone.
//!
//! Kill points: the debug build's crash points (`PASSTHRU_TEST_CRASH_AT=N` aborts at the N-th;
//! one before and after each step of apply, recovery, undo, refresh and rollback), and, in the
//! full matrix (`PASSTHRU_KILL_MATRIX=full`, run by hand with `scripts/kill-matrix.sh`), strace's syscall fault
//! injection: SIGKILL at the N-th call of each of mkdir, openat, write, fsync, fchmod, fchown,
//! rename, unlink (every one, reads included). The figures are in docs/transactions.md.
//!
//! Scenarios: `setup vm` on three distributions (GRUB + initramfs-tools, Fedora BLS + dracut,
//! systemd-boot + mkinitcpio), `vm attach` taking the card from a container that shares it,
//! `lxc share` taking it from a VM, `libvirt attach`.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

/// What the comparison leaves out: passthru's journal and lock, and the lock directories of
/// Proxmox's guest locks (the lock files are created by taking them, as `qm` does).
const EXCLUDED: &[&str] = &[
    "var/lib/passthru/journal",
    "var/lib/passthru/lock",
    "var/lock",
    "run/lock",
];

type Tree = BTreeMap<String, (Vec<u8>, u32)>;

/// Path -> (bytes or link target, mode) of every file and link below `root`, except
/// [`EXCLUDED`] (the history, not the result), and the directories. A stray temporary file
/// counts: it is a difference. (Directories a transaction created are compared by
/// `tests/setup.rs`'s rollback checks, not here.)
fn tree(root: &Path) -> Tree {
    walk(root).0
}

/// The files (as [`tree`]) and the directories below `root`.
fn walk(root: &Path) -> (Tree, Vec<String>) {
    let mut out = BTreeMap::new();
    let mut dirs = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for e in std::fs::read_dir(root.join(&rel)).unwrap() {
            let e = e.unwrap();
            let r = rel.join(e.file_name());
            let rs = r.to_string_lossy().into_owned();
            if EXCLUDED.contains(&rs.as_str()) {
                continue;
            }
            let meta = std::fs::symlink_metadata(e.path()).unwrap();
            let mode = meta.permissions().mode() & 0o7777;
            if meta.file_type().is_symlink() {
                let t = std::fs::read_link(e.path()).unwrap();
                out.insert(rs, (t.to_string_lossy().into_owned().into_bytes(), 0));
            } else if meta.is_dir() {
                dirs.push(rs);
                stack.push(r);
            } else {
                out.insert(rs, (std::fs::read(e.path()).unwrap(), mode));
            }
        }
    }
    (out, dirs)
}

/// Puts a used copy of a fixture back as `template` describes it, touching only what differs
/// (a fresh copy of a sysfs tree costs a third of a second; this, a few milliseconds).
fn reset(root: &Path, template: &(Tree, Vec<String>)) {
    for ex in EXCLUDED {
        let _ = std::fs::remove_dir_all(root.join(ex));
        let _ = std::fs::remove_file(root.join(ex));
    }
    let (files, dirs) = walk(root);
    let (want, want_dirs) = template;
    for (rel, v) in &files {
        if want.get(rel) != Some(v) {
            std::fs::remove_file(root.join(rel)).unwrap();
        }
    }
    let mut extra: Vec<&String> = dirs.iter().filter(|d| !want_dirs.contains(d)).collect();
    extra.sort_by_key(|d| std::cmp::Reverse(d.len()));
    for d in extra {
        std::fs::remove_dir_all(root.join(d)).unwrap();
    }
    for d in want_dirs {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    for (rel, (bytes, mode)) in want {
        if files.get(rel) == Some(&(bytes.clone(), *mode)) {
            continue;
        }
        let p = root.join(rel);
        if *mode == 0 {
            std::os::unix::fs::symlink(String::from_utf8_lossy(bytes).as_ref(), &p).unwrap();
        } else {
            std::fs::write(&p, bytes).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode)).unwrap();
        }
    }
}

/// The first few paths where two trees differ, for a failure message.
fn differences(
    a: &BTreeMap<String, (Vec<u8>, u32)>,
    b: &BTreeMap<String, (Vec<u8>, u32)>,
) -> String {
    let mut d = Vec::new();
    for (k, v) in a {
        match b.get(k) {
            None => d.push(format!("only in the result: {k}")),
            Some(w) if w != v => d.push(format!("differs: {k}")),
            _ => {}
        }
    }
    for k in b.keys().filter(|k| !a.contains_key(*k)) {
        d.push(format!("missing from the result: {k}"));
    }
    d.truncate(6);
    d.join("; ")
}

struct Scenario {
    name: &'static str,
    /// Builds the host tree into an empty directory.
    build: fn(&Path),
    args: &'static [&'static str],
}

fn distro(pci: &str, name: &str, into: &Path) {
    let t = compose_distro(pci, name);
    copy_tree(t.path(), into);
}

fn copy_tree(from: &Path, to: &Path) {
    let ok = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(to)
        .status()
        .unwrap();
    assert!(ok.success());
}

/// The RX 6800 XT Proxmox host with guest configs: `(path below etc/pve, text)`.
fn pve(into: &Path, guests: &[(&str, String)]) {
    passthru_testkit::build_named("amd-navi", into).unwrap();
    std::fs::write(into.join("etc/hostname"), "pve1\n").unwrap();
    for (rel, text) in guests {
        let p = into.join("etc/pve").join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

fn corpus_text(rel: &str) -> String {
    let text = std::fs::read_to_string(corpus().join(rel)).unwrap();
    match text.strip_prefix("# SOURCE:") {
        Some(rest) => rest.split_once('\n').unwrap().1.to_string(),
        None => text,
    }
}

/// The GUI-written container that shares the card (dev0 card0, dev1 renderD128).
fn sharing_ct() -> String {
    corpus_text("proxmox/lxc-gpu-examples/04-pironex9-pve8-devN-passthrough.conf")
}

fn plain_vm() -> String {
    corpus_text("proxmox/qemu-server/parse-config-input/plain.conf")
}

fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "setup vm on debian12-grub",
            build: |d| distro("nvidia-desktop", "debian12-grub", d),
            args: &["setup", "vm", "07:00.0", "--force", "--yes"],
        },
        Scenario {
            name: "setup vm on fedora40-grubby-dracut",
            build: |d| distro("tesla-p40", "fedora40-grubby-dracut", d),
            args: &["setup", "vm", "03:00.0", "--force", "--yes"],
        },
        Scenario {
            name: "setup vm on arch-mkinitcpio",
            build: |d| distro("nvidia-desktop", "arch-mkinitcpio", d),
            args: &["setup", "vm", "07:00.0", "--force", "--yes"],
        },
        Scenario {
            name: "vm attach taking the card from a container",
            build: |d| {
                pve(
                    d,
                    &[
                        ("qemu-server/100.conf", plain_vm()),
                        ("lxc/200.conf", sharing_ct()),
                    ],
                )
            },
            args: &["vm", "attach", "100", "03:00.0", "--force", "--yes"],
        },
        Scenario {
            name: "lxc share taking the card from a VM",
            build: |d| {
                let ct = sharing_ct()
                    .replace("dev0: /dev/dri/card0,gid=993\n", "")
                    .replace("dev1: /dev/dri/renderD128,gid=993\n", "");
                let vm = format!("{}hostpci0: 0000:03:00,pcie=1\n", plain_vm());
                pve(d, &[("qemu-server/100.conf", vm), ("lxc/200.conf", ct)])
            },
            args: &["lxc", "share", "200", "03:00.0", "--gid", "993", "--yes"],
        },
        Scenario {
            name: "libvirt attach",
            build: |d| {
                passthru_testkit::build_named("amd-navi", d).unwrap();
                let xml = std::fs::read_to_string(corpus().join("libvirt/hostdev-pci-address.xml"))
                    .unwrap();
                let name = passthru::formats::libvirt_xml::domain_name(&xml).unwrap();
                std::fs::create_dir_all(d.join("etc/libvirt/qemu")).unwrap();
                std::fs::write(d.join(format!("etc/libvirt/qemu/{name}.xml")), xml).unwrap();
                std::fs::write(d.join(".domain"), name).unwrap();
            },
            args: &[
                "libvirt", "attach", "@domain", "03:00.0", "--force", "--yes",
            ],
        },
    ]
}

/// How a run is killed.
#[derive(Clone, Copy, Debug)]
enum Kill {
    /// At the N-th crash point.
    CrashPoint(u32),
    /// SIGKILL by strace at the N-th call of a syscall.
    Syscall(&'static str, u32),
}

fn passthru_in(root: &Path, args: &[&str], kill: Option<Kill>) -> Output {
    let domain = std::fs::read_to_string(root.join(".domain")).unwrap_or_default();
    let args: Vec<&str> = args
        .iter()
        .map(|a| if *a == "@domain" { domain.as_str() } else { a })
        .collect();
    let bin = env!("CARGO_BIN_EXE_passthru");
    let mut c = match kill {
        Some(Kill::Syscall(sc, n)) => {
            let mut c = Command::new("strace");
            c.args(["-f", "-qq", "-o", "/dev/null", "-e"])
                .arg(format!("trace={sc}"))
                .arg("-e")
                .arg(format!("inject={sc}:signal=KILL:when={n}"))
                .arg(bin);
            c
        }
        _ => Command::new(bin),
    };
    c.args(&args)
        .arg("--root")
        .arg(root)
        .arg("--pci-ids")
        .arg(pci_ids())
        .env_remove("PASSTHRU_ROOT")
        .env_remove("PASSTHRU_TEST_CRASH_AT")
        .env("NO_COLOR", "1");
    if let Some(Kill::CrashPoint(n)) = kill {
        c.env("PASSTHRU_TEST_CRASH_AT", n.to_string());
    }
    c.output().unwrap()
}

/// Whether a run was killed (by the crash hook's abort or strace's SIGKILL) rather than
/// finishing.
fn killed(o: &Output) -> bool {
    use std::os::unix::process::ExitStatusExt;
    o.status.signal().is_some() || o.status.code() == Some(137)
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n{}{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Transactions the journal holds in a state that still needs undoing.
fn unfinished(root: &Path) -> Vec<String> {
    use passthru::apply::TxState;
    match passthru::apply::list_transactions(root) {
        Ok(txs) => txs
            .into_iter()
            .filter(|t| {
                !matches!(
                    t.state,
                    TxState::Committed | TxState::Undone | TxState::Abandoned | TxState::RolledBack
                )
            })
            .map(|t| format!("{} {:?}", t.id, t.state))
            .collect(),
        Err(e) => vec![format!("journal unreadable: {e}")],
    }
}

/// What the re-run gave.
#[derive(Debug, Default)]
struct Tally {
    kills: u32,
    full: u32,
    refused: u32,
    partial: Vec<String>,
    unrecovered: Vec<String>,
}

impl Tally {
    fn add(&mut self, o: &mut Tally) {
        self.kills += o.kills;
        self.full += o.full;
        self.refused += o.refused;
        self.partial.append(&mut o.partial);
        self.unrecovered.append(&mut o.unrecovered);
    }

    fn assert_clean(&self, what: &str) {
        eprintln!(
            "{what}: {} kills: {} full results, {} refusals, {} partial, {} unrecovered",
            self.kills,
            self.full,
            self.refused,
            self.partial.len(),
            self.unrecovered.len()
        );
        assert!(
            self.partial.is_empty() && self.unrecovered.is_empty(),
            "{what}:\npartial:\n  {}\nunrecovered:\n  {}",
            self.partial.join("\n  "),
            self.unrecovered.join("\n  ")
        );
    }
}

/// Judges the state after a re-run against the clean result.
fn judge(
    tally: &mut Tally,
    label: &str,
    root: &Path,
    rerun: &Output,
    want: &BTreeMap<String, (Vec<u8>, u32)>,
    before: &BTreeMap<String, (Vec<u8>, u32)>,
) {
    let waiting = unfinished(root);
    let got = tree(root);
    let out = text(rerun);
    if rerun.status.success() {
        if !waiting.is_empty() {
            tally
                .unrecovered
                .push(format!("{label}: success with {waiting:?} waiting:\n{out}"));
        } else if &got != want {
            tally.partial.push(format!(
                "{label}: success but {}:\n{out}",
                differences(&got, want)
            ));
        } else {
            tally.full += 1;
        }
    } else if rerun.status.code() == Some(2) && out.contains("passthru: error:") {
        // A refusal must say why and leave nothing half-done behind it: no transaction left
        // to undo, and the tree either the full result or as it was before.
        if !waiting.is_empty() {
            tally
                .unrecovered
                .push(format!("{label}: refused with {waiting:?} waiting:\n{out}"));
        } else if &got != want && &got != before {
            tally.partial.push(format!(
                "{label}: refused, leaving {}:\n{out}",
                differences(&got, want)
            ));
        } else {
            tally.refused += 1;
        }
    } else {
        tally.partial.push(format!(
            "{label}: neither success nor a clear refusal:\n{out}"
        ));
    }
}

/// A scenario's fixture, built once; each round resets one working copy to it.
struct Fixture {
    work: tempfile::TempDir,
    template: (Tree, Vec<String>),
    args: Vec<&'static str>,
    /// The tree after a clean run.
    want: BTreeMap<String, (Vec<u8>, u32)>,
    /// The tree before.
    original: BTreeMap<String, (Vec<u8>, u32)>,
}

impl Fixture {
    fn new(s: &Scenario) -> Fixture {
        let t = tempfile::tempdir().unwrap();
        (s.build)(t.path());
        let template = walk(t.path());
        let original = template.0.clone();
        let o = passthru_in(t.path(), s.args, None);
        assert!(
            o.status.success(),
            "{}: the clean run fails: {}",
            s.name,
            text(&o)
        );
        assert!(
            text(&o).contains("Applied as transaction"),
            "{}: {}",
            s.name,
            text(&o)
        );
        let want = tree(t.path());
        assert_ne!(want, original, "{}: the clean run changed nothing", s.name);
        let f = Fixture {
            work: t,
            template,
            args: s.args.to_vec(),
            want,
            original,
        };
        f.fresh();
        assert_eq!(
            tree(f.work.path()),
            f.original,
            "{}: reset is exact",
            s.name
        );
        f
    }

    /// The working copy, reset to the fixture.
    fn fresh(&self) -> &Path {
        reset(self.work.path(), &self.template);
        self.work.path()
    }

    /// The command killed at `kill`; `None` when it ran to the end (past the last point).
    fn killed_at(&self, kill: Kill) -> Option<&Path> {
        let d = self.fresh();
        let o = passthru_in(d, &self.args, Some(kill));
        if killed(&o) {
            return Some(d);
        }
        assert!(o.status.success(), "{kill:?}: {}", text(&o));
        None
    }
}

/// Kills the command at every point `kills` yields (until one runs to the end), re-runs it and
/// judges the result.
fn kill_and_rerun(f: &Fixture, label: &str, kills: impl Iterator<Item = Kill>) -> Tally {
    let mut tally = Tally::default();
    for kill in kills {
        let Some(d) = f.killed_at(kill) else { break };
        tally.kills += 1;
        let rerun = passthru_in(d, &f.args, None);
        judge(
            &mut tally,
            &format!("{label} {kill:?}"),
            d,
            &rerun,
            &f.want,
            &f.original,
        );
    }
    tally
}

/// Kills the command at `first`, then kills the re-run at each point `seconds` yields until
/// its recovery is over (later kills are those of a fresh apply, which
/// [`kill_and_rerun`] covers), then runs it a third time.
fn kill_twice(f: &Fixture, label: &str, first: Kill, seconds: impl Iterator<Item = Kill>) -> Tally {
    let mut tally = Tally::default();
    for second_kill in seconds {
        let Some(d) = f.killed_at(first) else { break };
        let second = passthru_in(d, &f.args, Some(second_kill));
        if !killed(&second) {
            break;
        }
        tally.kills += 1;
        let recovered = passthru::apply::list_transactions(d)
            .unwrap()
            .first()
            .is_some_and(|t| !t.is_unfinished());
        let third = passthru_in(d, &f.args, None);
        judge(
            &mut tally,
            &format!("{label} {first:?} then {second_kill:?}"),
            d,
            &third,
            &f.want,
            &f.original,
        );
        if recovered {
            break;
        }
    }
    tally
}

/// Applies cleanly, kills `rollback` at each point `kills` yields (until one runs to the end),
/// runs `rollback` again: the tree must be the original one.
fn rollback_kills(f: &Fixture, label: &str, kills: impl Iterator<Item = Kill>) -> Tally {
    let mut tally = Tally::default();
    for kill in kills {
        let d = f.fresh();
        let o = passthru_in(d, &f.args, None);
        assert!(o.status.success(), "{}", text(&o));
        let rb = passthru_in(d, &["rollback", "--yes"], Some(kill));
        if !killed(&rb) {
            assert!(rb.status.success(), "{}", text(&rb));
            break;
        }
        tally.kills += 1;
        let again = passthru_in(d, &["rollback", "--yes"], None);
        let out = text(&again);
        // Killed after the rollback committed: nothing is left to roll back, and that is the
        // full result too.
        let done_already =
            out.contains("no transaction to roll back") || out.contains("no committed transaction");
        let mut verdict = Tally::default();
        let label = format!("{label} rollback {kill:?}");
        if done_already {
            let fake_ok = Command::new("true").output().unwrap();
            judge(&mut verdict, &label, d, &fake_ok, &f.original, &f.want);
        } else {
            judge(&mut verdict, &label, d, &again, &f.original, &f.want);
        }
        // The rollback is the user's own undo: a refusal (a false "changed after transaction
        // ...; restore it by hand") is not a result here.
        if verdict.refused > 0 {
            verdict.refused = 0;
            verdict.partial.push(format!("{label}: refused:\n{out}"));
        }
        tally.add(&mut verdict);
    }
    tally
}

fn crash_points() -> impl Iterator<Item = Kill> {
    (1..400).map(Kill::CrashPoint)
}

fn full_matrix() -> bool {
    std::env::var("PASSTHRU_KILL_MATRIX").is_ok_and(|v| v == "full")
}

/// The syscalls strace kills at, each at its 1st, 2nd... call until the run completes.
const SYSCALLS: &[&str] = &[
    "mkdir", "openat", "write", "fsync", "fchmod", "fchown", "rename", "unlink",
];

fn syscall_kills(sc: &'static str) -> impl Iterator<Item = Kill> {
    (1..5000).map(move |n| Kill::Syscall(sc, n))
}

fn scenario(i: usize) {
    let s = &scenarios()[i];
    let f = Fixture::new(s);
    let mut all = Tally::default();
    let mut phase = |what: &str, mut t: Tally| {
        eprintln!(
            "{}: {what}: {} kills, {} full, {} refused, {} partial, {} unrecovered",
            s.name,
            t.kills,
            t.full,
            t.refused,
            t.partial.len(),
            t.unrecovered.len()
        );
        all.add(&mut t);
    };
    let apply = kill_and_rerun(&f, s.name, crash_points());
    let points = apply.kills;
    assert!(points >= 12, "{}: only {points} crash points", s.name);
    phase("the command killed at each crash point", apply);
    // Killed again while recovering: after a kill in the middle of the transaction (files
    // written), and in the full matrix after every kill point.
    let firsts: Vec<u32> = if full_matrix() {
        (1..=points).collect()
    } else {
        vec![points / 2]
    };
    let mut recovery = Tally::default();
    for n in &firsts {
        recovery.add(&mut kill_twice(
            &f,
            s.name,
            Kill::CrashPoint(*n),
            crash_points(),
        ));
    }
    // Every phase kills something: a phase that never got killed judged nothing.
    assert!(
        recovery.kills > 0,
        "{}: the recovery was never killed",
        s.name
    );
    phase("its recovery killed at each crash point", recovery);
    let rollback = rollback_kills(&f, s.name, crash_points());
    assert!(rollback.kills > 0, "{}: rollback was never killed", s.name);
    phase("rollback killed at each crash point", rollback);
    if full_matrix() {
        let mut apply = Tally::default();
        let mut recovery = Tally::default();
        let mut rollback = Tally::default();
        for sc in SYSCALLS {
            let label = format!("{} strace", s.name);
            apply.add(&mut kill_and_rerun(&f, &label, syscall_kills(sc)));
            recovery.add(&mut kill_twice(
                &f,
                &label,
                Kill::CrashPoint(points / 2),
                syscall_kills(sc),
            ));
            rollback.add(&mut rollback_kills(&f, &label, syscall_kills(sc)));
        }
        phase("the command killed at each syscall", apply);
        phase("its recovery killed at each syscall", recovery);
        phase("rollback killed at each syscall", rollback);
    }
    all.assert_clean(s.name);
}

#[test]
fn setup_vm_debian12_grub() {
    scenario(0);
}

#[test]
fn setup_vm_fedora40_grubby_dracut() {
    scenario(1);
}

#[test]
fn setup_vm_arch_mkinitcpio() {
    scenario(2);
}

#[test]
fn vm_attach_taking_the_card_from_a_container() {
    scenario(3);
}

#[test]
fn lxc_share_taking_the_card_from_a_vm() {
    scenario(4);
}

#[test]
fn libvirt_attach() {
    scenario(5);
}
