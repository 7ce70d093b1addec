//! `passthru verify`: what passthru prepared (its journal) against the host as it runs and as
//! it will boot next. Pure: every input is read beforehand (`cmd/verify.rs` reads the host
//! through `host::next_boot` and `host::container_libs`), so each check is a function of data
//! that a test can build by hand.
//!
//! A finding is `ok` (it holds), `drifted` (it no longer holds: the exit code is 1),
//! `pending` (set up, waiting for the reboot), `unknown` (could not be read) or `note`
//! (worth knowing, not drift: a shared file passthru edited has been edited since).

mod bound;
mod files;
mod hostpci;
mod initramfs;
mod modules;
mod nvidia;
pub mod prepared;

use serde::Serialize;

use crate::apply::Manifest;
use crate::host::next_boot::{InitramfsImage, KernelModules, NextKernel};
use crate::model::{InitramfsKind, Snapshot};

pub use prepared::{read_prepared, PreparedState};

/// The version of the JSON document `verify --json` prints.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Ok,
    Drifted,
    Pending,
    Unknown,
    Note,
}

impl Status {
    pub fn word(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Drifted => "DRIFTED",
            Status::Pending => "pending",
            Status::Unknown => "unknown",
            Status::Note => "note",
        }
    }
}

/// One thing verify compared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct VerifyFinding {
    /// `verify.bound`, `verify.initramfs`, `verify.modules`, `verify.nvidia`,
    /// `verify.hostpci`, `verify.files`.
    pub id: &'static str,
    pub status: Status,
    /// What it is about: a PCI address, a file, a module, `VM 100 hostpci0`.
    pub subject: String,
    pub message: String,
    /// What was read, and where.
    pub evidence: String,
    /// The exact fix, for a finding that is not `ok`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl VerifyFinding {
    fn new(id: &'static str, status: Status, subject: impl Into<String>) -> Self {
        VerifyFinding {
            id,
            status,
            subject: subject.into(),
            message: String::new(),
            evidence: String::new(),
            fix: None,
        }
    }
    fn says(mut self, message: impl Into<String>, evidence: impl Into<String>) -> Self {
        self.message = message.into();
        self.evidence = evidence.into();
        self
    }
    fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }
}

/// Which host verify judges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// The running host and the next boot.
    All,
    /// Only what the next boot will find (after a kernel or initramfs update): the
    /// initramfs, the modules, passthru's files.
    NextBoot,
}

/// Everything verify compares, read beforehand.
#[derive(Debug)]
pub struct VerifyInputs<'a> {
    pub snapshot: &'a Snapshot,
    /// The journal's transactions (any order).
    pub transactions: &'a [Manifest],
    pub scope: Scope,
    pub next_kernel: Option<NextKernel>,
    /// The next kernel's initramfs and its listing.
    pub initramfs: Option<InitramfsImage>,
    /// The modules installed for the next kernel.
    pub next_modules: KernelModules,
    /// Loaded out-of-tree modules of the running kernel.
    pub out_of_tree: Vec<String>,
    /// The digest of every file the journal says passthru wrote, as it is now (`None`:
    /// absent), or why it could not be read.
    pub files_now: Vec<(String, Result<Option<String>, String>)>,
    /// Every guest config a `hostpci` record names, as text now (`None`: absent).
    pub guest_configs: Vec<(String, Option<String>)>,
    /// The NVIDIA library versions containers are given: (place, version).
    pub container_libs: Vec<(String, String)>,
}

/// What `verify` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct VerifyReport {
    pub schema_version: u32,
    pub scope: Scope,
    /// The kernel the next boot runs, and how that was decided.
    pub next_kernel: Option<NextKernel>,
    /// Transactions in the journal that are in effect (committed, not rolled back).
    pub transactions: Vec<String>,
    pub findings: Vec<VerifyFinding>,
    /// Some finding is `drifted`: the exit code is 1.
    pub drifted: bool,
}

/// Runs every check of the scope.
pub fn check_all(i: &VerifyInputs) -> VerifyReport {
    let prepared = read_prepared(i.transactions);
    let mut findings = Vec::new();
    if i.scope == Scope::All {
        findings.extend(bound::check_bound(i.snapshot, &prepared));
        findings.extend(hostpci::check_hostpci(
            i.snapshot,
            &prepared,
            &i.guest_configs,
        ));
        findings.extend(nvidia::check_nvidia(i.snapshot, &i.container_libs));
    }
    findings.extend(initramfs::check_initramfs(i, &prepared));
    findings.extend(modules::check_modules(i));
    findings.extend(files::check_files(&prepared, &i.files_now));
    let drifted = findings.iter().any(|f| f.status == Status::Drifted);
    VerifyReport {
        schema_version: SCHEMA_VERSION,
        scope: i.scope,
        next_kernel: i.next_kernel.clone(),
        transactions: prepared.in_effect.clone(),
        findings,
        drifted,
    }
}

/// The command that rebuilds `release`'s initramfs with the system found (`create`: there is
/// none yet, which `update-initramfs -u` refuses).
pub fn rebuild_initramfs_command(s: &Snapshot, release: &str, create: bool) -> String {
    let kind = s.boot.initramfs.first().map(|i| i.kind);
    let mut cmd = match kind {
        Some(InitramfsKind::Dracut) => format!("dracut --force --kver {release}"),
        Some(InitramfsKind::Mkinitcpio) => "mkinitcpio -P".to_string(),
        Some(InitramfsKind::Booster) => "/usr/lib/booster/regenerate_images".to_string(),
        _ if create => format!("update-initramfs -c -k {release}"),
        _ => format!("update-initramfs -u -k {release}"),
    };
    if s.boot.in_use == Some(crate::model::BootloaderKind::ProxmoxBootTool) {
        cmd.push_str(" && proxmox-boot-tool refresh");
    }
    cmd
}

/// A device's ids as [`crate::plan::FunctionIdentity::ids`] writes them.
pub(crate) struct FunctionIds<'a>(pub &'a crate::model::PciDevice);

impl std::fmt::Display for FunctionIds<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::plan::FunctionIdentity::of(self.0).ids())
    }
}
