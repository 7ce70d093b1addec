//! Names from the PCI ID database (`pci.ids`), the file lspci reads.
//!
//! lspci parses all of the file's ~36,000 lines into a hash table before printing anything;
//! that is most of its run time on a small host. Here the file is mapped, not read (a read
//! into fresh memory costs a page fault per 4 KiB), the vendor lines are indexed in one
//! vectorised pass over the newlines, and a device or subsystem lookup scans only its
//! vendor's block. Names are formed exactly as `lspci -nn` forms them (pciutils `lib/names.c`), so the
//! two can be compared byte for byte.

use std::fs::File;
use std::io;
use std::ops::Deref;
use std::path::{Path, PathBuf};

/// Where distributions install pci.ids, in the order lspci's packages use them.
pub const SYSTEM_PCI_IDS: &[&str] = &[
    "usr/share/misc/pci.ids",
    "usr/share/hwdata/pci.ids",
    "usr/share/pci.ids",
];

enum Bytes {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}

/// A pci.ids file, searched in place.
pub struct PciIds {
    path: PathBuf,
    data: Bytes,
    /// (vendor id, offset of its line), in file order, which is sorted.
    vendors: Vec<(u16, usize)>,
    /// Offset where vendor lines end: the first `C xx` class line, or the end.
    classes: usize,
}

impl PciIds {
    /// Maps a pci.ids file (or reads it, when it cannot be mapped: a pipe, an empty file).
    pub fn load(path: &Path) -> io::Result<Self> {
        let file = File::open(path)?;
        let meta = file.metadata()?;
        let data = if meta.is_file() && meta.len() > 0 {
            // SAFETY: the map is read-only and private to this process. pci.ids is replaced,
            // not rewritten in place (update-pciids and package managers write a new file and
            // rename it), so the mapped bytes do not change while passthru runs.
            Bytes::Mapped(unsafe { memmap2::Mmap::map(&file)? })
        } else {
            Bytes::Owned(std::fs::read(path)?)
        };
        Ok(Self::with_bytes(path.to_path_buf(), data))
    }

    pub fn from_bytes(path: PathBuf, data: Vec<u8>) -> Self {
        Self::with_bytes(path, Bytes::Owned(data))
    }

    fn with_bytes(path: PathBuf, data: Bytes) -> Self {
        // The class section is the file's last part, opened by `C 00`; search back from the
        // end so the vendor part is never read for it.
        let classes = memchr::memmem::rfind(&data, b"\nC 00")
            .or_else(|| memchr::memmem::find(&data, b"\nC "))
            .map_or(data.len(), |i| i + 1);
        let classes = if data.starts_with(b"C ") { 0 } else { classes };
        // Index the vendor lines: one vectorised pass over the newlines, looking only at the
        // first byte of each line (device lines start with a tab).
        let head = &data[..classes];
        let mut vendors = Vec::with_capacity(2600);
        let starts = std::iter::once(0).chain(memchr::memchr_iter(b'\n', head).map(|i| i + 1));
        for start in starts {
            if head.get(start).is_some_and(u8::is_ascii_hexdigit) {
                if let Some(id) = parse_hex4(&head[start..]) {
                    vendors.push((id, start));
                }
            }
        }
        // pci.ids is sorted, but a hand-edited file might not be: keep lookups correct.
        if !vendors.windows(2).all(|w| w[0].0 <= w[1].0) {
            vendors.sort_by_key(|v| v.0);
        }
        PciIds {
            path,
            data,
            vendors,
            classes,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn vendor_offset(&self, vendor: u16) -> Option<usize> {
        self.vendors
            .binary_search_by_key(&vendor, |v| v.0)
            .ok()
            .map(|i| self.vendors[i].1)
    }

    pub fn vendor_name(&self, vendor: u16) -> Option<String> {
        let off = self.vendor_offset(vendor)?;
        Some(name_after_ids(line_at(&self.data, off), 4))
    }

    /// Lines of a vendor's block (device and subsystem lines), after the vendor line.
    fn vendor_block(&self, vendor: u16) -> Option<impl Iterator<Item = &[u8]>> {
        let off = self.vendor_offset(vendor)?;
        let mut lines = Lines {
            data: &self.data,
            pos: off,
        };
        lines.next();
        Some(lines.take_while(|l| l.is_empty() || l[0] == b'\t' || l[0] == b'#'))
    }

    pub fn device_name(&self, vendor: u16, device: u16) -> Option<String> {
        self.vendor_block(vendor)?
            .find(|l| {
                l.len() > 1 && l[0] == b'\t' && l[1] != b'\t' && parse_hex4(&l[1..]) == Some(device)
            })
            .map(|l| name_after_ids(&l[1..], 4))
    }

    /// The subsystem entry listed under `vendor:device`.
    pub fn subsystem_entry(&self, vendor: u16, device: u16, sv: u16, sd: u16) -> Option<String> {
        let mut in_device = false;
        for l in self.vendor_block(vendor)? {
            if l.len() > 1 && l[0] == b'\t' && l[1] != b'\t' {
                if in_device {
                    return None;
                }
                in_device = parse_hex4(&l[1..]) == Some(device);
            } else if in_device && l.len() > 11 && l.starts_with(b"\t\t") {
                let rest = &l[2..];
                if parse_hex4(rest) == Some(sv)
                    && rest.get(4) == Some(&b' ')
                    && parse_hex4(&rest[5..]) == Some(sd)
                {
                    return Some(name_after_ids(rest, 9));
                }
            }
        }
        None
    }

    /// Subclass name, else class name (pciutils' `PCI_LOOKUP_CLASS`).
    pub fn class_name(&self, base: u8, sub: u8) -> Option<String> {
        if self.classes >= self.data.len() {
            return None;
        }
        let mut lines = Lines {
            data: &self.data,
            pos: self.classes,
        };
        let mut class_name = None;
        let mut in_class = false;
        for l in &mut lines {
            if l.starts_with(b"C ") {
                if in_class {
                    break;
                }
                if parse_hex2(&l[2..]) == Some(base) {
                    in_class = true;
                    class_name = Some(name_after_ids(&l[2..], 2));
                }
            } else if in_class
                && l.len() > 3
                && l[0] == b'\t'
                && l[1] != b'\t'
                && parse_hex2(&l[1..]) == Some(sub)
            {
                return Some(name_after_ids(&l[1..], 2));
            }
        }
        class_name
    }

    /// Programming-interface name (`XHCI`), when the database has one.
    pub fn prog_if_name(&self, base: u8, sub: u8, prog_if: u8) -> Option<String> {
        if self.classes >= self.data.len() {
            return None;
        }
        let mut lines = Lines {
            data: &self.data,
            pos: self.classes,
        };
        let (mut in_class, mut in_sub) = (false, false);
        for l in &mut lines {
            if l.starts_with(b"C ") {
                if in_class {
                    break;
                }
                in_class = parse_hex2(&l[2..]) == Some(base);
            } else if in_class && l.len() > 2 && l[0] == b'\t' && l[1] != b'\t' {
                if in_sub {
                    break;
                }
                in_sub = parse_hex2(&l[1..]) == Some(sub);
            } else if in_sub && l.starts_with(b"\t\t") && parse_hex2(&l[2..]) == Some(prog_if) {
                return Some(name_after_ids(&l[2..], 2));
            }
        }
        None
    }
}

/// The names of one function as `lspci -nn` prints them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LspciNames {
    /// Vendor and device, e.g. `NVIDIA Corporation GA102 [GeForce RTX 3080]`; with an unknown
    /// device `NVIDIA Corporation Device`; with an unknown vendor `Device`.
    pub name: String,
    pub class: String,
    pub vendor: Option<String>,
    pub device: Option<String>,
    /// Subsystem as lspci names it: the subsystem entry, else the device's own name when the
    /// subsystem ids equal the device ids.
    pub subsystem: Option<String>,
}

/// Forms the names lspci would print. `db` may be absent (no pci.ids found): the generic
/// words lspci uses for unknown ids are returned then.
pub fn lookup_names(
    db: Option<&PciIds>,
    class: Option<(u8, u8)>,
    vendor: Option<u16>,
    device: Option<u16>,
    subsystem: Option<(u16, u16)>,
) -> LspciNames {
    let vendor_name = db.zip(vendor).and_then(|(db, v)| db.vendor_name(v));
    let device_name = match (db, vendor, device) {
        (Some(db), Some(v), Some(d)) => db.device_name(v, d),
        _ => None,
    };
    let name = match (&vendor_name, &device_name) {
        (Some(v), Some(d)) => format!("{v} {d}"),
        (Some(v), None) => format!("{v} Device"),
        (None, _) => "Device".to_string(),
    };
    let class = db
        .zip(class)
        .and_then(|(db, (b, s))| db.class_name(b, s))
        .unwrap_or_else(|| "Class".to_string());
    // lspci prints no subsystem when its vendor reads 0 (bridges without an SSVID
    // capability) or 0xffff.
    let subsystem = subsystem.filter(|(sv, _)| *sv != 0 && *sv != 0xffff);
    let subsystem = match (db, vendor, device, subsystem) {
        (Some(db), Some(v), Some(d), Some((sv, sd))) => {
            let sv_name = db.vendor_name(sv);
            let sd_name = db.subsystem_entry(v, d, sv, sd).or_else(|| {
                if (v, d) == (sv, sd) {
                    device_name.clone()
                } else {
                    None
                }
            });
            Some(match (sv_name, sd_name) {
                (Some(a), Some(b)) => format!("{a} {b}"),
                (Some(a), None) => format!("{a} Device"),
                (None, _) => "Device".to_string(),
            })
        }
        _ => None,
    };
    LspciNames {
        name,
        class,
        vendor: vendor_name,
        device: device_name,
        subsystem,
    }
}

/// Iterates over lines (without the newline) from a byte offset.
struct Lines<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.pos >= self.data.len() {
            return None;
        }
        let rest = &self.data[self.pos..];
        let end = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
        self.pos += end + 1;
        Some(&rest[..end])
    }
}

fn line_at(data: &[u8], off: usize) -> &[u8] {
    let rest = &data[off..];
    &rest[..memchr::memchr(b'\n', rest).unwrap_or(rest.len())]
}

fn parse_hex4(b: &[u8]) -> Option<u16> {
    let s = std::str::from_utf8(b.get(..4)?).ok()?;
    if !s.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    u16::from_str_radix(s, 16).ok()
}

fn parse_hex2(b: &[u8]) -> Option<u8> {
    let s = std::str::from_utf8(b.get(..2)?).ok()?;
    if !s.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    u8::from_str_radix(s, 16).ok()
}

/// The name after an id field of `id_len` bytes: pciutils skips the separating blanks and
/// trims trailing ones.
fn name_after_ids(line: &[u8], id_len: usize) -> String {
    let rest = line.get(id_len..).unwrap_or_default();
    String::from_utf8_lossy(rest)
        .trim_matches(|c| c == ' ' || c == '\t' || c == '\r')
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "# comment\n\
0001  SafeNet (wrong ID)\n\
10de  NVIDIA Corporation\n\
\t1aef  GA102 High Definition Audio Controller\n\
\t2206  GA102 [GeForce RTX 3080]\n\
\t\t1043 87b3  ROG Strix RTX 3080\n\
\t\t10de 1467  GA102 [GeForce RTX 3080]\n\
\t2208  GA102 [GeForce RTX 3080 Ti]\n\
8086  Intel Corporation\n\
\t46a6  Alder Lake-P Integrated Graphics Controller\n\
C 03  Display controller\n\
\t00  VGA compatible controller\n\
\t\t00  VGA controller\n\
\t02  3D controller\n\
C 0c  Serial bus controller\n\
\t03  USB controller\n\
\t\t30  XHCI\n";

    fn db() -> PciIds {
        PciIds::from_bytes("sample".into(), SAMPLE.as_bytes().to_vec())
    }

    #[test]
    fn vendor_device_subsystem_and_class() {
        let db = db();
        assert_eq!(
            db.vendor_name(0x10de).as_deref(),
            Some("NVIDIA Corporation")
        );
        assert_eq!(
            db.device_name(0x10de, 0x2206).as_deref(),
            Some("GA102 [GeForce RTX 3080]")
        );
        assert_eq!(
            db.device_name(0x10de, 0x2208).as_deref(),
            Some("GA102 [GeForce RTX 3080 Ti]")
        );
        assert_eq!(db.device_name(0x10de, 0x9999), None);
        assert_eq!(
            db.subsystem_entry(0x10de, 0x2206, 0x1043, 0x87b3)
                .as_deref(),
            Some("ROG Strix RTX 3080")
        );
        assert_eq!(db.subsystem_entry(0x10de, 0x2208, 0x1043, 0x87b3), None);
        assert_eq!(
            db.class_name(0x03, 0x00).as_deref(),
            Some("VGA compatible controller")
        );
        assert_eq!(
            db.class_name(0x03, 0x80).as_deref(),
            Some("Display controller")
        );
        assert_eq!(db.class_name(0x0c, 0x03).as_deref(), Some("USB controller"));
        assert_eq!(db.class_name(0x12, 0x00), None);
        assert_eq!(db.prog_if_name(0x0c, 0x03, 0x30).as_deref(), Some("XHCI"));
    }

    #[test]
    fn names_follow_lspci_for_unknown_ids() {
        let db = db();
        let n = lookup_names(
            Some(&db),
            Some((3, 0)),
            Some(0x10de),
            Some(0x9999),
            Some((0x10de, 0x9999)),
        );
        assert_eq!(n.name, "NVIDIA Corporation Device");
        assert_eq!(n.subsystem.as_deref(), Some("NVIDIA Corporation Device"));
        let n = lookup_names(Some(&db), Some((0x12, 0)), Some(0xabcd), Some(1), None);
        assert_eq!(n.name, "Device");
        assert_eq!(n.class, "Class");
        let n = lookup_names(None, Some((3, 0)), Some(0x10de), Some(0x2206), None);
        assert_eq!(n.name, "Device");
        // Subsystem equal to the device itself takes the device's name.
        let n = lookup_names(
            Some(&db),
            Some((3, 0)),
            Some(0x8086),
            Some(0x46a6),
            Some((0x8086, 0x46a6)),
        );
        assert_eq!(
            n.subsystem.as_deref(),
            Some("Intel Corporation Alder Lake-P Integrated Graphics Controller")
        );
    }
}
