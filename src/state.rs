//! One model of where a card stands with vfio-pci, shared by `check`, `setup`, `vm attach`
//! and `lxc share` (docs/states.md). Pure: a function of the snapshot, which holds the running
//! kernel (command line, loaded modules, bound drivers) and the configuration on disk
//! (modprobe.d, udev rules, the boot loader's next command line), passthru's own files and
//! the user's alike.
//!
//! The states:
//! - **not configured**: nothing on disk binds the card to vfio-pci and it is not bound;
//! - **reboot pending**: the files bind it, the running kernel does not yet (the command line
//!   lacks what the boot loader will pass, or vfio-pci is not loaded);
//! - **effective**: every function of the card is on vfio-pci;
//! - **configured by hand**: only the user's own lines (ids=, blacklist, softdep,
//!   driver_override) bind it, and they have not taken effect;
//! - **drifted**: the files bind it and the running kernel booted with them (its command line
//!   carries every vfio parameter configured and vfio-pci is loaded), yet the card is back on
//!   a host driver — it was effective, no longer is.

use serde::Serialize;

use crate::formats::cmdline::is_passthrough_param;
use crate::formats::modprobe::{same_module, vfio_ids_from_options};
use crate::model::{PciAddress, Snapshot};
use crate::plan::setup::{module_of, MODPROBE_FILE, UDEV_FILE};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CardState {
    #[default]
    NotConfigured,
    RebootPending,
    Effective,
    ConfiguredByHand,
    Drifted,
}

impl CardState {
    /// The words `check` prints.
    pub fn describe(self) -> &'static str {
        match self {
            CardState::NotConfigured => "not configured",
            CardState::RebootPending => "configured, reboot pending",
            CardState::Effective => "effective",
            CardState::ConfiguredByHand => "configured by hand",
            CardState::Drifted => "drifted",
        }
    }
}

/// A line of the user's own (not passthru's files) that binds the card to vfio-pci or keeps
/// its driver off it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct UserLine {
    /// `etc/modprobe.d/vfio.conf:1`.
    pub place: String,
    /// `options vfio-pci ids=10de:2503,10de:228e`.
    pub text: String,
    /// Devices outside the card it also takes (an ids= line on twin cards).
    pub captures_others: Vec<PciAddress>,
}

/// Where the card stands, with what shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct StateReport {
    pub state: CardState,
    /// passthru's own files bind this card (modprobe ids=, udev rule, vfio-pci.ids= it wrote).
    pub by_passthru: bool,
    /// The user's own lines that bear on the card.
    pub user_lines: Vec<UserLine>,
    /// The one thing to do next, for the VM use.
    pub next_step: String,
    /// What decided it, for the evidence line.
    pub evidence: String,
}

/// The configured (next boot) kernel parameters: the boot loader in use, else the first found.
fn next_boot_params(s: &Snapshot) -> Vec<crate::model::CmdlineParam> {
    let found = s
        .boot
        .in_use
        .and_then(|k| s.boot.bootloaders.iter().find(|b| b.kind == k))
        .or_else(|| s.boot.bootloaders.first());
    found
        .map(|b| b.configured_params.clone())
        .unwrap_or_default()
}

/// Where `gpu`'s card stands with vfio-pci.
pub fn card_state(s: &Snapshot, gpu: &PciAddress) -> StateReport {
    let functions = s.card_functions(gpu);
    let card_ids: Vec<String> = functions.iter().filter_map(|d| d.vendor_device()).collect();
    let addrs: Vec<String> = functions.iter().map(|d| d.address.to_string()).collect();
    let cfg = &s.vfio_config;

    let mut by_passthru = false;
    let mut user_lines = Vec::new();
    for m in &cfg.modprobe {
        let own = m.file == MODPROBE_FILE;
        let binds = if m.command == "options" && same_module(&m.module, "vfio_pci") {
            let ids = vfio_ids_from_options(&m.args);
            ids.iter().any(|id| card_ids.contains(id)).then_some(ids)
        } else {
            None
        };
        // The user's blacklist of, or softdep on, the card's own host driver.
        let keeps_off = !own
            && matches!(m.command.as_str(), "blacklist" | "softdep")
            && functions
                .iter()
                .filter_map(|d| module_of(d))
                .any(|drv| same_module(&drv, &m.module))
            && (m.command == "blacklist" || m.args.contains("vfio"));
        if own && binds.is_some() {
            by_passthru = true;
        } else if let Some(ids) = binds {
            let captures_others = s
                .devices
                .iter()
                .filter(|d| !d.address.same_slot(gpu))
                .filter(|d| d.vendor_device().is_some_and(|vd| ids.contains(&vd)))
                .map(|d| d.address)
                .collect();
            user_lines.push(UserLine {
                place: format!("{}:{}", m.file, m.line),
                text: format!("{} {} {}", m.command, m.module, m.args),
                captures_others,
            });
        } else if keeps_off {
            user_lines.push(UserLine {
                place: format!("{}:{}", m.file, m.line),
                text: format!("{} {} {}", m.command, m.module, m.args),
                captures_others: Vec::new(),
            });
        }
    }
    for u in cfg
        .udev_overrides
        .iter()
        .filter(|u| addrs.contains(&u.address))
    {
        if u.file == UDEV_FILE {
            by_passthru = true;
        } else {
            user_lines.push(UserLine {
                place: format!("{}:{}", u.file, u.line),
                text: format!("driver_override=vfio-pci for {}", u.address),
                captures_others: Vec::new(),
            });
        }
    }
    let next = next_boot_params(s);
    // (`is_passthrough_param` covers vfio-pci.* and rd.driver.pre.)
    let configured_vfio: Vec<&crate::model::CmdlineParam> = next
        .iter()
        .filter(|p| is_passthrough_param(&p.key))
        .collect();
    // vfio-pci.ids= on the next command line for this card: passthru writes it where vfio-pci
    // is built in.
    if next.iter().any(|p| {
        matches!(p.key.as_str(), "vfio-pci.ids" | "vfio_pci.ids")
            && p.value
                .as_deref()
                .is_some_and(|v| v.split(',').any(|id| card_ids.contains(&id.to_string())))
    }) {
        by_passthru = true;
    }

    let all_vfio = !functions.is_empty()
        && functions
            .iter()
            .all(|d| d.driver.as_deref() == Some("vfio-pci"));
    let vfio_running = s.system.module_loaded("vfio_pci") == Some(true)
        || s.system.module_builtin("vfio_pci") == Some(true);
    // Compared as the kernel compares parameters (`-` and `_` alike in names).
    let booted_with = vfio_running
        && configured_vfio
            .iter()
            .all(|p| crate::plan::files::ParamChange::present(&s.system.cmdline_params, p));
    let configured = by_passthru || !user_lines.is_empty();
    let gpu_s = gpu.to_string();
    let (state, next_step) = if all_vfio {
        // Proxmox guests are attached through their config; elsewhere through libvirt.
        let attach = if s.system.proxmox.is_some() {
            format!("passthru vm attach VMID {gpu_s}")
        } else {
            format!("passthru libvirt attach DOMAIN {gpu_s}")
        };
        (
            CardState::Effective,
            if configured {
                format!("none for a VM: attach it ({attach})")
            } else {
                // `passthru bind`, or a rollback not yet rebooted: nothing binds it at boot.
                format!("none for a VM until the next boot: attach it ({attach}); no file binds it at boot, so to keep it run passthru setup vm {gpu_s}")
            },
        )
    } else if !configured {
        (
            CardState::NotConfigured,
            format!("run passthru setup vm {gpu_s}"),
        )
    } else if user_lines.iter().any(|l| !l.captures_others.is_empty()) {
        (
            CardState::ConfiguredByHand,
            format!("run passthru setup vm {gpu_s} (it replaces the line that also captures other devices and binds this card by address)"),
        )
    } else if booted_with {
        (
            CardState::Drifted,
            format!("the card is back on a host driver although the running kernel booted with the vfio configuration: run passthru check {gpu_s} after passthru bind {gpu_s}, or passthru setup vm {gpu_s} again"),
        )
    } else if !by_passthru {
        (
            CardState::ConfiguredByHand,
            format!("your own configuration binds it (left as it is): reboot, then run passthru check {gpu_s}"),
        )
    } else {
        (
            CardState::RebootPending,
            format!("reboot, then run passthru check {gpu_s}"),
        )
    };
    let evidence = format!(
        "drivers: {}; vfio-pci {}; next boot's vfio parameters: {}; running command line {}",
        functions
            .iter()
            .map(|d| format!(
                "{} {}",
                d.address,
                d.driver.as_deref().unwrap_or("no driver")
            ))
            .collect::<Vec<_>>()
            .join(", "),
        if vfio_running { "loaded" } else { "not loaded" },
        if configured_vfio.is_empty() {
            "none".to_string()
        } else {
            configured_vfio
                .iter()
                .map(|p| crate::plan::files::render_param(p))
                .collect::<Vec<_>>()
                .join(" ")
        },
        if configured_vfio.is_empty() {
            "has nothing to carry"
        } else if booted_with {
            "carries them"
        } else {
            "does not carry them all"
        }
    );
    StateReport {
        state,
        by_passthru,
        user_lines,
        next_step,
        evidence,
    }
}

/// Whether passthru's (or the user's) vfio configuration will take the card at the next boot
/// while it is on a host driver now: host and container use are not ready.
pub fn vfio_pending(r: &StateReport) -> bool {
    matches!(
        r.state,
        CardState::RebootPending | CardState::ConfiguredByHand | CardState::Drifted
    )
}
