//! `passthru cluster` over HTTPS against a mock Proxmox VE API.
//!
//! The real Proxmox API cannot run here, so these tests use a local HTTPS server
//! (common/pve_mock.rs) with its own certificate, answering only with shapes taken from the
//! API schema (shared/corpus/proxmox/api-schema-excerpt.json) and the real captures quoted
//! in shared/docs/PROXMOX-API.md (tests/fixtures/pve-api/README.md names the source of each).
//!
//! Every run goes through [`run`], which fails the test if the token's secret appears in
//! the command's argv, stdout or stderr.

#[path = "common/pve_mock.rs"]
mod pve_mock;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use pve_mock::*;
use serde_json::Value;

const TOKEN_ID: &str = "passthru@pve!cluster";
const SECRET: &str = "5e1f0c2a-9b7d-4e3f-8a6b-c0ffee123456";

fn token() -> String {
    format!("{TOKEN_ID}={SECRET}")
}

struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

fn token_file(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("token");
    std::fs::write(&p, format!("{}\n", token())).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

/// Runs passthru and checks that the secret is in none of its argv, stdout and stderr.
fn run(args: &[&str], env: &[(&str, &str)]) -> Ran {
    for a in args {
        assert!(!a.contains(SECRET), "the secret is in the argv: {a}");
    }
    let mut c = Command::new(env!("CARGO_BIN_EXE_passthru"));
    c.args(args)
        .env_remove("PASSTHRU_PVE_TOKEN_FILE")
        .env("NO_COLOR", "1");
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().unwrap();
    let r = Ran {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    };
    assert!(
        !r.stdout.contains(SECRET),
        "secret on stdout:\n{}",
        r.stdout
    );
    assert!(
        !r.stderr.contains(SECRET),
        "secret on stderr:\n{}",
        r.stderr
    );
    r
}

/// `cluster ARGS --api URL --token-file F --fingerprint FP [--timeout 1]`.
fn cluster(m: &Mock, tok: &Path, args: &[&str]) -> Ran {
    let fp = cert_fingerprint();
    let url = m.url();
    let mut all = vec![
        "cluster",
        "--api",
        &url,
        "--token-file",
        tok.to_str().unwrap(),
        "--fingerprint",
        &fp,
        "--timeout",
        "1",
    ];
    all.extend_from_slice(args);
    run(&all, &[])
}

/// The secret arrived only inside `Authorization: PVEAPIToken=...` headers.
fn secret_only_in_auth_headers(m: &Mock) {
    for r in m.requests() {
        for line in r.head.lines() {
            if line.contains(SECRET) {
                assert_eq!(line, format!("Authorization: PVEAPIToken={}", token()));
            }
        }
        assert!(!r.target.contains(SECRET) && !r.body.contains(SECRET));
    }
}

#[test]
fn list_shows_every_node_its_gpus_users_and_mappings_and_the_nodes_it_could_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let tok = token_file(dir.path());
    let m = fixture_cluster(&token(), Duration::from_secs(4));
    let t0 = Instant::now();
    let r = cluster(&m, &tok, &["list", "--json"]);
    // pve4 is slow: its answer is not waited for beyond --timeout 1.
    assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());
    assert_eq!(r.code, 1, "some nodes could not be read: {}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["schema_version"], 1);
    let nodes = v["nodes"].as_array().unwrap();
    let names: Vec<&str> = nodes.iter().map(|n| n["node"].as_str().unwrap()).collect();
    assert_eq!(names, ["pve1", "pve2", "pve3", "pve4", "pve5"]);

    let pve1 = &nodes[0];
    assert_eq!(pve1["status"], "online");
    assert_eq!(pve1["error"], Value::Null);
    let gpus = pve1["gpus"].as_array().unwrap();
    assert_eq!(
        gpus.len(),
        2,
        "two RTX 3060; the AMD bridge and the NVMe are not GPUs"
    );
    let g = &gpus[0];
    assert_eq!(g["address"], "0000:01:00.0");
    assert_eq!(
        (g["vendor"].as_str(), g["device"].as_str()),
        (Some("10de"), Some("2504"))
    );
    assert_eq!(g["iommu_group"], "14");
    assert_eq!(g["subsystem"], "1462:397d");
    assert_eq!(g["functions"].as_array().unwrap().len(), 2);
    assert_eq!(g["mappings"], serde_json::json!(["rtx3060"]));
    let users: Vec<(u64, bool)> = g["used_by"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["vmid"].as_u64().unwrap(), u["running"].as_bool().unwrap()))
        .collect();
    assert_eq!(
        users,
        [(100, true), (102, false)],
        "both use the mapping; 9000 is a template"
    );
    assert_eq!(g["used_by"][0]["type"], "qemu");
    assert_eq!(g["used_by"][0]["one_of"], true);
    // Two GPUs: the container's /dev/dri nodes cannot be put on one.
    assert_eq!(pve1["device_nodes"][0]["vmid"], 200);

    // pve2: Perl-typed answers (iommugroup "15", mdev "1", vmid "101") read as numbers.
    let pve2 = &nodes[1];
    let gpus2 = pve2["gpus"].as_array().unwrap();
    let igpu = &gpus2[0];
    assert_eq!(igpu["address"], "0000:00:02.0");
    assert_eq!(igpu["mdev"], true);
    assert_eq!(igpu["virtfns"].as_array().unwrap().len(), 2);
    assert_eq!(
        gpus2[1]["physfn"], "0000:00:02.0",
        "an SR-IOV VF is a card of its own"
    );
    let rtx = gpus2.iter().find(|g| g["device"] == "2504").unwrap();
    assert_eq!(rtx["iommu_group"], "15");
    assert_eq!(
        rtx["used_by"],
        serde_json::json!([]),
        "VM 101's raw 01:00 is the NVMe now"
    );
    assert_eq!(
        rtx["mappings"],
        serde_json::json!([]),
        "the entry still says 01:00"
    );

    let err3 = nodes[2]["error"].as_str().unwrap();
    assert!(
        err3.contains("HTTP 595") && err3.contains("GET /nodes/pve3/hardware/pci"),
        "{err3}"
    );
    let err4 = nodes[3]["error"].as_str().unwrap();
    assert!(err4.contains("no answer within 1 s"), "{err4}");
    assert_eq!(nodes[4]["status"], "offline");
    assert!(nodes[4]["error"].as_str().unwrap().contains("offline"));

    let entries = v["mappings"][0]["entries"].as_array().unwrap();
    assert_eq!(v["mappings"][0]["name"], "rtx3060");
    assert_eq!(entries[0]["ok"], true);
    assert_eq!(entries[0]["problem"], Value::Null);
    assert_eq!(entries[2]["node"], "pve2");
    assert_eq!(entries[2]["ok"], false);
    assert_eq!(
        entries[2]["problem"],
        "'id' does not match for 'rtx3060' (144d:a808 != 10de:2504)"
    );
    // No call for guests on nodes that could not be read, none for the template.
    let paths: Vec<String> = m.requests().iter().map(|r| r.path.clone()).collect();
    assert!(!paths.iter().any(|p| p.contains("/9000/")), "{paths:?}");
    assert!(
        !paths.iter().any(|p| p.starts_with("/nodes/pve5")),
        "{paths:?}"
    );
    secret_only_in_auth_headers(&m);

    let text = cluster(&m, &tok, &["list"]);
    assert_eq!(text.code, 1);
    assert!(
        text.stdout.contains("pve1 (online): 2 GPUs"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains("used by VM 100 win11 (running"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains("pve3 (online): not read:"),
        "{}",
        text.stdout
    );
}

#[test]
fn a_wrong_fingerprint_stops_before_any_request_carries_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let tok = token_file(dir.path());
    let m = fixture_cluster(&token(), Duration::ZERO);
    let wrong = "5F:40:6C:F3:29:55:81:AB:2E:20:DB:C5:DE:CB:5C:0F:37:F0:80:FB:B3:52:A2:A9:F6:4E:C7:11:80:8A:7F:23";
    let url = m.url();
    for args in [
        &["list"][..],
        &["map", "rtx3060", "--gpu", "10de:2504", "--yes"][..],
    ] {
        let mut all = vec![
            "cluster",
            "--api",
            &url,
            "--token-file",
            tok.to_str().unwrap(),
            "--fingerprint",
            wrong,
        ];
        all.extend_from_slice(args);
        let r = run(&all, &[]);
        assert_eq!(r.code, 2, "{}", r.stderr);
        assert!(r.stderr.contains("not the pinned"), "{}", r.stderr);
        assert!(
            r.stderr.contains(&cert_fingerprint()),
            "names the certificate it saw: {}",
            r.stderr
        );
        assert!(r.stderr.contains("nothing was sent"), "{}", r.stderr);
    }
    assert!(
        m.requests().is_empty(),
        "no request arrived: {:?}",
        m.requests()
    );
    assert!(m.handshakes_failed() >= 2);
    let raw = m.raw_received();
    assert!(raw.is_empty(), "no application data arrived");
    assert!(!String::from_utf8_lossy(&raw).contains(SECRET));
}

#[test]
fn without_a_pin_a_self_signed_certificate_is_refused_and_nothing_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let tok = token_file(dir.path());
    let m = fixture_cluster(&token(), Duration::ZERO);
    let url = m.url();
    let r = run(
        &[
            "cluster",
            "--api",
            &url,
            "--token-file",
            tok.to_str().unwrap(),
            "list",
        ],
        &[],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("not trusted by the system's CAs")
            || r.stderr.contains("no CA certificates found"),
        "{}",
        r.stderr
    );
    assert!(m.requests().is_empty());
}

#[test]
fn the_pinned_fingerprint_is_accepted_in_any_case_and_the_token_file_can_come_from_the_environment()
{
    let dir = tempfile::tempdir().unwrap();
    let tok = token_file(dir.path());
    let m = fixture_cluster(&token(), Duration::ZERO);
    let url = m.url();
    let fp = cert_fingerprint().to_lowercase();
    let r = run(
        &[
            "cluster",
            "--api",
            &url,
            "--fingerprint",
            &fp,
            "--timeout",
            "1",
            "list",
            "--json",
        ],
        &[("PASSTHRU_PVE_TOKEN_FILE", tok.to_str().unwrap())],
    );
    assert_eq!(r.code, 1, "{}", r.stderr); // pve3..5 cannot be read; the rest is shown
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["nodes"][0]["gpus"].as_array().unwrap().len(), 2);
    assert!(m.requests().iter().any(|r| r.path == "/nodes"));
    secret_only_in_auth_headers(&m);
}

#[test]
fn a_refused_token_is_an_error_after_one_round_of_requests() {
    let dir = tempfile::tempdir().unwrap();
    let tok = token_file(dir.path());
    let m = fixture_cluster(
        "someone@pam!else=00000000-0000-0000-0000-000000000000",
        Duration::ZERO,
    );
    let r = cluster(&m, &tok, &["list"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("HTTP 401") && r.stderr.contains("authentication failure"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("token was refused"), "{}", r.stderr);
    // One round of calls and no retries (a 401 costs 3 s on a real pveproxy): only the three
    // first-round calls, made together, were sent; no node was asked.
    let mut paths: Vec<String> = m.requests().iter().map(|r| r.path.clone()).collect();
    paths.sort();
    assert_eq!(
        paths,
        ["/cluster/mapping/pci", "/cluster/resources", "/nodes"]
    );
}

#[test]
fn forbidden_and_server_errors_are_shown_per_part_and_the_rest_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let tok = token_file(dir.path());
    let m = fixture_cluster(&token(), Duration::ZERO);
    m.route(
        "GET",
        "/nodes/pve2/hardware/pci",
        Answer::error(403, "Permission check failed (/, Sys.Audit|Sys.Modify)"),
    );
    m.route(
        "GET",
        "/cluster/resources",
        Answer::error(500, "cfs-lock 'file-cluster_resources' error"),
    );
    let r = cluster(&m, &tok, &["list", "--json"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    let e2 = v["nodes"][1]["error"].as_str().unwrap();
    assert!(
        e2.contains("HTTP 403") && e2.contains("Sys.Audit") && e2.contains("docs/cluster.md"),
        "{e2}"
    );
    let errors = v["errors"].as_array().unwrap();
    assert!(
        errors[0]
            .as_str()
            .unwrap()
            .contains("GET /cluster/resources: HTTP 500: cfs-lock"),
        "{errors:?}"
    );
    assert_eq!(
        v["nodes"][0]["gpus"].as_array().unwrap().len(),
        2,
        "pve1 is still shown"
    );
}

#[test]
fn check_finds_the_drifted_entry_the_moved_raw_address_and_the_unread_nodes_with_fixes() {
    let dir = tempfile::tempdir().unwrap();
    let tok = token_file(dir.path());
    let m = fixture_cluster(&token(), Duration::from_secs(3));
    let r = cluster(&m, &tok, &["check", "--json"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    let f = v["findings"].as_array().unwrap();
    let rule = |id: &str| -> Vec<&Value> { f.iter().filter(|x| x["rule"] == id).collect() };
    let drift = rule("mapping.entry-invalid");
    assert_eq!(drift.len(), 1, "{f:?}");
    assert_eq!(drift[0]["node"], "pve2");
    let fix = drift[0]["fix"].as_str().unwrap();
    assert!(
        fix.contains("passthru cluster map rtx3060 --gpu 10de:2504 --nodes pve2"),
        "{fix}"
    );
    assert!(
        fix.contains("id=10de:2504,iommugroup=15,node=pve2,path=0000:02:00,subsystem-id=1462:397d"),
        "{fix}"
    );
    let moved = rule("guest.hostpci-moved");
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0]["subject"], "VM 101");
    let fix = moved[0]["fix"].as_str().unwrap();
    assert!(
        fix.contains("qm set 101 --hostpci0 0000:02:00,pcie=1,x-vga=1"),
        "{fix}"
    );
    let unread: Vec<&str> = rule("node.unread")
        .iter()
        .map(|x| x["node"].as_str().unwrap())
        .collect();
    assert_eq!(unread, ["pve3", "pve4", "pve5"]);
    assert!(
        rule("mapping.node-missing").is_empty(),
        "pve2 has an entry, if a wrong one"
    );

    let text = cluster(&m, &tok, &["check"]);
    assert!(
        text.stdout
            .contains("error [mapping.entry-invalid] mapping rtx3060 on pve2"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout
            .contains("PCI device mapping invalid (hardware probably changed)"),
        "{}",
        text.stdout
    );
}

#[test]
fn place_names_the_nodes_that_can_start_a_vm_and_why_the_others_cannot() {
    let dir = tempfile::tempdir().unwrap();
    let tok = token_file(dir.path());
    let m = fixture_cluster(&token(), Duration::from_secs(3));
    let r = cluster(&m, &tok, &["place", "102", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["candidates"][0]["node"], "pve1");
    assert_eq!(
        v["candidates"][0]["spare"], 0,
        "VM 100 holds one of the two entries"
    );
    let why = |n: &str| -> String {
        v["excluded"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["node"] == n)
            .unwrap()["reason"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(
        why("pve2").contains("does not match the hardware"),
        "{}",
        why("pve2")
    );
    assert!(why("pve3").contains("595"), "{}", why("pve3"));
    assert!(why("pve4").contains("no answer"), "{}", why("pve4"));
    assert!(why("pve5").contains("offline"), "{}", why("pve5"));

    // VM 101's raw address pins it to pve2, where it names the NVMe drive now.
    let r = cluster(&m, &tok, &["place", "101"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stdout.contains("No node can start VM 101 now."),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains(
            "pve1: raw hostpci address 0000:01:00 names a device on the VM's own node only"
        ),
        "{}",
        r.stdout
    );

    let r = cluster(&m, &tok, &["place", "--mapping", "rtx3060"]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("pve1: 0 spare entries"), "{}", r.stdout);
    let r = cluster(&m, &tok, &["place", "--mapping", "nope"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("no PCI mapping nope (there are: rtx3060)"),
        "{}",
        r.stderr
    );
}

#[test]
fn map_dry_run_prints_the_requests_and_sends_no_write() {
    let dir = tempfile::tempdir().unwrap();
    let tok = token_file(dir.path());
    let m = fixture_cluster(&token(), Duration::from_secs(3));
    let r = cluster(
        &m,
        &tok,
        &["map", "rtx3060", "--gpu", "10de:2504", "--ha", "--dry-run"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let out = &r.stdout;
    assert!(
        out.contains(
            "- id=10de:2504,iommugroup=14,node=pve2,path=0000:01:00,subsystem-id=1462:397d"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "+ id=10de:2504,iommugroup=15,node=pve2,path=0000:02:00,subsystem-id=1462:397d"
        ),
        "{out}"
    );
    assert!(
        out.contains("PUT /api2/json/cluster/mapping/pci/rtx3060"),
        "{out}"
    );
    assert!(
        out.contains("digest=b5a6552d5ad4265acf0e12640960a9f4b33e2f2f"),
        "{out}"
    );
    assert!(out.contains("POST /api2/json/cluster/ha/rules"), "{out}");
    assert!(out.contains("resources=vm:100,vm:102"), "{out}");
    assert!(out.contains("nodes=pve1,pve2"), "{out}");
    assert!(
        out.contains("Note: pve3 could not be read, so it gets no entry now"),
        "{out}"
    );
    assert!(
        m.requests().iter().all(|r| r.method == "GET"),
        "a dry run only reads"
    );
}

#[test]
fn map_writes_with_the_digest_verifies_and_is_then_up_to_date() {
    let dir = tempfile::tempdir().unwrap();
    let tok = token_file(dir.path());
    let m = fixture_cluster(&token(), Duration::from_secs(3));
    let r = cluster(&m, &tok, &["map", "rtx3060", "--gpu", "10de:2504", "--yes"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("Done: PUT /cluster/mapping/pci/rtx3060"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("Verified: GET /cluster/mapping/pci/rtx3060 has the 3 planned entries."),
        "{}",
        r.stdout
    );
    let (map, _) = m.mapping("rtx3060").unwrap();
    assert_eq!(
        map,
        [
            "id=10de:2504,iommugroup=14,node=pve1,path=0000:01:00,subsystem-id=1462:397d",
            "id=10de:2504,iommugroup=15,node=pve1,path=0000:02:00,subsystem-id=1462:397d",
            "id=10de:2504,iommugroup=15,node=pve2,path=0000:02:00,subsystem-id=1462:397d",
        ]
    );
    let put = m
        .requests()
        .into_iter()
        .find(|r| r.method == "PUT")
        .unwrap();
    assert!(put.params().contains(&(
        "digest".into(),
        "b5a6552d5ad4265acf0e12640960a9f4b33e2f2f".into()
    )));
    assert_eq!(put.params().iter().filter(|(k, _)| k == "map").count(), 3);
    secret_only_in_auth_headers(&m);

    let again = cluster(&m, &tok, &["map", "rtx3060", "--gpu", "10de:2504", "--yes"]);
    assert_eq!(again.code, 0);
    assert!(
        again.stdout.contains("mapping rtx3060 is up to date"),
        "{}",
        again.stdout
    );
    assert!(
        again.stdout.contains("Nothing to change."),
        "{}",
        again.stdout
    );
    let check = cluster(&m, &tok, &["check", "--json"]);
    let v: Value = serde_json::from_str(&check.stdout).unwrap();
    assert!(!v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["rule"] == "mapping.entry-invalid"));
}

#[test]
fn map_creates_a_new_mapping_with_post_and_the_ha_rule() {
    let dir = tempfile::tempdir().unwrap();
    let tok = token_file(dir.path());
    let m = fixture_cluster(&token(), Duration::from_secs(3));
    let r = cluster(
        &m,
        &tok,
        &[
            "map",
            "igpu",
            "--gpu",
            "AlderLake",
            "--nodes",
            "pve2",
            "--ha",
            "101",
            "--yes",
        ],
    );
    // VM 101 is not HA-managed: refused before any write.
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("ha-manager add vm:101"), "{}", r.stderr);
    let r = cluster(
        &m,
        &tok,
        &[
            "map",
            "igpu",
            "--gpu",
            "0000:00:02.0",
            "--nodes",
            "pve2",
            "--yes",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let post = m
        .requests()
        .into_iter()
        .find(|r| r.method == "POST")
        .unwrap();
    assert_eq!(post.path, "/cluster/mapping/pci");
    assert_eq!(
        post.params(),
        [
            ("id".to_string(), "igpu".to_string()),
            (
                "map".into(),
                "id=8086:4680,iommugroup=0,node=pve2,path=0000:00:02.0,subsystem-id=1462:7d25"
                    .into()
            ),
            ("mdev".into(), "1".into()),
        ]
    );
    let r = cluster(
        &m,
        &tok,
        &["map", "rtx3060", "--gpu", "10de:2504", "--ha", "--yes"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rules = m.ha_rules();
    assert_eq!(rules[0]["type"], "node-affinity");
    assert_eq!(rules[0]["rule"], "passthru-rtx3060");
    assert_eq!(rules[0]["nodes"], "pve1,pve2");
    assert_eq!(rules[0]["strict"], "1");
}

#[test]
fn map_refuses_a_concurrent_change_and_an_unknown_selector() {
    let dir = tempfile::tempdir().unwrap();
    let tok = token_file(dir.path());
    let m = fixture_cluster(&token(), Duration::from_secs(3));
    m.set_concurrent_writer();
    let r = cluster(&m, &tok, &["map", "rtx3060", "--gpu", "10de:2504", "--yes"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("detected modified configuration - file changed by other user? Try again."),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("nothing was changed"), "{}", r.stderr);
    let r = cluster(
        &m,
        &tok,
        &["map", "rtx3060", "--gpu", "10de:9999", "--dry-run"],
    );
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("no GPU matches \"10de:9999\" on pve1, pve2"),
        "{}",
        r.stderr
    );
    let r = cluster(
        &m,
        &tok,
        &[
            "map",
            "rtx3060",
            "--gpu",
            "10de:2504",
            "--nodes",
            "pve9",
            "--dry-run",
        ],
    );
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("pve9 is not a node of the cluster"),
        "{}",
        r.stderr
    );
}

#[test]
fn connection_options_are_checked_before_anything_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let tok = token_file(dir.path());
    let t = tok.to_str().unwrap();
    for (args, want) in [
        (
            vec!["cluster", "--api", "https://127.0.0.1:1", "list"],
            "--api needs an API token",
        ),
        (
            vec![
                "cluster",
                "--api",
                "http://pve1:8006",
                "--token-file",
                t,
                "list",
            ],
            "only HTTPS",
        ),
        (
            vec![
                "cluster",
                "--api",
                "https://pve1:8006",
                "--token-file",
                t,
                "--fingerprint",
                "AB:CD",
                "list",
            ],
            "not a SHA-256 fingerprint",
        ),
        (vec!["cluster", "--token-file", t, "list"], "are for --api"),
    ] {
        let r = run(&args, &[]);
        assert_eq!(r.code, 2, "{args:?}");
        assert!(r.stderr.contains(want), "{args:?}: {}", r.stderr);
    }
    let bad = dir.path().join("bad");
    std::fs::write(&bad, format!("{SECRET}\n")).unwrap();
    let r = run(
        &[
            "cluster",
            "--api",
            "https://127.0.0.1:1",
            "--token-file",
            bad.to_str().unwrap(),
            "list",
        ],
        &[],
    );
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("does not hold one line USER@REALM!TOKENID=SECRET"),
        "{}",
        r.stderr
    );
}
