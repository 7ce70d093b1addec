//! Property tests: Proxmox guest configs and the cluster PCI mapping file are read and written
//! back byte for byte, whatever their layout (sections and snapshots, description `#` lines,
//! odd spacing, CRLF line ends, a missing final newline), and an edit changes only what it
//! adds. The corpus half (every guest config of ../shared/corpus/proxmox) is in
//! tests/pve_config.rs; the corpus has no pci.cfg, so the mapping file is generated here.
//!
//! The generators build each text from a model (the settings, the mappings) and the test
//! compares what the parser reads with that model, so the expected values never come from the
//! code under test.

use passthru::formats::pve_config::{parse_guest_config, parse_pci_mapping_file, PciMapping};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};

fn runner(seed: u64) -> TestRunner {
    TestRunner::new(Config {
        cases: 300,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        ..Config::default()
    })
}

// ---------------------------------------------------------------------------------------------
// Guest configs
// ---------------------------------------------------------------------------------------------

/// One line of a generated guest config, with what Proxmox reads from it.
#[derive(Debug, Clone)]
enum GuestLine {
    /// `raw` reads as `key` = `value`.
    Entry {
        raw: String,
        key: String,
        value: String,
    },
    Comment(String),
    Blank(String),
}

fn entry_line() -> impl Strategy<Value = GuestLine> {
    let key = prop::sample::select(vec![
        "memory",
        "cores",
        "name",
        "net0",
        "hostpci0",
        "hostpci12",
        "args",
        "description",
        "lxc.cgroup2.devices.allow",
        "lxc.mount.entry",
        "dev0",
    ]);
    // Values hold what real ones do: `:`, `=`, `,`, `;`, `#`, spaces inside.
    let value = "[a-zA-Z0-9][a-zA-Z0-9=,;:./#~* _-]{0,24}"
        .prop_map(|v| v.trim_end().to_string())
        .prop_filter("non-empty", |v| !v.is_empty());
    let sep = prop::sample::select(vec![": ", ":", ":  ", ":\t", " = ", "="]);
    let trail = prop::sample::select(vec!["", " ", "  \t"]);
    (key, value, sep, trail)
        .prop_filter("`=` separates lxc.* keys only", |(k, _, s, _)| {
            !s.contains('=') || k.starts_with("lxc.")
        })
        .prop_map(|(k, v, s, t)| GuestLine::Entry {
            raw: format!("{k}{s}{v}{t}"),
            key: k.to_string(),
            value: v,
        })
}

fn guest_line() -> impl Strategy<Value = GuestLine> {
    prop_oneof![
        6 => entry_line(),
        2 => "#[ -~]{0,20}".prop_map(GuestLine::Comment),
        1 => prop::sample::select(vec!["", " ", "\t", "  "]).prop_map(|b| GuestLine::Blank(b.into())),
    ]
}

#[derive(Debug, Clone)]
struct GuestText {
    main: Vec<GuestLine>,
    /// `[name]` and its lines.
    sections: Vec<(String, Vec<GuestLine>)>,
    crlf: bool,
    final_newline: bool,
}

impl GuestText {
    fn text(&self) -> String {
        let nl = if self.crlf { "\r\n" } else { "\n" };
        let mut lines: Vec<String> = self.main.iter().map(raw_of).collect();
        for (name, body) in &self.sections {
            lines.push(format!("[{name}]"));
            lines.extend(body.iter().map(raw_of));
        }
        let mut out = lines.join(nl);
        if self.final_newline && !lines.is_empty() {
            out.push_str(nl);
        }
        out
    }

    /// The main section's value of `key` as Proxmox reads it: the last line's.
    fn main_value(&self, key: &str) -> Option<&str> {
        self.main.iter().rev().find_map(|l| match l {
            GuestLine::Entry { key: k, value, .. } if k == key => Some(value.as_str()),
            _ => None,
        })
    }
}

fn raw_of(l: &GuestLine) -> String {
    match l {
        GuestLine::Entry { raw, .. } => raw.clone(),
        GuestLine::Comment(c) | GuestLine::Blank(c) => c.clone(),
    }
}

fn guest_text() -> impl Strategy<Value = GuestText> {
    let section_name = prop::sample::select(vec![
        "PENDING",
        "pve:pending",
        "special:cloudinit",
        "snap1",
        "before-upgrade_2",
        "special:unknown",
    ]);
    let section = (
        section_name,
        prop::collection::vec(guest_line(), 0..6),
        any::<u64>(),
    )
        .prop_map(|(n, mut body, t)| {
            // Snapshots carry their parent and time, as Proxmox writes them.
            body.insert(
                0,
                GuestLine::Entry {
                    raw: format!("snaptime: {t}"),
                    key: "snaptime".into(),
                    value: t.to_string(),
                },
            );
            (n.to_string(), body)
        });
    (
        prop::collection::vec(guest_line(), 0..14),
        prop::collection::vec(section, 0..3),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(main, sections, crlf, final_newline)| GuestText {
            main,
            sections,
            crlf,
            final_newline,
        })
}

#[test]
fn guest_configs_read_and_write_back_byte_for_byte() {
    runner(0x7076_6563_6f6e_6601)
        .run(&guest_text(), |g| {
            let text = g.text();
            let cfg = parse_guest_config(&text)
                .map_err(|e| TestCaseError::fail(format!("{e}\n{text:?}")))?;
            prop_assert_eq!(cfg.render(), text.clone());
            for key in [
                "memory",
                "name",
                "hostpci0",
                "lxc.mount.entry",
                "dev0",
                "snaptime",
            ] {
                prop_assert_eq!(
                    cfg.main_get(key),
                    g.main_value(key),
                    "{} in {:?}",
                    key,
                    text
                );
            }
            let names: Vec<String> = g.sections.iter().map(|(n, _)| n.clone()).collect();
            prop_assert_eq!(cfg.section_names(), names);
            Ok(())
        })
        .unwrap();
}

/// An edit of the main section leaves every section byte for byte, keeps every old main line,
/// and what it set is read back.
#[test]
fn guest_config_edits_touch_only_what_they_set() {
    runner(0x7076_6563_6f6e_6602)
        .run(&guest_text(), |g| {
            let text = g.text();
            let mut cfg = parse_guest_config(&text).unwrap();
            cfg.main_set("hostpci15", "0000:03:00,pcie=1");
            cfg.main_set("memory", "8192");
            let out = cfg.render();
            let reread = parse_guest_config(&out).unwrap();
            prop_assert_eq!(reread.main_get("hostpci15"), Some("0000:03:00,pcie=1"));
            prop_assert_eq!(reread.main_get("memory"), Some("8192"));
            // Sections: the bytes from the first header on are the same.
            let first_header = |t: &str| {
                t.match_indices('[')
                    .find(|(i, _)| *i == 0 || t.as_bytes()[i - 1] == b'\n')
                    .map(|(i, _)| i)
            };
            match (first_header(&text), first_header(&out)) {
                (Some(a), Some(b)) => prop_assert_eq!(&text[a..], &out[b..]),
                (None, None) => {}
                other => prop_assert!(false, "sections changed: {:?}", other),
            }
            for key in ["name", "hostpci0", "lxc.mount.entry", "dev0"] {
                prop_assert_eq!(reread.main_get(key), g.main_value(key));
            }
            // Removing what was added gives the old main lines back, in order.
            let mut undo = reread.clone();
            undo.main_remove("hostpci15");
            let kept: Vec<String> = undo.render().lines().map(str::to_string).collect();
            let old: Vec<String> = text.lines().map(str::to_string).collect();
            let changed_memory = g.main_value("memory").is_some();
            if !changed_memory {
                let extra: Vec<&str> = kept
                    .iter()
                    .filter(|l| !old.contains(l))
                    .map(String::as_str)
                    .collect();
                prop_assert_eq!(extra, vec!["memory: 8192"]);
            }
            Ok(())
        })
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// The cluster PCI mapping file
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct MappingText {
    mappings: Vec<PciMapping>,
    /// Indentation of property lines, and the space between key and value.
    indent: &'static str,
    gap: &'static str,
    /// Comment lines after property `i` of every mapping (`None`: none).
    comment_at: Option<usize>,
    /// Empty lines between mappings (at least one), and whether they hold spaces.
    blanks: usize,
    spaced_blank: bool,
    leading_comment: bool,
    crlf: bool,
    final_newline: bool,
}

impl MappingText {
    fn text(&self) -> String {
        let nl = if self.crlf { "\r\n" } else { "\n" };
        let mut lines: Vec<String> = Vec::new();
        if self.leading_comment {
            lines.push("# cluster PCI mappings, edited by hand".into());
        }
        for (n, m) in self.mappings.iter().enumerate() {
            if n > 0 {
                for _ in 0..self.blanks {
                    lines.push(if self.spaced_blank {
                        " \t".into()
                    } else {
                        String::new()
                    });
                }
            }
            lines.push(m.id.clone());
            let mut props: Vec<String> = m
                .maps
                .iter()
                .map(|map| {
                    let parts: Vec<String> = map.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    format!("{}map{}{}", self.indent, self.gap, parts.join(","))
                })
                .collect();
            if let Some(d) = &m.description {
                props.push(format!("{}description{}{d}", self.indent, self.gap));
            }
            for (k, v) in &m.other {
                props.push(format!("{}{k}{}{v}", self.indent, self.gap));
            }
            for (i, p) in props.into_iter().enumerate() {
                lines.push(p);
                if self.comment_at == Some(i) {
                    lines.push(format!("{}# a note inside the section", self.indent));
                }
            }
        }
        let mut out = lines.join(nl);
        if self.final_newline && !lines.is_empty() {
            out.push_str(nl);
        }
        out
    }
}

fn map_pairs() -> impl Strategy<Value = Vec<(String, String)>> {
    (
        "[a-z][a-z0-9-]{0,8}",
        "0000:0[0-9a-f]:00(\\.[0-7])?(;0000:0[0-9a-f]:00\\.[0-7])?",
        "[0-9a-f]{4}:[0-9a-f]{4}",
        prop::option::of("[0-9]{1,2}"),
    )
        .prop_map(|(node, path, id, group)| {
            let mut v = vec![
                ("node".to_string(), node),
                ("path".to_string(), path),
                ("id".to_string(), id),
            ];
            if let Some(g) = group {
                v.push(("iommugroup".into(), g));
            }
            v
        })
}

fn mapping_text() -> impl Strategy<Value = MappingText> {
    let mapping = (
        prop::collection::vec(map_pairs(), 1..4),
        prop::option::of("[A-Za-z0-9][A-Za-z0-9 ]{0,12}[A-Za-z0-9]"),
        prop::option::of(prop::sample::select(vec!["mdev", "live-migration-capable"])),
    );
    (
        prop::collection::btree_set("[a-z][a-z0-9_-]{1,8}", 0..4),
        prop::collection::vec(mapping, 4),
        prop::sample::select(vec!["\t", "  ", " \t"]),
        prop::sample::select(vec![" ", "\t", "  "]),
        prop::option::of(0usize..3),
        1usize..3,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(ids, bodies, indent, gap, comment_at, blanks, spaced, lead, crlf, fnl)| {
                let mappings = ids
                    .into_iter()
                    .zip(bodies)
                    .map(|(id, (maps, description, other))| PciMapping {
                        id,
                        description,
                        maps,
                        other: other
                            .map(|k| vec![(k.to_string(), "1".to_string())])
                            .unwrap_or_default(),
                    })
                    .collect();
                MappingText {
                    mappings,
                    indent,
                    gap,
                    comment_at,
                    blanks,
                    spaced_blank: spaced,
                    leading_comment: lead,
                    crlf,
                    final_newline: fnl,
                }
            },
        )
}

#[test]
fn mapping_files_read_and_write_back_byte_for_byte() {
    runner(0x7076_6563_6f6e_6603)
        .run(&mapping_text(), |m| {
            let text = m.text();
            let file = parse_pci_mapping_file(&text)
                .map_err(|e| TestCaseError::fail(format!("{e}\n{text:?}")))?;
            prop_assert_eq!(file.render(), text);
            prop_assert_eq!(file.mappings(), m.mappings.as_slice());
            Ok(())
        })
        .unwrap();
}

/// Adding a map line to an existing mapping or a new mapping keeps every old line in order,
/// and the result reads as the old mappings plus the addition.
#[test]
fn mapping_file_additions_keep_every_old_line() {
    let case = (
        mapping_text(),
        map_pairs(),
        any::<prop::sample::Index>(),
        any::<bool>(),
    );
    runner(0x7076_6563_6f6e_6604)
        .run(&case, |(m, map, which, existing)| {
            let text = m.text();
            let mut file = parse_pci_mapping_file(&text).unwrap();
            let mut expected = m.mappings.clone();
            let id = if existing && !expected.is_empty() {
                let k = which.index(expected.len());
                expected[k].maps.push(map.clone());
                expected[k].id.clone()
            } else {
                let id = "new-gpu".to_string();
                expected.push(PciMapping {
                    id: id.clone(),
                    maps: vec![map.clone()],
                    ..PciMapping::default()
                });
                id
            };
            file.add_map(&id, map);
            let out = file.render();
            let reread = parse_pci_mapping_file(&out)
                .map_err(|e| TestCaseError::fail(format!("{e}\n{out:?}")))?;
            prop_assert_eq!(reread.mappings(), expected.as_slice());
            // The old lines are a subsequence of the new ones.
            let mut new_lines = out.split('\n');
            for old in text.split('\n').filter(|l| !l.is_empty()) {
                prop_assert!(new_lines.any(|l| l == old), "{:?} lost in {:?}", old, out);
            }
            Ok(())
        })
        .unwrap();
}
