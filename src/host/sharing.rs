//! Reading what sharing one GPU among guests relies on, beyond the PCI functions
//! themselves (those are in `pci`): live mediated devices, NVIDIA's per-GPU identity in
//! procfs, CDI specs, DKMS builds per kernel, the default boot kernel, Secure Boot, and the
//! SR-IOV parameters of Intel's GPU modules. Read-only; every failure is an issue.

use crate::model::{
    CdiDevice, CdiSpec, DkmsBuild, Issue, LiveMdev, MdevParent, NvidiaGpuInfo, PciAddress,
    SecureBoot, SharingInfo, SriovDriverModule,
};

use super::root::{FileRead, HostRoot};

pub const MDEV_DEVICES: &str = "sys/bus/mdev/devices";
/// One link per registered mdev parent, PCI or virtual (drivers/vfio/mdev/mdev_core.c
/// `class_compat_create_link(mdev_bus_compat_class, …)`).
pub const MDEV_BUS: &str = "sys/class/mdev_bus";
pub const NVIDIA_GPUS: &str = "proc/driver/nvidia/gpus";
/// The directories the CDI spec (container-device-interface SPEC.md) names: static specs
/// and generated ones (`var/run/cdi` is cleared on boot; nvidia-cdi-refresh writes there).
pub const CDI_DIRS: [&str; 2] = ["etc/cdi", "var/run/cdi"];
pub const DKMS: &str = "var/lib/dkms";
/// EFI global variable GUID 8be4df61-…: `SecureBoot` holds 4 attribute bytes and 1 value.
pub const SECURE_BOOT_VAR: &str =
    "sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-e98c0304f9ce";
pub const PROXMOX_BOOT_PIN: &str = "etc/kernel/proxmox-boot-pin";

pub fn read_sharing(
    root: &HostRoot,
    kernel_release: Option<&str>,
    issues: &mut Vec<Issue>,
) -> SharingInfo {
    let mdevs = read_mdevs(root, issues);
    let mdev_parents = read_virtual_mdev_parents(root, issues);
    let nvidia_gpus = read_nvidia_gpus(root, issues);
    let cdi_specs = CDI_DIRS
        .iter()
        .flat_map(|d| read_cdi_dir(root, d, issues))
        .collect();
    let dkms = read_dkms(root, issues);
    let installed_kernels = read_installed_kernels(root, issues);
    let (default_kernel, default_kernel_evidence) =
        read_default_kernel(root, &installed_kernels, issues);
    let secure_boot = read_secure_boot(root, issues);
    let sriov_modules = ["i915", "xe"]
        .iter()
        .filter(|m| root.exists(&format!("sys/module/{m}")))
        .map(|m| read_sriov_module(root, m, kernel_release, issues))
        .collect();
    SharingInfo {
        mdevs,
        mdev_parents,
        nvidia_gpus,
        cdi_specs,
        dkms,
        installed_kernels,
        default_kernel,
        default_kernel_evidence,
        secure_boot,
        sriov_modules,
    }
}

fn read_mdevs(root: &HostRoot, issues: &mut Vec<Issue>) -> Vec<LiveMdev> {
    root.list_dir(MDEV_DEVICES, issues)
        .into_iter()
        .map(|uuid| {
            let dir = format!("{MDEV_DEVICES}/{uuid}");
            // The device link resolves to …/<parent>/<uuid>: the parent is the component
            // before the last, a PCI address or a virtual device's name
            // (sys/devices/virtual/mtty/mtty/<uuid>, seen in the QEMU lab).
            let parent_name = root
                .resolve_link(&dir)
                .and_then(|real| real.rsplit('/').nth(1).map(str::to_string))
                .filter(|p| !p.is_empty());
            let parent = parent_name
                .as_deref()
                .and_then(|p| p.parse::<PciAddress>().ok());
            let mdev_type = root.link_name(&format!("{dir}/mdev_type")).map(|(n, _)| n);
            if parent_name.is_none() {
                issues.push(Issue::new(
                    &dir,
                    "its parent device could not be read from the link",
                ));
            }
            LiveMdev {
                uuid,
                parent,
                parent_name,
                mdev_type,
            }
        })
        .collect()
}

/// The mdev parents that are not PCI functions (a PCI parent's types are read with the
/// function). Each `sys/class/mdev_bus` entry links to its device; the types are read there.
fn read_virtual_mdev_parents(root: &HostRoot, issues: &mut Vec<Issue>) -> Vec<MdevParent> {
    root.list_dir(MDEV_BUS, issues)
        .into_iter()
        .filter(|name| name.parse::<PciAddress>().is_err())
        .map(|name| {
            let link = format!("{MDEV_BUS}/{name}");
            let path = root.resolve_link(&link);
            if path.is_none() {
                issues.push(Issue::new(
                    &link,
                    "not a link to a device: its types are read through it",
                ));
            }
            let dir = path.clone().unwrap_or(link);
            let types_dir = format!("{dir}/mdev_supported_types");
            let types = root
                .list_dir(&types_dir, issues)
                .iter()
                .map(|t| super::pci::read_mdev_type(root, &format!("{types_dir}/{t}"), t, issues))
                .collect();
            MdevParent { name, path, types }
        })
        .collect()
}

fn read_nvidia_gpus(root: &HostRoot, issues: &mut Vec<Issue>) -> Vec<NvidiaGpuInfo> {
    let mut out = Vec::new();
    for name in root.list_dir(NVIDIA_GPUS, issues) {
        let path = format!("{NVIDIA_GPUS}/{name}/information");
        let Ok(address) = name.parse::<PciAddress>() else {
            issues.push(Issue::new(
                format!("{NVIDIA_GPUS}/{name}"),
                "not a PCI address: skipped",
            ));
            continue;
        };
        let Some(text) = root.read_noting(&path, issues) else {
            continue;
        };
        let info = parse_nvidia_information(address, &text);
        if info.device_minor.is_none() || info.uuid.is_none() {
            issues.push(Issue::new(&path, "no 'Device Minor:' or 'GPU UUID:' line"));
        }
        out.push(info);
    }
    out
}

/// `Key: value` lines of `information` (NVIDIA open-gpu-kernel-modules `nv-procfs.c`).
pub fn parse_nvidia_information(address: PciAddress, text: &str) -> NvidiaGpuInfo {
    let value = |key: &str| {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == key).then(|| v.trim().to_string())
        })
    };
    NvidiaGpuInfo {
        address,
        device_minor: value("Device Minor").and_then(|v| v.parse().ok()),
        uuid: value("GPU UUID").filter(|u| u.starts_with("GPU-")),
        model: value("Model"),
    }
}

fn read_cdi_dir(root: &HostRoot, dir: &str, issues: &mut Vec<Issue>) -> Vec<CdiSpec> {
    let mut out = Vec::new();
    for name in root.list_dir(dir, issues) {
        let path = format!("{dir}/{name}");
        let json = name.ends_with(".json");
        if !json && !name.ends_with(".yaml") && !name.ends_with(".yml") {
            continue;
        }
        let Some(text) = root.read_noting(&path, issues) else {
            continue;
        };
        let spec = if json {
            parse_cdi_json(&path, &text)
        } else {
            Ok(parse_cdi_yaml(&path, &text))
        };
        match spec {
            Ok(s) if s.kind.is_some() => out.push(s),
            Ok(_) => issues.push(Issue::new(&path, "no 'kind': not a CDI spec")),
            Err(why) => issues.push(Issue::new(&path, why)),
        }
    }
    out
}

pub fn parse_cdi_json(path: &str, text: &str) -> Result<CdiSpec, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let kind = v.get("kind").and_then(|k| k.as_str()).map(str::to_string);
    let devices = v
        .get("devices")
        .and_then(|d| d.as_array())
        .map(|list| {
            list.iter()
                .filter_map(|d| {
                    let name = d.get("name")?.as_str()?.to_string();
                    let nodes = d
                        .pointer("/containerEdits/deviceNodes")
                        .and_then(|n| n.as_array())
                        .map(|n| {
                            n.iter()
                                .filter_map(|x| x.get("path")?.as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default();
                    Some(CdiDevice { name, nodes })
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(CdiSpec {
        file: path.to_string(),
        kind,
        devices,
    })
}

/// The part of a YAML CDI spec passthru needs: the top-level `kind`, and per entry of the
/// top-level `devices` list its `name` and the `path`s under it. Not a YAML parser: it reads
/// the block style `nvidia-ctk`, `amd-ctk` and `intel-cdi-specs-generator` write (keys at
/// column 0, list items `- ` at column 0 or 2), which is all the spec files in the field use.
pub fn parse_cdi_yaml(path: &str, text: &str) -> CdiSpec {
    let unquote = |v: &str| v.trim().trim_matches(|c| c == '"' || c == '\'').to_string();
    let mut kind = None;
    let mut devices: Vec<CdiDevice> = Vec::new();
    let mut in_devices = false;
    let mut item_indent: Option<usize> = None;
    for line in text.lines() {
        let body = line.trim_start();
        if body.is_empty() || body.starts_with('#') || body == "---" {
            continue;
        }
        let indent = line.len() - body.len();
        if indent == 0 && !body.starts_with("- ") {
            in_devices = body.starts_with("devices:");
            item_indent = None;
            if let Some(k) = body.strip_prefix("kind:") {
                kind = Some(unquote(k));
            }
            continue;
        }
        if !in_devices {
            continue;
        }
        let (key_part, new_item) = match body.strip_prefix("- ") {
            Some(rest) if item_indent.is_none_or(|i| i == indent) => {
                item_indent = Some(indent);
                (rest, true)
            }
            Some(rest) => (rest, false),
            None => (body, false),
        };
        if new_item {
            devices.push(CdiDevice::default());
        }
        let Some(cur) = devices.last_mut() else {
            continue;
        };
        let field_indent = item_indent.map_or(2, |i| i + 2);
        let key_indent = if new_item { field_indent } else { indent };
        if let Some(v) = key_part.strip_prefix("name:") {
            if key_indent == field_indent {
                cur.name = unquote(v);
            }
        } else if let Some(v) = key_part.strip_prefix("path:") {
            let v = unquote(v);
            if v.starts_with("/dev/") {
                cur.nodes.push(v);
            }
        }
    }
    devices.retain(|d| !d.name.is_empty());
    CdiSpec {
        file: path.to_string(),
        kind,
        devices,
    }
}

/// `var/lib/dkms/<module>/<version>/<kernel>/<arch>/`: a build for that kernel. The
/// `source` link and `kernel-*` symlinks beside the versions are not builds.
fn read_dkms(root: &HostRoot, issues: &mut Vec<Issue>) -> Vec<DkmsBuild> {
    let mut out = Vec::new();
    for module in root.list_dir(DKMS, issues) {
        let mdir = format!("{DKMS}/{module}");
        for version in root.list_dir(&mdir, issues) {
            let vdir = format!("{mdir}/{version}");
            if version.starts_with("kernel-") || !root.is_dir(&vdir) {
                continue;
            }
            for kernel in root.list_dir(&vdir, issues) {
                if kernel == "source" || kernel == "build" {
                    continue;
                }
                let kdir = format!("{vdir}/{kernel}");
                if root.is_dir(&kdir) && !root.list_dir(&kdir, issues).is_empty() {
                    out.push(DkmsBuild {
                        module: module.clone(),
                        version: version.clone(),
                        kernel,
                    });
                }
            }
        }
    }
    out
}

fn read_installed_kernels(root: &HostRoot, issues: &mut Vec<Issue>) -> Vec<String> {
    let mut ks: Vec<String> = root
        .list_dir("lib/modules", issues)
        .into_iter()
        .filter(|k| k.starts_with(|c: char| c.is_ascii_digit()))
        .collect();
    ks.sort_by(|a, b| compare_kernel_releases(a, b));
    ks
}

/// Orders `6.8.12-4-pve` before `6.8.12-10-pve` and `6.14.8-2-pve`: by each run of digits
/// as a number, the text between as text.
pub fn compare_kernel_releases(a: &str, b: &str) -> std::cmp::Ordering {
    fn parts(s: &str) -> Vec<(u64, String)> {
        let mut out = Vec::new();
        let mut num = String::new();
        let mut text = String::new();
        for c in s.chars() {
            if c.is_ascii_digit() {
                if !text.is_empty() {
                    out.push((u64::MAX, std::mem::take(&mut text)));
                }
                num.push(c);
            } else {
                if !num.is_empty() {
                    out.push((num.parse().unwrap_or(u64::MAX), String::new()));
                    num.clear();
                }
                text.push(c);
            }
        }
        if !num.is_empty() {
            out.push((num.parse().unwrap_or(u64::MAX), String::new()));
        }
        if !text.is_empty() {
            out.push((u64::MAX, text));
        }
        out
    }
    parts(a).cmp(&parts(b))
}

fn read_default_kernel(
    root: &HostRoot,
    installed: &[String],
    issues: &mut Vec<Issue>,
) -> (Option<String>, Option<String>) {
    if let Some(pin) = root.read_noting(PROXMOX_BOOT_PIN, issues) {
        let pin = pin.trim().to_string();
        if !pin.is_empty() {
            return (
                Some(pin.clone()),
                Some(format!("{PROXMOX_BOOT_PIN}: {pin}")),
            );
        }
    }
    match installed.last() {
        Some(k) => (
            Some(k.clone()),
            Some(format!(
                "lib/modules: newest of {}",
                crate::output::words::count(
                    installed.len(),
                    "installed kernel",
                    "installed kernels"
                )
            )),
        ),
        None => (None, None),
    }
}

fn read_secure_boot(root: &HostRoot, issues: &mut Vec<Issue>) -> Option<SecureBoot> {
    if !root.exists("sys/firmware/efi") {
        return Some(SecureBoot::Unavailable);
    }
    let path = root.join(SECURE_BOOT_VAR);
    match std::fs::read(&path) {
        Ok(bytes) if bytes.len() >= 5 => Some(if bytes[4] == 1 {
            SecureBoot::On
        } else {
            SecureBoot::Off
        }),
        Ok(bytes) => {
            issues.push(Issue::new(
                SECURE_BOOT_VAR,
                format!(
                    "{} bytes, expected 4 attribute bytes and a value",
                    bytes.len()
                ),
            ));
            None
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(SecureBoot::Unavailable),
        Err(e) => {
            issues.push(Issue::new(SECURE_BOOT_VAR, format!("cannot read: {e}")));
            None
        }
    }
}

fn read_sriov_module(
    root: &HostRoot,
    module: &str,
    kernel_release: Option<&str>,
    issues: &mut Vec<Issue>,
) -> SriovDriverModule {
    let param = |p: &str, issues: &mut Vec<Issue>| {
        let path = format!("sys/module/{module}/parameters/{p}");
        match root.read(&path) {
            FileRead::Text(t) => Some(t.trim().to_string()),
            FileRead::Missing => None,
            // Root-only parameters (mode 0400) exist but cannot be read: present all the same.
            FileRead::Failed(why) => {
                issues.push(Issue::new(&path, why));
                Some(String::new())
            }
        }
    };
    let max_vfs = param("max_vfs", issues);
    let enable_guc = param("enable_guc", issues);
    let file = kernel_release.and_then(|k| {
        let dep = format!("lib/modules/{k}/modules.dep");
        let text = root.read_noting(&dep, issues)?;
        module_file_in_dep(&text, module)
    });
    SriovDriverModule {
        module: module.to_string(),
        loaded: true,
        max_vfs,
        enable_guc,
        file,
    }
}

/// The path modules.dep gives `module` (`kernel/drivers/gpu/drm/i915/i915.ko.zst:` or
/// `updates/dkms/i915.ko:`): depmod lists one file per module name, the one modprobe loads.
pub fn module_file_in_dep(text: &str, module: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let file = l.split_once(':')?.0.trim();
        let base = file.rsplit('/').next()?;
        let stem = base.split(".ko").next()?;
        (stem.replace('-', "_") == module.replace('-', "_")).then(|| file.to_string())
    })
}

/// The gid a container must hold to open a render node (`/dev/dri/renderD128`). On the live
/// host, the node's own group; under another root (a fixture, an archive), whose nodes are
/// plain files, the `render` group of its etc/group, which is what udev gives render nodes
/// (systemd 50-udev-default.rules: `SUBSYSTEM=="drm", KERNEL=="renderD*", GROUP="render"`).
pub fn read_render_gid(root: &HostRoot, node: &str, live: bool) -> Option<u32> {
    if live {
        use std::os::unix::fs::MetadataExt;
        return std::fs::metadata(root.join(node.trim_start_matches('/')))
            .ok()
            .map(|m| m.gid());
    }
    let text = root.read_noting("etc/group", &mut Vec::new())?;
    crate::plan::containers::group_gid(&text, "render")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvidia_information_gives_minor_and_uuid() {
        // As nv-procfs.c prints it (open-gpu-kernel-modules).
        let text = "Model: \t\t NVIDIA GeForce RTX 3080\nIRQ:   \t\t 140\nGPU UUID: \t GPU-5f9a1c2e-8b3d-4e6f-a7c9-0d1e2f3a4b5c\nVideo BIOS: \t 94.02.42.00.a9\nBus Type: \t PCIe\nDMA Size: \t 47 bits\nDMA Mask: \t 0x7fffffffffff\nBus Location: \t 0000:07:00.0\nDevice Minor: \t 1\nGPU Excluded:\t No\n";
        let i = parse_nvidia_information("0000:07:00.0".parse().unwrap(), text);
        assert_eq!(i.device_minor, Some(1));
        assert_eq!(
            i.uuid.as_deref(),
            Some("GPU-5f9a1c2e-8b3d-4e6f-a7c9-0d1e2f3a4b5c")
        );
        assert_eq!(i.model.as_deref(), Some("NVIDIA GeForce RTX 3080"));
        let garbled =
            parse_nvidia_information("0000:07:00.0".parse().unwrap(), "Device Minor: x\n");
        assert_eq!((garbled.device_minor, garbled.uuid), (None, None));
    }

    #[test]
    fn cdi_yaml_as_nvidia_ctk_writes_it() {
        let text = "---\ncdiVersion: 0.5.0\ncontainerEdits:\n  deviceNodes:\n  - path: /dev/nvidiactl\ndevices:\n- containerEdits:\n    deviceNodes:\n    - path: /dev/nvidia1\n  name: \"0\"\n- containerEdits:\n    deviceNodes:\n    - path: /dev/nvidia1\n  name: GPU-5f9a1c2e-8b3d-4e6f-a7c9-0d1e2f3a4b5c\n- name: all\n  containerEdits:\n    deviceNodes:\n    - path: /dev/nvidia1\nkind: nvidia.com/gpu\n";
        let s = parse_cdi_yaml("etc/cdi/nvidia.yaml", text);
        assert_eq!(s.kind.as_deref(), Some("nvidia.com/gpu"));
        let names: Vec<&str> = s.devices.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(
            names,
            ["0", "GPU-5f9a1c2e-8b3d-4e6f-a7c9-0d1e2f3a4b5c", "all"]
        );
        assert_eq!(s.devices[0].nodes, ["/dev/nvidia1"]);
        assert!(!s.devices[2].nodes.is_empty());
    }

    #[test]
    fn cdi_json_and_garbage() {
        let s = parse_cdi_json(
            "etc/cdi/amd.json",
            r#"{"cdiVersion":"0.6.0","kind":"amd.com/gpu","devices":[{"name":"0","containerEdits":{"deviceNodes":[{"path":"/dev/dri/renderD128"},{"path":"/dev/kfd"}]}}]}"#,
        )
        .unwrap();
        assert_eq!(s.kind.as_deref(), Some("amd.com/gpu"));
        assert_eq!(s.devices[0].nodes, ["/dev/dri/renderD128", "/dev/kfd"]);
        assert!(parse_cdi_json("x.json", "{not json").is_err());
    }

    #[test]
    fn modules_dep_names_the_file_modprobe_loads() {
        let dep = "kernel/drivers/gpu/drm/drm.ko.zst:\nupdates/dkms/i915.ko: kernel/drivers/gpu/drm/drm.ko.zst\nkernel/drivers/gpu/drm/xe/xe.ko.zst: kernel/drivers/gpu/drm/drm.ko.zst\n";
        assert_eq!(
            module_file_in_dep(dep, "i915").as_deref(),
            Some("updates/dkms/i915.ko")
        );
        assert_eq!(
            module_file_in_dep(dep, "xe").as_deref(),
            Some("kernel/drivers/gpu/drm/xe/xe.ko.zst")
        );
        assert_eq!(module_file_in_dep(dep, "nvidia"), None);
    }

    #[test]
    fn kernel_releases_order_by_number() {
        let mut ks = vec!["6.8.12-10-pve", "6.14.8-2-pve", "6.8.12-4-pve"];
        ks.sort_by(|a, b| compare_kernel_releases(a, b));
        assert_eq!(ks, ["6.8.12-4-pve", "6.8.12-10-pve", "6.14.8-2-pve"]);
    }
}
