//! A mock Proxmox VE API for the `cluster` tests: a local HTTPS server with its own
//! certificate (tests/fixtures/pve-api/tls), answering only with the documented shapes in
//! tests/fixtures/pve-api (see its README: every shape comes from PROXMOX-API.md and the API
//! schema excerpt). The real API cannot run here; this stands in for it, over real TLS, so
//! that pinning success and mismatch are both exercised.
//!
//! It records every request it receives (method, target, head, body) and every handshake
//! that failed, and keeps every decrypted byte it read, so tests can prove what did or did
//! not arrive. Writes to `/cluster/mapping/pci` and `/cluster/ha/rules` change its state the
//! way Proxmox does: `PUT` with a stale `digest` is refused with Proxmox's message.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};

pub fn fixture_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pve-api")
}

/// A fixture's text (`cluster/nodes.json`).
pub fn fixture(name: &str) -> String {
    let p = fixture_dir().join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The test certificate's SHA-256 fingerprint, computed from its DER bytes (the form
/// `pvenode cert info` prints).
pub fn cert_fingerprint() -> String {
    use sha2::{Digest, Sha256};
    let der = CertificateDer::from_pem_file(fixture_dir().join("tls/cert.pem")).unwrap();
    let d = Sha256::digest(der.as_ref());
    d.iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub reason: String,
    pub body: String,
    pub delay: Duration,
}

impl Answer {
    /// `200 OK` with a body as Proxmox sends it (`{"data": ...}`).
    pub fn ok(body: impl Into<String>) -> Self {
        Answer {
            status: 200,
            reason: "OK".into(),
            body: body.into(),
            delay: Duration::ZERO,
        }
    }
    /// An error as pveproxy sends it: the message in the reason phrase and as `message`.
    pub fn error(status: u16, message: &str) -> Self {
        Answer {
            status,
            reason: message.into(),
            body: json!({"data": null, "message": format!("{message}\n")}).to_string(),
            delay: Duration::ZERO,
        }
    }
    pub fn after(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }
}

#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub path: String,
    pub head: String,
    pub body: String,
}

impl Seen {
    /// The form body (or query) as key/value pairs, repeated keys kept.
    pub fn params(&self) -> Vec<(String, String)> {
        let q = if self.body.is_empty() {
            self.target.split_once('?').map(|(_, q)| q).unwrap_or("")
        } else {
            self.body.as_str()
        };
        parse_form(q)
    }
}

#[derive(Debug, Default)]
pub struct Log {
    pub requests: Vec<Seen>,
    pub handshakes_failed: usize,
    /// Every decrypted byte received, all connections.
    pub raw: Vec<u8>,
}

#[derive(Default)]
struct State {
    routes: HashMap<(String, String), Answer>,
    /// Mapping id → (map entries, digest, mdev).
    mappings: Vec<(String, Vec<String>, String, bool)>,
    ha_rules: Vec<Value>,
    /// Every PUT to a mapping sees another writer's change first.
    concurrent_writer: bool,
    /// Delay added to every answer.
    delay_all: Duration,
}

pub struct Mock {
    pub addr: SocketAddr,
    pub log: Arc<Mutex<Log>>,
    state: Arc<Mutex<State>>,
}

fn parse_form(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (pct_decode(k), pct_decode(v))
        })
        .collect()
}

fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("00");
                out.push(u8::from_str_radix(h, 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn sha1ish(parts: &[String]) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(parts.join("\n").as_bytes());
    d.iter().take(20).map(|b| format!("{b:02x}")).collect()
}

impl Mock {
    /// Starts a server that accepts only `Authorization: PVEAPIToken=<expected>`.
    pub fn start(expected_token: &str) -> Mock {
        let certs =
            vec![CertificateDer::from_pem_file(fixture_dir().join("tls/cert.pem")).unwrap()];
        let key = PrivateKeyDer::from_pem_file(fixture_dir().join("tls/key.pem")).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Log::default()));
        let state = Arc::new(Mutex::new(State::default()));
        let auth = format!("PVEAPIToken={expected_token}");
        {
            let (log, state) = (log.clone(), state.clone());
            thread::spawn(move || {
                for conn in listener.incoming() {
                    let Ok(conn) = conn else { continue };
                    let (log, state, config, auth) =
                        (log.clone(), state.clone(), config.clone(), auth.clone());
                    thread::spawn(move || serve(conn, config, log, state, &auth));
                }
            });
        }
        Mock { addr, log, state }
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.addr.port())
    }

    pub fn route(&self, method: &str, path: &str, a: Answer) {
        self.state
            .lock()
            .unwrap()
            .routes
            .insert((method.to_string(), path.to_string()), a);
    }

    pub fn set_delay_all(&self, d: Duration) {
        self.state.lock().unwrap().delay_all = d;
    }

    pub fn set_concurrent_writer(&self) {
        self.state.lock().unwrap().concurrent_writer = true;
    }

    /// Serves `mapping-pci.json` / `mapping-rtx3060.json` from state, so writes show.
    pub fn with_mapping(&self, id: &str, map: Vec<String>, digest: &str) {
        self.state
            .lock()
            .unwrap()
            .mappings
            .push((id.into(), map, digest.into(), false));
    }

    pub fn mapping(&self, id: &str) -> Option<(Vec<String>, String)> {
        self.state
            .lock()
            .unwrap()
            .mappings
            .iter()
            .find(|m| m.0 == id)
            .map(|m| (m.1.clone(), m.2.clone()))
    }

    pub fn ha_rules(&self) -> Vec<Value> {
        self.state.lock().unwrap().ha_rules.clone()
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.log.lock().unwrap().requests.clone()
    }

    pub fn raw_received(&self) -> Vec<u8> {
        self.log.lock().unwrap().raw.clone()
    }

    pub fn handshakes_failed(&self) -> usize {
        self.log.lock().unwrap().handshakes_failed
    }
}

fn serve(
    tcp: TcpStream,
    config: Arc<rustls::ServerConfig>,
    log: Arc<Mutex<Log>>,
    state: Arc<Mutex<State>>,
    auth: &str,
) {
    let Ok(conn) = rustls::ServerConnection::new(config) else {
        return;
    };
    tcp.set_read_timeout(Some(Duration::from_secs(20))).ok();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        if tls.conn.complete_io(&mut tls.sock).is_err() {
            log.lock().unwrap().handshakes_failed += 1;
            return;
        }
    }
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let (head, body) = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned();
                break (head, body);
            }
        }
        match tls.read(&mut chunk) {
            Ok(0) | Err(_) => {
                log.lock().unwrap().raw.extend_from_slice(&buf);
                return;
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let first = head.lines().next().unwrap_or("").to_string();
    let mut parts = first.split(' ');
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let path = target
        .split('?')
        .next()
        .unwrap_or("")
        .strip_prefix("/api2/json")
        .unwrap_or("")
        .to_string();
    let seen = Seen {
        method: method.clone(),
        target,
        path: pct_decode(&path),
        head: head.clone(),
        body,
    };
    {
        let mut l = log.lock().unwrap();
        l.raw.extend_from_slice(&buf);
        l.requests.push(seen.clone());
    }
    let authorized = head.lines().any(|l| {
        l.split_once(':')
            .is_some_and(|(k, v)| k.eq_ignore_ascii_case("authorization") && v.trim() == auth)
    });
    let answer = if authorized {
        answer_for(&seen, &state)
    } else {
        // pveproxy delays refused credentials by 3 s; not worth waiting for here.
        Answer::error(401, "authentication failure")
    };
    let delay = answer.delay + state.lock().unwrap().delay_all;
    if !delay.is_zero() {
        thread::sleep(delay);
    }
    let resp = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: application/json;charset=UTF-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        answer.status,
        answer.reason,
        answer.body.len(),
        answer.body
    );
    let _ = tls.write_all(resp.as_bytes());
    tls.conn.send_close_notify();
    let _ = tls.flush();
}

fn answer_for(seen: &Seen, state: &Arc<Mutex<State>>) -> Answer {
    let mut st = state.lock().unwrap();
    let params = seen.params();
    let get = |k: &str| params.iter().find(|(p, _)| p == k).map(|(_, v)| v.clone());
    let all = |k: &str| -> Vec<String> {
        params
            .iter()
            .filter(|(p, _)| p == k)
            .map(|(_, v)| v.clone())
            .collect()
    };
    let m = seen.method.as_str();
    let p = seen.path.as_str();
    if !st.mappings.is_empty() || p.starts_with("/cluster/mapping/pci") && m != "GET" {
        if m == "GET" && p == "/cluster/mapping/pci" {
            let items: Vec<Value> = st
                .mappings
                .iter()
                .map(|(id, map, d, mdev)| {
                    let mut v = json!({"digest": d, "id": id, "map": map, "type": "pci"});
                    if *mdev {
                        v["mdev"] = json!(1);
                    }
                    v
                })
                .collect();
            return Answer::ok(json!({ "data": items }).to_string());
        }
        if let Some(id) = p.strip_prefix("/cluster/mapping/pci/") {
            let found = st.mappings.iter().position(|x| x.0 == id);
            match (m, found) {
                ("GET", Some(i)) => {
                    let (_, map, d, _) = &st.mappings[i];
                    return Answer::ok(
                        json!({"data": {"digest": d, "map": map, "type": "pci"}}).to_string(),
                    );
                }
                ("GET", None) => return Answer::error(500, &format!("mapping '{id}' not found")),
                ("PUT", None) => {
                    return Answer::error(500, &format!("pci ID '{id}' does not exist"))
                }
                ("PUT", Some(i)) => {
                    if st.concurrent_writer {
                        st.mappings[i].2 = "0000000000000000000000000000000000000000".into();
                    }
                    if get("digest").as_deref() != Some(st.mappings[i].2.as_str()) {
                        return Answer::error(
                            500,
                            "detected modified configuration - file changed by other user? Try again.",
                        );
                    }
                    let map = all("map");
                    if !map.is_empty() {
                        st.mappings[i].1 = map;
                    }
                    if let Some(md) = get("mdev") {
                        st.mappings[i].3 = md == "1";
                    }
                    let d = sha1ish(&st.mappings[i].1);
                    st.mappings[i].2 = d;
                    return Answer::ok(r#"{"data":null}"#);
                }
                _ => {}
            }
        }
        if m == "POST" && p == "/cluster/mapping/pci" {
            let id = get("id").unwrap_or_default();
            if st.mappings.iter().any(|x| x.0 == id) {
                return Answer::error(500, &format!("pci ID '{id}' already defined"));
            }
            let map = all("map");
            if map.is_empty() {
                return Answer {
                    status: 400,
                    reason: "Parameter verification failed.".into(),
                    body: json!({"data": null, "errors": {"map": "property is missing and it is not optional\n"}}).to_string(),
                    delay: Duration::ZERO,
                };
            }
            let d = sha1ish(&map);
            let mdev = get("mdev").as_deref() == Some("1");
            st.mappings.push((id, map, d, mdev));
            return Answer::ok(r#"{"data":null}"#);
        }
    }
    if m == "POST" && p == "/cluster/ha/rules" {
        let rule: Value = params
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect::<serde_json::Map<_, _>>()
            .into();
        st.ha_rules.push(rule);
        return Answer::ok(r#"{"data":null}"#);
    }
    if m == "GET" && p == "/cluster/ha/rules" && !st.routes.contains_key(&("GET".into(), p.into()))
    {
        return Answer::ok(json!({ "data": st.ha_rules }).to_string());
    }
    match st.routes.get(&(m.to_string(), p.to_string())) {
        Some(a) => a.clone(),
        None => Answer::error(501, &format!("Method '{m} {p}' not implemented")),
    }
}

/// The mock cluster of tests/fixtures/pve-api/cluster: pve1 healthy (two RTX 3060, VM 100
/// running on the mapping, CT 200 with /dev/dri nodes), pve2 with a drifted mapping entry and
/// a VM whose raw hostpci0 now names an NVMe drive, pve3 unreachable (pveproxy's 595), pve4
/// slow (answers after `slow`), pve5 offline.
pub fn fixture_cluster(token: &str, slow: Duration) -> Mock {
    let m = Mock::start(token);
    let f = |n: &str| fixture(&format!("cluster/{n}"));
    m.route("GET", "/nodes", Answer::ok(f("nodes.json")));
    m.route(
        "GET",
        "/nodes/pve1/hardware/pci",
        Answer::ok(f("pci-pve1.json")),
    );
    m.route(
        "GET",
        "/nodes/pve2/hardware/pci",
        Answer::ok(f("pci-pve2.json")),
    );
    m.route(
        "GET",
        "/nodes/pve3/hardware/pci",
        Answer::error(595, "Connection refused"),
    );
    m.route(
        "GET",
        "/nodes/pve4/hardware/pci",
        Answer::ok(f("pci-pve2.json")).after(slow),
    );
    m.route(
        "GET",
        "/cluster/resources",
        Answer::ok(f("resources-vm.json")),
    );
    m.route(
        "GET",
        "/nodes/pve1/qemu/100/config",
        Answer::ok(f("config-100.json")),
    );
    m.route(
        "GET",
        "/nodes/pve2/qemu/101/config",
        Answer::ok(f("config-101.json")),
    );
    m.route(
        "GET",
        "/nodes/pve1/qemu/102/config",
        Answer::ok(f("config-102.json")),
    );
    m.route(
        "GET",
        "/nodes/pve1/lxc/200/config",
        Answer::ok(f("config-lxc-200.json")),
    );
    let mapping: Value = serde_json::from_str(&f("mapping-pci.json")).unwrap();
    let item = &mapping["data"][0];
    m.with_mapping(
        item["id"].as_str().unwrap(),
        item["map"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect(),
        item["digest"].as_str().unwrap(),
    );
    m
}
