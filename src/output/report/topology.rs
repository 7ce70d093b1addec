//! The PCI tree on the page: one row per function (or per collapsed run), each IOMMU group a
//! coloured box around its consecutive rows. The tree itself is `output::tree`'s, the one
//! `list --tree` prints.

use std::collections::HashMap;

use crate::model::{PciDevice, Snapshot};
use crate::output::tree::{run_groups, CollapsedRun, DeviceNode, DeviceTree, TreeItem, TreeRow};

use super::html::{id_token, Html};

/// The box the previous row was drawn in, so that the next row of the same group joins it.
#[derive(PartialEq)]
enum Open {
    None,
    Group(String),
    Ungrouped,
}

pub(super) fn render_topology(h: &mut Html, s: &Snapshot, t: &DeviceTree) {
    h.raw("<section id=\"topology\"><h2>PCI topology and IOMMU groups</h2>");
    h.raw(concat!(
        "<div class=\"legend\">",
        "<span><svg width=\"28\" height=\"14\"><rect x=\"1\" y=\"1\" width=\"26\" height=\"12\" rx=\"3\" fill=\"hsl(200 70% 96%)\" stroke=\"hsl(200 55% 45%)\" stroke-width=\"2\"/></svg> an IOMMU group (what goes to a VM together)</span>",
        "<span><svg width=\"28\" height=\"14\"><rect x=\"1\" y=\"1\" width=\"26\" height=\"12\" rx=\"3\" fill=\"#fff0f0\" stroke=\"#cf222e\" stroke-width=\"2\" stroke-dasharray=\"4 2\"/></svg> a group that blocks a GPU</span>",
        "<span class=\"tag gpu\">GPU</span><span class=\"tag host\">boot disk · host network · display</span><span class=\"tag bad\">blocks GPU</span>",
        "</div>"
    ));
    if t.chains_unknown {
        h.raw("<p class=\"why\">This snapshot holds no bridge chains (a summary read or a trimmed tree): devices are shown on their own bus.</p>");
    }
    if t.rows.is_empty() {
        h.raw("<p>No PCI devices found under sys/bus/pci/devices.</p>");
    }
    // Hue per group from its place in the snapshot, spread by the golden angle so that
    // neighbours differ, and kept out of the reds (30..330) that mark a blocking group.
    let hues: HashMap<&str, u32> = s
        .groups
        .iter()
        .enumerate()
        .map(|(i, g)| (g.id.as_str(), 30 + ((i as f64 * 137.508) % 300.0) as u32))
        .collect();
    let blocking = blocking_groups(t);
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut open = Open::None;
    h.raw("<div class=\"tree\">");
    for row in &t.rows {
        match &row.item {
            TreeItem::RootBus { domain, bus } => {
                close(h, &mut open);
                h.raw("<div class=\"rc\">");
                h.text(&format!("root complex: root bus {domain:04x}:{bus:02x}"));
                h.raw("</div>");
            }
            TreeItem::Device(n) => {
                let want = match &n.group {
                    Some(g) => Open::Group(g.clone()),
                    None => Open::Ungrouped,
                };
                if want != open {
                    close(h, &mut open);
                    open_box(h, n, &hues, &blocking, &mut seen);
                    open = want;
                }
                render_device_row(h, s, row, n);
            }
            TreeItem::Collapsed(run) => {
                close(h, &mut open);
                render_run(h, s, row, run);
            }
        }
    }
    close(h, &mut open);
    h.raw("</div></section>\n");
}

/// Groups with a member that blocks a GPU: drawn red.
fn blocking_groups(t: &DeviceTree) -> Vec<&str> {
    t.rows
        .iter()
        .filter_map(|r| match &r.item {
            TreeItem::Device(n) if !n.blocks.is_empty() => n.group.as_deref(),
            _ => None,
        })
        .collect()
}

fn close(h: &mut Html, open: &mut Open) {
    if *open != Open::None {
        h.raw("</div></div>");
    }
    *open = Open::None;
}

fn open_box<'a>(
    h: &mut Html,
    n: &'a DeviceNode,
    hues: &HashMap<&str, u32>,
    blocking: &[&str],
    seen: &mut HashMap<&'a str, usize>,
) {
    let Some(id) = n.group.as_deref() else {
        h.raw("<div class=\"grp\" style=\"--h:210\" data-group=\"\"><div class=\"glabel\">in no IOMMU group</div><div class=\"rows\">");
        return;
    };
    let size = n.group_size;
    let mut class = String::from("grp");
    if size > 1 {
        class.push_str(" shared");
    }
    if blocking.contains(&id) {
        class.push_str(" blocking");
    }
    let part = seen.entry(id).or_insert(0);
    *part += 1;
    h.raw("<div class=\"")
        .raw(&class)
        .raw("\" style=\"--h:")
        .raw(&hues.get(id).copied().unwrap_or(0).to_string())
        .raw("\" data-group=\"")
        .text(id)
        .raw("\"><div class=\"glabel\">");
    let mut label = format!("IOMMU group {id}");
    if size > 1 {
        label.push_str(&format!(" · {size} devices"));
    }
    if *part > 1 {
        label.push_str(" (continued)");
    }
    h.text(&label);
    h.raw("</div><div class=\"rows\">");
}

/// The guides and branch of a row, drawn by CSS borders (no font needed for box drawing).
fn render_branch(h: &mut Html, row: &TreeRow) {
    for g in &row.guides {
        h.raw(if *g {
            "<i class=\"g on\"></i>"
        } else {
            "<i class=\"g\"></i>"
        });
    }
    h.raw(if row.last {
        "<i class=\"b last\"></i>"
    } else {
        "<i class=\"b\"></i>"
    });
}

fn render_function(h: &mut Html, d: Option<&PciDevice>) {
    let Some(d) = d else {
        h.el(
            "span",
            "name",
            "(listed by its group, absent from sys/bus/pci/devices)",
        );
        return;
    };
    let class = d
        .class
        .map_or("????".to_string(), |c| format!("{:04x}", c.class16()));
    h.el("span", "cls", &format!("[{class}]"));
    h.el("span", "name", &d.names.name);
    h.el(
        "span",
        "ids",
        &format!(
            "[{}]",
            d.vendor_device().unwrap_or_else(|| "????:????".into())
        ),
    );
    h.el("span", "drv", d.driver.as_deref().unwrap_or("no driver"));
}

fn render_device_row(h: &mut Html, s: &Snapshot, row: &TreeRow, n: &DeviceNode) {
    let d = s.device(&n.address);
    let gpu = d.is_some_and(PciDevice::is_gpu);
    let addr = n.address.to_string();
    let mut class = String::from("row");
    if gpu {
        class.push_str(" gpu");
    }
    if !n.blocks.is_empty() {
        class.push_str(" blocker");
    }
    h.raw("<div class=\"")
        .raw(&class)
        .raw("\" id=\"d-")
        .raw(&id_token(&addr))
        .raw("\">");
    render_branch(h, row);
    h.el("span", "addr", &addr);
    render_function(h, d);
    if gpu {
        h.raw("<span class=\"tag gpu\">GPU</span>");
    }
    if d.is_some_and(PciDevice::is_bridge) {
        h.raw("<span class=\"tag\">bridge</span>");
    }
    if let Some(pf) = n.vf_of {
        h.el("span", "tag vf", &format!("VF of {pf}"));
    }
    for r in &n.roles {
        h.el("span", "tag host", r.label());
    }
    for g in &n.blocks {
        let target = g.to_string();
        h.raw("<a class=\"tag bad\" href=\"#d-")
            .raw(&id_token(&target))
            .raw("\">");
        h.text(&format!("blocks GPU {target} for vm"));
        h.raw("</a>");
    }
    if let Some(v) = &n.verdicts {
        for (u, v) in &v.verdicts {
            super::render_verdict(h, *u, *v);
        }
    }
    h.raw("</div>");
}

/// A run of identical functions: one row, and every address (with its group) in a closed
/// `<details>`, so the page stays short and still names each one.
fn render_run(h: &mut Html, s: &Snapshot, row: &TreeRow, run: &CollapsedRun) {
    h.raw("<div class=\"grp run\" style=\"--h:210\" data-groups=\"")
        .raw(&run.members.len().to_string())
        .raw("\"><div class=\"glabel\">");
    h.text(&run_groups(run));
    h.raw("</div><div class=\"rows\"><div class=\"row\" id=\"d-")
        .raw(&id_token(&run.first().to_string()))
        .raw("\">");
    render_branch(h, row);
    let last = run.members[run.members.len() - 1].0;
    h.el(
        "span",
        "addr",
        &format!("{} × {} … {}", run.members.len(), run.first(), last),
    );
    let first = s.device(&run.first());
    render_function(h, first);
    if let Some(pf) = first.and_then(|d| d.physfn) {
        h.el("span", "tag vf", &format!("VFs of {pf}"));
    }
    h.raw("</div><details class=\"members\"><summary>");
    h.text(&format!(
        "{} identical functions, each alone in its IOMMU group",
        run.members.len()
    ));
    h.raw("</summary><ol>");
    for (a, g) in &run.members {
        h.raw("<li>");
        h.text(&match g {
            Some(g) => format!("{a} · IOMMU group {g}"),
            None => format!("{a} · no IOMMU group"),
        });
        h.raw("</li>");
    }
    h.raw("</ol></details></div></div>");
}
