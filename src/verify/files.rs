//! `verify.files`: every file passthru wrote still has the bytes it wrote (the journal keeps
//! their digests). passthru's own files changed are drift; a shared file it edited (GRUB's
//! defaults, a VM config) changed since is a note: people and Proxmox edit those. Pure.

use crate::plan::setup::{DRACUT_FILE, GRUB_DROPIN, MKINITCPIO_FILE, MODPROBE_FILE, UDEV_FILE};

use super::{PreparedState, Status, VerifyFinding};

const ID: &str = "verify.files";

/// Files only passthru writes.
pub const OWN_FILES: &[&str] = &[
    MODPROBE_FILE,
    UDEV_FILE,
    GRUB_DROPIN,
    DRACUT_FILE,
    MKINITCPIO_FILE,
];

fn short(d: Option<&str>) -> String {
    d.map_or("absent".to_string(), |d| {
        format!("sha256 {}", &d[..d.len().min(12)])
    })
}

pub fn check_files(
    p: &PreparedState,
    now: &[(String, Result<Option<String>, String>)],
) -> Vec<VerifyFinding> {
    let redo: Vec<String> = p
        .vfio
        .keys()
        .map(|a| format!("passthru setup vm {a}"))
        .collect();
    let redo = if redo.is_empty() {
        "the command that wrote it".to_string()
    } else {
        redo.join(" && ")
    };
    let mut out = Vec::new();
    for (path, (after, tx, title)) in &p.files {
        let Some((_, current)) = now.iter().find(|(f, _)| f == path) else {
            continue;
        };
        let own = OWN_FILES.contains(&path.as_str());
        let current = match current {
            Ok(c) => c,
            Err(why) => {
                out.push(
                    VerifyFinding::new(ID, Status::Unknown, path)
                        .says("cannot be read", why.clone()),
                );
                continue;
            }
        };
        let evidence = format!(
            "written by transaction {tx} ({title}) as {}; now {}",
            short(after.as_deref()),
            short(current.as_deref())
        );
        if current == after {
            out.push(
                VerifyFinding::new(ID, Status::Ok, path).says("as passthru wrote it", evidence),
            );
        } else if own {
            let gone = current.is_none();
            out.push(
                VerifyFinding::new(ID, Status::Drifted, path)
                    .says(
                        if gone {
                            "passthru's file is gone: the binding it holds is lost at the next initramfs rebuild or boot"
                        } else {
                            "passthru's file was changed since passthru wrote it"
                        },
                        evidence,
                    )
                    .fix(format!(
                        "{redo} (it writes the file anew, keeping your own lines in it); or passthru rollback {tx} to undo \"{title}\""
                    )),
            );
        } else {
            out.push(VerifyFinding::new(ID, Status::Note, path).says(
                "changed since passthru edited it (by you, or by a tool that owns the file)",
                evidence,
            ));
        }
    }
    out
}
