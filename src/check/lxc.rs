//! Container use: device nodes and their numbers, the NVIDIA driver version the container
//! must match, and Intel SR-IOV.

use super::{Ctx, Effect, Finding, RuleId, Severity, Use};

const LXC: &[Use] = &[Use::Lxc];

pub(super) fn check_lxc(c: &Ctx) -> Vec<Finding> {
    let mut f = Vec::new();
    let s = c.s;
    let g = c.gpu;
    if g.driver.as_deref().is_none_or(|d| d == "vfio-pci") {
        return f; // driver findings already say why the host cannot share it
    }
    let major = |name: &str| s.system.char_major(name);
    let nvidia = g.on_nvidia_driver();
    if nvidia {
        match &s.system.nvidia_driver_version {
            Some(v) => f.push(
                Finding::new(RuleId::LxcNvidiaVersion, Severity::Info, Effect::None, LXC, format!("the container's NVIDIA user space must be exactly version {v}, the host driver's (else \"NVRM: API mismatch\")"))
                    .evidence(format!("proc/driver/nvidia/version: {v}")),
            ),
            None => f.push(
                Finding::new(RuleId::LxcNvidiaVersionUnknown, Severity::Warning, Effect::Unknown, LXC, "the NVIDIA driver version could not be read")
                    .evidence("proc/driver/nvidia/version: absent"),
            ),
        }
        match major("nvidia-uvm") {
            Some(m) => f.push(
                Finding::new(RuleId::LxcNvidiaNodes, Severity::Info, Effect::None, LXC, format!("device numbers: nvidia 195 (nvidia0.., nvidiactl, nvidia-modeset), nvidia-uvm {m} (dynamic: read it, never hard-code it)"))
                    .evidence(format!("proc/devices: {m} nvidia-uvm")),
            ),
            None => f.push(
                Finding::new(RuleId::LxcNvidiaUvmMissing, Severity::Warning, Effect::NeedsSetup, LXC, "nvidia-uvm is not loaded: CUDA in a container needs /dev/nvidia-uvm")
                    .evidence("proc/devices: no nvidia-uvm")
                    .fix("modprobe nvidia-uvm (and add it to etc/modules-load.d)"),
            ),
        }
    } else {
        let card = s.drm.iter().find(|k| k.device == Some(g.address));
        match card {
            Some(card) if card.render_node.is_some() => {
                let stable = if card.by_path.is_empty() {
                    String::new()
                } else {
                    format!("; stable names: {}", card.by_path.join(", "))
                };
                f.push(
                    Finding::new(
                        RuleId::LxcRenderNode,
                        Severity::Info,
                        Effect::None,
                        LXC,
                        format!(
                            "render node {} and card node {} are present (major {}){stable}",
                            card.render_node.as_deref().unwrap_or("?"),
                            card.name,
                            major("drm").unwrap_or(226)
                        ),
                    )
                    .evidence(format!("sys/class/drm/{}", card.name)),
                );
            }
            Some(card) => f.push(
                Finding::new(
                    RuleId::LxcNoRenderNode,
                    Severity::Warning,
                    Effect::Blocks,
                    LXC,
                    format!(
                        "{} has no render node: containers need one for VA-API/compute",
                        card.name
                    ),
                )
                .evidence(format!("sys/class/drm: no renderD* for {}", g.address)),
            ),
            None => f.push(
                Finding::new(
                    RuleId::LxcNoDrm,
                    Severity::Warning,
                    Effect::Blocks,
                    LXC,
                    "no DRM card for this GPU: its driver did not register one",
                )
                .evidence(format!("sys/class/drm: nothing for {}", g.address)),
            ),
        }
    }
    if g.vendor.map(|v| v.0) == Some(0x8086) {
        if let Some(total) = g
            .sriov
            .as_ref()
            .and_then(|x| x.total_vfs)
            .filter(|t| *t > 0)
        {
            f.push(
                Finding::new(RuleId::LxcSriov, Severity::Info, Effect::None, &[Use::Lxc, Use::Vm], format!("this Intel GPU offers SR-IOV with up to {total} virtual functions: it can be shared with VMs and containers at once"))
                    .evidence(format!("sys/bus/pci/devices/{}/sriov_totalvfs: {total}", g.address)),
            );
        }
    }
    f
}
