//! Driver state: what each function is bound to, whether the group is viable for vfio, what
//! a blacklist or an `ids=` line would also hit, and what host and container use need.

use super::{describe, Ctx, Effect, Finding, RuleId, Severity, Use};
use crate::output::words::{agree, count};
use crate::plan::setup::{binding_method, module_of, BindingMethod};
use crate::state::{vfio_pending, CardState};

const VM: &[Use] = &[Use::Vm];

fn on_vfio(d: &crate::model::PciDevice) -> bool {
    d.driver.as_deref() == Some("vfio-pci")
}

pub(super) fn check_driver(c: &Ctx) -> Vec<Finding> {
    let mut f = Vec::new();
    let s = c.s;
    let bound: Vec<String> = c
        .functions
        .iter()
        .map(|d| {
            format!(
                "{} {}",
                d.address,
                d.driver.as_deref().unwrap_or("no driver")
            )
        })
        .collect();

    // VM: every function on vfio-pci, and the groups viable (no member on a host driver).
    let not_vfio: Vec<&crate::model::PciDevice> = c
        .functions
        .iter()
        .copied()
        .filter(|d| !on_vfio(d))
        .collect();
    if not_vfio.is_empty() {
        let members = c.group_members();
        let blocking: Vec<String> = members
            .iter()
            .filter_map(|a| s.device(a))
            .filter(|d| {
                !d.is_bridge()
                    && !on_vfio(d)
                    && d.driver.as_deref().is_some_and(|drv| drv != "pci-stub")
            })
            .map(|d| describe(s, &d.address))
            .collect();
        if blocking.is_empty() {
            f.push(
                Finding::new(
                    RuleId::VfioBound,
                    Severity::Info,
                    Effect::None,
                    VM,
                    "every function of the card is bound to vfio-pci and its groups are viable",
                )
                .evidence(bound.join("; ")),
            );
        }
        // A non-viable group is reported by group.shared already.
    } else {
        // Setup's to fix while nothing (or only passthru's pending files) binds the card; the
        // card's state says the one next step otherwise.
        let message = not_bound_message(not_vfio.len(), c.functions.len());
        let finding = |m: String| {
            Finding::new(
                RuleId::VfioNotBound,
                Severity::Warning,
                Effect::NeedsSetup,
                VM,
                m,
            )
            .evidence(bound.join("; "))
        };
        f.push(match c.state.state {
            CardState::NotConfigured | CardState::RebootPending => {
                finding(message).setup_fix(c.gpu.address, "")
            }
            st => finding(format!("{message} ({})", st.describe())).fix(c.state.next_step.clone()),
        });
    }

    // How setup binds this card: the words below say what it really does.
    let binding = binding_method(s, &c.gpu.address);
    let gpu = c.gpu.address;

    // The GPU's host driver also serves devices outside this card: a blacklist would take it
    // from them too.
    for func in &c.functions {
        let Some(drv) = func.driver.as_deref().filter(|d| *d != "vfio-pci") else {
            continue;
        };
        let others: Vec<String> = s
            .devices
            .iter()
            .filter(|d| !d.address.same_slot(&c.gpu.address) && d.driver.as_deref() == Some(drv))
            .map(|d| describe(s, &d.address))
            .collect();
        if !others.is_empty() {
            let n = others.len();
            let module = module_of(func).unwrap_or_else(|| drv.replace('-', "_"));
            f.push(
                Finding::new(RuleId::DriverShared, Severity::Warning, Effect::None, VM, format!(
                    "{drv} also drives {}: blacklisting {drv} would take it from {} too; passthru setup binds this card {} instead",
                    count(n, "other device", "other devices"),
                    agree(n, "that device", "them"),
                    binding.describe()
                ))
                    .evidence(others.join("; "))
                    .fix(format!("never blacklist {drv}; passthru setup vm {gpu} writes softdep {module} pre: vfio-pci, so vfio-pci claims the card first")),
            );
        }
    }

    // What an ids= line for this card would also capture (identical cards, shared audio ids):
    // exactly when setup binds by address. It explains setup's choice before setup; once
    // passthru's own files bind the card (by address) it is noise.
    if let (BindingMethod::ByAddress { shared }, false) = (&binding, c.state.by_passthru) {
        let captured: Vec<String> = shared
            .iter()
            .map(|(vd, a)| format!("{vd}: {}", describe(s, a)))
            .collect();
        f.push(
            Finding::new(RuleId::IdsCapture, Severity::Warning, Effect::None, VM, format!("vfio-pci ids= for this card would also capture other devices with the same ids; passthru setup binds it {} instead", binding.describe()))
                .evidence(captured.join("; ")),
        );
    }
    // The user's own lines that bind this card and also capture devices beyond it: the same
    // lines setup comments out (`state::card_state` finds them for both).
    let capturing: Vec<&crate::state::UserLine> = c
        .state
        .user_lines
        .iter()
        .filter(|l| !l.captures_others.is_empty())
        .collect();
    if !capturing.is_empty() {
        let places: Vec<&str> = capturing.iter().map(|l| l.place.as_str()).collect();
        let lines: Vec<&str> = capturing.iter().map(|l| l.text.as_str()).collect();
        let extra: Vec<String> = capturing
            .iter()
            .flat_map(|l| l.captures_others.iter())
            .map(|a| describe(s, a))
            .collect();
        f.push(
            Finding::new(
                RuleId::IdsConfiguredCapture,
                Severity::Warning,
                Effect::None,
                &[Use::Vm, Use::Lxc, Use::Host],
                format!(
                    "the vfio-pci ids already configured ({}) also claim devices outside this card",
                    lines.join("; ")
                ),
            )
            .evidence(format!("{}; {}", places.join(", "), extra.join("; ")))
            .setup_fix(
                gpu,
                &format!(
                    "replaces that line (it comments it out, naming why) and binds this card {}",
                    binding.describe()
                ),
            ),
        );
    }

    // Host and container use need the card on its own driver.
    let gpu_drv = c.gpu.driver.as_deref();
    let host_uses = &[Use::Lxc, Use::Host];
    match gpu_drv {
        Some("vfio-pci") => f.push(
            Finding::new(RuleId::HostOnVfio, Severity::Warning, Effect::NeedsSetup, host_uses, "the GPU is bound to vfio-pci, so the host cannot use it")
                .evidence(format!("sys/bus/pci/devices/{}/driver -> vfio-pci", c.gpu.address))
                .fix(format!("passthru setup host {}", c.gpu.address)),
        ),
        None => f.push(
            Finding::new(RuleId::HostNoDriver, Severity::Warning, Effect::Blocks, host_uses, "no driver is bound to the GPU: the host cannot use it until its driver is installed and loaded")
                .evidence(format!("sys/bus/pci/devices/{}/driver: absent", c.gpu.address))
                .fix(match c.gpu.vendor.map(|v| v.0) {
                    Some(0x10de) => format!("install the NVIDIA driver (or nouveau), then passthru setup host {gpu}"),
                    Some(0x1002) => format!("load amdgpu (firmware-amd-graphics on Debian), then passthru setup host {gpu}"),
                    Some(0x8086) => format!("load i915 or xe, then passthru setup host {gpu}"),
                    _ => "install and load the GPU's driver".to_string(),
                }),
        ),
        Some(d) if vfio_pending(&c.state) => {
            let fix = if c.state.by_passthru {
                format!("passthru setup host {gpu} (removes passthru's vfio binding for this card)")
            } else {
                format!(
                    "remove this card from your own lines ({}): passthru setup edits only its own files",
                    c.state.user_lines.iter().map(|l| l.place.clone()).collect::<Vec<_>>().join(", ")
                )
            };
            f.push(
                Finding::new(RuleId::VfioPending, Severity::Warning, Effect::NeedsSetup, host_uses, format!("the GPU is on its host driver ({d}) now, but the vfio configuration on disk takes it at the next boot ({})", c.state.state.describe()))
                    .evidence(c.state.evidence.clone())
                    .fix(fix),
            )
        }
        Some(d) => f.push(
            Finding::new(RuleId::HostDriver, Severity::Info, Effect::None, host_uses, format!("the GPU is on its host driver ({d})"))
                .evidence(format!("sys/bus/pci/devices/{}/driver -> {d}", c.gpu.address)),
        ),
    }
    f
}

/// "1 of the card's 2 functions is not bound …", in the words the counts need.
fn not_bound_message(not_bound: usize, functions: usize) -> String {
    if functions == 1 {
        "the card's only function is not bound to vfio-pci yet".into()
    } else if not_bound == functions {
        format!("none of the card's {functions} functions is bound to vfio-pci yet")
    } else {
        format!(
            "{not_bound} of the card's {functions} functions {} not bound to vfio-pci yet",
            agree(not_bound, "is", "are")
        )
    }
}
