//! The NVIDIA user-space libraries containers are given, by version: the CDI specs
//! (`etc/cdi`, `var/run/cdi`, `run/cdi`) that nvidia-ctk generates and Docker/Podman read,
//! and Proxmox LXC configs that bind-mount `libcuda.so.N` / `libnvidia-*.so.N` from the host.
//! Read-only.

use super::root::{FileRead, HostRoot};

const CDI_DIRS: &[&str] = &["etc/cdi", "var/run/cdi", "run/cdi"];
const LXC_DIR: &str = "etc/pve/lxc";

/// The version in a library path: `…/libnvidia-ml.so.550.54.14` gives `550.54.14`.
pub fn parse_library_version(text: &str) -> Option<String> {
    for start in ["libcuda.so.", "libnvidia-"] {
        let mut rest = text;
        while let Some(i) = rest.find(start) {
            let after = &rest[i + start.len()..];
            let tail = if start == "libcuda.so." {
                Some(after)
            } else {
                // `libnvidia-ml.so.550.54.14`: the name, then `.so.`.
                let name_end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
                    .unwrap_or(after.len());
                after[name_end..].strip_prefix(".so.")
            };
            if let Some(tail) = tail {
                let v: String = tail
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '.')
                    .collect();
                let v = v.trim_end_matches('.');
                // A driver version has a dot (`550.54.14`); `.so.1` is the soname.
                if v.contains('.') {
                    return Some(v.to_string());
                }
            }
            rest = after;
        }
    }
    None
}

/// Every (place, version) where a container is given NVIDIA libraries: `etc/cdi/nvidia.yaml:12`.
pub fn read_container_libs(root: &HostRoot) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut scan = |rel: String, only_lxc_lines: bool| {
        let FileRead::Text(text) = root.read(&rel) else {
            return;
        };
        let mut seen: Option<String> = None;
        for (n, line) in text.lines().enumerate() {
            if only_lxc_lines && !line.trim_start().starts_with("lxc.mount.entry") {
                continue;
            }
            if let Some(v) = parse_library_version(line) {
                // One finding a file and version: the first line that shows it.
                if seen.as_deref() != Some(v.as_str()) {
                    out.push((format!("{rel}:{}", n + 1), v.clone()));
                    seen = Some(v);
                }
            }
        }
    };
    for dir in CDI_DIRS {
        let Ok(mut names) = root.read_dir_names(dir) else {
            continue;
        };
        names.sort();
        for n in names
            .iter()
            .filter(|n| n.ends_with(".yaml") || n.ends_with(".json"))
        {
            scan(format!("{dir}/{n}"), false);
        }
    }
    if let Ok(mut names) = root.read_dir_names(LXC_DIR) {
        names.sort();
        for n in names.iter().filter(|n| n.ends_with(".conf")) {
            scan(format!("{LXC_DIR}/{n}"), true);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::parse_library_version;

    #[test]
    fn versions_from_library_paths() {
        assert_eq!(
            parse_library_version(
                "  - hostPath: /usr/lib/x86_64-linux-gnu/libnvidia-ml.so.550.54.14"
            )
            .as_deref(),
            Some("550.54.14")
        );
        assert_eq!(
            parse_library_version("lxc.mount.entry: /usr/lib/x86_64-linux-gnu/libcuda.so.535.154.05 usr/lib/x86_64-linux-gnu/libcuda.so.535.154.05 none bind,optional,create=file").as_deref(),
            Some("535.154.05")
        );
        assert_eq!(parse_library_version("/usr/lib/libnvidia-ml.so.1"), None);
        assert_eq!(parse_library_version("dev0: /dev/nvidia0"), None);
    }
}
