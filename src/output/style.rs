//! Colour decisions in one place: `--color auto|always|never`, `NO_COLOR`, `CLICOLOR_FORCE`
//! and whether stdout is a terminal. Renderers take a `Style` and never look at the
//! environment themselves.

use std::io::IsTerminal;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum ColorChoice {
    #[default]
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    pub color: bool,
}

impl Style {
    pub const PLAIN: Style = Style { color: false };

    /// Resolves the choice for stdout.
    pub fn for_stdout(choice: ColorChoice) -> Style {
        let env = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty());
        let color = match choice {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                if env("NO_COLOR") {
                    false
                } else if env("CLICOLOR_FORCE") {
                    true
                } else {
                    std::io::stdout().is_terminal()
                }
            }
        };
        Style { color }
    }

    fn paint(&self, code: &str, s: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }

    pub fn gpu(&self, s: &str) -> String {
        self.paint("1;32", s)
    }
    pub fn dim(&self, s: &str) -> String {
        self.paint("2", s)
    }
    pub fn bold(&self, s: &str) -> String {
        self.paint("1", s)
    }
    pub fn warn(&self, s: &str) -> String {
        self.paint("33", s)
    }
}

/// Removes terminal control characters from text that came from the host (a device name in
/// a crafted pci.ids, a file's contents) before it reaches a terminal.
pub fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() && c != '\t' { '?' } else { c })
        .collect()
}
