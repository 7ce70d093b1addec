//! The interlocks read the host as it is: the default-route NIC and the boot disk found
//! through whatever lies between the interface or block device and its PCI function
//! (virtio, bridge, bond).

mod common;

use common::*;

fn addrs(v: &[passthru::model::PciAddress]) -> Vec<String> {
    v.iter().map(|a| a.to_string()).collect()
}

#[test]
fn a_virtio_nic_and_a_virtio_disk_are_followed_to_their_pci_functions() {
    let s = check_snapshot_of("virtio-guest");
    let u = &s.host_usage;
    assert_eq!(
        addrs(&u.default_route_devices),
        ["0000:01:08.0"],
        "{:?}",
        u.default_route_evidence
    );
    assert_eq!(
        addrs(&u.boot_disk_controllers),
        ["0000:01:09.0"],
        "{:?}",
        u.boot_disk_evidence
    );
}

#[test]
fn a_bridge_over_a_bond_over_two_nics_names_both_and_not_the_third() {
    let s = check_snapshot_of("pve-bond");
    let u = &s.host_usage;
    assert_eq!(
        addrs(&u.default_route_devices),
        ["0000:01:08.0", "0000:01:09.0"],
        "{:?}",
        u.default_route_evidence
    );
}

#[test]
fn the_gpu_sharing_a_group_with_the_default_route_nic_is_blocked_for_a_vm() {
    for name in ["virtio-guest", "pve-bond"] {
        let s = check_snapshot_of(name);
        let r = passthru::check::check_host(&s, &passthru::check::CheckRequest::default());
        let blocked = r.gpus.iter().any(|g| {
            g.fired(passthru::check::RuleId::SafetyNetwork)
                && g.verdicts.get(&passthru::check::Use::Vm)
                    == Some(&passthru::check::Verdict::Blocked)
        });
        assert!(
            blocked,
            "{name}: no GPU blocked for a VM by the network interlock"
        );
    }
}
