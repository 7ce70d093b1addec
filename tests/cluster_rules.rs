//! The pure parts of `passthru cluster`: every check rule has a case where it fires and one
//! where it must not; placement ranking and capacity; the map plan (create, refresh, up to
//! date, refusals, HA rule). The cluster data is built here in the shapes `pve::api` decodes.

use std::collections::BTreeMap;

use passthru::cluster::check::check_cluster;
use passthru::cluster::place::{place_mapping, place_vm};
use passthru::cluster::plan::{plan_map, HaTarget, MapRequest};
use passthru::cluster::{ClusterRead, GuestRead, NodeRead};
use passthru::pve::api::{GuestEntry, GuestKind, HaRule, MappingRecord, PciFunction};
use passthru::pve::Method;

fn dev(addr: &str, id: &str, sub: Option<&str>, group: Option<i64>, class: u32) -> PciFunction {
    let (v, d) = id.split_once(':').unwrap();
    let (sv, sd) = match sub.and_then(|s| s.split_once(':')) {
        Some((a, b)) => (Some(a.to_string()), Some(b.to_string())),
        None => (None, None),
    };
    PciFunction {
        address: addr.parse().unwrap(),
        class,
        vendor: v.into(),
        device: d.into(),
        subsystem_vendor: sv,
        subsystem_device: sd,
        iommu_group: group,
        mdev: false,
        vendor_name: Some("NVIDIA Corporation".into()),
        device_name: Some("GA106 [GeForce RTX 3060]".into()),
        physfn: None,
        virtfns: vec![],
    }
}

const VGA: u32 = 0x030000;
const AUDIO: u32 = 0x040300;
const NVME: u32 = 0x010802;

/// An RTX 3060 with its audio function at `bus`, in IOMMU group `group`.
fn rtx(bus: u8, group: i64) -> Vec<PciFunction> {
    vec![
        dev(
            &format!("0000:{bus:02x}:00.0"),
            "10de:2504",
            Some("1462:397d"),
            Some(group),
            VGA,
        ),
        dev(
            &format!("0000:{bus:02x}:00.1"),
            "10de:228e",
            Some("1462:397d"),
            Some(group),
            AUDIO,
        ),
    ]
}

fn entry(node: &str, bus: u8, group: i64) -> String {
    format!(
        "id=10de:2504,iommugroup={group},node={node},path=0000:{bus:02x}:00,subsystem-id=1462:397d"
    )
}

fn node(name: &str, devices: Vec<PciFunction>) -> NodeRead {
    NodeRead {
        node: name.into(),
        status: "online".into(),
        error: None,
        devices,
    }
}

fn unread(name: &str) -> NodeRead {
    NodeRead {
        node: name.into(),
        status: "online".into(),
        error: Some("GET /nodes/x/hardware/pci: HTTP 595: Connection refused".into()),
        devices: vec![],
    }
}

fn vm(vmid: u32, node: &str, running: bool, cfg: &[(&str, &str)]) -> GuestRead {
    GuestRead {
        entry: GuestEntry {
            kind: GuestKind::Qemu,
            vmid,
            node: node.into(),
            name: Some(format!("vm{vmid}")),
            status: Some(if running { "running" } else { "stopped" }.into()),
            template: false,
            hastate: None,
        },
        config: Ok(cfg
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>()),
    }
}

fn mapping(id: &str, map: Vec<String>) -> MappingRecord {
    MappingRecord {
        id: id.into(),
        description: None,
        mdev: false,
        live_migration_capable: false,
        map,
        digest: Some("d1".into()),
    }
}

fn cluster(nodes: Vec<NodeRead>, guests: Vec<GuestRead>, maps: Vec<MappingRecord>) -> ClusterRead {
    ClusterRead {
        source: "test".into(),
        nodes,
        guests: Ok(guests),
        mappings: Ok(maps),
    }
}

fn rules(c: &ClusterRead) -> Vec<&'static str> {
    check_cluster(c).findings.iter().map(|f| f.rule).collect()
}

/// Two nodes with one RTX 3060 each, mapped correctly.
fn healthy() -> ClusterRead {
    cluster(
        vec![node("pve1", rtx(1, 14)), node("pve2", rtx(0x41, 22))],
        vec![vm(100, "pve1", true, &[("hostpci0", "mapping=gpu,pcie=1")])],
        vec![mapping(
            "gpu",
            vec![entry("pve1", 1, 14), entry("pve2", 0x41, 22)],
        )],
    )
}

#[test]
fn a_healthy_cluster_has_no_findings_and_is_ok() {
    let r = check_cluster(&healthy());
    assert!(r.findings.is_empty(), "{:?}", r.findings);
    assert!(r.ok);
}

#[test]
fn entry_invalid_fires_on_a_drifted_group_and_not_on_a_matching_entry() {
    let mut c = healthy();
    c.nodes[1] = node("pve2", rtx(0x41, 23));
    let r = check_cluster(&c);
    assert_eq!(rules(&c), ["mapping.entry-invalid"]);
    let f = &r.findings[0];
    assert!(
        f.message
            .contains("'iommugroup' does not match for 'gpu' (23 != 22)"),
        "{}",
        f.message
    );
    assert!(
        f.fix
            .as_deref()
            .unwrap()
            .contains("iommugroup=23,node=pve2,path=0000:41:00"),
        "{:?}",
        f.fix
    );
    assert!(!r.ok);
    assert!(!rules(&healthy()).contains(&"mapping.entry-invalid"));
}

#[test]
fn entry_invalid_says_when_the_card_is_gone() {
    let mut c = healthy();
    c.nodes[1] = node(
        "pve2",
        vec![dev("0000:41:00.0", "144d:a808", None, Some(22), NVME)],
    );
    let r = check_cluster(&c);
    let f = r
        .findings
        .iter()
        .find(|f| f.rule == "mapping.entry-invalid")
        .unwrap();
    assert!(
        f.fix
            .as_deref()
            .unwrap()
            .contains("no 10de:2504 card is on pve2 any more"),
        "{:?}",
        f.fix
    );
}

#[test]
fn entry_malformed_fires_on_an_entry_without_a_path_only() {
    let mut c = healthy();
    c.mappings.as_mut().unwrap()[0]
        .map
        .push("node=pve1,id=10de:2504".into());
    assert!(rules(&c).contains(&"mapping.entry-malformed"));
    assert!(!rules(&healthy()).contains(&"mapping.entry-malformed"));
}

#[test]
fn node_missing_fires_for_a_node_with_the_card_and_no_entry_only() {
    let mut c = healthy();
    c.nodes.push(node("pve3", rtx(2, 5)));
    let r = check_cluster(&c);
    let f = r
        .findings
        .iter()
        .find(|f| f.rule == "mapping.node-missing")
        .unwrap();
    assert_eq!(f.node.as_deref(), Some("pve3"));
    assert!(f
        .fix
        .as_deref()
        .unwrap()
        .contains("passthru cluster map gpu --gpu 10de:2504 --nodes pve3"));
    // Another card on the third node: nothing to map there.
    let mut c = healthy();
    c.nodes.push(node(
        "pve3",
        vec![dev("0000:01:00.0", "1002:73bf", None, Some(3), VGA)],
    ));
    assert!(!rules(&c).contains(&"mapping.node-missing"));
}

#[test]
fn not_checked_and_node_unread_fire_for_an_unread_node_only() {
    let mut c = healthy();
    c.nodes[1] = unread("pve2");
    let r = rules(&c);
    assert!(
        r.contains(&"mapping.not-checked") && r.contains(&"node.unread"),
        "{r:?}"
    );
    assert!(!check_cluster(&c).ok);
    let r = rules(&healthy());
    assert!(!r.contains(&"mapping.not-checked") && !r.contains(&"node.unread"));
}

#[test]
fn guest_mapping_rules_fire_for_an_unknown_mapping_and_a_node_without_entry() {
    let mut c = healthy();
    c.guests
        .as_mut()
        .unwrap()
        .push(vm(101, "pve1", false, &[("hostpci0", "mapping=nope")]));
    assert!(rules(&c).contains(&"guest.mapping-unknown"));
    let mut c = healthy();
    c.nodes.push(node("pve3", vec![]));
    c.guests
        .as_mut()
        .unwrap()
        .push(vm(102, "pve3", false, &[("hostpci0", "mapping=gpu")]));
    let r = check_cluster(&c);
    let f = r
        .findings
        .iter()
        .find(|f| f.rule == "guest.mapping-no-entry")
        .unwrap();
    assert!(f.message.contains("PCI device mapping not found for 'gpu'"));
    let r = rules(&healthy());
    assert!(!r.contains(&"guest.mapping-unknown") && !r.contains(&"guest.mapping-no-entry"));
}

#[test]
fn hostpci_moved_fires_for_a_missing_device_a_recorded_other_card_and_x_vga_on_a_non_gpu() {
    // Missing: nothing at 05:00 any more.
    let mut c = healthy();
    c.guests
        .as_mut()
        .unwrap()
        .push(vm(103, "pve1", false, &[("hostpci0", "05:00,pcie=1")]));
    assert!(rules(&c).contains(&"guest.hostpci-moved"));
    // Recorded: a mapping entry for pve2 path 0000:41:00 says 10de:2504; the card moved to 42.
    let mut c = healthy();
    let mut devs = rtx(0x42, 22);
    devs.push(dev("0000:41:00.0", "144d:a808", None, Some(21), NVME));
    c.nodes[1] = node("pve2", devs);
    c.guests
        .as_mut()
        .unwrap()
        .push(vm(104, "pve2", false, &[("hostpci1", "0000:41:00,pcie=1")]));
    let r = check_cluster(&c);
    let f = r
        .findings
        .iter()
        .find(|f| f.rule == "guest.hostpci-moved")
        .unwrap();
    assert!(
        f.fix
            .as_deref()
            .unwrap()
            .starts_with("qm set 104 --hostpci1 0000:42:00,pcie=1"),
        "{:?}",
        f.fix
    );
    // x-vga=1 on an NVMe drive, no mapping to say what it was.
    let mut c = healthy();
    c.nodes[0]
        .devices
        .push(dev("0000:03:00.0", "144d:a808", None, Some(16), NVME));
    c.guests
        .as_mut()
        .unwrap()
        .push(vm(105, "pve1", false, &[("hostpci0", "03:00.0,x-vga=1")]));
    assert!(rules(&c).contains(&"guest.hostpci-moved"));
}

#[test]
fn hostpci_moved_does_not_fire_for_a_raw_gpu_or_a_passed_through_nic() {
    let mut c = healthy();
    c.nodes[0]
        .devices
        .push(dev("0000:05:00.0", "8086:1533", None, Some(17), 0x020000));
    let g = c.guests.as_mut().unwrap();
    g.push(vm(
        106,
        "pve1",
        false,
        &[("hostpci0", "01:00,pcie=1,x-vga=1")],
    ));
    g.push(vm(107, "pve1", false, &[("hostpci0", "0000:05:00.0")]));
    assert!(
        !rules(&c).contains(&"guest.hostpci-moved"),
        "{:?}",
        check_cluster(&c).findings
    );
}

#[test]
fn place_ranks_by_spare_entries_then_the_current_node_and_names_who_holds_a_card() {
    // pve1: two cards, VM 100 running on one; pve2: one free card; pve3: one card held raw.
    let mut c = cluster(
        vec![
            node("pve1", [rtx(1, 14), rtx(2, 15)].concat()),
            node("pve2", rtx(0x41, 22)),
            node("pve3", rtx(1, 14)),
        ],
        vec![
            vm(100, "pve1", true, &[("hostpci0", "mapping=gpu")]),
            vm(101, "pve3", true, &[("hostpci0", "0000:01:00,pcie=1")]),
            vm(102, "pve2", false, &[("hostpci0", "mapping=gpu")]),
        ],
        vec![mapping(
            "gpu",
            vec![
                entry("pve1", 1, 14),
                entry("pve1", 2, 15),
                entry("pve2", 0x41, 22),
                entry("pve3", 1, 14),
            ],
        )],
    );
    let p = place_vm(&c, 102).unwrap();
    let order: Vec<(&str, usize, bool)> = p
        .candidates
        .iter()
        .map(|x| (x.node.as_str(), x.spare, x.current))
        .collect();
    // Both have 0 spare after it; pve2 is where it is.
    assert_eq!(order, [("pve2", 0, true), ("pve1", 0, false)]);
    assert_eq!(p.excluded.len(), 1);
    assert!(
        p.excluded[0]
            .reason
            .contains("in use (by running VM 101 (vm101))"),
        "{}",
        p.excluded[0].reason
    );
    // With VM 100 stopped, pve1 has a spare card and comes first.
    c.guests.as_mut().unwrap()[0].entry.status = Some("stopped".into());
    let p = place_mapping(&c, "gpu").unwrap();
    assert_eq!(p.candidates[0].node, "pve1");
    assert_eq!(p.candidates[0].spare, 1);
}

#[test]
fn place_refuses_a_node_where_any_entry_is_invalid_and_needs_a_hostpci_line() {
    let mut c = healthy();
    c.guests.as_mut().unwrap()[0].entry.status = Some("stopped".into());
    c.mappings.as_mut().unwrap()[0]
        .map
        .push(entry("pve2", 0x42, 30));
    let p = place_mapping(&c, "gpu").unwrap();
    assert_eq!(p.candidates.len(), 1);
    assert_eq!(p.candidates[0].node, "pve1");
    assert!(
        p.excluded[0]
            .reason
            .contains("pci device '0000:42:00' not found"),
        "{:?}",
        p.excluded
    );
    let mut c = healthy();
    c.guests
        .as_mut()
        .unwrap()
        .push(vm(110, "pve1", false, &[("memory", "2048")]));
    assert!(place_vm(&c, 110)
        .unwrap_err()
        .to_string()
        .contains("has no hostpciN"));
    assert!(place_vm(&c, 999).is_err());
}

fn req(name: &str, sel: &str) -> MapRequest {
    MapRequest {
        name: name.into(),
        selector: sel.into(),
        nodes: None,
        ha: None,
    }
}

#[test]
fn plan_creates_with_post_one_entry_per_card_keys_sorted() {
    let c = cluster(
        vec![
            node("pve1", [rtx(1, 14), rtx(2, 15)].concat()),
            node("pve2", rtx(0x41, 22)),
        ],
        vec![],
        vec![],
    );
    let p = plan_map(&c, None, &[], &req("gpu", "RTX 3060")).unwrap();
    assert_eq!(
        p.after,
        [
            entry("pve1", 1, 14),
            entry("pve1", 2, 15),
            entry("pve2", 0x41, 22)
        ]
    );
    assert_eq!(p.requests.len(), 1);
    assert_eq!(p.requests[0].method, Method::Post);
    assert_eq!(
        p.requests[0].params[0],
        ("id".to_string(), "gpu".to_string())
    );
    assert!(!p.requests[0].params.iter().any(|(k, _)| k == "mdev"));
}

#[test]
fn plan_is_empty_when_up_to_date_and_keeps_entries_as_written() {
    let mut c = healthy();
    // The same entry with keys in another order, as pvesh users write them.
    c.mappings.as_mut().unwrap()[0].map[0] =
        "node=pve1,path=0000:01:00,id=10DE:2504,iommugroup=14,subsystem-id=1462:397d".into();
    let current = c.mappings().first().cloned();
    let p = plan_map(&c, current.as_ref(), &[], &req("gpu", "10de:2504")).unwrap();
    assert!(p.requests.is_empty(), "{:?}", p.requests);
    assert_eq!(p.after, current.unwrap().map);
}

#[test]
fn plan_keeps_unread_nodes_entries_in_place_and_puts_with_the_digest() {
    let mut c = healthy();
    c.nodes.push(unread("pve3"));
    c.mappings.as_mut().unwrap()[0]
        .map
        .insert(0, entry("pve3", 7, 3));
    c.nodes[1] = node("pve2", rtx(0x42, 23));
    let current = c.mappings().first().cloned();
    let p = plan_map(&c, current.as_ref(), &[], &req("gpu", "10de:2504")).unwrap();
    assert_eq!(
        p.after,
        [
            entry("pve3", 7, 3),
            entry("pve1", 1, 14),
            entry("pve2", 0x42, 23)
        ]
    );
    let r = &p.requests[0];
    assert_eq!(
        (r.method, r.path.as_str()),
        (Method::Put, "/cluster/mapping/pci/gpu")
    );
    assert_eq!(
        r.params.last().unwrap(),
        &("digest".to_string(), "d1".to_string())
    );
    assert!(p
        .notes
        .iter()
        .any(|n| n.contains("pve3 could not be read; its entries are kept")));
}

#[test]
fn plan_refuses_mixed_mdev_unknown_or_unread_nodes_and_bad_names() {
    let mut c = healthy();
    c.nodes[1].devices[0].mdev = true;
    let e = plan_map(&c, None, &[], &req("gpu2", "10de:2504"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("mdev-capable and plain devices"), "{e}");
    let c = healthy();
    let mut r = req("gpu2", "10de:2504");
    r.nodes = Some(vec!["pve9".into()]);
    assert!(plan_map(&c, None, &[], &r)
        .unwrap_err()
        .to_string()
        .contains("pve9 is not a node"));
    let mut c = healthy();
    c.nodes.push(unread("pve3"));
    let mut r = req("gpu2", "10de:2504");
    r.nodes = Some(vec!["pve3".into()]);
    assert!(plan_map(&c, None, &[], &r)
        .unwrap_err()
        .to_string()
        .contains("could not be read"));
    assert!(plan_map(&healthy(), None, &[], &req("9gpu", "10de:2504")).is_err());
    assert!(plan_map(&healthy(), None, &[], &req("gpu", "10de:1111")).is_err());
}

#[test]
fn plan_ha_creates_updates_or_refuses_a_rule_held_elsewhere() {
    let mut c = healthy();
    c.guests.as_mut().unwrap()[0].entry.hastate = Some("started".into());
    let current = c.mappings().first().cloned();
    let mut r = req("gpu", "10de:2504");
    r.ha = Some(HaTarget::Users);
    let p = plan_map(&c, current.as_ref(), &[], &r).unwrap();
    assert_eq!(
        p.requests.len(),
        1,
        "the mapping is up to date; only the rule is new"
    );
    let post = &p.requests[0];
    assert_eq!(
        (post.method, post.path.as_str()),
        (Method::Post, "/cluster/ha/rules")
    );
    let get = |k: &str| {
        post.params
            .iter()
            .find(|(p, _)| p == k)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(get("resources"), Some("vm:100"));
    assert_eq!(get("nodes"), Some("pve1,pve2"));
    assert_eq!(get("strict"), Some("1"));

    let ours = HaRule {
        rule: "passthru-gpu".into(),
        kind: "node-affinity".into(),
        resources: "vm:100".into(),
        nodes: Some("pve1".into()),
        digest: Some("hd".into()),
    };
    let p = plan_map(&c, current.as_ref(), std::slice::from_ref(&ours), &r).unwrap();
    assert_eq!(p.requests[0].method, Method::Put);
    assert_eq!(p.requests[0].path, "/cluster/ha/rules/passthru-gpu");
    let same = HaRule {
        nodes: Some("pve2,pve1".into()),
        ..ours.clone()
    };
    assert!(plan_map(&c, current.as_ref(), &[same], &r)
        .unwrap()
        .requests
        .is_empty());
    let other = HaRule {
        rule: "pin-win".into(),
        ..ours
    };
    let e = plan_map(&c, current.as_ref(), &[other], &r)
        .unwrap_err()
        .to_string();
    assert!(e.contains("already in node-affinity rule pin-win"), "{e}");
}
