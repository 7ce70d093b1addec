//! `verify.modules`: every out-of-tree module the running kernel has loaded (vendor-reset,
//! i915-sriov, nvidia from DKMS) is built for the kernel the next boot runs. Pure.

use super::{Status, VerifyFinding, VerifyInputs};

const ID: &str = "verify.modules";

pub fn check_modules(i: &VerifyInputs) -> Vec<VerifyFinding> {
    let Some(next) = &i.next_kernel else {
        return Vec::new();
    };
    let running = i.snapshot.system.kernel_release.as_deref();
    if i.out_of_tree.is_empty() || running == Some(next.release.as_str()) {
        return Vec::new();
    }
    let release = &next.release;
    let mut out = Vec::new();
    for m in &i.out_of_tree {
        let evidence = format!(
            "sys/module/{m}/taint: O (out of tree) in {}; {}",
            running.unwrap_or("the running kernel"),
            match &i.next_modules.dir {
                Some(d) => format!("no {m}.ko* below {d}"),
                None => format!("no lib/modules/{release}"),
            }
        );
        if i.next_modules.has(m) {
            out.push(VerifyFinding::new(ID, Status::Ok, m).says(
                format!("built for {release}, the next boot's kernel"),
                format!(
                    "{m}.ko below {}",
                    i.next_modules.dir.as_deref().unwrap_or("?")
                ),
            ));
        } else {
            out.push(
                VerifyFinding::new(ID, Status::Drifted, m)
                    .says(
                        format!("loaded now, but not built for {release}, the kernel the next boot runs ({})", next.how),
                        evidence,
                    )
                    .fix(format!(
                        "dkms autoinstall -k {release} (install the kernel's headers first: apt install proxmox-headers-{release} or linux-headers-{release})"
                    )),
            );
        }
    }
    out
}
