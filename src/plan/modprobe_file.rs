//! passthru's own modprobe file (`etc/modprobe.d/passthru-vfio.conf`): what it binds, read
//! back, and the edit that makes it bind what setup decided.
//!
//! The file is passthru's, but users edit it: they add options for other modules, blacklist
//! or install lines, comments, or bind a second card by hand with `ids=` continued over two
//! lines. So the edit changes only passthru's own parts, by splicing at the byte spans the
//! parser (`formats::modprobe`) gives, and keeps every other logical line byte for byte:
//! - the `ids=` of the `options vfio-pci` lines: one `ids=` word holds the whole set (kmod
//!   joins every `options vfio_pci` line and the kernel keeps the last `ids=`, so a second
//!   one would hide the first);
//! - the vfio-pci options it decides ([`MANAGED_OPTION_KEYS`]); other vfio-pci options
//!   (`nointxmask=1`) are the user's and stay;
//! - `softdep MODULE pre: vfio-pci` lines (a softdep line whose `pre:` list has vfio-pci).
//!
//! Applying the same binding to its own result changes nothing, so setup converges.

use std::collections::BTreeSet;
use std::ops::Range;

use crate::formats::modprobe::{
    ids_of_word, is_c_space, normalize_module, parse_modprobe_lines, parse_softdep, LineKind,
    LogicalLine, Word,
};

use super::files::EditError;

/// The vfio-pci options whose value setup decides; any other vfio-pci option is the user's.
pub const MANAGED_OPTION_KEYS: &[&str] = &["disable_vga", "disable_idle_d3"];

/// The first lines of a file passthru creates.
const HEADER: &str = "# Written by passthru: VFIO binding for GPU passthrough.\n# Undo with `passthru setup host GPU` or `passthru rollback`.\n";

/// What passthru's modprobe file binds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VfioBinding {
    /// vendor:device ids for `options vfio-pci ids=`, lowercase.
    pub ids: BTreeSet<String>,
    /// Modules to load after vfio-pci (`softdep MODULE pre: vfio-pci`), `_` spelling.
    pub softdeps: BTreeSet<String>,
    /// `key=value` vfio-pci options, keys from [`MANAGED_OPTION_KEYS`].
    pub options: BTreeSet<String>,
}

fn is_vfio_pci(module: &str) -> bool {
    normalize_module(module) == "vfio_pci"
}

fn option_key(word: &str) -> &str {
    word.split_once('=').map_or(word, |(k, _)| k)
}

/// The `options vfio-pci` lines of a parsed file.
fn vfio_options_lines(lines: &[LogicalLine]) -> impl Iterator<Item = (usize, &LogicalLine)> {
    lines.iter().enumerate().filter(|(_, l)| {
        l.kind == LineKind::Command
            && l.command() == Some("options")
            && l.module().is_some_and(is_vfio_pci)
    })
}

/// The option words of an `options` line (after the module), split as the kernel splits
/// module parameters (C whitespace).
fn option_words(l: &LogicalLine) -> Vec<Word<'_>> {
    let rest_at = l.rest().map_or(l.text.len(), |(at, _)| at);
    l.words_by(is_c_space)
        .into_iter()
        .filter(|w| w.at.start >= rest_at)
        .collect()
}

/// What the file binds. `path` names the file in errors. Refuses a vfio-pci options line
/// with a double quote: the kernel reads quoted values across spaces, and an edit that split
/// words differently could change them.
pub fn read_vfio_binding(path: &str, text: Option<&str>) -> Result<VfioBinding, EditError> {
    let mut b = VfioBinding::default();
    let Some(text) = text else {
        return Ok(b);
    };
    let lines = parse_modprobe_lines(text);
    for (_, l) in vfio_options_lines(&lines) {
        if l.text.contains('"') {
            return Err(EditError {
                file: path.to_string(),
                line: l.line,
                why: "a quoted value in the vfio-pci options (the kernel reads quotes; passthru edits only plain words)".into(),
            });
        }
        for w in option_words(l) {
            if w.text.starts_with("ids=") {
                b.ids.extend(ids_of_word(w.text));
            } else if MANAGED_OPTION_KEYS.contains(&option_key(w.text)) {
                b.options.insert(w.text.to_string());
            }
        }
    }
    for l in &lines {
        let (Some(sd), Some(module)) = (parse_softdep(l), l.module()) else {
            continue;
        };
        let module = normalize_module(module);
        if sd.pre.iter().any(|w| is_vfio_pci(w.text)) && module != "vfio_pci" {
            b.softdeps.insert(module);
        }
    }
    Ok(b)
}

/// One change to the file: replace `range` with `with`.
struct Splice {
    range: Range<usize>,
    with: String,
}

/// What happens to one word of a vfio-pci options line.
enum WordEdit {
    Replace(String),
    Remove,
}

/// The file's text after making it bind exactly `want`; `None` when nothing is left but
/// passthru's own header (the file goes).
pub fn render_vfio_binding(before: Option<&str>, want: &VfioBinding) -> Option<Vec<u8>> {
    let text = before.unwrap_or("");
    let lines = parse_modprobe_lines(text);
    let mut splices = Vec::new();
    let mut new_lines = Vec::new();
    plan_options(&lines, want, &mut splices, &mut new_lines);
    plan_softdeps(&lines, want, &mut splices, &mut new_lines);

    let mut out = text.to_string();
    splices.sort_by_key(|s| std::cmp::Reverse(s.range.start));
    for s in splices {
        out.replace_range(s.range, &s.with);
    }
    if !new_lines.is_empty() {
        if out.is_empty() {
            out = HEADER.to_string();
        } else if !out.ends_with('\n') {
            out.push('\n');
        }
        for l in new_lines {
            out.push_str(&l);
            out.push('\n');
        }
    }
    if only_header_left(&out) {
        None
    } else {
        Some(out.into_bytes())
    }
}

/// True when the text holds nothing but blank lines and passthru's header comment.
fn only_header_left(text: &str) -> bool {
    parse_modprobe_lines(text).iter().all(|l| match l.kind {
        LineKind::Blank => true,
        LineKind::Comment => HEADER.lines().any(|h| h == l.text),
        _ => false,
    })
}

/// The ids= word and the managed options on the `options vfio-pci` lines.
fn plan_options(
    lines: &[LogicalLine],
    want: &VfioBinding,
    splices: &mut Vec<Splice>,
    new_lines: &mut Vec<String>,
) {
    let vfio: Vec<(usize, &LogicalLine, Vec<Word<'_>>)> = vfio_options_lines(lines)
        .map(|(i, l)| (i, l, option_words(l)))
        .collect();
    // (index into `vfio`, index into its words) -> edit
    let mut edits: Vec<((usize, usize), WordEdit)> = Vec::new();
    let mut appends: Vec<String> = Vec::new();

    // ids: the words as they are, in file order.
    let ids_words = word_positions(&vfio, |t| t.starts_with("ids="));
    let mut current: Vec<String> = Vec::new();
    for &(li, wi) in &ids_words {
        for id in ids_of_word(vfio[li].2[wi].text) {
            if !current.contains(&id) {
                current.push(id);
            }
        }
    }
    let want_ids: BTreeSet<String> = want.ids.iter().map(|i| i.to_ascii_lowercase()).collect();
    let current_set: BTreeSet<String> = current.iter().cloned().collect();
    let ids_ok = current_set == want_ids && ids_words.len() <= 1;
    // The line that holds (or gets) the ids: where new options go too.
    let home = ids_words
        .first()
        .map(|&(li, _)| li)
        .or((!vfio.is_empty()).then_some(0));
    let mut ids_word = None;
    if !want_ids.is_empty() {
        // Keep the order the file has, new ids after it in sorted order.
        let mut value: Vec<String> = current
            .iter()
            .filter(|i| want_ids.contains(*i))
            .cloned()
            .collect();
        value.extend(want_ids.iter().filter(|i| !current.contains(i)).cloned());
        ids_word = Some(format!("ids={}", value.join(",")));
    }
    if !ids_ok {
        for (k, &(li, wi)) in ids_words.iter().enumerate() {
            let edit = match (&ids_word, k) {
                (Some(w), 0) => WordEdit::Replace(w.clone()),
                _ => WordEdit::Remove,
            };
            edits.push(((li, wi), edit));
        }
        if ids_words.is_empty() {
            appends.extend(ids_word.clone());
        }
    }

    // Managed options: one word per key, with the wanted value, or none.
    let mut keys: BTreeSet<&str> = MANAGED_OPTION_KEYS.iter().copied().collect();
    keys.extend(want.options.iter().map(|o| option_key(o)));
    for key in keys {
        let wanted = want.options.iter().rfind(|o| option_key(o) == key);
        let found = word_positions(&vfio, |t| option_key(t) == key);
        for (k, &(li, wi)) in found.iter().enumerate() {
            match wanted {
                Some(w) if k == 0 => {
                    if vfio[li].2[wi].text != w.as_str() {
                        edits.push(((li, wi), WordEdit::Replace(w.clone())));
                    }
                }
                _ => edits.push(((li, wi), WordEdit::Remove)),
            }
        }
        if found.is_empty() {
            appends.extend(wanted.cloned());
        }
    }

    // Turn the word edits into splices, line by line; a line left without options goes.
    for (li, (_, l, words)) in vfio.iter().enumerate() {
        let mine: Vec<&((usize, usize), WordEdit)> =
            edits.iter().filter(|((el, _), _)| *el == li).collect();
        let removed = mine
            .iter()
            .filter(|(_, e)| matches!(e, WordEdit::Remove))
            .count();
        let gets_appends = home == Some(li) && !appends.is_empty();
        if removed == words.len() && !words.is_empty() && !gets_appends {
            splices.push(Splice {
                range: l.span.clone(),
                with: String::new(),
            });
            continue;
        }
        for ((_, wi), e) in mine {
            let w = &words[*wi];
            match e {
                WordEdit::Replace(s) => splices.push(Splice {
                    range: l.file_range(w.at.clone()),
                    with: s.clone(),
                }),
                WordEdit::Remove => splices.push(Splice {
                    range: l.file_range(l.with_space_before(w, is_c_space)),
                    with: String::new(),
                }),
            }
        }
        if gets_appends {
            let at = l.text_end();
            splices.push(Splice {
                range: at..at,
                with: format!(" {}", appends.join(" ")),
            });
        }
    }
    if home.is_none() && !appends.is_empty() {
        new_lines.push(format!("options vfio-pci {}", appends.join(" ")));
    }
}

/// passthru's `softdep MODULE pre: vfio-pci` lines: kept when wanted, otherwise vfio-pci
/// leaves the line (and the line goes when nothing else is in it); missing ones are added.
fn plan_softdeps(
    lines: &[LogicalLine],
    want: &VfioBinding,
    splices: &mut Vec<Splice>,
    new_lines: &mut Vec<String>,
) {
    // vfio-pci cannot be loaded before itself.
    let wanted: BTreeSet<String> = want
        .softdeps
        .iter()
        .map(|m| normalize_module(m))
        .filter(|m| m != "vfio_pci")
        .collect();
    let mut present = BTreeSet::new();
    for l in lines {
        let (Some(sd), Some(module)) = (parse_softdep(l), l.module()) else {
            continue;
        };
        let ours: Vec<&Word<'_>> = sd.pre.iter().filter(|w| is_vfio_pci(w.text)).collect();
        if ours.is_empty() {
            continue;
        }
        let module = normalize_module(module);
        if wanted.contains(&module) {
            present.insert(module);
            continue;
        }
        let others_left = sd.pre.len() > ours.len() || !sd.post.is_empty();
        if !others_left {
            splices.push(Splice {
                range: l.span.clone(),
                with: String::new(),
            });
            continue;
        }
        let mut gone: Vec<&Word<'_>> = ours;
        if sd.pre.len() == gone.len() {
            gone.extend(sd.pre_keywords.iter());
        }
        for w in gone {
            splices.push(Splice {
                range: l.file_range(l.with_space_before(w, is_c_space)),
                with: String::new(),
            });
        }
    }
    for m in wanted.difference(&present) {
        new_lines.push(format!("softdep {m} pre: vfio-pci"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(ids: &[&str], softdeps: &[&str], options: &[&str]) -> VfioBinding {
        VfioBinding {
            ids: ids.iter().map(|s| s.to_string()).collect(),
            softdeps: softdeps.iter().map(|s| s.to_string()).collect(),
            options: options.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn render(before: Option<&str>, want: &VfioBinding) -> Option<String> {
        render_vfio_binding(before, want).map(|b| String::from_utf8(b).unwrap())
    }

    #[test]
    fn a_new_file() {
        let got = render(
            None,
            &binding(
                &["10de:2206", "10de:1aef"],
                &["nvidia", "snd_hda_intel"],
                &["disable_vga=1"],
            ),
        );
        assert_eq!(
            got.as_deref(),
            Some("# Written by passthru: VFIO binding for GPU passthrough.\n# Undo with `passthru setup host GPU` or `passthru rollback`.\noptions vfio-pci ids=10de:1aef,10de:2206 disable_vga=1\nsoftdep nvidia pre: vfio-pci\nsoftdep snd_hda_intel pre: vfio-pci\n")
        );
    }

    #[test]
    fn nothing_bound_is_no_file() {
        assert_eq!(render(None, &VfioBinding::default()), None);
        let ours = render(None, &binding(&["1:2"], &["a"], &[])).unwrap();
        assert_eq!(render(Some(&ours), &VfioBinding::default()), None);
    }

    #[test]
    fn other_lines_are_kept_byte_for_byte() {
        let before = "options snd_hda_intel power_save=0\noptions vfio-pci ids=10de:1\nblacklist nouveau\ninstall foo /bin/true\n";
        let got = render(Some(before), &binding(&["10de:1", "10de:2"], &[], &[])).unwrap();
        assert_eq!(
            got,
            "options snd_hda_intel power_save=0\noptions vfio-pci ids=10de:1,10de:2\nblacklist nouveau\ninstall foo /bin/true\n"
        );
    }

    #[test]
    fn a_continued_ids_word_is_replaced_whole() {
        let before = "options vfio-pci ids=10de:1,\\\n10de:2 nointxmask=1\n";
        let b = read_vfio_binding("f", Some(before)).unwrap();
        assert_eq!(b.ids, binding(&["10de:1", "10de:2"], &[], &[]).ids);
        let got = render(Some(before), &binding(&["10de:2"], &[], &[])).unwrap();
        assert_eq!(got, "options vfio-pci ids=10de:2 nointxmask=1\n");
    }

    #[test]
    fn ids_split_over_two_lines_become_one_word() {
        let before = "options vfio-pci ids=1:1\noptions vfio_pci ids=1:2 disable_vga=1\n";
        let got = render(
            Some(before),
            &binding(&["1:1", "1:2"], &[], &["disable_vga=1"]),
        )
        .unwrap();
        assert_eq!(
            got,
            "options vfio-pci ids=1:1,1:2\noptions vfio_pci disable_vga=1\n"
        );
    }

    #[test]
    fn removing_the_last_id_removes_the_line_but_not_user_options() {
        let before = "options vfio-pci ids=1:1 disable_vga=1\noptions vfio-pci nointxmask=1\nsoftdep nvidia pre: vfio-pci\n";
        let got = render(Some(before), &VfioBinding::default()).unwrap();
        assert_eq!(got, "options vfio-pci nointxmask=1\n");
    }

    #[test]
    fn a_user_softdep_keeps_its_other_modules() {
        let before = "softdep nvidia pre: vfio_pci foo post: bar\nsoftdep snd-hda-intel pre: vfio-pci post: x\n";
        let got = render(Some(before), &VfioBinding::default()).unwrap();
        assert_eq!(
            got,
            "softdep nvidia pre: foo post: bar\nsoftdep snd-hda-intel post: x\n"
        );
    }

    #[test]
    fn dash_and_underscore_spellings_are_the_same_softdep() {
        let before = "softdep snd-hda-intel pre: vfio-pci\n";
        let b = read_vfio_binding("f", Some(before)).unwrap();
        assert_eq!(b.softdeps, binding(&[], &["snd_hda_intel"], &[]).softdeps);
        assert_eq!(render(Some(before), &b).as_deref(), Some(before));
    }

    #[test]
    fn never_a_softdep_of_vfio_pci_on_itself() {
        let got = render(None, &binding(&["1:1"], &["vfio-pci", "vfio_pci"], &[])).unwrap();
        assert!(!got.contains("softdep"), "{got}");
        // One an older passthru wrote goes.
        let before = "options vfio-pci ids=1:1\nsoftdep vfio_pci pre: vfio-pci\n";
        let b = read_vfio_binding("f", Some(before)).unwrap();
        assert!(b.softdeps.is_empty());
        assert_eq!(
            render(Some(before), &b).as_deref(),
            Some("options vfio-pci ids=1:1\n")
        );
    }

    #[test]
    fn an_option_with_another_value_is_set() {
        let before = "options vfio-pci ids=1:1 disable_vga=0\n";
        let got = render(Some(before), &binding(&["1:1"], &[], &["disable_vga=1"])).unwrap();
        assert_eq!(got, "options vfio-pci ids=1:1 disable_vga=1\n");
    }

    #[test]
    fn appends_after_a_file_without_final_newline() {
        let got = render(
            Some("blacklist nouveau"),
            &binding(&["1:1"], &["nvidia"], &[]),
        )
        .unwrap();
        assert_eq!(
            got,
            "blacklist nouveau\noptions vfio-pci ids=1:1\nsoftdep nvidia pre: vfio-pci\n"
        );
    }

    #[test]
    fn quoted_vfio_options_are_refused_with_file_and_line() {
        let e = read_vfio_binding(
            "etc/x.conf",
            Some("# c\noptions vfio-pci ids=1:1 x=\"a b\"\n"),
        )
        .unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.to_string().starts_with("etc/x.conf, line 2:"), "{e}");
    }
}

/// Comments out the `options` lines of a modprobe.d file that start on `lines` (1-based), each
/// prefixed with `# NOTE: ` in its first physical line; a continued line is hidden whole, as
/// kmod continues a comment with its backslash. Every other byte is kept.
pub fn comment_out_options(text: &str, lines: &[usize], note: &str) -> String {
    let mut out = text.to_string();
    for l in parse_modprobe_lines(text).iter().rev() {
        if lines.contains(&l.line) && l.command() == Some("options") {
            out.insert_str(l.span.start, &format!("# {note}: "));
        }
    }
    out
}

#[cfg(test)]
mod comment_out_tests {
    use super::comment_out_options;

    #[test]
    fn only_the_named_options_lines_are_hidden_and_crlf_is_kept() {
        let text = "# mine\r\noptions vfio-pci ids=10de:1,\\\r\n10de:2\r\nblacklist nouveau\r\noptions snd_hda_intel power_save=0\r\n";
        let out = comment_out_options(text, &[2, 4], "passthru: replaced");
        assert_eq!(
            out,
            "# mine\r\n# passthru: replaced: options vfio-pci ids=10de:1,\\\r\n10de:2\r\nblacklist nouveau\r\noptions snd_hda_intel power_save=0\r\n"
        );
    }
}

/// Where the vfio-pci option words that satisfy `pred` are: (line in `vfio`, word in it).
fn word_positions(
    vfio: &[(usize, &LogicalLine, Vec<Word<'_>>)],
    pred: impl Fn(&str) -> bool,
) -> Vec<(usize, usize)> {
    vfio.iter()
        .enumerate()
        .flat_map(|(li, (_, _, words))| {
            words
                .iter()
                .enumerate()
                .filter(|(_, w)| pred(w.text))
                .map(move |(wi, _)| (li, wi))
                .collect::<Vec<_>>()
        })
        .collect()
}
