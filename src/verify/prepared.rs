//! What passthru prepared and still stands: the journal's committed transactions, oldest
//! first, folded into one state. A rolled-back transaction counts for nothing (the rollback
//! transaction that undid it records the files as they were put back). Pure.

use std::collections::BTreeMap;

use crate::apply::{Manifest, TxState};
use crate::model::PciAddress;
use crate::plan::{FunctionIdentity, Prepared};

/// What the journal says the host should be like now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PreparedState {
    /// The ids of the transactions in effect, oldest first.
    pub in_effect: Vec<String>,
    /// Cards `setup vm` prepared (and no later `setup host` gave back), by the card's first
    /// function, with the transaction that prepared each.
    pub vfio: BTreeMap<PciAddress, (Vec<FunctionIdentity>, String)>,
    /// `vm attach` entries by raw address: (config, key) to (host, functions, transaction).
    pub hostpci: BTreeMap<(String, String), (String, Vec<FunctionIdentity>, String)>,
    /// Every file a transaction in effect wrote, with the digest it left (`None`: removed)
    /// and the transaction (id, title) that wrote it last.
    pub files: BTreeMap<String, (Option<String>, String, String)>,
}

pub fn read_prepared(transactions: &[Manifest]) -> PreparedState {
    let mut txs: Vec<&Manifest> = transactions
        .iter()
        .filter(|t| t.state == TxState::Committed)
        .collect();
    // Ids start with the UTC time they were made (`20261201-123000-1`).
    txs.sort_by(|a, b| a.id.cmp(&b.id));
    let mut st = PreparedState::default();
    for t in txs {
        st.in_effect.push(t.id.clone());
        for f in &t.files {
            st.files.insert(
                f.path.clone(),
                (f.after_digest.clone(), t.id.clone(), t.title.clone()),
            );
        }
        for p in &t.prepared {
            match p {
                Prepared::Vfio { functions } => {
                    if let Some(first) = functions.first() {
                        st.vfio
                            .insert(first.address, (functions.clone(), t.id.clone()));
                    }
                }
                Prepared::HostDriver { address } => {
                    st.vfio
                        .retain(|_, (fns, _)| !fns.iter().any(|f| f.address.same_slot(address)));
                }
                Prepared::HostPci {
                    config,
                    key,
                    host,
                    functions,
                } => {
                    st.hostpci.insert(
                        (config.clone(), key.clone()),
                        (host.clone(), functions.clone(), t.id.clone()),
                    );
                }
            }
        }
    }
    st
}
