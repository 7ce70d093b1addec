//! The Debian copyright file of a Rust binary, from `cargo metadata`.
//!
//! Shipped is what is linked into the binary: the package and every crate reached from it
//! through normal dependencies (not dev- or build-dependencies), for the target platform
//! the metadata was filtered for. Procedural-macro crates run only in the compiler and are
//! left out. Each crate gets a `Files:` paragraph with its authors and licence expression;
//! every licence named gets a stand-alone paragraph: a pointer into
//! `/usr/share/common-licenses` where Debian ships the text, else the text from the licence
//! directory. A licence with no text there is an error naming the crates that use it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;

/// Licences whose text Debian ships in `/usr/share/common-licenses`.
const COMMON: &[&str] = &[
    "Apache-2.0",
    "MPL-2.0",
    "CC0-1.0",
    "GPL-2",
    "GPL-3",
    "LGPL-2.1",
];

/// One shipped crate.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Crate {
    pub name: String,
    pub version: String,
    pub licence: String,
    pub authors: Vec<String>,
    pub repository: Option<String>,
}

/// `MIT/Apache-2.0` → `MIT or Apache-2.0`; `A OR B` → `A or B`; `A WITH X` → `A with X
/// exception`-style `A with X`: DEP-5's spelling of an SPDX expression.
pub fn dep5_licence(spdx: &str) -> String {
    spdx.replace(" / ", " OR ")
        .replace('/', " OR ")
        .split_whitespace()
        .map(|w| match w {
            "OR" => "or",
            "AND" => "and",
            "WITH" => "with",
            other => other,
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The licence names of an expression: `(MIT or Apache-2.0) and Unicode-3.0` gives MIT,
/// Apache-2.0, Unicode-3.0; `Apache-2.0 with LLVM-exception` gives Apache-2.0 and
/// LLVM-exception.
pub fn licence_names(dep5: &str) -> Vec<String> {
    dep5.split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter(|w| !w.is_empty() && !matches!(*w, "or" | "and" | "with"))
        .map(str::to_string)
        .collect()
}

/// The crates linked into `package`'s binary, sorted by name and version.
pub fn shipped_crates(metadata: &str, package: &str) -> Result<Vec<Crate>, String> {
    let m: Value =
        serde_json::from_str(metadata).map_err(|e| format!("cargo metadata is not JSON: {e}"))?;
    let packages = m["packages"]
        .as_array()
        .ok_or("cargo metadata has no packages")?;
    let by_id: BTreeMap<&str, &Value> = packages
        .iter()
        .filter_map(|p| Some((p["id"].as_str()?, p)))
        .collect();
    let nodes: BTreeMap<&str, &Value> = m["resolve"]["nodes"]
        .as_array()
        .ok_or("cargo metadata has no resolve graph (run it without --no-deps)")?
        .iter()
        .filter_map(|n| Some((n["id"].as_str()?, n)))
        .collect();
    let root = packages
        .iter()
        .find(|p| p["name"] == package)
        .and_then(|p| p["id"].as_str())
        .ok_or_else(|| format!("no package {package} in the metadata"))?;
    let is_proc_macro = |p: &Value| {
        p["targets"].as_array().into_iter().flatten().any(|t| {
            t["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "proc-macro"))
        })
    };
    let mut seen = BTreeSet::new();
    let mut stack = vec![root];
    while let Some(id) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        // A proc macro and what it depends on (syn, quote …) run in the compiler only.
        if by_id.get(id).is_some_and(|p| is_proc_macro(p)) {
            continue;
        }
        let Some(node) = nodes.get(id) else { continue };
        for d in node["deps"].as_array().into_iter().flatten() {
            let normal = d["dep_kinds"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|k| k["kind"].is_null());
            if let (true, Some(pkg)) = (normal, d["pkg"].as_str()) {
                stack.push(pkg);
            }
        }
    }
    let mut out = Vec::new();
    for id in seen {
        let p = by_id
            .get(id)
            .ok_or_else(|| format!("{id} is in the graph but not among the packages"))?;
        if is_proc_macro(p) {
            continue;
        }
        let name = p["name"].as_str().unwrap_or_default().to_string();
        let licence = p["license"]
            .as_str()
            .ok_or_else(|| format!("crate {name} declares no licence (`license` in Cargo.toml)"))?;
        out.push(Crate {
            name,
            version: p["version"].as_str().unwrap_or_default().to_string(),
            licence: dep5_licence(licence),
            authors: p["authors"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a.as_str().map(str::to_string))
                .collect(),
            repository: p["repository"].as_str().map(str::to_string),
        });
    }
    out.sort();
    Ok(out)
}

/// Indents a licence text as a DEP-5 continuation (empty lines as ` .`).
fn indent(text: &str) -> String {
    text.trim_end()
        .lines()
        .map(|l| {
            if l.trim().is_empty() {
                " .".to_string()
            } else {
                format!(" {l}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn render_copyright(metadata: &str, package: &str, licences: &Path) -> Result<String, String> {
    let crates = shipped_crates(metadata, package)?;
    let me = crates
        .iter()
        .find(|c| c.name == package)
        .ok_or_else(|| format!("{package} itself is not among the shipped crates"))?;
    let mut t = String::new();
    t.push_str("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n");
    t.push_str(&format!("Upstream-Name: {package}\n"));
    t.push_str(&format!(
        "Comment: /usr/bin/{package} is one statically linked Rust program. Below: {package} \
         itself, then each of the {} crates compiled into it (normal dependencies for this \
         platform, from `cargo metadata`; procedural macros, which run only in the compiler, \
         are not shipped and not listed).\n",
        crates.len() - 1
    ));
    t.push_str(&format!(
        "\nFiles: *\nCopyright: the {package} authors\nLicense: {}\n",
        me.licence
    ));
    let mut users: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for c in &crates {
        for l in licence_names(&c.licence) {
            users.entry(l).or_default().push(c.name.clone());
        }
        if c.name == package {
            continue;
        }
        let holders = if c.authors.is_empty() {
            format!("the {} authors", c.name)
        } else {
            c.authors.join("\n           ")
        };
        t.push_str(&format!(
            "\nFiles: cargo-crates/{}-{}/*\nCopyright: {holders}\nLicense: {}\nComment: Rust crate {} {}{}, compiled into /usr/bin/{package}.\n",
            c.name,
            c.version,
            c.licence,
            c.name,
            c.version,
            c.repository
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ));
    }
    let mut missing = Vec::new();
    for (name, used_by) in &users {
        if COMMON.contains(&name.as_str()) {
            t.push_str(&format!(
                "\nLicense: {name}\n On Debian systems the full text of the {name} licence is in\n /usr/share/common-licenses/{name}.\n"
            ));
            continue;
        }
        match std::fs::read_to_string(licences.join(name)) {
            Ok(text) => t.push_str(&format!("\nLicense: {name}\n{}\n", indent(&text))),
            Err(_) => missing.push(format!("{name} (used by {})", used_by.join(", "))),
        }
    }
    if !missing.is_empty() {
        return Err(format!(
            "no licence text in {} for: {}; add the text there (see its SOURCES.md)",
            licences.display(),
            missing.join("; ")
        ));
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spdx_becomes_dep5() {
        assert_eq!(dep5_licence("MIT/Apache-2.0"), "MIT or Apache-2.0");
        assert_eq!(dep5_licence("Apache-2.0 / MIT"), "Apache-2.0 or MIT");
        assert_eq!(
            dep5_licence("(MIT OR Apache-2.0) AND Unicode-3.0"),
            "(MIT or Apache-2.0) and Unicode-3.0"
        );
        assert_eq!(
            licence_names("Apache-2.0 with LLVM-exception or Apache-2.0 or MIT"),
            ["Apache-2.0", "LLVM-exception", "Apache-2.0", "MIT"]
        );
    }

    /// The real dependency graph: every shipped crate is listed, with a licence text for
    /// each licence, and nothing that is only a dev-dependency or a proc macro.
    #[test]
    fn the_workspace_binary_has_a_complete_copyright_file() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let o = std::process::Command::new(cargo)
            .args([
                "metadata",
                "--format-version",
                "1",
                "--offline",
                "--filter-platform",
                "x86_64-unknown-linux-gnu",
            ])
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let meta = String::from_utf8(o.stdout).unwrap();
        let licences = dir.join("../../packaging/licenses");
        let text = render_copyright(&meta, "passthru", &licences).unwrap();
        let crates = shipped_crates(&meta, "passthru").unwrap();
        let names: Vec<&str> = crates.iter().map(|c| c.name.as_str()).collect();
        for linked in ["clap", "serde_json", "sha2", "rustix", "libloading"] {
            assert!(names.contains(&linked), "{linked} missing: {names:?}");
        }
        for not_shipped in [
            "insta",
            "proptest",
            "tempfile",
            "serde_derive",
            "clap_derive",
        ] {
            assert!(
                !names.contains(&not_shipped),
                "{not_shipped} listed: {names:?}"
            );
        }
        for c in &crates {
            assert!(
                text.contains(&format!("Rust crate {} {}", c.name, c.version))
                    || c.name == "passthru",
                "{}",
                c.name
            );
        }
        assert!(text.contains("\nLicense: MIT\n Permission is hereby granted"));
        assert!(text.contains("/usr/share/common-licenses/Apache-2.0"));
    }
}
