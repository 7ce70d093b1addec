//! The advisor against the guide's use cases: what it picks, and that it says why a card is
//! ruled out. The picks follow the guide's reasoning (Quick Sync for transcoding, VRAM first
//! for LLMs, a Coral for Frigate, low-profile 75 W cards for small-form-factor boxes); where
//! our ranking differs, the reasons printed say why.

use passthru::advise::rank::{advise, AdviseRequest, UseCase};

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

fn top(r: &AdviseRequest, n: usize) -> Vec<String> {
    advise(r)
        .unwrap()
        .picks
        .iter()
        .take(n)
        .map(|p| p.key.clone())
        .collect()
}

#[test]
fn transcoding_prefers_quick_sync() {
    let picks = top(&req(UseCase::Transcode), 3);
    assert!(
        picks.iter().all(|k| k.contains("uhd")),
        "Intel iGPUs first: {picks:?}"
    );
    // More streams than the consumer NVENC cap rules GeForce cards out, and says why.
    let mut many = req(UseCase::Transcode);
    many.streams = 10;
    many.nvidia_driver = Some("551.23".into());
    let r = advise(&many).unwrap();
    let g = r
        .ruled_out
        .iter()
        .find(|p| p.key == "rtx-3060-12gb")
        .unwrap();
    assert!(
        g.ruled_out
            .as_deref()
            .unwrap()
            .contains("8 simultaneous sessions"),
        "{:?}",
        g.ruled_out
    );
    assert!(!r.picks.iter().any(|p| p.key == "rtx-3060-12gb"));
    // An N100 box has only its iGPU.
    let mut n100 = req(UseCase::Transcode);
    n100.server = Some("n100".into());
    assert_eq!(top(&n100, 5), ["n100-uhd"]);
}

#[test]
fn small_form_factor_gets_low_profile_75_watt_cards() {
    let mut r = req(UseCase::Transcode);
    r.server = Some("optiplex-sff".into());
    let report = advise(&r).unwrap();
    for p in &report.picks {
        let g = passthru::advise::catalog::gpu_by_key(&p.key).unwrap();
        assert!(
            g.low_profile && g.tdp_w <= 75.0 && g.power_connector == "none",
            "{}",
            p.key
        );
    }
    assert!(
        report.picks.iter().any(|p| p.key == "t400-4gb")
            && report.picks.iter().any(|p| p.key == "rtx-a2000-12gb")
    );
    let big = report
        .ruled_out
        .iter()
        .find(|p| p.key == "rtx-3090")
        .unwrap();
    assert!(big.ruled_out.as_deref().unwrap().contains("low-profile"));
}

#[test]
fn llm_fit_is_about_vram_and_speed() {
    let mut r = req(UseCase::Llm);
    r.model = Some("qwen2.5-14b".into());
    let report = advise(&r).unwrap();
    assert!(
        report.picks.iter().any(|p| p.key == "rtx-3060-12gb"),
        "a 14B Q4 fits 12 GB"
    );
    let small = report
        .ruled_out
        .iter()
        .find(|p| p.key == "rtx-4060")
        .unwrap();
    assert!(
        small.ruled_out.as_deref().unwrap().contains("needs"),
        "8 GB is too small: {:?}",
        small.ruled_out
    );
    // Value ranking for a 32B model: the guide's cheap 24 GB Tesla P40 and the used RTX 3090
    // lead (speed against price), ahead of new flagships.
    r.model = Some("qwen2.5-32b".into());
    let best = top(&r, 2);
    assert!(
        best.contains(&"tesla-p40".to_string()) && best.contains(&"rtx-3090".to_string()),
        "{best:?}"
    );
    // 70B: no single card, pairs named.
    r.model = Some("70b".into());
    let report = advise(&r).unwrap();
    assert!(report.picks.is_empty());
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("2x GeForce RTX 3090")),
        "{:?}",
        report.notes
    );
    // Budget rules out what costs more.
    r.model = Some("8b".into());
    r.budget_usd = Some(300.0);
    assert!(advise(&r)
        .unwrap()
        .picks
        .iter()
        .all(|p| p.used_price_usd.unwrap_or(0.0) <= 300.0));
}

#[test]
fn frigate_gets_a_coral_and_vms_avoid_reset_trouble() {
    assert_eq!(top(&req(UseCase::CameraAi), 1), ["coral-usb"]);
    let vm = advise(&req(UseCase::GamingVm)).unwrap();
    let first = &vm.picks[0];
    assert!(
        passthru::advise::catalog::gpu_by_key(&first.key)
            .unwrap()
            .reset_family
            .is_none(),
        "{first:?}"
    );
    let amd = vm.picks.iter().find(|p| p.key == "rx-7800-xt").unwrap();
    assert!(
        amd.reasons.iter().any(|r| r.contains("reset")),
        "the guide's RX 7800 XT pick ranks lower, and says why: {:?}",
        amd.reasons
    );
}

#[test]
fn a_host_ranks_its_own_gpu_first() {
    let mut r = req(UseCase::Llm);
    r.host_gpus = vec!["10de:2204".into()]; // an RTX 3090
    let report = advise(&r).unwrap();
    assert_eq!(report.picks[0].key, "rtx-3090");
    assert!(report.picks[0].reasons[0].contains("already in this host"));
}

#[test]
fn an_always_on_card_is_compared_with_a_whole_n100_box() {
    let r = advise(&req(UseCase::Transcode)).unwrap();
    let note = r
        .notes
        .iter()
        .find(|n| n.contains("For comparison"))
        .expect("the comparison note");
    assert!(note.contains("N100"), "{note}");
    // Not for jobs an N100 cannot do.
    assert!(!advise(&req(UseCase::Llm))
        .unwrap()
        .notes
        .iter()
        .any(|n| n.contains("For comparison")));
}
