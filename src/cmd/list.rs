//! `passthru list`: IOMMU groups and their devices, or each GPU with its group (`--gpus`).

use std::io::Write;

use anyhow::Result;

use passthru::check::{check_host, CheckRequest};
use passthru::model::ReadDetail;
use passthru::output::list::{build_gpus, build_list, render_gpus, render_list};
use passthru::output::list::{build_list as list_header, render_header};
use passthru::output::style::Style;
use passthru::output::tree::{build_tree, render_tree};

use passthru::formats::libvirt_xml::hostdev_sources;
use passthru::host::RootFiles;
use passthru::output::list::{GpuReport, PoolEntry};
use passthru::plan::attach_shared::{vm_entries, vms_using};
use passthru::plan::source::FileSource;
use passthru::plan::vf_pool::pools_of;

use super::{get_snapshot, host_root, write_json};
use crate::cli::{ListArgs, SourceArgs};

pub fn run(source: &SourceArgs, args: &ListArgs, style: Style, out: &mut dyn Write) -> Result<()> {
    if args.tree {
        return run_tree(source, style, out);
    }
    // list shows only what a summary read holds, so it reads no more (docs/performance.md).
    let snap = get_snapshot(source, ReadDetail::Summary)?;
    let gpus = || -> Result<_> {
        let mut r = build_gpus(&snap);
        // Who uses each VF is in the guests' configs, which a snapshot (--from) does not hold.
        if source.from.is_none() {
            let root = host_root(source)?;
            fill_vf_users(&mut r, &RootFiles::new(&root));
        }
        Ok(r)
    };
    match (args.gpus, args.json) {
        (true, true) => write_json(out, &gpus()?)?,
        (true, false) => render_gpus(out, &gpus()?, style)?,
        (false, true) => write_json(out, &build_list(&snap))?,
        (false, false) => render_list(out, &build_list(&snap), style)?,
    }
    Ok(())
}

/// `list --tree`: the host header, then the topology. The bridge chains, the host's own
/// devices and the verdicts need a full read (a summary holds no chains), and every GPU is
/// checked so that its verdicts and blockers show, as in `report`.
fn run_tree(source: &SourceArgs, style: Style, out: &mut dyn Write) -> Result<()> {
    let snap = get_snapshot(source, ReadDetail::Full)?;
    let check = check_host(&snap, &CheckRequest::default());
    render_header(out, &list_header(&snap), style)?;
    writeln!(out)?;
    render_tree(out, &snap, &build_tree(&snap, Some(&check)), style)?;
    Ok(())
}

/// Each VF's users: Proxmox VMs whose hostpci entries name it, libvirt domains whose
/// `<hostdev>` sources are it; and each pool mapping of a card's VFs with the VMs that name
/// it. Unreadable configs are skipped: list only reports.
fn fill_vf_users(r: &mut GpuReport, src: &dyn FileSource) {
    let vms = vm_entries(src);
    let domains: Vec<(String, Vec<passthru::formats::libvirt_xml::PciAddr>)> = src
        .list("etc/libvirt/qemu")
        .into_iter()
        .filter_map(|n| {
            let name = n.strip_suffix(".xml")?.to_string();
            let text = src.read_text(&format!("etc/libvirt/qemu/{n}")).ok()??;
            Some((name, hostdev_sources(&text)))
        })
        .collect();
    for g in &mut r.gpus {
        let vf_addresses: Vec<_> = g.vfs.iter().map(|v| v.device.address).collect();
        if !vf_addresses.is_empty() {
            g.pools = pools_of(src, &vf_addresses)
                .into_iter()
                .map(|p| PoolEntry {
                    mapping: p.mapping,
                    size: p.size,
                    users: p.vms.iter().map(|id| format!("VM {id}")).collect(),
                })
                .collect();
        }
        for v in &mut g.vfs {
            let a = v.device.address;
            v.users
                .extend(vms_using(&vms, &a).into_iter().map(|id| format!("VM {id}")));
            let pa = passthru::formats::libvirt_xml::PciAddr {
                domain: a.domain,
                bus: a.bus,
                slot: a.device,
                function: a.function,
            };
            v.users.extend(
                domains
                    .iter()
                    .filter(|(_, srcs)| srcs.contains(&pa))
                    .map(|(n, _)| format!("libvirt {n}")),
            );
        }
    }
}
