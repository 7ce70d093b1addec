//! Power readings on fixture hwmon trees (files as amdgpu and i915/xe lay them out: amdgpu
//! `power1_average` in microwatts, Linux Documentation/gpu/amdgpu/thermal.rst; i915/xe
//! `energy1_input` in microjoules) and the rules that keep a GPU asleep.

mod common;

use std::time::Duration;

use common::*;
use passthru::host::power::{energy_rate_watts, read_gpu_power};
use passthru::host::HostRoot;

fn gpu_dir(root: &std::path::Path, bdf: &str) -> std::path::PathBuf {
    std::fs::canonicalize(root.join("sys/bus/pci/devices").join(bdf)).unwrap()
}

/// The RX 6800 XT host with amdgpu's hwmon reporting 23 W (`power1_average`, µW).
fn rx6800_reading_23_watts() -> (tempfile::TempDir, std::path::PathBuf) {
    let t = tempfile::tempdir().unwrap();
    passthru_testkit::build_named("amd-navi", t.path()).unwrap();
    let hw = gpu_dir(t.path(), "0000:03:00.0").join("hwmon/hwmon4");
    std::fs::create_dir_all(&hw).unwrap();
    std::fs::write(hw.join("name"), "amdgpu\n").unwrap();
    std::fs::write(hw.join("power1_average"), "23000000\n").unwrap();
    (t, hw)
}

#[test]
fn amdgpu_hwmon_microwatts() {
    let (t, hw) = rx6800_reading_23_watts();
    let s = check_snapshot(t.path());
    let gpu = s.gpus().next().unwrap();
    let r = read_gpu_power(
        &HostRoot::new(t.path()).unwrap(),
        gpu,
        Duration::ZERO,
        false,
    );
    assert_eq!(r.watts, Some(23.0));
    assert_eq!(r.source.as_deref(), Some("hwmon power1_average"));

    // Newer ASICs have power1_input instead.
    std::fs::remove_file(hw.join("power1_average")).unwrap();
    std::fs::write(hw.join("power1_input"), "8500000\n").unwrap();
    let r = read_gpu_power(
        &HostRoot::new(t.path()).unwrap(),
        gpu,
        Duration::ZERO,
        false,
    );
    assert_eq!(r.watts, Some(8.5));
}

#[test]
fn a_sleeping_gpu_is_not_measured() {
    let (t, _) = rx6800_reading_23_watts();
    let mut s = check_snapshot(t.path());
    let gpu = s.devices.iter_mut().find(|d| d.is_gpu()).unwrap();
    gpu.power.runtime_status = Some("suspended".into());
    let r = read_gpu_power(
        &HostRoot::new(t.path()).unwrap(),
        gpu,
        Duration::ZERO,
        false,
    );
    assert_eq!(r.watts, None);
    assert!(r.unavailable.unwrap().contains("asleep"));
}

#[test]
fn intel_energy_counter_rate_and_flat_counters() {
    assert_eq!(
        energy_rate_watts(Some(1_000_000), Some(4_000_000), 0.5),
        Some(6.0)
    );
    assert_eq!(
        energy_rate_watts(Some(0), Some(0), 0.5),
        None,
        "a zero counter is no figure"
    );
    assert_eq!(
        energy_rate_watts(Some(5), Some(5), 0.5),
        None,
        "a flat counter is no figure"
    );
    // A static fixture file is a flat counter: reported as such, not as 0 W.
    let t = tempfile::tempdir().unwrap();
    passthru_testkit::build_named("intel-n100", t.path()).unwrap();
    let hw = gpu_dir(t.path(), "0000:00:02.0").join("hwmon/hwmon2");
    std::fs::create_dir_all(&hw).unwrap();
    std::fs::write(hw.join("name"), "i915\n").unwrap();
    std::fs::write(hw.join("energy1_input"), "123456789\n").unwrap();
    let s = check_snapshot(t.path());
    let r = read_gpu_power(
        &HostRoot::new(t.path()).unwrap(),
        s.gpus().next().unwrap(),
        Duration::from_millis(10),
        false,
    );
    assert_eq!(r.watts, None);
    assert!(r.unavailable.unwrap().contains("did not move"));
}

#[test]
fn vfio_bound_and_nvidia_without_nvml() {
    // The twin-GPU host: the second card is on vfio-pci.
    let t = tempfile::tempdir().unwrap();
    passthru_testkit::build_named("twin-gpus", t.path()).unwrap();
    let s = check_snapshot(t.path());
    let root = HostRoot::new(t.path()).unwrap();
    for g in s.gpus() {
        // Awake, so that only the driver decides (the fixture has one card asleep).
        let mut g = g.clone();
        g.power.runtime_status = Some("active".into());
        let r = read_gpu_power(&root, &g, Duration::ZERO, false);
        assert_eq!(r.watts, None);
        let why = r.unavailable.unwrap();
        if g.driver.as_deref() == Some("vfio-pci") {
            assert!(why.contains("vfio-pci"), "{why}");
        } else {
            // Under a fixture root NVML is never asked (it would measure this machine).
            assert!(why.contains("live host"), "{why}");
        }
    }
    // On this machine (no NVIDIA driver), asking NVML gives a clear line, not a failure.
    match passthru::host::nvml::power_watts("0000:07:00.0") {
        Ok(w) => eprintln!("this machine has NVML: {w} W"),
        Err(why) => assert!(why.contains("NVML"), "{why}"),
    }
}

#[test]
fn power_command_prometheus_and_runtime_pm() {
    let (t, _) = rx6800_reading_23_watts();
    let prom = t.path().join("passthru.prom");
    let root = t.path().to_str().unwrap();
    let o = passthru(&[
        "power",
        "--root",
        root,
        "--prometheus",
        prom.to_str().unwrap(),
        "--price-kwh",
        "0.25",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = stdout(&o);
    assert!(text.contains("23.0 W (hwmon power1_average)"), "{text}");
    // 23 W all year at 0.25 = 50.37.
    assert!(text.contains("costs 50.37"), "{text}");
    let p = std::fs::read_to_string(&prom).unwrap();
    assert!(p.contains("# TYPE passthru_gpu_power_watts gauge"));
    assert!(
        p.contains("passthru_gpu_power_watts{pci=\"0000:03:00.0\""),
        "{p}"
    );
    assert!(
        p.lines().filter(|l| !l.starts_with('#')).all(|l| l
            .rsplit_once(' ')
            .unwrap()
            .1
            .parse::<f64>()
            .is_ok()),
        "{p}"
    );

    // --runtime-pm: a udev rule through the transaction, undone by rollback.
    let rules = t
        .path()
        .join("etc/udev/rules.d/91-passthru-runtime-pm.rules");
    let o = passthru(&[
        "power",
        "--runtime-pm",
        "auto",
        "03:00.0",
        "--yes",
        "--root",
        root,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = std::fs::read_to_string(&rules).unwrap();
    assert!(
        r.contains("KERNEL==\"0000:03:00.0\", ATTR{power/control}=\"auto\""),
        "{r}"
    );
    assert!(stdout(&passthru(&[
        "power",
        "--runtime-pm",
        "auto",
        "03:00.0",
        "--yes",
        "--root",
        root
    ]))
    .contains("Nothing to change"));
    assert!(passthru(&["rollback", "--yes", "--root", root])
        .status
        .success());
    assert!(!rules.exists());
}
