//! The kernel command line that grub-mkconfig will build from `/etc/default/grub` and
//! `/etc/default/grub.d/*.cfg`.
//!
//! grub-mkconfig (`#! /bin/sh`: dash on Debian, Ubuntu and Proxmox, bash on Fedora) sources
//! `/etc/default/grub`, then each `/etc/default/grub.d/*.cfg` in glob order, and 10_linux
//! writes `linux … ${GRUB_CMDLINE_LINUX} ${GRUB_CMDLINE_LINUX_DEFAULT}` for normal entries
//! and `${GRUB_CMDLINE_LINUX_RECOVERY} ${GRUB_CMDLINE_LINUX}` for recovery entries
//! (grub-common 2.06-13, `usr/sbin/grub-mkconfig` lines 160-167, `etc/grub.d/10_linux`).
//! So both variables count, the last assignment wins, and a drop-in may build on the
//! value before it (`"${GRUB_CMDLINE_LINUX_DEFAULT} iommu=pt"`).
//!
//! This module evaluates those assignments the way the shell would, as far as the text
//! settles it; where it does not (a command substitution, a variable it cannot know, an
//! assignment inside `if`, a file that sources another), it says which file and line.

use std::collections::{HashMap, HashSet};

use super::shell_vars::{scan_shell, Assignment, OtherStatement, Part, ShellFile};

/// The main defaults file, sourced before every drop-in.
pub const GRUB_DEFAULTS: &str = "etc/default/grub";
pub const CMDLINE_LINUX: &str = "GRUB_CMDLINE_LINUX";
pub const CMDLINE_DEFAULT: &str = "GRUB_CMDLINE_LINUX_DEFAULT";
/// The two variables the kernel command line is made of.
pub const CMDLINE_VARS: [&str; 2] = [CMDLINE_LINUX, CMDLINE_DEFAULT];

/// One file in the order grub-mkconfig sources it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrubFile {
    pub path: String,
    pub text: String,
}

/// A place the value cannot be known from the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}, line {line}: {why}")]
pub struct Unresolvable {
    pub file: String,
    pub line: usize,
    pub why: String,
}

/// The values of both variables after every file, and where each was last set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrubCmdline {
    pub linux: String,
    pub default: String,
    /// (file, line) of the last assignment of GRUB_CMDLINE_LINUX / _DEFAULT.
    pub linux_set_at: Option<(String, usize)>,
    pub default_set_at: Option<(String, usize)>,
    /// Files that assign either variable.
    pub files_used: Vec<String>,
}

impl GrubCmdline {
    /// What a normal boot entry passes to the kernel.
    pub fn normal_entry(&self) -> String {
        format!("{} {}", self.linux, self.default)
    }
}

/// The paths grub-mkconfig sources, in order: `etc/default/grub` (when present), then the
/// `*.cfg` names of `etc/default/grub.d`, sorted bytewise (the glob's order in the C locale).
pub fn grub_source_order(main_exists: bool, dropin_names: &[String]) -> Vec<String> {
    let mut out: Vec<String> = dropin_names
        .iter()
        .filter(|n| n.ends_with(".cfg"))
        .map(|n| format!("etc/default/grub.d/{n}"))
        .collect();
    if main_exists {
        out.push(GRUB_DEFAULTS.to_string());
    }
    out.sort_by(|a, b| source_order_key(a).cmp(&source_order_key(b)));
    out
}

/// Sorts paths the way grub-mkconfig sources them: the main file, then the drop-ins by name.
pub fn source_order_key(path: &str) -> (bool, &str) {
    (path != GRUB_DEFAULTS, path)
}

/// Scans a file, turning a scanning error into [`Unresolvable`].
pub fn scan_grub_file(f: &GrubFile) -> Result<ShellFile, Unresolvable> {
    let scanned = scan_shell(&f.text);
    if let Some((line, why)) = &scanned.error {
        return Err(Unresolvable {
            file: f.path.clone(),
            line: *line,
            why: why.clone(),
        });
    }
    Ok(scanned)
}

/// Evaluates the command-line variables across the files, in order.
pub fn evaluate_grub_cmdline(files: &[GrubFile]) -> Result<GrubCmdline, Unresolvable> {
    let mut env: HashMap<String, String> = HashMap::new();
    // Variables whose value the text cannot settle (set dynamically or conditionally).
    let mut unknown: HashSet<String> = HashSet::new();
    let mut out = GrubCmdline::default();
    for f in files {
        let scanned = scan_grub_file(f)?;
        let err = |line: usize, why: String| Unresolvable {
            file: f.path.clone(),
            line,
            why,
        };
        for o in &scanned.others {
            if matches!(o.first_word.as_str(), "." | "source" | "eval") {
                return Err(err(
                    o.line,
                    format!(
                        "'{}' runs other shell code, which passthru cannot follow",
                        o.first_word
                    ),
                ));
            }
            // Reading a variable (`[ -n "$GRUB_CMDLINE_LINUX" ]`) changes nothing; setting it
            // where the text does not settle whether or how (`[ … ] && X=…`, `read X`) does.
            if let Some(v) = CMDLINE_VARS.iter().find(|v| sets(o, v)) {
                return Err(err(
                    o.line,
                    format!("{v} is set in a statement that is not a plain assignment"),
                ));
            }
        }
        for a in &scanned.assignments {
            let relevant = CMDLINE_VARS.contains(&a.name.as_str());
            match resolve(a, &env, &unknown) {
                Ok(value) if !(a.conditional || a.array || relevant && a.append) => {
                    let slot = env.entry(a.name.clone()).or_default();
                    if a.append {
                        slot.push_str(&value);
                    } else {
                        *slot = value;
                    }
                    unknown.remove(&a.name);
                    if relevant {
                        let at = Some((f.path.clone(), a.line));
                        if a.name == CMDLINE_LINUX {
                            out.linux_set_at = at;
                        } else {
                            out.default_set_at = at;
                        }
                        if !out.files_used.contains(&f.path) {
                            out.files_used.push(f.path.clone());
                        }
                    }
                }
                result => {
                    if relevant {
                        let why = match result {
                            Err(why) => why,
                            Ok(_) if a.conditional => format!(
                                "{} is assigned inside a condition, loop or function",
                                a.name
                            ),
                            Ok(_) if a.array => format!("{} is assigned an array", a.name),
                            Ok(_) => format!(
                                "{}+= is bash-only: grub-mkconfig's /bin/sh (dash) fails on it",
                                a.name
                            ),
                        };
                        return Err(err(a.line, why));
                    }
                    env.remove(&a.name);
                    unknown.insert(a.name.clone());
                }
            }
        }
    }
    out.linux = env.remove(CMDLINE_LINUX).unwrap_or_default();
    out.default = env.remove(CMDLINE_DEFAULT).unwrap_or_default();
    Ok(out)
}

/// Whether a statement may set `var`: `var=` or `var+=` anywhere in it (after `&&`, in a
/// `case` arm), or `var` named by a builtin that sets variables.
fn sets(o: &OtherStatement, var: &str) -> bool {
    let text = o.text.as_str();
    let setter = matches!(
        o.first_word.as_str(),
        "unset"
            | "read"
            | "export"
            | "declare"
            | "typeset"
            | "local"
            | "readonly"
            | "getopts"
            | "printf"
    );
    text.match_indices(var).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let rest = &text[i + var.len()..];
        let ident = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        if ident(before) || ident(rest.chars().next()) {
            return false;
        }
        // `$VAR` and `${VAR…}` only read it.
        let read = before == Some('$') || (before == Some('{') && text[..i].ends_with("${"));
        !read && (rest.starts_with('=') || rest.starts_with("+=") || setter)
    })
}

/// The value of an assignment, given what is known so far.
fn resolve(
    a: &Assignment,
    env: &HashMap<String, String>,
    unknown: &HashSet<String>,
) -> Result<String, String> {
    let mut s = String::new();
    for p in &a.parts {
        match p {
            Part::Lit(l) => s.push_str(l),
            Part::Var(v) if unknown.contains(v) => {
                return Err(format!(
                    "{} uses ${v}, whose value passthru cannot know",
                    a.name
                ))
            }
            Part::Var(v) => match env.get(v) {
                Some(val) => s.push_str(val),
                // The command-line variables start empty; any other unset variable could
                // come from the environment of whoever runs update-grub.
                None if CMDLINE_VARS.contains(&v.as_str()) => {}
                None => {
                    return Err(format!(
                        "{} uses ${v}, which no file sets (passthru cannot know it)",
                        a.name
                    ))
                }
            },
            Part::Dynamic(d) => {
                return Err(format!(
                    "{} uses {d}, which only a shell can expand",
                    a.name
                ))
            }
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[(&str, &str)]) -> Vec<GrubFile> {
        list.iter()
            .map(|(p, t)| GrubFile {
                path: p.to_string(),
                text: t.to_string(),
            })
            .collect()
    }

    #[test]
    fn last_assignment_wins_and_dropins_build_on_it() {
        let got = evaluate_grub_cmdline(&files(&[
            (
                "etc/default/grub",
                "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\nGRUB_CMDLINE_LINUX_DEFAULT=\"quiet splash\"\nGRUB_CMDLINE_LINUX='iommu=off'\n",
            ),
            (
                "etc/default/grub.d/50.cfg",
                "GRUB_CMDLINE_LINUX_DEFAULT=\"$GRUB_CMDLINE_LINUX_DEFAULT a=1\"\n",
            ),
        ]))
        .unwrap();
        assert_eq!(got.default, "quiet splash a=1");
        assert_eq!(got.linux, "iommu=off");
        assert_eq!(
            got.default_set_at,
            Some(("etc/default/grub.d/50.cfg".into(), 1))
        );
    }

    #[test]
    fn what_the_text_cannot_settle_is_named() {
        for (text, line) in [
            ("A=1\nGRUB_CMDLINE_LINUX=\"$(cat /x)\"\n", 2),
            ("if true; then\nGRUB_CMDLINE_LINUX=x\nfi\n", 2),
            ("GRUB_CMDLINE_LINUX+=\" x\"\n", 1),
            ("GRUB_CMDLINE_LINUX=\"$OTHER x\"\n", 1),
            ("[ -x /y ] && GRUB_CMDLINE_LINUX_DEFAULT=x\n", 1),
            ("read GRUB_CMDLINE_LINUX < /etc/x\n", 1),
            (". /etc/default/other\n", 1),
            ("GRUB_CMDLINE_LINUX=\"open\n", 1),
        ] {
            let e = evaluate_grub_cmdline(&files(&[("etc/default/grub", text)])).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
        }
        // Reading the value in a condition is fine; so is Ubuntu's and Kali's distributor
        // line, whose backticks hold a `.` of their own.
        let reads = "GRUB_DISTRIBUTOR=`( . /etc/os-release; echo ${NAME:-Ubuntu} ) 2>/dev/null || echo Ubuntu`\nGRUB_CMDLINE_LINUX_DEFAULT=\"quiet splash\"\nif [ -n \"$GRUB_CMDLINE_LINUX_DEFAULT\" ]; then GRUB_TIMEOUT=3; fi\n";
        let got = evaluate_grub_cmdline(&files(&[("etc/default/grub", reads)])).unwrap();
        assert_eq!(got.default, "quiet splash");
        // Debian's own default file, backticks and all, is fine.
        let debian = "GRUB_DEFAULT=0\nGRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`\nGRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\nGRUB_CMDLINE_LINUX=\"\"\n";
        let got = evaluate_grub_cmdline(&files(&[("etc/default/grub", debian)])).unwrap();
        assert_eq!(got.normal_entry(), " quiet");
    }

    #[test]
    fn source_order_is_main_then_sorted_cfg() {
        let names = vec!["b.cfg".to_string(), "a.cfg".into(), "README".into()];
        assert_eq!(
            grub_source_order(true, &names),
            vec![
                "etc/default/grub",
                "etc/default/grub.d/a.cfg",
                "etc/default/grub.d/b.cfg"
            ]
        );
    }
}
