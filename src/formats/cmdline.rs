//! The kernel command line: whitespace-separated `key` or `key=value`, where double quotes
//! may protect spaces (`key="a b"`), as the kernel's `next_arg()` reads it.

use crate::model::CmdlineParam;

/// Splits a command line into parameters, keeping their order. Quotes are removed from
/// values the way the kernel removes them.
pub fn parse_cmdline(line: &str) -> Vec<CmdlineParam> {
    let mut params = Vec::new();
    let mut chars = line.trim().chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut word = String::new();
        let mut in_quotes = false;
        while let Some(&c) = chars.peek() {
            if c == '"' {
                in_quotes = !in_quotes;
                chars.next();
                continue;
            }
            if c.is_whitespace() && !in_quotes {
                break;
            }
            word.push(c);
            chars.next();
        }
        let param = match word.split_once('=') {
            Some((k, v)) => CmdlineParam {
                key: k.to_string(),
                value: Some(v.to_string()),
            },
            None => CmdlineParam {
                key: word,
                value: None,
            },
        };
        params.push(param);
    }
    params
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
