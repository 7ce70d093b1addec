//! Undoing a file transaction (after a failure, on recovery): each file the journal records
//! as written gets its saved bytes, mode and owner back (or is removed again when it did not
//! exist); the others are left alone. It goes on past a file it cannot restore, reports every
//! file's state, and when every file is back runs the transaction's refresh commands again, so
//! that what they generate (grub.cfg, the initramfs) matches the files once more.
//!
//! Each file is judged by its digest, so an undo that is itself interrupted is simply done
//! again: a file already put back is "as before", one still holding the transaction's bytes is
//! restored, and one holding neither was changed by something else since and is not
//! overwritten.

use std::fmt;
use std::path::Path;

use super::commands::{regenerates, run_recorded};
use super::journal::Journal;
use super::lock::Lock;
use super::path::Expect;
use super::write::{
    atomic_write, remove_created_dirs, remove_file_synced, remove_stray_temporaries,
};
use super::{crash_point, describe, guest_locks_for, read_current, take_lock, ApplyError};
use super::{ApplyOptions, Manifest};
use crate::plan::digest;

/// What the undo did with one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileUndo {
    /// Put back as it was before the transaction.
    Restored,
    /// Never written by this transaction: as before.
    Untouched,
    /// Written, and already as before (put back by an earlier, interrupted undo; or the write
    /// had not happened yet).
    AlreadyBack,
    /// Not this transaction's to restore: it never wrote it, and something else changed it.
    Kept(String),
    /// Could not be restored: why (the OS error, or a change made since by something else).
    Failed(String),
}

impl fmt::Display for FileUndo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileUndo::Restored => f.write_str("restored"),
            FileUndo::Untouched => f.write_str("untouched"),
            FileUndo::AlreadyBack => f.write_str("already as before"),
            FileUndo::Kept(why) => write!(f, "left as it is ({why})"),
            FileUndo::Failed(why) => write!(f, "could not restore: {why}"),
        }
    }
}

/// A refresh command run again after the files were put back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refresh {
    Ran(Vec<String>, i32),
    Skipped(Vec<String>),
    /// It failed: the failure, and what is now stale.
    Failed {
        argv: Vec<String>,
        failure: String,
        stale: String,
    },
    /// Not run: a file could not be restored, so regenerating would describe neither state.
    Pending(Vec<String>),
}

/// Every file's state after an undo, and the refresh commands run after it.
#[derive(Debug, Clone, Default)]
pub struct UndoReport {
    pub files: Vec<(String, FileUndo)>,
    pub refresh: Vec<Refresh>,
}

impl UndoReport {
    /// Every file is as before.
    pub fn is_complete(&self) -> bool {
        !self
            .files
            .iter()
            .any(|(_, s)| matches!(s, FileUndo::Failed(_)))
    }

    /// The refresh commands that failed after the restore, with what they leave stale.
    pub fn stale(&self) -> Vec<String> {
        self.refresh
            .iter()
            .filter_map(|r| match r {
                Refresh::Failed {
                    argv,
                    failure,
                    stale,
                } => Some(format!(
                    "{failure}: {stale} may still hold the change that was undone; run `{}` once its cause is fixed",
                    argv.join(" ")
                )),
                _ => None,
            })
            .collect()
    }
}

impl fmt::Display for UndoReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let files: Vec<String> = self
            .files
            .iter()
            .map(|(p, s)| format!("{p}: {s}"))
            .collect();
        f.write_str(&files.join("; "))?;
        for r in &self.refresh {
            match r {
                Refresh::Ran(argv, code) => {
                    write!(f, "; ran {} again (exit {code})", argv.join(" "))?
                }
                Refresh::Skipped(argv) => {
                    write!(f, "; skipped (not the live host): {}", argv.join(" "))?
                }
                Refresh::Pending(argv) => write!(
                    f,
                    "; not run yet (a file is not restored): {}",
                    argv.join(" ")
                )?,
                Refresh::Failed { .. } => {}
            }
        }
        for s in self.stale() {
            write!(f, "; STALE: {s}")?;
        }
        Ok(())
    }
}

/// The decision for one file, from its bytes now; `None`: restore it.
fn judge(m: &Manifest, i: usize, current: &Option<Vec<u8>>) -> Option<FileUndo> {
    let f = &m.files[i];
    let now = current.as_deref().map(digest);
    let before = f.original.as_ref().map(|o| o.digest.clone());
    if now == before {
        return Some(if m.may_have_written(&f.path) {
            FileUndo::AlreadyBack
        } else {
            FileUndo::Untouched
        });
    }
    let ours = now == f.after_digest;
    match (m.may_have_written(&f.path), ours) {
        (true, true) => None,
        (true, false) => Some(FileUndo::Failed(
            "it was changed since this transaction wrote it (it holds neither the bytes from before nor the ones written), so it is not overwritten".into(),
        )),
        (false, _) => Some(FileUndo::Kept(
            "this transaction never wrote it; something else changed it".into(),
        )),
    }
}

/// What an undo of `m` would do with each file, without doing it (for `--dry-run`).
pub fn preview(root: &Path, m: &Manifest) -> Vec<(String, FileUndo)> {
    (0..m.files.len())
        .rev()
        .map(|i| {
            let f = &m.files[i];
            let state = match read_current(root, &f.path) {
                Ok(current) => judge(m, i, &current).unwrap_or(FileUndo::Restored),
                Err(e) => FileUndo::Failed(describe(&e)),
            };
            (f.path.clone(), state)
        })
        .collect()
}

fn restore_one(root: &Path, j: &Journal, i: usize) -> FileUndo {
    let f = &j.manifest.files[i];
    remove_stray_temporaries(root, &f.path);
    let current = match read_current(root, &f.path) {
        Ok(c) => c,
        Err(e) => return FileUndo::Failed(describe(&e)),
    };
    if let Some(decided) = judge(&j.manifest, i, &current) {
        return decided;
    }
    // Through the confined path, and only over what was just read.
    let expect = Expect::Bytes(current.as_deref());
    let done = match &f.original {
        Some(o) => j
            .saved_bytes(i)
            .and_then(|bytes| atomic_write(root, &f.path, &bytes, &o.meta(), expect)),
        None => remove_file_synced(root, &f.path, expect),
    };
    match done {
        Ok(()) => FileUndo::Restored,
        Err(e) => FileUndo::Failed(describe(&e)),
    }
}

/// Undoes a file transaction in place (see the module docs). `lock_guests`: take the Proxmox
/// locks of the guest configs it restores (recovery); off when the caller holds them already
/// (an apply that failed under them).
pub(super) fn undo_files(
    root: &Path,
    j: &mut Journal,
    opts: &ApplyOptions,
    lock_guests: bool,
) -> Result<UndoReport, ApplyError> {
    crash_point("undo starts");
    let _guests: Vec<Lock> = if lock_guests {
        let paths: Vec<&str> = j.manifest.files.iter().map(|f| f.path.as_str()).collect();
        guest_locks_for(&paths)
            .into_iter()
            .map(|g| take_lock(root, g))
            .collect::<Result<_, _>>()?
    } else {
        Vec::new()
    };
    let mut report = UndoReport::default();
    for i in (0..j.manifest.files.len()).rev() {
        let state = restore_one(root, j, i);
        crash_point("file undone");
        report.files.push((j.manifest.files[i].path.clone(), state));
    }
    if report.is_complete() {
        // Directories the transaction made, when nothing else has been put in them.
        remove_created_dirs(root, &j.manifest.created_dirs)?;
    }
    let wrote_any = j
        .manifest
        .files
        .iter()
        .any(|f| j.manifest.may_have_written(&f.path));
    if wrote_any {
        let commands = j.manifest.commands.clone();
        for c in commands {
            let argv = c.argv;
            if !report.is_complete() {
                report.refresh.push(Refresh::Pending(argv));
            } else if !opts.run_commands {
                report.refresh.push(Refresh::Skipped(argv));
            } else {
                match run_recorded(&argv, j)? {
                    Ok(code) => report.refresh.push(Refresh::Ran(argv, code)),
                    Err(failure) => {
                        let stale = regenerates(&argv);
                        report.refresh.push(Refresh::Failed {
                            argv,
                            failure,
                            stale,
                        })
                    }
                }
            }
        }
    }
    j.record_step(&format!("undo: {report}"))?;
    Ok(report)
}
