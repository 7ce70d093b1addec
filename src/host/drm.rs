//! DRM cards, their render nodes, connectors (monitor attached or not) and stable
//! `dev/dri/by-path` names. Read-only.

use crate::model::{DrmCard, DrmConnector, Issue, PciAddress};

use super::root::HostRoot;

const DRM: &str = "sys/class/drm";

fn numbered(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix)
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

pub fn read_drm(root: &HostRoot, issues: &mut Vec<Issue>) -> Vec<DrmCard> {
    let entries = root.list_dir(DRM, issues);
    let device_of = |node: &str| -> Option<PciAddress> {
        let (target, _) = root.link_name(&format!("{DRM}/{node}/device"))?;
        target.parse().ok()
    };
    let by_path = root.list_dir("dev/dri/by-path", issues);
    let mut cards = Vec::new();
    for name in entries.iter().filter(|n| numbered(n, "card")) {
        let device = device_of(name);
        let render_node = device.and_then(|d| {
            entries
                .iter()
                .filter(|n| numbered(n, "renderD"))
                .find(|n| device_of(n) == Some(d))
                .cloned()
        });
        let prefix = format!("{name}-");
        let connectors = entries
            .iter()
            .filter_map(|n| n.strip_prefix(&prefix))
            .map(|conn| DrmConnector {
                name: conn.to_string(),
                status: root
                    .read_noting(&format!("{DRM}/{name}-{conn}/status"), issues)
                    .map(|s| s.trim().to_string()),
            })
            .collect();
        let by_path = device
            .map(|d| {
                let tag = format!("pci-{d}-");
                by_path
                    .iter()
                    .filter(|p| p.starts_with(&tag))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        cards.push(DrmCard {
            name: name.clone(),
            device,
            render_node,
            connectors,
            by_path,
        });
    }
    cards
}
