//! Local-LLM calculator: how much VRAM a GGUF model needs and how fast a GPU generates with it.
//!
//! Pure arithmetic; no I/O. The models behind each number:
//! - **Weights** = params × bits-per-weight / 8 bytes. The bits-per-weight table is llama.cpp's
//!   (`tools/quantize/README.md`, measured on Llama-3.1-8B, so it already includes the tensors
//!   llama.cpp keeps at higher precision). It reproduces that README's sizes to 0.01 GiB.
//! - **KV cache** = 2 (K and V) × layers × context × KV heads × head dim × bytes per element.
//! - **Overhead** = [`OVERHEAD_FIXED_GIB`] + [`OVERHEAD_WEIGHT_SHARE`] × weights (CUDA context,
//!   cuBLAS workspace, compute buffers and allocator slack); see `docs/advice.md`, "LLM fit".
//! - **Decode speed**: `advise` uses `super::speed` (KV cache at depth, MoE active weights, card
//!   classes, checked on held-out measurements). [`decode_tokens_per_s`] here is the plain
//!   one-constant model ([`DECODE_EFFICIENCY`] × bandwidth / weight bytes) that `tests/llm.rs`
//!   keeps as the corpus baseline.
//!
//! Units: sizes in GiB (2^30 bytes), bandwidth in GB/s (10^9 bytes/s), params in billions (10^9).

use serde::Serialize;

const GIB: f64 = 1_073_741_824.0;

/// A llama.cpp quantisation type and its average bits per weight over a whole model file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quant {
    pub name: &'static str,
    pub bits_per_weight: f64,
}

const fn q(name: &'static str, bits_per_weight: f64) -> Quant {
    Quant {
        name,
        bits_per_weight,
    }
}

/// Bits per weight. Source: ggml-org/llama.cpp `tools/quantize/README.md` (commit
/// 311c2c9f0ebd6e08f5b20e8827c654cebb7a41d6), table for Llama-3.1-8B, except where noted.
static QUANTS: &[Quant] = &[
    q("IQ1_S", 2.0042),
    q("IQ1_M", 2.1460),
    q("IQ2_XXS", 2.3824),
    q("IQ2_XS", 2.5882),
    q("IQ2_S", 2.7403),
    q("IQ2_M", 2.9294),
    q("IQ3_XXS", 3.2548),
    q("IQ3_XS", 3.4977),
    q("IQ3_S", 3.6606),
    q("IQ3_M", 3.7628),
    q("IQ4_XS", 4.4597),
    q("IQ4_NL", 4.6818),
    q("Q2_K_S", 2.9697),
    q("Q2_K", 3.1593),
    q("Q3_K_S", 3.6429),
    // Not in the README table: llama.cpp `tools/quantize/quantize.cpp` QUANT_OPTIONS gives
    // "Q3_K_M: 3.74G @ Llama-3-8B" -> 3.74 × 2^30 × 8 / 8.03e9 = 4.00 bpw.
    q("Q3_K_M", 4.0008),
    q("Q3_K_L", 4.2979),
    // Not in the README table: Q4_0 blocks are 4.5 bpw; the GGUF file (Q6_K output tensor)
    // averages 4.54: LLaMA-2 7B Q4_0 is 3.56 GiB for 6.74e9 params in llama.cpp's own load
    // log (XiongjieDai/GPU-Benchmarks-on-LLM-Inference notebooks).
    q("Q4_0", 4.5372),
    q("Q4_K_S", 4.6672),
    q("Q4_K_M", 4.8944),
    q("Q5_K_S", 5.5704),
    q("Q5_K_M", 5.7036),
    q("Q6_K", 6.5633),
    q("Q8_0", 8.5008),
    q("F16", 16.0005),
    // BF16 has the same 2-byte layout as F16.
    q("BF16", 16.0005),
];

/// All known quantisation types.
pub fn quants() -> &'static [Quant] {
    QUANTS
}

/// Look up a quantisation type by name, case-insensitively ("q4_k_m", "Q8_0", "F16", "BF16").
/// llama.cpp's aliases "Q3_K", "Q4_K", "Q5_K" name the `_M` variants.
pub fn quant(name: &str) -> Option<Quant> {
    let name = name.trim();
    let name = match name.to_ascii_uppercase().as_str() {
        "Q3_K" => "Q3_K_M",
        "Q4_K" => "Q4_K_M",
        "Q5_K" => "Q5_K_M",
        _ => name,
    };
    QUANTS
        .iter()
        .find(|q| q.name.eq_ignore_ascii_case(name))
        .copied()
}

/// A model's size and the architecture numbers that set its KV cache.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    pub name: String,
    /// Total parameters in billions (all experts for a mixture of experts: all stay in memory).
    pub params_b: f64,
    /// Parameters read per generated token, in billions: `params_b` for dense models, the
    /// shared weights plus the routed experts for a mixture of experts (Mixtral 8x7B: 12.9).
    pub active_params_b: f64,
    pub layers: u32,
    /// Key/value heads (fewer than query heads under grouped-query attention).
    pub kv_heads: u32,
    pub head_dim: u32,
    /// The context the model was trained for (`max_position_embeddings`).
    pub max_context: u32,
}

/// (name, params_b, active_params_b, layers, kv_heads, head_dim, max_context). Architecture
/// numbers are from each model's `config.json` on Hugging Face (num_hidden_layers,
/// num_key_value_heads, head_dim or hidden_size / num_attention_heads,
/// max_position_embeddings); parameter counts are the total the safetensors hold, which the
/// Q8_0 GGUF sizes in model cards confirm to within 1% (`tests/llm.rs`).
type ModelRow = (&'static str, f64, f64, u32, u32, u32, u32);
const MODELS: &[ModelRow] = &[
    // meta-llama/Llama-3.1-8B: 32 layers, 8 KV heads, 4096 / 32 heads, 131072 positions.
    ("llama-3.1-8b", 8.03, 8.03, 32, 8, 128, 131_072),
    // meta-llama/Llama-3.1-70B: 80 layers, 8 KV heads, 8192 / 64 heads.
    ("llama-3.1-70b", 70.6, 70.6, 80, 8, 128, 131_072),
    // meta-llama/Llama-3.2-3B: 28 layers, 8 KV heads, 3072 / 24 heads.
    ("llama-3.2-3b", 3.21, 3.21, 28, 8, 128, 131_072),
    // meta-llama/Llama-2-7b-hf: 32 layers, no GQA (32 KV heads), 4096 / 32, 4096 positions.
    ("llama-2-7b", 6.74, 6.74, 32, 32, 128, 4096),
    // meta-llama/Llama-2-13b-hf: 40 layers, no GQA (40 KV heads), 5120 / 40.
    ("llama-2-13b", 13.02, 13.02, 40, 40, 128, 4096),
    // meta-llama/Llama-2-70b-hf: 80 layers, 8 KV heads, 8192 / 64.
    ("llama-2-70b", 68.98, 68.98, 80, 8, 128, 4096),
    // codellama/CodeLlama-34b-hf: 48 layers, 8 KV heads, 8192 / 64, 16384 positions.
    ("codellama-34b", 33.74, 33.74, 48, 8, 128, 16_384),
    // mistralai/Mistral-7B-v0.1: 32 layers, 8 KV heads, 4096 / 32, 32768 positions.
    ("mistral-7b", 7.24, 7.24, 32, 8, 128, 32_768),
    // mistralai/Mixtral-8x7B-v0.1: 32 layers, 8 KV heads, 4096 / 32; 46.7B total. Two of eight
    // experts per token: Mistral's announcement gives 12.9B active parameters per token.
    ("mixtral-8x7b", 46.7, 12.9, 32, 8, 128, 32_768),
    // Qwen/Qwen2.5-7B: 28 layers, 4 KV heads, 3584 / 28, 131072 positions.
    ("qwen2.5-7b", 7.62, 7.62, 28, 4, 128, 131_072),
    // Qwen/Qwen2.5-14B: 48 layers, 8 KV heads, 5120 / 40.
    ("qwen2.5-14b", 14.77, 14.77, 48, 8, 128, 131_072),
    // Qwen/Qwen2.5-32B: 64 layers, 8 KV heads, 5120 / 40.
    ("qwen2.5-32b", 32.76, 32.76, 64, 8, 128, 131_072),
    // deepseek-ai/DeepSeek-R1-Distill-Qwen-32B: the Qwen2.5-32B architecture.
    (
        "deepseek-r1-distill-qwen-32b",
        32.76,
        32.76,
        64,
        8,
        128,
        131_072,
    ),
    // google/gemma-2-9b: 42 layers, 8 KV heads, head_dim 256 (explicit in config), 8192.
    ("gemma-2-9b", 9.24, 9.24, 42, 8, 256, 8192),
    // google/gemma-2-27b: 46 layers, 16 KV heads, head_dim 128 (explicit in config).
    ("gemma-2-27b", 27.23, 27.23, 46, 16, 128, 8192),
];

/// Plain sizes and the current model that stands for them (the answer says which). 7B is
/// Qwen 2.5 7B, not Llama 2: Llama 2's 4096-token window is below the default context, and
/// its KV cache (no grouped-query attention) is four times a current 7B's. 13B has no current
/// model of that size, so it stays Llama 2 13B, whose context is clamped to 4096.
const PLAIN_SIZES: &[(&str, &str)] = &[
    ("3b", "llama-3.2-3b"),
    ("7b", "qwen2.5-7b"),
    ("8b", "llama-3.1-8b"),
    ("9b", "gemma-2-9b"),
    ("13b", "llama-2-13b"),
    ("14b", "qwen2.5-14b"),
    ("27b", "gemma-2-27b"),
    ("32b", "qwen2.5-32b"),
    ("34b", "codellama-34b"),
    ("70b", "llama-3.1-70b"),
];

/// Every known model name, for error messages.
pub fn model_names() -> Vec<&'static str> {
    MODELS.iter().map(|m| m.0).collect()
}

/// The plain sizes (`7b`, `13b`, ...) [`model`] resolves.
pub fn plain_sizes() -> Vec<&'static str> {
    PLAIN_SIZES.iter().map(|p| p.0).collect()
}

/// Look up a known model ("llama-3.1-8b", "mixtral-8x7b", ...) or a plain size ("13b"),
/// case-insensitively. A plain size returns its representative model under that model's name.
pub fn model(name: &str) -> Option<ModelSpec> {
    let key = name.trim().to_ascii_lowercase();
    let key = PLAIN_SIZES
        .iter()
        .find(|(size, _)| *size == key)
        .map_or(key.as_str(), |(_, m)| m);
    MODELS.iter().find(|(n, ..)| *n == key).map(
        |&(n, params_b, active_params_b, layers, kv_heads, head_dim, max_context)| ModelSpec {
            name: n.to_string(),
            params_b,
            active_params_b,
            layers,
            kv_heads,
            head_dim,
            max_context,
        },
    )
}

/// VRAM needed to run a model on GPU, all in GiB.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct VramEstimate {
    pub weights_gib: f64,
    pub kv_cache_gib: f64,
    pub overhead_gib: f64,
    pub total_gib: f64,
}

/// Weight memory: params × bits per weight / 8 bytes, in GiB.
pub fn weights_gib(params_b: f64, bits_per_weight: f64) -> f64 {
    params_b * 1e9 * bits_per_weight / 8.0 / GIB
}

/// KV cache: 2 (K and V) × layers × context × kv_heads × head_dim × bytes per element
/// (2 for f16, 1.0625 for q8_0), in GiB.
pub fn kv_cache_gib(m: &ModelSpec, context: u32, bytes_per_element: f64) -> f64 {
    2.0 * f64::from(m.layers)
        * f64::from(context)
        * f64::from(m.kv_heads)
        * f64::from(m.head_dim)
        * bytes_per_element
        / GIB
}

/// Fixed runtime overhead: CUDA context and cuBLAS workspace (about 0.3 to 0.5 GiB per process).
pub const OVERHEAD_FIXED_GIB: f64 = 0.5;
/// Overhead that grows with the model: llama.cpp compute buffers (logits and activations scale
/// with vocabulary and width, which grow with parameter count) and allocator slack.
pub const OVERHEAD_WEIGHT_SHARE: f64 = 0.02;

/// Weights + f16 KV cache for `context` tokens + overhead
/// ([`OVERHEAD_FIXED_GIB`] + [`OVERHEAD_WEIGHT_SHARE`] × weights).
pub fn vram_needed(m: &ModelSpec, q: Quant, context: u32) -> VramEstimate {
    let weights = weights_gib(m.params_b, q.bits_per_weight);
    let kv = kv_cache_gib(m, context, 2.0);
    let overhead = OVERHEAD_FIXED_GIB + OVERHEAD_WEIGHT_SHARE * weights;
    VramEstimate {
        weights_gib: weights,
        kv_cache_gib: kv,
        overhead_gib: overhead,
        total_gib: weights + kv + overhead,
    }
}

/// Share of peak memory bandwidth that llama.cpp's single-stream decode achieves. Median of
/// gen_tps / (bandwidth / model bytes) over 246 single-GPU runs in
/// XiongjieDai/GPU-Benchmarks-on-LLM-Inference; `tests/llm.rs` recomputes it.
pub const DECODE_EFFICIENCY: f64 = 0.656;

/// Decode (generation) speed in tokens/s: η × bandwidth / bytes of weights read per token.
/// `bandwidth_gbs` in GB/s (10^9), `weights_gib` in GiB. Returns 0 for a non-positive size.
pub fn decode_tokens_per_s(bandwidth_gbs: f64, weights_gib: f64) -> f64 {
    if weights_gib <= 0.0 || bandwidth_gbs <= 0.0 {
        return 0.0;
    }
    DECODE_EFFICIENCY * bandwidth_gbs * 1e9 / (weights_gib * GIB)
}

/// Free share of each card's VRAM that [`fits`] keeps unused.
pub const HEADROOM: f64 = 0.05;

/// Whether `total_gib` fits on these cards (VRAM of each in GiB), keeping [`HEADROOM`] free on
/// each and splitting layers in proportion to VRAM (llama.cpp's default `--split-mode layer`).
///
/// Several GPUs add VRAM, not generation speed (layer split runs the cards one after another):
/// for a decode estimate use the slowest card's bandwidth with [`decode_tokens_per_s`].
pub fn fits(total_gib: f64, vram_gib_per_gpu: &[f64]) -> bool {
    let usable: f64 = vram_gib_per_gpu
        .iter()
        .filter(|v| v.is_finite() && **v > 0.0)
        .map(|v| v * (1.0 - HEADROOM))
        .sum();
    total_gib.is_finite() && usable > 0.0 && total_gib <= usable
}
