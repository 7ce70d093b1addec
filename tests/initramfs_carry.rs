//! dracut carries passthru's binding into the initramfs. It copies etc/modprobe.d only when
//! hostonly (Debian's default is not) and etc/udev/rules.d never, so without
//! `install_items` the udev rule that binds a twin card by address, and the softdep that
//! loads vfio-pci first, are not there when the host driver loads from the initramfs
//! (dracut 059's 90kernel-modules and 95udev-rules module-setup.sh). dracut fails on an
//! item that does not exist, so every named file must exist after each command.

mod common;

use std::path::Path;

use common::*;

fn run(root: &Path, args: &[&str]) -> std::process::Output {
    let mut a: Vec<&str> = args.to_vec();
    a.extend(["--root", root.to_str().unwrap()]);
    passthru(&a)
}

/// `install_items` as bash reads the drop-in (dracut sources its conf files).
fn install_items(root: &Path) -> Vec<String> {
    let conf = root.join("etc/dracut.conf.d/90-passthru-vfio.conf");
    if !conf.exists() {
        return Vec::new();
    }
    let o = std::process::Command::new("bash")
        .args([
            "-c",
            "set -eu; install_items=''; . \"$1\"; echo $install_items",
            "-",
        ])
        .arg(&conf)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    stdout(&o).split_whitespace().map(str::to_string).collect()
}

#[test]
fn the_dracut_dropin_names_the_binding_files_that_exist_and_only_those() {
    let t = compose_distro("twin-gpus", "fedora40-grubby-dracut");
    let root = t.path();
    let o = run(root, &["setup", "vm", "0c:00.0", "--force", "--yes"]);
    assert!(
        o.status.success(),
        "{}\n{}",
        stdout(&o),
        String::from_utf8_lossy(&o.stderr)
    );
    let items = install_items(root);
    assert_eq!(
        items,
        [
            "/etc/modprobe.d/passthru-vfio.conf",
            "/etc/udev/rules.d/90-passthru-vfio.rules"
        ],
        "twin cards are bound by a udev rule, which dracut must carry"
    );
    for i in &items {
        assert!(root.join(&i[1..]).is_file(), "{i} named but absent");
    }
    // Giving the card back removes the binding files: the drop-in stops naming them.
    let o = run(root, &["setup", "host", "0c:00.0", "--yes"]);
    assert!(
        o.status.success(),
        "{}\n{}",
        stdout(&o),
        String::from_utf8_lossy(&o.stderr)
    );
    for i in install_items(root) {
        assert!(root.join(&i[1..]).is_file(), "{i} still named but gone");
    }
    assert!(!root
        .join("etc/udev/rules.d/90-passthru-vfio.rules")
        .exists());
}

/// How vfio-pci is loaded follows the binding. By ids= it loads first and claims the card
/// (force_drivers, rd.driver.pre). By address it must load after udev has set
/// driver_override, or it claims nothing and the override keeps the host driver off too:
/// the e2e lab's dracut journey booted with the card on no driver. Then dracut only adds the
/// modules and the softdep loads vfio-pci before the host driver.
#[test]
fn dracut_loads_vfio_early_for_ids_and_by_softdep_for_a_binding_by_address() {
    let sourced = |root: &Path| {
        let conf = root.join("etc/dracut.conf.d/90-passthru-vfio.conf");
        let o = std::process::Command::new("bash")
            .args([
                "-c",
                "set -eu; force_drivers=''; add_drivers=''; . \"$1\"; echo \"$force_drivers|$add_drivers\"",
                "-",
            ])
            .arg(&conf)
            .output()
            .unwrap();
        stdout(&o).trim_end_matches('\n').to_string()
    };
    let cmdline = |root: &Path| {
        let dir = root.join("boot/loader/entries");
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .collect::<String>()
    };
    let one = compose_distro("nvidia-desktop", "fedora40-grubby-dracut");
    let o = run(one.path(), &["setup", "vm", "07:00.0", "--force", "--yes"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!one
        .path()
        .join("etc/udev/rules.d/90-passthru-vfio.rules")
        .exists());
    assert_eq!(sourced(one.path()), " vfio vfio_iommu_type1 vfio_pci |");
    assert!(cmdline(one.path()).contains("rd.driver.pre=vfio-pci"));
    let twins = compose_distro("twin-gpus", "fedora40-grubby-dracut");
    let o = run(
        twins.path(),
        &["setup", "vm", "0c:00.0", "--force", "--yes"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(sourced(twins.path()), "| vfio vfio_iommu_type1 vfio_pci ");
    assert!(!cmdline(twins.path()).contains("rd.driver.pre=vfio-pci"));
}
