//! `passthru cluster` on a node, through `pvesh`: a stub `pvesh` first on PATH replays the
//! same documented shapes as the HTTPS mock (tests/fixtures/pve-api, see its README; pvesh
//! prints the result without the `{"data": ...}` envelope, PROXMOX-API.md §2.1), records
//! the argv it was given, fails like pvesh's ssh proxy for pve3 and is slow for pve4.

#[path = "common/pve_mock.rs"]
mod pve_mock;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

const SECRET: &str = "5e1f0c2a-9b7d-4e3f-8a6b-c0ffee123456";

const STUB: &str = r#"#!/bin/sh
d="$(dirname "$0")"
# One write per call: calls run in parallel, and printf per word would interleave them.
line=; for a in "$@"; do line="$line[$a]"; done
printf '%s\n' "$line" >> "$d/argv.log"
key=$(printf '%s_%s' "$1" "$2" | tr '/' '_')
if [ -f "$d/sleep/$key" ]; then sleep "$(cat "$d/sleep/$key")"; fi
if [ -f "$d/fail/$key" ]; then cat "$d/fail/$key" >&2; exit 255; fi
case "$1" in create|set) touch "$d/written"; exit 0;; esac
if [ -f "$d/written" ] && [ -f "$d/out2/$key" ]; then cat "$d/out2/$key"; exit 0; fi
if [ -f "$d/out/$key" ]; then cat "$d/out/$key"; exit 0; fi
echo "no '$2' href" >&2; exit 2
"#;

struct Stub {
    dir: tempfile::TempDir,
}

fn data_of(fixture: &str) -> String {
    let v: Value = serde_json::from_str(&pve_mock::fixture(&format!("cluster/{fixture}"))).unwrap();
    // pvesh --output-format json: one line, the raw result.
    serde_json::to_string(&v["data"]).unwrap()
}

impl Stub {
    fn new() -> Stub {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pvesh");
        std::fs::write(&p, STUB).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        for sub in ["out", "out2", "fail", "sleep"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        let s = Stub { dir };
        for (path, fixture) in [
            ("/nodes", "nodes.json"),
            ("/nodes/pve1/hardware/pci", "pci-pve1.json"),
            ("/nodes/pve2/hardware/pci", "pci-pve2.json"),
            ("/nodes/pve4/hardware/pci", "pci-pve2.json"),
            ("/cluster/resources", "resources-vm.json"),
            ("/cluster/mapping/pci", "mapping-pci.json"),
            ("/cluster/mapping/pci/rtx3060", "mapping-rtx3060.json"),
            ("/nodes/pve1/qemu/100/config", "config-100.json"),
            ("/nodes/pve2/qemu/101/config", "config-101.json"),
            ("/nodes/pve1/qemu/102/config", "config-102.json"),
            ("/nodes/pve1/lxc/200/config", "config-lxc-200.json"),
            ("/cluster/ha/rules", "ha-rules.json"),
        ] {
            s.answer("out", "get", path, &data_of(fixture));
        }
        // pvesh proxies other nodes' calls over ssh (PVE/CLI/pvesh.pm proxy_handler).
        s.answer(
            "fail",
            "get",
            "/nodes/pve3/hardware/pci",
            "ssh: connect to host 10.0.0.3 port 22: No route to host\nproxy handler failed\n",
        );
        s.answer("sleep", "get", "/nodes/pve4/hardware/pci", "5");
        s
    }

    fn key(verb: &str, path: &str) -> String {
        format!("{verb}_{path}").replace('/', "_")
    }

    fn answer(&self, kind: &str, verb: &str, path: &str, text: &str) {
        std::fs::write(self.dir.path().join(kind).join(Self::key(verb, path)), text).unwrap();
    }

    fn path_env(&self) -> String {
        format!(
            "{}:{}",
            self.dir.path().display(),
            std::env::var("PATH").unwrap_or_default()
        )
    }

    /// Every argv pvesh got, as `[arg][arg]...` lines.
    fn argv(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("argv.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn run(&self, args: &[&str], token_file: Option<&Path>) -> (i32, String, String) {
        let mut c = Command::new(env!("CARGO_BIN_EXE_passthru"));
        c.arg("cluster")
            .arg("--timeout")
            .arg("1")
            .args(args)
            .env("PATH", self.path_env());
        c.env("NO_COLOR", "1");
        match token_file {
            // Left in the environment, it must not leak into pvesh's argv.
            Some(t) => c.env("PASSTHRU_PVE_TOKEN_FILE", t),
            None => c.env_remove("PASSTHRU_PVE_TOKEN_FILE"),
        };
        let o = c.output().unwrap();
        let (out, err) = (
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        );
        assert!(!out.contains(SECRET) && !err.contains(SECRET));
        (o.status.code().unwrap_or(-1), out, err)
    }
}

fn token_file(dir: &Path) -> PathBuf {
    let p = dir.join("token");
    std::fs::write(&p, format!("root@pam!t={SECRET}\n")).unwrap();
    p
}

#[test]
fn list_through_pvesh_passes_an_argv_and_reads_the_same_shapes() {
    let s = Stub::new();
    let tok = token_file(s.dir.path());
    let t0 = Instant::now();
    let (code, out, err) = s.run(&["list", "--json"], Some(&tok));
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "pve4's 5 s are not waited for"
    );
    assert_eq!(code, 1, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["source"], "pvesh on this node");
    assert_eq!(v["nodes"][0]["gpus"].as_array().unwrap().len(), 2);
    assert_eq!(v["nodes"][1]["gpus"][0]["mdev"], true, "Perl's \"1\"");
    let e3 = v["nodes"][2]["error"].as_str().unwrap();
    assert!(
        e3.contains("GET /nodes/pve3/hardware/pci: pvesh failed")
            && e3.contains("No route to host"),
        "{e3}"
    );
    let e4 = v["nodes"][3]["error"].as_str().unwrap();
    assert!(e4.contains("no answer within 1 s"), "{e4}");
    let argv = s.argv();
    for want in [
        "[get][/nodes][--output-format][json]",
        "[get][/nodes/pve1/hardware/pci][--pci-class-blacklist][][--output-format][json]",
        "[get][/cluster/resources][--type][vm][--output-format][json]",
        "[get][/cluster/mapping/pci][--output-format][json]",
        "[get][/nodes/pve1/qemu/100/config][--current][1][--output-format][json]",
        "[get][/nodes/pve1/qemu/102/config][--output-format][json]",
        "[get][/nodes/pve1/lxc/200/config][--current][1][--output-format][json]",
    ] {
        assert!(argv.iter().any(|a| a == want), "{want} not in {argv:#?}");
    }
    for a in &argv {
        assert!(!a.contains(SECRET) && !a.contains("token"), "{a}");
    }
}

#[test]
fn check_and_place_through_pvesh_agree_with_the_https_answers() {
    let s = Stub::new();
    let (code, out, _) = s.run(&["check", "--json"], None);
    assert_eq!(code, 1);
    let v: Value = serde_json::from_str(&out).unwrap();
    let rules: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule"].as_str().unwrap())
        .collect();
    assert!(
        rules.contains(&"mapping.entry-invalid") && rules.contains(&"guest.hostpci-moved"),
        "{rules:?}"
    );
    let (code, out, _) = s.run(&["place", "102"], None);
    assert_eq!(code, 0);
    assert!(
        out.contains("pve1 (where it is now): 0 spare entries after it"),
        "{out}"
    );
    assert!(
        out.contains("No route to host; proxy handler failed"),
        "{out}"
    );
}

#[test]
fn map_through_pvesh_sets_the_whole_map_with_the_digest() {
    let s = Stub::new();
    let (code, out, err) = s.run(&["map", "rtx3060", "--gpu", "10de:2504", "--dry-run"], None);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("PUT /api2/json/cluster/mapping/pci/rtx3060"),
        "{out}"
    );
    assert!(
        !s.argv().iter().any(|a| a.starts_with("[set]")),
        "a dry run writes nothing"
    );

    let after = serde_json::json!({"digest":"c0c0","map":[
        "id=10de:2504,iommugroup=14,node=pve1,path=0000:01:00,subsystem-id=1462:397d",
        "id=10de:2504,iommugroup=15,node=pve1,path=0000:02:00,subsystem-id=1462:397d",
        "id=10de:2504,iommugroup=15,node=pve2,path=0000:02:00,subsystem-id=1462:397d"],"type":"pci"});
    s.answer(
        "out2",
        "get",
        "/cluster/mapping/pci/rtx3060",
        &after.to_string(),
    );
    let (code, out, err) = s.run(&["map", "rtx3060", "--gpu", "10de:2504", "--yes"], None);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("Verified"), "{out}");
    let set: Vec<String> = s
        .argv()
        .into_iter()
        .filter(|a| a.starts_with("[set]"))
        .collect();
    assert_eq!(
        set,
        ["[set][/cluster/mapping/pci/rtx3060]\
          [--map][id=10de:2504,iommugroup=14,node=pve1,path=0000:01:00,subsystem-id=1462:397d]\
          [--map][id=10de:2504,iommugroup=15,node=pve1,path=0000:02:00,subsystem-id=1462:397d]\
          [--map][id=10de:2504,iommugroup=15,node=pve2,path=0000:02:00,subsystem-id=1462:397d]\
          [--digest][b5a6552d5ad4265acf0e12640960a9f4b33e2f2f][--output-format][json]"]
    );
}

#[test]
fn without_pvesh_the_error_says_where_to_run_or_how_to_connect() {
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_passthru"))
        .args(["cluster", "list"])
        .env("PATH", dir.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("pvesh is not on PATH") && err.contains("--api https://HOST:8006"),
        "{err}"
    );
}
