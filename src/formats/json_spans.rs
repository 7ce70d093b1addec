//! Byte spans of values in a JSON document, so an edit can replace one value and keep every
//! other byte (key order, indentation, spacing) as the file's owner wrote it. Used for
//! kernelstub's configuration, which passthru edits but does not own.

use std::ops::Range;

/// The span of the value at `path` (object keys from the top), e.g. `["user",
/// "kernel_options"]`. The document must be valid JSON up to that value.
pub fn json_value_span(text: &str, path: &[&str]) -> Result<Range<usize>, String> {
    let mut p = Parser {
        b: text.as_bytes(),
        pos: 0,
    };
    p.ws();
    p.find(path)
}

struct Parser<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self
            .b
            .get(self.pos)
            .is_some_and(|c| c.is_ascii_whitespace())
        {
            self.pos += 1;
        }
    }

    fn err(&self, what: &str) -> String {
        format!("byte {}: {what}", self.pos)
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        self.ws();
        if self.b.get(self.pos) == Some(&c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(&format!("expected '{}'", c as char)))
        }
    }

    /// The value at `path` below the value at the cursor.
    fn find(&mut self, path: &[&str]) -> Result<Range<usize>, String> {
        self.ws();
        let Some((first, rest)) = path.split_first() else {
            let start = self.pos;
            self.skip_value()?;
            return Ok(start..self.pos);
        };
        self.expect(b'{')?;
        loop {
            self.ws();
            if self.b.get(self.pos) == Some(&b'}') {
                return Err(format!("no key \"{first}\""));
            }
            let key = self.string()?;
            self.expect(b':')?;
            if key == *first {
                return self.find(rest);
            }
            self.ws();
            self.skip_value()?;
            self.ws();
            match self.b.get(self.pos) {
                Some(b',') => self.pos += 1,
                Some(b'}') => return Err(format!("no key \"{first}\"")),
                _ => return Err(self.err("expected ',' or '}'")),
            }
        }
    }

    /// A string at the cursor, decoded.
    fn string(&mut self) -> Result<String, String> {
        self.ws();
        let start = self.pos;
        self.skip_string()?;
        serde_json::from_slice::<String>(&self.b[start..self.pos])
            .map_err(|e| self.err(&e.to_string()))
    }

    fn skip_string(&mut self) -> Result<(), String> {
        if self.b.get(self.pos) != Some(&b'"') {
            return Err(self.err("expected a string"));
        }
        self.pos += 1;
        while let Some(&c) = self.b.get(self.pos) {
            match c {
                b'\\' => self.pos += 2,
                b'"' => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => self.pos += 1,
            }
        }
        Err(self.err("unterminated string"))
    }

    fn skip_value(&mut self) -> Result<(), String> {
        self.ws();
        match self.b.get(self.pos) {
            Some(b'"') => self.skip_string(),
            Some(&open @ (b'{' | b'[')) => {
                let close = if open == b'{' { b'}' } else { b']' };
                self.pos += 1;
                self.ws();
                if self.b.get(self.pos) == Some(&close) {
                    self.pos += 1;
                    return Ok(());
                }
                loop {
                    if open == b'{' {
                        self.ws();
                        self.skip_string()?;
                        self.expect(b':')?;
                    }
                    self.skip_value()?;
                    self.ws();
                    match self.b.get(self.pos) {
                        Some(b',') => self.pos += 1,
                        Some(&c) if c == close => {
                            self.pos += 1;
                            return Ok(());
                        }
                        _ => return Err(self.err("expected ',' or the closing bracket")),
                    }
                }
            }
            Some(_) => {
                // Numbers, true, false, null: up to a delimiter.
                let start = self.pos;
                while self
                    .b
                    .get(self.pos)
                    .is_some_and(|c| !matches!(c, b',' | b'}' | b']') && !c.is_ascii_whitespace())
                {
                    self.pos += 1;
                }
                if self.pos == start {
                    Err(self.err("expected a value"))
                } else {
                    Ok(())
                }
            }
            None => Err(self.err("unexpected end")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_values() {
        let t = r#"{ "default": {"kernel_options": ["a"], "x": 1}, "user": { "n": [1, {"k": "v\"}"}], "kernel_options": [ "quiet", "splash" ] } }"#;
        let r = json_value_span(t, &["user", "kernel_options"]).unwrap();
        assert_eq!(&t[r], r#"[ "quiet", "splash" ]"#);
        let r = json_value_span(t, &["default", "x"]).unwrap();
        assert_eq!(&t[r], "1");
        assert!(json_value_span(t, &["user", "nope"]).is_err());
        assert!(json_value_span("{\"a\": [1,", &["b"]).is_err());
    }
}
