//! Shell-sourced config files: `/etc/default/grub` and its `grub.d/*.cfg` drop-ins (read by
//! grub-mkconfig's `/bin/sh`, which is dash on Debian), dracut.conf.d and mkinitcpio.conf
//! (read by bash).
//!
//! One scanner for the format, used both for looking and for editing. It reads the file as the
//! shell would tokenise it: `export` prefixes, `NAME=word`, `NAME+=word`, `NAME=(array)`,
//! single, double and no quotes, backslash escapes, backslash-newline continuations, quoted
//! values over several lines, comments after the value, `;` between statements. Each
//! assignment carries the byte span of its value, so an editor can splice exactly there and
//! keep every other byte. What only a shell could resolve (command substitution, backticks,
//! `${x:-y}`, positional parameters) is kept as [`Part::Dynamic`] so a writer can refuse; an
//! assignment inside `if … fi`, `case`, a loop, a function or a `{ }` group is marked
//! `conditional`, since whether it runs is not knowable from the text.

use std::ops::Range;

/// One piece of an assignment's value, after the shell's quote removal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Literal text.
    Lit(String),
    /// `$NAME` or `${NAME}`.
    Var(String),
    /// An expansion only a shell can resolve (`$(…)`, backticks, `${x:-y}`, `$1`, `$((…))`).
    Dynamic(String),
}

/// One assignment statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// 1-based line on which the statement starts.
    pub line: usize,
    pub name: String,
    /// Preceded by `export`.
    pub export: bool,
    /// `+=` (bash only: dash rejects it).
    pub append: bool,
    /// `NAME=(…)` (bash only); `parts` then holds the elements joined by single spaces.
    pub array: bool,
    /// Inside `if`/`case`/a loop/a function/a group: it may or may not run.
    pub conditional: bool,
    /// The value after quote removal.
    pub parts: Vec<Part>,
    /// Bytes of the value as written (after `=` up to the end of the word or the `)`).
    pub value_span: Range<usize>,
    /// The first byte of the value is a single quote.
    pub single_quoted: bool,
}

impl Assignment {
    /// The value with `$NAME` for variables and the raw text of dynamic parts.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(l) => s.push_str(l),
                Part::Var(v) => {
                    s.push('$');
                    s.push_str(v);
                }
                Part::Dynamic(d) => s.push_str(d),
            }
        }
        s
    }

    /// Whether the value uses anything but literal text.
    pub fn is_dynamic(&self) -> bool {
        self.parts.iter().any(|p| !matches!(p, Part::Lit(_)))
    }

    /// The literal text of the value, each expansion standing as a space: the words the file
    /// itself spells out.
    pub fn literal_words(&self) -> String {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Lit(l) => l.as_str(),
                _ => " ",
            })
            .collect()
    }
}

/// A statement that is not a plain assignment (a command, a keyword, `A=1 cmd`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtherStatement {
    pub line: usize,
    /// The statement's source text.
    pub text: String,
    /// Its first word, unquoted (`if`, `.`, `source`, `echo` …).
    pub first_word: String,
    pub conditional: bool,
}

/// A scanned file: its assignments and other statements in order, or where scanning stopped.
#[derive(Debug, Clone, Default)]
pub struct ShellFile {
    pub assignments: Vec<Assignment>,
    pub others: Vec<OtherStatement>,
    /// Where the text stops being shell the scanner can follow (an unterminated quote or
    /// substitution): line and reason. Nothing after it was read.
    pub error: Option<(usize, String)>,
}

/// Scans a whole file.
pub fn scan_shell(text: &str) -> ShellFile {
    let mut s = Scanner {
        src: text,
        b: text.as_bytes(),
        pos: 0,
    };
    let mut out = ShellFile::default();
    // Compound commands open with these words and close with the matching ones; everything in
    // between runs only under a condition the text cannot settle.
    let mut depth: usize = 0;
    loop {
        s.skip_separators();
        if s.pos >= s.b.len() {
            break;
        }
        let start = s.pos;
        let line = s.line_of(start);
        match s.statement(depth > 0) {
            Ok(Stmt::Assign(a)) => out.assignments.push(a),
            Ok(Stmt::Other(o)) => {
                let w = o.first_word.as_str();
                let text = o.text.as_str();
                let closed_group =
                    (w == "{" && text.ends_with('}')) || (w == "(" && text.ends_with(')'));
                let opens = matches!(w, "if" | "case" | "while" | "until" | "for" | "select")
                    || (matches!(w, "{" | "(" | "function") && !closed_group)
                    || text.contains("()");
                if opens {
                    depth += 1;
                } else if matches!(w, "fi" | "esac" | "done" | "}" | ")") {
                    depth = depth.saturating_sub(1);
                }
                out.others.push(o);
            }
            Err(why) => {
                out.error = Some((line, why));
                break;
            }
        }
        if s.pos == start {
            // Defensive: never loop without progress.
            s.pos += 1;
        }
    }
    out
}

enum Stmt {
    Assign(Assignment),
    Other(OtherStatement),
}

struct Scanner<'a> {
    src: &'a str,
    b: &'a [u8],
    pos: usize,
}

fn is_blank(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

/// Unquoted characters that end a word.
fn is_meta(c: u8) -> bool {
    matches!(
        c,
        b' ' | b'\t' | b'\n' | b';' | b'&' | b'|' | b'<' | b'>' | b'(' | b')'
    )
}

impl Scanner<'_> {
    fn line_of(&self, pos: usize) -> usize {
        self.b[..pos.min(self.b.len())]
            .iter()
            .filter(|&&c| c == b'\n')
            .count()
            + 1
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn peek_at(&self, off: usize) -> Option<u8> {
        self.b.get(self.pos + off).copied()
    }

    /// Blanks, newlines, `;`, comments and line continuations between statements.
    fn skip_separators(&mut self) {
        while let Some(c) = self.peek() {
            match c {
                b' ' | b'\t' | b'\n' | b'\r' | b';' => self.pos += 1,
                b'\\' if self.peek_at(1) == Some(b'\n') => self.pos += 2,
                b'#' => self.skip_comment(),
                _ => break,
            }
        }
    }

    fn skip_comment(&mut self) {
        while let Some(c) = self.peek() {
            if c == b'\n' {
                break;
            }
            self.pos += 1;
        }
    }

    /// Blanks and continuations inside a statement.
    fn skip_blanks(&mut self) {
        while let Some(c) = self.peek() {
            if is_blank(c) || c == b'\r' {
                self.pos += 1;
            } else if c == b'\\' && self.peek_at(1) == Some(b'\n') {
                self.pos += 2;
            } else {
                break;
            }
        }
    }

    /// A name at the cursor (`[A-Za-z_][A-Za-z0-9_]*`), without moving.
    fn name_len_at(&self, at: usize) -> usize {
        let b = &self.b[at.min(self.b.len())..];
        match b.first() {
            Some(c) if c.is_ascii_alphabetic() || *c == b'_' => b
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
                .count(),
            _ => 0,
        }
    }

    fn statement(&mut self, conditional: bool) -> Result<Stmt, String> {
        let start = self.pos;
        let line = self.line_of(start);
        // `export NAME=…` (and `export` followed by blanks only then a name).
        let mut export = false;
        if self.b[self.pos..].starts_with(b"export") && self.peek_at(6).is_some_and(is_blank) {
            let save = self.pos;
            self.pos += 6;
            self.skip_blanks();
            let n = self.name_len_at(self.pos);
            if n > 0
                && self
                    .b
                    .get(self.pos + n)
                    .is_some_and(|c| *c == b'=' || *c == b'+')
            {
                export = true;
            } else {
                self.pos = save;
            }
        }
        let n = self.name_len_at(self.pos);
        let (op_len, append) = match (self.b.get(self.pos + n), self.b.get(self.pos + n + 1)) {
            (Some(b'='), _) if n > 0 => (1, false),
            (Some(b'+'), Some(b'=')) if n > 0 => (2, true),
            _ => (0, false),
        };
        if op_len == 0 {
            self.pos = start;
            return self.other(start, line, conditional);
        }
        let name = self.src[self.pos..self.pos + n].to_string();
        self.pos += n + op_len;
        let value_start = self.pos;
        let single_quoted = self.peek() == Some(b'\'');
        let (parts, array) = if self.peek() == Some(b'(') {
            self.pos += 1;
            (self.array_body()?, true)
        } else {
            (self.word()?, false)
        };
        let value_span = value_start..self.pos;
        // Only blanks and a comment may follow; anything else (`A=1 cmd`, `A=1 B=2`, `&&`)
        // makes it a statement this scanner does not evaluate.
        self.skip_blanks();
        match self.peek() {
            None | Some(b'\n') | Some(b';') => {}
            Some(b'#') => self.skip_comment(),
            Some(_) => {
                self.pos = start;
                return self.other(start, line, conditional);
            }
        }
        Ok(Stmt::Assign(Assignment {
            line,
            name,
            export,
            append,
            array,
            conditional,
            parts,
            value_span,
            single_quoted,
        }))
    }

    /// Any other statement, up to an unquoted newline or `;` (quotes and substitutions are
    /// skipped as the shell would).
    fn other(&mut self, start: usize, line: usize, conditional: bool) -> Result<Stmt, String> {
        let mut first_word = None;
        loop {
            self.skip_blanks();
            match self.peek() {
                None | Some(b'\n') | Some(b';') => break,
                Some(b'#') => {
                    self.skip_comment();
                    break;
                }
                Some(c) if is_meta(c) => {
                    if first_word.is_none() {
                        first_word = Some((c as char).to_string());
                    }
                    self.pos += 1;
                }
                Some(_) => {
                    let parts = self.word()?;
                    if first_word.is_none() {
                        first_word = Some(
                            parts
                                .iter()
                                .map(|p| match p {
                                    Part::Lit(l) => l.clone(),
                                    Part::Var(v) => format!("${v}"),
                                    Part::Dynamic(d) => d.clone(),
                                })
                                .collect(),
                        );
                    }
                }
            }
        }
        Ok(Stmt::Other(OtherStatement {
            line,
            text: self.src[start..self.pos].trim_end().to_string(),
            first_word: first_word.unwrap_or_default(),
            conditional,
        }))
    }

    /// `(a b "c")`: words separated by blanks, newlines and comments, up to `)`.
    fn array_body(&mut self) -> Result<Vec<Part>, String> {
        let mut parts: Vec<Part> = Vec::new();
        let mut first = true;
        loop {
            while let Some(c) = self.peek() {
                match c {
                    b' ' | b'\t' | b'\n' | b'\r' => self.pos += 1,
                    b'\\' if self.peek_at(1) == Some(b'\n') => self.pos += 2,
                    b'#' => self.skip_comment(),
                    _ => break,
                }
            }
            match self.peek() {
                None => return Err("unterminated array: no closing )".into()),
                Some(b')') => {
                    self.pos += 1;
                    return Ok(merge(parts));
                }
                Some(c) if is_meta(c) => {
                    return Err(format!("unexpected '{}' in an array", c as char))
                }
                Some(_) => {
                    if !first {
                        parts.push(Part::Lit(" ".into()));
                    }
                    first = false;
                    parts.extend(self.word()?);
                }
            }
        }
    }

    /// One word up to an unquoted metacharacter, with quotes removed.
    fn word(&mut self) -> Result<Vec<Part>, String> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        while let Some(c) = self.peek() {
            match c {
                c if is_meta(c) => break,
                b'\\' => match self.peek_at(1) {
                    Some(b'\n') => self.pos += 2,
                    None => {
                        self.pos += 1;
                    }
                    Some(_) => {
                        self.pos += 1;
                        let ch = self.next_char();
                        lit.push(ch);
                    }
                },
                b'\'' => {
                    let inner = self.single_quoted()?;
                    lit.push_str(inner);
                }
                b'"' => {
                    self.pos += 1;
                    self.double_quoted(&mut parts, &mut lit)?;
                }
                b'$' => self.dollar(&mut parts, &mut lit)?,
                b'`' => {
                    let d = self.backticks()?;
                    flush(&mut parts, &mut lit);
                    parts.push(Part::Dynamic(d));
                }
                _ => {
                    let ch = self.next_char();
                    lit.push(ch);
                }
            }
        }
        flush(&mut parts, &mut lit);
        Ok(parts)
    }

    /// `'…'` at the cursor: its text, verbatim (no escapes inside single quotes).
    fn single_quoted(&mut self) -> Result<&str, String> {
        let start = self.pos + 1;
        let rel = self.b[start..]
            .iter()
            .position(|&c| c == b'\'')
            .ok_or("unterminated single quote")?;
        self.pos = start + rel + 1;
        Ok(&self.src[start..start + rel])
    }

    fn next_char(&mut self) -> char {
        let ch = self.src[self.pos..].chars().next().unwrap_or('\u{fffd}');
        self.pos += ch.len_utf8().max(1);
        ch
    }

    /// Inside `"…"` (the opening quote consumed): `\` escapes only `$ \` " \` and newline.
    fn double_quoted(&mut self, parts: &mut Vec<Part>, lit: &mut String) -> Result<(), String> {
        loop {
            match self.peek() {
                None => return Err("unterminated double quote".into()),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(b'\\') => match self.peek_at(1) {
                    Some(b'\n') => self.pos += 2,
                    Some(c @ (b'$' | b'`' | b'"' | b'\\')) => {
                        lit.push(c as char);
                        self.pos += 2;
                    }
                    _ => {
                        lit.push('\\');
                        self.pos += 1;
                    }
                },
                Some(b'$') => self.dollar(parts, lit)?,
                Some(b'`') => {
                    let d = self.backticks()?;
                    flush(parts, lit);
                    parts.push(Part::Dynamic(d));
                }
                Some(_) => {
                    let ch = self.next_char();
                    lit.push(ch);
                }
            }
        }
    }

    /// `$NAME`, `${NAME}`, `${…}`, `$(…)`, `$((…))`, `$1`, `$?` — or a lone `$`.
    fn dollar(&mut self, parts: &mut Vec<Part>, lit: &mut String) -> Result<(), String> {
        let start = self.pos;
        self.pos += 1;
        match self.peek() {
            Some(b'{') => {
                let rel = self.b[self.pos..]
                    .iter()
                    .position(|&c| c == b'}')
                    .ok_or("unterminated ${")?;
                let inner = &self.src[self.pos + 1..self.pos + rel];
                self.pos += rel + 1;
                flush(parts, lit);
                if self.name_len_at(start + 2) == inner.len() && !inner.is_empty() {
                    parts.push(Part::Var(inner.to_string()));
                } else {
                    parts.push(Part::Dynamic(self.src[start..self.pos].to_string()));
                }
            }
            Some(b'(') => {
                self.skip_parens()?;
                flush(parts, lit);
                parts.push(Part::Dynamic(self.src[start..self.pos].to_string()));
            }
            Some(c) if c.is_ascii_alphabetic() || c == b'_' => {
                let n = self.name_len_at(self.pos);
                let name = self.src[self.pos..self.pos + n].to_string();
                self.pos += n;
                flush(parts, lit);
                parts.push(Part::Var(name));
            }
            Some(c) if c.is_ascii_digit() || b"@*#?$!-".contains(&c) => {
                self.pos += 1;
                flush(parts, lit);
                parts.push(Part::Dynamic(self.src[start..self.pos].to_string()));
            }
            _ => lit.push('$'),
        }
        Ok(())
    }

    /// From `(` to its matching `)`, skipping quotes inside.
    fn skip_parens(&mut self) -> Result<(), String> {
        let mut depth = 0usize;
        while let Some(c) = self.peek() {
            match c {
                b'(' => depth += 1,
                b')' => {
                    depth -= 1;
                    if depth == 0 {
                        self.pos += 1;
                        return Ok(());
                    }
                }
                b'\\' => self.pos += 1,
                b'\'' => {
                    self.single_quoted()?;
                    continue;
                }
                b'"' => {
                    self.pos += 1;
                    let mut ignored = (Vec::new(), String::new());
                    self.double_quoted(&mut ignored.0, &mut ignored.1)?;
                    continue;
                }
                _ => {}
            }
            self.pos += 1;
        }
        Err("unterminated $(".into())
    }

    /// `` `…` `` with `\`` escapes; returns the raw text.
    fn backticks(&mut self) -> Result<String, String> {
        let start = self.pos;
        self.pos += 1;
        while let Some(c) = self.peek() {
            match c {
                b'\\' => self.pos += 2,
                b'`' => {
                    self.pos += 1;
                    return Ok(self.src[start..self.pos].to_string());
                }
                _ => self.pos += 1,
            }
        }
        Err("unterminated backtick".into())
    }
}

fn flush(parts: &mut Vec<Part>, lit: &mut String) {
    if !lit.is_empty() {
        parts.push(Part::Lit(std::mem::take(lit)));
    }
}

/// Adjacent literal parts joined.
fn merge(parts: Vec<Part>) -> Vec<Part> {
    let mut out: Vec<Part> = Vec::new();
    for p in parts {
        match (out.last_mut(), p) {
            (Some(Part::Lit(a)), Part::Lit(b)) => a.push_str(&b),
            (_, p) => out.push(p),
        }
    }
    out
}

/// Renders a value for a shell assignment so that both dash and bash read back exactly
/// `parts`: literal text inside double quotes with `\ " $ \`` escaped, variables as `${NAME}`.
/// `single` keeps single quotes where the original used them and the value allows it (only
/// literal text without a `'`).
pub fn render_shell_value(parts: &[Part], single: bool) -> Result<String, String> {
    let literal_only = parts.iter().all(|p| matches!(p, Part::Lit(_)));
    if single && literal_only {
        let text: String = parts
            .iter()
            .map(|p| match p {
                Part::Lit(l) => l.as_str(),
                _ => "",
            })
            .collect();
        if !text.contains('\'') {
            return Ok(format!("'{text}'"));
        }
    }
    let mut s = String::from("\"");
    for p in parts {
        match p {
            Part::Lit(l) => {
                for ch in l.chars() {
                    if matches!(ch, '\\' | '"' | '$' | '`') {
                        s.push('\\');
                    }
                    s.push(ch);
                }
            }
            Part::Var(v) => {
                s.push_str("${");
                s.push_str(v);
                s.push('}');
            }
            Part::Dynamic(d) => return Err(format!("cannot rewrite the expansion {d}")),
        }
    }
    s.push('"');
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(s: &str) -> Vec<Part> {
        vec![Part::Lit(s.into())]
    }

    #[test]
    fn reads_grub_defaults() {
        let text = "# If you change this file, run 'update-grub'\nGRUB_DEFAULT=0\nGRUB_TIMEOUT=5\nGRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`\nGRUB_CMDLINE_LINUX_DEFAULT=\"quiet intel_iommu=on\"\nGRUB_CMDLINE_LINUX=\"\"\n";
        let f = scan_shell(text);
        assert_eq!(f.error, None);
        let get = |n: &str| f.assignments.iter().find(|a| a.name == n).cloned();
        assert_eq!(
            get("GRUB_CMDLINE_LINUX_DEFAULT").unwrap().parts,
            lit("quiet intel_iommu=on")
        );
        assert!(get("GRUB_CMDLINE_LINUX").unwrap().parts.is_empty());
        assert_eq!(get("GRUB_TIMEOUT").unwrap().line, 3);
        // The backtick command substitution is read whole and kept as dynamic.
        assert!(get("GRUB_DISTRIBUTOR").unwrap().is_dynamic());
        let v = get("GRUB_CMDLINE_LINUX_DEFAULT").unwrap();
        assert_eq!(&text[v.value_span], "\"quiet intel_iommu=on\"");
    }

    #[test]
    fn escapes_continuations_exports_and_comments() {
        let text = "export GRUB_CMDLINE_LINUX_DEFAULT=\"quiet dyndbg=\\\"file a.c +p\\\"\" # c\nA=\"quiet \\\nsplash\"\nB=one\\ two#x ; C='$x'\n";
        let f = scan_shell(text);
        assert_eq!(f.error, None);
        let a = &f.assignments;
        assert!(a[0].export);
        assert_eq!(a[0].parts, lit("quiet dyndbg=\"file a.c +p\""));
        assert_eq!(a[1].parts, lit("quiet splash"));
        assert_eq!(a[1].line, 2);
        assert_eq!(a[2].parts, lit("one two#x"));
        assert_eq!(a[3].parts, lit("$x"));
        assert!(a[3].single_quoted);
    }

    #[test]
    fn variables_and_dynamic_parts() {
        let f = scan_shell(
            "A=\"${GRUB_CMDLINE_LINUX_DEFAULT} iommu=pt\"\nB=\"$(uname -r) x\"\nC=${X:-y}\nD+=\" vfio \"\nE=(vfio_pci \"vfio\")\n",
        );
        let a = &f.assignments;
        assert_eq!(
            a[0].parts,
            vec![
                Part::Var("GRUB_CMDLINE_LINUX_DEFAULT".into()),
                Part::Lit(" iommu=pt".into())
            ]
        );
        assert!(matches!(a[1].parts[0], Part::Dynamic(_)));
        assert!(matches!(a[2].parts[0], Part::Dynamic(_)));
        assert!(a[3].append);
        assert!(a[4].array);
        assert_eq!(a[4].parts, lit("vfio_pci vfio"));
    }

    #[test]
    fn conditionals_and_commands_are_not_plain_assignments() {
        let f = scan_shell(
            "if [ -e /x ]; then\n  A=1\nfi\nB=2 true\n. /etc/other\nC=3\nf() {\n D=4\n}\n",
        );
        let names: Vec<(&str, bool)> = f
            .assignments
            .iter()
            .map(|a| (a.name.as_str(), a.conditional))
            .collect();
        assert_eq!(names, vec![("A", true), ("C", false), ("D", true)]);
        let words: Vec<&str> = f.others.iter().map(|o| o.first_word.as_str()).collect();
        assert_eq!(words, vec!["if", "then", "fi", "B=2", ".", "f", "}"]);
    }

    #[test]
    fn unterminated_quote_stops_scanning() {
        let f = scan_shell("B=ok\nA=\"open\nC=1\n");
        assert_eq!(f.assignments.len(), 1);
        assert_eq!(f.error.as_ref().map(|e| e.0), Some(2));
    }

    #[test]
    fn rendering_round_trips() {
        let parts = vec![Part::Var("X".into()), Part::Lit(" a\"b $c `d` \\e".into())];
        let r = render_shell_value(&parts, false).unwrap();
        let f = scan_shell(&format!("V={r}\n"));
        assert_eq!(f.assignments[0].parts, parts);
        assert_eq!(render_shell_value(&lit("a b"), true).unwrap(), "'a b'");
        assert_eq!(render_shell_value(&lit("a'b"), true).unwrap(), "\"a'b\"");
    }
}
