//! Containers done the current way: CDI names when a spec names the card, numeric gids,
//! /dev/kfd for AMD, NVIDIA identity from procfs (never position), and the Incus line.

mod common;

use std::path::Path;

use common::*;

fn built(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    passthru_testkit::build_named(name, dir.path()).unwrap();
    dir
}

fn out(root: &Path, args: &[&str]) -> String {
    let o = passthru_fixed(root, args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    stdout(&o)
}

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

#[test]
fn docker_gives_the_numeric_render_gid_never_the_name() {
    let h = built("intel-adl-sriov"); // etc/group: render:x:993
    let text = out(h.path(), &["docker", "00:02.0"]);
    assert!(
        text.contains("--device /dev/dri/renderD128:/dev/dri/renderD128 --group-add 993 "),
        "{text}"
    );
    assert!(text.contains("    group_add:\n      - \"993\"\n"), "{text}");
    assert!(
        !text.contains("render\n") && !text.contains("--group-add render"),
        "{text}"
    );
    // No group file: said so, with a placeholder, not a guess.
    std::fs::remove_file(h.path().join("etc/group")).unwrap();
    let text = out(h.path(), &["docker", "00:02.0"]);
    assert!(
        text.contains("--group-add RENDER_GID") && text.contains("getent group render"),
        "{text}"
    );
}

#[test]
fn amd_compute_gets_kfd_and_a_cdi_spec_by_node_wins() {
    let h = built("amd-navi");
    write(
        h.path(),
        "etc/group",
        "root:x:0:\nvideo:x:44:\nrender:x:104:\n",
    );
    let text = out(h.path(), &["docker", "03:00.0"]);
    assert!(
        !text.contains("/dev/kfd"),
        "no dev/kfd on this host: {text}"
    );
    write(h.path(), "dev/kfd", "");
    let text = out(h.path(), &["docker", "03:00.0"]);
    assert!(
        text.contains("--device /dev/kfd:/dev/kfd --group-add 104"),
        "{text}"
    );
    assert!(!text.contains("CDI"), "{text}");
    // amd-ctk's spec (ROCm/container-toolkit): device "0" lists this card's render node.
    write(
        h.path(),
        "etc/cdi/amd.json",
        r#"{"cdiVersion":"0.6.0","kind":"amd.com/gpu","devices":[{"name":"0","containerEdits":{"deviceNodes":[{"path":"/dev/dri/card0"},{"path":"/dev/dri/renderD128"},{"path":"/dev/kfd"}]}},{"name":"all","containerEdits":{"deviceNodes":[{"path":"/dev/dri/renderD128"}]}}]}"#,
    );
    let text = out(h.path(), &["docker", "03:00.0"]);
    assert!(
        text.contains("# CDI (etc/cdi/amd.json names this card)"),
        "{text}"
    );
    assert!(
        text.contains("docker run --device amd.com/gpu=0 ..."),
        "{text}"
    );
    assert!(
        text.contains("podman run --device amd.com/gpu=0 ..."),
        "{text}"
    );
}

#[test]
fn nvidia_is_named_by_uuid_and_minor_from_procfs_not_by_position() {
    let h = built("nvidia-vgpu-mdev");
    let root = h.path();
    // 03:00.0 is first in PCI order (position 0) but the driver gave it minor 1.
    let text = out(root, &["docker", "03:00.0"]);
    assert!(
        text.contains(r#"--gpus '"device=GPU-3b1c9a2e-7d4f-4e6a-8b5c-1f2e3d4c5b6a"'"#),
        "{text}"
    );
    assert!(
        text.contains(r#"device_ids: ["GPU-3b1c9a2e-7d4f-4e6a-8b5c-1f2e3d4c5b6a"]"#),
        "{text}"
    );
    // 81:00.0 has no information file: the position, said to be unstable.
    let text = out(root, &["docker", "81:00.0"]);
    assert!(
        text.contains("has no GPU UUID: 1 is the card's position"),
        "{text}"
    );
    for n in ["nvidia0", "nvidia1", "nvidiactl"] {
        write(root, &format!("dev/{n}"), "");
    }
    let s = check_snapshot(root);
    let hr = passthru::host::HostRoot::new(root).unwrap();
    let files = passthru::host::RootFiles::new(&hr);
    let p40 = s.device(&"0000:03:00.0".parse().unwrap()).unwrap();
    let nodes = passthru::plan::attach::gpu_nodes(&s, &files, p40);
    assert!(
        nodes.contains(&"/dev/nvidia1".to_string()) && !nodes.contains(&"/dev/nvidia0".to_string()),
        "{nodes:?}"
    );
    // nvidia-ctk's spec names the GPU by UUID as well as by index.
    write(
        root,
        "var/run/cdi/nvidia.yaml",
        "---\ncdiVersion: 0.5.0\ndevices:\n- containerEdits:\n    deviceNodes:\n    - path: /dev/nvidia1\n  name: \"0\"\n- containerEdits:\n    deviceNodes:\n    - path: /dev/nvidia1\n  name: GPU-3b1c9a2e-7d4f-4e6a-8b5c-1f2e3d4c5b6a\nkind: nvidia.com/gpu\n",
    );
    let text = out(root, &["docker", "03:00.0"]);
    assert!(
        text.contains(
            "docker run --device nvidia.com/gpu=GPU-3b1c9a2e-7d4f-4e6a-8b5c-1f2e3d4c5b6a ..."
        ),
        "{text}"
    );
}

#[test]
fn incus_lines_for_a_card_a_vf_and_an_mdev() {
    let h = built("intel-adl-sriov");
    assert_eq!(
        out(h.path(), &["incus", "media", "00:02.0"]),
        "incus config device add media gpu0 gpu gputype=physical pci=0000:00:02.0 gid=993\n"
    );
    let text = out(
        h.path(),
        &["incus", "win", "00:02.2", "--vf", "--device", "vgpu"],
    );
    assert!(
        text.starts_with("incus config device add win vgpu gpu gputype=sriov pci=0000:00:02.0\n"),
        "{text}"
    );
    // --yes under a fixture root runs nothing.
    let text = out(h.path(), &["incus", "media", "00:02.0", "--yes"]);
    assert!(text.contains("skipped (not the live host)"), "{text}");
    let m = built("nvidia-vgpu-mdev");
    assert_eq!(
        out(
            m.path(),
            &["incus", "win", "03:00.0", "--mdev", "nvidia-47"]
        ),
        "incus config device add win gpu0 gpu gputype=mdev mdev=nvidia-47 pci=0000:03:00.0\n"
    );
    let o = passthru_fixed(m.path(), &["incus", "win", "03:00.0", "--mdev", "nvidia-1"]);
    assert_eq!(o.status.code(), Some(2));
    let p = built("tesla-p40");
    let o = passthru_fixed(p.path(), &["incus", "win", "03:00.0", "--vf"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("has no virtual functions"));
}
