//! `passthru advise` as a buyer runs it: on a host tree (the NVIDIA driver and iGPU are read
//! from it), with mistyped inputs (exit 2 naming the valid choices), and `--json` carrying an
//! estimate for every card it lists.

use std::path::Path;
use std::process::{Command, Output};

fn passthru(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_passthru"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn host(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    passthru_testkit::build_named(name, dir.path()).unwrap();
    dir
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn the_nvenc_cap_is_the_host_drivers() {
    // nvidia-desktop: an RTX 3080 (10de:2206) with driver 550.54.14 in proc/driver/nvidia/version;
    // the 550 branch has the 8-session cap (keylase/nvidia-patch#776), so 9 streams rule it out.
    let h = host("nvidia-desktop");
    let out = passthru(&[
        "advise",
        "--use",
        "transcode",
        "--streams",
        "9",
        "--json",
        "--root",
        s(h.path()),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let card = v["ruled_out"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["key"] == "rtx-3080")
        .expect("the host's RTX 3080");
    assert_eq!(card["already_installed"], true);
    let why = card["ruled_out"].as_str().unwrap();
    assert!(
        why.contains("8 simultaneous sessions with driver 550.54.14"),
        "{why}"
    );
    // An AMD CPU: no Intel iGPU is offered.
    assert!(!v["picks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["key"].as_str().unwrap().starts_with("uhd-")));
}

#[test]
fn an_n100_host_gets_no_discrete_card() {
    let h = host("intel-n100");
    let out = passthru(&[
        "advise",
        "--use",
        "transcode",
        "--json",
        "--root",
        s(h.path()),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let picks: Vec<&str> = v["picks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["key"].as_str().unwrap())
        .collect();
    assert_eq!(picks, ["n100-uhd"], "{picks:?}");
}

#[test]
fn mistyped_inputs_exit_2_and_name_the_valid_choices() {
    for (args, expect) in [
        (&["--use", "llm", "--model", "llama-9"][..], "qwen2.5-7b"),
        (&["--use", "llm", "--model", ""][..], "llama-3.1-8b"),
        (&["--use", "llm", "--quant", "Q9"][..], "Q4_K_M"),
        (&["--use", "llm", "--server", "nas"][..], "diy-nas"),
        (&["--use", "llm", "--context", "0"][..], "--context 0"),
        (&["--use", "llm", "--price-kwh=-1"][..], "--price-kwh"),
        (&["--use", "llm", "--price-kwh", "NaN"][..], "--price-kwh"),
        (&["--use", "llm", "--price-kwh", "1e308"][..], "--price-kwh"),
        (&["--use", "llm", "--budget=-5"][..], "--budget"),
        (&["--use", "llm", "--gpu", "RTX 9999"][..], "--gpu"),
        (&["--use", "sometimes"][..], "transcode"),
    ] {
        let mut a = vec!["advise"];
        a.extend(args);
        a.extend(["--server", "r730"]);
        // A --server given twice is refused by clap; the --server cases pass their own first.
        if args.contains(&"--server") {
            a.truncate(a.len() - 2);
        }
        let out = passthru(&a);
        assert_eq!(out.status.code(), Some(2), "{a:?}: {}", text(&out.stdout));
        let err = text(&out.stderr);
        assert!(err.contains(expect), "{a:?}: {err}");
        assert!(out.stdout.is_empty(), "{a:?}");
    }
}

#[test]
fn json_carries_an_estimate_for_every_card_listed() {
    let out = passthru(&[
        "advise",
        "--use",
        "llm",
        "--model",
        "mixtral-8x7b",
        "--server",
        "r730",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let cards: Vec<&serde_json::Value> = v["picks"]
        .as_array()
        .unwrap()
        .iter()
        .chain(v["ruled_out"].as_array().unwrap())
        .collect();
    assert!(cards.len() > 150, "{} cards", cards.len());
    for c in cards {
        let e = &c["estimate"];
        for k in [
            "decode_tokens_per_s",
            "decode_tokens_per_s_full_context",
            "prompt_tokens_per_s",
            "vram_gib",
        ] {
            assert!(e.get(k).is_some(), "{}: {k} missing", c["key"]);
        }
    }
    assert_eq!(v["model"], "mixtral-8x7b");
}
