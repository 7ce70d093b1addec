//! udev rule lines, as far as passthru reads them: a rule that sets
//! `ATTR{driver_override}="vfio-pci"` for one PCI function matched by `KERNEL=="ADDRESS"`
//! (how passthru, and some users, bind a card by address at boot).

/// The value of `KEY` with operator `op` (`==` to match, `=` to assign) in one rule line.
fn rule_value<'a>(line: &'a str, key: &str, op: &str) -> Option<&'a str> {
    let pat = format!("{key}{op}\"");
    let mut from = 0;
    while let Some(i) = line[from..].find(&pat) {
        let at = from + i;
        // A whole key: not the tail of a longer one (`SUBKERNEL==`).
        let whole = line[..at]
            .chars()
            .next_back()
            .is_none_or(|c| c == ' ' || c == ',' || c == '\t');
        if whole {
            let rest = &line[at + pat.len()..];
            return rest.split('"').next();
        }
        from = at + pat.len();
    }
    None
}

/// A rule binding one PCI function to vfio-pci by address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VfioOverrideRule {
    pub address: String,
    /// `ATTR{vendor}==` and `ATTR{device}==`, when the rule matches on them (passthru's do).
    pub vendor: Option<String>,
    pub device: Option<String>,
}

/// The vfio-pci binding a rule line makes, if it is one; comments are none.
pub fn parse_vfio_override(line: &str) -> Option<VfioOverrideRule> {
    let l = line.trim();
    if l.starts_with('#') || rule_value(l, "ATTR{driver_override}", "=") != Some("vfio-pci") {
        return None;
    }
    Some(VfioOverrideRule {
        address: rule_value(l, "KERNEL", "==")?.to_string(),
        vendor: rule_value(l, "ATTR{vendor}", "==").map(str::to_string),
        device: rule_value(l, "ATTR{device}", "==").map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_passthrus_and_plain_rules() {
        let ours = r#"ACTION=="add", SUBSYSTEM=="pci", KERNEL=="0000:07:00.0", ATTR{vendor}=="0x10de", ATTR{device}=="0x2206", ATTR{driver_override}="vfio-pci""#;
        assert_eq!(
            parse_vfio_override(ours),
            Some(VfioOverrideRule {
                address: "0000:07:00.0".into(),
                vendor: Some("0x10de".into()),
                device: Some("0x2206".into()),
            })
        );
        let plain = r#"SUBSYSTEM=="pci", KERNEL=="0000:03:00.1", ATTR{driver_override}="vfio-pci""#;
        assert_eq!(
            parse_vfio_override(plain).map(|r| r.address),
            Some("0000:03:00.1".into())
        );
        assert_eq!(parse_vfio_override(&format!("# {plain}")), None);
        assert_eq!(
            parse_vfio_override(r#"KERNEL=="0000:03:00.1", ATTR{driver_override}="nvidia""#),
            None
        );
    }
}
