//! GRUB defaults edits judged by the interpreters that read them: grub-mkconfig sources
//! `etc/default/grub` and `etc/default/grub.d/*.cfg` with `/bin/sh` (dash on Debian, Ubuntu
//! and Proxmox; bash on Fedora), so every edited file is run through both, and the words the
//! kernel would get are compared with what was asked. The expected words come from the
//! shell's reading of the original files and a small tokeniser written here, not from
//! passthru's own parser.

use std::path::Path;
use std::process::Command;

use passthru::formats::cmdline::parse_cmdline;
use passthru::formats::grub_defaults::{GrubFile, CMDLINE_DEFAULT, CMDLINE_LINUX};
use passthru::plan::boot::grub_defaults::plan_grub_params;
use passthru::plan::files::ParamChange;
use proptest::prelude::*;

const DROPIN: &str = "etc/default/grub.d/90-passthru.cfg";
const SHELLS: [&str; 2] = ["dash", "bash"];

/// The change setup makes on an Intel host.
fn setup_change() -> ParamChange {
    ParamChange {
        add: parse_cmdline("intel_iommu=on iommu=pt"),
        remove: parse_cmdline("iommu=off intel_iommu=off amd_iommu=off"),
    }
}

/// What the shell holds after sourcing the files in grub-mkconfig's order: the two
/// command-line variables and the named others, or the shell's error.
fn source_with(shell: &str, dir: &Path, others: &[&str]) -> Result<Vec<String>, String> {
    let mut script = String::from(
        "set -e\nif test -f ./etc/default/grub; then . ./etc/default/grub; fi\nfor x in ./etc/default/grub.d/*.cfg; do if [ -e \"$x\" ]; then . \"$x\"; fi; done\n",
    );
    for v in [CMDLINE_LINUX, CMDLINE_DEFAULT].iter().chain(others) {
        script.push_str(&format!("printf '%s\\001' \"${{{v}-}}\"\n"));
    }
    let o = Command::new(shell)
        .arg("-c")
        .arg(&script)
        .current_dir(dir)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()
        .map_err(|e| format!("{shell}: {e}"))?;
    if !o.status.success() || !o.stderr.is_empty() {
        return Err(format!(
            "{shell} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    Ok(out.split('\u{1}').map(str::to_string).collect())
}

fn syntax_ok(shell: &str, file: &Path) -> Result<(), String> {
    let o = Command::new(shell)
        .arg("-n")
        .arg(file)
        .output()
        .map_err(|e| e.to_string())?;
    if o.status.success() && o.stderr.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{shell} -n {}: {}",
            file.display(),
            String::from_utf8_lossy(&o.stderr)
        ))
    }
}

fn write_tree(dir: &Path, files: &[(String, String)]) {
    let _ = std::fs::remove_dir_all(dir.join("etc"));
    std::fs::create_dir_all(dir.join("etc/default/grub.d")).unwrap();
    for (p, t) in files {
        std::fs::write(dir.join(p), t).unwrap();
    }
}

/// The kernel's splitting, written independently: whitespace outside double quotes.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut q = false;
    for c in line.chars() {
        if c == '"' {
            q = !q;
        }
        if c.is_whitespace() && !q {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
        } else {
            cur.push(c);
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn key(w: &str) -> String {
    w.split('=').next().unwrap_or("").replace('-', "_")
}

/// Runs the edit on `files` and checks it under both shells; returns the edited files.
fn edit_and_judge(
    files: &[(String, String)],
    dropin: bool,
    others: &[&str],
) -> Result<Vec<(String, String)>, String> {
    let dir = tempfile::tempdir().unwrap();
    let change = setup_change();
    write_tree(dir.path(), files);
    let before: Vec<Vec<String>> = SHELLS
        .iter()
        .map(|sh| source_with(sh, dir.path(), others))
        .collect::<Result<_, _>>()?;
    let grub_files: Vec<GrubFile> = files
        .iter()
        .map(|(p, t)| GrubFile {
            path: p.clone(),
            text: t.clone(),
        })
        .collect();
    let plan = plan_grub_params(
        &grub_files,
        dropin.then_some(DROPIN),
        CMDLINE_DEFAULT,
        &change,
    )
    .map_err(|e| format!("refused: {e}"))?;
    let mut after_files: Vec<(String, String)> = files.to_vec();
    for (p, t) in plan {
        after_files.retain(|(q, _)| *q != p);
        if let Some(t) = t {
            after_files.push((p, t));
        }
    }
    write_tree(dir.path(), &after_files);
    for (p, _) in &after_files {
        for sh in SHELLS {
            syntax_ok(sh, &dir.path().join(p))?;
        }
    }
    for (i, sh) in SHELLS.iter().enumerate() {
        let after = source_with(sh, dir.path(), others)?;
        // Every other variable is as it was.
        if after[2..] != before[i][2..] {
            return Err(format!(
                "{sh}: other variables changed: {:?} -> {:?}",
                before[i], after
            ));
        }
        let old_normal = words(&format!("{} {}", before[i][0], before[i][1]));
        let new_normal = words(&format!("{} {}", after[0], after[1]));
        let new_recovery = words(&after[0]);
        let removed = |w: &str| {
            ["iommu=off", "intel_iommu=off", "amd_iommu=off"].contains(&w)
                || (key(w) == "intel_iommu" && w != "intel_iommu=on")
                || (key(w) == "iommu" && w != "iommu=pt")
        };
        let kept: Vec<&String> = old_normal.iter().filter(|w| !removed(w)).collect();
        let new_kept: Vec<&String> = new_normal
            .iter()
            .filter(|w| !["intel_iommu=on", "iommu=pt"].contains(&w.as_str()))
            .collect();
        if kept
            .iter()
            .filter(|w| !["intel_iommu=on", "iommu=pt"].contains(&w.as_str()))
            .collect::<Vec<_>>()
            != new_kept.iter().collect::<Vec<_>>()
        {
            return Err(format!(
                "{sh}: words not kept in order: {old_normal:?} -> {new_normal:?}"
            ));
        }
        for want in ["intel_iommu=on", "iommu=pt"] {
            if !new_normal.iter().any(|w| w == want) {
                return Err(format!("{sh}: {want} missing from {new_normal:?}"));
            }
        }
        if let Some(bad) = new_normal.iter().chain(&new_recovery).find(|w| removed(w)) {
            return Err(format!(
                "{sh}: {bad} still in effect: {new_normal:?} / {new_recovery:?}"
            ));
        }
    }
    Ok(after_files)
}

fn one(path: &str, text: &str) -> Vec<(String, String)> {
    vec![(path.to_string(), text.to_string())]
}

#[test]
fn escaped_quotes_stay_valid_shell() {
    // Reproduction: the closing quote was found by a scan that ignored backslashes, giving
    // `"quiet dyndbg=\ iommu=pt"file a.c +p\""`.
    let text = "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet dyndbg=\\\"file a.c +p\\\"\"\nGRUB_CMDLINE_LINUX=\"\"\n";
    for dropin in [false, true] {
        let out = edit_and_judge(&one("etc/default/grub", text), dropin, &[]).unwrap();
        let all: String = out.iter().map(|(_, t)| t.as_str()).collect();
        assert!(all.contains("dyndbg=\\\"file a.c +p\\\""), "{all}");
    }
}

#[test]
fn iommu_off_goes_wherever_it_takes_effect() {
    for text in [
        // First word of the value (the old check saw `GRUB_CMDLINE_LINUX_DEFAULT="iommu=off`).
        "GRUB_CMDLINE_LINUX_DEFAULT=\"iommu=off quiet\"\n",
        // In GRUB_CMDLINE_LINUX, which was never looked at.
        "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\nGRUB_CMDLINE_LINUX=\"intel_iommu=off console=ttyS0\"\n",
        // Only the last assignment counts; both get cleaned.
        "GRUB_CMDLINE_LINUX=iommu=off\nexport GRUB_CMDLINE_LINUX='amd_iommu=off'\n",
    ] {
        for dropin in [false, true] {
            let out = edit_and_judge(&one("etc/default/grub", text), dropin, &[])
                .unwrap_or_else(|e| panic!("{text:?} dropin={dropin}: {e}"));
            assert!(out.iter().all(|(_, t)| !t.contains("=off")), "{out:?}");
        }
    }
    // In someone else's drop-in.
    let files = vec![
        (
            "etc/default/grub".to_string(),
            "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\n".to_string(),
        ),
        (
            "etc/default/grub.d/50-x.cfg".to_string(),
            "GRUB_CMDLINE_LINUX_DEFAULT=\"${GRUB_CMDLINE_LINUX_DEFAULT} iommu=off\"\n".to_string(),
        ),
    ];
    let out = edit_and_judge(&files, true, &[]).unwrap();
    let x = out.iter().find(|(p, _)| p.ends_with("50-x.cfg")).unwrap();
    assert_eq!(
        x.1,
        "GRUB_CMDLINE_LINUX_DEFAULT=\"${GRUB_CMDLINE_LINUX_DEFAULT}\"\n"
    );
}

#[test]
fn continued_values_keep_their_words() {
    let text = "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet \\\nsplash\"\nGRUB_TIMEOUT=5\n";
    let out = edit_and_judge(&one("etc/default/grub", text), false, &["GRUB_TIMEOUT"]).unwrap();
    assert_eq!(
        out[0].1,
        "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet splash intel_iommu=on iommu=pt\"\nGRUB_TIMEOUT=5\n"
    );
}

#[test]
fn what_cannot_be_edited_safely_is_refused_with_the_line() {
    let change = setup_change();
    for (text, line) in [
        ("GRUB_CMDLINE_LINUX_DEFAULT=\"$(cat /etc/x) quiet\"\n", 1),
        ("A=1\nGRUB_CMDLINE_LINUX=`echo iommu=off`\n", 2),
        (
            "if [ -d /x ]; then\n GRUB_CMDLINE_LINUX_DEFAULT=quiet\nfi\n",
            2,
        ),
        ("GRUB_CMDLINE_LINUX_DEFAULT=\"$SOMETHING quiet\"\n", 1),
    ] {
        let files = vec![GrubFile {
            path: "etc/default/grub".into(),
            text: text.into(),
        }];
        let e = plan_grub_params(&files, Some(DROPIN), CMDLINE_DEFAULT, &change).unwrap_err();
        assert_eq!(
            (e.file.as_str(), e.line),
            ("etc/default/grub", line),
            "{text:?}: {e}"
        );
    }
    // A later drop-in that overrides the value: the plan says which file wins.
    let files = vec![
        GrubFile {
            path: "etc/default/grub".into(),
            text: "GRUB_CMDLINE_LINUX_DEFAULT=quiet\n".into(),
        },
        GrubFile {
            path: "etc/default/grub.d/99-cloud.cfg".into(),
            text: "GRUB_CMDLINE_LINUX_DEFAULT=\"console=ttyS0\"\n".into(),
        },
    ];
    let e = plan_grub_params(&files, Some(DROPIN), CMDLINE_DEFAULT, &change).unwrap_err();
    assert_eq!(e.file, "etc/default/grub.d/99-cloud.cfg", "{e}");
}

#[test]
fn second_run_changes_nothing_and_keeps_earlier_parameters() {
    let change = setup_change();
    let mut files = vec![GrubFile {
        path: "etc/default/grub".into(),
        text: "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet iommu=off\"\n".into(),
    }];
    let first = plan_grub_params(&files, Some(DROPIN), CMDLINE_DEFAULT, &change).unwrap();
    for (p, t) in first {
        files.retain(|f| f.path != p);
        files.push(GrubFile {
            path: p,
            text: t.unwrap(),
        });
    }
    assert!(
        plan_grub_params(&files, Some(DROPIN), CMDLINE_DEFAULT, &change)
            .unwrap()
            .is_empty()
    );
    // A later setup that adds another parameter keeps the first ones.
    let more = ParamChange {
        add: parse_cmdline("initcall_blacklist=sysfb_init"),
        remove: vec![],
    };
    let third = plan_grub_params(&files, Some(DROPIN), CMDLINE_DEFAULT, &more).unwrap();
    assert_eq!(third.len(), 1);
    let text = third[0].1.clone().unwrap();
    assert!(
        text.contains("intel_iommu=on iommu=pt initcall_blacklist=sysfb_init")
            || text.contains("initcall_blacklist=sysfb_init intel_iommu=on iommu=pt"),
        "{text}"
    );
}

// ---- generated files ------------------------------------------------------------------

/// A command-line word, written as it would appear inside the value.
fn param_word() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "quiet",
        "splash",
        "iommu=off",
        "intel_iommu=off",
        "amd_iommu=off",
        "intel_iommu=on",
        "iommu=pt",
        "iommu=soft",
        "console=ttyS0,115200n8",
        "root=UUID=0b1e-7",
        "nomodeset",
        "DYNDBG",
        "pcie_aspm=off",
    ])
}

#[derive(Debug, Clone, Copy)]
enum Style {
    Double,
    Single,
    Bare,
    /// Double quotes with the words split over a backslash-newline.
    Continued,
}

fn render_value(words: &[&str], style: Style) -> String {
    let dq = |w: &str| {
        if w == "DYNDBG" {
            "dyndbg=\\\"file a.c +p\\\"".to_string()
        } else {
            w.to_string()
        }
    };
    match style {
        Style::Double => format!(
            "\"{}\"",
            words.iter().map(|w| dq(w)).collect::<Vec<_>>().join(" ")
        ),
        Style::Continued => format!(
            "\"{}\"",
            words
                .iter()
                .map(|w| dq(w))
                .collect::<Vec<_>>()
                .join(" \\\n")
        ),
        Style::Single => format!(
            "'{}'",
            words
                .iter()
                .map(|w| if *w == "DYNDBG" {
                    "dyndbg=\"file a.c +p\""
                } else {
                    w
                })
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Style::Bare => words
            .iter()
            .map(|w| {
                if *w == "DYNDBG" {
                    "dyndbg=\\\"file\\ a.c\\ +p\\\""
                } else {
                    w
                }
            })
            .collect::<Vec<_>>()
            .join("\\ "),
    }
}

fn style() -> impl Strategy<Value = Style> {
    prop_oneof![
        Just(Style::Double),
        Just(Style::Single),
        Just(Style::Bare),
        Just(Style::Continued)
    ]
}

/// One line of a generated defaults file.
fn line() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("# a comment\n".to_string()),
        Just("\n".to_string()),
        Just("GRUB_TIMEOUT=5\n".to_string()),
        Just("GRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`\n".to_string()),
        Just("GRUB_GFXMODE='640x480' # mode\n".to_string()),
        (
            prop::bool::ANY,
            prop::sample::select(vec![CMDLINE_LINUX, CMDLINE_DEFAULT]),
            prop::collection::vec(param_word(), 0..5),
            style(),
            prop::sample::select(vec!["", "  # trailing", " ;"]),
        )
            .prop_map(|(export, var, words, style, tail)| {
                format!(
                    "{}{var}={}{tail}\n",
                    if export { "export " } else { "" },
                    render_value(&words, style)
                )
            }),
    ]
}

fn dropin_file() -> impl Strategy<Value = Option<String>> {
    prop::option::of(
        (
            prop::sample::select(vec![CMDLINE_LINUX, CMDLINE_DEFAULT]),
            prop::collection::vec(param_word(), 1..3),
            prop::bool::ANY,
        )
            .prop_map(|(var, words, braces)| {
                let r = if braces {
                    format!("${{{var}}}")
                } else {
                    format!("${var}")
                };
                {
                    let inner = render_value(&words, Style::Double);
                    format!("{var}=\"{r} {}\n", &inner[1..])
                }
            }),
    )
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 128,
        failure_persistence: None,
        rng_algorithm: prop::test_runner::RngAlgorithm::ChaCha,
        ..ProptestConfig::default()
    })]

    #[test]
    fn generated_defaults_files_edit_as_the_shell_reads_them(
        lines in prop::collection::vec(line(), 1..9),
        other in dropin_file(),
        use_dropin in prop::bool::ANY,
    ) {
        let mut files = vec![("etc/default/grub".to_string(), lines.concat())];
        if let Some(o) = other {
            files.push(("etc/default/grub.d/50-other.cfg".to_string(), o));
        }
        let others = ["GRUB_TIMEOUT", "GRUB_GFXMODE"];
        if let Err(e) = edit_and_judge(&files, use_dropin, &others) {
            prop_assert!(false, "{e}\nfiles: {files:#?}");
        }
    }
}

#[test]
fn debians_shipped_files_evaluate_and_edit() {
    // etc/default/grub as grub-common installs it (backticks in GRUB_DISTRIBUTOR) and the
    // comments-only grub.d/init-select.cfg every Debian-family host has.
    let dir = common_fixture("debian12-grub");
    let read = |p: &str| std::fs::read_to_string(dir.join(p)).unwrap();
    let files = vec![
        ("etc/default/grub".to_string(), read("etc/default/grub")),
        (
            "etc/default/grub.d/init-select.cfg".to_string(),
            read("etc/default/grub.d/init-select.cfg"),
        ),
    ];
    let out = edit_and_judge(&files, true, &["GRUB_TIMEOUT", "GRUB_DEFAULT"]).unwrap();
    // Only the drop-in is new; the shipped files keep every byte.
    for (p, t) in &files {
        assert!(out.iter().any(|(q, u)| q == p && u == t), "{p} changed");
    }
    assert!(out.iter().any(|(q, _)| q == DROPIN));
}

fn common_fixture(distro: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/distros")
        .join(distro)
}
