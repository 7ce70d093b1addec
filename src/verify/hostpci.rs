//! `verify.hostpci`: each Proxmox `hostpciN` that `vm attach` wrote with a raw address still
//! names the card it named then (vendor, device and subsystem), so a BIOS update that
//! renumbered the buses does not hand the VM another device. Pure.

use crate::formats::pve_config::{parse_guest_config, parse_hostpci};
use crate::model::Snapshot;

use super::{FunctionIds, PreparedState, Status, VerifyFinding};

const ID: &str = "verify.hostpci";

/// `etc/pve/qemu-server/100.conf` gives `100`.
fn vmid_of(config: &str) -> &str {
    config
        .rsplit('/')
        .next()
        .and_then(|n| n.strip_suffix(".conf"))
        .unwrap_or(config)
}

pub fn check_hostpci(
    s: &Snapshot,
    p: &PreparedState,
    configs: &[(String, Option<String>)],
) -> Vec<VerifyFinding> {
    let mut out = Vec::new();
    for ((config, key), (host, functions, tx)) in &p.hostpci {
        let vmid = vmid_of(config);
        let subject = format!("VM {vmid} {key}");
        let text = configs
            .iter()
            .find(|(c, _)| c == config)
            .and_then(|(_, t)| t.as_deref());
        let Some(text) = text else {
            // The VM is gone: nothing of it to check.
            continue;
        };
        let value = match parse_guest_config(text) {
            Ok(cfg) => cfg.main_get(key).map(str::to_string),
            Err(e) => {
                out.push(VerifyFinding::new(ID, Status::Unknown, &subject).says(
                    format!("{config} cannot be read as a VM config"),
                    e.to_string(),
                ));
                continue;
            }
        };
        // Detached, or changed by hand to another entry: not what attach wrote any more.
        let Some(entry) = value.and_then(|v| parse_hostpci(&v).ok()) else {
            continue;
        };
        if !entry.host.iter().any(|h| h == host) {
            continue;
        }
        let mut wrong = Vec::new();
        for f in functions {
            match s.device(&f.address) {
                Some(d) if f.same_ids(d) => {}
                Some(d) => wrong.push(format!(
                    "{} holds {} now, {} when attached",
                    f.address,
                    FunctionIds(d),
                    f.ids()
                )),
                None => wrong.push(format!("{} is gone ({} when attached)", f.address, f.ids())),
            }
        }
        if wrong.is_empty() {
            out.push(
                VerifyFinding::new(ID, Status::Ok, &subject).says(
                    format!("{key}: {host} still names the card attached in transaction {tx}"),
                    functions
                        .iter()
                        .map(|f| format!("{} {}", f.address, f.ids()))
                        .collect::<Vec<_>>()
                        .join(", "),
                ),
            );
            continue;
        }
        let first = functions.first();
        let now_at = first.and_then(|f| {
            s.devices
                .iter()
                .find(|d| f.same_ids(d) && d.address != f.address)
        });
        let old = first.map(|f| f.address.to_string()).unwrap_or(host.clone());
        let fix = match now_at {
            Some(d) => format!(
                "the card is at {} now: passthru vm detach {vmid} {old} && passthru vm attach {vmid} {} (do not start VM {vmid} before)",
                d.address, d.address
            ),
            None => format!(
                "do not start VM {vmid}: remove {key} (qm set {vmid} --delete {key}) until the card is found (passthru list --gpus)"
            ),
        };
        out.push(
            VerifyFinding::new(ID, Status::Drifted, &subject)
                .says(
                    format!("{key} of {config} names {host}, which is not the card attached there any more"),
                    wrong.join("; "),
                )
                .fix(fix),
        );
    }
    out
}
