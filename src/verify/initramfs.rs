//! `verify.initramfs`: the initramfs of the kernel the next boot runs carries the vfio
//! configuration: the vfio-pci module (unless that kernel has it built in) and passthru's
//! binding files that the initramfs system copies (the modprobe file always; the udev rule
//! with dracut, which passthru tells to carry it). Without them the host driver takes the
//! card first at the next boot. Pure.

use crate::host::next_boot::{module_of_file, Listing};
use crate::plan::setup::{MODPROBE_FILE, UDEV_FILE};

use super::{rebuild_initramfs_command, PreparedState, Status, VerifyFinding, VerifyInputs};
use crate::model::InitramfsKind;

const ID: &str = "verify.initramfs";

pub fn check_initramfs(i: &VerifyInputs, p: &PreparedState) -> Vec<VerifyFinding> {
    if p.vfio.is_empty() {
        return Vec::new();
    }
    let Some(next) = &i.next_kernel else {
        return vec![VerifyFinding::new(ID, Status::Unknown, "next boot").says(
            "no kernel found that the next boot would run",
            "no lib/modules/*/ with a vmlinuz, no GRUB default entry, no running kernel release",
        )];
    };
    let release = &next.release;
    let Some(image) = &i.initramfs else {
        return Vec::new();
    };
    let rebuild = rebuild_initramfs_command(i.snapshot, release, image.listing == Listing::NoImage);
    let subject = image.path.clone();
    let files = match &image.listing {
        Listing::NoImage => {
            return vec![VerifyFinding::new(ID, Status::Drifted, &subject)
                .says(
                    format!(
                        "the next boot's kernel {release} ({}) has no initramfs",
                        next.how
                    ),
                    format!("{} does not exist", image.path),
                )
                .fix(rebuild)]
        }
        Listing::Failed { why } => {
            return vec![VerifyFinding::new(ID, Status::Unknown, &subject)
                .says("the initramfs could not be listed", why.clone())
                .fix(format!(
                    "install the lister ({}), then passthru verify",
                    image.argv[0]
                ))]
        }
        Listing::Files { files } => files,
    };
    let builtin = i.next_modules.builtin.iter().any(|m| m == "vfio_pci");
    let mut missing = Vec::new();
    if !builtin
        && !files
            .iter()
            .any(|f| module_of_file(f).as_deref() == Some("vfio_pci"))
    {
        missing.push("the vfio-pci module (vfio-pci.ko)".to_string());
    }
    let dracut = i
        .snapshot
        .boot
        .initramfs
        .first()
        .is_some_and(|k| k.kind == InitramfsKind::Dracut);
    for (file, needed) in [(MODPROBE_FILE, true), (UDEV_FILE, dracut)] {
        let exists = i
            .files_now
            .iter()
            .any(|(f, now)| f == file && matches!(now, Ok(Some(_))));
        if needed && exists && !files.iter().any(|f| f == file) {
            missing.push(format!("passthru's {file}"));
        }
    }
    let evidence = format!(
        "{} lists {} files{}",
        image.argv.join(" "),
        files.len(),
        if missing.is_empty() {
            String::new()
        } else {
            format!(", none of them {}", missing.join(" or "))
        }
    );
    if missing.is_empty() {
        vec![VerifyFinding::new(ID, Status::Ok, &subject).says(
            format!("the next boot's kernel {release} ({}) loads vfio-pci from its initramfs with passthru's binding", next.how),
            evidence,
        )]
    } else {
        vec![VerifyFinding::new(ID, Status::Drifted, &subject)
            .says(
                format!(
                    "the initramfs of {release}, the kernel the next boot runs ({}), lacks {}: the host driver takes the card first",
                    next.how,
                    missing.join(" and ")
                ),
                evidence,
            )
            .fix(rebuild)]
    }
}
