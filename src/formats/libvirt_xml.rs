//! libvirt domain XML: read the few facts passthru needs and edit a domain by splicing byte
//! ranges, so everything outside an edit stays byte-identical (comments, quoting style,
//! attribute order, blank lines). Nothing here builds or re-serialises a DOM: a small scanner
//! finds each element's byte offsets, and edits insert or replace text at those offsets.
//!
//! The element and attribute names follow libvirt's domain format (`formatdomain`) and the
//! RelaxNG schema `domain.rng`. Inside `<hostdev>` the schema accepts children in any order;
//! new elements are written in the order libvirt itself writes them back (`<source>`,
//! `<rom>`, guest `<address>`), so a later `virsh dumpxml` does not reorder them.

use std::collections::BTreeSet;
use std::fmt;

/// A PCI address: `DDDD:BB:SS.F`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PciAddr {
    /// 32 bits, as libvirt's schema has it (`pciDomain` = uint32 in `basictypes.rng`): Intel
    /// VMD puts devices in domains from `0x10000` up.
    pub domain: u32,
    pub bus: u8,
    pub slot: u8,
    pub function: u8,
}

impl fmt::Display for PciAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.slot, self.function
        )
    }
}

/// One host PCI function to hand to a guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostdevSpec {
    /// The host function.
    pub source: PciAddr,
    /// Guest address; functions of one card share bus/slot.
    pub guest: Option<PciAddr>,
    /// `multifunction='on'` on the guest address (function 0 of a multi-function card).
    pub multifunction: bool,
    /// `<rom file='...'/>`.
    pub rom_file: Option<String>,
}

/// Why a domain XML could not be read or edited. Offsets are byte offsets into the input;
/// lines count from 1.
#[derive(Debug, thiserror::Error)]
pub enum XmlEditError {
    /// The text is not well-formed XML where the scanner looked.
    #[error("line {line} (byte {offset}): expected {expected}")]
    Syntax {
        offset: usize,
        line: usize,
        expected: String,
    },
    /// The document is XML but lacks an element the edit needs.
    #[error("line {line} (byte {offset}): expected {expected}")]
    Missing {
        offset: usize,
        line: usize,
        expected: String,
    },
    /// A value that the libvirt schema would reject.
    #[error("invalid {what} '{value}': {reason}")]
    InvalidValue {
        what: &'static str,
        value: String,
        reason: &'static str,
    },
    /// The document is in a state the edit refuses to change silently.
    #[error("line {line} (byte {offset}): {reason}")]
    Conflict {
        offset: usize,
        line: usize,
        reason: String,
    },
}

// ---------------------------------------------------------------------------------------------
// Scanner
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Attr {
    name: (usize, usize),
    /// The value between the quotes, raw (entities not expanded).
    value: (usize, usize),
}

#[derive(Debug, Clone)]
struct Elem {
    name: (usize, usize),
    /// Offset of `<` of the start tag.
    start: usize,
    /// Offset just after the start tag's `>`.
    start_end: usize,
    /// Offset of `<` of the end tag (== `end` when self-closing).
    close_start: usize,
    /// Offset just after the element's last `>`.
    end: usize,
    self_closing: bool,
    parent: Option<usize>,
    children: Vec<usize>,
    attrs: Vec<Attr>,
}

struct Doc<'a> {
    src: &'a str,
    elems: Vec<Elem>,
    root: usize,
}

fn line_of(src: &str, offset: usize) -> usize {
    let end = offset.min(src.len());
    src.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

fn syntax(src: &str, offset: usize, expected: impl Into<String>) -> XmlEditError {
    XmlEditError::Syntax {
        offset,
        line: line_of(src, offset),
        expected: expected.into(),
    }
}

fn is_name_byte(b: u8) -> bool {
    !matches!(
        b,
        b' ' | b'\t' | b'\r' | b'\n' | b'/' | b'>' | b'=' | b'<' | b'"' | b'\''
    )
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn find_from(src: &str, from: usize, pat: &str) -> Option<usize> {
    src.get(from..)?.find(pat).map(|i| i + from)
}

impl<'a> Doc<'a> {
    fn parse(src: &'a str) -> Result<Doc<'a>, XmlEditError> {
        let b = src.as_bytes();
        let mut elems: Vec<Elem> = Vec::new();
        let mut stack: Vec<usize> = Vec::new();
        let mut root: Option<usize> = None;
        let mut i = 0;
        while i < b.len() {
            if b[i] != b'<' {
                if stack.is_empty() && !is_ws(b[i]) && !(i == 0 && src.starts_with('\u{feff}')) {
                    return Err(syntax(src, i, "'<' (text outside the root element)"));
                }
                i += src[i..].find('<').unwrap_or(b.len() - i);
                continue;
            }
            let rest = &src[i..];
            if rest.starts_with("<!--") {
                let end = find_from(src, i + 4, "-->")
                    .ok_or_else(|| syntax(src, i, "'-->' closing this comment"))?;
                i = end + 3;
            } else if rest.starts_with("<![CDATA[") {
                if stack.is_empty() {
                    return Err(syntax(src, i, "CDATA only inside an element"));
                }
                let end = find_from(src, i + 9, "]]>")
                    .ok_or_else(|| syntax(src, i, "']]>' closing this CDATA section"))?;
                i = end + 3;
            } else if rest.starts_with("<?") {
                let end = find_from(src, i + 2, "?>")
                    .ok_or_else(|| syntax(src, i, "'?>' closing this processing instruction"))?;
                i = end + 2;
            } else if rest.starts_with("<!") {
                i = skip_declaration(src, i)?;
            } else if rest.starts_with("</") {
                let name_start = i + 2;
                let mut j = name_start;
                while j < b.len() && is_name_byte(b[j]) {
                    j += 1;
                }
                let name = &src[name_start..j];
                while j < b.len() && is_ws(b[j]) {
                    j += 1;
                }
                if j >= b.len() || b[j] != b'>' {
                    return Err(syntax(src, j, format!("'>' ending </{name}")));
                }
                let open = stack.pop().ok_or_else(|| {
                    syntax(
                        src,
                        i,
                        format!("no end tag here: </{name}> has no start tag"),
                    )
                })?;
                let open_name = &src[elems[open].name.0..elems[open].name.1];
                if open_name != name {
                    return Err(syntax(
                        src,
                        i,
                        format!(
                            "</{open_name}> (opened at line {}), found </{name}>",
                            line_of(src, elems[open].start)
                        ),
                    ));
                }
                elems[open].close_start = i;
                elems[open].end = j + 1;
                i = j + 1;
            } else {
                if stack.is_empty() && root.is_some() {
                    return Err(syntax(src, i, "end of document after the root element"));
                }
                let (elem, next) = scan_start_tag(src, i)?;
                let idx = elems.len();
                let mut elem = elem;
                elem.parent = stack.last().copied();
                if let Some(&p) = stack.last() {
                    elems[p].children.push(idx);
                } else {
                    root = Some(idx);
                }
                let self_closing = elem.self_closing;
                elems.push(elem);
                if !self_closing {
                    stack.push(idx);
                }
                i = next;
            }
        }
        if let Some(&open) = stack.last() {
            let e = &elems[open];
            return Err(syntax(
                src,
                src.len(),
                format!(
                    "</{}> closing the element opened at line {}",
                    &src[e.name.0..e.name.1],
                    line_of(src, e.start)
                ),
            ));
        }
        let root = root.ok_or_else(|| syntax(src, src.len(), "a root element"))?;
        Ok(Doc { src, elems, root })
    }

    fn name(&self, e: usize) -> &'a str {
        let (s, t) = self.elems[e].name;
        &self.src[s..t]
    }

    fn children_named(&self, e: usize, name: &'a str) -> impl Iterator<Item = usize> + '_ {
        self.elems[e]
            .children
            .iter()
            .copied()
            .filter(move |&c| self.name(c) == name)
    }

    fn child(&self, e: usize, name: &'a str) -> Option<usize> {
        self.children_named(e, name).next()
    }

    fn attr_range(&self, e: usize, name: &str) -> Option<(usize, usize)> {
        self.elems[e]
            .attrs
            .iter()
            .find(|a| &self.src[a.name.0..a.name.1] == name)
            .map(|a| a.value)
    }

    fn attr(&self, e: usize, name: &str) -> Option<String> {
        self.attr_range(e, name)
            .map(|(s, t)| unescape(&self.src[s..t]))
    }

    /// The `<domain>` root, or why there is none.
    fn domain(&self) -> Result<usize, XmlEditError> {
        if self.name(self.root) == "domain" {
            Ok(self.root)
        } else {
            let start = self.elems[self.root].start;
            Err(XmlEditError::Missing {
                offset: start,
                line: line_of(self.src, start),
                expected: format!("root element <domain>, found <{}>", self.name(self.root)),
            })
        }
    }

    fn missing(&self, parent: usize, expected: &str) -> XmlEditError {
        let start = self.elems[parent].start;
        XmlEditError::Missing {
            offset: start,
            line: line_of(self.src, start),
            expected: format!("{expected} in <{}>", self.name(parent)),
        }
    }

    /// Text content of an element (character data and CDATA; comments dropped).
    fn text(&self, e: usize) -> String {
        let el = &self.elems[e];
        if el.self_closing {
            return String::new();
        }
        let inner = &self.src[el.start_end..el.close_start];
        let mut out = String::new();
        let mut rest = inner;
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix("<!--") {
                rest = r.find("-->").map_or("", |k| &r[k + 3..]);
            } else if let Some(r) = rest.strip_prefix("<![CDATA[") {
                let k = r.find("]]>").unwrap_or(r.len());
                out.push_str(&r[..k]);
                rest = r.get(k + 3..).unwrap_or("");
            } else if rest.starts_with('<') {
                rest = rest.find('>').map_or("", |k| &rest[k + 1..]);
            } else {
                let k = rest.find('<').unwrap_or(rest.len());
                out.push_str(&unescape(&rest[..k]));
                rest = &rest[k..];
            }
        }
        out
    }

    /// Offset of the start of the line holding `pos`.
    fn line_start(&self, pos: usize) -> usize {
        self.src[..pos].rfind('\n').map_or(0, |k| k + 1)
    }

    /// The whitespace before `pos` on its line, when only whitespace precedes it there.
    fn lead_ws(&self, pos: usize) -> Option<&'a str> {
        let ls = self.line_start(pos);
        let lead = &self.src[ls..pos];
        lead.bytes()
            .all(|b| b == b' ' || b == b'\t')
            .then_some(lead)
    }

    /// The end of the line after `pos` (just past its newline) when only whitespace follows.
    fn trail_ws_end(&self, pos: usize) -> Option<usize> {
        let rest = &self.src[pos..];
        let nl = rest.find('\n').unwrap_or(rest.len());
        rest[..nl]
            .bytes()
            .all(|b| b == b' ' || b == b'\t' || b == b'\r')
            .then_some(pos + (nl + 1).min(rest.len()))
    }
}

/// Skips `<!DOCTYPE ...>` (with an internal subset) or another `<!` declaration.
fn skip_declaration(src: &str, from: usize) -> Result<usize, XmlEditError> {
    let b = src.as_bytes();
    let mut depth = 0usize;
    let mut quote: Option<u8> = None;
    let mut j = from + 2;
    while j < b.len() {
        let c = b[j];
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                b'"' | b'\'' => quote = Some(c),
                b'[' => depth += 1,
                b']' => depth = depth.saturating_sub(1),
                b'>' if depth == 0 => return Ok(j + 1),
                _ => {}
            },
        }
        j += 1;
    }
    Err(syntax(src, from, "'>' closing this declaration"))
}

/// Scans a start tag at `from` (which holds `<`); returns the element and the offset after it.
fn scan_start_tag(src: &str, from: usize) -> Result<(Elem, usize), XmlEditError> {
    let b = src.as_bytes();
    let name_start = from + 1;
    let mut j = name_start;
    while j < b.len() && is_name_byte(b[j]) {
        j += 1;
    }
    if j == name_start {
        return Err(syntax(src, from, "an element name after '<'"));
    }
    let name = (name_start, j);
    let mut attrs = Vec::new();
    loop {
        let before_ws = j;
        while j < b.len() && is_ws(b[j]) {
            j += 1;
        }
        if j >= b.len() {
            return Err(syntax(src, from, "'>' ending this start tag"));
        }
        match b[j] {
            b'>' => {
                let elem = Elem {
                    name,
                    start: from,
                    start_end: j + 1,
                    close_start: j + 1,
                    end: j + 1,
                    self_closing: false,
                    parent: None,
                    children: Vec::new(),
                    attrs,
                };
                return Ok((elem, j + 1));
            }
            b'/' => {
                if b.get(j + 1) != Some(&b'>') {
                    return Err(syntax(src, j, "'/>'"));
                }
                let elem = Elem {
                    name,
                    start: from,
                    start_end: j + 2,
                    close_start: j + 2,
                    end: j + 2,
                    self_closing: true,
                    parent: None,
                    children: Vec::new(),
                    attrs,
                };
                return Ok((elem, j + 2));
            }
            _ => {}
        }
        if j == before_ws {
            return Err(syntax(src, j, "whitespace before an attribute"));
        }
        let an_start = j;
        while j < b.len() && is_name_byte(b[j]) {
            j += 1;
        }
        if j == an_start {
            return Err(syntax(src, j, "an attribute name, '>' or '/>'"));
        }
        let an = (an_start, j);
        while j < b.len() && is_ws(b[j]) {
            j += 1;
        }
        if b.get(j) != Some(&b'=') {
            return Err(syntax(src, j, "'=' after the attribute name"));
        }
        j += 1;
        while j < b.len() && is_ws(b[j]) {
            j += 1;
        }
        let q = match b.get(j) {
            Some(&q @ (b'"' | b'\'')) => q,
            _ => return Err(syntax(src, j, "a quoted attribute value")),
        };
        let v_start = j + 1;
        let v_end = src[v_start..]
            .bytes()
            .position(|c| c == q)
            .map(|k| k + v_start)
            .ok_or_else(|| syntax(src, j, "the closing quote of this attribute value"))?;
        if src[v_start..v_end].contains('<') {
            return Err(syntax(src, v_start, "no '<' inside an attribute value"));
        }
        attrs.push(Attr {
            name: an,
            value: (v_start, v_end),
        });
        j = v_end + 1;
    }
}

fn unescape(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(k) = rest.find('&') {
        out.push_str(&rest[..k]);
        let after = &rest[k + 1..];
        let Some(semi) = after.find(';') else {
            out.push_str(&rest[k..]);
            return out;
        };
        let ent = &after[..semi];
        let ch = match ent {
            "lt" => Some('<'),
            "gt" => Some('>'),
            "amp" => Some('&'),
            "apos" => Some('\''),
            "quot" => Some('"'),
            _ => ent
                .strip_prefix("#x")
                .or_else(|| ent.strip_prefix("#X"))
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| ent.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match ch {
            Some(c) => {
                out.push(c);
                rest = &after[semi + 1..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Escapes text for a single-quoted attribute value.
fn escape_attr(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

fn parse_num(s: &str) -> Option<u32> {
    let s = s.trim();
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// Reads a PCI address from an `<address>` element; domain and function default to 0.
fn pci_addr_of(doc: &Doc<'_>, e: usize) -> Option<PciAddr> {
    let num = |name: &str| doc.attr(e, name).map(|v| parse_num(&v));
    let domain = match num("domain") {
        None => 0,
        Some(v) => v?,
    };
    let function = match num("function") {
        None => 0,
        Some(v) => u8::try_from(v?).ok().filter(|&f| f < 8)?,
    };
    Some(PciAddr {
        domain,
        bus: u8::try_from(num("bus")??).ok()?,
        slot: u8::try_from(num("slot")??).ok().filter(|&s| s < 32)?,
        function,
    })
}

// ---------------------------------------------------------------------------------------------
// Layout: indentation and newlines of the document, and splicing
// ---------------------------------------------------------------------------------------------

struct Layout {
    nl: &'static str,
    unit: String,
}

impl Layout {
    fn of(doc: &Doc<'_>) -> Layout {
        let nl = match doc.src.find('\n') {
            Some(k) if k > 0 && doc.src.as_bytes()[k - 1] == b'\r' => "\r\n",
            _ => "\n",
        };
        // The indent unit: how much deeper the root's first child sits than the root.
        let root = doc.root;
        let unit = doc.elems[root]
            .children
            .first()
            .and_then(|&c| {
                let outer = doc.lead_ws(doc.elems[root].start)?;
                let inner = doc.lead_ws(doc.elems[c].start)?;
                inner.strip_prefix(outer).filter(|u| !u.is_empty())
            })
            .unwrap_or("  ")
            .to_string();
        Layout { nl, unit }
    }

    /// Indent of element `e`'s own line; when `e` shares its line with text before it, the
    /// parent's indent plus one unit.
    fn indent_of(&self, doc: &Doc<'_>, e: usize) -> String {
        if let Some(ws) = doc.lead_ws(doc.elems[e].start) {
            return ws.to_string();
        }
        match doc.elems[e].parent {
            Some(p) => format!("{}{}", self.indent_of(doc, p), self.unit),
            None => String::new(),
        }
    }

    /// Indent for children of `e`: that of its first child on a line of its own, else one
    /// unit deeper than `e`.
    fn child_indent(&self, doc: &Doc<'_>, e: usize) -> String {
        doc.elems[e]
            .children
            .iter()
            .find_map(|&c| doc.lead_ws(doc.elems[c].start))
            .map(str::to_string)
            .unwrap_or_else(|| format!("{}{}", self.indent_of(doc, e), self.unit))
    }

    /// Renders `(depth, text)` lines, each ending in a newline.
    fn render(&self, base: &str, lines: &[(usize, String)]) -> String {
        let mut out = String::new();
        for (depth, text) in lines {
            out.push_str(base);
            for _ in 0..*depth {
                out.push_str(&self.unit);
            }
            out.push_str(text);
            out.push_str(self.nl);
        }
        out
    }
}

/// A replacement of `src[start..end]`.
struct Splice {
    start: usize,
    end: usize,
    text: String,
}

fn apply(src: &str, mut splices: Vec<Splice>) -> String {
    // Stable: insertions at one offset keep the order they were planned in.
    splices.sort_by_key(|s| s.start);
    let mut out =
        String::with_capacity(src.len() + splices.iter().map(|s| s.text.len()).sum::<usize>());
    let mut pos = 0;
    for s in splices {
        out.push_str(&src[pos..s.start]);
        out.push_str(&s.text);
        pos = s.end;
    }
    out.push_str(&src[pos..]);
    out
}

/// Appends `lines` (depths relative to the children of `parent`) as the last children of
/// `parent`, on lines of their own. A self-closing parent gets an end tag.
fn append_children(
    doc: &Doc<'_>,
    lay: &Layout,
    parent: usize,
    lines: &[(usize, String)],
) -> Splice {
    let el = &doc.elems[parent];
    let indent = lay.child_indent(doc, parent);
    let block = lay.render(&indent, lines);
    let parent_indent = lay.indent_of(doc, parent);
    if el.self_closing {
        // `<x .../>` becomes `<x ...>` + children + `</x>`.
        return Splice {
            start: el.end - 2,
            end: el.end,
            text: format!(">{}{block}{parent_indent}</{}>", lay.nl, doc.name(parent)),
        };
    }
    match doc.lead_ws(el.close_start) {
        // The end tag stands on its own line: insert whole lines before that line.
        Some(_) => {
            let at = doc.line_start(el.close_start);
            Splice {
                start: at,
                end: at,
                text: block,
            }
        }
        None => Splice {
            start: el.close_start,
            end: el.close_start,
            text: format!("{}{block}{parent_indent}", lay.nl),
        },
    }
}

/// Inserts `lines` as siblings right after element `e`, at `e`'s indent.
fn insert_after(doc: &Doc<'_>, lay: &Layout, e: usize, lines: &[(usize, String)]) -> Splice {
    let el = &doc.elems[e];
    let indent = lay.indent_of(doc, e);
    let block = lay.render(&indent, lines);
    match doc.trail_ws_end(el.end) {
        Some(at) if doc.src[..at].ends_with('\n') => Splice {
            start: at,
            end: at,
            text: block,
        },
        _ => {
            let trimmed = block.strip_suffix(lay.nl).unwrap_or(&block);
            Splice {
                start: el.end,
                end: el.end,
                text: format!("{}{trimmed}", lay.nl),
            }
        }
    }
}

/// Sets attribute `name` of `e` to `value` (escaped here): replaces the value when present,
/// else adds ` name='value'` at the end of the start tag.
fn set_attr(doc: &Doc<'_>, e: usize, name: &str, value: &str) -> Option<Splice> {
    match doc.attr_range(e, name) {
        Some((s, t)) => (unescape(&doc.src[s..t]) != value).then(|| Splice {
            start: s,
            end: t,
            text: escape_attr(value),
        }),
        None => {
            let el = &doc.elems[e];
            let tag_close = if el.self_closing {
                el.start_end - 2
            } else {
                el.start_end - 1
            };
            // After the last attribute (or the name), before any whitespace and `/>`.
            let at = el
                .attrs
                .last()
                .map_or(el.name.1, |a| a.value.1 + 1)
                .min(tag_close);
            Some(Splice {
                start: at,
                end: at,
                text: format!(" {name}='{}'", escape_attr(value)),
            })
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

/// The domain's `<name>`, or `None` when the XML is not a well-formed `<domain>` with a name.
pub fn domain_name(xml: &str) -> Option<String> {
    let doc = Doc::parse(xml).ok()?;
    let dom = doc.domain().ok()?;
    let name = doc.child(dom, "name")?;
    let text = doc.text(name).trim().to_string();
    (!text.is_empty()).then_some(text)
}

/// `(hostdev element, host address)` for each `<hostdev type='pci'>` in `<devices>`.
fn pci_hostdevs(doc: &Doc<'_>, devices: usize) -> Vec<(usize, PciAddr)> {
    doc.children_named(devices, "hostdev")
        .filter(|&h| doc.attr(h, "type").as_deref() == Some("pci"))
        .filter_map(|h| {
            let source = doc.child(h, "source")?;
            let addr = doc.child(source, "address")?;
            Some((h, pci_addr_of(doc, addr)?))
        })
        .collect()
}

/// Host addresses of the `<hostdev type='pci'>` devices, in document order. A document that
/// does not parse has none.
pub fn hostdev_sources(xml: &str) -> Vec<PciAddr> {
    let Ok(doc) = Doc::parse(xml) else {
        return Vec::new();
    };
    let Some(devices) = doc.domain().ok().and_then(|d| doc.child(d, "devices")) else {
        return Vec::new();
    };
    pci_hostdevs(&doc, devices)
        .into_iter()
        .map(|(_, a)| a)
        .collect()
}

/// Guest PCI slots already used on bus `bus` of domain 0 (any `<address type='pci' .../>` in
/// `<devices>`), sorted and without duplicates. Host addresses (an `<address>` inside
/// `<source>`, as in `<interface type='hostdev'>`) are not guest slots and are skipped.
/// Slots that libvirt reserves implicitly (the host bridge, the PIIX3/ICH9 functions) are
/// only reported when the XML names them.
pub fn used_guest_slots(xml: &str, bus: u8) -> Vec<u8> {
    let Ok(doc) = Doc::parse(xml) else {
        return Vec::new();
    };
    let Some(devices) = doc.domain().ok().and_then(|d| doc.child(d, "devices")) else {
        return Vec::new();
    };
    let mut slots = BTreeSet::new();
    let mut stack = vec![devices];
    while let Some(e) = stack.pop() {
        for &c in &doc.elems[e].children {
            if doc.name(c) == "source" {
                continue;
            }
            if doc.name(c) == "address" && doc.attr(c, "type").as_deref() == Some("pci") {
                if let Some(a) = pci_addr_of(&doc, c) {
                    if a.domain == 0 && a.bus == bus {
                        slots.insert(a.slot);
                    }
                }
            }
            stack.push(c);
        }
    }
    slots.into_iter().collect()
}

fn pci_attrs(a: &PciAddr) -> String {
    format!(
        "domain='0x{:04x}' bus='0x{:02x}' slot='0x{:02x}' function='0x{:x}'",
        a.domain, a.bus, a.slot, a.function
    )
}

fn hostdev_lines(spec: &HostdevSpec) -> Vec<(usize, String)> {
    let mut lines = vec![
        (
            0,
            "<hostdev mode='subsystem' type='pci' managed='yes'>".to_string(),
        ),
        (1, "<source>".to_string()),
        (2, format!("<address {}/>", pci_attrs(&spec.source))),
        (1, "</source>".to_string()),
    ];
    if let Some(rom) = &spec.rom_file {
        lines.push((1, format!("<rom file='{}'/>", escape_attr(rom))));
    }
    if let Some(g) = &spec.guest {
        let mf = if spec.multifunction {
            " multifunction='on'"
        } else {
            ""
        };
        lines.push((1, format!("<address type='pci' {}{mf}/>", pci_attrs(g))));
    }
    lines.push((0, "</hostdev>".to_string()));
    lines
}

/// Inserts one `<hostdev mode='subsystem' type='pci' managed='yes'>` per spec whose source is
/// not already present, before `</devices>`, indented like the document's other devices.
/// All new elements form one contiguous run of text; when nothing is missing the input comes
/// back unchanged.
pub fn add_hostdevs(xml: &str, devs: &[HostdevSpec]) -> Result<String, XmlEditError> {
    let doc = Doc::parse(xml)?;
    let dom = doc.domain()?;
    let devices = doc
        .child(dom, "devices")
        .ok_or_else(|| doc.missing(dom, "<devices>"))?;
    let mut present: BTreeSet<PciAddr> = pci_hostdevs(&doc, devices)
        .into_iter()
        .map(|(_, a)| a)
        .collect();
    let mut lines = Vec::new();
    for spec in devs {
        if let Some(rom) = &spec.rom_file {
            if rom.is_empty() {
                return Err(XmlEditError::InvalidValue {
                    what: "rom file",
                    value: rom.clone(),
                    reason: "the path is empty",
                });
            }
        }
        if present.insert(spec.source) {
            lines.extend(hostdev_lines(spec));
        }
    }
    if lines.is_empty() {
        return Ok(xml.to_string());
    }
    let lay = Layout::of(&doc);
    Ok(apply(
        xml,
        vec![append_children(&doc, &lay, devices, &lines)],
    ))
}

/// Removes the `<hostdev>` elements (and the whitespace line they stood on) with these
/// sources. Sources that are not present are ignored; a domain without `<devices>` comes back
/// unchanged.
pub fn remove_hostdevs(xml: &str, sources: &[PciAddr]) -> Result<String, XmlEditError> {
    let doc = Doc::parse(xml)?;
    let dom = doc.domain()?;
    let Some(devices) = doc.child(dom, "devices") else {
        return Ok(xml.to_string());
    };
    let splices = pci_hostdevs(&doc, devices)
        .into_iter()
        .filter(|(_, a)| sources.contains(a))
        .map(|(h, _)| {
            let el = &doc.elems[h];
            match (doc.lead_ws(el.start), doc.trail_ws_end(el.end)) {
                (Some(_), Some(line_end)) => Splice {
                    start: doc.line_start(el.start),
                    end: line_end,
                    text: String::new(),
                },
                _ => Splice {
                    start: el.start,
                    end: el.end,
                    text: String::new(),
                },
            }
        })
        .collect();
    Ok(apply(xml, splices))
}

fn check_vendor_id(v: &str) -> Result<(), XmlEditError> {
    let bad = |reason| {
        Err(XmlEditError::InvalidValue {
            what: "Hyper-V vendor_id",
            value: v.to_string(),
            reason,
        })
    };
    if v.is_empty() {
        return bad("it is empty");
    }
    if v.chars().count() > 12 {
        return bad("libvirt allows at most 12 characters");
    }
    if v.contains(',') {
        return bad("libvirt does not allow ',' (QEMU would split the option there)");
    }
    if v.chars().any(|c| c.is_control()) {
        return bad("it holds a control character");
    }
    Ok(())
}

/// Ensures `<features><kvm><hidden state='on'/></kvm></features>` and, when `vendor_id` is
/// `Some`, `<hyperv><vendor_id state='on' value='...'/></hyperv>` (inside `<features>`,
/// creating missing elements; existing ones are kept and only what is missing is added).
///
/// An existing `<hidden>` or `<vendor_id>` keeps its place and other attributes; only its
/// `state` (and `value`) attribute is set when it differs. A missing `<features>` is placed
/// right after `<os>`. `<hyperv mode='passthrough'>` cannot carry `<vendor_id>` in libvirt's
/// schema, so asking for a vendor id there is an [`XmlEditError::Conflict`].
pub fn set_hidden_features(xml: &str, vendor_id: Option<&str>) -> Result<String, XmlEditError> {
    if let Some(v) = vendor_id {
        check_vendor_id(v)?;
    }
    let doc = Doc::parse(xml)?;
    let dom = doc.domain()?;
    let lay = Layout::of(&doc);
    let hidden_line = "<hidden state='on'/>".to_string();
    let vendor_line = |v: &str| format!("<vendor_id state='on' value='{}'/>", escape_attr(v));

    let Some(features) = doc.child(dom, "features") else {
        let mut lines = vec![(0, "<features>".to_string())];
        if let Some(v) = vendor_id {
            lines.push((1, "<hyperv>".to_string()));
            lines.push((2, vendor_line(v)));
            lines.push((1, "</hyperv>".to_string()));
        }
        lines.push((1, "<kvm>".to_string()));
        lines.push((2, hidden_line));
        lines.push((1, "</kvm>".to_string()));
        lines.push((0, "</features>".to_string()));
        let splice = match doc.child(dom, "os") {
            Some(os) => insert_after(&doc, &lay, os, &lines),
            None => append_children(&doc, &lay, dom, &lines),
        };
        return Ok(apply(xml, vec![splice]));
    };

    let mut splices = Vec::new();
    let mut new_children: Vec<(usize, String)> = Vec::new();

    if let Some(v) = vendor_id {
        match doc.child(features, "hyperv") {
            Some(hv) => {
                if doc.attr(hv, "mode").as_deref() == Some("passthrough") {
                    let start = doc.elems[hv].start;
                    return Err(XmlEditError::Conflict {
                        offset: start,
                        line: line_of(xml, start),
                        reason: "<hyperv mode='passthrough'> takes no <vendor_id> (libvirt's \
                                 schema allows children only in mode='custom')"
                            .to_string(),
                    });
                }
                match doc.child(hv, "vendor_id") {
                    Some(vid) => {
                        splices.extend(set_attr(&doc, vid, "state", "on"));
                        splices.extend(set_attr(&doc, vid, "value", v));
                    }
                    None => splices.push(append_children(&doc, &lay, hv, &[(0, vendor_line(v))])),
                }
            }
            None => {
                new_children.push((0, "<hyperv>".to_string()));
                new_children.push((1, vendor_line(v)));
                new_children.push((0, "</hyperv>".to_string()));
            }
        }
    }

    match doc.child(features, "kvm") {
        Some(kvm) => match doc.child(kvm, "hidden") {
            Some(hidden) => splices.extend(set_attr(&doc, hidden, "state", "on")),
            None => splices.push(append_children(&doc, &lay, kvm, &[(0, hidden_line)])),
        },
        None => {
            new_children.push((0, "<kvm>".to_string()));
            new_children.push((1, hidden_line));
            new_children.push((0, "</kvm>".to_string()));
        }
    }

    if !new_children.is_empty() {
        splices.push(append_children(&doc, &lay, features, &new_children));
    }
    Ok(apply(xml, splices))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scanner_offsets() {
        let x = "<domain a='x>y'><!-- </domain> --><name><![CDATA[v<m]]></name><devices/></domain>";
        let doc = Doc::parse(x).unwrap();
        assert_eq!(doc.name(doc.root), "domain");
        assert_eq!(doc.elems.len(), 3);
        assert_eq!(doc.text(1), "v<m");
        assert!(doc.elems[2].self_closing);
        assert_eq!(&x[doc.elems[2].start..doc.elems[2].end], "<devices/>");
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = Doc::parse("<domain>\n<name>x</nam>\n</domain>")
            .err()
            .unwrap();
        let msg = err.to_string();
        assert!(msg.starts_with("line 2 (byte 16)"), "{msg}");
        assert!(msg.contains("</name>"), "{msg}");
        let err = Doc::parse("<domain>\n<a b='1>\n</domain>").err().unwrap();
        assert!(err.to_string().contains("closing quote"), "{err}");
        let err = Doc::parse("<domain>\n<!-- open\n</domain>").err().unwrap();
        assert!(err.to_string().contains("-->"), "{err}");
    }

    #[test]
    fn unescape_entities() {
        assert_eq!(unescape("a&amp;b&lt;&#x41;&#66;&bogus;"), "a&b<AB&bogus;");
        assert_eq!(escape_attr("a'b&"), "a&apos;b&amp;");
    }

    #[test]
    fn pci_address_parsing() {
        let x = "<domain><devices><address type='pci' bus='0' slot='0x1f'/></devices></domain>";
        assert_eq!(used_guest_slots(x, 0), vec![0x1f]);
        let x = "<domain><devices><address type='pci' bus='0' slot='0x20'/></devices></domain>";
        assert!(used_guest_slots(x, 0).is_empty());
    }
}
