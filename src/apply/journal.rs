//! The journal: one directory per transaction under `var/lib/passthru/journal`, holding the
//! exact bytes, mode and owner of every file before the change, and a manifest recording
//! the transaction's state and steps. It is what makes rollback exact and crashes
//! recoverable.
//!
//! A runtime transaction (`bind`, `unbind`: sysfs writes that last until the next reboot) has
//! no saved files; its manifest lists the writes in order with what each setting held
//! before, the functions' drivers and overrides before, and the boot it was made in. The
//! fields are optional in the JSON, so manifests written before they existed still load.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::write::atomic_write;
use super::{crash_point, io_err, ApplyError, STATE_DIR};
use crate::plan::runtime::{DeviceState, Restore};
use crate::plan::{digest, Plan, PlannedCommand};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Original {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub digest: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedFileMeta {
    pub path: String,
    /// The file before the change; `None`: it did not exist.
    pub original: Option<Original>,
    /// Digest of what the transaction wrote; `None`: it removed the file.
    pub after_digest: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandLog {
    pub argv: Vec<String>,
    pub exit_code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// One sysfs write of a runtime transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeRecord {
    pub path: String,
    pub value: String,
    pub restore: Restore,
    /// For a `Restore::Value` write, what the attribute held before (saved before the
    /// write); `None` for an action, or an attribute that did not exist.
    pub before: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    pub fn capture(root: &Path, rel: &str, current: Option<Vec<u8>>) -> Result<Self, ApplyError> {
        let path = root.join(rel);
        let original = match current {
            None => None,
            Some(bytes) => {
                let meta =
                    fs::symlink_metadata(&path).map_err(io_err("reading metadata of", &path))?;
                if meta.file_type().is_symlink() {
                    return Err(ApplyError::Refused(format!("{rel} is a symbolic link; passthru does not replace links (edit its target instead)")));
                }
                Some((
                    Original {
                        mode: meta.mode() & 0o7777,
                        uid: meta.uid(),
                        gid: meta.gid(),
                        digest: digest(&bytes),
                    },
                    bytes,
                ))
            }
        };
        Ok(SavedFile {
            path: rel.to_string(),
            original,
        })
    }
}

pub struct Journal {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

fn journal_root(root: &Path) -> PathBuf {
    root.join(STATE_DIR).join("journal")
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

/// A new transaction's directory: `(id, dir, created)`.
fn allocate(root: &Path) -> Result<(String, PathBuf, String), ApplyError> {
    let base = journal_root(root);
    fs::create_dir_all(&base).map_err(io_err("creating", &base))?;
    let (created, stamp) = utc_now();
    let mut n = 1;
    loop {
        let id = format!("{stamp}-{n}");
        let dir = base.join(&id);
        match fs::create_dir(&dir) {
            Ok(()) => return Ok((id, dir, created)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => n += 1,
            Err(e) => {
                return Err(ApplyError::Io {
                    op: "creating",
                    path: dir,
                    source: e,
                })
            }
        }
    }
}

impl Journal {
    pub fn create(
        root: &Path,
        plan: &Plan,
        kind: &str,
        saved: Vec<SavedFile>,
    ) -> Result<Self, ApplyError> {
        let (id, dir, created) = allocate(root)?;
        let files_dir = dir.join("files");
        fs::create_dir(&files_dir).map_err(io_err("creating", &files_dir))?;
        let mut files = Vec::new();
        for (i, (s, edit)) in saved.into_iter().zip(&plan.edits).enumerate() {
            let original = match s.original {
                Some((meta, bytes)) => {
                    atomic_write(&files_dir.join(i.to_string()), &bytes, 0o600, None)?;
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
            dir,
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
                touched: Vec::new(),
                records_touched: true,
                rolls_back: None,
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
            dir,
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
                touched: Vec::new(),
                records_touched: false,
                rolls_back: None,
            },
        };
        j.save()?;
        Ok(j)
    }

    fn save(&self) -> Result<(), ApplyError> {
        let text = serde_json::to_vec_pretty(&self.manifest).expect("a manifest always serialises");
        atomic_write(&self.dir.join("manifest.json"), &text, 0o600, None)
    }

    pub fn set_state(&mut self, state: TxState) -> Result<(), ApplyError> {
        self.manifest.state = state;
        self.manifest.steps.push(format!("state {state:?}"));
        self.save()
    }

    /// Records, fsynced, that the write of `path` starts now.
    pub fn record_touched(&mut self, path: &str) -> Result<(), ApplyError> {
        if !self.manifest.touched.iter().any(|t| t == path) {
            self.manifest.touched.push(path.to_string());
        }
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
        let bytes = fs::read(&p).map_err(io_err("reading saved copy", &p))?;
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
    pub fn open_all(root: &Path) -> Result<Vec<Journal>, ApplyError> {
        let base = journal_root(root);
        let mut out = Vec::new();
        let Ok(rd) = fs::read_dir(&base) else {
            return Ok(out);
        };
        let mut dirs: Vec<PathBuf> = rd
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        dirs.sort();
        for dir in dirs {
            let Ok(text) = fs::read(dir.join("manifest.json")) else {
                continue;
            };
            match serde_json::from_slice::<Manifest>(&text) {
                Ok(manifest) => out.push(Journal { dir, manifest }),
                Err(e) => {
                    return Err(ApplyError::Refused(format!(
                        "the journal manifest {} cannot be read ({e}); look at it before running passthru again",
                        dir.join("manifest.json").display()
                    )))
                }
            }
        }
        Ok(out)
    }
}

/// The transactions in a root's journal, oldest first.
pub fn list_transactions(root: &Path) -> Result<Vec<Manifest>, ApplyError> {
    Ok(Journal::open_all(root)?
        .into_iter()
        .map(|j| j.manifest)
        .collect())
}
