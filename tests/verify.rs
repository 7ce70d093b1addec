//! `passthru verify` on fixture roots: each check has a host where it holds and one where it
//! fires (exit 1, with the evidence and the fix). The journal is the real one: the hosts are
//! set up with `passthru setup vm` / `vm attach` under `--root`, then "rebooted" by hand
//! (drivers, command line, loaded modules), then changed the way upgrades change them.
//! Initramfs images are listed from a saved listing beside the image (`IMAGE.list`), since a
//! fixture root is not the live host.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

const GPU: &str = "0000:07:00.0";
const AUDIO: &str = "0000:07:00.1";
const KERNEL: &str = "6.1.0-18-amd64";

fn run(root: &Path, args: &[&str]) -> std::process::Output {
    let mut a = args.to_vec();
    a.extend(["--root", root.to_str().unwrap()]);
    passthru(&a)
}

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn set_driver(root: &Path, addr: &str, driver: &str) {
    let link = root.join(format!("sys/bus/pci/devices/{addr}/driver"));
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(format!("../../../bus/pci/drivers/{driver}"), &link).unwrap();
}

/// The initramfs of `release` with a listing that holds `files`.
fn initramfs(root: &Path, release: &str, files: &[&str]) {
    write(root, &format!("boot/vmlinuz-{release}"), "kernel\n");
    write(root, &format!("boot/initrd.img-{release}"), "image\n");
    let mut listing = String::from(".\n");
    for f in files {
        listing.push_str(f);
        listing.push('\n');
    }
    write(root, &format!("boot/initrd.img-{release}.list"), &listing);
}

fn vfio_listing(release: &str) -> Vec<String> {
    vec![
        format!("usr/lib/modules/{release}/kernel/drivers/vfio/pci/vfio-pci.ko"),
        format!("usr/lib/modules/{release}/kernel/drivers/vfio/vfio.ko"),
        "etc/modprobe.d/passthru-vfio.conf".to_string(),
    ]
}

/// The bundled home server after `setup vm` and a reboot into it: the card on vfio-pci, the
/// command line carrying iommu=pt, vfio-pci loaded, the initramfs holding vfio-pci and
/// passthru's modprobe file.
fn set_up_host() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let ok = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!(
            "{}/.",
            repo().join("examples/hosts/homelab").display()
        ))
        .arg(root)
        .status()
        .unwrap();
    assert!(ok.success());
    let o = run(root, &["setup", "vm", GPU, "--force", "--yes"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The reboot.
    set_driver(root, GPU, "vfio-pci");
    set_driver(root, AUDIO, "vfio-pci");
    let cmdline = std::fs::read_to_string(root.join("proc/cmdline")).unwrap();
    write(
        root,
        "proc/cmdline",
        &format!("{} iommu=pt\n", cmdline.trim()),
    );
    let modules = std::fs::read_to_string(root.join("proc/modules")).unwrap();
    write(
        root,
        "proc/modules",
        &format!("{modules}vfio_pci 16384 0 - Live 0x0000000000000000\n"),
    );
    let files = vfio_listing(KERNEL);
    initramfs(
        root,
        KERNEL,
        &files.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    t
}

/// Runs `verify --json` and returns the exit code and the document.
fn verify(root: &Path, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["verify", "--json"];
    args.extend(extra);
    let o = run(root, &args);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "verify --json: {e}\n{}\n{}",
            stdout(&o),
            String::from_utf8_lossy(&o.stderr)
        )
    });
    assert_eq!(v["schema_version"], 1);
    (o.status.code().unwrap_or(-1), v)
}

/// The findings of one check: (subject, status, fix).
fn findings(v: &Value, id: &str) -> Vec<(String, String, String)> {
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["id"] == id)
        .map(|f| {
            (
                f["subject"].as_str().unwrap().to_string(),
                f["status"].as_str().unwrap().to_string(),
                f["fix"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn statuses(v: &Value, id: &str) -> Vec<String> {
    findings(v, id).into_iter().map(|f| f.1).collect()
}

#[test]
fn a_host_as_set_up_holds() {
    let t = set_up_host();
    let (code, v) = verify(t.path(), &[]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["drifted"], false);
    assert_eq!(statuses(&v, "verify.bound"), ["ok"], "{v:#}");
    assert_eq!(statuses(&v, "verify.initramfs"), ["ok"], "{v:#}");
    // The running kernel is the next: nothing to build.
    assert!(findings(&v, "verify.modules").is_empty(), "{v:#}");
    let files = statuses(&v, "verify.files");
    assert!(
        !files.is_empty() && files.iter().all(|s| s == "ok"),
        "{v:#}"
    );
    assert_eq!(v["next_kernel"]["release"], KERNEL);
    assert_eq!(v["transactions"].as_array().unwrap().len(), 1);
}

#[test]
fn bound_fires_when_the_card_is_back_on_its_host_driver() {
    let t = set_up_host();
    set_driver(t.path(), GPU, "nvidia");
    let (code, v) = verify(t.path(), &[]);
    assert_eq!(code, 1, "{v:#}");
    let f = findings(&v, "verify.bound");
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].1, "drifted");
    assert!(f[0].2.contains(&format!("passthru bind {GPU}")), "{f:?}");
    // --next-boot does not judge the running host.
    let (code, v) = verify(t.path(), &["--next-boot"]);
    assert_eq!(code, 0, "{v:#}");
    assert!(findings(&v, "verify.bound").is_empty());
}

#[test]
fn bound_says_pending_before_the_reboot_and_fires_when_another_card_is_at_the_address() {
    let t = set_up_host();
    let root = t.path();
    // Before the reboot: on the host driver, the command line without iommu=pt.
    set_driver(root, GPU, "nvidia");
    set_driver(root, AUDIO, "snd_hda_intel");
    let cmdline = std::fs::read_to_string(root.join("proc/cmdline")).unwrap();
    write(root, "proc/cmdline", &cmdline.replace(" iommu=pt", ""));
    let (code, v) = verify(root, &[]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(statuses(&v, "verify.bound"), ["pending"]);
    // A BIOS update renumbered the bus: another card answers at the address.
    write(
        root,
        &format!("sys/bus/pci/devices/{GPU}/subsystem_device"),
        "0x1234\n",
    );
    let (code, v) = verify(root, &[]);
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(statuses(&v, "verify.bound"), ["drifted"]);
}

#[test]
fn initramfs_fires_when_the_next_kernel_lacks_vfio() {
    let t = set_up_host();
    let root = t.path();
    // A kernel upgrade whose initramfs was built without passthru's configuration.
    let new = "6.1.0-20-amd64";
    write(root, &format!("lib/modules/{new}/modules.builtin"), "");
    initramfs(
        root,
        new,
        &[&format!("usr/lib/modules/{new}/kernel/fs/ext4/ext4.ko")],
    );
    let (code, v) = verify(root, &["--next-boot"]);
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(v["next_kernel"]["release"], new);
    let f = findings(&v, "verify.initramfs");
    assert_eq!(f.len(), 1, "{v:#}");
    assert_eq!(f[0].1, "drifted");
    assert_eq!(f[0].2, format!("update-initramfs -u -k {new}"));
    let msg = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "verify.initramfs")
        .unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("vfio-pci module") && msg.contains("passthru-vfio.conf"),
        "{msg}"
    );
    // The hook names the kernel it was called for.
    let (code, v) = verify(root, &["--next-boot", "--kernel", KERNEL]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(statuses(&v, "verify.initramfs"), ["ok"]);
    // Rebuilt with vfio: it holds.
    let files = vfio_listing(new);
    initramfs(
        root,
        new,
        &files.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let (_, v) = verify(root, &["--next-boot"]);
    assert_eq!(statuses(&v, "verify.initramfs"), ["ok"], "{v:#}");
}

#[test]
fn initramfs_fires_when_the_next_kernel_has_no_image() {
    let t = set_up_host();
    let root = t.path();
    std::fs::remove_file(root.join(format!("boot/initrd.img-{KERNEL}"))).unwrap();
    let (code, v) = verify(root, &["--next-boot"]);
    assert_eq!(code, 1, "{v:#}");
    let f = findings(&v, "verify.initramfs");
    assert_eq!(f[0].2, format!("update-initramfs -c -k {KERNEL}"));
}

#[test]
fn modules_fire_when_the_next_kernel_lacks_a_dkms_module() {
    let t = set_up_host();
    let root = t.path();
    let new = "6.1.0-20-amd64";
    let files = vfio_listing(new);
    initramfs(
        root,
        new,
        &files.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    write(root, &format!("lib/modules/{new}/modules.builtin"), "");
    write(
        root,
        &format!("lib/modules/{new}/kernel/drivers/vfio/pci/vfio-pci.ko"),
        "",
    );
    let (code, v) = verify(root, &["--next-boot"]);
    assert_eq!(code, 1, "{v:#}");
    let f = findings(&v, "verify.modules");
    let names: Vec<&str> = f.iter().map(|f| f.0.as_str()).collect();
    assert_eq!(
        names,
        ["nvidia", "nvidia_drm", "nvidia_modeset", "nvidia_uvm"]
    );
    assert!(f.iter().all(|f| f.1 == "drifted"));
    assert!(
        f[0].2.starts_with(&format!("dkms autoinstall -k {new}")),
        "{f:?}"
    );
    // DKMS built them for the new kernel: they hold.
    for m in ["nvidia", "nvidia-drm", "nvidia-modeset", "nvidia-uvm"] {
        write(
            root,
            &format!("lib/modules/{new}/updates/dkms/{m}.ko.xz"),
            "",
        );
    }
    let (code, v) = verify(root, &["--next-boot"]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(statuses(&v, "verify.modules"), ["ok", "ok", "ok", "ok"]);
}

#[test]
fn nvidia_fires_when_containers_get_another_drivers_libraries() {
    let t = set_up_host();
    let root = t.path();
    // The host driver is 550.54.14 (proc/driver/nvidia/version).
    let spec = |v: &str| {
        format!(
            "cdiVersion: 0.5.0\nkind: nvidia.com/gpu\ncontainerEdits:\n  mounts:\n  - hostPath: /usr/lib/x86_64-linux-gnu/libnvidia-ml.so.{v}\n    containerPath: /usr/lib/x86_64-linux-gnu/libnvidia-ml.so.{v}\n"
        )
    };
    write(root, "etc/cdi/nvidia.yaml", &spec("550.54.14"));
    let (code, v) = verify(root, &[]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(statuses(&v, "verify.nvidia"), ["ok"]);
    write(root, "etc/cdi/nvidia.yaml", &spec("535.154.05"));
    write(
        root,
        "etc/pve/lxc/101.conf",
        "arch: amd64\nlxc.mount.entry: /usr/lib/x86_64-linux-gnu/libcuda.so.535.154.05 usr/lib/x86_64-linux-gnu/libcuda.so.535.154.05 none bind,optional,create=file\n",
    );
    let (code, v) = verify(root, &[]);
    assert_eq!(code, 1, "{v:#}");
    let f = findings(&v, "verify.nvidia");
    assert_eq!(f.len(), 2, "{f:?}");
    assert!(f.iter().all(|f| f.1 == "drifted"));
    assert_eq!(
        f[0].2,
        "nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml"
    );
    assert!(f[1].2.contains("etc/pve/lxc/101.conf"), "{f:?}");
}

#[test]
fn files_fire_when_passthrus_file_changes_and_note_a_shared_file() {
    let t = set_up_host();
    let root = t.path();
    let shared = "etc/initramfs-tools/modules";
    let text = std::fs::read_to_string(root.join(shared)).unwrap();
    write(root, shared, &format!("{text}# mine\n"));
    let (code, v) = verify(root, &[]);
    assert_eq!(code, 0, "a shared file edited is not drift: {v:#}");
    let f = findings(&v, "verify.files");
    assert!(f.iter().any(|f| f.0 == shared && f.1 == "note"), "{f:?}");
    let own = "etc/modprobe.d/passthru-vfio.conf";
    std::fs::remove_file(root.join(own)).unwrap();
    let (code, v) = verify(root, &["--next-boot"]);
    assert_eq!(code, 1, "{v:#}");
    let f = findings(&v, "verify.files");
    let mine = f.iter().find(|f| f.0 == own).unwrap();
    assert_eq!(mine.1, "drifted");
    assert!(
        mine.2.starts_with(&format!("passthru setup vm {GPU}")),
        "{mine:?}"
    );
}

#[test]
fn after_rollback_nothing_is_in_effect() {
    let t = set_up_host();
    let root = t.path();
    let o = run(root, &["rollback", "--yes"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    set_driver(root, GPU, "nvidia");
    let (code, v) = verify(root, &[]);
    assert_eq!(code, 0, "{v:#}");
    assert!(findings(&v, "verify.bound").is_empty(), "{v:#}");
    assert!(findings(&v, "verify.initramfs").is_empty(), "{v:#}");
    // The rollback's own files (put back) are what is in effect, and they hold.
    assert!(
        statuses(&v, "verify.files").iter().all(|s| s == "ok"),
        "{v:#}"
    );
}

#[test]
fn hostpci_fires_when_the_address_names_another_card() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    passthru_testkit::build_named("amd-navi", root).unwrap();
    write(root, "etc/hostname", "pve1\n");
    let src = corpus().join("proxmox/qemu-server/parse-config-input/regular-vm-efi.conf");
    std::fs::create_dir_all(root.join("etc/pve/qemu-server")).unwrap();
    std::fs::copy(&src, root.join("etc/pve/qemu-server/100.conf")).unwrap();
    let o = run(
        root,
        &["vm", "attach", "100", "03:00.0", "--force", "--yes"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (code, v) = verify(root, &[]);
    let f = findings(&v, "verify.hostpci");
    assert_eq!(f.len(), 1, "{v:#}");
    assert_eq!(f[0].1, "ok", "{v:#}");
    assert_eq!(code, 0, "{v:#}");
    // After a BIOS update another card answers at 03:00.0 (another subsystem).
    write(
        root,
        "sys/bus/pci/devices/0000:03:00.0/subsystem_device",
        "0x0001\n",
    );
    let (code, v) = verify(root, &[]);
    assert_eq!(code, 1, "{v:#}");
    let f = findings(&v, "verify.hostpci");
    assert_eq!(f[0].0, "VM 100 hostpci0");
    assert_eq!(f[0].1, "drifted");
    assert!(f[0].2.contains("do not start VM 100"), "{f:?}");
}

#[test]
fn prometheus_textfile_and_text_output() {
    let t = set_up_host();
    let root = t.path();
    set_driver(root, GPU, "nvidia");
    let prom = root.join("verify.prom");
    let o = run(root, &["verify", "--prometheus", prom.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let text = stdout(&o);
    assert!(
        text.contains("[DRIFTED] verify.bound 0000:07:00.0"),
        "{text}"
    );
    assert!(
        text.contains("    fix: passthru bind 0000:07:00.0"),
        "{text}"
    );
    let metrics = std::fs::read_to_string(&prom).unwrap();
    assert!(
        metrics.contains("passthru_verify_drifted{scope=\"all\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "passthru_verify_finding{check=\"verify.bound\",subject=\"0000:07:00.0\",status=\"drifted\"} 1\n"
        ),
        "{metrics}"
    );
}
