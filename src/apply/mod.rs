//! The only code that writes the host's files: one plan as one transaction.
//!
//! A writing command works in this order ([`begin`], then [`HostSession`]):
//! 1. take passthru's host lock (`var/lib/passthru/lock`) and undo any transaction a crash
//!    interrupted ([`recover_interrupted`]); an undo that cannot finish stops everything;
//! 2. (the command) read the host and make its plan from the files as they are now, show it,
//!    ask; the host lock is held meanwhile, so no other passthru changes the files the plan
//!    was made from (Proxmox's guest locks are not: `qm` and `pct` wait for nobody's prompt);
//! 3. take the Proxmox lock of every guest config the plan edits, in a fixed order;
//! 4. re-read every file and compare with the bytes the plan was made from; a difference
//!    stops everything before a byte is written;
//! 5. save each file's exact bytes, mode, owner and extended attributes (or its absence) in
//!    the journal (`var/lib/passthru/journal/<id>/`), fsynced, then mark the transaction
//!    `applying`;
//! 6. for each file: record (fsynced) that its write starts, then write it atomically through
//!    the confined path ([`path`]): a temporary file in the same directory (O_EXCL|
//!    O_NOFOLLOW), fsync, owner, xattrs, mode, a last check that the file still holds the
//!    bytes the plan was made from, rename over it, fsync the directory; then mark the
//!    transaction `written`;
//! 7. run the refresh commands (argument vectors, never a shell), keeping their output;
//! 8. mark the transaction `committed`.
//!
//! On any failure after step 5 the files recorded as written are restored ([`undo`]), the
//! refresh commands run again, and every file's state is reported. Rollback is itself a plan
//! (restore the saved bytes) applied the same way. docs/transactions.md says what this
//! guarantees and where it stops.
//!
//! Runtime sysfs writes (`bind`, `unbind`) are transactions of their own kind, journaled the
//! same way ([`runtime`]); the Prometheus textfile goes through the same atomic write
//! ([`write_textfile`]); one lock implementation ([`lock`]) serves passthru's own host lock and
//! Proxmox's per-guest locks.

mod commands;
mod journal;
pub mod lock;
pub(crate) mod path;
pub mod runtime;
pub mod undo;
mod write;

use std::io;
use std::path::{Path, PathBuf};

pub use commands::regenerates;
pub use journal::{list_transactions, Manifest, RuntimeRecord, TxState};
pub use lock::{take_lock, Lock, LockTarget};
pub use path::read_file as read_confined;
pub use runtime::apply_runtime;
pub use undo::{FileUndo, UndoReport};

use crate::plan::runtime::RuntimePlan;
use crate::plan::{digest, FileEdit, Plan};
use journal::{Journal, SavedFile};
use path::Expect;
use write::{atomic_write, remove_file_synced};

/// Where passthru keeps its journal and lock, below the host root.
pub const STATE_DIR: &str = "var/lib/passthru";

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{holder}: its lock {path} is held; try again when it is done", path = .path.display())]
    Locked { path: PathBuf, holder: &'static str },
    #[error("{device} changed since the plan was made (was {expected}, now {found}); nothing was written. Run the command again to plan from the new state")]
    DeviceChanged {
        device: String,
        expected: String,
        found: String,
    },
    #[error("{path} changed since the plan was made (was {expected}, now {found}); nothing was written. Run the command again to plan from the new contents")]
    DigestChanged {
        path: String,
        expected: String,
        found: String,
    },
    /// The OS error's text is part of the message: it travels into `RolledBack` and
    /// `RestoreFailed` as text, where a `source()` chain would be lost.
    // (Not named `source`: thiserror would make it the error's source too, and `{:#}` would
    // print the OS text twice.)
    #[error("{op} {path}: {err}", path = .path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        err: io::Error,
    },
    #[error("{failure}; the transaction was undone: {report}")]
    RolledBack { failure: String, report: String },
    #[error("{failure}; every setting and driver binding was put back as it was")]
    RuntimeUndone { failure: String },
    #[error("{failure}; and the undo could not finish: {restore}. The journal in {journal} holds the saved files; {resolve}", journal = .journal.display())]
    RestoreFailed {
        failure: String,
        restore: String,
        journal: PathBuf,
        resolve: String,
    },
    #[error("transaction {id} ({title}) was interrupted and cannot be undone completely, so nothing else was done: {report}. The journal in {journal} holds the saved files; {resolve}", journal = .journal.display())]
    RecoveryIncomplete {
        id: String,
        title: String,
        report: String,
        journal: PathBuf,
        resolve: String,
    },
    #[error("no transaction to roll back{}", .0.as_ref().map(|i| format!(" with id {i}")).unwrap_or_default())]
    NoSuchTransaction(Option<String>),
    #[error("{0}")]
    Refused(String),
}

/// An error with its causes (`writing etc/x: Read-only file system (os error 30)`): the OS
/// error text is what tells the user what to fix.
pub fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

/// How to apply.
#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    /// Run the plan's commands. Off under a `--root` other than `/`: they are listed as
    /// skipped, never run against the real host.
    pub run_commands: bool,
}

impl ApplyOptions {
    /// Commands run on this machine's own `/` only. Debug builds only:
    /// `PASSTHRU_TEST_RUN_COMMANDS=1` runs them under a fixture root too, for tests that put
    /// fake refresh commands on `PATH`.
    pub fn for_root(root: &Path) -> ApplyOptions {
        let forced = cfg!(debug_assertions)
            && std::env::var("PASSTHRU_TEST_RUN_COMMANDS").is_ok_and(|v| v == "1");
        ApplyOptions {
            run_commands: forced || runtime::is_live_root(root),
        }
    }
}

/// What applying did.
#[derive(Debug, Clone, Default)]
pub struct ApplyOutcome {
    /// Journal id, for `rollback ID`; `None` when there was nothing to change.
    pub id: Option<String>,
    pub written: Vec<String>,
    pub commands_run: Vec<(Vec<String>, i32)>,
    pub commands_skipped: Vec<Vec<String>>,
    /// Messages about interrupted transactions undone on the way (by the one-call functions;
    /// a [`HostSession`] has them from the start).
    pub recovered: Vec<String>,
}

/// A test hook, in debug builds only: `PASSTHRU_TEST_CRASH_AT=N` aborts the process at the
/// N-th crash point, as a power cut would, so tests can prove every step is recoverable;
/// `PASSTHRU_TEST_CRASH_AT=@NAME` aborts at the first crash point called NAME.
pub(crate) fn crash_point(what: &str) {
    if !cfg!(debug_assertions) {
        return;
    }
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNT: AtomicU32 = AtomicU32::new(0);
    let Ok(at) = std::env::var("PASSTHRU_TEST_CRASH_AT") else {
        return;
    };
    let n = COUNT.fetch_add(1, Ordering::SeqCst) + 1;
    let hit = match at.strip_prefix('@') {
        Some(name) => name == what,
        None => at.parse::<u32>().is_ok_and(|at| at == n),
    };
    if hit {
        std::process::abort();
    }
}

/// passthru's own lock for one host root, held until dropped.
pub fn lock_host(root: &Path) -> Result<Lock, ApplyError> {
    take_lock(root, LockTarget::Host)
}

/// The Proxmox guest whose config a root-relative path is, if it is one
/// (`etc/pve/qemu-server/100.conf`, `etc/pve/lxc/200.conf`, and the same under
/// `etc/pve/nodes/NODE/`).
pub fn guest_of(path: &str) -> Option<LockTarget> {
    let rest = path.strip_prefix("etc/pve/")?;
    let rest = match rest.strip_prefix("nodes/") {
        Some(r) => r.split_once('/')?.1,
        None => rest,
    };
    let (kind, file) = rest.split_once('/')?;
    let id: u32 = file.strip_suffix(".conf")?.parse().ok()?;
    match kind {
        "qemu-server" => Some(LockTarget::QemuGuest(id)),
        "lxc" => Some(LockTarget::LxcGuest(id)),
        _ => None,
    }
}

/// The guest locks for a set of edited paths, sorted (VMs, then containers, by id) and without
/// duplicates: every passthru takes them in this one order.
pub fn guest_locks_for(paths: &[&str]) -> Vec<LockTarget> {
    let mut g: Vec<LockTarget> = paths.iter().filter_map(|p| guest_of(p)).collect();
    g.sort();
    g.dedup();
    g
}

fn take_guest_locks(root: &Path, plan: &Plan) -> Result<Vec<Lock>, ApplyError> {
    let paths: Vec<&str> = plan.edits.iter().map(|e| e.path.as_str()).collect();
    guest_locks_for(&paths)
        .into_iter()
        .map(|g| take_lock(root, g))
        .collect()
}

/// Writes a file another program reads whole (the Prometheus textfile collector): atomically,
/// as every other file passthru writes (temporary file, fsync, rename, fsync of the
/// directory), so the reader sees the old file or the new one, never a torn one. An existing
/// file keeps its mode and owner; a new one gets `new_mode`.
pub fn write_textfile(path: &Path, bytes: &[u8], new_mode: u32) -> Result<(), ApplyError> {
    write::write_plain(path, bytes, new_mode)
}

/// Reads a file's bytes through a confined path (see [`path`]), `None` when absent.
pub fn read_current(root: &Path, rel: &str) -> Result<Option<Vec<u8>>, ApplyError> {
    Ok(path::read_file(root, rel)?.map(|s| s.bytes))
}

/// What resolves an undo that could not finish, from its report.
fn how_to_resolve(j: &Journal, report: &UndoReport) -> String {
    let mut steps = Vec::new();
    for (path, state) in &report.files {
        if let FileUndo::Failed(why) = state {
            let i = j.manifest.files.iter().position(|f| &f.path == path);
            let copy = i.and_then(|i| {
                j.manifest.files[i]
                    .original
                    .as_ref()
                    .map(|_| j.dir.join("files").join(i.to_string()))
            });
            let fix = if why.contains("changed since this transaction wrote it") {
                match &copy {
                    Some(c) => format!(
                        "put {path} back by hand (`cp {} /{path}`) or decide to keep it",
                        c.display()
                    ),
                    None => format!(
                        "remove {path} by hand (it did not exist before) or decide to keep it"
                    ),
                }
            } else {
                format!("fix what stops writing {path} (a read-only mount: `mount -o remount,rw`; an immutable file: `chattr -i`; a full disk: free space)")
            };
            steps.push(fix);
        }
    }
    format!(
        "{}, then run any passthru command that changes the host again (it finishes this undo first); `passthru setup status` shows the transaction as {}",
        steps.join("; "),
        "undoincomplete"
    )
}

/// One sentence per interrupted transaction undone.
fn recovered_message(m: &Manifest, report: &UndoReport) -> String {
    format!(
        "transaction {} ({}) was interrupted; undone: {report}",
        m.id, m.title
    )
}

/// Undoes every transaction a crash left unfinished, newest first; returns what it did. Call
/// with the host lock held. An undo that cannot finish stops everything
/// ([`ApplyError::RecoveryIncomplete`], naming every file's state and what resolves it).
pub fn recover_interrupted(root: &Path, opts: &ApplyOptions) -> Result<Vec<String>, ApplyError> {
    let mut messages = journal::tidy_journal(root)?;
    let journals = Journal::open_all(root)?;
    for mut j in journals.into_iter().rev() {
        if !j.manifest.is_unfinished() {
            continue;
        }
        if j.manifest.state == TxState::Preparing {
            j.set_state(TxState::Abandoned)?;
            messages.push(format!(
                "transaction {} ({}) was interrupted before any change was made; nothing to undo",
                j.manifest.id, j.manifest.title
            ));
            continue;
        }
        if j.manifest.is_runtime() {
            if runtime::from_earlier_boot(root, &j.manifest) {
                j.set_state(TxState::Abandoned)?;
                messages.push(format!(
                    "transaction {} ({}) was interrupted before the last reboot, which reset what it had changed; nothing to undo",
                    j.manifest.id, j.manifest.title
                ));
            } else {
                if let Err(e) = runtime::undo_runtime(root, &j.manifest) {
                    j.set_state(TxState::UndoIncomplete)?;
                    return Err(ApplyError::RecoveryIncomplete {
                        id: j.manifest.id.clone(),
                        title: j.manifest.title.clone(),
                        report: describe(&e),
                        journal: j.dir.clone(),
                        resolve: "fix what the error names (a device that is gone: rescan or reboot, which resets every binding), then run any passthru command that changes the host again (it finishes this undo first)".into(),
                    });
                }
                j.set_state(TxState::Undone)?;
                messages.push(format!(
                    "transaction {} ({}) was interrupted; every setting and driver binding it had touched was put back",
                    j.manifest.id, j.manifest.title
                ));
            }
            continue;
        }
        let report = undo::undo_files(root, &mut j, opts, true)?;
        if !report.is_complete() {
            j.set_state(TxState::UndoIncomplete)?;
            return Err(ApplyError::RecoveryIncomplete {
                id: j.manifest.id.clone(),
                title: j.manifest.title.clone(),
                report: report.to_string(),
                journal: j.dir.clone(),
                resolve: how_to_resolve(&j, &report),
            });
        }
        j.set_state(TxState::Undone)?;
        crash_point("recovered");
        messages.push(recovered_message(&j.manifest, &report));
    }
    Ok(messages)
}

/// The last step of a rollback: the directories its target created are removed (when
/// empty) and the target is marked rolled back. Also run by recovery when a crash fell
/// between a rollback's commit and this step.
pub(crate) fn finish_rollback(root: &Path, target: &mut Journal) -> Result<(), ApplyError> {
    write::remove_created_dirs(root, &target.manifest.created_dirs)?;
    target.set_state(TxState::RolledBack)
}

/// An interrupted transaction that the next writing command undoes first, as `--dry-run`
/// shows it (nothing is written to find this out).
#[derive(Debug, Clone)]
pub struct PendingUndo {
    pub id: String,
    pub title: String,
    /// What the undo would do with each file (empty for a runtime transaction).
    pub files: Vec<(String, FileUndo)>,
    /// Its refresh commands, run again after the files are back.
    pub commands: Vec<Vec<String>>,
    pub runtime: bool,
}

/// The transactions a writing command would undo before anything else, without undoing them.
pub fn pending_undo(root: &Path) -> Result<Vec<PendingUndo>, ApplyError> {
    let mut out = Vec::new();
    for j in Journal::open_all(root)?.into_iter().rev() {
        let m = &j.manifest;
        if !m.is_unfinished() || m.state == TxState::Preparing {
            continue;
        }
        if m.is_runtime() && runtime::from_earlier_boot(root, m) {
            continue;
        }
        out.push(PendingUndo {
            id: m.id.clone(),
            title: m.title.clone(),
            files: undo::preview(root, m),
            commands: m.commands.iter().map(|c| c.argv.clone()).collect(),
            runtime: m.is_runtime(),
        });
    }
    Ok(out)
}

/// passthru's host lock, held for a whole writing command, with the interrupted transactions
/// undone when it was taken. A command makes its plan after [`begin`], from the recovered
/// files, and applies it through the session.
pub struct HostSession {
    root: PathBuf,
    opts: ApplyOptions,
    recovered: Vec<String>,
    _lock: Lock,
}

/// Every path a plan names is below the root (relative, no `..`): checked before the plan's
/// transaction writes anything, its journal included.
fn check_plan_paths(plan: &Plan) -> Result<(), ApplyError> {
    for e in &plan.edits {
        path::checked(&e.path)?;
    }
    Ok(())
}

/// Takes the host lock and undoes whatever a crash interrupted: the first thing a writing
/// command does, before it reads a file to plan from.
pub fn begin(root: &Path, opts: &ApplyOptions) -> Result<HostSession, ApplyError> {
    let lock = lock_host(root)?;
    crash_point("locked");
    let recovered = recover_interrupted(root, opts)?;
    Ok(HostSession {
        root: root.to_path_buf(),
        opts: opts.clone(),
        recovered,
        _lock: lock,
    })
}

impl HostSession {
    /// What recovery did when the session began.
    pub fn recovered(&self) -> &[String] {
        &self.recovered
    }

    /// Applies a plan as one transaction, under the Proxmox lock of every guest config it
    /// edits (taken now, after the user confirmed, in [`guest_locks_for`]'s order).
    pub fn apply(&self, plan: &Plan) -> Result<ApplyOutcome, ApplyError> {
        check_plan_paths(plan)?;
        let _guests = take_guest_locks(&self.root, plan)?;
        apply_locked(&self.root, plan, &self.opts, "apply", None)
    }

    /// Applies a runtime (sysfs) plan as one transaction.
    pub fn apply_runtime(&self, plan: &RuntimePlan) -> Result<ApplyOutcome, ApplyError> {
        runtime::apply_runtime_locked(&self.root, plan, &self.opts, "runtime", None)
    }

    /// Rolls back a committed transaction (the last one when `id` is `None`): its files get
    /// their saved bytes back, as a new journaled transaction, then its commands run again.
    pub fn rollback(&self, id: Option<&str>) -> Result<ApplyOutcome, ApplyError> {
        rollback_locked(&self.root, id, &self.opts)
    }
}

/// Takes the lock and undoes whatever a crash interrupted; returns what it did.
pub fn recover(root: &Path) -> Result<Vec<String>, ApplyError> {
    Ok(begin(root, &ApplyOptions::for_root(root))?.recovered)
}

/// Applies a plan as one transaction: [`begin`], then [`HostSession::apply`].
pub fn apply_plan(
    root: &Path,
    plan: &Plan,
    opts: &ApplyOptions,
) -> Result<ApplyOutcome, ApplyError> {
    check_plan_paths(plan)?;
    let session = begin(root, opts)?;
    let mut outcome = session.apply(plan)?;
    outcome.recovered = session.recovered.clone();
    Ok(outcome)
}

fn apply_locked(
    root: &Path,
    plan: &Plan,
    opts: &ApplyOptions,
    kind: &str,
    rolls_back: Option<&str>,
) -> Result<ApplyOutcome, ApplyError> {
    let mut outcome = ApplyOutcome::default();
    // Nothing is written unless every file still has the bytes the plan was made from.
    let mut saved = Vec::new();
    for e in &plan.edits {
        let current = read_current(root, &e.path)?;
        if current != e.before {
            let show = |b: &Option<Vec<u8>>| {
                b.as_deref().map_or("absent".to_string(), |b| {
                    format!("sha256 {}", &digest(b)[..12])
                })
            };
            return Err(ApplyError::DigestChanged {
                path: e.path.clone(),
                expected: show(&e.before),
                found: show(&current),
            });
        }
        saved.push(SavedFile::capture(root, &e.path, current)?);
    }
    if plan.edits.is_empty() {
        return Ok(outcome);
    }
    let mut j = Journal::create(root, plan, kind, rolls_back, saved)?;
    crash_point("journal saved");
    if let Some(target) = rolls_back {
        j.record_rolls_back(target)?;
        crash_point("rollback target recorded");
    }
    j.set_state(TxState::Applying)?;
    crash_point("marked applying");
    outcome.id = Some(j.manifest.id.clone());

    let result = write_all(root, &plan.edits, &mut j, &mut outcome);
    let result = result.and_then(|()| {
        j.set_state(TxState::Written)?;
        crash_point("marked written");
        run_commands(plan, opts, &mut j, &mut outcome)
    });
    match result {
        Ok(()) => {
            j.set_state(TxState::Committed)?;
            crash_point("committed");
            Ok(outcome)
        }
        Err(failure) => {
            let failure = describe(&failure);
            let report = match undo::undo_files(root, &mut j, opts, false) {
                Ok(r) => r,
                Err(e) => {
                    // The journal could not record the undo (a full disk...): the transaction
                    // stays unfinished on disk, and the next run undoes it again.
                    return Err(ApplyError::RestoreFailed {
                        failure,
                        restore: describe(&e),
                        journal: j.dir.clone(),
                        resolve: "fix what the error names, then run any passthru command that changes the host again (it finishes this undo first)".into(),
                    });
                }
            };
            if report.is_complete() {
                j.set_state(TxState::Undone)?;
                Err(ApplyError::RolledBack {
                    failure,
                    report: report.to_string(),
                })
            } else {
                j.set_state(TxState::UndoIncomplete)?;
                Err(ApplyError::RestoreFailed {
                    failure,
                    restore: report.to_string(),
                    journal: j.dir.clone(),
                    resolve: how_to_resolve(&j, &report),
                })
            }
        }
    }
}

/// Ends a runtime transaction: committed when every step succeeded; otherwise undone (`undo`),
/// and the failure reported as `undone(failure)`, or, when the undo fails too, both errors and
/// the journal marked `undo-incomplete` for the next run to finish.
pub(crate) fn finish(
    j: &mut Journal,
    result: Result<(), ApplyError>,
    outcome: ApplyOutcome,
    undo: impl FnOnce(&Journal) -> Result<(), ApplyError>,
    undone: impl FnOnce(String) -> ApplyError,
) -> Result<ApplyOutcome, ApplyError> {
    match result {
        Ok(()) => {
            j.set_state(TxState::Committed)?;
            crash_point("committed");
            Ok(outcome)
        }
        Err(failure) => {
            let failure = describe(&failure);
            match undo(j) {
                Ok(()) => {
                    j.set_state(TxState::Undone)?;
                    Err(undone(failure))
                }
                Err(e) => {
                    j.set_state(TxState::UndoIncomplete)?;
                    Err(ApplyError::RestoreFailed {
                        failure,
                        restore: describe(&e),
                        journal: j.dir.clone(),
                        resolve: "fix what the error names, then run any passthru command that changes the host again (it finishes this undo first)".into(),
                    })
                }
            }
        }
    }
}

/// A write refused at the last check (the file changed under passthru) never happened: the
/// journal says so, so an undo keeps the other writer's bytes.
fn untouch_if_refused(
    j: &mut Journal,
    path: &str,
    r: Result<(), ApplyError>,
) -> Result<(), ApplyError> {
    if let Err(e @ ApplyError::DigestChanged { .. }) = r {
        j.record_untouched(path)?;
        return Err(e);
    }
    r
}

fn write_all(
    root: &Path,
    edits: &[FileEdit],
    j: &mut Journal,
    outcome: &mut ApplyOutcome,
) -> Result<(), ApplyError> {
    for (i, e) in edits.iter().enumerate() {
        let saved = j.manifest.files[i].original.clone();
        crash_point("before write");
        j.record_touched(&e.path)?;
        crash_point("write recorded");
        match &e.after {
            Some(bytes) => {
                let meta = match &saved {
                    Some(o) => o.meta(),
                    None => path::NewMeta {
                        mode: e.new_mode,
                        ..Default::default()
                    },
                };
                let r = atomic_write(
                    root,
                    &e.path,
                    bytes,
                    &meta,
                    Expect::Bytes(e.before.as_deref()),
                );
                untouch_if_refused(j, &e.path, r)?;
            }
            None => {
                let r = remove_file_synced(root, &e.path, Expect::Bytes(e.before.as_deref()));
                untouch_if_refused(j, &e.path, r)?;
            }
        }
        crash_point("after write");
        outcome.written.push(e.path.clone());
        j.record_step(&format!("wrote {}", e.path))?;
    }
    Ok(())
}

fn run_commands(
    plan: &Plan,
    opts: &ApplyOptions,
    j: &mut Journal,
    outcome: &mut ApplyOutcome,
) -> Result<(), ApplyError> {
    for c in &plan.commands {
        if !opts.run_commands {
            commands::record_skipped(&c.argv, j, outcome)?;
            continue;
        }
        match commands::run_recorded(&c.argv, j)? {
            Ok(code) => outcome.commands_run.push((c.argv.clone(), code)),
            Err(failure) => return Err(ApplyError::Refused(failure)),
        }
    }
    Ok(())
}

/// What `rollback` with no id undoes: the last committed `apply` (setup, attach...) or
/// `runtime` (bind, unbind) transaction still in effect; a runtime one from an earlier boot
/// is not (the reboot undid it).
pub fn is_default_rollback_target(root: &Path, m: &Manifest) -> bool {
    m.state == TxState::Committed
        && (m.kind == "apply" || (m.kind == "runtime" && !runtime::from_earlier_boot(root, m)))
}

/// Rolls back a committed transaction: [`begin`], then [`HostSession::rollback`].
pub fn rollback(
    root: &Path,
    id: Option<&str>,
    opts: &ApplyOptions,
) -> Result<ApplyOutcome, ApplyError> {
    let session = begin(root, opts)?;
    let mut outcome = session.rollback(id)?;
    outcome.recovered = session.recovered.clone();
    Ok(outcome)
}

/// What a transaction's state will be once recovery has run: an interrupted one is undone
/// (or abandoned, when it never started writing, or a reboot since undid a runtime one).
pub fn state_after_recovery(m: &Manifest, from_earlier_boot: bool) -> TxState {
    match m.state {
        TxState::Preparing => TxState::Abandoned,
        TxState::Applying | TxState::Written if m.is_runtime() && from_earlier_boot => {
            TxState::Abandoned
        }
        TxState::Applying | TxState::Written => TxState::Undone,
        s => s,
    }
}

/// The transaction `rollback` undoes (`id`, or the last one still in effect) and whether it
/// may: the one decision `--dry-run` and `--yes` both take. `recovered`: recovery has run
/// (the real run, under the lock); otherwise states are judged as recovery will leave them.
pub fn rollback_target(
    root: &Path,
    id: Option<&str>,
    recovered: bool,
) -> Result<Manifest, ApplyError> {
    find_rollback_target(root, id, recovered).map(|j| j.manifest)
}

fn find_rollback_target(
    root: &Path,
    id: Option<&str>,
    recovered: bool,
) -> Result<Journal, ApplyError> {
    let journals = Journal::open_all(root)?;
    let target = match id {
        Some(id) => journals.into_iter().find(|j| j.manifest.id == id),
        None => journals
            .into_iter()
            .rev()
            .find(|j| is_default_rollback_target(root, &j.manifest)),
    }
    .ok_or_else(|| ApplyError::NoSuchTransaction(id.map(str::to_string)))?;
    let m = &target.manifest;
    let earlier = runtime::from_earlier_boot(root, m);
    let state = if recovered {
        m.state
    } else {
        state_after_recovery(m, earlier)
    };
    if state != TxState::Committed {
        return Err(ApplyError::Refused(format!(
            "transaction {} is {state:?}, not committed",
            m.id
        )));
    }
    if m.is_runtime() {
        if earlier {
            return Err(ApplyError::Refused(format!(
                "transaction {} ({}) was made before the last reboot, which already undid it",
                m.id, m.title
            )));
        }
        return Ok(target);
    }
    for f in &m.files {
        let found = read_current(root, &f.path)?.as_deref().map(digest);
        if found.as_deref() != f.after_digest.as_deref() {
            return Err(ApplyError::Refused(format!(
                "{} was changed after transaction {}; rolling back would lose that change (restore it by hand from {})",
                f.path,
                m.id,
                target.dir.display()
            )));
        }
    }
    Ok(target)
}

fn rollback_locked(
    root: &Path,
    id: Option<&str>,
    opts: &ApplyOptions,
) -> Result<ApplyOutcome, ApplyError> {
    let mut target = find_rollback_target(root, id, true)?;
    if target.manifest.is_runtime() {
        let plan = runtime::restore_plan(root, &target.manifest)?;
        let outcome = runtime::apply_runtime_locked(
            root,
            &plan,
            opts,
            "rollback",
            Some(&target.manifest.id),
        )?;
        target.set_state(TxState::RolledBack)?;
        return Ok(outcome);
    }
    let mut plan = Plan {
        title: format!(
            "roll back {} ({})",
            target.manifest.id, target.manifest.title
        ),
        ..Plan::default()
    };
    for (i, f) in target.manifest.files.iter().enumerate() {
        let current = read_current(root, &f.path)?;
        let after = match &f.original {
            Some(_) => Some(target.saved_bytes(i)?),
            None => None,
        };
        plan.edits.push(FileEdit {
            path: f.path.clone(),
            before: current,
            after,
            new_mode: f.original.as_ref().map_or(0o644, |o| o.mode),
            reason: format!("restore as before transaction {}", target.manifest.id),
        });
    }
    plan.commands = target.manifest.commands.clone();
    let _guests = take_guest_locks(root, &plan)?;
    let outcome = apply_locked(root, &plan, opts, "rollback", Some(&target.manifest.id))?;
    crash_point("rollback committed");
    finish_rollback(root, &mut target)?;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_io_error_names_the_file_and_its_os_error_once() {
        let e = ApplyError::Io {
            op: "writing",
            path: PathBuf::from("/r/etc/modprobe.d/passthru-vfio.conf"),
            err: io::Error::from_raw_os_error(28),
        };
        assert_eq!(
            describe(&e),
            "writing /r/etc/modprobe.d/passthru-vfio.conf: No space left on device (os error 28)"
        );
        // `{:#}` (how main prints errors) says it once too.
        assert_eq!(
            format!("{:#}", anyhow::Error::new(e)),
            "writing /r/etc/modprobe.d/passthru-vfio.conf: No space left on device (os error 28)"
        );
        let other = ApplyError::Io {
            op: "syncing directory",
            path: PathBuf::from("/r/etc/modprobe.d"),
            err: io::Error::from_raw_os_error(5),
        };
        assert!(describe(&other).starts_with("syncing directory /r/etc/modprobe.d:"));
    }

    #[test]
    fn guest_configs_are_known_by_their_paths() {
        assert_eq!(
            guest_of("etc/pve/qemu-server/100.conf"),
            Some(LockTarget::QemuGuest(100))
        );
        assert_eq!(
            guest_of("etc/pve/lxc/200.conf"),
            Some(LockTarget::LxcGuest(200))
        );
        assert_eq!(
            guest_of("etc/pve/nodes/pve1/lxc/7.conf"),
            Some(LockTarget::LxcGuest(7))
        );
        for not in [
            "etc/pve/mapping/pci.cfg",
            "etc/pve/qemu-server/100.conf.tmp",
            "etc/pve/lxc/x.conf",
            "var/lib/passthru/proxmox/qemu-server/100.settings",
            "etc/libvirt/qemu/win11.xml",
        ] {
            assert_eq!(guest_of(not), None, "{not}");
        }
    }

    #[test]
    fn guest_locks_come_in_one_order_whatever_the_plan_order() {
        let want = vec![
            LockTarget::QemuGuest(100),
            LockTarget::QemuGuest(101),
            LockTarget::LxcGuest(5),
            LockTarget::LxcGuest(200),
        ];
        let paths = [
            "etc/pve/lxc/200.conf",
            "etc/pve/qemu-server/101.conf",
            "etc/modprobe.d/passthru-vfio.conf",
            "etc/pve/lxc/5.conf",
            "etc/pve/qemu-server/100.conf",
            "etc/pve/lxc/200.conf",
        ];
        assert_eq!(guest_locks_for(&paths), want);
        let mut reversed = paths;
        reversed.reverse();
        assert_eq!(guest_locks_for(&reversed), want);
    }
}
