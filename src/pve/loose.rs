//! Serde helpers for the loose JSON types Proxmox's Perl API returns.
//!
//! Perl has no boolean or integer type of its own, so the API sends `1`/`0` for booleans
//! (`mdev: 1` from `SysFSTools::lspci`, `template: 0` from `/cluster/resources`), and values
//! read from config files can arrive as strings (`"memory": "16384"`, a `vmid` as `"100"`).
//! Proxmox's own Rust crates accept these in `proxmox-serde/src/perl.rs` ("deal with perl's
//! untypedness"): booleans as `true`/`false`, `1`/`0`, or the strings `"1"`, `"0"`,
//! `"true"`, `"false"`, `"yes"`, `"no"`, `"on"`, `"off"`; integers as numbers or numeric
//! strings. These helpers accept the same set (docs/cluster.md, "Loose types").
//!
//! Pure; no I/O.

use serde::de::{self, Deserializer};
use serde::Deserialize;

/// A boolean as Perl sends it. Reads `true`, `1`, `"1"`, `"yes"`, `"on"`, `"true"` (any
/// case) as true, and `false`, `0`, `"0"`, `"no"`, `"off"`, `"false"` and `""` as false.
pub fn bool_from_perl(v: &serde_json::Value) -> Option<bool> {
    use serde_json::Value;
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_i64() {
            Some(0) => Some(false),
            Some(1) => Some(true),
            _ => n.as_f64().map(|f| f != 0.0),
        },
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Some(true),
            "0" | "false" | "no" | "off" | "" => Some(false),
            _ => None,
        },
        Value::Null => Some(false),
        _ => None,
    }
}

/// An integer as Perl sends it: a JSON number (an integral float too) or a numeric string.
pub fn int_from_perl(v: &serde_json::Value) -> Option<i64> {
    use serde_json::Value;
    match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Any scalar as the text Proxmox would write it into a config file (`1`, `16384`,
/// `mapping=gpu0,pcie=1`); `None` for null, arrays and objects.
pub fn text_from_perl(v: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(if *b { "1" } else { "0" }.to_string()),
        _ => None,
    }
}

macro_rules! loose_visitor {
    ($name:ident, $ty:ty, $conv:ident, $what:literal) => {
        /// Deserializes an optional field with the Perl rules above; a missing or null field
        /// is `None`.
        pub fn $name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<$ty>, D::Error> {
            let v = Option::<serde_json::Value>::deserialize(d)?;
            match v {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(v) => $conv(&v)
                    .map(Some)
                    .ok_or_else(|| de::Error::custom(format!("expected {}, got {v}", $what))),
            }
        }
    };
}

loose_visitor!(opt_bool, bool, bool_from_perl, "a boolean (1/0)");
loose_visitor!(opt_int, i64, int_from_perl, "an integer");
loose_visitor!(opt_text, String, text_from_perl, "a string or number");

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn booleans_arrive_as_numbers_strings_and_words() {
        for t in [json!(true), json!(1), json!("1"), json!("yes"), json!("On")] {
            assert_eq!(bool_from_perl(&t), Some(true), "{t}");
        }
        for f in [json!(false), json!(0), json!("0"), json!("no"), json!("")] {
            assert_eq!(bool_from_perl(&f), Some(false), "{f}");
        }
        assert_eq!(bool_from_perl(&json!("maybe")), None);
        assert_eq!(bool_from_perl(&json!([1])), None);
    }

    #[test]
    fn integers_arrive_as_numbers_or_numeric_strings() {
        assert_eq!(int_from_perl(&json!(14)), Some(14));
        assert_eq!(int_from_perl(&json!("14")), Some(14));
        assert_eq!(int_from_perl(&json!(-1)), Some(-1));
        assert_eq!(int_from_perl(&json!(14.0)), Some(14));
        assert_eq!(int_from_perl(&json!("x14")), None);
        assert_eq!(int_from_perl(&json!(1.5)), None);
    }

    #[test]
    fn text_is_what_a_config_file_holds() {
        assert_eq!(text_from_perl(&json!(16384)).as_deref(), Some("16384"));
        assert_eq!(text_from_perl(&json!("a,b")).as_deref(), Some("a,b"));
        assert_eq!(text_from_perl(&json!(null)), None);
    }
}
