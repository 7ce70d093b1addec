//! The kernel command line: whitespace-separated `key` or `key=value`, where double quotes
//! may protect spaces (`key="a b"`), as the kernel's `next_arg()` reads it.

use std::ops::Range;

use crate::model::CmdlineParam;

/// The byte ranges of the parameters of a command line, as the kernel's `next_arg()` splits
/// it: whitespace separates, except inside double quotes.
pub fn split_cmdline(line: &str) -> Vec<Range<usize>> {
    let mut spans = Vec::new();
    let mut start = None;
    let mut in_quotes = false;
    for (i, c) in line.char_indices() {
        if c == '"' {
            in_quotes = !in_quotes;
        }
        if c.is_whitespace() && !in_quotes {
            if let Some(s) = start.take() {
                spans.push(s..i);
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        spans.push(s..line.len());
    }
    spans
}

/// One parameter (`key`, `key=value`, `key="a b"`), quotes removed the way the kernel removes
/// them.
pub fn parse_param(word: &str) -> CmdlineParam {
    let word: String = word.chars().filter(|&c| c != '"').collect();
    match word.split_once('=') {
        Some((k, v)) => CmdlineParam {
            key: k.to_string(),
            value: Some(v.to_string()),
        },
        None => CmdlineParam {
            key: word,
            value: None,
        },
    }
}

/// Splits a command line into parameters, keeping their order.
pub fn parse_cmdline(line: &str) -> Vec<CmdlineParam> {
    split_cmdline(line)
        .into_iter()
        .map(|r| parse_param(&line[r]))
        .collect()
}

/// Parameters that matter for IOMMU and VFIO, so a snapshot shows them without the noise.
pub fn is_passthrough_param(key: &str) -> bool {
    let key = key.replace('-', "_");
    matches!(
        key.as_str(),
        "intel_iommu"
            | "amd_iommu"
            | "iommu"
            | "pcie_acs_override"
            | "initcall_blacklist"
            | "video"
            | "nomodeset"
            | "modprobe.blacklist"
            | "module_blacklist"
            | "rd.driver.pre"
            | "rd.driver.blacklist"
            | "pci"
            | "pcie_aspm"
    ) || key.starts_with("vfio")
        || key.starts_with("kvm")
        || key.starts_with("iommu.")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(k: &str, v: Option<&str>) -> CmdlineParam {
        CmdlineParam {
            key: k.into(),
            value: v.map(Into::into),
        }
    }

    #[test]
    fn splits_keys_values_and_quotes() {
        let got = parse_cmdline(
            "BOOT_IMAGE=/vmlinuz-6.1 ro quiet intel_iommu=on  iommu=pt dyndbg=\"file a.c +p\" vfio-pci.ids=10de:2206,10de:1aef\n",
        );
        assert_eq!(
            got,
            vec![
                p("BOOT_IMAGE", Some("/vmlinuz-6.1")),
                p("ro", None),
                p("quiet", None),
                p("intel_iommu", Some("on")),
                p("iommu", Some("pt")),
                p("dyndbg", Some("file a.c +p")),
                p("vfio-pci.ids", Some("10de:2206,10de:1aef")),
            ]
        );
    }

    #[test]
    fn empty_and_blank_lines_have_no_params() {
        assert!(parse_cmdline("").is_empty());
        assert!(parse_cmdline("  \n").is_empty());
    }

    #[test]
    fn passthrough_params_are_recognised() {
        for k in [
            "intel_iommu",
            "vfio-pci.ids",
            "vfio_iommu_type1.allow_unsafe_interrupts",
            "initcall_blacklist",
        ] {
            assert!(is_passthrough_param(k), "{k}");
        }
        for k in ["quiet", "root", "BOOT_IMAGE"] {
            assert!(!is_passthrough_param(k), "{k}");
        }
    }
}
