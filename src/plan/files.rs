//! Pure, byte-preserving edits of the files setup touches. Each takes the current text and
//! returns the new text; what it cannot edit safely is an error naming the line, and the file
//! is then left alone.

use crate::formats::cmdline::parse_cmdline;
use crate::formats::shell_vars::parse_shell_assignments;
use crate::model::CmdlineParam;

/// Parameters to have and keys to drop, on a kernel command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParamChange {
    /// `key=value` (or `key`) that must be present; a different value of the same key is replaced.
    pub add: Vec<CmdlineParam>,
    /// `key=value` entries to remove (exact match).
    pub remove: Vec<CmdlineParam>,
}

impl ParamChange {
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}, line {line}: {why}; left untouched")]
pub struct EditError {
    pub file: String,
    pub line: usize,
    pub why: String,
}

pub fn render_param(p: &CmdlineParam) -> String {
    match &p.value {
        Some(v) if v.contains(' ') => format!("{}=\"{v}\"", p.key),
        Some(v) => format!("{}={v}", p.key),
        None => p.key.clone(),
    }
}

/// Applies a change to a space-separated parameter string, keeping the order and spelling of
/// everything it does not touch.
pub fn apply_params(line: &str, change: &ParamChange) -> String {
    let mut words: Vec<String> = line.split_whitespace().map(str::to_string).collect();
    let parsed = |w: &str| parse_cmdline(w).into_iter().next();
    words.retain(|w| !parsed(w).is_some_and(|p| change.remove.contains(&p)));
    for want in &change.add {
        let pos = words
            .iter()
            .position(|w| parsed(w).is_some_and(|p| p.key == want.key));
        let rendered = render_param(want);
        match pos {
            Some(i) if parsed(&words[i]).as_ref() == Some(want) => {}
            Some(i) => words[i] = rendered,
            None => words.push(rendered),
        }
    }
    words.join(" ")
}

/// Edits the last assignment of `var` in a shell-sourced file (`etc/default/grub`), changing
/// only the bytes between its quotes. Refuses values it cannot safely rewrite: command
/// substitutions, variables, several lines, or no assignment at all.
pub fn edit_shell_var(
    file: &str,
    text: &str,
    var: &str,
    change: &ParamChange,
) -> Result<String, EditError> {
    let (assignments, _) = parse_shell_assignments(text);
    let err = |line: usize, why: &str| EditError {
        file: file.into(),
        line,
        why: why.into(),
    };
    let Some(a) = assignments.iter().rev().find(|a| a.name == var) else {
        // No assignment: add one at the end (grub's own default is empty).
        let mut out = text.to_string();
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&format!("{var}=\"{}\"\n", apply_params("", change)));
        return Ok(out);
    };
    if a.dynamic || a.append {
        return Err(err(
            a.line,
            &format!("{var} is built from other values ($, `, +=)"),
        ));
    }
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let line = lines[a.line - 1];
    let eq = line
        .find(&format!("{var}="))
        .ok_or_else(|| err(a.line, "assignment not found"))?
        + var.len()
        + 1;
    let rest = &line[eq..];
    let (quote, body_end) = match rest.chars().next() {
        Some(q @ ('"' | '\'')) => {
            let close = rest[1..]
                .find(q)
                .ok_or_else(|| err(a.line, "unterminated quote"))?
                + 1;
            (Some(q), close)
        }
        _ => (
            None,
            rest.find(|c: char| c.is_whitespace() || c == '#')
                .unwrap_or(rest.len()),
        ),
    };
    let body = if quote.is_some() {
        &rest[1..body_end]
    } else {
        &rest[..body_end]
    };
    if quote.is_none() && body.contains('\\') {
        return Err(err(a.line, "escaped characters in an unquoted value"));
    }
    let new_body = apply_params(body, change);
    if quote == Some('\'') && new_body.contains('\'') {
        return Err(err(
            a.line,
            "a value with a single quote inside single quotes",
        ));
    }
    let q = quote.map(String::from).unwrap_or_else(|| "\"".into());
    let tail = if quote.is_some() {
        &rest[body_end + 1..]
    } else {
        &rest[body_end..]
    };
    let new_line = format!("{}{q}{new_body}{q}{tail}", &line[..eq]);
    let mut out = String::with_capacity(text.len() + 32);
    for (i, l) in lines.iter().enumerate() {
        out.push_str(if i == a.line - 1 { &new_line } else { l });
    }
    Ok(out)
}

/// A one-line command-line file (`etc/kernel/cmdline`): the first non-comment line is the
/// command line.
pub fn edit_cmdline_file(text: &str, change: &ParamChange) -> String {
    let mut out = String::new();
    let mut done = false;
    for l in text.split_inclusive('\n') {
        if !done && !l.trim_start().starts_with('#') && !l.trim().is_empty() {
            let nl = if l.ends_with('\n') { "\n" } else { "" };
            out.push_str(&apply_params(l.trim_end_matches('\n'), change));
            out.push_str(nl);
            done = true;
        } else {
            out.push_str(l);
        }
    }
    if !done {
        out.push_str(&apply_params("", change));
        out.push('\n');
    }
    out
}

/// BLS entry files (`loader/entries/*.conf`): edits the `options` line.
pub fn edit_bls_entry(file: &str, text: &str, change: &ParamChange) -> Result<String, EditError> {
    let mut out = String::new();
    let mut done = false;
    for l in text.split_inclusive('\n') {
        let body = l.trim_end_matches('\n');
        if !done {
            if let Some(rest) = body.strip_prefix("options") {
                if rest.starts_with(char::is_whitespace) || rest.is_empty() {
                    let sep = &rest[..rest.len() - rest.trim_start().len()];
                    let sep = if sep.is_empty() { " " } else { sep };
                    out.push_str(&format!(
                        "options{sep}{}",
                        apply_params(rest.trim(), change)
                    ));
                    out.push_str(&l[body.len()..]);
                    done = true;
                    continue;
                }
            }
        }
        out.push_str(l);
    }
    if !done {
        return Err(EditError {
            file: file.into(),
            line: 0,
            why: "no options line".into(),
        });
    }
    Ok(out)
}

/// A one-module-per-line list (initramfs-tools `modules`): adds missing modules at the end,
/// removes unwanted ones, keeps every other line as it is.
pub fn edit_module_list(text: &str, add: &[&str], remove: &[&str]) -> String {
    let name_of = |l: &str| {
        l.split('#')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .next()
            .map(|m| m.replace('-', "_"))
    };
    let mut out = String::new();
    let mut present = Vec::new();
    for l in text.split_inclusive('\n') {
        match name_of(l) {
            Some(m) if remove.contains(&m.as_str()) => continue,
            Some(m) => present.push(m),
            None => {}
        }
        out.push_str(l);
    }
    let missing: Vec<&&str> = add
        .iter()
        .filter(|m| !present.iter().any(|p| p == *m))
        .collect();
    if !missing.is_empty() {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str("# added by passthru (VFIO passthrough)\n");
        for m in missing {
            out.push_str(m);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> CmdlineParam {
        parse_cmdline(s).remove(0)
    }

    #[test]
    fn params_are_added_replaced_removed_once() {
        let c = ParamChange {
            add: vec![p("intel_iommu=on"), p("iommu=pt")],
            remove: vec![p("amd_iommu=off")],
        };
        assert_eq!(
            apply_params("quiet intel_iommu=off amd_iommu=off", &c),
            "quiet intel_iommu=on iommu=pt"
        );
        let once = apply_params("quiet", &c);
        assert_eq!(apply_params(&once, &c), once, "idempotent");
    }

    #[test]
    fn grub_variable_edit_keeps_every_other_byte() {
        let text = "# comment\nGRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"   # trailing\nGRUB_CMDLINE_LINUX=\"\"\n";
        let c = ParamChange {
            add: vec![p("iommu=pt")],
            remove: vec![],
        };
        let out = edit_shell_var("g", text, "GRUB_CMDLINE_LINUX_DEFAULT", &c).unwrap();
        assert_eq!(out, "# comment\nGRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT=\"quiet iommu=pt\"   # trailing\nGRUB_CMDLINE_LINUX=\"\"\n");
        let single = edit_shell_var(
            "g",
            "GRUB_CMDLINE_LINUX_DEFAULT='quiet splash'\n",
            "GRUB_CMDLINE_LINUX_DEFAULT",
            &c,
        )
        .unwrap();
        assert_eq!(
            single,
            "GRUB_CMDLINE_LINUX_DEFAULT='quiet splash iommu=pt'\n"
        );
    }

    #[test]
    fn grub_variable_edit_refuses_what_it_cannot_read() {
        let c = ParamChange {
            add: vec![p("iommu=pt")],
            remove: vec![],
        };
        let e = edit_shell_var(
            "etc/default/grub",
            "A=1\nGRUB_CMDLINE_LINUX_DEFAULT=\"$X quiet\"\n",
            "GRUB_CMDLINE_LINUX_DEFAULT",
            &c,
        )
        .unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.to_string().contains("etc/default/grub, line 2"));
    }

    #[test]
    fn module_list_appends_missing_and_drops_stale() {
        let text = "# List of modules\nloop\nvfio_virqfd\n";
        let out = edit_module_list(text, &["vfio", "vfio_pci"], &["vfio_virqfd"]);
        assert_eq!(
            out,
            "# List of modules\nloop\n# added by passthru (VFIO passthrough)\nvfio\nvfio_pci\n"
        );
        assert_eq!(
            edit_module_list(&out, &["vfio", "vfio_pci"], &["vfio_virqfd"]),
            out
        );
    }

    #[test]
    fn cmdline_and_bls_edits() {
        let c = ParamChange {
            add: vec![p("iommu=pt")],
            remove: vec![],
        };
        assert_eq!(
            edit_cmdline_file("root=ZFS=rpool/ROOT/pve-1 boot=zfs\n", &c),
            "root=ZFS=rpool/ROOT/pve-1 boot=zfs iommu=pt\n"
        );
        let bls = "title Fedora\noptions root=UUID=x ro rhgb quiet\ngrub_users $grub_users\n";
        assert_eq!(
            edit_bls_entry("e", bls, &c).unwrap(),
            "title Fedora\noptions root=UUID=x ro rhgb quiet iommu=pt\ngrub_users $grub_users\n"
        );
    }
}
