//! Plans: what a writing command will change, as data. Builders (`plan_*`) are pure functions
//! of the snapshot, the files' current bytes and the request; `apply` is the only writer.

pub mod attach;
pub mod attach_shared;
pub mod boot;
pub mod containers;
pub mod diff;
pub mod files;
pub mod initramfs;
pub mod modprobe_file;
pub mod power;
pub mod runtime;
pub mod setup;
pub mod share;
pub mod share_mdev;
pub mod source;
pub mod vf_pool;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One file to change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FileEdit {
    /// Path relative to the host root.
    pub path: String,
    /// The bytes the plan was made from (`None`: the file did not exist). Apply refuses when
    /// the file no longer has them.
    pub before: Option<Vec<u8>>,
    /// The new bytes; `None` deletes the file.
    pub after: Option<Vec<u8>>,
    /// Mode for a file that does not exist yet (an existing file keeps its own).
    pub new_mode: u32,
    /// Why, in plain words.
    pub reason: String,
}

/// A command to run after the files are written (a refresh: update-grub, update-initramfs...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PlannedCommand {
    /// Program and arguments, run without a shell.
    pub argv: Vec<String>,
    pub why: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Plan {
    /// What the plan does (`prepare 0000:01:00.0 for VM passthrough`).
    pub title: String,
    /// What the user must know before the changes: each safety block `--force` overrode.
    /// Shown right under the title.
    #[serde(default)]
    pub warnings: Vec<String>,
    pub edits: Vec<FileEdit>,
    pub commands: Vec<PlannedCommand>,
    /// What the user should know (a reboot is needed, what to check after it).
    pub notes: Vec<String>,
    /// What the plan prepares, as data: kept in the journal with the transaction, so that
    /// `passthru verify` can later compare the host with it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prepared: Vec<Prepared>,
}

/// One PCI function as it was when a plan was made: its address and the ids that tell the
/// card it held then from another card at the same address later (a BIOS update renumbers
/// buses).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FunctionIdentity {
    pub address: crate::model::PciAddress,
    pub vendor: Option<crate::model::PciId>,
    pub device: Option<crate::model::PciId>,
    #[serde(default)]
    pub subsystem_vendor: Option<crate::model::PciId>,
    #[serde(default)]
    pub subsystem_device: Option<crate::model::PciId>,
}

impl FunctionIdentity {
    pub fn of(d: &crate::model::PciDevice) -> Self {
        FunctionIdentity {
            address: d.address,
            vendor: d.vendor,
            device: d.device,
            subsystem_vendor: d.subsystem_vendor,
            subsystem_device: d.subsystem_device,
        }
    }

    /// `10de:2206 (subsystem 1458:403f)`, or what of it is known.
    pub fn ids(&self) -> String {
        let id = |v: Option<crate::model::PciId>| v.map_or("????".to_string(), |v| v.to_string());
        format!(
            "{}:{} (subsystem {}:{})",
            id(self.vendor),
            id(self.device),
            id(self.subsystem_vendor),
            id(self.subsystem_device)
        )
    }

    /// Whether `d` is the same kind of function (vendor, device and subsystem alike).
    pub fn same_ids(&self, d: &crate::model::PciDevice) -> bool {
        self.vendor == d.vendor
            && self.device == d.device
            && self.subsystem_vendor == d.subsystem_vendor
            && self.subsystem_device == d.subsystem_device
    }
}

/// What a transaction prepared, for `verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Prepared {
    /// `setup vm`: these functions go to vfio-pci from the next boot on.
    Vfio { functions: Vec<FunctionIdentity> },
    /// `setup host`: the card at this address goes back to its host driver.
    HostDriver { address: crate::model::PciAddress },
    /// `vm attach` with a raw address: `key` (`hostpci0`) of `config` names `host`
    /// (`0000:01:00`), which held these functions.
    HostPci {
        config: String,
        key: String,
        host: String,
        functions: Vec<FunctionIdentity>,
    },
}

impl Plan {
    /// Nothing to change: the host is already as asked.
    pub fn is_empty(&self) -> bool {
        self.edits.is_empty()
    }
}

/// SHA-256 of some bytes, lowercase hex.
pub fn digest(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Part of a plan: the edits and the refresh commands one target (a boot loader, an
/// initramfs system) contributes.
#[derive(Debug, Default)]
pub struct Steps {
    pub edits: Vec<FileEdit>,
    pub commands: Vec<PlannedCommand>,
    pub notes: Vec<String>,
}

impl Plan {
    /// Adds a target's steps.
    pub fn extend(&mut self, steps: Steps) {
        self.edits.extend(steps.edits);
        self.commands.extend(steps.commands);
        self.notes.extend(steps.notes);
    }
}

/// The edit that gives `path` the bytes `after` (`None` deletes it), or nothing when it
/// already has them. `new_mode` is for a file that does not exist yet.
pub fn file_edit(
    src: &dyn source::FileSource,
    path: &str,
    after: Option<Vec<u8>>,
    new_mode: u32,
    reason: &str,
) -> Result<Option<FileEdit>, source::ReadError> {
    let before = src.read(path)?;
    Ok((before != after).then(|| FileEdit {
        path: path.to_string(),
        before,
        after,
        new_mode,
        reason: reason.to_string(),
    }))
}
