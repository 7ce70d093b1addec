//! modprobe.d(5) files: one command per line (`options`, `softdep`, `blacklist`, `install`,
//! `alias`, ...), `#` comments, and a trailing backslash continuing a line.

/// One command line from a modprobe.d file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModprobeLine {
    /// 1-based line where the command starts.
    pub line: usize,
    pub command: String,
    /// First argument: the module (or alias wildcard).
    pub module: String,
    /// Everything after the module, whitespace-normalised.
    pub args: String,
}

/// Parses the commands of a modprobe.d file; comments and blank lines are dropped.
pub fn parse_modprobe_conf(text: &str) -> Vec<ModprobeLine> {
    let mut out = Vec::new();
    let mut pending = String::new();
    let mut start = 0;
    for (i, raw) in text.lines().enumerate() {
        if pending.is_empty() {
            start = i + 1;
        }
        if let Some(body) = raw.strip_suffix('\\') {
            pending.push_str(body);
            pending.push(' ');
            continue;
        }
        pending.push_str(raw);
        let logical = std::mem::take(&mut pending);
        let line = logical.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        let (Some(command), Some(module)) = (words.next(), words.next()) else {
            continue;
        };
        out.push(ModprobeLine {
            line: start,
            command: command.to_string(),
            module: module.to_string(),
            args: words.collect::<Vec<_>>().join(" "),
        });
    }
    out
}

/// The `ids=` value of an `options vfio-pci ...` / `options vfio_pci ...` argument string.
pub fn vfio_ids_from_options(args: &str) -> Vec<String> {
    args.split_whitespace()
        .filter_map(|a| a.strip_prefix("ids="))
        .flat_map(|v| v.split(','))
        .filter(|s| !s.is_empty())
        .map(|s| s.to_ascii_lowercase())
        .collect()
}

/// modprobe treats `-` and `_` in module names alike.
pub fn same_module(a: &str, b: &str) -> bool {
    a.replace('-', "_") == b.replace('-', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_commands_comments_and_continuations() {
        let text = "# vfio\noptions vfio-pci ids=10de:2206,10de:1aef disable_vga=1\nsoftdep nvidia pre: vfio-pci\n\nblacklist nouveau\ninstall foo \\\n  /bin/true\n";
        let got = parse_modprobe_conf(text);
        assert_eq!(got.len(), 4);
        assert_eq!(got[0].command, "options");
        assert_eq!(got[0].module, "vfio-pci");
        assert_eq!(got[0].line, 2);
        assert_eq!(
            vfio_ids_from_options(&got[0].args),
            vec!["10de:2206", "10de:1aef"]
        );
        assert_eq!(got[1].args, "pre: vfio-pci");
        assert_eq!(got[2].module, "nouveau");
        assert_eq!(got[3].line, 6);
        assert_eq!(got[3].args, "/bin/true");
    }

    #[test]
    fn module_names_compare_with_dash_or_underscore() {
        assert!(same_module("vfio-pci", "vfio_pci"));
        assert!(!same_module("vfio", "vfio_pci"));
    }
}
