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

#[test]
fn the_prometheus_textfile_is_written_atomically_and_keeps_its_mode() {
    use std::os::unix::fs::PermissionsExt;
    let (t, _) = rx6800_reading_23_watts();
    let dir = t.path().join("textfile");
    std::fs::create_dir_all(&dir).unwrap();
    let prom = dir.join("passthru.prom");
    // An existing textfile's mode is the admin's choice (which user node_exporter runs as).
    std::fs::write(&prom, "# old\n").unwrap();
    std::fs::set_permissions(&prom, std::fs::Permissions::from_mode(0o604)).unwrap();
    let args = [
        "power",
        "--root",
        t.path().to_str().unwrap(),
        "--prometheus",
        prom.to_str().unwrap(),
    ];
    let o = passthru(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(std::fs::read_to_string(&prom)
        .unwrap()
        .contains("passthru_gpu_power_watts"));
    let mode = std::fs::metadata(&prom).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o604, "mode {mode:o}");
    // Nothing is left beside it for the collector to read.
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["passthru.prom"]);

    // The durability half, seen by strace: the temporary file is fsynced before the rename,
    // and the directory after it (else a power cut can leave an empty or missing file).
    std::process::Command::new("strace")
        .arg("-V")
        .output()
        .expect("strace is needed (the README's test command installs it)");
    let log = t.path().join("strace.log");
    if !strace_works() {
        skip_or_fail("strace cannot trace here");
        return;
    }
    let st = std::process::Command::new("strace")
        .args(["-f", "-o", log.to_str().unwrap()])
        .args([
            "-e",
            "trace=openat,fsync,fdatasync,rename,renameat,renameat2",
        ])
        .arg(env!("CARGO_BIN_EXE_passthru"))
        .args(args)
        .env_remove("PASSTHRU_ROOT")
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "passthru under strace: {}",
        String::from_utf8_lossy(&st.stderr)
    );
    let log = std::fs::read_to_string(&log).unwrap();
    let calls: Vec<&str> = log.lines().collect();
    let rename = calls
        .iter()
        .position(|l| l.contains("rename") && l.contains("passthru.prom\""))
        .unwrap_or_else(|| panic!("no rename onto passthru.prom:\n{log}"));
    let fd_of = |l: &str| l.rsplit_once("= ").map(|(_, fd)| fd.trim().to_string());
    let tmp_fd = calls[..rename]
        .iter()
        .rev()
        .find(|l| {
            l.contains("openat(")
                && l.contains("O_CREAT|O_EXCL")
                && l.contains("O_NOFOLLOW")
                && l.contains(".passthru.prom.passthru-")
        })
        .and_then(|l| fd_of(l))
        .unwrap_or_else(|| panic!("no temporary file opened:\n{log}"));
    assert!(
        calls[..rename]
            .iter()
            .any(|l| l.contains(&format!("fsync({tmp_fd})"))),
        "the temporary file is fsynced before the rename:\n{log}"
    );
    // The temporary file is created and renamed relative to the directory's descriptor
    // (`renameat(DIRFD, ".passthru.prom.passthru-PID", DIRFD, "passthru.prom")`): that
    // descriptor is the one to fsync.
    let dir_fd = calls[rename]
        .split_once("renameat(")
        .and_then(|(_, rest)| rest.split_once(','))
        .map(|(fd, _)| fd.trim().to_string())
        .unwrap_or_else(|| panic!("the rename is not relative to a directory:\n{log}"));
    assert!(
        calls[rename..]
            .iter()
            .any(|l| l.contains(&format!("fsync({dir_fd})"))),
        "the directory is fsynced after the rename:\n{log}"
    );
}

#[test]
fn runtime_pm_keeps_hand_edits_and_refuses_an_unreadable_rule_file() {
    let (t, _) = rx6800_reading_23_watts();
    let root = t.path().to_str().unwrap();
    let rules = t
        .path()
        .join("etc/udev/rules.d/91-passthru-runtime-pm.rules");
    std::fs::create_dir_all(rules.parent().unwrap()).unwrap();
    // A comment the admin added and another GPU's line stay; this GPU's old line is replaced.
    std::fs::write(
        &rules,
        "# Written by passthru: runtime power management per GPU.\n\
         # keep the iGPU awake: it drives the console\n\
         ACTION==\"add\", SUBSYSTEM==\"pci\", KERNEL==\"0000:00:02.0\", ATTR{power/control}=\"on\"\n\
         ACTION==\"add\", SUBSYSTEM==\"pci\", KERNEL==\"0000:03:00.0\", ATTR{power/control}=\"on\"\n",
    )
    .unwrap();
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
    assert_eq!(
        std::fs::read_to_string(&rules).unwrap(),
        "# Written by passthru: runtime power management per GPU.\n\
         # keep the iGPU awake: it drives the console\n\
         ACTION==\"add\", SUBSYSTEM==\"pci\", KERNEL==\"0000:00:02.0\", ATTR{power/control}=\"on\"\n\
         ACTION==\"add\", SUBSYSTEM==\"pci\", KERNEL==\"0000:03:00.0\", ATTR{power/control}=\"auto\"\n"
    );

    // A rule file that cannot be read is not planned over as a new file.
    std::fs::remove_file(&rules).unwrap();
    std::fs::create_dir(&rules).unwrap();
    let o = passthru(&[
        "power",
        "--runtime-pm",
        "on",
        "03:00.0",
        "--dry-run",
        "--root",
        root,
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{}{err}", stdout(&o));
    assert!(
        err.contains("etc/udev/rules.d/91-passthru-runtime-pm.rules"),
        "{err}"
    );
    assert!(!stdout(&o).contains("/dev/null"), "{}", stdout(&o));
}
