//! `passthru bind` / `unbind` plans on real-kernel trees. The writes themselves are proven
//! in a booted guest by scripts/qemu-lab/bind-test.sh (CI runs it); here, what is written,
//! in which order, and what is refused.

mod common;

use common::*;
use passthru::plan::runtime::{plan_bind, plan_unbind};

fn qemu(name: &str) -> passthru::model::Snapshot {
    check_snapshot(&unpacked(
        &repo().join(format!("tests/fixtures/qemu/{name}/root.tar.gz")),
    ))
}

fn steps(p: &passthru::plan::runtime::RuntimePlan) -> Vec<String> {
    p.writes
        .iter()
        .map(|w| format!("{} < {}", w.path, w.value.trim_end()))
        .collect()
}

#[test]
fn bind_writes_override_unbind_probe_for_every_function() {
    let s = qemu("intel-flat");
    let p = plan_bind(&s, "00:02.0", false).unwrap();
    assert_eq!(
        steps(&p),
        [
            "sys/bus/pci/devices/0000:00:02.0/driver_override < vfio-pci",
            "sys/bus/pci/drivers/bochs-drm/unbind < 0000:00:02.0",
            "sys/bus/pci/drivers_probe < 0000:00:02.0",
            "sys/bus/pci/devices/0000:00:02.1/driver_override < vfio-pci",
            "sys/bus/pci/drivers/snd_hda_intel/unbind < 0000:00:02.1",
            "sys/bus/pci/drivers_probe < 0000:00:02.1",
        ]
    );
    assert!(p.modprobe.is_empty(), "the guest had vfio_pci loaded");
    // Already bound: nothing to do.
    assert!(plan_bind(&qemu("intel-flat-vfio"), "00:02.0", false)
        .unwrap()
        .writes
        .is_empty());
}

#[test]
fn bind_is_refused_for_shared_groups_busy_gpus_and_the_only_display() {
    let e = plan_bind(&qemu("intel-bridges"), "02:03.0", false).unwrap_err();
    assert!(e.contains("group.shared"), "{e}");
    let mut busy = qemu("intel-flat");
    busy.host_usage.device_users = Some(vec![passthru::model::DeviceUser {
        pid: 77,
        command: Some("Xorg".into()),
        node: "/dev/dri/card0".into(),
    }]);
    let card = busy
        .drm
        .iter()
        .find(|c| c.device.map(|d| d.to_string()) == Some("0000:00:02.0".into()))
        .map(|c| c.name.clone())
        .expect("bochs-drm registered a DRM card for the VGA in the guest");
    busy.host_usage.device_users.as_mut().unwrap()[0].node = format!("/dev/dri/{card}");
    let e = plan_bind(&busy, "00:02.0", false).unwrap_err();
    assert!(e.contains("console.in-use"), "{e}");
    let e = plan_bind(&qemu("intel-switch"), "05:00.0", false).unwrap_err();
    assert!(e.contains("safety.only-display"), "{e}");
    assert!(
        plan_bind(&qemu("intel-switch"), "05:00.0", true).is_ok(),
        "--force"
    );
}

#[test]
fn unbind_clears_the_override_and_reprobes() {
    let p = plan_unbind(&qemu("intel-flat-vfio"), "00:02.0").unwrap();
    assert_eq!(
        steps(&p),
        [
            "sys/bus/pci/devices/0000:00:02.0/driver_override < ",
            "sys/bus/pci/drivers/vfio-pci/unbind < 0000:00:02.0",
            "sys/bus/pci/drivers_probe < 0000:00:02.0",
            "sys/bus/pci/devices/0000:00:02.1/driver_override < ",
            "sys/bus/pci/drivers/vfio-pci/unbind < 0000:00:02.1",
            "sys/bus/pci/drivers_probe < 0000:00:02.1",
        ]
    );
    assert!(plan_unbind(&qemu("intel-flat"), "00:02.0")
        .unwrap()
        .writes
        .is_empty());
}

#[test]
fn under_a_root_the_writes_land_in_the_tree_and_nothing_runs() {
    let src = unpacked(&repo().join("tests/fixtures/qemu/intel-flat/root.tar.gz"));
    let dir = tempfile::tempdir().unwrap();
    assert!(std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", src.display()))
        .arg(dir.path())
        .status()
        .unwrap()
        .success());
    let o = passthru(&[
        "bind",
        "00:02.0",
        "--yes",
        "--root",
        dir.path().to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ov = std::fs::read_to_string(
        dir.path()
            .join("sys/bus/pci/devices/0000:00:02.0/driver_override"),
    )
    .unwrap();
    assert_eq!(ov, "vfio-pci");
    // --dry-run writes nothing.
    let o = passthru(&[
        "unbind",
        "00:02.0",
        "--dry-run",
        "--root",
        dir.path().to_str().unwrap(),
    ]);
    assert!(o.status.success());
    assert_eq!(
        std::fs::read_to_string(
            dir.path()
                .join("sys/bus/pci/devices/0000:00:02.0/driver_override")
        )
        .unwrap(),
        "vfio-pci"
    );
}
