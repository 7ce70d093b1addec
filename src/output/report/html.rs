//! Building HTML text safely. Every string that came from the host (a device name from
//! pci.ids, a driver name, a file's contents in evidence) is untrusted: it goes through
//! [`Html::text`] or [`escape`], which make it inert text, never markup. Markup is only ever
//! written by this crate's own literals through [`Html::raw`].

use std::fmt::Write as _;

/// Escapes text for HTML element content and quoted attribute values: `&`, `<`, `>`, `"` and
/// `'` become entities, and control characters (terminal escapes in a crafted name) become
/// `?`, as [`super::super::style::sanitize`] does for terminals.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' => out.push(c),
            c if c.is_control() => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

/// A page being written: markup from literals, text escaped.
#[derive(Default)]
pub struct Html {
    buf: String,
}

impl Html {
    pub fn new() -> Self {
        Html {
            buf: String::with_capacity(64 * 1024),
        }
    }

    /// Markup written by passthru itself. Never pass host data here.
    pub fn raw(&mut self, markup: &str) -> &mut Self {
        self.buf.push_str(markup);
        self
    }

    /// Host data or any other text, escaped.
    pub fn text(&mut self, s: &str) -> &mut Self {
        self.buf.push_str(&escape(s));
        self
    }

    /// `<tag class="class">text</tag>`, the text escaped; `tag` and `class` are literals.
    pub fn el(&mut self, tag: &str, class: &str, text: &str) -> &mut Self {
        if class.is_empty() {
            let _ = write!(self.buf, "<{tag}>");
        } else {
            let _ = write!(self.buf, "<{tag} class=\"{class}\">");
        }
        self.text(text);
        let _ = write!(self.buf, "</{tag}>");
        self
    }

    pub fn finish(self) -> String {
        self.buf
    }
}

/// An element id made from host data (a group id, an address): only `[A-Za-z0-9_.:-]`
/// survive, so the id can never close its attribute; anything else becomes `_`.
pub fn id_token(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_host_text_stays_text() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"q\"\x1b[31m"),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;?[31m"
        );
        assert_eq!(id_token("1\" onload=\"x"), "1__onload__x");
    }
}
