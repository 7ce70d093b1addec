//! Counted nouns in messages: "1 function", "2 functions", never "1 function(s)".

/// `n` with the noun in the number it takes: `count(1, "device", "devices")` is
/// `"1 device"`, `count(3, ...)` is `"3 devices"`.
pub fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The verb or pronoun that agrees with `n`: `agree(1, "is", "are")` is `"is"`.
pub fn agree<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 {
        one
    } else {
        many
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_is_singular_and_every_other_count_plural() {
        assert_eq!(count(1, "function", "functions"), "1 function");
        assert_eq!(count(0, "function", "functions"), "0 functions");
        assert_eq!(count(2, "device", "devices"), "2 devices");
        assert_eq!(agree(1, "is", "are"), "is");
        assert_eq!(agree(4, "is", "are"), "are");
    }
}
