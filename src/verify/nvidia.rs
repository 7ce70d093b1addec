//! `verify.nvidia`: the NVIDIA host driver's version matches the user-space libraries that
//! containers are given (a CDI spec, LXC bind mounts). After a driver upgrade the old
//! libraries fail with "Failed to initialize NVML: Driver/library version mismatch". Pure.

use crate::model::Snapshot;

use super::{Status, VerifyFinding};

const ID: &str = "verify.nvidia";

pub fn check_nvidia(s: &Snapshot, libs: &[(String, String)]) -> Vec<VerifyFinding> {
    if libs.is_empty() {
        return Vec::new();
    }
    let Some(host) = s.system.nvidia_driver_version.as_deref() else {
        return vec![VerifyFinding::new(ID, Status::Unknown, "nvidia").says(
            "containers are given NVIDIA libraries, but the host driver's version cannot be read (no proc/driver/nvidia/version: is the nvidia module loaded?)",
            libs.iter()
                .map(|(place, v)| format!("{place}: {v}"))
                .collect::<Vec<_>>()
                .join("; "),
        ).fix("modprobe nvidia, then passthru verify")];
    };
    let mut out = Vec::new();
    for (place, version) in libs {
        let file = place.split(':').next().unwrap_or(place);
        if version == host {
            out.push(VerifyFinding::new(ID, Status::Ok, file).says(
                format!("gives containers the libraries of driver {host}, the host's"),
                format!("{place}: {version}; proc/driver/nvidia/version: {host}"),
            ));
            continue;
        }
        let fix = if file.contains("cdi") {
            format!("nvidia-ctk cdi generate --output=/{file}")
        } else {
            format!(
                "in /{file}, point the lxc.mount.entry lines at the .so.{host} libraries (the host's driver), then restart the container"
            )
        };
        out.push(
            VerifyFinding::new(ID, Status::Drifted, file)
                .says(
                    format!("gives containers the libraries of driver {version}, but the host runs {host}: NVML fails with a driver/library version mismatch"),
                    format!("{place}: {version}; proc/driver/nvidia/version: {host}"),
                )
                .fix(fix),
        );
    }
    out
}
