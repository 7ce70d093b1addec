//! Simple shell variable assignments, as in `/etc/default/grub` and dracut/mkinitcpio
//! configs: `NAME=value`, `NAME="value"`, `NAME='value'`, `NAME+=" value "`, `NAME=(a b)`.
//!
//! This reader is for *looking*: it reports what it cannot understand (command
//! substitutions, variables, line continuations) instead of guessing, so a later writer can
//! refuse to edit such a file.

/// One assignment found in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellAssignment {
    /// 1-based line number.
    pub line: usize,
    pub name: String,
    /// `+=` rather than `=`.
    pub append: bool,
    /// The value with quotes removed (array elements joined by one space).
    pub value: String,
    /// The value uses expansions (`$`, backticks) that only a shell can resolve.
    pub dynamic: bool,
}

/// Parses the assignments of a shell-sourced config file. Lines that are not simple
/// assignments (commands, `if`, continuations) are skipped; their numbers are returned in the
/// second list.
pub fn parse_shell_assignments(text: &str) -> (Vec<ShellAssignment>, Vec<usize>) {
    let mut found = Vec::new();
    let mut skipped = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let number = i + 1;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let trimmed = trimmed
            .strip_prefix("export ")
            .unwrap_or(trimmed)
            .trim_start();
        let Some(eq) = trimmed.find('=') else {
            skipped.push(number);
            continue;
        };
        let (mut name, raw) = (&trimmed[..eq], &trimmed[eq + 1..]);
        let append = name.ends_with('+');
        if append {
            name = &name[..name.len() - 1];
        }
        if name.is_empty()
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            || name.as_bytes()[0].is_ascii_digit()
        {
            skipped.push(number);
            continue;
        }
        match parse_value(raw) {
            Some((value, dynamic)) => found.push(ShellAssignment {
                line: number,
                name: name.to_string(),
                append,
                value,
                dynamic,
            }),
            None => skipped.push(number),
        }
    }
    (found, skipped)
}

/// Reads one shell word (or a parenthesised array) and what follows: only a comment may
/// follow. Returns `None` when the value is not a simple word.
fn parse_value(raw: &str) -> Option<(String, bool)> {
    let raw = raw.trim_end();
    if let Some(inner) = raw.strip_prefix('(') {
        let end = inner.rfind(')')?;
        let rest = inner[end + 1..].trim();
        if !(rest.is_empty() || rest.starts_with('#')) {
            return None;
        }
        let mut words = Vec::new();
        let mut dynamic = false;
        let mut s = inner[..end].trim();
        while !s.is_empty() {
            let (w, d, rest) = read_word(s)?;
            dynamic |= d;
            words.push(w);
            s = rest.trim_start();
        }
        return Some((words.join(" "), dynamic));
    }
    let (word, dynamic, rest) = read_word(raw)?;
    let rest = rest.trim();
    if rest.is_empty() || rest.starts_with('#') {
        Some((word, dynamic))
    } else {
        None
    }
}

/// Reads a word made of quoted and unquoted parts up to unquoted whitespace.
fn read_word(s: &str) -> Option<(String, bool, &str)> {
    let mut out = String::new();
    let mut dynamic = false;
    let mut chars = s.char_indices().peekable();
    while let Some(&(i, c)) = chars.peek() {
        match c {
            c if c.is_whitespace() => return Some((out, dynamic, &s[i..])),
            '\'' => {
                chars.next();
                loop {
                    let (_, c) = chars.next()?;
                    if c == '\'' {
                        break;
                    }
                    out.push(c);
                }
            }
            '"' => {
                chars.next();
                loop {
                    let (_, c) = chars.next()?;
                    match c {
                        '"' => break,
                        '\\' => out.push(chars.next()?.1),
                        '$' | '`' => {
                            dynamic = true;
                            out.push(c);
                        }
                        c => out.push(c),
                    }
                }
            }
            '\\' => {
                chars.next();
                out.push(chars.next()?.1);
            }
            '$' | '`' => {
                dynamic = true;
                out.push(c);
                chars.next();
            }
            ';' | '&' | '|' | '<' | '>' | '(' | ')' => return None,
            c => {
                out.push(c);
                chars.next();
            }
        }
    }
    Some((out, dynamic, ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_grub_defaults() {
        let text = "# If you change this file, run 'update-grub'\nGRUB_DEFAULT=0\nGRUB_TIMEOUT=5\nGRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`\nGRUB_CMDLINE_LINUX_DEFAULT=\"quiet intel_iommu=on\"\nGRUB_CMDLINE_LINUX=\"\"\n";
        let (found, skipped) = parse_shell_assignments(text);
        let get = |n: &str| found.iter().find(|a| a.name == n).cloned();
        assert_eq!(
            get("GRUB_CMDLINE_LINUX_DEFAULT").unwrap().value,
            "quiet intel_iommu=on"
        );
        assert_eq!(get("GRUB_CMDLINE_LINUX").unwrap().value, "");
        assert_eq!(get("GRUB_TIMEOUT").unwrap().line, 3);
        // The backtick line has a pipe: not a simple word, so it is reported, not guessed.
        assert_eq!(skipped, vec![4]);
    }

    #[test]
    fn reads_appends_arrays_and_dynamic_values() {
        let (found, _) = parse_shell_assignments(
            "force_drivers+=\" vfio_pci vfio \"\nMODULES=(vfio_pci vfio \"vfio_iommu_type1\")\nGRUB_CMDLINE_LINUX=\"$GRUB_CMDLINE_LINUX iommu=pt\"\n",
        );
        assert!(found[0].append);
        assert_eq!(found[0].value, " vfio_pci vfio ");
        assert_eq!(found[1].value, "vfio_pci vfio vfio_iommu_type1");
        assert!(found[2].dynamic);
    }

    #[test]
    fn unterminated_quote_is_skipped() {
        let (found, skipped) = parse_shell_assignments("A=\"open\nB=ok\n");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].name, "B");
        assert_eq!(skipped, vec![1]);
    }
}
