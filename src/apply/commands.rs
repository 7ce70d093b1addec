//! The refresh commands of a file transaction (update-grub, update-initramfs ...): run as
//! argument vectors, never through a shell, their exit code and output kept in the journal;
//! and what each one regenerates, for the message when one fails after an undo (the files
//! are back, but what the command generates from them is not).

use std::process::Command;

use super::journal::Journal;
use super::{crash_point, ApplyError};

/// Runs one command and records it in the journal. `Err` holds the failure in words (the
/// exit code and the end of its standard error, or why it could not start); a journal that
/// cannot be written is an `ApplyError` of its own, in `Ok(Err)`'s place.
pub(super) fn run_recorded(
    argv: &[String],
    j: &mut Journal,
) -> Result<Result<i32, String>, ApplyError> {
    let Some((prog, args)) = argv.split_first() else {
        return Ok(Ok(0));
    };
    eprintln!("passthru: running {}", argv.join(" "));
    crash_point("command starts");
    let out = Command::new(prog).args(args).output();
    crash_point("command ended");
    match out {
        Ok(o) => {
            let code = o.status.code().unwrap_or(-1);
            j.record_command(argv, code, &o.stdout, &o.stderr)?;
            if o.status.success() {
                Ok(Ok(code))
            } else {
                Ok(Err(format!(
                    "{} failed (exit {code}): {}",
                    argv.join(" "),
                    String::from_utf8_lossy(&o.stderr).trim()
                )))
            }
        }
        Err(e) => Ok(Err(format!("{} could not be started: {e}", argv.join(" ")))),
    }
}

/// Notes a command that is not run (a fixture root is not the live host).
pub(super) fn record_skipped(
    argv: &[String],
    j: &mut Journal,
    outcome: &mut super::ApplyOutcome,
) -> Result<(), ApplyError> {
    j.record_step(&format!("skipped (not the live host): {}", argv.join(" ")))?;
    outcome.commands_skipped.push(argv.to_vec());
    Ok(())
}

/// What a refresh command generates, in words a user can find on disk.
pub fn regenerates(argv: &[String]) -> String {
    let prog = argv
        .first()
        .map(|p| p.rsplit('/').next().unwrap_or(p))
        .unwrap_or_default();
    let output_flag = argv
        .iter()
        .position(|a| a == "-o" || a == "--output")
        .and_then(|i| argv.get(i + 1));
    match prog {
        "update-grub" => "boot/grub/grub.cfg (the boot menu and its kernel command lines)".into(),
        "grub-mkconfig" | "grub2-mkconfig" => match output_flag {
            Some(p) => format!(
                "{} (the boot menu and its kernel command lines)",
                p.trim_start_matches('/')
            ),
            None => "the GRUB configuration (grub.cfg)".into(),
        },
        "update-initramfs" => "the initramfs images (boot/initrd.img-*)".into(),
        "dracut" | "mkinitcpio" => "the initramfs images (boot/initramfs-*.img)".into(),
        "proxmox-boot-tool" => {
            "the kernels, initramfs images and command lines copied to every ESP".into()
        }
        "kernel-install" => "the boot entries and images kernel-install installed".into(),
        "kernelstub" => "the kernel options of the ESP's loader entry".into(),
        other => format!("what {other} generates"),
    }
}

#[cfg(test)]
mod tests {
    use super::regenerates;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn each_refresh_names_what_it_regenerates() {
        assert!(regenerates(&argv("update-grub")).starts_with("boot/grub/grub.cfg"));
        assert!(regenerates(&argv("grub2-mkconfig -o /boot/grub2/grub.cfg"))
            .starts_with("boot/grub2/grub.cfg"));
        assert!(regenerates(&argv("update-initramfs -u -k all")).contains("boot/initrd.img-*"));
        assert!(
            regenerates(&argv("/usr/bin/dracut --regenerate-all --force")).contains("initramfs")
        );
        assert_eq!(
            regenerates(&argv("frobnicate")),
            "what frobnicate generates"
        );
    }
}
