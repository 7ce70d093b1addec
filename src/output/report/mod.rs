//! `passthru report --html`: the host on one self-contained page — the PCI tree with each
//! IOMMU group boxed, the GPUs with their verdicts, what blocks them, the findings with their
//! evidence and fixes, power and yearly cost, and the host header.
//!
//! Pure: [`render_html`] is a function of the snapshot, the check report and the power rows;
//! the command reads those and writes the file. The page fetches nothing (no scripts, fonts,
//! images or styles from anywhere: a `default-src 'none'` Content-Security-Policy says so to
//! the browser as well), so it works from `file://`, as a mail attachment, and offline. Host
//! strings are untrusted and only ever reach the page escaped ([`html::Html::text`]).

mod findings;
pub mod html;
mod topology;

use crate::assess::{summarize_iommu, IommuStatus};
use crate::check::{CheckReport, GpuCheck};
use crate::model::{Firmware, Snapshot};

use super::list::{bootloader_label, build_header, initramfs_name};
use super::power::PowerRow;
use super::tree::{build_tree, use_word, verdict_word};
use html::{id_token, Html};

/// What the page is made of.
pub struct ReportInput<'a> {
    pub snapshot: &'a Snapshot,
    /// Every GPU, every use (`check_host` with no selector).
    pub check: &'a CheckReport,
    pub power: &'a [PowerRow],
    /// Electricity price per kWh the yearly costs use.
    pub price_kwh: f64,
}

/// The policy the page declares: nothing may be loaded from anywhere; only the page's own
/// `<style>` and style attributes apply. Scripts are not merely absent, they are forbidden.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'";

const STYLESHEET: &str = include_str!("report.css");

/// The whole page.
pub fn render_html(r: &ReportInput) -> String {
    let s = r.snapshot;
    let mut h = Html::new();
    h.raw("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n")
        .raw("<meta http-equiv=\"Content-Security-Policy\" content=\"")
        .raw(CONTENT_SECURITY_POLICY)
        .raw("\">\n<meta name=\"referrer\" content=\"no-referrer\">\n")
        .raw("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>");
    h.text(&page_title(s));
    h.raw("</title>\n<style>\n")
        .raw(STYLESHEET)
        .raw("</style></head>\n<body>\n");
    render_icons(&mut h);
    render_header(&mut h, s);
    render_gpu_cards(&mut h, r.check);
    let tree = build_tree(s, Some(r.check));
    topology::render_topology(&mut h, s, &tree);
    findings::render_findings(&mut h, r.check);
    findings::render_power(&mut h, r.power, r.price_kwh);
    findings::render_issues(&mut h, s);
    h.raw("<footer>Made by passthru ");
    h.text(&s.source.passthru_version);
    h.raw(" from ");
    h.text(&s.source.root);
    h.raw(". This page is one file: it loads nothing from the network.</footer>\n</body></html>\n");
    h.finish()
}

fn page_title(s: &Snapshot) -> String {
    let os = s
        .system
        .os
        .pretty_name
        .as_deref()
        .or(s.system.os.id.as_deref())
        .unwrap_or("unknown OS");
    let kernel = s
        .system
        .kernel_release
        .as_deref()
        .unwrap_or("unknown kernel");
    format!("passthru report: {os}, kernel {kernel}")
}

/// The verdict icons, drawn once and referenced by id (same-document, nothing fetched).
fn render_icons(h: &mut Html) {
    h.raw(concat!(
        "<svg width=\"0\" height=\"0\" style=\"position:absolute\" aria-hidden=\"true\">",
        "<symbol id=\"i-ready\" viewBox=\"0 0 16 16\"><circle cx=\"8\" cy=\"8\" r=\"7\" fill=\"#fff\"/>",
        "<path d=\"M4.5 8.2l2.3 2.3 4.7-5\" stroke=\"#1a7f37\" stroke-width=\"2\" fill=\"none\"/></symbol>",
        "<symbol id=\"i-needs-setup\" viewBox=\"0 0 16 16\"><circle cx=\"8\" cy=\"8\" r=\"7\" fill=\"#fff\"/>",
        "<path d=\"M8 4v5M8 11v1.5\" stroke=\"#9a6700\" stroke-width=\"2\"/></symbol>",
        "<symbol id=\"i-blocked\" viewBox=\"0 0 16 16\"><circle cx=\"8\" cy=\"8\" r=\"7\" fill=\"#fff\"/>",
        "<path d=\"M5 5l6 6M11 5l-6 6\" stroke=\"#cf222e\" stroke-width=\"2\"/></symbol>",
        "<symbol id=\"i-unknown\" viewBox=\"0 0 16 16\"><circle cx=\"8\" cy=\"8\" r=\"7\" fill=\"#fff\"/>",
        "<path d=\"M6 6.2a2 2 0 1 1 2.8 1.8c-.6.3-.8.7-.8 1.3M8 11.2v1.3\" stroke=\"#6e7781\" stroke-width=\"1.8\" fill=\"none\"/></symbol>",
        "</svg>\n"
    ));
}

/// A verdict badge: `vm: blocked` with its icon.
pub(crate) fn render_verdict(h: &mut Html, u: crate::check::Use, v: crate::check::Verdict) {
    let word = verdict_word(v);
    h.raw("<span class=\"v v-")
        .raw(word)
        .raw("\"><svg><use href=\"#i-")
        .raw(word)
        .raw("\"/></svg>")
        .raw(use_word(u))
        .raw(": ")
        .raw(word)
        .raw("</span>");
}

fn render_header(h: &mut Html, s: &Snapshot) {
    let head = build_header(s);
    let iommu = summarize_iommu(s);
    let unknown = |o: &Option<String>, what: &str| o.clone().unwrap_or_else(|| what.to_string());
    h.raw("<header><h1>passthru report</h1><p class=\"sub\">");
    h.text(&format!(
        "{} in {}, {}",
        crate::output::words::count(s.devices.len(), "PCI function", "PCI functions"),
        crate::output::words::count(s.groups.len(), "IOMMU group", "IOMMU groups"),
        crate::output::words::count(s.gpus().count(), "GPU", "GPUs")
    ));
    h.raw("</p><dl class=\"host\">");
    let mut host = unknown(&head.os, "OS unknown");
    if let Some(p) = &head.proxmox {
        host.push_str(&format!(" · Proxmox VE {p}"));
    }
    if head.hypervisor {
        host.push_str(" · running as a VM");
    }
    dt_dd(h, "Host", &host);
    let virt = match head.virtualization.as_deref() {
        Some("vmx") => "VT-x",
        Some("svm") => "AMD-V",
        _ => "no VT-x/AMD-V flag",
    };
    dt_dd(
        h,
        "CPU",
        &format!("{} ({virt})", unknown(&head.cpu, "CPU unknown")),
    );
    h.raw("<dt>IOMMU</dt><dd>");
    h.text(&iommu.summary);
    if iommu.status != IommuStatus::On {
        for line in [&iommu.reason, &iommu.next_step].into_iter().flatten() {
            h.raw("<br><span class=\"why\">");
            h.text(line);
            h.raw("</span>");
        }
    }
    h.raw("</dd>");
    let mut kernel = unknown(&head.kernel, "kernel unknown");
    if let Some(c) = &s.system.cmdline {
        kernel.push_str(&format!(" · command line: {c}"));
    }
    dt_dd(h, "Kernel", &kernel);
    let firmware = match head.firmware {
        Some(Firmware::Efi) => "EFI",
        Some(Firmware::Bios) => "BIOS",
        None => "firmware unknown",
    };
    let boot = head
        .bootloader
        .map_or("boot loader not found".to_string(), |k| {
            bootloader_label(k, &head.cmdline_from)
        });
    let initramfs = if head.initramfs.is_empty() {
        "initramfs system not found".to_string()
    } else {
        head.initramfs
            .iter()
            .map(|k| initramfs_name(*k))
            .collect::<Vec<_>>()
            .join(", ")
    };
    dt_dd(h, "Boot", &format!("{firmware} · {boot} · {initramfs}"));
    h.raw("</dl></header>\n");
}

fn dt_dd(h: &mut Html, term: &str, text: &str) {
    h.el("dt", "", term).el("dd", "", text);
}

/// One card per GPU at the top: what a reader came for.
fn render_gpu_cards(h: &mut Html, c: &CheckReport) {
    h.raw("<section id=\"gpus\"><h2>GPUs</h2>");
    if c.gpus.is_empty() {
        h.raw("<p>No GPU found (no PCI function of class 03xx).</p></section>\n");
        return;
    }
    h.raw("<div class=\"cards\">");
    for g in &c.gpus {
        render_gpu_card(h, g);
    }
    h.raw("</div></section>\n");
}

fn render_gpu_card(h: &mut Html, g: &GpuCheck) {
    let addr = g.address.to_string();
    h.raw("<div class=\"card\"><a class=\"mono\" href=\"#d-")
        .raw(&id_token(&addr))
        .raw("\">");
    h.text(&addr);
    h.raw("</a> <span class=\"n\">");
    h.text(&g.name);
    h.raw("</span><br>");
    let group = g
        .group
        .as_deref()
        .map_or("in no IOMMU group".to_string(), |id| {
            format!("IOMMU group {id}")
        });
    h.text(&format!(
        "{} · {group} · {}",
        crate::output::words::count(g.functions.len(), "function", "functions"),
        g.state.state.describe()
    ));
    h.raw("<div class=\"verdicts\">");
    for (u, v) in &g.verdicts {
        render_verdict(h, *u, *v);
    }
    h.raw("</div><a href=\"#f-")
        .raw(&id_token(&addr))
        .raw("\">findings</a>");
    h.raw("</div>");
}
