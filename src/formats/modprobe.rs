//! modprobe.d(5) files, read the way kmod reads them. Verified against kmod's
//! `libkmod/libkmod-util.c` (`getline_wrapped`) and `libkmod/libkmod-config.c`
//! (`kmod_config_parse`, `underscores`, `kmod_config_add_softdep`), and against
//! `modprobe -C FILE --showconfig` (tests/modprobe_kmod.rs):
//!
//! - A logical line runs to a newline that is not escaped. A backslash before the newline
//!   joins the next physical line with nothing in between (no space: `ids=a,\` + `b` is
//!   `ids=a,b`); a backslash before any other byte is dropped and the byte kept (`b\c` is
//!   `bc`). A comment continues the same way.
//! - `#` comments only in the first column; an indented `#` is a bad line, ignored.
//! - A backslash at the very end of the file is dropped (kmod 34's `freadline_wrapped`;
//!   kmod 30 kept a stray 0xff byte there).
//! - The command and module are separated by spaces or tabs; `options`, `install`, `remove`
//!   and `softdep` keep the rest of the line after the one separator that ends the module.
//! - In module names `-` and `_` are the same (outside `[...]` patterns).
//!
//! Each logical line carries its byte span in the file and where each of its bytes is
//! written, so an editor can replace one word or one line and keep every other byte.

use std::ops::Range;

/// What kmod does with a logical line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    /// Empty, or only spaces and tabs.
    Blank,
    /// `#` in the first column: skipped, continuation lines included.
    Comment,
    /// A command kmod acts on: `alias`, `blacklist`, `options`, `install`, `remove`, `softdep`.
    Command,
    /// kmod logs "ignoring bad line" and skips it: an unknown or deprecated command, a
    /// missing argument, or a `#` after leading whitespace.
    Ignored,
}

/// One logical line of a modprobe.d file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicalLine {
    /// 1-based physical line where it starts.
    pub line: usize,
    /// Its bytes in the file: every physical line, and the newline that ends the last one.
    pub span: Range<usize>,
    /// The line as kmod sees it: continuations joined, escaping backslashes dropped.
    pub text: String,
    /// For each byte of `text`, the bytes of the file that write it (two for `\x`).
    source: Vec<Range<usize>>,
    pub kind: LineKind,
}

/// A word of a logical line: its text and where it is in [`LogicalLine::text`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word<'a> {
    pub text: &'a str,
    pub at: Range<usize>,
}

/// The separators of kmod's `strtok_r(.., "\t ")` for the command and the module.
fn is_field_space(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// C `isspace`: how softdep lists and the kernel's parameter parser split words.
pub fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

impl LogicalLine {
    /// Words split by `sep`, with their places in `text`.
    pub fn words_by(&self, sep: fn(u8) -> bool) -> Vec<Word<'_>> {
        let b = self.text.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if sep(b[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < b.len() && !sep(b[i]) {
                i += 1;
            }
            out.push(Word {
                text: &self.text[start..i],
                at: start..i,
            });
        }
        out
    }

    /// The words kmod's tokenizer sees (spaces and tabs).
    pub fn fields(&self) -> Vec<Word<'_>> {
        self.words_by(is_field_space)
    }

    /// The command word (`options`, `softdep`...), for a line that has one.
    pub fn command(&self) -> Option<&str> {
        matches!(self.kind, LineKind::Command | LineKind::Ignored)
            .then(|| self.fields().first().map(|w| w.text))
            .flatten()
    }

    /// The module (or, for `alias`, the alias pattern) of a command line, as written.
    pub fn module(&self) -> Option<&str> {
        (self.kind == LineKind::Command)
            .then(|| self.fields().get(1).map(|w| w.text))
            .flatten()
    }

    /// What kmod keeps after the module for `options`/`install`/`remove`/`softdep`: the rest
    /// of the line after the one separator that ends the module, where it starts in `text`.
    pub fn rest(&self) -> Option<(usize, &str)> {
        let fields = self.fields();
        let module = fields.get(1)?;
        let start = module.at.end + 1;
        (start < self.text.len()).then(|| (start, &self.text[start..]))
    }

    /// The bytes of the file that write `text[logical]`. An empty range maps to where the
    /// byte at `logical.start` is written (or the end of the text).
    pub fn file_range(&self, logical: Range<usize>) -> Range<usize> {
        let start = match self.source.get(logical.start) {
            Some(r) => r.start,
            None => self.text_end(),
        };
        if logical.end <= logical.start {
            return start..start;
        }
        let end = self
            .source
            .get(logical.end - 1)
            .map_or(self.text_end(), |r| r.end);
        start..end
    }

    /// Where the last byte of `text` is written, plus one: the place to append to the line.
    pub fn text_end(&self) -> usize {
        self.source.last().map_or(self.span.start, |r| r.end)
    }

    /// The place of `word` with the whitespace before it (its separator), for removing it.
    pub fn with_space_before(&self, word: &Word<'_>, sep: fn(u8) -> bool) -> Range<usize> {
        let b = self.text.as_bytes();
        let mut start = word.at.start;
        while start > 0 && sep(b[start - 1]) {
            start -= 1;
        }
        start..word.at.end
    }
}

/// Every logical line of a modprobe.d file, comments and blank lines included, in order;
/// their spans cover the whole file.
pub fn parse_modprobe_lines(text: &str) -> Vec<LogicalLine> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut line_no = 1;
    while i < b.len() {
        let start = i;
        let first = line_no;
        let mut bytes = Vec::new();
        let mut source = Vec::new();
        while i < b.len() {
            match b[i] {
                b'\n' => {
                    i += 1;
                    line_no += 1;
                    break;
                }
                b'\\' if i + 1 == b.len() => {
                    // kmod 30 stores the EOF marker as a byte here; nothing sensible to keep.
                    i += 1;
                }
                b'\\' if b[i + 1] == b'\n' => {
                    i += 2;
                    line_no += 1;
                }
                b'\\' => {
                    bytes.push(b[i + 1]);
                    source.push(i..i + 2);
                    i += 2;
                }
                c => {
                    bytes.push(c);
                    source.push(i..i + 1);
                    i += 1;
                }
            }
        }
        // Only ASCII bytes (backslashes, newlines) were dropped, so this stays UTF-8.
        let text = String::from_utf8(bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        let mut l = LogicalLine {
            line: first,
            span: start..i,
            text,
            source,
            kind: LineKind::Blank,
        };
        l.kind = classify(&l);
        out.push(l);
    }
    out
}

/// kmod_config_parse's decision for one logical line.
fn classify(l: &LogicalLine) -> LineKind {
    if l.text.starts_with('#') {
        return LineKind::Comment;
    }
    let fields = l.fields();
    let Some(cmd) = fields.first() else {
        return LineKind::Blank;
    };
    let ok = match cmd.text {
        "alias" => fields.len() >= 3,
        "blacklist" => fields.len() >= 2,
        // weakdep: kmod 33 and later.
        "options" | "install" | "remove" | "softdep" | "weakdep" => l.rest().is_some(),
        _ => false,
    };
    if ok {
        LineKind::Command
    } else {
        LineKind::Ignored
    }
}

/// One command line from a modprobe.d file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModprobeLine {
    /// 1-based line where the command starts.
    pub line: usize,
    pub command: String,
    /// First argument: the module (or alias wildcard).
    pub module: String,
    /// Everything after the module, whitespace-normalised.
    pub args: String,
}

/// The commands kmod acts on in a modprobe.d file; comments, blank and bad lines are dropped.
pub fn parse_modprobe_conf(text: &str) -> Vec<ModprobeLine> {
    parse_modprobe_lines(text)
        .iter()
        .filter(|l| l.kind == LineKind::Command)
        .filter_map(|l| {
            let fields = l.fields();
            Some(ModprobeLine {
                line: l.line,
                command: fields.first()?.text.to_string(),
                module: fields.get(1)?.text.to_string(),
                args: fields
                    .iter()
                    .skip(2)
                    .map(|w| w.text)
                    .collect::<Vec<_>>()
                    .join(" "),
            })
        })
        .collect()
}

/// The `ids=` value of an `options vfio-pci ...` / `options vfio_pci ...` argument string.
pub fn vfio_ids_from_options(args: &str) -> Vec<String> {
    args.split_whitespace().flat_map(ids_of_word).collect()
}

/// The vendor:device ids of one `ids=a,b` word (lowercase, empty entries dropped); none for
/// any other word.
pub fn ids_of_word(word: &str) -> Vec<String> {
    word.strip_prefix("ids=")
        .map(|v| {
            v.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_ascii_lowercase)
                .collect()
        })
        .unwrap_or_default()
}

/// A module name as kmod keys it: `-` becomes `_`, except inside `[...]` patterns.
pub fn normalize_module(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_brackets = false;
    for c in name.chars() {
        match c {
            '[' => in_brackets = true,
            ']' => in_brackets = false,
            _ => {}
        }
        out.push(if c == '-' && !in_brackets { '_' } else { c });
    }
    out
}

/// modprobe treats `-` and `_` in module names alike.
pub fn same_module(a: &str, b: &str) -> bool {
    normalize_module(a) == normalize_module(b)
}

/// The modules of a softdep line's `pre:` and `post:` lists (kmod_config_add_softdep: words
/// split by C whitespace, words before the first `pre:`/`post:` ignored). Also gives each
/// `pre:`/`post:` keyword, so an editor can drop an emptied list.
#[derive(Debug, Default)]
pub struct Softdep<'a> {
    pub pre: Vec<Word<'a>>,
    pub post: Vec<Word<'a>>,
    pub pre_keywords: Vec<Word<'a>>,
    pub post_keywords: Vec<Word<'a>>,
}

/// The lists of a `softdep` line; `None` for any other line.
pub fn parse_softdep(l: &LogicalLine) -> Option<Softdep<'_>> {
    if l.kind != LineKind::Command || l.command() != Some("softdep") {
        return None;
    }
    let (rest_at, _) = l.rest()?;
    let mut out = Softdep::default();
    #[derive(PartialEq)]
    enum Mode {
        None,
        Pre,
        Post,
    }
    let mut mode = Mode::None;
    let mut words: Vec<Word<'_>> = l
        .words_by(is_c_space)
        .into_iter()
        .filter(|w| w.at.start >= rest_at)
        .collect();
    // kmod's scan keeps one whitespace byte at the very start of the list as part of the
    // first word (two or more are skipped), so `softdep nvidia  pre: vfio-pci`, with two
    // spaces after the module, has no `pre:` keyword and no pre list for kmod (30 to 34).
    if let Some(first) = words.first_mut() {
        if first.at.start == rest_at + 1 && is_c_space(l.text.as_bytes()[rest_at]) {
            first.at.start = rest_at;
            first.text = &l.text[first.at.clone()];
        }
    }
    for w in words {
        match w.text {
            "pre:" => {
                mode = Mode::Pre;
                out.pre_keywords.push(w);
            }
            "post:" => {
                mode = Mode::Post;
                out.post_keywords.push(w);
            }
            _ => match mode {
                Mode::Pre => out.pre.push(w),
                Mode::Post => out.post.push(w),
                Mode::None => {}
            },
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_commands_comments_and_continuations() {
        let text = "# vfio\noptions vfio-pci ids=10de:2206,10de:1aef disable_vga=1\nsoftdep nvidia pre: vfio-pci\n\nblacklist nouveau\ninstall foo \\\n  /bin/true\n";
        let got = parse_modprobe_conf(text);
        assert_eq!(got.len(), 4);
        assert_eq!(got[0].command, "options");
        assert_eq!(got[0].module, "vfio-pci");
        assert_eq!(got[0].line, 2);
        assert_eq!(
            vfio_ids_from_options(&got[0].args),
            vec!["10de:2206", "10de:1aef"]
        );
        assert_eq!(got[1].args, "pre: vfio-pci");
        assert_eq!(got[2].module, "nouveau");
        assert_eq!(got[3].line, 6);
        assert_eq!(got[3].args, "/bin/true");
    }

    #[test]
    fn a_continuation_joins_with_nothing_in_between() {
        // kmod (getline_wrapped) drops the backslash and the newline and adds no space.
        let got = parse_modprobe_conf("options vfio-pci ids=10de:1,\\\n10de:2\n");
        assert_eq!(got.len(), 1);
        assert_eq!(vfio_ids_from_options(&got[0].args), ["10de:1", "10de:2"]);
        assert_eq!(got[0].args, "ids=10de:1,10de:2");
    }

    #[test]
    fn a_continued_comment_hides_the_next_line() {
        let got = parse_modprobe_conf("# old \\\noptions vfio-pci ids=10de:1\nblacklist a\n");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].command, "blacklist");
        assert_eq!(got[0].line, 3);
    }

    #[test]
    fn an_escaped_byte_loses_its_backslash() {
        let lines = parse_modprobe_lines("options a b\\c\n");
        assert_eq!(lines[0].text, "options a bc");
        // The word `bc` is written as the four bytes `b\c` minus nothing: 10..13.
        let w = &lines[0].fields()[2];
        assert_eq!(lines[0].file_range(w.at.clone()), 10..13);
    }

    #[test]
    fn spans_cover_the_file_and_map_words_back() {
        let text = "# c\n\noptions vfio_pci \\\n  ids=1\tx=2\nbad\n  # indented\nlast";
        let lines = parse_modprobe_lines(text);
        let kinds: Vec<LineKind> = lines.iter().map(|l| l.kind).collect();
        assert_eq!(
            kinds,
            [
                LineKind::Comment,
                LineKind::Blank,
                LineKind::Command,
                LineKind::Ignored,
                LineKind::Ignored,
                LineKind::Ignored
            ]
        );
        let mut at = 0;
        for l in &lines {
            assert_eq!(l.span.start, at);
            at = l.span.end;
        }
        assert_eq!(at, text.len());
        let opt = &lines[2];
        assert_eq!(opt.line, 3);
        assert_eq!(opt.text, "options vfio_pci   ids=1\tx=2");
        let ids = &opt.fields()[2];
        assert_eq!(&text[opt.file_range(ids.at.clone())], "ids=1");
        assert_eq!(opt.rest().map(|r| r.1), Some("  ids=1\tx=2"));
        assert_eq!(&text[opt.text_end()..opt.span.end], "\n");
    }

    #[test]
    fn a_command_without_its_arguments_is_ignored() {
        let lines =
            parse_modprobe_lines("options vfio-pci\noptions vfio-pci \nblacklist\nalias a\n");
        assert!(lines.iter().all(|l| l.kind == LineKind::Ignored));
    }

    #[test]
    fn softdep_lists() {
        let lines = parse_modprobe_lines("softdep nvidia junk pre: vfio-pci a post:\tb\n");
        let s = parse_softdep(&lines[0]).unwrap();
        let pre: Vec<&str> = s.pre.iter().map(|w| w.text).collect();
        let post: Vec<&str> = s.post.iter().map(|w| w.text).collect();
        assert_eq!(pre, ["vfio-pci", "a"]);
        assert_eq!(post, ["b"]);
    }

    #[test]
    fn one_extra_space_before_a_softdep_list_hides_it_from_kmod() {
        let lines =
            parse_modprobe_lines("softdep a  pre: x\nsoftdep b   pre: x\nsoftdep c \tpre: x\n");
        let pre = |i: usize| parse_softdep(&lines[i]).unwrap().pre.len();
        assert_eq!((pre(0), pre(1), pre(2)), (0, 1, 0));
    }

    #[test]
    fn module_names_compare_with_dash_or_underscore() {
        assert!(same_module("vfio-pci", "vfio_pci"));
        assert!(!same_module("vfio", "vfio_pci"));
        assert_eq!(normalize_module("snd-hda[a-z]-x"), "snd_hda[a-z]_x");
    }
}
