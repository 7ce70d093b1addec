//! `passthru check`: one verdict per GPU and use, with findings that carry their evidence and
//! their fix. Pure: a function of the snapshot and the request, no I/O.
//!
//! Each rule lives in a submodule by topic and returns findings; a finding names the uses it
//! bears on and its effect, and a verdict is the worst effect among a use's findings:
//! blocked > unknown > needs-setup > ready.

mod console;
mod driver;
mod isolation;
mod lxc;
mod platform;
pub mod reset;
mod rule;
mod shared;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::{PciAddress, PciDevice, Snapshot};

pub use reset::{amd_reset_family, ResetFamily};
pub use rule::RuleId;

/// What the GPU is to be used for.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    clap::ValueEnum,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Use {
    /// Passed through to a virtual machine (vfio-pci).
    Vm,
    /// Shared with LXC containers (host driver, device nodes).
    Lxc,
    /// Used by the host itself.
    Host,
    /// Split among several guests (SR-IOV virtual functions, mediated devices).
    Shared,
}

pub const ALL_USES: [Use; 4] = [Use::Vm, Use::Lxc, Use::Host, Use::Shared];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

/// What a finding does to the verdict of the uses it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Effect {
    None,
    NeedsSetup,
    Unknown,
    Blocks,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Ready,
    NeedsSetup,
    Unknown,
    Blocked,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Finding {
    /// The rule that produced it; serialised as its stable id (`iommu.kernel-off`).
    pub id: RuleId,
    pub severity: Severity,
    pub uses: Vec<Use>,
    pub effect: Effect,
    pub message: String,
    /// The file and value it came from.
    pub evidence: String,
    /// The setting, command or passthru command that fixes it.
    pub fix: Option<String>,
    /// The fix is `passthru setup vm GPU` (what the card's state may say is already done).
    #[serde(skip)]
    pub by_setup: bool,
}

impl Finding {
    fn new(
        id: RuleId,
        severity: Severity,
        effect: Effect,
        uses: &[Use],
        message: impl Into<String>,
    ) -> Self {
        Finding {
            id,
            severity,
            uses: uses.to_vec(),
            effect,
            message: message.into(),
            evidence: String::new(),
            fix: None,
            by_setup: false,
        }
    }
    fn evidence(mut self, e: impl Into<String>) -> Self {
        self.evidence = e.into();
        self
    }
    fn fix(mut self, f: impl Into<String>) -> Self {
        self.fix = Some(f.into());
        self
    }
    /// Fixed by `passthru setup vm GPU`, then `rest` (what it does, in words).
    fn setup_fix(mut self, gpu: PciAddress, rest: &str) -> Self {
        let sep = if rest.is_empty() { "" } else { " " };
        self.fix = Some(format!("passthru setup vm {gpu}{sep}{rest}"));
        self.by_setup = true;
        self
    }
}

/// What the user asked.
#[derive(Debug, Clone, Default)]
pub struct CheckRequest {
    /// GPU selectors (address, vendor:device, name substring); empty means every GPU.
    pub gpus: Vec<String>,
    /// Downgrade the safety blocks (boot disk, network, only display) to warnings.
    pub force: bool,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct GpuCheck {
    pub address: PciAddress,
    pub name: String,
    /// The name in the parts a line may break between (vendor, device), for the text
    /// report; `[name]` when it is not the two joined.
    #[serde(skip)]
    pub name_parts: Vec<String>,
    /// Every function of the card (same domain, bus and slot).
    pub functions: Vec<PciAddress>,
    /// The GPU function's IOMMU group.
    pub group: Option<String>,
    pub verdicts: BTreeMap<Use, Verdict>,
    /// Where the card stands with vfio-pci and the one next step (docs/states.md).
    pub state: crate::state::StateReport,
    pub findings: Vec<Finding>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct CheckReport {
    pub schema_version: u32,
    pub gpus: Vec<GpuCheck>,
    /// Selectors that matched no GPU.
    pub unmatched: Vec<String>,
}

impl CheckReport {
    /// The GPUs whose verdicts decide `check`'s exit code for `uses` (`vm` when empty).
    ///
    /// A GPU the user named always counts. With none named, `check` after setup and a
    /// reboot is the verification (README): for the VM use it judges the cards set up for
    /// vfio-pci (by passthru or by hand), not the display the host keeps, which is
    /// "needs setup" by design. With no card set up, or for another use, every GPU counts.
    pub fn judged(&self, uses: &[Use], named: bool) -> Vec<&GpuCheck> {
        let vm_only = uses.is_empty() || uses == [Use::Vm];
        let set_up: Vec<&GpuCheck> = self
            .gpus
            .iter()
            .filter(|g| g.state.state != crate::state::CardState::NotConfigured)
            .collect();
        if named || !vm_only || set_up.is_empty() {
            self.gpus.iter().collect()
        } else {
            set_up
        }
    }

    /// Every judged GPU is ready for every judged use, and every selector matched a GPU.
    pub fn all_ready(&self, uses: &[Use], named: bool) -> bool {
        let judged_uses: &[Use] = if uses.is_empty() { &[Use::Vm] } else { uses };
        let judged = self.judged(uses, named);
        !judged.is_empty()
            && self.unmatched.is_empty()
            && judged.iter().all(|g| {
                judged_uses
                    .iter()
                    .all(|u| g.verdicts.get(u) == Some(&Verdict::Ready))
            })
    }
}

/// What a GPU selector names. Anything else is refused: `""`, `.` or `a` would match every
/// name, and a writing command would act on whatever GPU there happens to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// `0000:07:00.0` or `07:00.0`.
    Address(PciAddress),
    /// Every GPU function of a slot: `07:00` or `0000:07:00` (function 0 stands for the slot).
    Slot(PciAddress),
    /// `10de:2206`, lower case.
    Ids(String),
    /// Part of the name, lower case; it holds a word of at least [`MIN_NAME_WORD`] letters
    /// or digits.
    Name(String),
}

/// The shortest word a name selector must hold: `rtx`, `arc`, `p40` name a GPU, `a` does not.
pub const MIN_NAME_WORD: usize = 3;

/// Reads a selector; `None` when it names nothing in particular.
pub fn parse_selector(sel: &str) -> Option<Selector> {
    let sel = sel.trim();
    if let Ok(a) = sel.parse::<PciAddress>() {
        return Some(Selector::Address(a));
    }
    let is_id = |t: &str| t.len() == 4 && t.bytes().all(|b| b.is_ascii_hexdigit());
    if let Some((v, d)) = sel.split_once(':') {
        if is_id(v) && is_id(d) {
            return Some(Selector::Ids(sel.to_ascii_lowercase()));
        }
    }
    if sel.contains(':') && !sel.contains('.') {
        if let Ok(a) = format!("{sel}.0").parse::<PciAddress>() {
            return Some(Selector::Slot(a));
        }
    }
    // `0000:07` or `10de:` is an address or an id with a part missing, not a name.
    let address_like = sel.contains([':', '.'])
        && sel
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
    if address_like {
        return None;
    }
    let longest_word = sel
        .split(|c: char| !c.is_alphanumeric())
        .map(|w| w.chars().count())
        .max()
        .unwrap_or(0);
    (longest_word >= MIN_NAME_WORD).then(|| Selector::Name(sel.to_lowercase()))
}

impl Selector {
    fn matches(&self, g: &PciDevice) -> bool {
        match self {
            Selector::Address(a) => g.address == *a,
            Selector::Slot(a) => g.address.same_slot(a),
            Selector::Ids(vd) => g.vendor_device().is_some_and(|x| x == *vd),
            Selector::Name(n) => g.names.name.to_lowercase().contains(n.as_str()),
        }
    }
}

/// The GPUs of a snapshot, one per line's worth, for an error that asks the user to pick one.
fn list_gpus(s: &Snapshot) -> String {
    let gpus: Vec<String> = s
        .gpus()
        .map(|g| {
            format!(
                "{} {} [{}]",
                g.address,
                g.names.name,
                g.vendor_device().unwrap_or_else(|| "????:????".into())
            )
        })
        .collect();
    if gpus.is_empty() {
        "no GPU (PCI class 03xx) was read".into()
    } else {
        format!("the GPUs here: {}", gpus.join("; "))
    }
}

/// The GPUs the selectors pick (every GPU when there are none) and the selectors that matched
/// no GPU, which a report names. A selector that names nothing in particular is an error, with
/// the GPUs there are.
pub fn select_gpus<'a>(
    s: &'a Snapshot,
    selectors: &[String],
) -> Result<(Vec<&'a PciDevice>, Vec<String>), SelectError> {
    let gpus: Vec<&PciDevice> = s.gpus().collect();
    if selectors.is_empty() {
        return Ok((gpus, Vec::new()));
    }
    let parsed = selectors
        .iter()
        .map(|sel| {
            parse_selector(sel).ok_or_else(|| SelectError::NotASelector(sel.clone(), list_gpus(s)))
        })
        .collect::<Result<Vec<Selector>, SelectError>>()?;
    let mut chosen: Vec<&PciDevice> = Vec::new();
    let mut unmatched = Vec::new();
    for (sel, parsed) in selectors.iter().zip(&parsed) {
        let hits: Vec<&PciDevice> = gpus.iter().copied().filter(|g| parsed.matches(g)).collect();
        if hits.is_empty() {
            unmatched.push(sel.clone());
        }
        for h in hits {
            if !chosen.iter().any(|c| c.address == h.address) {
                chosen.push(h);
            }
        }
    }
    chosen.sort_by_key(|d| d.address);
    Ok((chosen, unmatched))
}

/// Why a selector that must name one GPU did not.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    #[error("'{0}' does not name a GPU: give its address (07:00.0), its slot (07:00), vendor:device (10de:2206) or a word of its name of {MIN_NAME_WORD} or more letters; {1}")]
    NotASelector(String, String),
    #[error("no GPU matches '{0}'; {1}")]
    NoMatch(String, String),
    #[error("'{0}' matches {1} GPUs; name one by address")]
    Ambiguous(String, usize),
}

/// The one GPU a writing command acts on.
pub fn select_one<'a>(s: &'a Snapshot, sel: &str) -> Result<&'a PciDevice, SelectError> {
    let (gpus, _) = select_gpus(s, &[sel.to_string()])?;
    match gpus[..] {
        [g] => Ok(g),
        [] => Err(SelectError::NoMatch(sel.into(), list_gpus(s))),
        _ => Err(SelectError::Ambiguous(sel.into(), gpus.len())),
    }
}

/// Runs every rule for the selected GPUs.
pub fn check_host(s: &Snapshot, req: &CheckRequest) -> CheckReport {
    // A selector that names nothing picks nothing here; the binary refuses it before (with
    // select_gpus), so a report is never made for a GPU the user did not name.
    let (gpus, unmatched) =
        select_gpus(s, &req.gpus).unwrap_or_else(|_| (Vec::new(), req.gpus.clone()));
    let gpus = gpus
        .into_iter()
        .map(|g| check_one(s, g, req.force))
        .collect();
    CheckReport {
        schema_version: crate::model::SCHEMA_VERSION,
        gpus,
        unmatched,
    }
}

/// Runs every rule for one GPU already chosen (what a writing command does before it plans).
pub fn check_gpu(s: &Snapshot, gpu: &PciDevice, force: bool) -> GpuCheck {
    check_one(s, gpu, force)
}

fn check_one(s: &Snapshot, g: &PciDevice, force: bool) -> GpuCheck {
    let ctx = Ctx::new(s, g, force);
    let mut findings = Vec::new();
    // Host-wide rules, run per GPU so that every fix names the GPU it is for.
    findings.extend(platform::check_platform(s, g));
    findings.extend(isolation::check_isolation(&ctx));
    findings.extend(reset::check_reset(&ctx));
    findings.extend(driver::check_driver(&ctx));
    findings.extend(console::check_console(&ctx));
    findings.extend(lxc::check_lxc(&ctx));
    findings.extend(shared::check_shared(&ctx));
    if g.class.is_none() || g.vendor.is_none() {
        findings.push(
            Finding::new(
                RuleId::GpuUnreadable,
                Severity::Error,
                Effect::Unknown,
                &ALL_USES,
                "the GPU's class or vendor could not be read",
            )
            .evidence(
                g.issues
                    .iter()
                    .map(|i| format!("{}: {}", i.path, i.problem))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
        );
    }
    // Setup has written this card's configuration and says "Nothing to change": what its
    // fixes ask for is on disk, and the one step left is the reboot (docs/states.md).
    if ctx.state.state == crate::state::CardState::RebootPending {
        for f in findings.iter_mut().filter(|f| f.by_setup) {
            f.message = format!("{} ({})", f.message, ctx.state.state.describe());
            f.fix = Some(ctx.state.next_step.clone());
        }
    }
    let verdicts = ALL_USES
        .iter()
        .map(|u| {
            let worst = findings
                .iter()
                .filter(|f| f.uses.contains(u))
                .map(|f| f.effect)
                .max()
                .unwrap_or(Effect::None);
            let v = match worst {
                Effect::None => Verdict::Ready,
                Effect::NeedsSetup => Verdict::NeedsSetup,
                Effect::Unknown => Verdict::Unknown,
                Effect::Blocks => Verdict::Blocked,
            };
            (*u, v)
        })
        .collect::<BTreeMap<Use, Verdict>>();
    // "Run passthru setup vm" is no next step where something blocks the VM use: setup
    // refuses it. The one step is what the blocking findings say.
    let mut state = ctx.state.clone();
    if state.state == crate::state::CardState::NotConfigured
        && verdicts.get(&Use::Vm) == Some(&Verdict::Blocked)
    {
        let blocking: Vec<String> = findings
            .iter()
            .filter(|f| f.effect == Effect::Blocks && f.uses.contains(&Use::Vm))
            .map(|f| f.id.to_string())
            .collect();
        state.next_step = format!(
            "resolve what blocks the VM use first ({}); setup vm refuses until then",
            blocking.join(", ")
        );
    }
    GpuCheck {
        address: g.address,
        name: g.names.name.clone(),
        name_parts: name_parts(g),
        functions: ctx.functions.iter().map(|d| d.address).collect(),
        group: g.iommu_group.clone(),
        verdicts,
        state,
        findings,
    }
}

/// `["NVIDIA Corporation", "GA102 [GeForce RTX 3080]"]`: the vendor and device names the
/// full name is made of, or the full name alone when it is not those two joined.
fn name_parts(g: &PciDevice) -> Vec<String> {
    let n = &g.names;
    match (&n.vendor, &n.device) {
        (Some(v), Some(d)) if n.name == format!("{v} {d}") => vec![v.clone(), d.clone()],
        _ => vec![n.name.clone()],
    }
}

impl GpuCheck {
    /// Whether `rule` fired for this GPU.
    pub fn fired(&self, rule: RuleId) -> bool {
        self.findings.iter().any(|f| f.id == rule)
    }

    /// Why a command that prepares `u` must refuse: every finding that blocks `u`, and every
    /// finding of the rules in `also` (what that command cannot work around), each as
    /// `message (rule id)`.
    pub fn refusals(&self, u: Use, also: &[RuleId]) -> Vec<String> {
        self.findings
            .iter()
            .filter(|f| f.uses.contains(&u) && (f.effect == Effect::Blocks || also.contains(&f.id)))
            .map(|f| format!("{} ({})", f.message, f.id))
            .collect()
    }

    /// What `--force` lets through for `u`: every safety finding that fired (it blocks
    /// without `--force`), each as `--force: message (rule id)`, for the plan to state
    /// before anything else. Empty when the check was not forced or nothing was overridden.
    pub fn forced(&self, u: Use) -> Vec<String> {
        self.findings
            .iter()
            .filter(|f| f.id.forceable() && f.uses.contains(&u) && f.effect != Effect::Blocks)
            .map(|f| format!("--force: {} ({})", f.message, f.id))
            .collect()
    }
}

/// What every per-GPU rule looks at.
pub(crate) struct Ctx<'a> {
    pub s: &'a Snapshot,
    pub gpu: &'a PciDevice,
    /// The card's functions, the GPU first.
    pub functions: Vec<&'a PciDevice>,
    /// The safety blocks (boot disk, network, only display) are warnings only.
    pub force: bool,
    /// Where the card stands with vfio-pci (docs/states.md).
    pub state: crate::state::StateReport,
}

impl<'a> Ctx<'a> {
    fn new(s: &'a Snapshot, gpu: &'a PciDevice, force: bool) -> Self {
        let mut functions = s.card_functions(&gpu.address);
        functions.sort_by_key(|d| (d.address != gpu.address, d.address));
        Ctx {
            s,
            gpu,
            functions,
            force,
            state: crate::state::card_state(s, &gpu.address),
        }
    }

    /// The groups the card's functions are in, with their members.
    pub fn groups(&self) -> Vec<&'a crate::model::IommuGroup> {
        self.s.card_groups(&self.gpu.address)
    }

    /// Every device that would go to the VM with the card: all members of its groups.
    pub fn group_members(&self) -> Vec<PciAddress> {
        self.s.card_group_members(&self.gpu.address)
    }
}

/// `0000:01:00.0 (nvidia)`, for evidence lists.
pub(crate) fn describe(s: &Snapshot, a: &PciAddress) -> String {
    match s.device(a) {
        Some(d) => format!(
            "{a} {} [{}] ({})",
            d.names.name,
            d.vendor_device().unwrap_or_else(|| "????:????".into()),
            d.driver.as_deref().unwrap_or("no driver")
        ),
        None => a.to_string(),
    }
}

/// Kernel release as (major, minor), from `6.1.0-18-amd64`.
pub fn kernel_version(s: &Snapshot) -> Option<(u32, u32)> {
    let rel = s.system.kernel_release.as_deref()?;
    let mut it = rel.split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu(addr: &str, state: crate::state::CardState, vm: Verdict) -> GpuCheck {
        GpuCheck {
            address: addr.parse().unwrap(),
            name: String::new(),
            name_parts: vec![],
            functions: vec![],
            group: None,
            verdicts: [(Use::Vm, vm), (Use::Host, Verdict::Ready)].into(),
            state: crate::state::StateReport {
                state,
                ..Default::default()
            },
            findings: vec![],
        }
    }

    /// After setup and a reboot, a bare `check` is the verification: it judges the card set
    /// up for vfio-pci, not the display the host keeps (the e2e lab's boot 2 exited 1 on
    /// it). A named GPU, another use, or no card set up at all: every GPU counts.
    #[test]
    fn a_bare_check_judges_the_cards_set_up_for_vfio() {
        use crate::state::CardState::*;
        let r = CheckReport {
            schema_version: 1,
            gpus: vec![
                gpu("0000:00:02.0", Effective, Verdict::Ready),
                gpu("0000:00:03.0", NotConfigured, Verdict::NeedsSetup),
            ],
            unmatched: vec![],
        };
        assert!(r.all_ready(&[], false));
        assert!(r.all_ready(&[Use::Vm], false));
        assert!(!r.all_ready(&[], true), "a named GPU is judged");
        assert!(
            !r.all_ready(&[Use::Vm, Use::Host], false),
            "another use judges every GPU"
        );
        let none_set_up = CheckReport {
            gpus: vec![gpu("0000:00:03.0", NotConfigured, Verdict::NeedsSetup)],
            ..r.clone()
        };
        assert!(!none_set_up.all_ready(&[], false));
        let drifted = CheckReport {
            gpus: vec![
                gpu("0000:00:02.0", Drifted, Verdict::NeedsSetup),
                gpu("0000:00:03.0", NotConfigured, Verdict::Ready),
            ],
            ..r.clone()
        };
        assert!(!drifted.all_ready(&[], false), "a drifted card fails it");
    }

    #[test]
    fn a_selector_names_an_address_a_slot_ids_or_a_name_word() {
        let addr = |s: &str| s.parse::<PciAddress>().unwrap();
        assert_eq!(
            parse_selector("07:00.0"),
            Some(Selector::Address(addr("0000:07:00.0")))
        );
        assert_eq!(
            parse_selector(" 0000:07:00.1 "),
            Some(Selector::Address(addr("0000:07:00.1")))
        );
        assert_eq!(
            parse_selector("10000:00:02.0"),
            Some(Selector::Address(addr("10000:00:02.0"))),
            "a VMD domain"
        );
        assert_eq!(
            parse_selector("07:00"),
            Some(Selector::Slot(addr("0000:07:00.0")))
        );
        assert_eq!(
            parse_selector("0000:07:00"),
            Some(Selector::Slot(addr("0000:07:00.0")))
        );
        assert_eq!(
            parse_selector("10DE:2206"),
            Some(Selector::Ids("10de:2206".into()))
        );
        assert_eq!(parse_selector("RTX"), Some(Selector::Name("rtx".into())));
        assert_eq!(
            parse_selector("GeForce RTX 3080"),
            Some(Selector::Name("geforce rtx 3080".into()))
        );
        for nothing in [
            "", " ", ".", "a", "ab", ":", "07", "a b", "..:", "0000:07", "10de:",
        ] {
            assert_eq!(parse_selector(nothing), None, "{nothing:?}");
        }
    }
}
