//! The only code that writes the host's files: one plan as one transaction.
//!
//! Order of work, each step journaled so that a crash at any point leaves a state the next
//! run recognises and undoes:
//! 1. take the lock (`var/lib/passthru/lock`), undo any transaction a crash interrupted;
//! 2. re-read every file and compare with the bytes the plan was made from; a difference
//!    stops everything before a byte is written;
//! 3. save each file's exact bytes, mode and owner (or its absence) in the journal
//!    (`var/lib/passthru/journal/<id>/`), fsynced, then mark the transaction `applying`;
//! 4. write each file atomically: a temporary file in the same directory, fsync, mode and
//!    owner, rename over the old one, fsync the directory;
//! 5. run the refresh commands (argument vectors, never a shell), keeping their output;
//! 6. mark the transaction `committed`.
//!
//! On any failure after step 3 every file written so far is restored and both errors are
//! reported. Rollback is itself a plan (restore the saved bytes) applied the same way.
//!
//! Runtime sysfs writes (`bind`, `unbind`) are transactions of their own kind, journaled the
//! same way ([`runtime`]); the Prometheus textfile goes through the same atomic write
//! ([`write_textfile`]); one lock implementation ([`lock`]) serves passthru's own host lock and
//! Proxmox's per-guest locks.

mod journal;
pub mod lock;
pub(crate) mod path;
pub mod runtime;
mod write;

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

pub use journal::{list_transactions, Manifest, RuntimeRecord, TxState};
pub use lock::{take_lock, Lock, LockTarget};
pub use path::read_file as read_confined;
pub use runtime::apply_runtime;

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
    #[error("{op} {path}: {source}", path = .path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{failure}; every file was restored to its previous contents")]
    RolledBack { failure: String },
    #[error("{failure}; every setting and driver binding was put back as it was")]
    RuntimeUndone { failure: String },
    #[error("{failure}; and restoring the previous contents failed too: {restore}. The journal in {journal} holds the saved files")]
    RestoreFailed {
        failure: String,
        restore: String,
        journal: PathBuf,
    },
    #[error("no transaction {0} in the journal")]
    NoSuchTransaction(String),
    #[error("{0}")]
    Refused(String),
}

/// How to apply.
#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    /// Run the plan's commands. Off under a `--root` other than `/`: they are listed as
    /// skipped, never run against the real host.
    pub run_commands: bool,
}

/// What applying did.
#[derive(Debug, Clone)]
pub struct ApplyOutcome {
    /// Journal id, for `rollback ID`; `None` when there was nothing to change.
    pub id: Option<String>,
    pub written: Vec<String>,
    pub commands_run: Vec<(Vec<String>, i32)>,
    pub commands_skipped: Vec<Vec<String>>,
    /// Messages about interrupted transactions undone on the way.
    pub recovered: Vec<String>,
}

/// A test hook, in debug builds only: `PASSTHRU_TEST_CRASH_AT=N` aborts the process at the
/// N-th crash point, as a power cut would, so tests can prove every step is recoverable.
pub(crate) fn crash_point(_what: &str) {
    if !cfg!(debug_assertions) {
        return;
    }
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNT: AtomicU32 = AtomicU32::new(0);
    let Some(at) = std::env::var("PASSTHRU_TEST_CRASH_AT")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
    else {
        return;
    };
    if COUNT.fetch_add(1, Ordering::SeqCst) + 1 == at {
        std::process::abort();
    }
}

/// passthru's own lock for one host root, held until dropped.
pub fn lock_host(root: &Path) -> Result<Lock, ApplyError> {
    take_lock(root, LockTarget::Host)
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

/// Undoes every transaction a crash left unfinished. Call with the lock held.
pub fn recover_interrupted(root: &Path) -> Result<Vec<String>, ApplyError> {
    let mut messages = journal::tidy_journal(root)?;
    for mut j in Journal::open_all(root)? {
        let interrupted = matches!(j.manifest.state, TxState::Applying | TxState::Written);
        if interrupted && j.manifest.is_runtime() {
            if runtime::from_earlier_boot(root, &j.manifest) {
                j.set_state(TxState::Abandoned)?;
                messages.push(format!(
                    "transaction {} ({}) was interrupted before the last reboot, which reset what it had changed; nothing to undo",
                    j.manifest.id, j.manifest.title
                ));
            } else {
                runtime::undo_runtime(root, &j.manifest)?;
                j.set_state(TxState::Undone)?;
                messages.push(format!(
                    "transaction {} ({}) was interrupted; every setting and driver binding it had touched was put back",
                    j.manifest.id, j.manifest.title
                ));
            }
            continue;
        }
        match j.manifest.state {
            TxState::Preparing => {
                j.set_state(TxState::Abandoned)?;
                messages.push(format!(
                    "transaction {} was interrupted before any file was written; nothing to undo",
                    j.manifest.id
                ));
            }
            TxState::Applying | TxState::Written => {
                restore_all(root, &j)?;
                j.set_state(TxState::Undone)?;
                messages.push(format!(
                    "transaction {} ({}) was interrupted; every file it had touched was restored",
                    j.manifest.id, j.manifest.title
                ));
            }
            _ => {}
        }
    }
    Ok(messages)
}

/// Takes the lock and undoes whatever a crash interrupted; returns what it did.
pub fn recover(root: &Path) -> Result<Vec<String>, ApplyError> {
    let _lock = lock_host(root)?;
    recover_interrupted(root)
}

/// Applies a plan as one transaction (see the module docs).
pub fn apply_plan(
    root: &Path,
    plan: &Plan,
    opts: &ApplyOptions,
) -> Result<ApplyOutcome, ApplyError> {
    let _lock = lock_host(root)?;
    crash_point("locked");
    let recovered = recover_interrupted(root)?;
    apply_locked(root, plan, opts, recovered, "apply", None)
}

/// Applies a plan that edits a Proxmox guest's config, holding that guest's own lock (as `qm`
/// and `pct` do) around passthru's. Call it after the user has confirmed: a prompt must never
/// hold a lock. The plan is re-checked under both locks, so an edit made while the user was
/// reading the diff (by `qm set`, the GUI...) stops it before a byte is written.
pub fn apply_plan_for_guest(
    root: &Path,
    guest: LockTarget,
    plan: &Plan,
    opts: &ApplyOptions,
) -> Result<ApplyOutcome, ApplyError> {
    let _guest = take_lock(root, guest)?;
    apply_plan(root, plan, opts)
}

fn apply_locked(
    root: &Path,
    plan: &Plan,
    opts: &ApplyOptions,
    recovered: Vec<String>,
    kind: &str,
    rolls_back: Option<&str>,
) -> Result<ApplyOutcome, ApplyError> {
    let mut outcome = ApplyOutcome {
        id: None,
        written: Vec::new(),
        commands_run: Vec::new(),
        commands_skipped: Vec::new(),
        recovered,
    };
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
    j.set_state(TxState::Applying)?;
    crash_point("marked applying");
    outcome.id = Some(j.manifest.id.clone());

    let result = write_all(root, &plan.edits, &mut j, &mut outcome);
    let result = result.and_then(|()| {
        j.set_state(TxState::Written)?;
        crash_point("marked written");
        run_commands(plan, opts, &mut j, &mut outcome)
    });
    finish(
        &mut j,
        result,
        outcome,
        |j| restore_all(root, j),
        |failure| ApplyError::RolledBack { failure },
    )
}

/// Ends a transaction: committed when every step succeeded; otherwise undone (`undo`), and
/// the failure reported as `undone(failure)`, or, when the undo fails too, both errors and
/// the journal left for recovery.
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
            let failure = failure.to_string();
            match undo(j) {
                Ok(()) => {
                    j.set_state(TxState::Undone)?;
                    Err(undone(failure))
                }
                Err(e) => Err(ApplyError::RestoreFailed {
                    failure,
                    restore: e.to_string(),
                    journal: j.dir.clone(),
                }),
            }
        }
    }
}

fn write_all(
    root: &Path,
    edits: &[FileEdit],
    j: &mut Journal,
    outcome: &mut ApplyOutcome,
) -> Result<(), ApplyError> {
    for (i, e) in edits.iter().enumerate() {
        let saved = &j.manifest.files[i];
        crash_point("before write");
        match &e.after {
            Some(bytes) => {
                let meta = match &saved.original {
                    Some(o) => o.meta(),
                    None => path::NewMeta {
                        mode: e.new_mode,
                        ..Default::default()
                    },
                };
                atomic_write(
                    root,
                    &e.path,
                    bytes,
                    &meta,
                    Expect::Bytes(e.before.as_deref()),
                )?;
            }
            None => remove_file_synced(root, &e.path, Expect::Bytes(e.before.as_deref()))?,
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
            outcome.commands_skipped.push(c.argv.clone());
            j.record_step(&format!(
                "skipped (not the live host): {}",
                c.argv.join(" ")
            ))?;
            continue;
        }
        let Some((prog, args)) = c.argv.split_first() else {
            continue;
        };
        eprintln!("passthru: running {}", c.argv.join(" "));
        let out = Command::new(prog).args(args).output();
        match out {
            Ok(o) => {
                let code = o.status.code().unwrap_or(-1);
                j.record_command(&c.argv, code, &o.stdout, &o.stderr)?;
                outcome.commands_run.push((c.argv.clone(), code));
                if !o.status.success() {
                    return Err(ApplyError::Refused(format!(
                        "{} failed (exit {code}): {}",
                        c.argv.join(" "),
                        String::from_utf8_lossy(&o.stderr).trim()
                    )));
                }
            }
            Err(e) => {
                return Err(ApplyError::Refused(format!(
                    "{} could not be started: {e}",
                    c.argv.join(" ")
                )));
            }
        }
    }
    Ok(())
}

/// Puts back every file of a transaction as it was before it, removes any temporary file a
/// crash left beside them and the directories it created (when empty).
///
/// Only a file that holds what the transaction wrote is put back: one that still holds its
/// old bytes was never written, and one that holds neither was changed by someone else
/// (an edit that landed before passthru's rename, which was then refused): restoring the
/// old bytes over it would lose that edit.
fn restore_all(root: &Path, j: &Journal) -> Result<(), ApplyError> {
    for (i, f) in j.manifest.files.iter().enumerate().rev() {
        write::remove_stray_temporaries(root, &f.path);
        let now = read_current(root, &f.path)?;
        if now.as_deref().map(digest) != f.after_digest {
            continue;
        }
        let expect = Expect::Bytes(now.as_deref());
        match &f.original {
            Some(o) => {
                let bytes = j.saved_bytes(i)?;
                atomic_write(root, &f.path, &bytes, &o.meta(), expect)?;
            }
            None => remove_file_synced(root, &f.path, expect)?,
        }
    }
    write::remove_created_dirs(root, &j.manifest.created_dirs)
}

/// What `rollback` with no id undoes: the last committed `apply` (setup, attach...) or
/// `runtime` (bind, unbind) transaction still in effect; a runtime one from an earlier boot
/// is not (the reboot undid it).
pub fn is_default_rollback_target(root: &Path, m: &Manifest) -> bool {
    m.state == TxState::Committed
        && (m.kind == "apply" || (m.kind == "runtime" && !runtime::from_earlier_boot(root, m)))
}

/// Rolls back a committed transaction (the last one when `id` is `None`): its files get their
/// saved bytes back, as a new journaled transaction, then its commands run again.
pub fn rollback(
    root: &Path,
    id: Option<&str>,
    opts: &ApplyOptions,
) -> Result<ApplyOutcome, ApplyError> {
    let _lock = lock_host(root)?;
    let recovered = recover_interrupted(root)?;
    let journals = Journal::open_all(root)?;
    let target = match id {
        Some(id) => journals
            .into_iter()
            .find(|j| j.manifest.id == id)
            .ok_or_else(|| ApplyError::NoSuchTransaction(id.into()))?,
        None => journals
            .into_iter()
            .rev()
            .find(|j| is_default_rollback_target(root, &j.manifest))
            .ok_or_else(|| ApplyError::Refused("no committed transaction to roll back".into()))?,
    };
    if target.manifest.state != TxState::Committed {
        return Err(ApplyError::Refused(format!(
            "transaction {} is {:?}, not committed",
            target.manifest.id, target.manifest.state
        )));
    }
    if target.manifest.is_runtime() {
        if runtime::from_earlier_boot(root, &target.manifest) {
            return Err(ApplyError::Refused(format!(
                "transaction {} ({}) was made before the last reboot, which already undid it",
                target.manifest.id, target.manifest.title
            )));
        }
        let plan = runtime::restore_plan(root, &target.manifest)?;
        let mut target = target;
        let outcome = runtime::apply_runtime_locked(root, &plan, opts, recovered, "rollback")?;
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
        let expected = f.after_digest.as_deref();
        let found = current.as_deref().map(digest);
        if found.as_deref() != expected {
            return Err(ApplyError::Refused(format!(
                "{} was changed after transaction {}; rolling back would lose that change (restore it by hand from {})",
                f.path,
                target.manifest.id,
                target.dir.display()
            )));
        }
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
    let mut target = target;
    let outcome = apply_locked(
        root,
        &plan,
        opts,
        recovered,
        "rollback",
        Some(&target.manifest.id),
    )?;
    crash_point("rollback committed");
    write::remove_created_dirs(root, &target.manifest.created_dirs)?;
    target.set_state(TxState::RolledBack)?;
    Ok(outcome)
}
