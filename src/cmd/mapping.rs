//! `passthru mapping create|list`: Proxmox cluster PCI resource mappings
//! (etc/pve/mapping/pci.cfg).

use std::io::Write;

use anyhow::{Context, Result};

use passthru::formats::pve_config::parse_pci_mappings;
use passthru::host::{HostRoot, RootFiles};
use passthru::model::ReadDetail;
use passthru::output::documents::{MappingDoc, MappingListDocument, DOCUMENT_SCHEMA_VERSION};
use passthru::plan::attach::{plan_mapping_create, MAPPING_FILE};
use passthru::plan::source::FileSource;

use super::{change_host, get_snapshot, host_root};
use crate::cli::{MappingCommand, SourceArgs};

pub fn run(source: &SourceArgs, cmd: &MappingCommand, out: &mut dyn Write) -> Result<()> {
    let root = host_root(source)?;
    match cmd {
        MappingCommand::Create(a) => change_host(&root, a.write, out, || {
            let snap = get_snapshot(source, ReadDetail::Check)?;
            Ok(plan_mapping_create(
                &snap,
                &RootFiles::new(&root),
                &a.name,
                &a.gpu,
                a.vfs,
            )?)
        }),
        MappingCommand::List(j) => list(&root, j.json, out),
    }
}

fn list(root: &HostRoot, json: bool, out: &mut dyn Write) -> Result<()> {
    let reading = || format!("reading {}", root.join(MAPPING_FILE).display());
    // Absent is "no mappings"; present but unreadable or not text is an error, never an
    // empty list.
    let text = RootFiles::new(root)
        .read_text(MAPPING_FILE)
        .with_context(reading)?
        .unwrap_or_default();
    let maps = parse_pci_mappings(&text).with_context(reading)?;
    if json {
        let doc = MappingListDocument {
            schema_version: DOCUMENT_SCHEMA_VERSION,
            mappings: maps
                .into_iter()
                .map(|m| MappingDoc {
                    id: m.id,
                    description: m.description,
                    maps: m.maps,
                })
                .collect(),
        };
        return super::write_json(out, &doc);
    }
    if maps.is_empty() {
        writeln!(out, "No PCI resource mappings.")?;
    }
    for m in maps {
        writeln!(
            out,
            "{}{}",
            m.id,
            m.description
                .map(|d| format!("  ({d})"))
                .unwrap_or_default()
        )?;
        for map in m.maps {
            let kv: Vec<String> = map.iter().map(|(k, v)| format!("{k}={v}")).collect();
            writeln!(out, "  {}", kv.join(","))?;
        }
    }
    Ok(())
}
