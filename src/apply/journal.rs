//! The journal: one directory per transaction under `var/lib/passthru/journal`, holding the
//! exact bytes, mode and owner of every file before the change, and a manifest recording
//! the transaction's state and steps. It is what makes rollback exact and crashes
//! recoverable.
//!
//! A runtime transaction (`bind`, `unbind`: sysfs writes that last until the next reboot) has
//! no saved files; its manifest lists the writes in order with what each setting held
//! before, the functions' drivers and overrides before, and the boot it was made in. The
//! fields are optional in the JSON, so manifests written before they existed still load.
//!
//! The journal is written back by root, so it is trusted only as far as it is passthru's:
//! its directories are created 0700 (the mode set explicitly, whatever the umask), every
//! directory and manifest of it must be owned by the effective user and writable by no one
//! else, no link is followed in it, and every path a manifest names is checked
//! ([`super::path::check_rel`]) before the manifest is used at all.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::path::{self, Dir, Expect, NewMeta};
use super::{crash_point, ApplyError, STATE_DIR};
use crate::plan::runtime::{DeviceState, Restore};
use crate::plan::{digest, Plan, PlannedCommand};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TxState {
    /// Pre-images being saved; nothing written yet.
    Preparing,
    /// Files being written.
    Applying,
    /// Files written; commands running.
    Written,
    Committed,
    /// Undone after a failure or an interruption: every file is as before.
    Undone,
    /// Interrupted before any write.
    Abandoned,
    /// Committed, then rolled back.
    RolledBack,
    /// Undone in part: a file could not be restored (the manifest's steps say which and
    /// why). The next run tries the undo again before anything else.
    UndoIncomplete,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Original {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub digest: String,
    /// Extended attributes (ACLs, SELinux labels, `user.*`), carried to the new file and
    /// restored with the old one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub xattrs: Vec<SavedXattr>,
}

/// One extended attribute; the value in hex (attributes are binary: ACLs, capabilities).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SavedXattr {
    pub name: String,
    pub value: String,
}

fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

impl Original {
    /// What the file gets back when it is restored (and what its replacement keeps).
    pub fn meta(&self) -> NewMeta {
        NewMeta {
            mode: self.mode,
            owner: Some((self.uid, self.gid)),
            // Checked when the manifest was loaded ([`check_manifest`]).
            xattrs: self
                .xattrs
                .iter()
                .filter_map(|x| Some((x.name.clone(), from_hex(&x.value)?)))
                .collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SavedFileMeta {
    pub path: String,
    /// The file before the change; `None`: it did not exist.
    pub original: Option<Original>,
    /// Digest of what the transaction wrote; `None`: it removed the file.
    pub after_digest: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CommandLog {
    pub argv: Vec<String>,
    pub exit_code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// One sysfs write of a runtime transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RuntimeRecord {
    pub path: String,
    pub value: String,
    pub restore: Restore,
    /// For a `Restore::Value` write, what the attribute held before (saved before the
    /// write); `None` for an action, or an attribute that did not exist.
    pub before: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Manifest {
    pub id: String,
    /// `apply`, `runtime` or `rollback`.
    pub kind: String,
    pub title: String,
    /// UTC, ISO 8601.
    pub created: String,
    pub state: TxState,
    pub files: Vec<SavedFileMeta>,
    pub commands: Vec<PlannedCommand>,
    pub steps: Vec<String>,
    pub command_log: Vec<CommandLog>,
    /// A runtime transaction's writes, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runtime: Vec<RuntimeRecord>,
    /// A runtime transaction's functions as they were before it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<DeviceState>,
    /// `proc/sys/kernel/random/boot_id` when a runtime transaction was made: a reboot since
    /// has undone it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// Directories the transaction creates (outermost first), recorded before they are made:
    /// undoing it removes them again when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub created_dirs: Vec<String>,
    /// Files whose write was started, each recorded (fsynced) before its write: what an undo
    /// restores.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub touched: Vec<String>,
    /// Whether `touched` is kept. Manifests written before it was have no record: every file
    /// of theirs past `preparing` may have been written.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub records_touched: bool,
    /// For a `rollback` transaction: the id of the transaction it rolls back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolls_back: Option<String>,
    /// What the plan prepared (the plan's own record), for `passthru verify`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prepared: Vec<crate::plan::Prepared>,
}

impl Manifest {
    /// Sysfs writes rather than files.
    pub fn is_runtime(&self) -> bool {
        !self.runtime.is_empty()
    }

    /// Whether a write of `path` may have happened: recorded as started, or (a manifest from
    /// before the record existed) past `preparing`.
    pub fn may_have_written(&self, path: &str) -> bool {
        if !self.records_touched {
            return self.state != TxState::Preparing;
        }
        self.touched.iter().any(|t| t == path)
    }

    /// Whether the transaction still has to be undone (interrupted, or undone in part).
    pub fn is_unfinished(&self) -> bool {
        matches!(
            self.state,
            TxState::Preparing | TxState::Applying | TxState::Written | TxState::UndoIncomplete
        )
    }
}

/// A file's state before a transaction, captured before anything is written.
pub struct SavedFile {
    pub path: String,
    pub original: Option<(Original, Vec<u8>)>,
}

impl SavedFile {
    /// The file's bytes, mode, owner and extended attributes, read through a confined path
    /// (a symbolic link at `rel` is refused there). `current` is what the caller read just
    /// before: a difference means someone changed the file meanwhile.
    pub fn capture(root: &Path, rel: &str, current: Option<Vec<u8>>) -> Result<Self, ApplyError> {
        let now = path::read_file(root, rel)?;
        if now.as_ref().map(|s| &s.bytes) != current.as_ref() {
            let show = |b: Option<&Vec<u8>>| {
                b.map_or("absent".to_string(), |b| {
                    format!("sha256 {}", &digest(b)[..12])
                })
            };
            return Err(ApplyError::DigestChanged {
                path: rel.to_string(),
                expected: show(current.as_ref()),
                found: show(now.as_ref().map(|s| &s.bytes)),
            });
        }
        let original = now.map(|s| {
            (
                Original {
                    mode: s.mode,
                    uid: s.uid,
                    gid: s.gid,
                    digest: digest(&s.bytes),
                    xattrs: s
                        .xattrs
                        .iter()
                        .map(|(name, v)| SavedXattr {
                            name: name.clone(),
                            value: to_hex(v),
                        })
                        .collect(),
                },
                s.bytes,
            )
        });
        Ok(SavedFile {
            path: rel.to_string(),
            original,
        })
    }
}

pub struct Journal {
    /// The real directory, for messages.
    pub dir: PathBuf,
    /// The host root and the directory's path below it, through which it is written.
    root: PathBuf,
    rel: String,
    pub manifest: Manifest,
}

/// The journal's directory, relative to the host root.
fn journal_rel() -> String {
    format!("{STATE_DIR}/journal")
}

/// `2026-11-29T19:45:12Z` from the system clock (days-to-civil, proleptic Gregorian).
pub fn utc_now() -> (String, String) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let (h, mi, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    (
        format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z"),
        format!("{y:04}{m:02}{d:02}-{h:02}{mi:02}{s:02}"),
    )
}

/// A new transaction's directory, 0700 and fsynced into its parent: `(id, dir, created)`.
fn allocate(root: &Path) -> Result<(String, Dir, String), ApplyError> {
    let base = path::ensure_dir(
        root,
        &journal_rel(),
        0o755,
        Some(path::state_private_from()),
    )?;
    let (created, stamp) = utc_now();
    let mut n = 1;
    loop {
        let id = format!("{stamp}-{n}");
        if let Some(dir) = base.make_new_subdir(&id, 0o700)? {
            return Ok((id, dir, created));
        }
        n += 1;
    }
}

/// Checks every path a manifest names before anything of it is used: a manifest is data
/// that root writes back, and one that names `../../outside` or `/etc/cron.d/x` was not
/// written by passthru.
fn check_manifest(m: &Manifest, file: &Path) -> Result<(), ApplyError> {
    let refuse = |what: &str, p: &str, why: String| {
        ApplyError::Refused(format!(
            "the journal manifest {} names the {what} {p:?}, which passthru never writes ({why}); nothing was changed. Look at it (passthru did not write it) and move it away before running passthru again",
            file.display()
        ))
    };
    for f in &m.files {
        path::check_rel(&f.path).map_err(|why| refuse("file", &f.path, why))?;
        if let Some(o) = &f.original {
            for x in &o.xattrs {
                if from_hex(&x.value).is_none() || x.name.contains('\0') || x.name.is_empty() {
                    return Err(refuse(
                        "extended attribute",
                        &x.name,
                        "its value is not hex".into(),
                    ));
                }
            }
        }
    }
    for d in &m.created_dirs {
        path::check_rel(d).map_err(|why| refuse("directory", d, why))?;
    }
    for r in &m.runtime {
        path::check_rel(&r.path).map_err(|why| refuse("setting", &r.path, why))?;
        if let crate::plan::runtime::Restore::Inverse(u) = &r.restore {
            for p in std::iter::once(&u.path).chain(u.unless_exists.as_ref()) {
                path::check_rel(p).map_err(|why| refuse("setting", p, why))?;
            }
        }
    }
    for d in &m.devices {
        if d.address.contains('/') {
            return Err(refuse("device", &d.address, "it contains a `/`".into()));
        }
        path::check_rel(&d.address).map_err(|why| refuse("device", &d.address, why))?;
    }
    Ok(())
}

impl Journal {
    pub fn create(
        root: &Path,
        plan: &Plan,
        kind: &str,
        rolls_back: Option<&str>,
        saved: Vec<SavedFile>,
    ) -> Result<Self, ApplyError> {
        // The directories writing the plan will create, recorded before any is made.
        let mut created_dirs: Vec<String> = Vec::new();
        for e in plan.edits.iter().filter(|e| e.after.is_some()) {
            let (dir, _) = path::split_file(&e.path)?;
            for d in path::missing_dirs(root, dir)? {
                if !created_dirs.contains(&d) {
                    created_dirs.push(d);
                }
            }
        }
        let (id, dir, created) = allocate(root)?;
        let files_dir = dir.make_subdir("files", 0o700, true)?;
        let mut files = Vec::new();
        for (i, (s, edit)) in saved.into_iter().zip(&plan.edits).enumerate() {
            let original = match s.original {
                Some((meta, bytes)) => {
                    files_dir.write_atomic(&i.to_string(), &bytes, &private_file(), Expect::Any)?;
                    Some(meta)
                }
                None => None,
            };
            files.push(SavedFileMeta {
                path: s.path,
                original,
                after_digest: edit.after.as_deref().map(digest),
            });
        }
        crash_point("pre-images saved");
        let j = Journal {
            dir: dir.real.clone(),
            root: root.to_path_buf(),
            rel: dir.rel.clone(),
            manifest: Manifest {
                id,
                kind: kind.to_string(),
                title: plan.title.clone(),
                created,
                state: TxState::Preparing,
                files,
                commands: plan.commands.clone(),
                steps: Vec::new(),
                command_log: Vec::new(),
                runtime: Vec::new(),
                devices: Vec::new(),
                boot_id: None,
                created_dirs,
                touched: Vec::new(),
                records_touched: true,
                rolls_back: rolls_back.map(str::to_string),
                prepared: plan.prepared.clone(),
            },
        };
        j.save()?;
        Ok(j)
    }

    /// A runtime transaction, in state `preparing`: everything needed to undo it is in the
    /// manifest, fsynced, before the first write.
    pub fn create_runtime(
        root: &Path,
        title: &str,
        kind: &str,
        runtime: Vec<RuntimeRecord>,
        devices: Vec<DeviceState>,
        boot_id: Option<String>,
    ) -> Result<Self, ApplyError> {
        let (id, dir, created) = allocate(root)?;
        let j = Journal {
            dir: dir.real.clone(),
            root: root.to_path_buf(),
            rel: dir.rel.clone(),
            manifest: Manifest {
                id,
                kind: kind.to_string(),
                title: title.to_string(),
                created,
                state: TxState::Preparing,
                files: Vec::new(),
                commands: Vec::new(),
                steps: Vec::new(),
                command_log: Vec::new(),
                runtime,
                devices,
                boot_id,
                created_dirs: Vec::new(),
                touched: Vec::new(),
                records_touched: false,
                rolls_back: None,
                prepared: Vec::new(),
            },
        };
        j.save()?;
        Ok(j)
    }

    /// This transaction's directory, opened afresh through the confined path and checked.
    fn open(&self) -> Result<Dir, ApplyError> {
        path::open_dir(&self.root, &self.rel, Some(path::state_private_from()))?.ok_or_else(|| {
            ApplyError::Refused(format!(
                "the journal directory {} is gone",
                self.dir.display()
            ))
        })
    }

    fn save(&self) -> Result<(), ApplyError> {
        let text = serde_json::to_vec_pretty(&self.manifest).map_err(|e| {
            ApplyError::Refused(format!(
                "cannot encode the manifest of {}: {e}",
                self.dir.display()
            ))
        })?;
        self.open()?
            .write_atomic("manifest.json", &text, &private_file(), Expect::Any)
    }

    pub fn set_state(&mut self, state: TxState) -> Result<(), ApplyError> {
        self.manifest.state = state;
        self.manifest.steps.push(format!("state {state:?}"));
        self.save()?;
        if !matches!(
            state,
            TxState::Preparing | TxState::Applying | TxState::Written
        ) {
            // Over: temporary copies an interrupted save left are of no use any more.
            if let Ok(d) = self.open() {
                d.remove_temporaries(None);
                if let Ok(Some(files)) = d.subdir("files", true) {
                    files.remove_temporaries(None);
                }
            }
        }
        Ok(())
    }

    /// Records, fsynced, that the write of `path` starts now.
    pub fn record_touched(&mut self, path: &str) -> Result<(), ApplyError> {
        if !self.manifest.touched.iter().any(|t| t == path) {
            self.manifest.touched.push(path.to_string());
        }
        self.save()
    }

    /// Records, fsynced, that the write of `path` did not happen after all (it was refused
    /// before the rename: the file holds someone else's bytes, which an undo must keep).
    pub fn record_untouched(&mut self, path: &str) -> Result<(), ApplyError> {
        self.manifest.touched.retain(|t| t != path);
        self.save()
    }

    /// Records which transaction this one rolls back.
    pub fn record_rolls_back(&mut self, id: &str) -> Result<(), ApplyError> {
        self.manifest.rolls_back = Some(id.to_string());
        self.save()
    }

    pub fn record_step(&mut self, step: &str) -> Result<(), ApplyError> {
        self.manifest.steps.push(step.to_string());
        self.save()
    }

    pub fn record_command(
        &mut self,
        argv: &[String],
        code: i32,
        stdout: &[u8],
        stderr: &[u8],
    ) -> Result<(), ApplyError> {
        let keep = |b: &[u8]| {
            let s = String::from_utf8_lossy(b);
            let start = s.len().saturating_sub(64 * 1024);
            let start = (start..s.len())
                .find(|i| s.is_char_boundary(*i))
                .unwrap_or(s.len());
            s[start..].to_string()
        };
        self.manifest.command_log.push(CommandLog {
            argv: argv.to_vec(),
            exit_code: code,
            stdout: keep(stdout),
            stderr: keep(stderr),
        });
        self.save()
    }

    pub fn saved_bytes(&self, i: usize) -> Result<Vec<u8>, ApplyError> {
        let p = self.dir.join("files").join(i.to_string());
        let missing =
            || ApplyError::Refused(format!("the journal's copy {} is missing", p.display()));
        let files = self.open()?.subdir("files", true)?.ok_or_else(missing)?;
        let bytes = files.read_private(&i.to_string())?.ok_or_else(missing)?;
        let want = self.manifest.files[i]
            .original
            .as_ref()
            .map(|o| o.digest.as_str());
        if Some(digest(&bytes).as_str()) != want {
            return Err(ApplyError::Refused(format!(
                "the journal's copy {} is damaged (digest mismatch)",
                p.display()
            )));
        }
        Ok(bytes)
    }

    /// Every transaction, oldest first. A directory without a readable manifest was never
    /// started (a crash before the manifest was written): nothing of the host was touched.
    ///
    /// Every directory and manifest must be passthru's own (owned by the effective user,
    /// writable by no one else, no links) and name only paths inside the root; anything
    /// else stops everything with a message naming it.
    pub fn open_all(root: &Path) -> Result<Vec<Journal>, ApplyError> {
        let mut out = Vec::new();
        let Some(base) = path::open_dir(root, &journal_rel(), Some(path::state_private_from()))?
        else {
            return Ok(out);
        };
        for name in base.names()? {
            // An interrupted write's temporary file, never a transaction.
            if name.starts_with('.') {
                continue;
            }
            let Some(dir) = base.subdir(&name, true)? else {
                continue;
            };
            let file = dir.real("manifest.json");
            let Some(text) = dir.read_private("manifest.json")? else {
                continue;
            };
            let manifest = serde_json::from_slice::<Manifest>(&text).map_err(|e| {
                ApplyError::Refused(format!(
                    "the journal manifest {} cannot be read ({e}); look at it before running passthru again",
                    file.display()
                ))
            })?;
            check_manifest(&manifest, &file)?;
            out.push(Journal {
                dir: dir.real.clone(),
                root: root.to_path_buf(),
                rel: dir.rel.clone(),
                manifest,
            });
        }
        Ok(out)
    }
}

/// Mode and owner of passthru's own files: the writer's, 0600.
fn private_file() -> NewMeta {
    NewMeta {
        mode: 0o600,
        owner: None,
        xattrs: Vec::new(),
    }
}

/// Removes the directories of transactions a crash interrupted before their manifest was
/// written (they hold saved copies and temporary files, nothing of the host was touched),
/// and completes rollbacks a crash interrupted after the rollback transaction committed but
/// before the transaction it undid was marked rolled back: without this, the next
/// `rollback` would pick that one again and report its (restored) files as changed by hand.
/// Call with the lock held.
pub fn tidy_journal(root: &Path) -> Result<Vec<String>, ApplyError> {
    remove_unstarted(root)?;
    let mut journals = Journal::open_all(root)?;
    let done: Vec<String> = journals
        .iter()
        .filter(|j| j.manifest.state == TxState::Committed)
        .filter_map(|j| j.manifest.rolls_back.clone())
        .collect();
    let mut messages = Vec::new();
    for j in journals.iter_mut() {
        if j.manifest.state == TxState::Committed && done.contains(&j.manifest.id) {
            super::finish_rollback(root, j)?;
            messages.push(format!(
                "transaction {} ({}) had been rolled back when passthru was interrupted; it is now marked so",
                j.manifest.id, j.manifest.title
            ));
        }
    }
    Ok(messages)
}

/// The transactions in a root's journal, oldest first.
pub fn list_transactions(root: &Path) -> Result<Vec<Manifest>, ApplyError> {
    Ok(Journal::open_all(root)?
        .into_iter()
        .map(|j| j.manifest)
        .collect())
}

/// Removes every transaction directory without a manifest (see [`tidy_journal`]).
fn remove_unstarted(root: &Path) -> Result<(), ApplyError> {
    let Some(base) = path::open_dir(root, &journal_rel(), Some(path::state_private_from()))? else {
        return Ok(());
    };
    for name in base.names()? {
        if name.starts_with('.') {
            continue;
        }
        let Some(dir) = base.subdir(&name, true)? else {
            continue;
        };
        if dir.names()?.iter().any(|n| n == "manifest.json") {
            continue;
        }
        if let Some(files) = dir.subdir("files", true)? {
            for n in files.names()? {
                files.remove(&n, Expect::Any)?;
            }
            dir.remove_dir_if_empty("files")?;
        }
        dir.remove_temporaries(None);
        base.remove_dir_if_empty(&name)?;
    }
    Ok(())
}
