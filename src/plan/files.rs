//! Pure, byte-preserving edits of the files setup touches. Each takes the current text and
//! returns the new text; what it cannot edit safely is an error naming the line, and the file
//! is then left alone.

use crate::formats::cmdline::{parse_param, split_cmdline};
use crate::formats::shell_vars::{render_shell_value, scan_shell, Assignment, Part};
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
        Some(v) if v.contains(char::is_whitespace) => format!("{}=\"{v}\"", p.key),
        Some(v) => format!("{}={v}", p.key),
        None => p.key.clone(),
    }
}

impl From<crate::formats::grub_defaults::Unresolvable> for EditError {
    fn from(e: crate::formats::grub_defaults::Unresolvable) -> Self {
        EditError {
            file: e.file,
            line: e.line,
            why: e.why,
        }
    }
}

/// Parameter names as the kernel compares them: `-` and `_` are the same (`parameq`).
pub fn same_key(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .all(|(x, y)| x == y || (matches!(x, b'-' | b'_') && matches!(y, b'-' | b'_')))
}

pub fn same_param(a: &CmdlineParam, b: &CmdlineParam) -> bool {
    same_key(&a.key, &b.key) && a.value == b.value
}

impl ParamChange {
    /// Whether a parameter already on a command line must go: it is to be removed, or it
    /// gives a key that is to be added another value.
    pub fn drops(&self, p: &CmdlineParam) -> bool {
        self.removes(p)
            || self
                .add
                .iter()
                .any(|a| same_key(&a.key, &p.key) && !same_param(a, p))
    }

    /// Whether `p` is one of the parameters to remove.
    pub fn removes(&self, p: &CmdlineParam) -> bool {
        self.remove.iter().any(|r| same_param(r, p))
    }

    /// Whether a command line already has `want`.
    pub fn present(line: &[CmdlineParam], want: &CmdlineParam) -> bool {
        line.iter().any(|p| same_param(p, want))
    }
}

/// Applies a change to a command-line string (split as the kernel splits it, so a quoted
/// `key="a b"` stays one parameter). A replaced parameter keeps its place; new ones go at
/// the end. When nothing changes, the string comes back byte for byte.
pub fn apply_params(line: &str, change: &ParamChange) -> String {
    let tokens: Vec<(&str, CmdlineParam)> = split_cmdline(line)
        .into_iter()
        .map(|r| (&line[r.clone()], parse_param(&line[r])))
        .collect();
    let mut out: Vec<String> = Vec::new();
    let mut changed = false;
    let mut placed: Vec<bool> = change
        .add
        .iter()
        .map(|a| tokens.iter().any(|(_, p)| same_param(p, a)))
        .collect();
    for (raw, p) in &tokens {
        if change.drops(p) {
            changed = true;
            // A replaced value takes the old one's place.
            if let Some(i) = change
                .add
                .iter()
                .position(|a| same_key(&a.key, &p.key) && !same_param(a, p))
            {
                if !placed[i] {
                    out.push(render_param(&change.add[i]));
                    placed[i] = true;
                }
            }
            continue;
        }
        out.push(raw.to_string());
    }
    for (i, a) in change.add.iter().enumerate() {
        if !placed[i] && !out.iter().any(|w| same_param(&parse_param(w), a)) {
            out.push(render_param(a));
            changed = true;
        }
    }
    if changed {
        out.join(" ")
    } else {
        line.to_string()
    }
}

/// Applies a change to one assignment's value and splices the result into the file at the
/// value's bytes. Variables in the value (`${GRUB_CMDLINE_LINUX_DEFAULT} …`) are kept where
/// they stand as whole words; every other byte of the file is kept.
pub fn edit_assignment(
    file: &str,
    text: &str,
    a: &Assignment,
    change: &ParamChange,
) -> Result<String, EditError> {
    let err = |why: String| EditError {
        file: file.into(),
        line: a.line,
        why,
    };
    if a.append || a.array {
        return Err(err(format!(
            "{} is {} (bash only); edit it by hand",
            a.name,
            if a.append {
                "appended to with +="
            } else {
                "an array"
            }
        )));
    }
    // Variables become placeholder words, so the command-line edit moves them like any
    // other word and they come back as `${NAME}`.
    const MARK: char = '\u{1}';
    let mut flat = String::new();
    let mut vars = Vec::new();
    for p in &a.parts {
        match p {
            Part::Lit(l) if l.contains(MARK) => {
                return Err(err("a control character in the value".into()))
            }
            Part::Lit(l) => flat.push_str(l),
            Part::Var(v) => {
                flat.push(MARK);
                flat.push_str(&vars.len().to_string());
                flat.push(MARK);
                vars.push(v.clone());
            }
            Part::Dynamic(d) => {
                return Err(err(format!(
                    "{} uses {d}, which only a shell can expand",
                    a.name
                )))
            }
        }
    }
    let edited = apply_params(&flat, change);
    if edited == flat {
        return Ok(text.to_string());
    }
    let mut parts = Vec::new();
    for (i, piece) in edited.split(MARK).enumerate() {
        if i % 2 == 1 {
            let v = piece
                .parse::<usize>()
                .ok()
                .and_then(|n| vars.get(n))
                .ok_or_else(|| err("a variable in the value could not be kept".into()))?;
            parts.push(Part::Var(v.clone()));
        } else if !piece.is_empty() {
            parts.push(Part::Lit(piece.to_string()));
        }
    }
    let rendered = render_shell_value(&parts, a.single_quoted).map_err(err)?;
    let mut out = String::with_capacity(text.len() + rendered.len());
    out.push_str(&text[..a.value_span.start]);
    out.push_str(&rendered);
    out.push_str(&text[a.value_span.end..]);
    Ok(out)
}

/// Edits the assignment of `var` that takes effect in a shell-sourced file (the last one not
/// inside a condition), or adds one at the end when there is none. Refuses, naming the line,
/// what it cannot rewrite safely: command substitutions, unknown expansions, `+=`, arrays, an
/// assignment only inside a condition, a file the scanner cannot follow.
pub fn edit_shell_var(
    file: &str,
    text: &str,
    var: &str,
    change: &ParamChange,
) -> Result<String, EditError> {
    let scanned = scan_shell(text);
    if let Some((line, why)) = scanned.error {
        return Err(EditError {
            file: file.into(),
            line,
            why,
        });
    }
    // The last assignment is the one that takes effect; one inside a condition may or may
    // not run, so what the value will be is not settled by the text.
    match scanned.assignments.iter().rfind(|a| a.name == var) {
        Some(a) if a.conditional => Err(EditError {
            file: file.into(),
            line: a.line,
            why: format!("{var} is assigned inside a condition, loop or function"),
        }),
        Some(a) => edit_assignment(file, text, a, change),
        None => {
            // No assignment: add one at the end (grub's own default is empty).
            let mut out = text.to_string();
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            let value = apply_params("", change);
            let rendered =
                render_shell_value(&[Part::Lit(value)], false).map_err(|why| EditError {
                    file: file.into(),
                    line: 0,
                    why,
                })?;
            out.push_str(&format!("{var}={rendered}\n"));
            Ok(out)
        }
    }
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
    use crate::formats::cmdline::parse_cmdline;

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
            "A=1\nGRUB_CMDLINE_LINUX_DEFAULT=\"$(cat /x) quiet\"\n",
            "GRUB_CMDLINE_LINUX_DEFAULT",
            &c,
        )
        .unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.to_string().contains("etc/default/grub, line 2"));
        // A plain variable is kept where it stands.
        let kept = edit_shell_var(
            "g",
            "GRUB_CMDLINE_LINUX_DEFAULT=\"$X quiet\"\n",
            "GRUB_CMDLINE_LINUX_DEFAULT",
            &c,
        )
        .unwrap();
        assert_eq!(kept, "GRUB_CMDLINE_LINUX_DEFAULT=\"${X} quiet iommu=pt\"\n");
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
