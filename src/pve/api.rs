//! The API calls passthru makes, and the typed records their answers become.
//!
//! Each `read_*` makes one call through a [`Transport`] and decodes the documented shape
//! (PROXMOX-API.md; the sections are cited on each function). Decoding is lenient the way
//! Proxmox needs: unknown fields are ignored (return schemas are not enforced, so answers
//! carry extra keys such as `physfn`, `virtfns`, `nvidia`, `digest`), and booleans and
//! integers are read with [`super::loose`]. A field that is required for the record to mean
//! anything (a device's `id`, a guest's `vmid`) missing or malformed is an error naming the
//! endpoint.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use super::loose::{bool_from_perl, int_from_perl, text_from_perl};
use super::{ApiRequest, PveError, Transport};
use crate::model::PciAddress;

/// One entry of `GET /nodes` (PROXMOX-API.md §1.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeEntry {
    pub node: String,
    /// `online`, `offline` or `unknown`.
    pub status: String,
    /// The SHA-256 of the certificate the node's pveproxy serves (`AA:BB:...`).
    pub ssl_fingerprint: Option<String>,
}

/// One PCI function from `GET /nodes/{node}/hardware/pci` (`SysFSTools::lspci`, §1.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PciFunction {
    pub address: PciAddress,
    /// The 24-bit class code (`0x030000` → `0x030000`).
    pub class: u32,
    /// Four lower-case hex digits, without `0x` (`10de`).
    pub vendor: String,
    pub device: String,
    pub subsystem_vendor: Option<String>,
    pub subsystem_device: Option<String>,
    /// `None` when the API says `-1` (no IOMMU group).
    pub iommu_group: Option<i64>,
    /// The device can create mediated devices (`mdev_supported_types/` or NVIDIA's
    /// `nvidia/` directory).
    pub mdev: bool,
    pub vendor_name: Option<String>,
    pub device_name: Option<String>,
    /// SR-IOV: the physical function of this virtual function.
    pub physfn: Option<PciAddress>,
    /// SR-IOV: the virtual functions of this physical function.
    pub virtfns: Vec<PciAddress>,
}

impl PciFunction {
    /// A function as `pci_device_info` would report it, from this host's snapshot: what a
    /// mapping entry written here is checked against. `None` without vendor or device id.
    pub fn of_device(d: &crate::model::PciDevice, mdev: bool) -> Option<PciFunction> {
        Some(PciFunction {
            address: d.address,
            class: d.class.map(|c| c.0).unwrap_or(0),
            vendor: d.vendor?.to_string(),
            device: d.device?.to_string(),
            subsystem_vendor: d.subsystem_vendor.map(|v| v.to_string()),
            subsystem_device: d.subsystem_device.map(|v| v.to_string()),
            iommu_group: d.iommu_group.as_deref().and_then(|g| g.parse().ok()),
            mdev,
            vendor_name: None,
            device_name: None,
            physfn: d.physfn,
            virtfns: Vec::new(),
        })
    }

    /// `vendor:device`, as a mapping's `id=` holds it.
    pub fn vendor_device(&self) -> String {
        format!("{}:{}", self.vendor, self.device)
    }
    /// `subsystem_vendor:subsystem_device` when the device has both.
    pub fn subsystem_id(&self) -> Option<String> {
        match (&self.subsystem_vendor, &self.subsystem_device) {
            (Some(v), Some(d)) => Some(format!("{v}:{d}")),
            _ => None,
        }
    }
    /// A display controller (base class 0x03): VGA, 3D or other display.
    pub fn is_display(&self) -> bool {
        self.class >> 16 == 0x03
    }
}

/// A guest's kind, as `/cluster/resources` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GuestKind {
    Qemu,
    Lxc,
}

impl GuestKind {
    pub fn as_str(self) -> &'static str {
        match self {
            GuestKind::Qemu => "qemu",
            GuestKind::Lxc => "lxc",
        }
    }
}

/// One guest of `GET /cluster/resources?type=vm` (§1.6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GuestEntry {
    pub kind: GuestKind,
    pub vmid: u32,
    pub node: String,
    pub name: Option<String>,
    /// `running`, `stopped`, ...
    pub status: Option<String>,
    pub template: bool,
    /// The HA state when HA manages it (`started`, `stopped`, ...).
    pub hastate: Option<String>,
}

impl GuestEntry {
    pub fn running(&self) -> bool {
        self.status.as_deref() == Some("running")
    }
    /// `vm:100` / `ct:101`: the HA resource id.
    pub fn ha_sid(&self) -> String {
        match self.kind {
            GuestKind::Qemu => format!("vm:{}", self.vmid),
            GuestKind::Lxc => format!("ct:{}", self.vmid),
        }
    }
}

/// One mapping of `GET /cluster/mapping/pci` (§1.4): the stored section plus `id`, `digest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MappingRecord {
    pub id: String,
    pub description: Option<String>,
    /// The mapping's top-level `mdev` (default 0).
    pub mdev: bool,
    pub live_migration_capable: bool,
    /// The `map` entries as property strings, in stored order.
    pub map: Vec<String>,
    /// SHA-1 of the whole `mapping/pci.cfg`, for `PUT ... digest=`.
    pub digest: Option<String>,
}

/// A guest config as the API returns it: every key with its value as config text.
pub type GuestConfigMap = BTreeMap<String, String>;

/// One rule of `GET /cluster/ha/rules` (pve-ha-manager `src/PVE/API2/HA/Rules.pm`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HaRule {
    pub rule: String,
    pub kind: String,
    /// `vm:100,vm:101`, as the API encodes it.
    pub resources: String,
    pub nodes: Option<String>,
    pub digest: Option<String>,
}

fn decode_err(req: &ApiRequest, detail: impl Into<String>) -> PveError {
    PveError::Decode {
        endpoint: req.endpoint(),
        detail: detail.into(),
    }
}

fn items<'a>(req: &ApiRequest, v: &'a Value) -> Result<&'a Vec<Value>, PveError> {
    v.as_array()
        .ok_or_else(|| decode_err(req, format!("expected a list, got {}", kind_of(v))))
}

fn object<'a>(req: &ApiRequest, v: &'a Value) -> Result<&'a Map<String, Value>, PveError> {
    v.as_object()
        .ok_or_else(|| decode_err(req, format!("expected an object, got {}", kind_of(v))))
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn text(o: &Map<String, Value>, k: &str) -> Option<String> {
    o.get(k).and_then(text_from_perl).filter(|s| !s.is_empty())
}

fn flag(o: &Map<String, Value>, k: &str) -> bool {
    o.get(k).and_then(bool_from_perl).unwrap_or(false)
}

/// `0x10de` → `10de` (lower case); `None` when it is not hex.
fn hex_id(o: &Map<String, Value>, k: &str) -> Option<String> {
    let t = text(o, k)?;
    let t = t.trim();
    let h = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    (!h.is_empty() && h.len() <= 8 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| format!("{:0>4}", h.to_ascii_lowercase()))
}

/// `GET /nodes`: the cluster's nodes.
pub fn read_nodes(t: &dyn Transport) -> Result<Vec<NodeEntry>, PveError> {
    let req = ApiRequest::get("/nodes");
    let v = t.call(&req)?;
    let mut out = Vec::new();
    for item in items(&req, &v)? {
        let o = object(&req, item)?;
        let node = text(o, "node").ok_or_else(|| decode_err(&req, "a node without `node`"))?;
        out.push(NodeEntry {
            node,
            status: text(o, "status").unwrap_or_else(|| "unknown".into()),
            ssl_fingerprint: text(o, "ssl_fingerprint"),
        });
    }
    out.sort_by(|a, b| a.node.cmp(&b.node));
    Ok(out)
}

/// `GET /nodes/{node}/hardware/pci?pci-class-blacklist=`: every PCI function of the node. The
/// empty blacklist turns off the default filter (`05;06;0b`), as the GUI does, so bridges that
/// share a GPU's group are seen too (§1.2).
pub fn read_pci(t: &dyn Transport, node: &str) -> Result<Vec<PciFunction>, PveError> {
    let req =
        ApiRequest::get(format!("/nodes/{node}/hardware/pci")).param("pci-class-blacklist", "");
    let v = t.call(&req)?;
    let mut out = Vec::new();
    for item in items(&req, &v)? {
        let o = object(&req, item)?;
        out.push(parse_pci_function(&req, o)?);
    }
    out.sort_by_key(|f| f.address);
    Ok(out)
}

fn parse_pci_function(req: &ApiRequest, o: &Map<String, Value>) -> Result<PciFunction, PveError> {
    let id = text(o, "id").ok_or_else(|| decode_err(req, "a device without `id`"))?;
    let address: PciAddress = id
        .parse()
        .map_err(|e| decode_err(req, format!("device id: {e}")))?;
    let class = text(o, "class")
        .and_then(|c| {
            let h = c.trim().trim_start_matches("0x").trim_start_matches("0X");
            u32::from_str_radix(h, 16).ok()
        })
        .unwrap_or(0);
    let addr_list = |k: &str| -> Vec<PciAddress> {
        match o.get(k) {
            Some(Value::Object(m)) => {
                let mut v: Vec<PciAddress> = m
                    .values()
                    .filter_map(|x| x.as_str())
                    .filter_map(|s| s.parse().ok())
                    .collect();
                v.sort();
                v
            }
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|x| x.as_str())
                .filter_map(|s| s.parse().ok())
                .collect(),
            _ => Vec::new(),
        }
    };
    Ok(PciFunction {
        address,
        class,
        vendor: hex_id(o, "vendor").unwrap_or_default(),
        device: hex_id(o, "device").unwrap_or_default(),
        subsystem_vendor: hex_id(o, "subsystem_vendor"),
        subsystem_device: hex_id(o, "subsystem_device"),
        iommu_group: o
            .get("iommugroup")
            .and_then(int_from_perl)
            .filter(|g| *g >= 0),
        mdev: flag(o, "mdev") || flag(o, "nvidia"),
        vendor_name: text(o, "vendor_name"),
        device_name: text(o, "device_name"),
        physfn: text(o, "physfn").and_then(|s| s.parse().ok()),
        virtfns: addr_list("virtfns"),
    })
}

/// `GET /cluster/resources?type=vm`: every guest, its node and state (§1.6).
pub fn read_guests(t: &dyn Transport) -> Result<Vec<GuestEntry>, PveError> {
    let req = ApiRequest::get("/cluster/resources").param("type", "vm");
    let v = t.call(&req)?;
    let mut out = Vec::new();
    for item in items(&req, &v)? {
        let o = object(&req, item)?;
        let kind = match text(o, "type").as_deref() {
            Some("qemu") => GuestKind::Qemu,
            Some("lxc") => GuestKind::Lxc,
            _ => continue, // openvz, or a non-guest resource: not passthru's
        };
        let vmid = o
            .get("vmid")
            .and_then(int_from_perl)
            .or_else(|| {
                text(o, "id").and_then(|id| id.rsplit_once('/').and_then(|(_, n)| n.parse().ok()))
            })
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| decode_err(&req, "a guest without a `vmid`"))?;
        let node = text(o, "node")
            .ok_or_else(|| decode_err(&req, format!("guest {vmid} without `node`")))?;
        out.push(GuestEntry {
            kind,
            vmid,
            node,
            name: text(o, "name"),
            status: text(o, "status"),
            template: flag(o, "template"),
            hastate: text(o, "hastate"),
        });
    }
    out.sort_by_key(|g| g.vmid);
    Ok(out)
}

/// `GET /cluster/mapping/pci`: every PCI mapping the token may see (§1.4).
pub fn read_mappings(t: &dyn Transport) -> Result<Vec<MappingRecord>, PveError> {
    let req = ApiRequest::get("/cluster/mapping/pci");
    let v = t.call(&req)?;
    let mut out = Vec::new();
    for item in items(&req, &v)? {
        let o = object(&req, item)?;
        let id = text(o, "id").ok_or_else(|| decode_err(&req, "a mapping without `id`"))?;
        out.push(parse_mapping(&req, id, o)?);
    }
    // Perl hash order: random from one call to the next.
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// `GET /cluster/mapping/pci/{id}`: one mapping with the digest a `PUT` must carry; `None`
/// when Proxmox says it does not exist (HTTP 500 `mapping '<id>' not found`).
pub fn read_mapping(t: &dyn Transport, id: &str) -> Result<Option<MappingRecord>, PveError> {
    let req = ApiRequest::get(format!("/cluster/mapping/pci/{id}"));
    match t.call(&req) {
        Ok(v) => {
            let o = object(&req, &v)?;
            Ok(Some(parse_mapping(&req, id.to_string(), o)?))
        }
        Err(PveError::Status { message, .. }) if message.contains("not found") => Ok(None),
        Err(PveError::Pvesh { detail, .. }) if detail.contains("not found") => Ok(None),
        Err(e) => Err(e),
    }
}

fn parse_mapping(
    req: &ApiRequest,
    id: String,
    o: &Map<String, Value>,
) -> Result<MappingRecord, PveError> {
    let map = match o.get("map") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.iter().filter_map(text_from_perl).collect(),
        // SectionConfig gives one string when the array holds one entry in some versions.
        Some(Value::String(s)) => vec![s.clone()],
        Some(other) => {
            return Err(decode_err(
                req,
                format!("mapping {id}: `map` is {}", kind_of(other)),
            ))
        }
    };
    Ok(MappingRecord {
        id,
        description: text(o, "description"),
        mdev: flag(o, "mdev"),
        live_migration_capable: flag(o, "live-migration-capable"),
        map,
        digest: text(o, "digest"),
    })
}

/// `GET /nodes/{node}/qemu/{vmid}/config` or `.../lxc/{vmid}/config`. For a running guest
/// with `current=1`, what it runs with now; for a stopped one, with the pending changes its
/// next start will use (§1.5).
pub fn read_guest_config(t: &dyn Transport, g: &GuestEntry) -> Result<GuestConfigMap, PveError> {
    let mut req = ApiRequest::get(format!(
        "/nodes/{}/{}/{}/config",
        g.node,
        g.kind.as_str(),
        g.vmid
    ));
    if g.running() {
        req = req.param("current", "1");
    }
    let v = t.call(&req)?;
    let o = object(&req, &v)?;
    Ok(o.iter()
        .filter_map(|(k, v)| text_from_perl(v).map(|t| (k.clone(), t)))
        .collect())
}

/// `GET /cluster/ha/rules?type=node-affinity` (pve-ha-manager `API2/HA/Rules.pm`, index).
pub fn read_ha_node_rules(t: &dyn Transport) -> Result<Vec<HaRule>, PveError> {
    let req = ApiRequest::get("/cluster/ha/rules").param("type", "node-affinity");
    let v = t.call(&req)?;
    let mut out = Vec::new();
    for item in items(&req, &v)? {
        let o = object(&req, item)?;
        let Some(rule) = text(o, "rule") else {
            continue;
        };
        out.push(HaRule {
            rule,
            kind: text(o, "type").unwrap_or_default(),
            resources: text(o, "resources").unwrap_or_default(),
            nodes: text(o, "nodes"),
            digest: text(o, "digest"),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Mutex;

    /// Answers every call with one value and records the requests.
    struct One(Value, Mutex<Vec<ApiRequest>>);
    impl Transport for One {
        fn call(&self, req: &ApiRequest) -> Result<Value, PveError> {
            self.1.lock().unwrap().push(req.clone());
            Ok(self.0.clone())
        }
        fn describe(&self) -> String {
            "test".into()
        }
    }
    fn one(v: Value) -> One {
        One(v, Mutex::new(Vec::new()))
    }

    #[test]
    fn the_constructed_pci_example_of_the_api_notes_decodes() {
        // PROXMOX-API.md §1.2 [constructed], plus Perl-typed variants of the same fields.
        let t = one(json!([
            {"class":"0x030000","device":"0x1912","device_name":"HD Graphics 530","id":"0000:00:02.0","iommugroup":0,"mdev":1,"subsystem_device":"0x8054","subsystem_vendor":"0x103c","vendor":"0x8086","vendor_name":"Intel Corporation"},
            {"class":"0x030000","device":"0x2204","id":"0000:01:00.0","iommugroup":"14","subsystem_device":"0x403b","subsystem_vendor":"0x1458","vendor":"0x10de"},
            {"class":"0x040300","device":"0x1aef","id":"0000:01:00.1","iommugroup":14,"vendor":"0x10de","mdev":"0"},
            {"class":"0x010802","device":"0xa808","id":"0000:02:00.0","iommugroup":-1,"vendor":"0x144d","virtfns":{"virtfn0":"0000:02:00.1"}}
        ]));
        let d = read_pci(&t, "pve1").unwrap();
        assert_eq!(
            t.1.lock().unwrap()[0].params,
            [("pci-class-blacklist".to_string(), String::new())]
        );
        assert_eq!(d[0].vendor_device(), "8086:1912");
        assert!(d[0].mdev && d[0].is_display());
        assert_eq!(d[1].iommu_group, Some(14));
        assert_eq!(d[1].subsystem_id().as_deref(), Some("1458:403b"));
        assert!(!d[2].mdev && !d[2].is_display());
        assert_eq!(d[2].subsystem_id(), None);
        assert_eq!(d[3].iommu_group, None);
        assert_eq!(d[3].virtfns, ["0000:02:00.1".parse().unwrap()]);
    }

    #[test]
    fn a_device_without_an_id_is_an_error_naming_the_endpoint() {
        let e = read_pci(&one(json!([{"class":"0x030000"}])), "pve2").unwrap_err();
        assert!(
            e.to_string().contains("GET /nodes/pve2/hardware/pci"),
            "{e}"
        );
        let e = read_pci(&one(json!({"not":"a list"})), "pve2").unwrap_err();
        assert!(e.to_string().contains("expected a list"), "{e}");
    }

    #[test]
    fn guests_take_perl_types_and_skip_other_resources() {
        // The real capture of §1.6, with a string vmid, "template":"0" and an lxc beside it.
        let t = one(json!([
            {"cpu":0.01,"id":"qemu/100","name":"pve-suivi","node":"erplibre-proxmox-9","status":"running","template":0,"type":"qemu","vmid":100},
            {"id":"lxc/101","node":"pve2","status":"stopped","template":"0","type":"lxc","vmid":"101","hastate":"started"},
            {"id":"storage/pve/local","type":"storage","node":"pve"}
        ]));
        let g = read_guests(&t).unwrap();
        assert_eq!(g.len(), 2);
        assert!(g[0].running() && g[0].kind == GuestKind::Qemu);
        assert_eq!(
            (g[1].vmid, g[1].kind, g[1].running()),
            (101, GuestKind::Lxc, false)
        );
        assert_eq!(g[1].ha_sid(), "ct:101");
    }

    #[test]
    fn the_real_mapping_capture_decodes() {
        // PROXMOX-API.md §1.4 [real capture], danya02/pve-pci-assignment-manager, PVE 9.2.4.
        let t = one(
            json!([{"digest":"b5a6552d5ad4265acf0e12640960a9f4b33e2f2f","id":"gpu1","map":["id=10de:1db8,iommugroup=13,node=iipaserver,path=0000:81:00.0,subsystem-id=10de:12ab"],"type":"pci"}]),
        );
        let m = read_mappings(&t).unwrap();
        assert_eq!(m[0].id, "gpu1");
        assert!(!m[0].mdev);
        assert_eq!(m[0].map.len(), 1);
        assert_eq!(
            m[0].digest.as_deref(),
            Some("b5a6552d5ad4265acf0e12640960a9f4b33e2f2f")
        );
    }

    #[test]
    fn configs_are_text_and_running_guests_are_read_current() {
        let t = one(
            json!({"digest":"3f1e","memory":"16384","cores":8,"hostpci0":"mapping=gpu0,pcie=1,x-vga=1","onboot":1}),
        );
        let g = GuestEntry {
            kind: GuestKind::Qemu,
            vmid: 101,
            node: "pve1".into(),
            name: None,
            status: Some("running".into()),
            template: false,
            hastate: None,
        };
        let c = read_guest_config(&t, &g).unwrap();
        assert_eq!(c["cores"], "8");
        assert_eq!(c["hostpci0"], "mapping=gpu0,pcie=1,x-vga=1");
        let req = &t.1.lock().unwrap()[0];
        assert_eq!(req.path, "/nodes/pve1/qemu/101/config");
        assert_eq!(req.params, [("current".to_string(), "1".to_string())]);
    }
}
