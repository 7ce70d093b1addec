//! Live GPU power, read without waking a sleeping GPU (docs/domain-facts.md §13): runtime PM state
//! is read first, and a `suspended` GPU is reported asleep and never queried. Then, by driver:
//! - amdgpu: hwmon `power1_average` (older ASICs) or `power1_input`, in microwatts;
//! - i915 / xe: hwmon `energy1_input` (xe: the `card` channel by `energyN_label`), a cumulative
//!   microjoule counter sampled twice; zero or flat means unavailable;
//! - nvidia: NVML, loaded at run time (`libnvidia-ml.so.1`), only on the live host;
//! - vfio-pci: no host telemetry at all.
//!
//! Read-only.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::model::PciDevice;

use super::root::{FileRead, HostRoot};

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct PowerReading {
    pub address: String,
    /// `power/runtime_status`: `suspended` means asleep (not woken to be measured).
    pub runtime_status: Option<String>,
    pub power_state: Option<String>,
    /// Watts now, when the driver tells.
    pub watts: Option<f64>,
    /// Where the watts came from (`hwmon power1_average`, `nvml` ...).
    pub source: Option<String>,
    /// Why there is no live figure.
    pub unavailable: Option<String>,
}

fn hwmon_dirs(root: &HostRoot, dev: &PciDevice) -> Vec<String> {
    let base = format!("sys/bus/pci/devices/{}/hwmon", dev.address);
    let mut ignored = Vec::new();
    root.list_dir(&base, &mut ignored)
        .into_iter()
        .map(|h| format!("{base}/{h}"))
        .collect()
}

fn read_u64(root: &HostRoot, rel: &str) -> Option<u64> {
    match root.read(rel) {
        FileRead::Text(t) => t.trim().parse().ok(),
        _ => None,
    }
}

/// amdgpu's power in watts (hwmon reports microwatts).
fn read_hwmon_power(root: &HostRoot, dev: &PciDevice) -> Option<(f64, String)> {
    for dir in hwmon_dirs(root, dev) {
        for file in ["power1_average", "power1_input"] {
            if let Some(uw) = read_u64(root, &format!("{dir}/{file}")) {
                return Some((uw as f64 / 1e6, format!("hwmon {file}")));
            }
        }
    }
    None
}

/// The card energy counter of i915/xe: `energy1_input`, or on xe the channel labelled `card`.
fn energy_counter(root: &HostRoot, dev: &PciDevice) -> Option<String> {
    for dir in hwmon_dirs(root, dev) {
        for n in 1..=4 {
            let input = format!("{dir}/energy{n}_input");
            if !root.exists(&input) {
                continue;
            }
            let label = match root.read(&format!("{dir}/energy{n}_label")) {
                FileRead::Text(t) => Some(t.trim().to_string()),
                _ => None,
            };
            if label.as_deref().is_none_or(|l| l == "card") {
                return Some(input);
            }
        }
    }
    None
}

/// Watts from two readings of a microjoule counter `dt` seconds apart. A zero or flat counter
/// is no figure (LACT's Battlemage snapshot reads 0 for the card channel).
pub fn energy_rate_watts(a: Option<u64>, b: Option<u64>, dt: f64) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > a && a > 0 && dt > 0.0 => Some((b - a) as f64 / 1e6 / dt),
        _ => None,
    }
}

/// What a saved snapshot tells of a GPU's power (`--from`): its state, and no live figure.
pub fn saved_gpu_power(dev: &PciDevice) -> PowerReading {
    PowerReading {
        address: dev.address.to_string(),
        runtime_status: dev.power.runtime_status.clone(),
        power_state: dev.power.state.clone(),
        watts: None,
        source: None,
        unavailable: Some("read from a saved snapshot: no live figure".into()),
    }
}

/// Reads one GPU's power. `interval` is how long to sample an energy counter; `live` allows
/// NVML (never under a fixture root: it would measure the real machine).
pub fn read_gpu_power(
    root: &HostRoot,
    dev: &PciDevice,
    interval: Duration,
    live: bool,
) -> PowerReading {
    let mut r = PowerReading {
        address: dev.address.to_string(),
        runtime_status: dev.power.runtime_status.clone(),
        power_state: dev.power.state.clone(),
        watts: None,
        source: None,
        unavailable: None,
    };
    if dev.power.runtime_status.as_deref() == Some("suspended")
        || dev.power.state.as_deref() == Some("D3cold")
    {
        r.unavailable = Some("asleep: not woken to be measured".into());
        return r;
    }
    match dev.driver.as_deref() {
        Some("vfio-pci") => {
            r.unavailable = Some("bound to vfio-pci: the host has no telemetry for it".into())
        }
        None => r.unavailable = Some("no driver bound".into()),
        Some("amdgpu") | Some("radeon") => match read_hwmon_power(root, dev) {
            Some((w, src)) => {
                r.watts = Some(w);
                r.source = Some(src);
            }
            None => {
                r.unavailable = Some("amdgpu exposes no power1_average/power1_input here".into())
            }
        },
        Some("i915") | Some("xe") => match energy_counter(root, dev) {
            Some(path) => {
                let a = read_u64(root, &path);
                let t0 = Instant::now();
                std::thread::sleep(interval);
                let b = read_u64(root, &path);
                let dt = t0.elapsed().as_secs_f64();
                match energy_rate_watts(a, b, dt) {
                    Some(w) => {
                        r.watts = Some(w);
                        r.source = Some("hwmon energy1_input (rate)".into());
                    }
                    None => {
                        r.unavailable = Some("the energy counter reads zero or did not move".into())
                    }
                }
            }
            None => {
                r.unavailable = Some(format!(
                    "{} exposes no energy counter here (kernel 6.2+ needed)",
                    dev.driver.as_deref().unwrap_or("")
                ))
            }
        },
        Some("nvidia") => {
            if !live {
                r.unavailable = Some("NVML is only read on the live host".into());
            } else {
                match super::nvml::power_watts(&dev.address.to_string()) {
                    Ok(w) => {
                        r.watts = Some(w);
                        r.source = Some("nvml".into());
                    }
                    Err(why) => r.unavailable = Some(why),
                }
            }
        }
        Some(other) => r.unavailable = Some(format!("{other} does not report power")),
    }
    r
}
