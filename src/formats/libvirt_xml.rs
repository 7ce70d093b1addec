//! libvirt domain XML: read the few facts passthru needs and edit a domain by splicing byte
//! ranges, so everything outside an edit stays byte-identical (comments, quoting style,
//! attribute order, blank lines). Nothing here re-serialises a DOM: roxmltree, a real XML
//! parser, decides what is an element, a comment, CDATA, an entity or a DOCTYPE and gives
//! each element's and attribute's byte range; edits insert or replace text at those offsets.
//! Attribute values and text are read as XML reads them (entities expanded); what is written
//! is escaped.
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
    /// The text is not well-formed XML: `expected` says what the parser expected or found.
    #[error("line {line} (byte {offset}): {expected}")]
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
// Reading: roxmltree decides what the document is; this half only records where each element
// and attribute sits, so the splicer below can edit at those offsets.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Attr<'a> {
    /// Local name; `no_ns` when the attribute is in no namespace (libvirt's are not).
    local: &'a str,
    no_ns: bool,
    /// The value as XML reads it: entities and character references expanded, whitespace
    /// normalised.
    value: String,
    /// Byte range of the raw value between the quotes.
    raw: (usize, usize),
    /// Offset just after the closing quote.
    end: usize,
}

#[derive(Debug, Clone)]
struct Elem<'a> {
    node: roxmltree::NodeId,
    /// Local name; `no_ns` when the element is in no namespace, as all of libvirt's are.
    local: &'a str,
    no_ns: bool,
    /// Byte range of the name as written in the start tag (with its prefix, if any).
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
    /// False when the element's bytes are not where the parser says (it came from expanding
    /// an entity declared in the DOCTYPE): its offsets are then not to be edited at.
    in_place: bool,
    parent: Option<usize>,
    children: Vec<usize>,
    attrs: Vec<Attr<'a>>,
}

struct Doc<'a> {
    src: &'a str,
    tree: roxmltree::Document<'a>,
    /// Elements in document order; index 0 is the root element.
    elems: Vec<Elem<'a>>,
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

/// The byte offset of roxmltree's `row:col` (col counts characters), clamped to the text.
fn offset_of(src: &str, pos: roxmltree::TextPos) -> usize {
    let mut line_start = 0;
    for _ in 1..pos.row {
        match src[line_start..].find('\n') {
            Some(k) => line_start += k + 1,
            None => return src.len(),
        }
    }
    let col = usize::try_from(pos.col)
        .unwrap_or(usize::MAX)
        .saturating_sub(1);
    src[line_start..]
        .char_indices()
        .nth(col)
        .map_or(src.len(), |(k, _)| line_start + k)
}

/// An [`XmlEditError::Syntax`] from the parser's error, at the place that explains it.
fn syntax_error(src: &str, err: &roxmltree::Error) -> XmlEditError {
    use roxmltree::Error as E;
    let message = err.to_string();
    // The line is named in front; roxmltree's own `at row:col` would say it twice.
    let message = message.replacen(&format!(" at {}", err.pos()), "", 1);
    let at = offset_of(src, err.pos());
    let (offset, expected) = match err {
        // These carry no position (1:1): they are about the end of the document.
        E::UnexpectedEndOfStream | E::UnclosedRootNode | E::NoRootNode => (
            src.len(),
            format!("expected more of the document ({message})"),
        ),
        // The parser points at the end tag's name; the tag starts two bytes earlier.
        E::UnexpectedCloseTag(open, found, _) => (
            at.checked_sub(2)
                .filter(|&s| src[s..].starts_with("</"))
                .unwrap_or(at),
            format!("expected </{open}>, found </{found}>"),
        ),
        // A `<` where the closing quote of an attribute value should be: the value was
        // opened earlier, often on another line; name the place it was opened.
        E::InvalidChar(q @ (b'\'' | b'"'), b'<', _) => {
            let quote = char::from(*q);
            match src[..at].rfind(quote) {
                Some(open) => (
                    open,
                    format!(
                        "expected the closing {quote} of this attribute value (found '<' at line {})",
                        line_of(src, at)
                    ),
                ),
                None => (at, message),
            }
        }
        _ => (at, message),
    };
    XmlEditError::Syntax {
        offset,
        line: line_of(src, offset),
        expected,
    }
}

/// Where the tags of a parsed element start and end. The parser has checked the tags, so
/// what follows `<` is the name up to whitespace, `/` or `>`, quoted values cannot hold their
/// own quote, and the end tag holds no `<` after its first byte. `None` when `range` does not
/// hold such an element: it points into an entity's replacement text, not at the element.
fn locate(src: &str, range: std::ops::Range<usize>, local: &str) -> Option<Located> {
    let b = src.as_bytes();
    let tag = src.get(range.clone())?;
    let rest = tag.strip_prefix('<')?;
    let name_len = rest
        .find(|c: char| c.is_ascii_whitespace() || c == '/' || c == '>')
        .unwrap_or(rest.len());
    let qname = &rest[..name_len];
    if qname.rsplit(':').next() != Some(local) {
        return None;
    }
    let name = (range.start + 1, range.start + 1 + name_len);
    let mut quote = None;
    let mut gt = None;
    for (k, &c) in b[name.1..range.end].iter().enumerate() {
        match (quote, c) {
            (Some(q), _) if c == q => quote = None,
            (Some(_), _) => {}
            (None, b'\'' | b'"') => quote = Some(c),
            (None, b'>') => {
                gt = Some(name.1 + k);
                break;
            }
            _ => {}
        }
    }
    let gt = gt?;
    let start_end = gt + 1;
    let self_closing = b[gt - 1] == b'/';
    let close_start = if self_closing {
        (start_end == range.end).then_some(start_end)?
    } else {
        let k = tag.rfind("</")?;
        (range.start + k >= start_end).then_some(range.start + k)?
    };
    Some(Located {
        name,
        start: range.start,
        start_end,
        close_start,
        end: range.end,
        self_closing,
    })
}

struct Located {
    name: (usize, usize),
    start: usize,
    start_end: usize,
    close_start: usize,
    end: usize,
    self_closing: bool,
}

fn elem_of<'a>(src: &'a str, n: roxmltree::Node<'_, 'a>, parent: Option<&Elem<'a>>) -> Elem<'a> {
    let local = n.tag_name().name();
    let located = locate(src, n.range(), local).filter(|l| match parent {
        // Inside its parent's content, and in place only if the parent is.
        Some(p) => p.in_place && l.start >= p.start_end && l.end <= p.close_start,
        None => true,
    });
    let in_place = located.is_some();
    let l = located.unwrap_or(Located {
        name: (0, 0),
        start: 0,
        start_end: 0,
        close_start: 0,
        end: 0,
        self_closing: false,
    });
    let attrs = n
        .attributes()
        .map(|a| {
            let raw = a.range_value();
            Attr {
                local: a.name(),
                no_ns: a.namespace().is_none(),
                value: a.value().to_string(),
                raw: (raw.start, raw.end),
                end: a.range().end,
            }
        })
        .collect();
    Elem {
        node: n.id(),
        local,
        no_ns: n.tag_name().namespace().is_none(),
        name: l.name,
        start: l.start,
        start_end: l.start_end,
        close_start: l.close_start,
        end: l.end,
        self_closing: l.self_closing,
        in_place,
        parent: None,
        children: Vec::new(),
        attrs,
    }
}

impl<'a> Doc<'a> {
    fn parse(src: &'a str) -> Result<Doc<'a>, XmlEditError> {
        // libvirt reads domains with libxml2, which accepts a DOCTYPE and expands the
        // entities it declares; roxmltree does the same when allowed (it limits expansion
        // against entity bombs).
        let opt = roxmltree::ParsingOptions {
            allow_dtd: true,
            ..roxmltree::ParsingOptions::default()
        };
        let tree =
            roxmltree::Document::parse_with_options(src, opt).map_err(|e| syntax_error(src, &e))?;
        let mut elems: Vec<Elem<'a>> = Vec::new();
        let mut stack = vec![(tree.root_element(), None::<usize>)];
        while let Some((n, parent)) = stack.pop() {
            let idx = elems.len();
            let mut elem = elem_of(src, n, parent.map(|p| &elems[p]));
            elem.parent = parent;
            elems.push(elem);
            if let Some(p) = parent {
                elems[p].children.push(idx);
            }
            // Reversed, so that children come off the stack (and get indices) in order.
            let kids: Vec<_> = n.children().filter(|c| c.is_element()).collect();
            stack.extend(kids.into_iter().rev().map(|c| (c, Some(idx))));
        }
        Ok(Doc {
            src,
            tree,
            elems,
            root: 0,
        })
    }

    /// The name as written (with its prefix), for messages and end tags.
    fn qname(&self, e: usize) -> &'a str {
        let el = &self.elems[e];
        if el.in_place {
            &self.src[el.name.0..el.name.1]
        } else {
            el.local
        }
    }

    /// Whether `e` is libvirt's element `name`: that local name, in no namespace.
    fn is(&self, e: usize, name: &str) -> bool {
        let el = &self.elems[e];
        el.no_ns && el.local == name
    }

    fn children_named<'s>(&'s self, e: usize, name: &'s str) -> impl Iterator<Item = usize> + 's {
        self.elems[e]
            .children
            .iter()
            .copied()
            .filter(move |&c| self.is(c, name))
    }

    fn child(&self, e: usize, name: &str) -> Option<usize> {
        self.children_named(e, name).next()
    }

    fn attr_node(&self, e: usize, name: &str) -> Option<&Attr<'a>> {
        self.elems[e]
            .attrs
            .iter()
            .find(|a| a.no_ns && a.local == name)
    }

    fn attr(&self, e: usize, name: &str) -> Option<&str> {
        self.attr_node(e, name).map(|a| a.value.as_str())
    }

    /// The `<domain>` root, or why there is none.
    fn domain(&self) -> Result<usize, XmlEditError> {
        if self.is(self.root, "domain") {
            Ok(self.root)
        } else {
            let start = self.elems[self.root].start;
            Err(XmlEditError::Missing {
                offset: start,
                line: line_of(self.src, start),
                expected: format!(
                    "root element <domain> (in no namespace), found <{}>",
                    self.qname(self.root)
                ),
            })
        }
    }

    /// The document, when every element in it is written out where the parser says: the
    /// splicer edits at those offsets. An element that an entity reference expands to has
    /// its bytes in the DOCTYPE, so such a document is refused, naming the element that holds
    /// the reference.
    fn editable(&self) -> Result<&Self, XmlEditError> {
        match self.elems.iter().position(|e| !e.in_place) {
            None => Ok(self),
            Some(i) => {
                let holder = self.elems[i].parent.unwrap_or(self.root);
                let start = self.elems[holder].start;
                Err(XmlEditError::Conflict {
                    offset: start,
                    line: line_of(self.src, start),
                    reason: format!(
                        "<{}> in <{}> comes from an entity declared in the DOCTYPE; passthru \
                         edits only elements written out in the file",
                        self.elems[i].local,
                        self.qname(holder)
                    ),
                })
            }
        }
    }

    fn missing(&self, parent: usize, expected: &str) -> XmlEditError {
        let start = self.elems[parent].start;
        XmlEditError::Missing {
            offset: start,
            line: line_of(self.src, start),
            expected: format!("{expected} in <{}>", self.qname(parent)),
        }
    }

    /// Text content of an element as XML reads it: character data, CDATA and expanded
    /// entities of it and its descendants, comments and processing instructions dropped.
    fn text(&self, e: usize) -> String {
        let Some(node) = self.tree.get_node(self.elems[e].node) else {
            return String::new();
        };
        node.descendants()
            .filter(|n| n.is_text())
            .filter_map(|n| n.text())
            .collect()
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
    let num = |name: &str| doc.attr(e, name).map(parse_num);
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
            text: format!(">{}{block}{parent_indent}</{}>", lay.nl, doc.qname(parent)),
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
    match doc.attr_node(e, name) {
        Some(a) => (a.value != value).then(|| Splice {
            start: a.raw.0,
            end: a.raw.1,
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
            let at = el.attrs.last().map_or(el.name.1, |a| a.end).min(tag_close);
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
        .filter(|&h| doc.attr(h, "type") == Some("pci"))
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
            if doc.is(c, "source") {
                continue;
            }
            if doc.is(c, "address") && doc.attr(c, "type") == Some("pci") {
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
    doc.editable()?;
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

/// The UUIDs of the `<hostdev type='mdev'>` devices (`<source><address uuid='…'/>`), in
/// document order. A document that does not parse has none.
pub fn mdev_hostdev_uuids(xml: &str) -> Vec<String> {
    let Ok(doc) = Doc::parse(xml) else {
        return Vec::new();
    };
    let Some(devices) = doc.domain().ok().and_then(|d| doc.child(d, "devices")) else {
        return Vec::new();
    };
    doc.children_named(devices, "hostdev")
        .filter(|&h| doc.attr(h, "type") == Some("mdev"))
        .filter_map(|h| {
            let source = doc.child(h, "source")?;
            let addr = doc.child(source, "address")?;
            doc.attr(addr, "uuid").map(str::to_string)
        })
        .collect()
}

/// Inserts `<hostdev mode='subsystem' type='mdev' model='vfio-pci'>` (the form of libvirt's own
/// test hostdev-mdev-precreated.xml) for a
/// mediated device that exists (libvirt does not create it: formatdomain "Host device
/// assignment", mdev), unless one with that UUID is present.
pub fn add_mdev_hostdev(xml: &str, uuid: &str) -> Result<String, XmlEditError> {
    let valid = uuid.len() == 36
        && uuid.char_indices().all(|(i, c)| {
            if [8, 13, 18, 23].contains(&i) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        });
    if !valid {
        return Err(XmlEditError::InvalidValue {
            what: "mdev uuid",
            value: uuid.to_string(),
            reason: "not a UUID (8-4-4-4-12 hex digits)",
        });
    }
    if mdev_hostdev_uuids(xml)
        .iter()
        .any(|u| u.eq_ignore_ascii_case(uuid))
    {
        return Ok(xml.to_string());
    }
    let doc = Doc::parse(xml)?;
    doc.editable()?;
    let dom = doc.domain()?;
    let devices = doc
        .child(dom, "devices")
        .ok_or_else(|| doc.missing(dom, "<devices>"))?;
    let lines = vec![
        (
            0,
            "<hostdev mode='subsystem' type='mdev' model='vfio-pci'>".to_string(),
        ),
        (1, "<source>".to_string()),
        (2, format!("<address uuid='{uuid}'/>")),
        (1, "</source>".to_string()),
        (0, "</hostdev>".to_string()),
    ];
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
    doc.editable()?;
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
    doc.editable()?;
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
                if doc.attr(hv, "mode") == Some("passthrough") {
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
    fn element_offsets() {
        let x = "<domain a='x>y'><!-- </domain> --><name><![CDATA[v<m]]></name><devices/></domain>";
        let doc = Doc::parse(x).unwrap();
        assert_eq!(doc.qname(doc.root), "domain");
        assert_eq!(doc.elems.len(), 3);
        assert_eq!(doc.text(1), "v<m");
        assert!(doc.elems[2].self_closing);
        assert_eq!(&x[doc.elems[2].start..doc.elems[2].end], "<devices/>");
        let name = &doc.elems[1];
        assert_eq!(&x[name.start..name.start_end], "<name>");
        assert_eq!(&x[name.close_start..name.end], "</name>");
        // The start tag ends at the first '>' outside quotes, here after a namespace
        // declaration (which roxmltree does not list among the attributes).
        let x = "<domain><x:y xmlns:x='u>v' >t</x:y ></domain>";
        let doc = Doc::parse(x).unwrap();
        let y = &doc.elems[1];
        assert_eq!(&x[y.start..y.start_end], "<x:y xmlns:x='u>v' >");
        assert_eq!(&x[y.close_start..y.end], "</x:y >");
        assert_eq!(doc.qname(1), "x:y");
        assert!(!doc.is(1, "y"), "x:y is not libvirt's <y>");
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
        let msg = err.to_string();
        assert!(msg.starts_with("line 2 (byte 14)"), "{msg}");
        assert!(msg.contains("closing ' of this attribute value"), "{msg}");
        let err = Doc::parse("<domain>\n<!-- open\n</domain>").err().unwrap();
        assert!(err.to_string().contains("-->"), "{err}");
        let err = Doc::parse("<domain>\n  <x>").err().unwrap();
        assert!(err.to_string().starts_with("line 2 (byte 14)"), "{err}");
        // Columns count characters: the offset is that of the character roxmltree names.
        let src = "<domain>\n<é f='1' f='2'/>\n</domain>";
        let err = Doc::parse(src).err().unwrap();
        let XmlEditError::Syntax { offset, line, .. } = err else {
            panic!("{err}")
        };
        assert_eq!((line, &src[offset..offset + 5]), (2, "f='2'"));
    }

    #[test]
    fn attribute_values_are_decoded_and_escaped() {
        let x = "<domain n='a&amp;b&lt;&#x41;&#66;' m =\n \"it's\"/>";
        let doc = Doc::parse(x).unwrap();
        assert_eq!(doc.attr(0, "n"), Some("a&b<AB"));
        assert_eq!(doc.attr(0, "m"), Some("it's"));
        let a = doc.attr_node(0, "n").unwrap();
        assert_eq!(&x[a.raw.0..a.raw.1], "a&amp;b&lt;&#x41;&#66;");
        // Spaces and a newline around '=' are inside the attribute's range, not the value's.
        let m = doc.attr_node(0, "m").unwrap();
        assert_eq!(&x[m.raw.0..m.raw.1], "it's");
        assert_eq!(&x[..m.end], x.trim_end_matches("/>"));
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
