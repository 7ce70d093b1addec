//! `verify.bound`: every card `setup vm` prepared is on vfio-pci in the running host, and
//! is still the card it was (same ids at the same address). Pure.

use crate::model::Snapshot;
use crate::state::{card_state, CardState};

use super::{PreparedState, Status, VerifyFinding};

const ID: &str = "verify.bound";

pub fn check_bound(s: &Snapshot, p: &PreparedState) -> Vec<VerifyFinding> {
    let mut out = Vec::new();
    for (gpu, (functions, tx)) in &p.vfio {
        let subject = gpu.to_string();
        // The address must still hold the card setup was run for.
        let mut moved = Vec::new();
        for f in functions {
            match s.device(&f.address) {
                None => moved.push(format!("{} is gone (was {})", f.address, f.ids())),
                Some(d) if !f.same_ids(d) => moved.push(format!(
                    "{} holds {} now (was {})",
                    f.address,
                    super::FunctionIds(d),
                    f.ids()
                )),
                Some(_) => {}
            }
        }
        if !moved.is_empty() {
            let elsewhere = functions.first().and_then(|f| {
                s.devices
                    .iter()
                    .find(|d| f.same_ids(d) && d.address != f.address)
            });
            let fix = match elsewhere {
                Some(d) => format!(
                    "the card seems to be at {} now (a BIOS or slot change renumbered the bus): passthru setup host {gpu} && passthru setup vm {}",
                    d.address, d.address
                ),
                None => format!(
                    "find the card (passthru list --gpus), then passthru setup host {gpu} and passthru setup vm on its new address"
                ),
            };
            out.push(
                VerifyFinding::new(ID, Status::Drifted, &subject)
                    .says(
                        format!("the card transaction {tx} prepared for vfio-pci is not at {gpu} any more"),
                        moved.join("; "),
                    )
                    .fix(fix),
            );
            continue;
        }
        let st = card_state(s, gpu);
        let f = match st.state {
            CardState::Effective => VerifyFinding::new(ID, Status::Ok, &subject)
                .says("bound to vfio-pci, as prepared", st.evidence),
            CardState::RebootPending => VerifyFinding::new(ID, Status::Pending, &subject)
                .says(
                    "prepared for vfio-pci; the running kernel has not booted with it yet",
                    st.evidence,
                )
                .fix(format!("reboot, then run passthru verify (or passthru bind {gpu} now)")),
            CardState::NotConfigured => VerifyFinding::new(ID, Status::Drifted, &subject)
                .says(
                    format!("transaction {tx} prepared it for vfio-pci, but nothing on disk binds it any more, and it is on a host driver"),
                    st.evidence,
                )
                .fix(format!("passthru setup vm {gpu}")),
            CardState::Drifted | CardState::ConfiguredByHand => {
                VerifyFinding::new(ID, Status::Drifted, &subject)
                    .says(
                        "prepared for vfio-pci, but the card is on a host driver",
                        st.evidence,
                    )
                    .fix(format!(
                        "passthru bind {gpu} (now), and passthru setup vm {gpu} (it rewrites the binding if something changed it)"
                    ))
            }
        };
        out.push(f);
    }
    out
}
