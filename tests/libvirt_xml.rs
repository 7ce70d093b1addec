//! libvirt domain XML editing: byte-exact splices checked against libvirt's own test domains
//! (the corpus) and libvirt's RelaxNG schema through `virt-xml-validate`.

mod common;
use common::*;

use passthru::formats::libvirt_xml::*;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

const GPU: PciAddr = PciAddr {
    domain: 0,
    bus: 0x0a,
    slot: 0,
    function: 0,
};
const AUDIO: PciAddr = PciAddr {
    domain: 0,
    bus: 0x0a,
    slot: 0,
    function: 1,
};

/// The corpus file the libvirt 9.0.0 schema rejects (`<driver model='vfio-pci-igb'/>` is newer).
const SCHEMA_TOO_OLD: &str = "hostdev-vfio.xml";

fn corpus_domains() -> Vec<(String, String)> {
    let dir = corpus().join("libvirt");
    let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "xml"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    assert_eq!(out.len(), 13, "expected the 13 libvirt domain XMLs");
    out
}

/// A copy the 9.0.0 schema accepts: the newer `model` attribute dropped.
fn schema_compatible(name: &str, xml: &str) -> String {
    if name == SCHEMA_TOO_OLD {
        xml.replace(" model='vfio-pci-igb'", "")
            .replace("<driver/>", "<driver name='vfio'/>")
    } else {
        xml.to_string()
    }
}

/// Runs `virt-xml-validate FILE domain`: `None` when validation is skipped on purpose
/// (PASSTHRU_SKIP_VIRT_XML=1 and no validator), else whether the document validates, with the
/// validator's output.
fn validate(xml: &str) -> Option<(bool, String)> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("domain.xml");
    std::fs::write(&path, xml).unwrap();
    let out = Command::new("virt-xml-validate")
        .arg(&path)
        .arg("domain")
        .output();
    let missing = |why: &str| {
        if std::env::var_os("PASSTHRU_SKIP_VIRT_XML").is_some_and(|v| v == "1") {
            skip_or_fail(&format!(
                "{why}: schema validation (PASSTHRU_SKIP_VIRT_XML=1)"
            ));
            None
        } else {
            panic!(
                "{why}. The libvirt XML tests need virt-xml-validate (Debian: libvirt-clients, \
                 with the schemas from libvirt0 and xmllint from libxml2-utils); install them \
                 or set PASSTHRU_SKIP_VIRT_XML=1"
            )
        }
    };
    let out = match out {
        Ok(o) => o,
        Err(e) => return missing(&format!("virt-xml-validate cannot run ({e})")),
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // virt-xml-validate is a shell script around xmllint, which Debian does not pull in.
    if out.status.code() == Some(127) || text.contains("xmllint: not found") {
        return missing("xmllint (libxml2-utils) is not installed");
    }
    if text.contains("failed to load external entity") || text.contains("Relax-NG parser error") {
        return missing(&format!("the libvirt schemas are missing: {text}"));
    }
    Some((out.status.success(), text))
}

fn assert_valid(xml: &str, what: &str) {
    if let Some((ok, text)) = validate(xml) {
        assert!(
            ok,
            "{what} does not validate:\n{text}\n--- document ---\n{xml}"
        );
    }
}

/// `out` is `input` with one contiguous run of text inserted; returns that run. Where the
/// run could sit at several offsets (it repeats the bytes around it), the one starting a line
/// is taken.
fn inserted_run<'a>(input: &str, out: &'a str) -> &'a str {
    assert!(out.len() > input.len(), "nothing was inserted");
    let d = out.len() - input.len();
    let prefix = input
        .bytes()
        .zip(out.bytes())
        .take_while(|(a, b)| a == b)
        .count();
    let suffix = input
        .bytes()
        .rev()
        .zip(out.bytes().rev())
        .take_while(|(a, b)| a == b)
        .count();
    assert!(
        prefix + suffix >= input.len(),
        "the edit changed more than one inserted run"
    );
    let lo = input.len().saturating_sub(suffix);
    let hi = prefix.min(input.len());
    let at = (lo..=hi)
        .find(|&p| p == 0 || out.as_bytes()[p - 1] == b'\n')
        .unwrap_or(hi);
    &out[at..at + d]
}

fn pair_at(slot: u8, rom: Option<&str>) -> Vec<HostdevSpec> {
    vec![
        HostdevSpec {
            source: GPU,
            guest: Some(PciAddr {
                domain: 0,
                bus: 0,
                slot,
                function: 0,
            }),
            multifunction: true,
            rom_file: rom.map(str::to_string),
        },
        HostdevSpec {
            source: AUDIO,
            guest: Some(PciAddr {
                domain: 0,
                bus: 0,
                slot,
                function: 1,
            }),
            multifunction: false,
            rom_file: None,
        },
    ]
}

/// A free slot on bus 0: slots 0-2 are the host bridge, the southbridge and VGA by convention.
fn free_slot(xml: &str) -> u8 {
    let used = used_guest_slots(xml, 0);
    (3u8..32)
        .find(|s| !used.contains(s))
        .expect("a free slot on bus 0")
}

#[test]
fn validator_accepts_twelve_corpus_domains_and_rejects_the_newer_one() {
    for (name, xml) in corpus_domains() {
        let Some((ok, text)) = validate(&xml) else {
            return;
        };
        assert_eq!(ok, name != SCHEMA_TOO_OLD, "{name}: {text}");
        if name == SCHEMA_TOO_OLD {
            assert_valid(
                &schema_compatible(&name, &xml),
                "the adjusted hostdev-vfio.xml",
            );
        }
    }
}

#[test]
fn corpus_add_two_hostdevs_then_remove() {
    for (name, input) in corpus_domains() {
        let slot = free_slot(&input);
        let before = hostdev_sources(&input);
        assert!(!before.contains(&GPU) && !before.contains(&AUDIO), "{name}");

        let specs = pair_at(slot, Some("/usr/share/vgabios/gpu.rom"));
        let out = add_hostdevs(&input, &specs).unwrap();
        let run = inserted_run(&input, &out);
        assert_eq!(run.matches("<hostdev ").count(), 2, "{name}: {run}");
        assert_eq!(run.matches("</hostdev>").count(), 2, "{name}: {run}");
        assert!(run.contains("multifunction='on'"), "{name}");
        assert!(
            run.contains("<rom file='/usr/share/vgabios/gpu.rom'/>"),
            "{name}"
        );
        let mut expect = before.clone();
        expect.extend([GPU, AUDIO]);
        assert_eq!(hostdev_sources(&out), expect, "{name}");
        let mut used = used_guest_slots(&input, 0);
        used.push(slot);
        used.sort();
        assert_eq!(used_guest_slots(&out, 0), used, "{name}");
        assert_eq!(domain_name(&out), domain_name(&input), "{name}");

        // Each new element sits on lines of its own, indented like the other devices.
        let devices_indent = input
            .lines()
            .find(|l| l.trim_start().starts_with("<emulator>"))
            .map(|l| &l[..l.len() - l.trim_start().len()])
            .unwrap();
        assert!(
            run.starts_with(&format!(
                "{devices_indent}<hostdev mode='subsystem' type='pci' managed='yes'>\n"
            )),
            "{name}: {run}"
        );
        assert!(
            run.ends_with(&format!("{devices_indent}</hostdev>\n")),
            "{name}: {run}"
        );

        let checked = add_hostdevs(&schema_compatible(&name, &input), &specs).unwrap();
        assert_valid(&checked, &format!("{name} with two hostdevs"));

        assert_eq!(
            add_hostdevs(&out, &specs).unwrap(),
            out,
            "{name}: second add"
        );
        assert_eq!(
            remove_hostdevs(&out, &[GPU, AUDIO]).unwrap(),
            input,
            "{name}"
        );
        assert_eq!(
            remove_hostdevs(&input, &[GPU, AUDIO]).unwrap(),
            input,
            "{name}"
        );
    }
}

#[test]
fn hostdev_output_form() {
    let (_, input) = corpus_domains()
        .into_iter()
        .find(|(n, _)| n == "kvm-features.xml")
        .unwrap();
    let out = add_hostdevs(&input, &pair_at(5, Some("/usr/share/vgabios/gpu.rom"))).unwrap();
    let run = inserted_run(&input, &out);
    assert_eq!(
        run,
        "    <hostdev mode='subsystem' type='pci' managed='yes'>
      <source>
        <address domain='0x0000' bus='0x0a' slot='0x00' function='0x0'/>
      </source>
      <rom file='/usr/share/vgabios/gpu.rom'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x05' function='0x0' multifunction='on'/>
    </hostdev>
    <hostdev mode='subsystem' type='pci' managed='yes'>
      <source>
        <address domain='0x0000' bus='0x0a' slot='0x00' function='0x1'/>
      </source>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x05' function='0x1'/>
    </hostdev>
"
    );
    // No guest address and no rom: just the source.
    let bare = HostdevSpec {
        source: PciAddr {
            domain: 0x21,
            bus: 0xde,
            slot: 0x1f,
            function: 7,
        },
        guest: None,
        multifunction: false,
        rom_file: None,
    };
    let out = add_hostdevs(&input, std::slice::from_ref(&bare)).unwrap();
    assert_eq!(
        inserted_run(&input, &out),
        "    <hostdev mode='subsystem' type='pci' managed='yes'>
      <source>
        <address domain='0x0021' bus='0xde' slot='0x1f' function='0x7'/>
      </source>
    </hostdev>
"
    );
    assert_valid(&out, "a hostdev without guest address");
    // A spec listed twice is added once.
    let twice = add_hostdevs(&input, &[bare.clone(), bare]).unwrap();
    assert_eq!(twice, out);
}

#[test]
fn corpus_sources_match_qemu_command_lines() {
    let dir = corpus().join("libvirt");
    for stem in [
        "hostdev-pci-address",
        "hostdev-vfio-multidomain",
        "hostdev-vfio",
    ] {
        let args = std::fs::read_to_string(dir.join(format!("{stem}.x86_64-latest.args"))).unwrap();
        let mut from_args: Vec<String> = args
            .split("\"host\":\"")
            .skip(1)
            .map(|s| s[..s.find('"').unwrap()].to_string())
            .collect();
        from_args.sort();
        let xml_path: PathBuf = [format!("{stem}.xml"), format!("{stem}.x86_64-latest.xml")]
            .iter()
            .map(|f| dir.join(f))
            .find(|p| p.is_file())
            .unwrap();
        let xml = std::fs::read_to_string(&xml_path).unwrap();
        let mut from_xml: Vec<String> = hostdev_sources(&xml)
            .iter()
            .map(|a| a.to_string())
            .collect();
        from_xml.sort();
        assert_eq!(from_xml, from_args, "{}", xml_path.display());
    }
}

#[test]
fn corpus_names_and_slots() {
    for (name, xml) in corpus_domains() {
        let line = xml
            .lines()
            .find(|l| l.trim_start().starts_with("<name>"))
            .unwrap();
        let expect = line
            .trim()
            .trim_start_matches("<name>")
            .trim_end_matches("</name>");
        assert_eq!(domain_name(&xml).as_deref(), Some(expect), "{name}");
        let pci = xml.matches("<hostdev mode='subsystem' type='pci'").count();
        assert_eq!(hostdev_sources(&xml).len(), pci, "{name}");
    }
    let xml = std::fs::read_to_string(corpus().join("libvirt/pci-rom.x86_64-latest.xml")).unwrap();
    assert_eq!(used_guest_slots(&xml, 0), vec![1, 2, 3, 4, 5, 6]);
    assert!(used_guest_slots(&xml, 1).is_empty());
    // The mdev hostdev has no PCI source; the unassigned one has no guest slot.
    let mdev =
        std::fs::read_to_string(corpus().join("libvirt/hostdev-mdev-precreated.xml")).unwrap();
    assert!(hostdev_sources(&mdev).is_empty());
    let un = std::fs::read_to_string(
        corpus().join("libvirt/hostdev-pci-address-unassigned.x86_64-latest.xml"),
    )
    .unwrap();
    assert_eq!(hostdev_sources(&un).len(), 4, "{un}");
    assert_eq!(used_guest_slots(&un, 0), vec![1, 2, 3, 4, 5], "{un}");
}

/// The byte range of the first `<features>...</features>` (the corpus has no tricks there).
fn features_range(xml: &str) -> Option<(usize, usize)> {
    let s = xml.find("<features>")?;
    let e = xml.find("</features>")? + "</features>".len();
    Some((s, e))
}

#[test]
fn corpus_hidden_features() {
    for (name, input) in corpus_domains() {
        let passthrough = input.contains("<hyperv mode='passthrough'/>");
        for vendor in [None, Some("1234567890ab")] {
            let what = format!("{name} with vendor {vendor:?}");
            let result = set_hidden_features(&input, vendor);
            if passthrough && vendor.is_some() {
                let err = result.unwrap_err();
                assert!(err.to_string().contains("passthrough"), "{what}: {err}");
                continue;
            }
            let out = result.unwrap();
            assert_eq!(
                set_hidden_features(&out, vendor).unwrap(),
                out,
                "{what}: twice"
            );
            assert!(out.contains("<hidden state='on'/>"), "{what}");
            if let Some(v) = vendor {
                assert!(out.contains(&format!("value='{v}'")), "{what}");
            }
            let checked = set_hidden_features(&schema_compatible(&name, &input), vendor).unwrap();
            assert_valid(&checked, &what);

            match features_range(&input) {
                Some((s, e)) => {
                    // Outside <features> nothing moves; inside, every other feature is kept.
                    let (os, oe) = features_range(&out).unwrap();
                    assert_eq!(&out[..os], &input[..s], "{what}");
                    assert_eq!(&out[oe..], &input[e..], "{what}");
                    let old = &input[s..e];
                    let new = &out[os..oe];
                    for line in old.lines() {
                        if line.contains("vendor_id") && vendor.is_some() {
                            continue;
                        }
                        assert!(new.contains(line), "{what}: lost {line:?}\n{new}");
                    }
                    assert!(new.matches("<kvm>").count() == 1, "{what}: {new}");
                }
                None => {
                    let run = inserted_run(&input, &out);
                    assert!(run.starts_with("  <features>\n"), "{what}: {run}");
                }
            }
        }
    }
}

#[test]
fn hidden_features_exact_edits() {
    let hv = std::fs::read_to_string(corpus().join("libvirt/hyperv.x86_64-latest.xml")).unwrap();
    // vendor_id present with another value: only the value changes; kvm is appended.
    let out = set_hidden_features(&hv, Some("NV43FIX")).unwrap();
    let expect = hv.replace("value='KVM Hv'", "value='NV43FIX'").replace(
        "  </features>",
        "    <kvm>\n      <hidden state='on'/>\n    </kvm>\n  </features>",
    );
    assert_eq!(out, expect);
    // Same value, no vendor asked: only kvm is added.
    let out = set_hidden_features(&hv, None).unwrap();
    assert_eq!(
        inserted_run(&hv, &out),
        "    <kvm>\n      <hidden state='on'/>\n    </kvm>\n"
    );
    let out = set_hidden_features(&hv, Some("KVM Hv")).unwrap();
    assert_eq!(
        inserted_run(&hv, &out),
        "    <kvm>\n      <hidden state='on'/>\n    </kvm>\n"
    );

    // kvm-features.xml already hides KVM.
    let kvm = std::fs::read_to_string(corpus().join("libvirt/kvm-features.xml")).unwrap();
    assert_eq!(set_hidden_features(&kvm, None).unwrap(), kvm);
    let out = set_hidden_features(&kvm, Some("abc")).unwrap();
    assert_eq!(
        inserted_run(&kvm, &out),
        "    <hyperv>\n      <vendor_id state='on' value='abc'/>\n    </hyperv>\n"
    );
    // hidden state='off' is switched on in place.
    let off = kvm.replace("<hidden state='on'/>", "<hidden state='off'/>");
    assert_eq!(set_hidden_features(&off, None).unwrap(), kvm);
}

#[test]
fn vendor_id_is_checked() {
    let kvm = std::fs::read_to_string(corpus().join("libvirt/kvm-features.xml")).unwrap();
    for bad in ["", "thirteen_chars", "a,b"] {
        let err = set_hidden_features(&kvm, Some(bad)).unwrap_err();
        assert!(err.to_string().contains("vendor_id"), "{bad}: {err}");
    }
    // Quotes and ampersands are escaped.
    let out = set_hidden_features(&kvm, Some("a'b&c")).unwrap();
    assert!(out.contains("value='a&apos;b&amp;c'"), "{out}");
    assert_valid(&out, "escaped vendor_id");
    assert_eq!(set_hidden_features(&out, Some("a'b&c")).unwrap(), out);
}

const MINIMAL_HEAD: &str = "<domain type='kvm'>
  <name>edge</name>
  <memory unit='KiB'>1048576</memory>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
  </os>
";

fn specs3() -> Vec<HostdevSpec> {
    pair_at(3, None)
}

/// Add, validate, add again, remove: the edit round-trips to the input.
fn round_trip(input: &str, what: &str) -> String {
    assert_valid(input, &format!("{what} (input)"));
    let out = add_hostdevs(input, &specs3()).unwrap();
    assert_valid(&out, what);
    assert_eq!(hostdev_sources(&out), vec![GPU, AUDIO], "{what}");
    assert_eq!(add_hostdevs(&out, &specs3()).unwrap(), out, "{what}");
    let back = remove_hostdevs(&out, &[GPU, AUDIO]).unwrap();
    assert!(hostdev_sources(&back).is_empty(), "{what}");
    back
}

#[test]
fn comment_holding_end_tags() {
    let input = format!(
        "{MINIMAL_HEAD}  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <!-- old GPU: <hostdev type='pci'><source><address bus='0x0a' slot='0' function='0'/></source></hostdev> </devices> -->
  </devices>
  <!-- </domain> -->
</domain>
"
    );
    assert!(hostdev_sources(&input).is_empty());
    let out = add_hostdevs(&input, &specs3()).unwrap();
    let run = inserted_run(&input, &out);
    assert!(out.find(run).unwrap() > input.find("-->").unwrap());
    assert_eq!(round_trip(&input, "comment"), input);
}

#[test]
fn attribute_with_angle_bracket_and_cdata() {
    let input = "<domain type='kvm'>
  <name>edge</name>
  <description><![CDATA[ </devices> <features> ]]></description>
  <metadata>
    <app:x xmlns:app=\"http://example.org/app\" note=\"a > b &amp; '&lt;/devices>' />\"/>
  </metadata>
  <memory unit='KiB'>1048576</memory>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
  </os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
  </devices>
</domain>
"
    .to_string();
    assert_eq!(round_trip(&input, "cdata"), input);
    let out = set_hidden_features(&input, Some("x")).unwrap();
    assert_valid(&out, "cdata features");
    let run = inserted_run(&input, &out);
    assert!(out.find(run).unwrap() > input.find("</os>").unwrap());
}

#[test]
fn self_closing_devices() {
    let input = format!("{MINIMAL_HEAD}  <devices/>\n</domain>\n");
    let back = round_trip(&input, "self-closing devices");
    assert_eq!(
        back,
        format!("{MINIMAL_HEAD}  <devices>\n  </devices>\n</domain>\n")
    );
    let out = add_hostdevs(&input, &specs3()).unwrap();
    assert!(
        out.contains("  <devices>\n    <hostdev mode='subsystem'"),
        "{out}"
    );
}

#[test]
fn devices_on_one_line() {
    let input = format!(
        "{MINIMAL_HEAD}  <devices><emulator>/usr/bin/qemu-system-x86_64</emulator></devices>\n</domain>\n"
    );
    let back = round_trip(&input, "one-line devices");
    assert_eq!(
        back,
        format!(
            "{MINIMAL_HEAD}  <devices><emulator>/usr/bin/qemu-system-x86_64</emulator>\n  </devices>\n</domain>\n"
        )
    );
}

#[test]
fn without_features() {
    let input = format!("{MINIMAL_HEAD}  <devices>\n  </devices>\n</domain>\n");
    let out = set_hidden_features(&input, Some("NVIDIA")).unwrap();
    assert_eq!(
        inserted_run(&input, &out),
        "  <features>
    <hyperv>
      <vendor_id state='on' value='NVIDIA'/>
    </hyperv>
    <kvm>
      <hidden state='on'/>
    </kvm>
  </features>
"
    );
    assert_valid(&out, "new features");
    assert_eq!(set_hidden_features(&out, Some("NVIDIA")).unwrap(), out);
    // Self-closing containers grow end tags.
    let sc = input.replace(
        "  </os>\n",
        "  </os>\n  <features>\n    <acpi/>\n    <hyperv/>\n    <kvm/>\n  </features>\n",
    );
    assert_valid(&sc, "self-closing hyperv and kvm");
    let out = set_hidden_features(&sc, Some("NVIDIA")).unwrap();
    assert_valid(&out, "filled hyperv and kvm");
    assert!(out.contains("    <acpi/>\n    <hyperv>\n      <vendor_id state='on' value='NVIDIA'/>\n    </hyperv>\n    <kvm>\n      <hidden state='on'/>\n    </kvm>\n"), "{out}");
    assert_eq!(set_hidden_features(&out, Some("NVIDIA")).unwrap(), out);
}

#[test]
fn tabs_and_crlf() {
    let input = format!("{MINIMAL_HEAD}  <devices>\n    <emulator>/usr/bin/qemu-system-x86_64</emulator>\n  </devices>\n</domain>\n")
        .replace("    ", "\t\t")
        .replace("  ", "\t");
    let out = add_hostdevs(&input, &specs3()).unwrap();
    let run = inserted_run(&input, &out);
    assert!(run.starts_with("\t\t<hostdev mode='subsystem' type='pci' managed='yes'>\n\t\t\t<source>\n\t\t\t\t<address "), "{run:?}");
    assert!(run.lines().all(|l| !l.starts_with(' ')), "{run:?}");
    assert_eq!(round_trip(&input, "tabs"), input);
    let out = set_hidden_features(&input, None).unwrap();
    assert_eq!(
        inserted_run(&input, &out),
        "\t<features>\n\t\t<kvm>\n\t\t\t<hidden state='on'/>\n\t\t</kvm>\n\t</features>\n"
    );
    assert_valid(&out, "tabs features");

    let crlf = input.replace('\n', "\r\n");
    let out = add_hostdevs(&crlf, &specs3()).unwrap();
    let run = inserted_run(&crlf, &out);
    assert_eq!(
        run.matches('\n').count(),
        run.matches("\r\n").count(),
        "{run:?}"
    );
    assert_eq!(round_trip(&crlf, "crlf"), crlf);
}

#[test]
fn rom_path_is_escaped() {
    let input = format!("{MINIMAL_HEAD}  <devices>\n  </devices>\n</domain>\n");
    let out = add_hostdevs(&input, &pair_at(4, Some("/roms/it's & <x>.rom"))).unwrap();
    assert!(
        out.contains("<rom file='/roms/it&apos;s &amp; &lt;x&gt;.rom'/>"),
        "{out}"
    );
    assert_valid(&out, "escaped rom path");
}

#[test]
fn removes_only_the_named_sources() {
    let xml = std::fs::read_to_string(corpus().join("libvirt/hostdev-vfio.xml")).unwrap();
    let two = PciAddr {
        domain: 0,
        bus: 6,
        slot: 0x12,
        function: 2,
    };
    let out = remove_hostdevs(&xml, &[two]).unwrap();
    assert_eq!(hostdev_sources(&out).len(), hostdev_sources(&xml).len() - 1);
    assert!(!hostdev_sources(&out).contains(&two));
    // Exactly the element's lines went away.
    let start = xml.find("function='0x2'").unwrap();
    let ls = xml[..start].rfind("    <hostdev ").unwrap();
    let le = xml[start..].find("</hostdev>\n").unwrap() + start + "</hostdev>\n".len();
    assert_eq!(out, format!("{}{}", &xml[..ls], &xml[le..]));
}

#[test]
fn errors_name_the_place() {
    let specs = specs3();
    let err = add_hostdevs("<domain>\n  <devices>\n  </device>\n</domain>", &specs).unwrap_err();
    assert!(err.to_string().starts_with("line 3 (byte 23)"), "{err}");
    let err = add_hostdevs("<domain>\n  <name a='x>\n</domain>", &specs).unwrap_err();
    assert!(err.to_string().contains("line 2"), "{err}");
    let err = add_hostdevs("<network/>", &specs).unwrap_err();
    assert!(err.to_string().contains("<domain>"), "{err}");
    let err = add_hostdevs("<domain><name>x</name></domain>", &specs).unwrap_err();
    assert!(err.to_string().contains("<devices>"), "{err}");
    let err = remove_hostdevs("<domain><!-- open </domain>", &[GPU]).unwrap_err();
    assert!(err.to_string().contains("-->"), "{err}");
    let err = set_hidden_features("<domain><devices></domain>", None).unwrap_err();
    assert!(err.to_string().contains("</devices>"), "{err}");
    assert_eq!(domain_name("<domain><name>x</domain>"), None);
    assert!(hostdev_sources("not xml").is_empty());
    assert!(used_guest_slots("", 0).is_empty());
}

/// Intel VMD puts the devices behind it in PCI domains above 0xffff (`10000:e1:00.0`).
/// libvirt's schema types `domain` as `pciDomain` = uint32 (basictypes.rng), so the address is
/// carried whole: truncated to 16 bits it would name `0000:e1:00.0`, another device.
#[test]
fn vmd_domains_are_carried_whole() {
    let xml = std::fs::read_to_string(corpus().join("libvirt/hostdev-pci-address.xml")).unwrap();
    let vmd = PciAddr {
        domain: 0x1_0000,
        bus: 0xe1,
        slot: 0,
        function: 0,
    };
    let slot = free_slot(&xml);
    let spec = HostdevSpec {
        source: vmd,
        guest: Some(PciAddr {
            domain: 0,
            bus: 0,
            slot,
            function: 0,
        }),
        multifunction: false,
        rom_file: None,
    };
    let out = add_hostdevs(&xml, &[spec]).unwrap();
    assert!(
        inserted_run(&xml, &out).contains("domain='0x10000' bus='0xe1'"),
        "{out}"
    );
    assert!(hostdev_sources(&out).contains(&vmd));
    let short = PciAddr { domain: 0, ..vmd };
    assert!(!hostdev_sources(&out).contains(&short));
    assert_valid(&out, "a VMD domain");
    // Removing the 16-bit look-alike leaves the VMD device alone.
    assert_eq!(remove_hostdevs(&out, &[short]).unwrap(), out);
    assert_eq!(remove_hostdevs(&out, &[vmd]).unwrap(), xml);
}

// ---------------------------------------------------------------------------------------------
// Hostile but valid XML: what a real parser reads, and what the edit must leave alone.
// ---------------------------------------------------------------------------------------------

const MINIMAL_DEVICES: &str = "  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
  </devices>
</domain>
";

/// A DOCTYPE whose internal subset holds a comment with `]` and `'`: the subset ends at the
/// `]>` after it, not inside the comment. (The hand scanner counted brackets and quotes in
/// comments too and refused the document.)
#[test]
fn doctype_with_a_comment_in_its_internal_subset() {
    let input = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>
<!DOCTYPE domain [
  <!-- the guest's ] bracket and a > sign -->
]>
<?passthru keep this?>
{MINIMAL_HEAD}{MINIMAL_DEVICES}<!-- after the root: </domain> -->
"
    );
    assert_eq!(domain_name(&input).as_deref(), Some("edge"));
    assert_eq!(round_trip(&input, "DOCTYPE with a subset"), input);
    let out = set_hidden_features(&input, None).unwrap();
    assert_valid(&out, "DOCTYPE with features");
}

/// Entities declared in the DOCTYPE are expanded where XML expands them: in text and in
/// attribute values. libxml2 (the validator, and libvirt) reads `<name>&vm;</name>` as
/// `win11` and `bus='&gpubus;'` as `0x0a`; the hand scanner left both unexpanded, so it saw
/// neither the name nor the GPU.
#[test]
fn entities_declared_in_the_doctype_are_expanded() {
    let hostdev = "    <hostdev mode='subsystem' type='pci' managed='yes'>
      <source>
        <address domain='0x0000' bus='&gpubus;' slot='0x00' function='0x0'/>
      </source>
    </hostdev>
";
    let input = format!(
        "<!DOCTYPE domain [
  <!ENTITY vm \"win11\">
  <!ENTITY gpubus \"0x0a\">
]>
{}  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
{hostdev}  </devices>
</domain>
",
        MINIMAL_HEAD.replace("<name>edge</name>", "<name>&vm;</name>")
    );
    assert_valid(&input, "entities (input)");
    assert_eq!(domain_name(&input).as_deref(), Some("win11"));
    assert_eq!(hostdev_sources(&input), vec![GPU]);
    // The GPU is there: only the audio function is added.
    let out = add_hostdevs(&input, &specs3()).unwrap();
    assert_eq!(inserted_run(&input, &out).matches("<hostdev ").count(), 1);
    assert_eq!(hostdev_sources(&out), vec![GPU, AUDIO]);
    assert_valid(&out, "entities with audio added");
    // Removing the GPU removes exactly its lines, entity reference and all.
    assert_eq!(
        remove_hostdevs(&input, &[GPU]).unwrap(),
        input.replace(hostdev, "")
    );
}

/// An element that an entity expands to has no bytes of its own in the domain (they are in
/// the DOCTYPE). It is read (XML says it is there), but no edit is spliced at offsets that
/// do not hold it: the edit is refused, naming the element that holds the reference. The hand
/// scanner saw no hostdev, so it reported none and would have added a second one.
#[test]
fn elements_from_entities_are_read_but_not_edited() {
    let input = format!(
        "<!DOCTYPE domain [
  <!ENTITY gpu \"<hostdev mode='subsystem' type='pci' managed='yes'><source><address domain='0x0000' bus='0x0a' slot='0x00' function='0x0'/></source></hostdev>\">
]>
{MINIMAL_HEAD}  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    &gpu;
  </devices>
</domain>
"
    );
    assert_valid(&input, "hostdev from an entity");
    assert_eq!(hostdev_sources(&input), vec![GPU]);
    let line = 1 + input[..input.find("  <devices>").unwrap()]
        .matches('\n')
        .count();
    let errors = [
        add_hostdevs(&input, &specs3()).unwrap_err(),
        remove_hostdevs(&input, &[GPU]).unwrap_err(),
        set_hidden_features(&input, None).unwrap_err(),
    ];
    for err in errors {
        let msg = err.to_string();
        assert!(msg.starts_with(&format!("line {line} ")), "{msg}");
        assert!(
            msg.contains("<hostdev> in <devices> comes from an entity"),
            "{msg}"
        );
    }
}

/// Quoting, character references and attributes over several lines, as libvirt users write
/// them by hand. The hand scanner read these too (a guard for the parser's ranges), except
/// for the literal tab inside `value`, which XML reads as a space.
#[test]
fn quotes_references_and_attributes_over_lines() {
    let input = format!(
        "{}  <features>
    <hyperv mode=\"custom\">
      <vendor_id state=\"on\"
                 value='KVM\tHv &amp; co'/>
    </hyperv>
  </features>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <hostdev mode=\"subsystem\" type=\"pci\"
             managed='yes'>
      <source>
        <address domain=\"0x0000\"
                 bus='&#x30;x0a' slot=\"0x00\" function='0&#x78;1'/>
      </source>
      <address type = 'pci' domain='0x0000' bus='0x00' slot=\"0x07\" function='0x0'/>
    </hostdev>
  </devices>
</domain>
",
        MINIMAL_HEAD
    );
    assert_valid(&input, "quoting (input)");
    assert_eq!(hostdev_sources(&input), vec![AUDIO]);
    assert_eq!(used_guest_slots(&input, 0), vec![7]);
    // XML reads the value as "KVM Hv & co" (a literal tab in an attribute is a space).
    let hv = set_hidden_features(&input, Some("KVM Hv & co")).unwrap();
    assert_eq!(
        inserted_run(&input, &hv),
        "    <kvm>\n      <hidden state='on'/>\n    </kvm>\n"
    );
    // A new value replaces only the bytes between the quotes, escaped.
    let out = set_hidden_features(&input, Some("a<b")).unwrap();
    let expect = hv.replace("KVM\tHv &amp; co", "a&lt;b");
    assert_eq!(out, expect);
    assert_valid(&out, "quoting with features");
    // The existing hostdev is removed with all its lines.
    let out = remove_hostdevs(&input, &[AUDIO]).unwrap();
    let s = input.find("    <hostdev ").unwrap();
    let e = input.find("</hostdev>\n").unwrap() + "</hostdev>\n".len();
    assert_eq!(out, format!("{}{}", &input[..s], &input[e..]));
}

/// Namespaced metadata holding look-alikes of libvirt's elements, and an element in a
/// foreign default namespace. libvirt finds its devices by XPath (`./devices/hostdev`), which
/// matches names in no namespace only; so does passthru now. The hand scanner compared names
/// as written and counted `<hostdev xmlns='urn:other'>` as a hostdev.
#[test]
fn namespaced_elements_are_not_libvirts() {
    let metadata = "  <metadata>
    <app:devices xmlns:app='urn:example:app'>
      <app:hostdev type='pci'><app:source><app:address bus='0x0a' slot='0' function='0'/></app:source></app:hostdev>
    </app:devices>
    <x:y xmlns:x=\"urn:example:x\" note='&lt;/devices>'/>
  </metadata>
";
    let input = format!(
        "{}{metadata}{MINIMAL_DEVICES}",
        MINIMAL_HEAD.replace(
            "  <memory",
            "  <description><![CDATA[<hostdev type='pci'> ]]]]></description>\n  <memory"
        )
    );
    assert!(hostdev_sources(&input).is_empty());
    assert_eq!(round_trip(&input, "namespaced metadata"), input);

    let foreign = input.replace(
        "    <emulator>",
        "    <hostdev xmlns='urn:other' type='pci'><source><address bus='0x0a' slot='0' function='1'/></source></hostdev>\n    <emulator>",
    );
    assert!(hostdev_sources(&foreign).is_empty());
    let out = add_hostdevs(&foreign, &specs3()).unwrap();
    assert_eq!(hostdev_sources(&out), vec![GPU, AUDIO]);
    assert_eq!(remove_hostdevs(&out, &[GPU, AUDIO]).unwrap(), foreign);
}

/// Documents that are not XML, which libxml2 (the validator here, and libvirt) refuses and
/// the hand scanner accepted: each edit is refused, naming the line. With a duplicated `bus`
/// the hand scanner took the first one and would have removed another device.
#[test]
fn malformed_xml_is_refused_naming_the_line() {
    let body =
        |devices: &str| format!("{MINIMAL_HEAD}  <devices>\n{devices}  </devices>\n</domain>\n");
    let cases = [
        (
            "duplicated attribute",
            body("    <hostdev mode='subsystem' type='pci'><source><address bus='0x0a' bus='0x0b' slot='0' function='0'/></source></hostdev>\n"),
            8,
        ),
        ("undeclared prefix", body("    <x:y/>\n"), 8),
        ("bare ampersand", body("    <emulator>/usr/bin/a&b</emulator>\n"), 8),
        ("double hyphen in a comment", body("    <!-- a -- b -->\n"), 8),
    ];
    for (what, xml, line) in cases {
        if let Some((ok, text)) = validate(&xml) {
            assert!(!ok, "{what}: libxml2 accepts it: {text}");
        }
        let errors = [
            add_hostdevs(&xml, &specs3()).unwrap_err(),
            remove_hostdevs(&xml, &[GPU]).unwrap_err(),
            set_hidden_features(&xml, None).unwrap_err(),
        ];
        for err in errors {
            let msg = err.to_string();
            assert!(msg.starts_with(&format!("line {line} ")), "{what}: {msg}");
        }
        assert!(hostdev_sources(&xml).is_empty(), "{what}");
    }
}

// ---------------------------------------------------------------------------------------------
// Property: generated domains (corpus bases with comments, blank lines, quoting, attributes
// over lines, metadata and a prolog added) edit without touching any byte outside the edit.
// ---------------------------------------------------------------------------------------------

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Pieces of comment text: markup that a scanner might take for real, quotes, entities.
/// None holds '-' next to another '-', and none ends in '-', so no comment holds `--`.
const COMMENT_BITS: &[&str] = &[
    " old GPU: <hostdev mode='subsystem' type='pci'><source><address bus='0x0a' slot='0' function='0'/></source></hostdev> ",
    "</devices>",
    "</domain>",
    "<devices>",
    "<![CDATA[",
    "]]>",
    "'",
    "\"",
    "&amp;",
    "&",
    "<",
    ">",
    " ",
    "\n",
    "\t",
    "x",
    "- ",
    "é",
];

#[derive(Debug, Clone)]
enum Line {
    Comment(String),
    /// Spaces and tabs only.
    Blank(String),
    Pi,
}

#[derive(Debug, Clone)]
struct Generated {
    base: usize,
    /// 0: none; 1: XML declaration; 2: and a DOCTYPE; 3: and an internal subset and a PI.
    prolog: u8,
    /// (which line boundary, indent, line).
    lines: Vec<(usize, String, Line)>,
    /// (which line end after '>', comment text or `None` for trailing blanks).
    trailing: Vec<(usize, Option<String>)>,
    /// Per `='...'` value in turn: switch to double quotes.
    requote: Vec<bool>,
    /// (which space between attributes, the whitespace that replaces it).
    splits: Vec<(usize, String)>,
    metadata: bool,
    description: bool,
}

fn comment_text() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(COMMENT_BITS), 0..6).prop_map(|v| v.concat())
}

fn indent() -> impl Strategy<Value = String> {
    prop::sample::select(&["", "  ", "    ", "\t", " \t "][..]).prop_map(str::to_string)
}

fn generated(bases: usize) -> impl Strategy<Value = Generated> {
    let line = prop_oneof![
        3 => comment_text().prop_map(Line::Comment),
        1 => indent().prop_map(Line::Blank),
        1 => Just(Line::Pi),
    ];
    let split = prop::sample::select(&["\n      ", "\n\t\t", "  ", "\t", "\r\n  "][..]);
    (
        0..bases,
        0u8..4,
        prop::collection::vec((any::<usize>(), indent(), line), 0..6),
        prop::collection::vec((any::<usize>(), prop::option::of(comment_text())), 0..3),
        prop::collection::vec(any::<bool>(), 0..40),
        prop::collection::vec((any::<usize>(), split), 0..4),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(base, prolog, lines, trailing, requote, splits, metadata, description)| Generated {
                base,
                prolog,
                lines,
                trailing,
                requote,
                splits: splits
                    .into_iter()
                    .map(|(k, s)| (k, s.to_string()))
                    .collect(),
                metadata,
                description,
            },
        )
}

const METADATA: &str = "  <metadata>
    <app:vm xmlns:app='urn:example:app' note=\"a &amp; b &lt;/devices>\">
      <app:hostdev type='pci'><app:source><app:address bus='0x0a' slot='0' function='0'/></app:source></app:hostdev>
      text <![CDATA[ </devices> ]]> &#x3c;/domain&gt;
    </app:vm>
    <x:devices xmlns:x=\"urn:example:x\"/>
  </metadata>
";

const DESCRIPTION: &str =
    "  <description><![CDATA[<devices><hostdev type='pci'/></devices>]]> &amp; more</description>\n";

impl Generated {
    /// The generated document, and where its `</devices>` end tag starts.
    fn render(&self, base: &str) -> (String, usize) {
        // (offset in base, bytes of base replaced, new text); applied in offset order.
        let mut edits: Vec<(usize, usize, String)> = Vec::new();
        let b = base.as_bytes();
        let boundaries: Vec<usize> = std::iter::once(0)
            .chain((1..b.len()).filter(|&i| b[i - 1] == b'\n' && b[i - 2] == b'>'))
            .collect();
        let line_ends: Vec<usize> = (1..b.len())
            .filter(|&i| b[i] == b'\n' && b[i - 1] == b'>')
            .collect();
        for (k, ind, line) in &self.lines {
            let at = boundaries[k % boundaries.len()];
            let text = match line {
                Line::Comment(c) => format!("{ind}<!--{c}-->\n"),
                Line::Blank(ws) => format!("{ws}\n"),
                Line::Pi => format!("{ind}<?passthru keep ?>\n"),
            };
            edits.push((at, 0, text));
        }
        for (k, c) in &self.trailing {
            let at = line_ends[k % line_ends.len()];
            let text = match c {
                Some(c) => format!(" <!--{c}-->"),
                None => "  \t".to_string(),
            };
            edits.push((at, 0, text));
        }
        // Attribute values: `='v'` (the corpus quotes with ' and has no " in values).
        let values: Vec<(usize, usize)> = base
            .match_indices("='")
            .map(|(i, _)| {
                let open = i + 1;
                let close = open + 1 + base[open + 1..].find('\'').unwrap();
                (open, close)
            })
            .collect();
        for (n, &(open, close)) in values.iter().enumerate() {
            if self.requote.get(n).copied().unwrap_or(false) {
                edits.push((open, 1, "\"".into()));
                edits.push((close, 1, "\"".into()));
            }
        }
        // The space between two attributes: a closing quote, a space, a name.
        let gaps: Vec<usize> = values
            .iter()
            .map(|&(_, close)| close + 1)
            .filter(|&i| b[i] == b' ' && b[i + 1].is_ascii_alphabetic())
            .collect();
        let mut split_at = BTreeSet::new();
        for (k, ws) in &self.splits {
            let at = gaps[k % gaps.len()];
            if split_at.insert(at) {
                edits.push((at, 1, ws.clone()));
            }
        }
        let after_name = base.find("</name>\n").unwrap() + "</name>\n".len();
        if self.metadata && !base.contains("<metadata") {
            edits.push((after_name, 0, METADATA.into()));
        }
        if self.description && !base.contains("<description") {
            edits.push((after_name, 0, DESCRIPTION.into()));
        }
        edits.sort_by_key(|e| e.0);

        let mut prolog = String::new();
        if self.prolog >= 1 {
            prolog.push_str("<?xml version='1.0' encoding='UTF-8'?>\n");
        }
        match self.prolog {
            2 => prolog.push_str("<!DOCTYPE domain>\n"),
            3 => prolog.push_str(
                "<!DOCTYPE domain [\n  <!-- a ']' and a quote: ' -->\n  <!ENTITY x \"]>\">\n]>\n<?passthru prolog?>\n",
            ),
            _ => {}
        }
        let devices_end = base.find("</devices>").unwrap();
        let mut out = prolog.clone();
        let mut shift = prolog.len() as isize;
        let mut pos = 0;
        for (at, del, text) in &edits {
            out.push_str(&base[pos..*at]);
            out.push_str(text);
            pos = at + del;
            if *at < devices_end {
                shift += text.len() as isize - *del as isize;
            }
        }
        out.push_str(&base[pos..]);
        (out, (devices_end as isize + shift) as usize)
    }
}

#[test]
fn generated_domains_edit_only_the_edited_bytes() {
    let bases: Vec<(String, String)> = corpus_domains()
        .into_iter()
        .map(|(name, xml)| {
            let xml = schema_compatible(&name, &xml);
            assert_eq!(xml.matches("</devices>").count(), 1, "{name}");
            (name, xml)
        })
        .collect();
    let cases = AtomicUsize::new(0);
    let validated = AtomicUsize::new(0);
    let started = std::time::Instant::now();
    let mut runner = TestRunner::new(Config {
        cases: 200,
        rng_seed: RngSeed::Fixed(0x6c69_6276_6972_7478),
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&generated(bases.len()), |g| {
        let n = cases.fetch_add(1, Ordering::Relaxed);
        let (name, base) = &bases[g.base];
        let (input, devices_end) = g.render(base);
        prop_assert!(
            input[devices_end..].starts_with("</devices>"),
            "{name}: the generator lost </devices>\n{input}"
        );
        // What the comments, quoting and metadata hide from libvirt stays hidden.
        prop_assert_eq!(hostdev_sources(&input), hostdev_sources(base), "{}", input);
        prop_assert_eq!(domain_name(&input), domain_name(base), "{}", input);
        prop_assert_eq!(
            used_guest_slots(&input, 0),
            used_guest_slots(base, 0),
            "{}",
            input
        );

        let specs = pair_at(free_slot(base), Some("/roms/it's & <gpu>.rom"));
        let out = add_hostdevs(&input, &specs)
            .map_err(|e| TestCaseError::fail(format!("{name}: {e}\n{input}")))?;
        // One run of new lines, at the start of the line that holds </devices>; every byte
        // before and after it is the input's.
        let at = input[..devices_end].rfind('\n').map_or(0, |k| k + 1);
        let d = out.len() - input.len();
        prop_assert_eq!(&out[..at], &input[..at], "{}", out);
        prop_assert_eq!(&out[at + d..], &input[at..], "{}", out);
        let run = &out[at..at + d];
        prop_assert_eq!(run.matches("<hostdev ").count(), 2, "{}", run);
        let mut expect = hostdev_sources(base);
        expect.extend([GPU, AUDIO]);
        prop_assert_eq!(hostdev_sources(&out), expect);

        prop_assert_eq!(remove_hostdevs(&out, &[GPU, AUDIO]).unwrap(), input.clone());

        // The validator costs a process per run: a sample of one case in five, input and
        // output both (the input shows the generator writes domains libvirt accepts).
        if n.is_multiple_of(5) {
            validated.fetch_add(1, Ordering::Relaxed);
            for (what, doc) in [("input", &input), ("output", &out)] {
                if let Some((ok, text)) = validate(doc) {
                    prop_assert!(ok, "{} {}: {}\n{}", name, what, text, doc);
                }
            }
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    eprintln!(
        "{} generated domains, {} validated (input and output), in {:.2?}",
        cases.load(Ordering::Relaxed),
        validated.load(Ordering::Relaxed),
        started.elapsed()
    );
}

/// libvirt's own mdev test domain, and an mdev `<hostdev>` added to a PCI one: the UUID read
/// back, the form libvirt's test uses, the schema's approval.
#[test]
fn mdev_hostdevs_read_add_and_validate() {
    let dir = corpus().join("libvirt");
    let pre = std::fs::read_to_string(dir.join("hostdev-mdev-precreated.xml")).unwrap();
    assert_eq!(
        mdev_hostdev_uuids(&pre),
        ["53764d0e-85a0-42b4-af5c-2046b460b1dc"]
    );
    assert_eq!(
        add_mdev_hostdev(&pre, "53764D0E-85A0-42B4-AF5C-2046B460B1DC").unwrap(),
        pre,
        "already there"
    );
    let pci = std::fs::read_to_string(dir.join("hostdev-pci-address.xml")).unwrap();
    let uuid = "5f0c7a7e-3c1d-4b6e-9a2f-0e1d2c3b4a59";
    let out = add_mdev_hostdev(&pci, uuid).unwrap();
    assert_eq!(
        inserted_run(&pci, &out),
        format!("    <hostdev mode='subsystem' type='mdev' model='vfio-pci'>\n      <source>\n        <address uuid='{uuid}'/>\n      </source>\n    </hostdev>\n")
    );
    assert_eq!(mdev_hostdev_uuids(&out), [uuid]);
    assert_eq!(hostdev_sources(&out).len(), 1, "the PCI hostdev stays");
    assert_valid(&out, "an mdev hostdev added");
    for bad in [
        "",
        "5f0c7a7e",
        "5f0c7a7e-3c1d-4b6e-9a2f-0e1d2c3b4a5'",
        "zf0c7a7e-3c1d-4b6e-9a2f-0e1d2c3b4a59",
    ] {
        assert!(add_mdev_hostdev(&pci, bad).is_err(), "{bad:?}");
    }
}

fn host_with_domains(name: &str, domains: &[(&str, String)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    passthru_testkit::build_named(name, dir.path()).unwrap();
    let q = dir.path().join("etc/libvirt/qemu");
    std::fs::create_dir_all(&q).unwrap();
    for (n, x) in domains {
        std::fs::write(q.join(format!("{n}.xml")), x).unwrap();
    }
    dir
}

fn domain_plan(
    root: &std::path::Path,
    req: &passthru::plan::attach::LibvirtAttachRequest,
) -> Result<String, String> {
    let snap = check_snapshot(root);
    let hr = passthru::host::HostRoot::new(root).unwrap();
    let files = passthru::host::RootFiles::new(&hr);
    let plan = passthru::plan::attach::plan_libvirt_attach(&snap, &files, req)
        .map_err(|e| e.to_string())?;
    let path = format!("etc/libvirt/qemu/{}.xml", req.domain);
    let e = plan
        .edits
        .iter()
        .find(|e| e.path == path)
        .ok_or("no edit")?;
    Ok(String::from_utf8(e.after.clone().unwrap()).unwrap())
}

#[test]
fn libvirt_attach_of_a_vf_by_address_and_of_an_mdev_by_uuid() {
    use passthru::plan::attach::LibvirtAttachRequest;
    use passthru::plan::attach_shared::VfChoice;
    let dir = corpus().join("libvirt");
    let base = std::fs::read_to_string(dir.join("hostdev-pci-address.xml")).unwrap();
    // Domain "other" has VF 00:02.1: auto picks 00:02.2.
    let vf1 = PciAddr {
        domain: 0,
        bus: 0,
        slot: 2,
        function: 1,
    };
    let other = add_hostdevs(
        &base,
        &[HostdevSpec {
            source: vf1,
            guest: None,
            multifunction: false,
            rom_file: None,
        }],
    )
    .unwrap();
    let h = host_with_domains(
        "intel-adl-sriov",
        &[("desk", base.clone()), ("other", other)],
    );
    let req = LibvirtAttachRequest {
        domain: "desk".into(),
        gpu: "00:02.0".into(),
        vf: Some(VfChoice::Auto),
        ..Default::default()
    };
    let out = domain_plan(h.path(), &req).unwrap();
    let vf2 = PciAddr {
        domain: 0,
        bus: 0,
        slot: 2,
        function: 2,
    };
    assert_eq!(
        hostdev_sources(&out),
        [
            PciAddr {
                domain: 0,
                bus: 6,
                slot: 0x12,
                function: 5
            },
            vf2
        ]
    );
    assert_valid(&out, "a VF attached");
    let taken = LibvirtAttachRequest {
        vf: Some(VfChoice::Index(0)),
        ..req.clone()
    };
    let err = domain_plan(h.path(), &taken).unwrap_err();
    assert!(
        err.contains("VF 0000:00:02.1 is already used by etc/libvirt/qemu/other.xml"),
        "{err}"
    );

    // The P40's live nvidia-47 instance.
    let h = host_with_domains("nvidia-vgpu-mdev", &[("desk", base.clone())]);
    let req = LibvirtAttachRequest {
        domain: "desk".into(),
        gpu: "03:00.0".into(),
        mdev: Some("nvidia-47".into()),
        ..Default::default()
    };
    let out = domain_plan(h.path(), &req).unwrap();
    assert_eq!(
        mdev_hostdev_uuids(&out),
        ["5f0c7a7e-3c1d-4b6e-9a2f-0e1d2c3b4a59"]
    );
    assert_valid(&out, "an mdev attached");
    // Another domain has it: none is free, and the message says how to make one.
    let h = host_with_domains(
        "nvidia-vgpu-mdev",
        &[("desk", base.clone()), ("other", out)],
    );
    let err = domain_plan(h.path(), &req).unwrap_err();
    assert!(
        err.contains("passthru share mdev 0000:03:00.0 --type nvidia-47 --count 1 --now"),
        "{err}"
    );
    let none = LibvirtAttachRequest {
        mdev: Some("nvidia-46".into()),
        ..req.clone()
    };
    let err = domain_plan(h.path(), &none).unwrap_err();
    assert!(err.contains("no nvidia-46 instance"), "{err}");

    // A virtual parent (the kernel's sample mtty driver) by its name: its live instance.
    let h = host_with_domains("mtty-sample", &[("desk", base.clone())]);
    let req = LibvirtAttachRequest {
        domain: "desk".into(),
        gpu: "mtty".into(),
        mdev: Some("mtty-1".into()),
        ..Default::default()
    };
    let out = domain_plan(h.path(), &req).unwrap();
    assert_eq!(
        mdev_hostdev_uuids(&out),
        ["83b8f4f2-509f-482f-bc1e-e6bfe0fa1001"]
    );
    assert_valid(&out, "an mdev of a virtual parent attached");
    let none = LibvirtAttachRequest {
        mdev: Some("mtty-2".into()),
        ..req.clone()
    };
    let err = domain_plan(h.path(), &none).unwrap_err();
    assert!(
        err.contains("passthru share mdev mtty --type mtty-2 --count 1 --now"),
        "{err}"
    );
    // The fix works: run it, lay out the instance the kernel makes, and attach goes through.
    let root = h.path();
    let fix = passthru_fixed(
        root,
        &[
            "share", "mdev", "mtty", "--type", "mtty-2", "--count", "1", "--now", "--yes",
        ],
    );
    assert!(
        fix.status.success(),
        "{}",
        String::from_utf8_lossy(&fix.stderr)
    );
    let rule =
        std::fs::read_to_string(root.join("etc/udev/rules.d/61-passthru-mdev-mtty-mtty-2.rules"))
            .unwrap();
    let uuid = rule
        .trim_end()
        .rsplit_once("=\"")
        .unwrap()
        .1
        .trim_end_matches('"')
        .to_string();
    let dev = root.join("sys/devices/virtual/mtty/mtty").join(&uuid);
    std::fs::create_dir_all(&dev).unwrap();
    std::os::unix::fs::symlink("../mdev_supported_types/mtty-2", dev.join("mdev_type")).unwrap();
    std::os::unix::fs::symlink(
        format!("../../../devices/virtual/mtty/mtty/{uuid}"),
        root.join("sys/bus/mdev/devices").join(&uuid),
    )
    .unwrap();
    let out = domain_plan(root, &none).unwrap();
    assert_eq!(mdev_hostdev_uuids(&out), [uuid.as_str()]);
    assert_valid(&out, "the instance share mdev made, attached");
}
