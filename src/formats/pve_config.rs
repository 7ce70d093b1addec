//! Proxmox VE guest configs (`/etc/pve/qemu-server/VMID.conf`, `/etc/pve/lxc/CTID.conf`),
//! the option strings inside them that passthru edits (`hostpciN`, `devN`), and the cluster PCI
//! mapping file (`/etc/pve/mapping/pci.cfg`).
//!
//! Everything here is pure text: parse, query, edit in place, render. The guest config editor
//! keeps every line as it was read, so rendering an unmodified config gives back the input byte
//! for byte, and an edit changes only the lines it names.
//!
//! # Where the rules come from
//!
//! The format was learnt from Proxmox's documentation and from reading (not copying) their
//! parsers; the notes below name the place each rule was checked.
//!
//! - qemu-server `PVE/QemuServer.pm` `parse_vm_config` / `write_vm_config`:
//!   - The file is split on `\n`; lines that are empty or only whitespace are skipped.
//!   - `[PENDING]` (matched case-insensitively) opens the pending section; `[special:cloudinit]`
//!     and `[special:fleecing]` open the "special" sections; `[name]` with
//!     `name` = `[a-z][a-z0-9_-]+` (case-insensitive) opens a snapshot; any other `[...]` line
//!     is an unknown section that Proxmox skips, with its lines, after a warning.
//!   - A line starting with `#` belongs to the description of the current section: the text
//!     after `#` (percent-decoded by `PVE::Tools::decode_text`) becomes one description line.
//!     `write_vm_config` writes the description back as leading `#` lines (`encode_text`)
//!     at the top of its section, whatever position the `#` lines had when read.
//!   - Settings are `^([a-z][a-z_\-]*\d*):\s*(.+?)\s*$`: the key, a colon, optional
//!     whitespace, and the value to the end of the line with surrounding whitespace trimmed.
//!     The value may itself contain `: ` (`numa: verify meee~ :)` in
//!     `parse-config-input/verify-snapshot.conf`) and `=`, `,`, `;`.
//!   - Duplicate sections: the later one replaces the earlier one as a whole
//!     (`parse-config-expected/duplicate-sections.conf`); a repeated key keeps the last value.
//!   - Proxmox writes: main section (keys sorted), `\n[PENDING]\n...`, `\n[special:NAME]\n...`,
//!     then `\n[snapname]\n...` for each snapshot.
//! - pve-container `src/PVE/LXC/Config.pm` `parse_pct_config` / `write_pct_config`:
//!   - The pending section of a container is `[pve:pending]` (not `[PENDING]`).
//!   - Raw LXC keys are `^(lxc\.[a-z0-9_\-\.]+)(:|\s*=)\s*(.*?)\s*$`: they contain dots, they
//!     may be separated by `=` as well as `:`, the value may be empty (`lxc.cap.drop:` in
//!     `lxc-gpu-examples/08`), and they repeat (kept as an ordered list, written after the
//!     other keys). A trailing `# ...` is part of the value: nothing strips inline comments.
//!   - Other keys are `^([a-z][a-z_]*\d*):\s*(.+?)\s*$`.
//!   - `devN` (`$dev_desc`): `[path=]/dev/...` (must start with `/dev/`, no `/./` or `/../`),
//!     `gid=` and `uid=` (integers >= 0), `mode=` (`0[0-7]{3}`), `deny-write=` (boolean).
//! - qemu-server `PVE/QemuServer/PCI.pm` (`$hostpci_fmt`): `host` is the default key, a
//!   `;`-separated list of `([a-f0-9]{4}:)?[a-f0-9]{2}:[a-f0-9]{2}(\.[a-f0-9])?`; a host id
//!   without `.F` means every function of the device. `mapping=` names a cluster mapping
//!   (a `pve-configid`) and excludes `host`. Up to 16 devices (`$MAX_HOSTPCI_DEVICES`).
//! - pve-common `src/PVE/SectionConfig.pm` `parse_config` / `write_config`, and
//!   pve-guest-common `src/PVE/Mapping/PCI.pm`:
//!   - `PVE::Mapping::PCI` overrides the section header: it is the bare mapping id on its own
//!     line (`parse_section_header` matches `^(\S+)\s*$`, `format_section_header` returns
//!     `"$sectionId\n"`), **not** the generic `type: id` form.
//!   - Properties are indented lines `^\s+(\S+)(\s+(.*\S))?\s*$`: key, whitespace, value.
//!     Proxmox writes them as `\tkey value`. `map` is an array property, one line per node
//!     entry; `description` and `mdev` are single values.
//!   - Lines matching `^\s*#` are skipped; an empty line ends a section; `write_config` writes
//!     the required keys (`map`) first, then the optional keys sorted, and an empty line after
//!     every section.
//!   - A `map` value is a property string `node=N,path=BDF[;BDF],id=VVVV:DDDD` with optional
//!     `subsystem-id=`, `iommugroup=`, `description=`.

use std::fmt::Write as _;

/// An error reading a Proxmox config file; the message names the 1-based line.
#[derive(Debug, thiserror::Error)]
pub enum PveConfigError {
    /// A line that is not a blank line, a comment, a `[section]` header or a setting.
    #[error("line {line}: {reason}: {text:?}")]
    Syntax {
        line: usize,
        reason: String,
        text: String,
    },
}

impl PveConfigError {
    fn syntax(line: usize, reason: impl Into<String>, text: &str) -> Self {
        PveConfigError::Syntax {
            line,
            reason: reason.into(),
            text: text.to_string(),
        }
    }

    /// The 1-based line number the error is about.
    pub fn line(&self) -> usize {
        match self {
            PveConfigError::Syntax { line, .. } => *line,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Guest configs
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum LineKind {
    /// Empty or whitespace only.
    Blank,
    /// `#...`: part of the section's description for Proxmox.
    Comment,
    /// `[name]`: starts a section that runs to the next header.
    Section(String),
    /// `key: value` (or `lxc.key = value`); the value is trimmed.
    Entry { key: String, value: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Line {
    /// The line as read, without its `\n`.
    raw: String,
    kind: LineKind,
}

impl Line {
    fn entry(key: &str, value: &str) -> Line {
        // A line break inside a value would split the setting into two lines (Proxmox's own
        // writers refuse such values), so it is flattened to a space.
        let value: String = value
            .trim_matches(is_space)
            .chars()
            .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
            .collect();
        Line {
            raw: format!("{key}: {value}"),
            kind: LineKind::Entry {
                key: key.to_string(),
                value,
            },
        }
    }
}

/// A Proxmox guest config (qemu-server `VMID.conf` or pve-container `CTID.conf`): `key: value`
/// lines, `#` comment lines (the description is stored as leading `#` lines), and `[name]`
/// sections (`[snapshot]`, `[PENDING]`, `[pve:pending]`, `[special:cloudinit]`). Keeps every
/// byte: [`GuestConfig::render`] of an unmodified config is the input.
///
/// The "main section" is everything before the first `[...]` header: the VM's or container's
/// current configuration, the only part passthru edits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestConfig {
    lines: Vec<Line>,
    /// Whether the text ended with `\n`.
    final_newline: bool,
}

/// Parses a guest config. It accepts what Proxmox accepts when not in strict mode and keeps
/// everything, including what Proxmox would drop with a warning: duplicate and unknown sections,
/// values that fail Proxmox's type checks, empty values. It refuses a line that is neither blank,
/// a comment, a `[section]` header nor a `key: value` setting with a valid key
/// (`[a-z][a-z0-9_-]*`, or `lxc.` followed by `[a-z0-9_.-]+`), because Proxmox would drop it.
pub fn parse_guest_config(text: &str) -> Result<GuestConfig, PveConfigError> {
    let mut raw_lines: Vec<&str> = text.split('\n').collect();
    let final_newline = raw_lines.last() == Some(&"");
    if final_newline || text.is_empty() {
        raw_lines.pop();
    }
    let mut lines = Vec::with_capacity(raw_lines.len());
    for (i, raw) in raw_lines.into_iter().enumerate() {
        let kind = classify(raw).map_err(|reason| PveConfigError::syntax(i + 1, reason, raw))?;
        lines.push(Line {
            raw: raw.to_string(),
            kind,
        });
    }
    Ok(GuestConfig {
        lines,
        final_newline,
    })
}

/// Perl's `\s` as Proxmox's regexes use it.
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
}

fn classify(raw: &str) -> Result<LineKind, &'static str> {
    if raw.chars().all(is_space) {
        return Ok(LineKind::Blank);
    }
    // Proxmox: `^\#(.*)$`. An indented `#` is not a description line for Proxmox (it warns and
    // drops it); it is kept here as a comment all the same.
    if raw.trim_start_matches(is_space).starts_with('#') {
        return Ok(LineKind::Comment);
    }
    if raw.starts_with('[') {
        // Proxmox: `^\[([^\]]*)\]\s*$` is some section header, known or not.
        let t = raw.trim_end_matches(is_space);
        let inner = t
            .strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .filter(|s| !s.contains(']'))
            .ok_or("malformed [section] header")?;
        return Ok(LineKind::Section(inner.to_string()));
    }
    let (key, value) = parse_entry(raw)?;
    Ok(LineKind::Entry {
        key: key.to_string(),
        value: value.to_string(),
    })
}

fn parse_entry(raw: &str) -> Result<(&str, &str), &'static str> {
    let is_lxc = raw.starts_with("lxc.");
    let key_len = if is_lxc {
        let n = raw[4..]
            .bytes()
            .take_while(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.'))
            .count();
        if n == 0 {
            return Err("empty lxc.* key");
        }
        4 + n
    } else {
        let mut bytes = raw.bytes();
        if !matches!(bytes.next(), Some(b'a'..=b'z')) {
            return Err("not a `key: value` setting");
        }
        1 + bytes
            .take_while(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'))
            .count()
    };
    let (key, rest) = raw.split_at(key_len);
    let value = if let Some(v) = rest.strip_prefix(':') {
        v
    } else if is_lxc {
        rest.trim_start_matches(is_space)
            .strip_prefix('=')
            .ok_or("an lxc.* key must be followed by `:` or `=`")?
    } else {
        return Err("a key must be followed by `:`");
    };
    Ok((key, value.trim_matches(is_space)))
}

impl GuestConfig {
    /// The config as text: byte-identical to the input when nothing was changed.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(self.lines.iter().map(|l| l.raw.len() + 1).sum());
        for (i, line) in self.lines.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            out.push_str(&line.raw);
        }
        if self.final_newline && !self.lines.is_empty() {
            out.push('\n');
        }
        out
    }

    /// Index of the first `[section]` header: the main section is `lines[..main_end()]`.
    fn main_end(&self) -> usize {
        self.lines
            .iter()
            .position(|l| matches!(l.kind, LineKind::Section(_)))
            .unwrap_or(self.lines.len())
    }

    fn entries_in(
        &self,
        range: std::ops::Range<usize>,
    ) -> impl Iterator<Item = (usize, &str, &str)> {
        self.lines[range]
            .iter()
            .enumerate()
            .filter_map(|(i, l)| match &l.kind {
                LineKind::Entry { key, value } => Some((i, key.as_str(), value.as_str())),
                _ => None,
            })
    }

    fn main_entries(&self) -> impl Iterator<Item = (usize, &str, &str)> {
        self.entries_in(0..self.main_end())
    }

    /// The line range of the last section called `section` (Proxmox keeps the later of two
    /// sections with the same name), without its header.
    fn section_range(&self, section: &str) -> Option<std::ops::Range<usize>> {
        let header = self
            .lines
            .iter()
            .rposition(|l| matches!(&l.kind, LineKind::Section(n) if n == section))?;
        let start = header + 1;
        let end = self.lines[start..]
            .iter()
            .position(|l| matches!(l.kind, LineKind::Section(_)))
            .map_or(self.lines.len(), |p| start + p);
        Some(start..end)
    }

    /// The last value of `key` in the main section (the one Proxmox uses).
    pub fn main_get(&self, key: &str) -> Option<&str> {
        self.main_entries()
            .filter(|(_, k, _)| *k == key)
            .last()
            .map(|(_, _, v)| v)
    }

    /// Every value of `key` in the main section, in file order (`lxc.*` keys repeat).
    pub fn main_get_all(&self, key: &str) -> Vec<&str> {
        self.main_entries()
            .filter(|(_, k, _)| *k == key)
            .map(|(_, _, v)| v)
            .collect()
    }

    /// The 1-based line number of the last line of `key` in the main section.
    pub fn main_line(&self, key: &str) -> Option<usize> {
        self.main_entries()
            .filter(|(_, k, _)| *k == key)
            .last()
            .map(|(i, _, _)| i + 1)
    }

    /// The keys of the main section in file order, repeats included.
    pub fn main_keys(&self) -> Vec<String> {
        self.main_entries().map(|(_, k, _)| k.to_string()).collect()
    }

    /// Sets `key` in the main section: the key's last line is replaced in place, or, when the
    /// key is absent, a line is added after the main section's last setting. Other lines of the
    /// same key are left alone (use [`GuestConfig::main_remove`] first for a clean slate).
    pub fn main_set(&mut self, key: &str, value: &str) {
        debug_assert!(
            parse_entry(&format!("{key}:")).is_ok(),
            "invalid key {key:?}"
        );
        let last = self
            .main_entries()
            .filter(|(_, k, _)| *k == key)
            .last()
            .map(|(i, _, _)| i);
        match last {
            Some(i) => self.lines[i] = Line::entry(key, value),
            None => self.insert_main(Line::entry(key, value)),
        }
    }

    /// Adds a `key: value` line after the main section's last setting, even if the key exists
    /// (for the repeating `lxc.*` keys).
    pub fn main_add(&mut self, key: &str, value: &str) {
        debug_assert!(
            parse_entry(&format!("{key}:")).is_ok(),
            "invalid key {key:?}"
        );
        self.insert_main(Line::entry(key, value));
    }

    fn insert_main(&mut self, line: Line) {
        let end = self.main_end();
        let main = &self.lines[..end];
        // After the last setting; with none, after the description (`#` lines); else first.
        let pos = main
            .iter()
            .rposition(|l| matches!(l.kind, LineKind::Entry { .. }))
            .or_else(|| main.iter().rposition(|l| l.kind != LineKind::Blank))
            .map_or(0, |i| i + 1);
        if pos == self.lines.len() {
            // The new last line brings its own line end; the old bytes stay a prefix.
            self.final_newline = true;
        }
        self.lines.insert(pos, line);
    }

    /// Removes every line of `key` from the main section; whether any was there.
    pub fn main_remove(&mut self, key: &str) -> bool {
        self.remove_main_where(|k, _| k == key)
    }

    /// Removes the main-section lines of `key` whose value equals `value` (both trimmed);
    /// whether any was there.
    pub fn main_remove_value(&mut self, key: &str, value: &str) -> bool {
        let value = value.trim_matches(is_space);
        self.remove_main_where(|k, v| k == key && v == value)
    }

    fn remove_main_where(&mut self, pred: impl Fn(&str, &str) -> bool) -> bool {
        let end = self.main_end();
        let before = self.lines.len();
        let mut i = 0;
        self.lines.retain(|l| {
            let keep =
                i >= end || !matches!(&l.kind, LineKind::Entry { key, value } if pred(key, value));
            i += 1;
            keep
        });
        self.lines.len() != before
    }

    /// Every `[section]` header in file order, as written between the brackets
    /// (`PENDING`, `special:cloudinit`, a snapshot name), repeats included.
    pub fn section_names(&self) -> Vec<String> {
        self.lines
            .iter()
            .filter_map(|l| match &l.kind {
                LineKind::Section(n) => Some(n.clone()),
                _ => None,
            })
            .collect()
    }

    /// The last value of `key` in section `section` (its exact name between the brackets).
    /// When the section appears twice, the later one is read, as Proxmox does.
    pub fn section_get(&self, section: &str, key: &str) -> Option<&str> {
        let range = self.section_range(section)?;
        self.entries_in(range)
            .filter(|(_, k, _)| *k == key)
            .last()
            .map(|(_, _, v)| v)
    }

    /// The keys of section `section` (the later one when repeated), in order, repeats included.
    pub fn section_keys(&self, section: &str) -> Vec<String> {
        self.section_range(section)
            .map(|r| self.entries_in(r).map(|(_, k, _)| k.to_string()).collect())
            .unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------------------------
// hostpciN
// ---------------------------------------------------------------------------------------------

/// A `hostpciN` value: `[host=]BDF[;BDF...]` or `mapping=NAME`, then `,key=value` options
/// (`pcie=1`, `x-vga=1`, `rombar=0`, `romfile=`, `mdev=`, `vendor-id=`..., `driver=`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPci {
    /// Host PCI ids as written (`01:00.0`, `0000:01:00.0`, or `01:00` for all functions).
    pub host: Vec<String>,
    /// The cluster mapping's id, when the device comes from `/etc/pve/mapping/pci.cfg`.
    pub mapping: Option<String>,
    /// The other options in written order; the option names are not checked, since newer
    /// Proxmox versions add some (`driver=` came in 2025).
    pub options: Vec<(String, String)>,
}

/// Whether `s` is a Proxmox host PCI id: `([a-f0-9]{4,}:)?[a-f0-9]{2}:[a-f0-9]{2}(\.[a-f0-9])?`
/// (lower-case hex, as Proxmox's pattern has it).
fn is_pci_id(s: &str) -> bool {
    fn hex(s: &str, min: usize, max: usize) -> bool {
        (min..=max).contains(&s.len()) && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    }
    let (slot, func) = match s.split_once('.') {
        Some((slot, func)) => (slot, Some(func)),
        None => (s, None),
    };
    if func.is_some_and(|f| !hex(f, 1, 1)) {
        return false;
    }
    let parts: Vec<&str> = slot.split(':').collect();
    match parts.as_slice() {
        [bus, dev] => hex(bus, 2, 2) && hex(dev, 2, 2),
        [dom, bus, dev] => hex(dom, 4, 8) && hex(bus, 2, 2) && hex(dev, 2, 2),
        _ => false,
    }
}

/// A `pve-configid`: `[a-z][a-z0-9_-]+`, case-insensitive (pve-common `src/PVE/JSONSchema.pm`,
/// `$CONFIGID_RE` checked by `pve_verify_configid`): a letter, then at least one letter,
/// digit, `_` or `-`. Mapping ids (`PVE::Mapping::PCI`, `hostpciN: mapping=`) are of this format.
pub fn is_config_id(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic())
        && s.len() >= 2
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
}

/// What [`check_config_id`] says about an id that is not a `pve-configid`.
pub const CONFIG_ID_RULE: &str = "not a pve-configid: Proxmox accepts a letter followed by at \
     least one letter, digit, `_` or `-` ([a-z][a-z0-9_-]+, pve-common JSONSchema.pm)";

/// Whether `id` can name a cluster mapping; the error says what Proxmox accepts.
pub fn check_config_id(id: &str) -> Result<(), String> {
    if is_config_id(id) {
        Ok(())
    } else {
        Err(CONFIG_ID_RULE.to_string())
    }
}

/// Whether a value from the user can be one option's value inside a property string
/// (`hostpciN: 0000:03:00,romfile=VALUE`) without becoming more than one option. Proxmox's
/// `parse_property_string` splits the line on `,` and each part at its first `=`; the host
/// list is `;`-separated; and a config line ends at a line break. So a value must be
/// non-empty and hold none of `,` `;` `=`, no whitespace and no control characters.
pub fn check_property_value(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("an empty value is not an option value".into());
    }
    if let Some(c) = value
        .chars()
        .find(|c| matches!(c, ',' | ';' | '=') || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "{c:?} cannot be inside an option value: Proxmox would read it as a separator \
             (`,` between options, `;` between host ids, `=` between key and value) or the line \
             would break"
        ));
    }
    Ok(())
}

/// Whether `name` can be a `hostpciN` `romfile=`: qemu-server `src/PVE/QemuServer/PCI.pm`
/// (`$hostpci_fmt`, pattern `[^,;]+`) passes it to QEMU as `/usr/share/kvm/NAME`, so it is a
/// file name in that directory: a property value (see [`check_property_value`]) with no `/`,
/// and not `.` or `..`. (Proxmox itself would follow a `sub/dir` or `../` path; passthru does
/// not write one.)
pub fn check_rom_file_name(name: &str) -> Result<(), String> {
    check_property_value(name)?;
    if name.contains('/') || name == "." || name == ".." {
        return Err("a ROM file is a file name in /usr/share/kvm (no `/`, not `.` or `..`)".into());
    }
    Ok(())
}

fn is_option_key(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_lowercase())
        && b.all(|c| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'))
}

/// Splits a Proxmox property string into `(key, value)` parts; a part without `=` has key
/// `None` (the format's default key).
fn property_parts(value: &str) -> Result<Vec<(Option<&str>, &str)>, String> {
    let mut out = Vec::new();
    for part in value.split(',') {
        if part.is_empty() {
            return Err(format!("empty element in {value:?}"));
        }
        match part.split_once('=') {
            Some((k, v)) => {
                if !is_option_key(k) {
                    return Err(format!("invalid key {k:?} in {value:?}"));
                }
                if v.is_empty() {
                    return Err(format!("empty value for {k:?} in {value:?}"));
                }
                if out.iter().any(|(ok, _)| *ok == Some(k)) {
                    return Err(format!("duplicate key {k:?} in {value:?}"));
                }
                out.push((Some(k), v));
            }
            None => out.push((None, part)),
        }
    }
    Ok(out)
}

/// Parses a `hostpciN` value. The host ids must match Proxmox's pattern; `host` and `mapping`
/// are mutually exclusive and one of them is required.
pub fn parse_hostpci(value: &str) -> Result<HostPci, String> {
    let mut host: Option<Vec<String>> = None;
    let mut mapping = None;
    let mut options = Vec::new();
    for (key, v) in property_parts(value.trim_matches(is_space))? {
        match key {
            None | Some("host") => {
                if host.is_some() {
                    return Err(format!("more than one host list in {value:?}"));
                }
                let ids: Vec<String> = v.split(';').map(str::to_string).collect();
                if let Some(bad) = ids.iter().find(|id| !is_pci_id(id)) {
                    return Err(format!(
                        "{bad:?} is not a host PCI id ([dddd:]bb:dd[.f], lower-case hex)"
                    ));
                }
                host = Some(ids);
            }
            Some("mapping") => {
                if !is_config_id(v) {
                    return Err(format!("{v:?} is not a valid mapping id"));
                }
                mapping = Some(v.to_string());
            }
            Some(k) => options.push((k.to_string(), v.to_string())),
        }
    }
    match (&host, &mapping) {
        (Some(_), Some(_)) => Err(format!("host and mapping are exclusive in {value:?}")),
        (None, None) => Err(format!("no host id or mapping in {value:?}")),
        _ => Ok(HostPci {
            host: host.unwrap_or_default(),
            mapping,
            options,
        }),
    }
}

/// Renders a `hostpciN` value canonically: the host ids first without `host=` (or
/// `mapping=NAME`), then the options in their given order.
pub fn render_hostpci(h: &HostPci) -> String {
    let mut parts: Vec<String> = Vec::new();
    if !h.host.is_empty() {
        parts.push(h.host.join(";"));
    }
    if let Some(m) = &h.mapping {
        parts.push(format!("mapping={m}"));
    }
    parts.extend(h.options.iter().map(|(k, v)| format!("{k}={v}")));
    parts.join(",")
}

/// Proxmox passes at most 16 PCI devices to a VM (`$MAX_HOSTPCI_DEVICES`).
pub const MAX_HOSTPCI: u8 = 16;
/// Proxmox passes at most 256 devices to a container (`dev0`..`dev255`).
pub const MAX_LXC_DEV: u16 = 256;

/// The first free `hostpciN` (0..=15) in the main section, `None` when all are used.
/// Only the main section counts: a `hostpciN` queued in `[PENDING]` is not seen here.
pub fn free_hostpci_index(cfg: &GuestConfig) -> Option<u8> {
    (0..MAX_HOSTPCI).find(|i| cfg.main_get(&format!("hostpci{i}")).is_none())
}

// ---------------------------------------------------------------------------------------------
// LXC devN
// ---------------------------------------------------------------------------------------------

/// An LXC `devN` value: `[path=]/dev/x[,gid=N][,uid=N][,mode=0NNN][,deny-write=1]`
/// (pve-container 5.0.7+, `deny-write` 5.2.0+). `uid`/`gid` are ids inside the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LxcDev {
    pub path: String,
    pub gid: Option<u32>,
    pub uid: Option<u32>,
    /// Octal access mode as written, `0[0-7]{3}`.
    pub mode: Option<String>,
    pub deny_write: bool,
}

/// Proxmox's boolean spellings (`PVE::JSONSchema`): 1/on/yes/true and 0/off/no/false.
fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "on" | "yes" | "true" => Some(true),
        "0" | "off" | "no" | "false" => Some(false),
        _ => None,
    }
}

/// Parses a `devN` value with pve-container's rules: the path must start with `/dev/` and have
/// no `.` or `..` components; `mode` is `0[0-7]{3}`; unknown keys are refused.
pub fn parse_lxc_dev(value: &str) -> Result<LxcDev, String> {
    let mut path: Option<String> = None;
    let mut dev = LxcDev {
        path: String::new(),
        gid: None,
        uid: None,
        mode: None,
        deny_write: false,
    };
    for (key, v) in property_parts(value.trim_matches(is_space))? {
        match key {
            None | Some("path") => {
                if path.is_some() {
                    return Err(format!("more than one path in {value:?}"));
                }
                let bad_component = v.split('/').skip(1).any(|c| c == "." || c == "..");
                if !v.starts_with("/dev/") || bad_component {
                    return Err(format!("{v:?} is not a valid device path"));
                }
                path = Some(v.to_string());
            }
            Some(k @ ("gid" | "uid")) => {
                let n: u32 = v
                    .parse()
                    .map_err(|_| format!("{k}={v:?} is not a non-negative integer"))?;
                if k == "gid" {
                    dev.gid = Some(n);
                } else {
                    dev.uid = Some(n);
                }
            }
            Some("mode") => {
                let b = v.as_bytes();
                if b.len() != 4 || b[0] != b'0' || !b[1..].iter().all(|c| (b'0'..=b'7').contains(c))
                {
                    return Err(format!("mode={v:?} is not an octal mode 0NNN"));
                }
                dev.mode = Some(v.to_string());
            }
            Some("deny-write") => {
                dev.deny_write =
                    parse_bool(v).ok_or_else(|| format!("deny-write={v:?} is not a boolean"))?;
            }
            Some(k) => return Err(format!("unknown devN option {k:?}")),
        }
    }
    dev.path = path.ok_or_else(|| format!("no device path in {value:?}"))?;
    Ok(dev)
}

/// Renders a `devN` value as the Proxmox GUI writes it: the path without `path=`, then `uid`,
/// `gid`, `mode` (the order of the fields in pve-manager `www/manager6/lxc/DeviceEdit.js`),
/// then `deny-write=1` when set; unset fields are left out (`/dev/dri/renderD128,gid=104`).
pub fn render_lxc_dev(d: &LxcDev) -> String {
    let mut s = d.path.clone();
    if let Some(uid) = d.uid {
        let _ = write!(s, ",uid={uid}");
    }
    if let Some(gid) = d.gid {
        let _ = write!(s, ",gid={gid}");
    }
    if let Some(mode) = &d.mode {
        let _ = write!(s, ",mode={mode}");
    }
    if d.deny_write {
        s.push_str(",deny-write=1");
    }
    s
}

/// The first free `devN` (0..=255) in the main section, `None` when all are used.
pub fn free_dev_index(cfg: &GuestConfig) -> Option<u16> {
    (0..MAX_LXC_DEV).find(|i| cfg.main_get(&format!("dev{i}")).is_none())
}

// ---------------------------------------------------------------------------------------------
// Cluster PCI mappings
// ---------------------------------------------------------------------------------------------

/// One cluster PCI resource mapping from `/etc/pve/mapping/pci.cfg` (a Proxmox "section
/// config" whose header is the bare id).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PciMapping {
    /// The mapping's id, used as `hostpciN: mapping=ID`.
    pub id: String,
    pub description: Option<String>,
    /// Each `map` line's `key=value` pairs in order (`node`, `path`, `id`, `subsystem-id`,
    /// `iommugroup`, ...).
    pub maps: Vec<Vec<(String, String)>>,
    /// The section's other properties in order (`mdev 1`, `live-migration-capable 1`, ...);
    /// a property written without a value has an empty value.
    pub other: Vec<(String, String)>,
}

/// Parses one `map` value of a PCI mapping (`node=pve1,path=0000:01:00,id=10de:2204,...`)
/// into its `key=value` pairs in written order. Key order is free (the GUI writes them
/// sorted, `pvesh` users in any order), so callers look keys up by name.
pub fn parse_map_value(v: &str) -> Result<Vec<(String, String)>, String> {
    property_parts(v)?
        .into_iter()
        .map(|(k, v)| match k {
            Some(k) => Ok((k.to_string(), v.to_string())),
            None => Err(format!("map element {v:?} is not key=value")),
        })
        .collect()
}

/// `/etc/pve/mapping/pci.cfg` as read: every line kept, so [`PciMappingFile::render`] of an
/// unmodified file is the input byte for byte (comments, blank lines, indentation, CRLF, a
/// missing final newline), and [`PciMappingFile::add_map`] adds lines without rewriting the
/// others. (Proxmox's own `write_config` would rewrite the whole file canonically and drop the
/// comments; passthru changes only what it adds.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciMappingFile {
    /// The lines as read, without their `\n`.
    lines: Vec<String>,
    final_newline: bool,
    mappings: Vec<PciMapping>,
    /// Per mapping: the index of the line after its last property line (where a new `map`
    /// line goes).
    ends: Vec<usize>,
}

/// Parses `/etc/pve/mapping/pci.cfg`. Stricter than Proxmox, which skips what it cannot read
/// with a warning: a `type: id` header (the generic section-config form, which
/// `PVE::Mapping::PCI` does not use), a header not preceded by an empty line, a property
/// outside a section, a repeated id or `description`, and a malformed `map` are errors here.
pub fn parse_pci_mapping_file(text: &str) -> Result<PciMappingFile, PveConfigError> {
    let mut raw_lines: Vec<&str> = text.split('\n').collect();
    let final_newline = raw_lines.last() == Some(&"");
    if final_newline || text.is_empty() {
        raw_lines.pop();
    }
    let mut mappings: Vec<PciMapping> = Vec::new();
    let mut ends = Vec::new();
    let mut cur: Option<(PciMapping, usize)> = None;
    for (i, raw) in raw_lines.iter().enumerate() {
        let line = i + 1;
        let t = raw.trim_matches(is_space);
        if t.starts_with('#') {
            continue; // SectionConfig skips `^\s*#` lines without ending the section
        }
        if t.is_empty() {
            if let Some((m, end)) = cur.take() {
                mappings.push(m);
                ends.push(end);
            }
            continue;
        }
        if raw.starts_with(is_space) {
            let (m, end) = cur
                .as_mut()
                .ok_or_else(|| PveConfigError::syntax(line, "property outside a mapping", raw))?;
            *end = i + 1;
            let (key, value) = match t.split_once(is_space) {
                Some((k, v)) => (k, v.trim_start_matches(is_space)),
                None => (t, ""),
            };
            match key {
                "map" => {
                    let pairs =
                        parse_map_value(value).map_err(|e| PveConfigError::syntax(line, e, raw))?;
                    m.maps.push(pairs);
                }
                "description" => {
                    if m.description.is_some() {
                        return Err(PveConfigError::syntax(line, "second description", raw));
                    }
                    m.description = Some(value.to_string());
                }
                _ => m.other.push((key.to_string(), value.to_string())),
            }
            continue;
        }
        if cur.is_some() {
            return Err(PveConfigError::syntax(
                line,
                "a mapping header must follow an empty line",
                raw,
            ));
        }
        if t.contains(is_space) || t.ends_with(':') {
            return Err(PveConfigError::syntax(
                line,
                "a PCI mapping header is the bare id on its own line (`NAME`, not `pci: NAME`)",
                raw,
            ));
        }
        if !is_config_id(t) {
            return Err(PveConfigError::syntax(
                line,
                format!("invalid mapping id: {CONFIG_ID_RULE}"),
                raw,
            ));
        }
        if mappings.iter().any(|m| m.id == t) {
            return Err(PveConfigError::syntax(line, "duplicate mapping id", raw));
        }
        cur = Some((
            PciMapping {
                id: t.to_string(),
                ..PciMapping::default()
            },
            i + 1,
        ));
    }
    if let Some((m, end)) = cur {
        mappings.push(m);
        ends.push(end);
    }
    Ok(PciMappingFile {
        lines: raw_lines.into_iter().map(str::to_string).collect(),
        final_newline,
        mappings,
        ends,
    })
}

/// The mappings of `/etc/pve/mapping/pci.cfg` (see [`parse_pci_mapping_file`]).
pub fn parse_pci_mappings(text: &str) -> Result<Vec<PciMapping>, PveConfigError> {
    parse_pci_mapping_file(text).map(|f| f.mappings)
}

fn render_map_line(map: &[(String, String)]) -> String {
    let parts: Vec<String> = map.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("\tmap {}", parts.join(","))
}

impl PciMappingFile {
    pub fn mappings(&self) -> &[PciMapping] {
        &self.mappings
    }

    /// The file as text: byte-identical to the input when nothing was added.
    pub fn render(&self) -> String {
        let mut out = self.lines.join("\n");
        if self.final_newline && !self.lines.is_empty() {
            out.push('\n');
        }
        out
    }

    /// Adds a `map` line to mapping `id`, after its last property line; a mapping that does
    /// not exist is appended as `ID`, `\tmap ...` and an empty line, as Proxmox writes a
    /// section, after an empty line that ends the previous one. The caller checks `id` (a
    /// `pve-configid`) and the values (no `,` or line break inside one).
    pub fn add_map(&mut self, id: &str, map: Vec<(String, String)>) {
        let line = render_map_line(&map);
        if let Some(k) = self.mappings.iter().position(|m| m.id == id) {
            self.insert_property_line(k, line);
            self.mappings[k].maps.push(map);
            return;
        }
        // A last line without its `\n` gets one first: the old bytes stay a prefix.
        let needs_blank = self
            .lines
            .last()
            .is_some_and(|l| !l.trim_matches(is_space).is_empty());
        if needs_blank {
            self.lines.push(String::new());
        }
        self.lines.push(id.to_string());
        self.lines.push(line);
        self.ends.push(self.lines.len());
        self.lines.push(String::new());
        self.final_newline = true;
        self.mappings.push(PciMapping {
            id: id.to_string(),
            maps: vec![map],
            ..PciMapping::default()
        });
    }

    /// Adds a `\tKEY VALUE` property line to mapping `id` after its last property line, where
    /// Proxmox's writer puts the optional properties (after the `map` lines). Returns false
    /// when there is no such mapping (add its first `map` line first). The caller checks the
    /// value.
    pub fn add_property(&mut self, id: &str, key: &str, value: &str) -> bool {
        let Some(k) = self.mappings.iter().position(|m| m.id == id) else {
            return false;
        };
        self.insert_property_line(k, format!("\t{key} {value}"));
        self.mappings[k]
            .other
            .push((key.to_string(), value.to_string()));
        true
    }

    /// Inserts a line at the end of mapping `k`'s properties and moves the later ends.
    fn insert_property_line(&mut self, k: usize, line: String) {
        let at = self.ends[k];
        if at == self.lines.len() {
            self.final_newline = true;
        }
        self.lines.insert(at, line);
        for e in self.ends.iter_mut().filter(|e| **e >= at) {
            *e += 1;
        }
        self.ends[k] = at + 1;
    }
}

impl PciMapping {
    /// A boolean property as Proxmox reads it (`mdev`, `live-migration-capable`): absent or
    /// not a boolean is the schema default, 0.
    pub fn flag(&self, key: &str) -> bool {
        self.other
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .is_some_and(|(_, v)| parse_bool(v) == Some(true))
    }
}

/// Renders mappings as Proxmox writes them: `ID`, then `\tmap k=v,...` lines, `\tdescription`,
/// the other properties, and an empty line after each mapping. Line breaks in values are
/// flattened to spaces (Proxmox refuses them).
pub fn render_pci_mappings(m: &[PciMapping]) -> String {
    fn one_line(s: &str) -> String {
        s.chars()
            .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
            .collect()
    }
    let mut out = String::new();
    for mapping in m {
        out.push_str(&one_line(&mapping.id));
        out.push('\n');
        for map in &mapping.maps {
            let parts: Vec<String> = map.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = writeln!(out, "\tmap {}", one_line(&parts.join(",")));
        }
        if let Some(d) = &mapping.description {
            let _ = writeln!(out, "\tdescription {}", one_line(d));
        }
        for (k, v) in &mapping.other {
            if v.is_empty() {
                let _ = writeln!(out, "\t{}", one_line(k));
            } else {
                let _ = writeln!(out, "\t{} {}", one_line(k), one_line(v));
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const VM: &str = "# my VM\n#second line\nboot: order=scsi0\nhostpci0: 01:00.0,pcie=1\nmemory: 4096\nparent: snap1\n\n[PENDING]\nmemory: 8192\n\n[snap1]\nhostpci0: 02:00.0\nmemory: 2048\nsnaptime: 1700000000\n";

    #[test]
    fn round_trip_and_reads() {
        let cfg = parse_guest_config(VM).unwrap();
        assert_eq!(cfg.render(), VM);
        assert_eq!(cfg.main_get("memory"), Some("4096"));
        assert_eq!(cfg.section_get("PENDING", "memory"), Some("8192"));
        assert_eq!(cfg.section_get("snap1", "hostpci0"), Some("02:00.0"));
        assert_eq!(cfg.section_get("snap1", "parent"), None);
        assert_eq!(cfg.section_names(), vec!["PENDING", "snap1"]);
        assert_eq!(
            cfg.main_keys(),
            vec!["boot", "hostpci0", "memory", "parent"]
        );
    }

    #[test]
    fn odd_texts_round_trip() {
        for text in [
            "",
            "\n",
            "memory: 1",
            "memory: 1\n\n\n",
            "  \t\nmemory:1   \n",
            "lxc.cap.drop:\nlxc.foo = bar\n",
            "numa: verify meee~ :)\n[:3]\nname: baz\n",
            "[snap]\n",
            "memory: 1\r\n",
        ] {
            let cfg = parse_guest_config(text).unwrap();
            assert_eq!(cfg.render(), text, "{text:?}");
        }
        let cfg = parse_guest_config("lxc.foo = bar\nmemory:1   \n").unwrap();
        assert_eq!(cfg.main_get("lxc.foo"), Some("bar"));
        assert_eq!(cfg.main_get("memory"), Some("1"));
        assert_eq!(cfg.main_get("numa"), None);
    }

    #[test]
    fn value_keeps_colons_and_comments() {
        let cfg = parse_guest_config(
            "args: -foo a:b: c\nlxc.cgroup2.devices.allow: c 195:* rwm # comment\n",
        )
        .unwrap();
        assert_eq!(cfg.main_get("args"), Some("-foo a:b: c"));
        assert_eq!(
            cfg.main_get_all("lxc.cgroup2.devices.allow"),
            vec!["c 195:* rwm # comment"]
        );
    }

    #[test]
    fn errors_name_the_line() {
        for (text, line) in [
            ("memory: 1\nbad line\n", 2),
            ("Memory: 1\n", 1),
            ("memory 1\n", 1),
            ("a: 1\nb: 2\n[snap\n", 3),
            ("lxc.: x\n", 1),
            ("memory : 1\n", 1),
        ] {
            let e = parse_guest_config(text).unwrap_err();
            assert_eq!(e.line(), line, "{text:?}");
            assert!(e.to_string().starts_with(&format!("line {line}: ")), "{e}");
        }
    }

    #[test]
    fn edits_touch_only_the_main_section() {
        let mut cfg = parse_guest_config(VM).unwrap();
        cfg.main_set("memory", "16384");
        cfg.main_set("hostpci1", "03:00,pcie=1");
        cfg.main_add("lxc.x", "a");
        cfg.main_add("lxc.x", "b");
        let text = cfg.render();
        assert_eq!(
            text,
            "# my VM\n#second line\nboot: order=scsi0\nhostpci0: 01:00.0,pcie=1\nmemory: 16384\nparent: snap1\nhostpci1: 03:00,pcie=1\nlxc.x: a\nlxc.x: b\n\n[PENDING]\nmemory: 8192\n\n[snap1]\nhostpci0: 02:00.0\nmemory: 2048\nsnaptime: 1700000000\n"
        );
        assert!(cfg.main_remove_value("lxc.x", " a "));
        assert!(!cfg.main_remove_value("lxc.x", "zzz"));
        assert_eq!(cfg.main_get_all("lxc.x"), vec!["b"]);
        assert!(cfg.main_remove("hostpci0"));
        assert!(!cfg.main_remove("hostpci0"));
        assert_eq!(cfg.section_get("snap1", "hostpci0"), Some("02:00.0"));
        assert!(cfg.main_remove("lxc.x"));
        assert!(cfg.main_remove("hostpci1"));
        cfg.main_set("hostpci0", "01:00.0,pcie=1");
        cfg.main_set("memory", "4096");
        // Same settings again, order changed only for the re-added hostpci0.
        assert_eq!(
            cfg.render(),
            VM.replace("hostpci0: 01:00.0,pcie=1\n", "").replace(
                "parent: snap1\n",
                "parent: snap1\nhostpci0: 01:00.0,pcie=1\n"
            )
        );
    }

    #[test]
    fn insert_positions() {
        let mut cfg = parse_guest_config("").unwrap();
        cfg.main_set("memory", "1");
        assert_eq!(cfg.render(), "memory: 1\n");
        let mut cfg = parse_guest_config("memory: 1").unwrap();
        cfg.main_set("cores", "2");
        assert_eq!(cfg.render(), "memory: 1\ncores: 2\n");
        let mut cfg = parse_guest_config("# descr\n\n[snap]\nmemory: 1\n").unwrap();
        cfg.main_set("memory", "2");
        assert_eq!(cfg.render(), "# descr\nmemory: 2\n\n[snap]\nmemory: 1\n");
        let mut cfg = parse_guest_config("[snap]\nmemory: 1\n").unwrap();
        cfg.main_set("memory", "2");
        assert_eq!(cfg.render(), "memory: 2\n[snap]\nmemory: 1\n");
        let mut cfg = parse_guest_config("a: 1\n").unwrap();
        cfg.main_set("b", "x\ny");
        assert_eq!(cfg.render(), "a: 1\nb: x y\n");
    }

    #[test]
    fn duplicate_sections_read_the_later_one() {
        let cfg = parse_guest_config("a: 1\n[PENDING]\nbios: ovmf\n[PENDING]\nvga: qxl\n").unwrap();
        assert_eq!(cfg.section_get("PENDING", "bios"), None);
        assert_eq!(cfg.section_get("PENDING", "vga"), Some("qxl"));
        assert_eq!(cfg.section_keys("PENDING"), vec!["vga"]);
        assert_eq!(cfg.section_names(), vec!["PENDING", "PENDING"]);
    }

    #[test]
    fn free_indexes() {
        let cfg =
            parse_guest_config("hostpci0: 01:00.0\nhostpci2: 02:00.0\n[s]\nhostpci1: 03:00.0\n")
                .unwrap();
        assert_eq!(free_hostpci_index(&cfg), Some(1));
        let all: String = (0..16).map(|i| format!("hostpci{i}: 01:00.0\n")).collect();
        assert_eq!(free_hostpci_index(&parse_guest_config(&all).unwrap()), None);
        let cfg = parse_guest_config("dev0: /dev/dri/card0\ndev1: /dev/dri/renderD128\n").unwrap();
        assert_eq!(free_dev_index(&cfg), Some(2));
        let all: String = (0..256).map(|i| format!("dev{i}: /dev/null\n")).collect();
        assert_eq!(free_dev_index(&parse_guest_config(&all).unwrap()), None);
    }

    #[test]
    fn hostpci_grammar() {
        let h = parse_hostpci("d0:13.0,pcie=1").unwrap();
        assert_eq!(h.host, vec!["d0:13.0"]);
        assert_eq!(h.mapping, None);
        assert_eq!(h.options, vec![("pcie".into(), "1".into())]);
        let h = parse_hostpci("host=0000:01:00.0;0000:01:00.1,x-vga=1").unwrap();
        assert_eq!(h.host, vec!["0000:01:00.0", "0000:01:00.1"]);
        assert_eq!(render_hostpci(&h), "0000:01:00.0;0000:01:00.1,x-vga=1");
        let h = parse_hostpci("mapping=someGpu,mdev=some-model").unwrap();
        assert_eq!(h.mapping.as_deref(), Some("someGpu"));
        assert!(h.host.is_empty());
        assert_eq!(render_hostpci(&h), "mapping=someGpu,mdev=some-model");
        for bad in [
            "",
            "01:00.0,mapping=x",
            "pcie=1",
            "01:00.0,01:00.1",
            "01:00.0,pcie=1,pcie=0",
            "01:00.0,pcie=",
            "01:00.0,,pcie=1",
            "1:00.0",
            "01:00.00",
            "01:0G.0",
            "0000:01:00:00.0",
            "01:00.0;",
            "mapping=1abc",
        ] {
            assert!(parse_hostpci(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn lxc_dev_grammar() {
        let d = parse_lxc_dev("/dev/dri/renderD128,gid=104").unwrap();
        assert_eq!(d.path, "/dev/dri/renderD128");
        assert_eq!(d.gid, Some(104));
        assert_eq!(render_lxc_dev(&d), "/dev/dri/renderD128,gid=104");
        let d = parse_lxc_dev("path=/dev/kfd,deny-write=1,mode=0660,uid=0,gid=993").unwrap();
        assert_eq!(
            d,
            LxcDev {
                path: "/dev/kfd".into(),
                gid: Some(993),
                uid: Some(0),
                mode: Some("0660".into()),
                deny_write: true
            }
        );
        assert_eq!(
            render_lxc_dev(&d),
            "/dev/kfd,uid=0,gid=993,mode=0660,deny-write=1"
        );
        assert!(!parse_lxc_dev("/dev/x,deny-write=no").unwrap().deny_write);
        for bad in [
            "",
            "gid=1",
            "/tmp/x",
            "/dev/../etc/passwd",
            "/dev/./x",
            "/dev/x,gid=-1",
            "/dev/x,mode=660",
            "/dev/x,mode=0800",
            "/dev/x,foo=1",
            "/dev/x,deny-write=maybe",
            "/dev/x,path=/dev/y",
        ] {
            assert!(parse_lxc_dev(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn user_values_stay_one_option() {
        for good in ["navi21.rom", "vbios_2-x.bin", "gpu0", "Ä.rom"] {
            assert!(check_property_value(good).is_ok(), "{good:?}");
            assert!(check_rom_file_name(good).is_ok(), "{good:?}");
        }
        for bad in [
            "", "a,b", "a;b", "a=b", "a b", "a\tb", "a\nb", "a\u{7f}", "a\u{85}b",
        ] {
            assert!(check_property_value(bad).is_err(), "{bad:?}");
        }
        for bad in ["/etc/passwd", "../x", "sub/x.rom", ".", ".."] {
            assert!(check_rom_file_name(bad).is_err(), "{bad:?}");
        }
        for (id, ok) in [
            ("gpu", true),
            ("G-1_x", true),
            ("g", false),
            ("1g", false),
            ("g.1", false),
            ("", false),
        ] {
            assert_eq!(check_config_id(id).is_ok(), ok, "{id:?}");
        }
        let cfg = parse_guest_config("# d\nlock: backup\nmemory: 1\n[snap]\nlock: x\n").unwrap();
        assert_eq!(cfg.main_line("lock"), Some(2));
        assert_eq!(cfg.main_line("memory"), Some(3));
        assert_eq!(cfg.main_line("cores"), None);
    }

    #[test]
    fn pci_mapping_file_keeps_its_bytes() {
        let text = "# hand-written\ngpu\n\tmap node=a,path=0000:01:00,id=10de:2204\n  # note\n\tdescription RTX\n\n\nnic\n\tmap node=a,path=0000:07:00.0,id=8086:10ed";
        let mut f = parse_pci_mapping_file(text).unwrap();
        assert_eq!(f.render(), text);
        f.add_map("nic", vec![("node".into(), "b".into())]);
        assert_eq!(f.render(), format!("{text}\n\tmap node=b\n"));
        f.add_map("gpu", vec![("node".into(), "b".into())]);
        assert!(f
            .render()
            .contains("\tdescription RTX\n\tmap node=b\n\n\nnic\n"));
        f.add_map("new1", vec![("node".into(), "c".into())]);
        assert!(f
            .render()
            .ends_with("\tmap node=b\n\nnew1\n\tmap node=c\n\n"));
        let m = parse_pci_mappings(&f.render()).unwrap();
        assert_eq!(
            m.iter().map(|m| m.maps.len()).collect::<Vec<_>>(),
            [2, 2, 1]
        );
        // A property goes after the mapping's last line, before the empty line.
        assert!(f.add_property("new1", "mdev", "1"));
        assert!(!f.add_property("absent", "mdev", "1"));
        assert!(f.render().ends_with("\nnew1\n\tmap node=c\n\tmdev 1\n\n"));
        let m = parse_pci_mappings(&f.render()).unwrap();
        assert!(m[2].flag("mdev") && !m[0].flag("mdev"));
    }

    #[test]
    fn pci_mappings() {
        let text = "# comment\ngpu\n\tmap node=pve1,path=0000:01:00.0,id=10de:2204,subsystem-id=1458:403b,iommugroup=14\n\tmap node=pve2,path=0000:02:00,id=10de:2204\n\tdescription RTX 3090\n\tmdev 1\n\nnic\n\tmap node=pve1,path=0000:07:10.0;0000:07:10.1,id=8086:10ed\n\n";
        let m = parse_pci_mappings(text).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].id, "gpu");
        assert_eq!(m[0].description.as_deref(), Some("RTX 3090"));
        assert_eq!(m[0].maps.len(), 2);
        assert_eq!(m[0].maps[0][4], ("iommugroup".into(), "14".into()));
        assert_eq!(m[0].other, vec![("mdev".into(), "1".into())]);
        assert_eq!(m[1].maps[0][1].1, "0000:07:10.0;0000:07:10.1");
        let rendered = render_pci_mappings(&m);
        assert_eq!(rendered, text.trim_start_matches("# comment\n"));
        assert_eq!(parse_pci_mappings(&rendered).unwrap(), m);
        assert!(parse_pci_mappings("").unwrap().is_empty());
        // No trailing empty line still ends the last mapping.
        assert_eq!(
            parse_pci_mappings("a1\n\tmap node=n,path=01:00.0,id=1:2")
                .unwrap()
                .len(),
            1
        );

        for (bad, line) in [
            ("pci: gpu\n\tmap node=a,path=01:00.0,id=10de:2204\n", 1),
            ("\tmap node=a\n", 1),
            ("gpu\n\tmap node=a\nnic\n", 3),
            ("gpu\n\tmap node=a,path\n", 2),
            ("gpu\n\n gpu\n", 3),
            ("gpu\n\ngpu\n", 3),
            ("gpu\n\tdescription a\n\tdescription b\n", 3),
        ] {
            let e = parse_pci_mappings(bad).unwrap_err();
            assert_eq!(e.line(), line, "{bad:?}: {e}");
        }
    }
}
