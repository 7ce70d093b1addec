//! The host console on this GPU: boot VGA, the firmware framebuffer, monitors, and processes
//! using it (reported, never killed).

use super::{Ctx, Effect, Finding, RuleId, Severity, Use};

const VM: &[Use] = &[Use::Vm];

pub(super) fn check_console(c: &Ctx) -> Vec<Finding> {
    let mut f = Vec::new();
    let s = c.s;
    let g = c.gpu;
    let u = &s.host_usage;
    if g.boot_vga == Some(true) {
        // A firmware framebuffer (sysfb's simple-framebuffer, efifb, vesafb) holds the boot
        // GPU's BAR until sysfb_init is kept from running; vfio-pci then cannot reserve it.
        let in_bar = u
            .boot_framebuffers
            .iter()
            .any(|(a, b)| g.bars.iter().any(|(x, y)| a >= x && b <= y));
        let fb_names: Vec<&String> = u
            .framebuffer_names
            .iter()
            .filter(|n| {
                matches!(
                    n.as_str(),
                    "simpledrm" | "EFI VGA" | "VESA VGA" | "efifb" | "vesafb" | "simple"
                )
            })
            .collect();
        let blacklisted = s.system.cmdline_params.iter().any(|p| {
            p.key == "initcall_blacklist"
                && p.value
                    .as_deref()
                    .is_some_and(|v| v.split(',').any(|w| w == "sysfb_init"))
        });
        if (in_bar || !fb_names.is_empty()) && !blacklisted {
            let evidence = if in_bar {
                "proc/iomem: BOOTFB inside this GPU's BAR".to_string()
            } else {
                format!(
                    "sys/class/graphics: {}",
                    fb_names
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            f.push(
                Finding::new(RuleId::ConsoleFramebuffer, Severity::Warning, Effect::NeedsSetup, VM, "the firmware framebuffer holds this boot GPU's memory: vfio-pci cannot reserve it (\"BAR 0: can't reserve\") and the guest fails")
                    .evidence(evidence)
                    // Setup adds the parameter whenever this finding fires, no --boot-gpu needed.
                    .setup_fix(g.address, "adds initcall_blacklist=sysfb_init (video=efifb:off does not fix it on 5.15+ kernels and removes the host console)"),
            );
        } else {
            f.push(
                Finding::new(RuleId::ConsoleBootVga, Severity::Info, Effect::None, VM, "this is the firmware's boot display (boot_vga); the host console moves off it when vfio-pci takes it")
                    .evidence(format!("sys/bus/pci/devices/{}/boot_vga: 1", g.address)),
            );
        }
    }
    let connected: Vec<String> = s
        .drm
        .iter()
        .filter(|card| card.device == Some(g.address))
        .flat_map(|card| {
            card.connectors
                .iter()
                .filter(|k| k.status.as_deref() == Some("connected"))
                .map(move |k| format!("{}-{}", card.name, k.name))
        })
        .collect();
    if !connected.is_empty() {
        f.push(
            Finding::new(RuleId::ConsoleMonitor, Severity::Warning, Effect::None, VM, format!("a monitor is connected ({}): it goes dark for the host when the GPU is given to a VM", connected.join(", ")))
                .evidence("sys/class/drm/*/status: connected"),
        );
    }
    // Processes holding this GPU's nodes.
    let mine: Vec<String> = s
        .drm
        .iter()
        .filter(|card| card.device == Some(g.address))
        .flat_map(|card| {
            let mut nodes = vec![format!("/dev/dri/{}", card.name)];
            nodes.extend(card.render_node.iter().map(|r| format!("/dev/dri/{r}")));
            nodes
        })
        .collect();
    let nvidia = g.vendor.map(|v| v.0) == Some(0x10de);
    if let Some(users) = &u.device_users {
        let holding: Vec<String> = users
            .iter()
            .filter(|u| mine.contains(&u.node) || (nvidia && u.node.starts_with("/dev/nvidia")))
            .map(|u| {
                format!(
                    "pid {} ({}) holds {}",
                    u.pid,
                    u.command.as_deref().unwrap_or("?"),
                    u.node
                )
            })
            .collect();
        if !holding.is_empty() {
            f.push(
                Finding::new(RuleId::ConsoleInUse, Severity::Warning, Effect::None, VM, "processes are using this GPU: it cannot be unbound while they run (passthru never stops them)")
                    .evidence(holding.join("; "))
                    .fix(format!("stop those programs (display manager, media server, ...), or bind it at boot: passthru setup vm {}", g.address)),
            );
        }
    }
    f
}
