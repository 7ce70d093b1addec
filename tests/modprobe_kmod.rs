//! modprobe.d judged by kmod itself: generated files (comments, continued comments that
//! hide a line, blank lines, other modules' options, blacklist/install/remove/alias lines,
//! `options vfio-pci` with ids split over continuation lines, softdeps, odd whitespace,
//! `-`/`_` spellings) are read by `modprobe -C DIR --showconfig` (kmod; with -C it reads only
//! that directory, no root needed) and compared with passthru's parser, and with passthru's
//! edit of its own file: the ids and softdeps kmod sees are exactly the expected ones and
//! every other line kmod reports is unchanged.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use passthru::formats::modprobe::{parse_modprobe_lines, parse_softdep, LineKind};
use passthru::host::vfio_config::read_vfio_config;
use passthru::host::HostRoot;
use passthru::plan::modprobe_file::{read_vfio_binding, render_vfio_binding, VfioBinding};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};

/// `modprobe -C dir --showconfig` over a directory holding `text` as its one file (no file
/// for `None`), up to the end of the configuration (the indexes after it are the machine's).
fn showconfig(text: Option<&str>) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    if let Some(t) = text {
        std::fs::write(dir.path().join("passthru-vfio.conf"), t).unwrap();
    }
    showconfig_dir(dir.path())
}

fn showconfig_dir(dir: &Path) -> Vec<String> {
    let out = ["modprobe", "/sbin/modprobe", "/usr/sbin/modprobe"]
        .iter()
        .find_map(|m| {
            Command::new(m)
                .arg("-C")
                .arg(dir)
                .arg("--showconfig")
                .output()
                .ok()
        })
        .expect("modprobe (kmod) is needed");
    assert!(out.status.success(), "{out:?}");
    // Not UTF-8 only where a file ends in a backslash (kmod 30 keeps a 0xff byte): never
    // generated.
    let text = String::from_utf8(out.stdout).expect("kmod printed UTF-8");
    let baseline = kcmdline_lines();
    text.lines()
        .take_while(|l| !l.starts_with("# End of configuration files"))
        // kmod also reports options from this machine's /proc/cmdline: not the file's.
        .filter(|l| !baseline.contains(*l))
        .map(str::to_string)
        .collect()
}

/// What kmod reports with no configuration file at all (options from /proc/cmdline).
fn kcmdline_lines() -> &'static BTreeSet<String> {
    static LINES: std::sync::OnceLock<BTreeSet<String>> = std::sync::OnceLock::new();
    LINES.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("modprobe")
            .arg("-C")
            .arg(dir.path())
            .arg("--showconfig")
            .output()
            .or_else(|_| {
                Command::new("/sbin/modprobe")
                    .arg("-C")
                    .arg(dir.path())
                    .arg("--showconfig")
                    .output()
            })
            .expect("modprobe (kmod) is needed");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .take_while(|l| !l.starts_with("# End of configuration files"))
            .map(str::to_string)
            .collect()
    })
}

fn norm(m: &str) -> String {
    m.replace('-', "_")
}

fn is_vfio_pci(m: &str) -> bool {
    norm(m) == "vfio_pci"
}

/// A softdep line as kmod prints it: module, pre list, post list. kmod 30 prints the pre
/// list and `post:` with no space between (`pre: a bpost: c`); no generated module name ends
/// in "post", so splitting at the last "post: " is exact here.
fn kmod_softdep(line: &str) -> Option<(String, Vec<String>, Vec<String>)> {
    let rest = line.strip_prefix("softdep ")?;
    let (module, lists) = rest.split_once(' ').unwrap_or((rest, ""));
    let (pre, post) = match lists.rfind("post: ") {
        Some(i) => (&lists[..i], &lists[i + "post: ".len()..]),
        None => (lists, ""),
    };
    let pre = pre.trim().strip_prefix("pre:").unwrap_or(pre);
    let words = |s: &str| s.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    Some((module.to_string(), words(pre), words(post)))
}

/// The option words of every `options vfio_pci` line kmod reports, in order.
fn kmod_vfio_words(config: &[String]) -> Vec<String> {
    config
        .iter()
        .filter_map(|l| l.strip_prefix("options vfio_pci "))
        .flat_map(str::split_whitespace)
        .map(str::to_string)
        .collect()
}

/// What the kernel gets for vfio-pci's `ids`: the options are joined in order and the last
/// `ids=` wins (a string module parameter).
fn kmod_effective_ids(config: &[String]) -> BTreeSet<String> {
    kmod_vfio_words(config)
        .iter()
        .rev()
        .find_map(|w| w.strip_prefix("ids=").map(str::to_string))
        .map(|v| {
            v.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_ascii_lowercase)
                .collect()
        })
        .unwrap_or_default()
}

/// Modules with a softdep whose pre list has vfio-pci: passthru's softdeps.
fn kmod_vfio_softdeps(config: &[String]) -> BTreeSet<String> {
    config
        .iter()
        .filter_map(|l| kmod_softdep(l))
        .filter(|(_, pre, _)| pre.iter().any(|p| is_vfio_pci(p)))
        .map(|(m, _, _)| m)
        .collect()
}

/// Every line kmod reports that is not passthru's: no `options vfio_pci`, and softdeps with
/// vfio-pci taken out of their pre list (a line left empty is dropped).
fn kmod_other_lines(config: &[String]) -> Vec<String> {
    config
        .iter()
        .filter(|l| !l.starts_with("options vfio_pci "))
        .filter_map(|l| match kmod_softdep(l) {
            None => Some(l.clone()),
            Some((m, pre, post)) => {
                let had_vfio = pre.iter().any(|p| is_vfio_pci(p));
                let pre: Vec<String> = pre.into_iter().filter(|p| !is_vfio_pci(p)).collect();
                if had_vfio && pre.is_empty() && post.is_empty() {
                    None
                } else {
                    Some(format!(
                        "softdep {m} pre: {} post: {}",
                        pre.join(" "),
                        post.join(" ")
                    ))
                }
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// The grammar.

const ID_POOL: &[&str] = &[
    "10de:2206",
    "10de:1aef",
    "1002:73bf",
    "1002:ab28",
    "8086:46d1",
    "10DE:1B80",
    "10de:10f0",
];
const SOFTDEP_POOL: &[&str] = &[
    "nvidia",
    "snd-hda-intel",
    "snd_hda_intel",
    "xhci_pci",
    "i2c-nvidia-gpu",
    "amdgpu",
    "vfio-pci",
    "vfio_pci",
];
const USER_VFIO_OPTIONS: &[&str] = &["nointxmask=1", "enable_sriov=1", "disable_denylist=1"];
const MANAGED_IN_FILE: &[&str] = &["disable_vga=1", "disable_vga=0", "disable_idle_d3=1"];
const MANAGED_WANTED: &[&str] = &["disable_vga=1", "disable_idle_d3=1"];
const MANAGED_KEYS: &[&str] = &["disable_vga", "disable_idle_d3"];

/// Lines for other modules, and lines that look like passthru's but are not.
const OTHER_LINES: &[&str] = &[
    "options snd_hda_intel power_save=0",
    "options snd-hda-intel\tpower_save=0  power_save_controller=N",
    "options nvidia-drm modeset=1",
    "options kvm ignore_msrs=1 \\\n  report_ignored_msrs=0",
    "options vfio_iommu_type1 allow_unsafe_interrupts=1",
    "options vfio-pci-core foo=1",
    "blacklist nouveau",
    "blacklist\tnvidiafb",
    "install pcspkr /bin/true",
    "install nvidia /sbin/modprobe --ignore-install nvidia \\\n && /bin/echo loaded",
    "remove foo /bin/false",
    "alias pci:v000010DEd*sv*sd*bc03sc*i* nvidia",
    "softdep amdgpu pre: drm post: snd-hda-intel",
    "softdep nouveau pre: vfio_pci_core",
    "softdep\tsnd_hda_intel post: foo",
    "  # an indented comment (kmod: a bad line, ignored)",
    "frobnicate all",
];
/// What a continued comment hides (kmod skips it with the comment).
const HIDDEN_LINES: &[&str] = &[
    "options vfio-pci ids=dead:beef",
    "softdep nvidia pre: vfio-pci",
    "blacklist hidden",
];
/// passthru's header comment, as a user might also keep it.
const HEADER_LINE: &str = "Written by passthru: VFIO binding for GPU passthrough.";
const SEPS: &[&str] = &[" ", "\t", "  ", " \t"];
/// Between two option words: plain whitespace or a continuation.
const WORD_SEPS: &[&str] = &[" ", "\t", "  ", " \\\n", "\\\n  ", " \\\n\t"];

#[derive(Debug, Clone)]
enum VWord {
    /// ids, and after each comma whether a continuation follows.
    Ids(Vec<&'static str>, Vec<bool>),
    User(&'static str),
    Managed(&'static str),
}

#[derive(Debug, Clone)]
enum Item {
    Blank(&'static str),
    Comment(&'static str),
    ContinuedComment(&'static str),
    Other(&'static str),
    Vfio {
        spelling: &'static str,
        sep: &'static str,
        words: Vec<(VWord, &'static str)>,
    },
    OurSoftdep {
        module: &'static str,
        vfio: &'static str,
        sep: &'static str,
        extra_pre: Option<&'static str>,
        post: Option<&'static str>,
    },
}

impl Item {
    fn render(&self) -> String {
        match self {
            Item::Blank(s) => format!("{s}\n"),
            Item::Comment(s) => format!("# {s}\n"),
            Item::ContinuedComment(h) => format!("# was: \\\n{h}\n"),
            Item::Other(l) => format!("{l}\n"),
            Item::Vfio {
                spelling,
                sep,
                words,
            } => {
                let mut s = format!("options{sep}{spelling}");
                for (i, (w, between)) in words.iter().enumerate() {
                    s.push_str(if i == 0 { sep } else { between });
                    match w {
                        VWord::Ids(ids, breaks) => {
                            s.push_str("ids=");
                            for (i, id) in ids.iter().enumerate() {
                                if i > 0 {
                                    s.push(',');
                                    if breaks[i] {
                                        s.push_str("\\\n");
                                    }
                                }
                                s.push_str(id);
                            }
                        }
                        VWord::User(o) | VWord::Managed(o) => s.push_str(o),
                    }
                }
                s.push('\n');
                s
            }
            Item::OurSoftdep {
                module,
                vfio,
                sep,
                extra_pre,
                post,
            } => {
                let mut s = format!("softdep{sep}{module}{sep}pre:{sep}{vfio}");
                if let Some(e) = extra_pre {
                    s.push_str(&format!(" {e}"));
                }
                if let Some(p) = post {
                    s.push_str(&format!("{sep}post: {p}"));
                }
                s.push('\n');
                s
            }
        }
    }

    /// passthru's own lines: the ones its edit may change (its header comment included:
    /// a file left with nothing else goes).
    fn is_passthrus(&self) -> bool {
        matches!(
            self,
            Item::Vfio { .. } | Item::OurSoftdep { .. } | Item::Comment(HEADER_LINE)
        ) && self.kmod_reads_softdep()
    }

    /// kmod keeps one whitespace byte at the start of a softdep list as part of its first
    /// word (libkmod-config.c, kmod_config_add_softdep), so with exactly two separators
    /// after the module it sees no `pre:` at all: such a line binds nothing.
    fn kmod_reads_softdep(&self) -> bool {
        match self {
            Item::OurSoftdep { sep, .. } => sep.len() != 2,
            _ => true,
        }
    }
}

fn vword() -> impl Strategy<Value = VWord> {
    prop_oneof![
        3 => (prop::sample::subsequence(ID_POOL, 1..4), prop::collection::vec(any::<bool>(), 4))
            .prop_map(|(ids, b)| VWord::Ids(ids, b)),
        1 => prop::sample::select(USER_VFIO_OPTIONS).prop_map(VWord::User),
        1 => prop::sample::select(MANAGED_IN_FILE).prop_map(VWord::Managed),
    ]
}

fn item() -> impl Strategy<Value = Item> {
    prop_oneof![
        1 => prop::sample::select(&["", "  ", "\t"][..]).prop_map(Item::Blank),
        1 => prop::sample::select(&["vfio", HEADER_LINE, "mine"][..]).prop_map(Item::Comment),
        1 => prop::sample::select(HIDDEN_LINES).prop_map(Item::ContinuedComment),
        4 => prop::sample::select(OTHER_LINES).prop_map(Item::Other),
        3 => (
            prop::sample::select(&["vfio-pci", "vfio_pci"][..]),
            prop::sample::select(SEPS),
            prop::collection::vec((vword(), prop::sample::select(WORD_SEPS)), 1..4),
        )
            .prop_map(|(spelling, sep, words)| Item::Vfio { spelling, sep, words }),
        2 => (
            prop::sample::select(SOFTDEP_POOL),
            prop::sample::select(&["vfio-pci", "vfio_pci"][..]),
            prop::sample::select(SEPS),
            prop::option::weighted(0.2, prop::sample::select(&["drm", "foo"][..])),
            prop::option::weighted(0.2, prop::sample::select(&["bar", "snd_hda_codec_hdmi"][..])),
        )
            .prop_map(|(module, vfio, sep, extra_pre, post)| Item::OurSoftdep { module, vfio, sep, extra_pre, post }),
    ]
}

#[derive(Debug, Clone)]
struct Case {
    items: Vec<Item>,
    final_newline: bool,
    add_ids: Vec<&'static str>,
    remove_ids: Vec<&'static str>,
    add_softdeps: Vec<&'static str>,
    remove_softdeps: Vec<&'static str>,
    options: Vec<&'static str>,
}

impl Case {
    fn text(&self) -> String {
        let mut t: String = self.items.iter().map(Item::render).collect();
        if !self.final_newline && t.ends_with('\n') {
            t.pop();
        }
        t
    }

    /// The ids the file binds, from the grammar (a continued comment's hidden line is not
    /// in it: kmod skips it).
    fn ids(&self) -> BTreeSet<String> {
        self.items
            .iter()
            .filter_map(|i| match i {
                Item::Vfio { words, .. } => Some(words),
                _ => None,
            })
            .flatten()
            .filter_map(|(w, _)| match w {
                VWord::Ids(ids, _) => Some(ids),
                _ => None,
            })
            .flatten()
            .map(|i| i.to_ascii_lowercase())
            .collect()
    }

    fn softdeps(&self) -> BTreeSet<String> {
        self.items
            .iter()
            .filter_map(|i| match i {
                Item::OurSoftdep { module, .. } if i.kmod_reads_softdep() => Some(norm(module)),
                _ => None,
            })
            .filter(|m| m != "vfio_pci")
            .collect()
    }

    /// The user's vfio-pci option words, in file order.
    fn user_vfio_words(&self) -> Vec<String> {
        self.items
            .iter()
            .filter_map(|i| match i {
                Item::Vfio { words, .. } => Some(words),
                _ => None,
            })
            .flatten()
            .filter_map(|(w, _)| match w {
                VWord::User(o) => Some(o.to_string()),
                _ => None,
            })
            .collect()
    }

    fn want(&self) -> VfioBinding {
        let mut ids = self.ids();
        ids.extend(self.add_ids.iter().map(|i| i.to_ascii_lowercase()));
        for r in &self.remove_ids {
            ids.remove(&r.to_ascii_lowercase());
        }
        let mut softdeps: BTreeSet<String> = self.softdeps();
        softdeps.extend(self.add_softdeps.iter().map(|s| s.to_string()));
        for r in &self.remove_softdeps {
            softdeps.retain(|s| norm(s) != norm(r));
        }
        VfioBinding {
            ids,
            softdeps,
            options: self.options.iter().map(|o| o.to_string()).collect(),
        }
    }
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(item(), 0..12),
        prop::bool::weighted(0.85),
        prop::sample::subsequence(ID_POOL, 0..3),
        prop::sample::subsequence(ID_POOL, 0..3),
        prop::sample::subsequence(SOFTDEP_POOL, 0..3),
        prop::sample::subsequence(SOFTDEP_POOL, 0..3),
        prop::sample::subsequence(MANAGED_WANTED, 0..=2),
    )
        .prop_map(
            |(
                items,
                final_newline,
                add_ids,
                remove_ids,
                add_softdeps,
                remove_softdeps,
                options,
            )| {
                Case {
                    items,
                    final_newline,
                    add_ids,
                    remove_ids,
                    add_softdeps,
                    remove_softdeps,
                    options,
                }
            },
        )
}

fn runner(seed: u64) -> TestRunner {
    TestRunner::new(Config {
        cases: 300,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        ..Config::default()
    })
}

/// The edit of passthru's own file, judged by kmod.
#[test]
fn edits_of_passthrus_modprobe_file_as_kmod_sees_them() {
    runner(0x6d6f_6470_726f_6265)
        .run(&case(), |c| {
            let before = c.text();
            let want = c.want();
            let read = read_vfio_binding("passthru-vfio.conf", Some(&before)).unwrap();
            prop_assert_eq!(&read.ids, &c.ids(), "read ids:\n{}", before);
            prop_assert_eq!(&read.softdeps, &c.softdeps(), "read softdeps:\n{}", before);

            let after =
                render_vfio_binding(Some(&before), &want).map(|b| String::from_utf8(b).unwrap());
            let kb = showconfig(Some(&before));
            let ka = showconfig(after.as_deref());
            let shown = format!(
                "--- before\n{before}\n--- after\n{}\n--- kmod after\n{}",
                after.as_deref().unwrap_or("(no file)"),
                ka.join("\n")
            );
            let want_softdeps: BTreeSet<String> = want
                .softdeps
                .iter()
                .map(|s| norm(s))
                .filter(|s| s != "vfio_pci")
                .collect();

            // The ids and softdeps are exactly those asked for.
            prop_assert_eq!(kmod_effective_ids(&ka), want.ids.clone(), "ids\n{}", shown);
            let ids_words = kmod_vfio_words(&ka)
                .iter()
                .filter(|w| w.starts_with("ids="))
                .count();
            prop_assert_eq!(
                ids_words,
                usize::from(!want.ids.is_empty()),
                "one ids=\n{}",
                shown
            );
            prop_assert_eq!(
                kmod_vfio_softdeps(&ka),
                want_softdeps.clone(),
                "softdeps\n{}",
                shown
            );

            // vfio-pci options: the user's kept in order, passthru's exactly as asked.
            let words = kmod_vfio_words(&ka);
            let key = |w: &str| w.split('=').next().unwrap_or("").to_string();
            let user: Vec<String> = words
                .iter()
                .filter(|w| !w.starts_with("ids=") && !MANAGED_KEYS.contains(&key(w).as_str()))
                .cloned()
                .collect();
            prop_assert_eq!(user, c.user_vfio_words(), "user options\n{}", shown);
            let mut managed: Vec<String> = words
                .iter()
                .filter(|w| MANAGED_KEYS.contains(&key(w).as_str()))
                .cloned()
                .collect();
            managed.sort();
            let mut expected: Vec<String> = c.options.iter().map(|o| o.to_string()).collect();
            expected.sort();
            prop_assert_eq!(managed, expected, "managed options\n{}", shown);

            // Everything else kmod sees is as it was.
            prop_assert_eq!(
                kmod_other_lines(&ka),
                kmod_other_lines(&kb),
                "others\n{}",
                shown
            );

            // Every line that is not passthru's keeps its bytes, in order; the file goes only
            // when nothing but blank lines would be left.
            let after_text = after.clone().unwrap_or_default();
            let mut from = 0;
            for i in c.items.iter().filter(|i| !i.is_passthrus()) {
                if after.is_none() {
                    prop_assert!(
                        matches!(i, Item::Blank(_)),
                        "file deleted with {:?}\n{}",
                        i,
                        shown
                    );
                    continue;
                }
                let r = i.render();
                let r = r.trim_end_matches('\n');
                match after_text[from..].find(r) {
                    Some(at) => from += at + r.len(),
                    None => prop_assert!(false, "lost {:?}\n{}", r, shown),
                }
            }

            // Running setup again changes nothing.
            let reread = read_vfio_binding("passthru-vfio.conf", after.as_deref()).unwrap();
            let mut want_normal = want.clone();
            want_normal.softdeps = want_softdeps.clone();
            prop_assert_eq!(&reread.ids, &want_normal.ids, "{}", shown);
            prop_assert_eq!(&reread.softdeps, &want_normal.softdeps, "{}", shown);
            let again = render_vfio_binding(after.as_deref(), &reread)
                .map(|b| String::from_utf8(b).unwrap());
            prop_assert_eq!(again, after.clone(), "not idempotent\n{}", shown);
            Ok(())
        })
        .unwrap();
}

/// passthru's parser reads what kmod reads: every command, with the module spelled as kmod
/// keys it and the rest as kmod keeps it; softdep lists word for word.
#[test]
fn the_parser_reads_what_kmod_reads() {
    runner(0x6b6d_6f64_3330)
        .run(&case(), |c| {
            let text = c.text();
            let kmod = showconfig(Some(&text));
            let mut ours: Vec<String> = Vec::new();
            let mut softdeps: Vec<(String, Vec<String>, Vec<String>)> = Vec::new();
            for l in parse_modprobe_lines(&text) {
                if l.kind != LineKind::Command {
                    continue;
                }
                let fields = l.fields();
                let cmd = fields[0].text;
                let module = norm(fields[1].text);
                let rest = l.rest().map(|(_, r)| r.to_string()).unwrap_or_default();
                match cmd {
                    "blacklist" => ours.push(format!("blacklist {module}")),
                    "install" | "remove" => ours.push(format!("{cmd} {module} {rest}")),
                    "alias" => ours.push(format!("alias {module} {}", norm(fields[2].text))),
                    "options" => ours.push(format!("options {module} {}", rest.replace('\t', " "))),
                    "softdep" => {
                        let s = parse_softdep(&l).unwrap();
                        softdeps.push((
                            module,
                            s.pre.iter().map(|w| w.text.to_string()).collect(),
                            s.post.iter().map(|w| w.text.to_string()).collect(),
                        ));
                    }
                    other => prop_assert!(false, "unexpected command {}", other),
                }
            }
            // kmod groups its report by command, each group in file order.
            let kinds = ["blacklist ", "install ", "remove ", "alias ", "options "];
            for k in kinds {
                let theirs: Vec<&String> = kmod.iter().filter(|l| l.starts_with(k)).collect();
                let mine: Vec<&String> = ours.iter().filter(|l| l.starts_with(k)).collect();
                prop_assert_eq!(mine, theirs, "{}\n---\n{}", text, kmod.join("\n"));
            }
            let theirs: Vec<_> = kmod.iter().filter_map(|l| kmod_softdep(l)).collect();
            prop_assert_eq!(softdeps, theirs, "{}", text);
            Ok(())
        })
        .unwrap();
}

/// The host reader sees continued ids as kmod does (the bug: a continuation was joined with
/// a space, so `10de:2` was read as an option, not an id).
#[test]
fn the_host_reader_sees_continued_ids() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("etc/modprobe.d");
    std::fs::create_dir_all(&conf).unwrap();
    // A host root needs sys/bus/pci or proc to count as a host.
    std::fs::create_dir_all(dir.path().join("proc")).unwrap();
    std::fs::write(
        conf.join("vfio.conf"),
        "options vfio-pci ids=10de:1,\\\n10de:2\n",
    )
    .unwrap();
    let kmod = showconfig_dir(&conf);
    assert_eq!(
        kmod_effective_ids(&kmod),
        ["10de:1", "10de:2"].iter().map(|s| s.to_string()).collect()
    );
    let root = HostRoot::new(dir.path()).unwrap();
    let mut issues = Vec::new();
    let cfg = read_vfio_config(&root, &[], &mut issues);
    assert_eq!(cfg.vfio_pci_ids, ["10de:1", "10de:2"]);
    assert_eq!(cfg.modprobe.len(), 1);
    assert_eq!(cfg.modprobe[0].args, "ids=10de:1,10de:2");
}
