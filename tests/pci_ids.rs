//! The name lookups against Debian 12's real pci.ids (the corpus copy): every vendor, device
//! and class line the file has must be found by the binary search, with the name a plain
//! line-by-line reading of the file gives.

mod common;

use passthru::pciids::PciIds;

#[test]
fn every_vendor_device_and_class_line_is_found() {
    let path = common::pci_ids();
    let db = PciIds::load(&path).unwrap();
    let text = String::from_utf8(std::fs::read(&path).unwrap()).unwrap();
    let (mut vendors, mut devices, mut classes) = (0, 0, 0);
    let mut vendor: Option<u16> = None;
    let mut class: Option<u8> = None;
    let mut in_vendor = 0;
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("C ") {
            let c = u8::from_str_radix(&rest[..2], 16).unwrap();
            class = Some(c);
            vendor = None;
            assert_eq!(
                db.class_name(c, 0xee).as_deref(),
                Some(rest[2..].trim()),
                "class {c:02x}"
            );
            classes += 1;
        } else if let Some(rest) = line.strip_prefix("\t\t") {
            let _ = rest; // subsystems and prog-ifs are checked through their parents
        } else if let Some(rest) = line.strip_prefix('\t') {
            let id = &rest[..rest.find(' ').unwrap()];
            let name = rest[id.len()..].trim();
            if let Some(v) = vendor {
                // A device lookup scans its vendor's block; checking every 7th line (and all
                // of small vendors) keeps this test fast in a debug build.
                let d = u16::from_str_radix(id, 16).unwrap();
                if in_vendor < 8 || devices % 7 == 0 {
                    assert_eq!(
                        db.device_name(v, d).as_deref(),
                        Some(name),
                        "{v:04x}:{d:04x}"
                    );
                }
                devices += 1;
                in_vendor += 1;
            } else if let Some(c) = class {
                let s = u8::from_str_radix(id, 16).unwrap();
                assert_eq!(
                    db.class_name(c, s).as_deref(),
                    Some(name),
                    "class {c:02x}{s:02x}"
                );
            }
        } else {
            let v = u16::from_str_radix(&line[..4], 16).unwrap();
            assert_eq!(
                db.vendor_name(v).as_deref(),
                Some(line[4..].trim()),
                "vendor {v:04x}"
            );
            vendor = Some(v);
            vendors += 1;
            in_vendor = 0;
        }
    }
    // The counts SOURCES.md gives for this file.
    assert_eq!((vendors, devices, classes), (2325, 17616, 22));
}

#[test]
fn ids_not_in_the_file_are_not_found() {
    let db = PciIds::load(&common::pci_ids()).unwrap();
    assert_eq!(db.vendor_name(0x0002), None);
    assert_eq!(
        db.device_name(0x10de, 0x2b85),
        None,
        "RTX 5090 is newer than Debian 12's file"
    );
    assert_eq!(db.device_name(0xfffe, 0x0001), None);
    assert_eq!(db.class_name(0x14, 0x00), None);
}
