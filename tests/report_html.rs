//! `passthru report --html`: the page as a browser shows it. Each page is rendered by headless
//! Chromium (Debian's `chromium`; `.ci/run` installs it), once, for a screenshot and the DOM
//! after load, with Chromium's net log on:
//!
//! - the screenshot is not blank (many pixels differ from the background);
//! - the DOM names every device address, every IOMMU group and every finding id of the host;
//! - no request leaves the page: the net log holds no URL request made for the page.
//!
//! The net-log check is proven by two negative tests: a page that fetches from a local
//! listener shows up there (and the listener sees the connection), and the same page under
//! the report's Content-Security-Policy fetches nothing. Without Chromium the browser tests
//! skip on a developer's machine and fail under CI (`skip_or_fail`).
//!
//! `PASSTHRU_UPDATE_SCREENSHOTS=1` copies the bundled host's and a QEMU tree's screenshots to
//! docs/ (README shows them).

mod common;

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use passthru::check::{check_host, CheckRequest};
use passthru::model::Snapshot;
use passthru::output::report::{render_html, ReportInput, CONTENT_SECURITY_POLICY};
use passthru::output::style::Style;
use passthru::output::tree::{build_tree, render_tree};

/// The Chromium binary, or `None` (after `skip_or_fail`) when it is not installed.
fn chromium() -> Option<PathBuf> {
    let name = std::env::var_os("PASSTHRU_CHROMIUM").unwrap_or_else(|| "chromium".into());
    let found = Command::new(&name)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        Some(PathBuf::from(name))
    } else {
        skip_or_fail("chromium (Debian package chromium) is not installed: the report is not rendered in a browser");
        None
    }
}

/// What Chromium made of one page.
struct Rendered {
    /// The DOM after load (`--dump-dom`).
    dom: String,
    png: Vec<u8>,
    /// URLs of requests made for the page (see [`page_requests`]).
    requests: Vec<String>,
    /// From start to exit: load, layout, paint, screenshot and DOM serialisation.
    elapsed: Duration,
}

/// Loads `page` from file:// in a fresh profile, takes a screenshot and the DOM, and reads
/// the net log.
fn render(chromium: &Path, page: &Path, width: u32, height: u32) -> Rendered {
    let dir = tempfile::tempdir().unwrap();
    let shot = dir.path().join("shot.png");
    let netlog = dir.path().join("net.json");
    let start = Instant::now();
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--hide-scrollbars",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.path().join("profile").display()
        ))
        .arg(format!("--log-net-log={}", netlog.display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("--window-size={width},{height}"))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting chromium");
    let mut dom = String::new();
    // Read stdout on a thread so that a hung browser is killed rather than hanging the test.
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).map(|_| s)
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within 120 s on {}", page.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let elapsed = start.elapsed();
    dom.push_str(&reader.join().unwrap().expect("chromium's stdout"));
    assert!(
        status.success(),
        "chromium failed on {}: {status}",
        page.display()
    );
    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("no screenshot: {e}"));
    let log = std::fs::read_to_string(&netlog).unwrap_or_else(|e| panic!("no net log: {e}"));
    Rendered {
        dom,
        png,
        requests: page_requests(&log, page),
        elapsed,
    }
}

/// Hosts of Chromium's own background services (updates, time, accounts, dictionaries):
/// requests the browser makes for itself, with no page as initiator.
const BROWSER_SERVICE_HOSTS: &[&str] = &["google.com", "googleapis.com", "gvt1.com", "gstatic.com"];

/// Everything in the net log that went to the network for the page: URL requests, and also
/// connections that never became a request (Chromium preconnects to a frame's origin before
/// the page's policy refuses the frame; see `a_connection_without_a_request_is_caught_too`).
///
/// An event counts when it names a URL or socket group (`url`, `group_id`) on a host that is
/// not one of Chromium's own services, when its socket group or network isolation key names
/// the page's file:// site, or when it is a URL request whose initiator is an origin (the
/// page's is `null`). Only the browser's own traffic — no initiator, a Google host, no
/// file:// key — is left out. The page file itself never appears (file:// is not loaded
/// through the network stack).
fn page_requests(log: &str, page: &Path) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(log)
        .unwrap_or_else(|e| panic!("the net log is not complete JSON ({e}): it may hide requests"));
    let page_url = format!("file://{}", page.display());
    let mut out = Vec::new();
    for e in v["events"].as_array().expect("net log events") {
        let p = &e["params"];
        let url = p["url"].as_str();
        let group = p["group_id"].as_str();
        let nik = p["network_isolation_key"].as_str().unwrap_or_default();
        let initiator = p["initiator"].as_str();
        let Some(target) = url.or(group) else {
            continue;
        };
        if target == page_url {
            continue;
        }
        let host = target
            .split("://")
            .nth(1)
            .and_then(|r| r.split(['/', ':', '?', ' ']).next())
            .unwrap_or_default();
        let browser_service = BROWSER_SERVICE_HOSTS
            .iter()
            .any(|h| host == *h || host.ends_with(&format!(".{h}")));
        let for_page = !browser_service
            || nik.contains("file:")
            || group.is_some_and(|g| g.contains("file:"))
            || initiator.is_some_and(|i| i != "not an origin");
        if for_page {
            out.push(target.to_string());
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Decodes an 8-bit RGB or RGBA PNG (what Chromium writes) into RGB pixels.
fn decode_png(png: &[u8]) -> (u32, u32, Vec<[u8; 3]>) {
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let mut pos = 8;
    let (mut w, mut h, mut channels) = (0u32, 0u32, 0usize);
    let mut idat = Vec::new();
    while pos + 8 <= png.len() {
        let len = u32::from_be_bytes(png[pos..pos + 4].try_into().unwrap()) as usize;
        let kind = &png[pos + 4..pos + 8];
        let data = &png[pos + 8..pos + 8 + len];
        match kind {
            b"IHDR" => {
                w = u32::from_be_bytes(data[0..4].try_into().unwrap());
                h = u32::from_be_bytes(data[4..8].try_into().unwrap());
                assert_eq!(data[8], 8, "bit depth");
                channels = match data[9] {
                    2 => 3,
                    6 => 4,
                    t => panic!("colour type {t}"),
                };
                assert_eq!(data[12], 0, "interlaced PNG");
            }
            b"IDAT" => idat.extend_from_slice(data),
            _ => {}
        }
        pos += 12 + len;
    }
    let mut raw = Vec::new();
    flate2::read::ZlibDecoder::new(&idat[..])
        .read_to_end(&mut raw)
        .unwrap();
    let stride = w as usize * channels;
    let mut prev = vec![0u8; stride];
    let mut pixels = Vec::with_capacity((w * h) as usize);
    for y in 0..h as usize {
        let line = &raw[y * (stride + 1)..(y + 1) * (stride + 1)];
        let (filter, src) = (line[0], &line[1..]);
        let mut cur = vec![0u8; stride];
        for i in 0..stride {
            let a = if i >= channels {
                cur[i - channels] as i16
            } else {
                0
            };
            let b = prev[i] as i16;
            let c = if i >= channels {
                prev[i - channels] as i16
            } else {
                0
            };
            let pred = match filter {
                0 => 0,
                1 => a,
                2 => b,
                3 => (a + b) / 2,
                4 => {
                    let p = a + b - c;
                    let (pa, pb, pc) = ((p - a).abs(), (p - b).abs(), (p - c).abs());
                    if pa <= pb && pa <= pc {
                        a
                    } else if pb <= pc {
                        b
                    } else {
                        c
                    }
                }
                f => panic!("PNG filter {f}"),
            };
            cur[i] = src[i].wrapping_add(pred as u8);
        }
        for px in cur.chunks(channels) {
            pixels.push([px[0], px[1], px[2]]);
        }
        prev = cur;
    }
    (w, h, pixels)
}

/// A screenshot shows something: at least 3% of its pixels differ from the most common
/// colour (the background), in at least 8 colours. A page that failed to load or paint is
/// one flat colour.
fn assert_not_blank(png: &[u8], what: &str) {
    let (w, h, pixels) = decode_png(png);
    let mut counts = std::collections::HashMap::new();
    for p in &pixels {
        *counts.entry(*p).or_insert(0usize) += 1;
    }
    let background = counts.values().max().copied().unwrap_or(0);
    let ink = pixels.len() - background;
    assert!(
        ink * 100 >= pixels.len() * 3 && counts.len() >= 8,
        "{what}: the {w}x{h} screenshot looks blank ({ink} non-background pixels, {} colours)",
        counts.len()
    );
}

/// Every address, group and finding id of the host is in the DOM.
fn assert_dom_holds_host(dom: &str, snap: &Snapshot, what: &str) {
    let check = check_host(snap, &CheckRequest::default());
    let mut missing = Vec::new();
    for d in &snap.devices {
        if !dom.contains(&d.address.to_string()) {
            missing.push(format!("device {}", d.address));
        }
    }
    for g in &snap.groups {
        if !dom.contains(&format!("IOMMU group {}", g.id)) {
            missing.push(format!("group {}", g.id));
        }
    }
    for g in &check.gpus {
        for f in &g.findings {
            let tag = format!("<code class=\"rule\">{}</code>", f.id.as_str());
            if !dom.contains(&tag) {
                missing.push(format!("finding {} of {}", f.id, g.address));
            }
        }
    }
    assert!(missing.is_empty(), "{what}: the DOM lacks {missing:?}");
    assert!(
        !snap.devices.is_empty(),
        "{what}: a host without devices proves nothing"
    );
}

/// The report of a host tree, made by the binary as a user makes it.
fn report_of(root: &Path, dir: &Path) -> PathBuf {
    let page = dir.join("report.html");
    let o = passthru_fixed(root, &["report", "--html", page.to_str().unwrap()]);
    assert!(
        o.status.success(),
        "passthru report failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    page
}

fn maybe_update_screenshot(png: &[u8], name: &str) {
    if std::env::var_os("PASSTHRU_UPDATE_SCREENSHOTS").is_some() {
        std::fs::write(repo().join("docs").join(name), png).unwrap();
    }
}

fn check_in_browser(root: &Path, what: &str, screenshot: Option<&str>, height: u32) {
    let Some(chromium) = chromium() else { return };
    let dir = tempfile::tempdir().unwrap();
    let page = report_of(root, dir.path());
    let r = render(&chromium, &page, 1400, height);
    assert!(
        r.requests.is_empty(),
        "{what}: the page made requests: {:?}",
        r.requests
    );
    assert_not_blank(&r.png, what);
    assert_dom_holds_host(&r.dom, &snapshot(root), what);
    if let Some(name) = screenshot {
        maybe_update_screenshot(&r.png, name);
    }
}

#[test]
fn report_of_the_bundled_host_renders_offline_with_every_device_group_and_finding() {
    let t = tempfile::tempdir().unwrap();
    let ok = Command::new("cp")
        .arg("-a")
        .arg(format!(
            "{}/.",
            repo().join("examples/hosts/homelab").display()
        ))
        .arg(t.path())
        .status()
        .unwrap();
    assert!(ok.success());
    check_in_browser(t.path(), "homelab", Some("report-homelab.png"), 1300);
}

/// Every QEMU real-kernel capture: real sysfs links, bridges, switches and shared groups.
#[test]
fn report_of_each_qemu_tree_renders_offline_with_every_device_group_and_finding() {
    for (name, dir) in qemu_fixtures() {
        let root = unpacked(&dir.join("root.tar.gz"));
        let shot = (name == "intel-bridges").then_some("report-qemu-intel-bridges.png");
        check_in_browser(&root, &format!("qemu {name}"), shot, 1100);
    }
}

/// The host's own devices are labelled and the devices that block a GPU marked, on the
/// row of each (`apu-in-use`: the boot disk's SATA controller and the default route's NIC
/// share the APU's group).
#[test]
fn the_page_labels_the_hosts_devices_and_marks_what_blocks_a_gpu() {
    let dir = tempfile::tempdir().unwrap();
    passthru_testkit::build_named("apu-in-use", dir.path()).unwrap();
    let snap = snapshot(dir.path());
    let check = check_host(&snap, &CheckRequest::default());
    let page = render_html(&ReportInput {
        snapshot: &snap,
        check: &check,
        power: &[],
        price_kwh: 0.3,
    });
    let row = |addr: &str| {
        let start = page
            .find(&format!("id=\"d-{addr}\""))
            .unwrap_or_else(|| panic!("no row for {addr}"));
        let end = start + page[start..].find("</div>").unwrap();
        page[start..end].to_string()
    };
    let gpu = "0000:02:00.0";
    for (addr, label) in [
        (snap.host_usage.boot_disk_controllers[0], "boot disk"),
        (snap.host_usage.default_route_devices[0], "host network"),
    ] {
        let r = row(&addr.to_string());
        assert!(r.contains(label), "{addr} lacks {label}: {r}");
        assert!(
            r.contains(&format!("blocks GPU {gpu} for vm")),
            "{addr}: {r}"
        );
    }
    let r = row(gpu);
    assert!(r.contains("boot display") && r.contains("v-blocked"), "{r}");
    assert!(
        page.contains("grp shared blocking"),
        "the GPU's group is not drawn as blocking"
    );
}

/// `--from` a saved snapshot makes the same tree as the host it was saved from, and `-`
/// writes the page to standard output.
#[test]
fn report_from_a_saved_snapshot_names_the_same_devices() {
    let root = repo().join("examples/hosts/homelab");
    let json = passthru_fixed(&root, &["scan", "--json"]);
    assert!(json.status.success());
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("host.json");
    std::fs::write(&saved, &json.stdout).unwrap();
    let o = passthru(&["report", "--html", "-", "--from", saved.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let page = stdout(&o);
    assert!(page.starts_with("<!DOCTYPE html>"));
    for d in &snapshot(&root).devices {
        assert!(
            page.contains(&format!("id=\"d-{}\"", d.address)),
            "{}",
            d.address
        );
    }
    assert!(page.contains("read from a saved snapshot: no live figure"));
}

/// A page that fetches from a listener here: the net log must show the request, and the
/// listener must see the connection. Without this, an empty request list proves nothing.
#[test]
fn the_net_log_check_catches_a_page_that_fetches() {
    let Some(chromium) = chromium() else { return };
    let (port, hit) = listen();
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("fetches.html");
    std::fs::write(&page, fetching_page(port, "", true)).unwrap();
    let r = render(&chromium, &page, 400, 300);
    assert!(
        r.requests
            .iter()
            .any(|u| u.contains(&format!("127.0.0.1:{port}"))),
        "the net log check missed the page's fetch: {:?}",
        r.requests
    );
    assert!(hit.load(Ordering::SeqCst), "the listener saw no connection");
}

/// The same subresources under the report's policy are not fetched: the policy stops a
/// request that escaping somehow let through.
#[test]
fn the_report_policy_stops_a_page_from_fetching() {
    let Some(chromium) = chromium() else { return };
    let (port, hit) = listen();
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("fetches.html");
    std::fs::write(&page, fetching_page(port, &policy_meta(), false)).unwrap();
    let r = render(&chromium, &page, 400, 300);
    assert!(
        r.requests.is_empty(),
        "fetched under the policy: {:?}",
        r.requests
    );
    assert!(!hit.load(Ordering::SeqCst), "the listener saw a connection");
}

/// A frame is refused by the policy, yet Chromium has already opened a connection to its
/// origin (a preconnect, no URL request). The check must see that too, which is why it reads
/// socket events and not only requests — and why the page may never hold a frame (the
/// escaping test checks that no `<iframe` gets through).
#[test]
fn a_connection_without_a_request_is_caught_too() {
    let Some(chromium) = chromium() else { return };
    let (port, hit) = listen();
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("frame.html");
    let frame = format!(
        "<!DOCTYPE html><html><head>{}</head><body><iframe src=\"http://127.0.0.1:{port}/frame\"></iframe></body></html>",
        policy_meta()
    );
    std::fs::write(&page, frame).unwrap();
    let r = render(&chromium, &page, 400, 300);
    eprintln!("preconnected: {}", hit.load(Ordering::SeqCst));
    if hit.load(Ordering::SeqCst) {
        assert!(
            r.requests
                .iter()
                .any(|u| u.contains(&format!("127.0.0.1:{port}"))),
            "the listener saw a connection the net log check missed: {:?}",
            r.requests
        );
    } else {
        // A Chromium that no longer preconnects: nothing left the page, and nothing may be
        // reported either.
        assert!(r.requests.is_empty(), "{:?}", r.requests);
    }
}

fn policy_meta() -> String {
    format!("<meta http-equiv=\"Content-Security-Policy\" content=\"{CONTENT_SECURITY_POLICY}\">")
}

/// A page loading an image, a stylesheet and a font from `port`, and a frame when `frame`.
fn fetching_page(port: u16, head: &str, frame: bool) -> String {
    let base = format!("http://127.0.0.1:{port}");
    let frame = if frame {
        format!("<iframe src=\"{base}/frame\"></iframe>")
    } else {
        String::new()
    };
    format!(
        "<!DOCTYPE html><html><head>{head}<link rel=\"stylesheet\" href=\"{base}/s.css\">\
         <style>@font-face{{font-family:x;src:url({base}/f.woff)}}body{{font-family:x}}</style></head>\
         <body><h1>fetches</h1><img src=\"{base}/i.png\">{frame}</body></html>"
    )
}

/// A listener on a free local port that notes any connection (and answers nothing useful).
fn listen() -> (u16, Arc<AtomicBool>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let hit = Arc::new(AtomicBool::new(false));
    let seen = Arc::clone(&hit);
    std::thread::spawn(move || {
        for s in l.incoming() {
            seen.store(true, Ordering::SeqCst);
            drop(s);
        }
    });
    (port, hit)
}

/// Host strings are untrusted: a device name holding markup is text on the page, and the
/// page refers to nothing outside itself (only `#` links).
#[test]
fn host_strings_are_escaped_and_the_page_refers_to_nothing_outside() {
    let t = tempfile::tempdir().unwrap();
    let ok = Command::new("cp")
        .arg("-a")
        .arg(format!(
            "{}/.",
            repo().join("examples/hosts/homelab").display()
        ))
        .arg(t.path())
        .status()
        .unwrap();
    assert!(ok.success());
    let mut snap = snapshot(t.path());
    let evil = "<img src=http://evil.example/x onerror=alert(1)><script>alert(2)</script>";
    for d in snap.devices.iter_mut() {
        d.names.name = evil.into();
        d.driver = Some("\"><iframe src=//evil.example>".into());
    }
    snap.groups[0].id = "0\"><b>".into();
    let check = check_host(&snap, &CheckRequest::default());
    let page = render_html(&ReportInput {
        snapshot: &snap,
        check: &check,
        power: &[],
        price_kwh: 0.3,
    });
    assert!(page.contains("&lt;img src=http://evil.example/x onerror=alert(1)&gt;"));
    let lower = page.to_ascii_lowercase();
    for bad in [
        "<script", "<img", "<iframe", "<link", "<object", "<embed", "@import", "url(", "<b>",
    ] {
        assert!(!lower.contains(bad), "the page holds {bad}");
    }
    for attr in ["src=", "href=", "action=", "srcset=", "poster="] {
        for (i, _) in lower.match_indices(attr) {
            let value = &lower[i + attr.len()..];
            // Escaped host text may hold `src=` too, but never inside a tag: it cannot hold a
            // `<`, so a position is in a tag when the last `<` before it is after the last `>`.
            let in_tag = lower[..i].rfind('<') > lower[..i].rfind('>');
            assert!(
                !in_tag || value.starts_with("\"#"),
                "the page refers outside itself: {}",
                &page[i..(i + 60).min(page.len())]
            );
        }
    }
    assert!(page.contains(CONTENT_SECURITY_POLICY));
}

/// A 4,096-function server: the page stays short (identical VFs collapse), still names every
/// function and group, and renders; times are printed for docs/performance.md, not asserted.
#[test]
fn report_of_a_4096_function_server_collapses_vfs_and_names_everything() {
    let dir = tempfile::tempdir().unwrap();
    passthru_testkit::build_named("server-4096", dir.path()).unwrap();
    let snap = snapshot(dir.path());
    assert_eq!(snap.devices.len(), 4096);
    let check = check_host(&snap, &CheckRequest::default());
    let start = Instant::now();
    let page = render_html(&ReportInput {
        snapshot: &snap,
        check: &check,
        power: &[],
        price_kwh: 0.3,
    });
    let took = start.elapsed();
    let rows = page.matches("<div class=\"row").count();
    eprintln!(
        "server-4096: render_html {:.1} ms, {} KiB, {rows} rows",
        took.as_secs_f64() * 1e3,
        page.len() / 1024
    );
    assert!(
        rows * 3 < snap.devices.len(),
        "{rows} rows for {} functions: the VFs did not collapse",
        snap.devices.len()
    );
    for d in &snap.devices {
        assert!(
            page.contains(&d.address.to_string()),
            "{} missing",
            d.address
        );
    }
    for g in &snap.groups {
        assert!(
            page.contains(&format!("IOMMU group {}", g.id)),
            "group {} missing",
            g.id
        );
    }
    // `list --tree` draws the same tree: as short, each X710 PF's 32 VFs on one line.
    let mut text = Vec::new();
    let tree = build_tree(&snap, Some(&check));
    render_tree(&mut text, &snap, &tree, Style::PLAIN).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(
        text.lines().count() * 3 < snap.devices.len(),
        "{} lines",
        text.lines().count()
    );
    assert!(
        text.contains("32 × [0200] Intel Corporation Ethernet Virtual Function 700 Series [8086:154c]  iavf  0000:1a:02.0 … 0000:1a:05.7  (groups 15–46, one each)"),
        "no collapsed VF line"
    );
    let Some(chromium) = chromium() else { return };
    let file = dir.path().join("report.html");
    std::fs::write(&file, &page).unwrap();
    let r = render(&chromium, &file, 1400, 1800);
    eprintln!(
        "server-4096: chromium load, paint, screenshot and DOM dump {:.0} ms",
        r.elapsed.as_secs_f64() * 1e3
    );
    assert!(r.requests.is_empty(), "requests: {:?}", r.requests);
    assert_not_blank(&r.png, "server-4096");
    assert_dom_holds_host(&r.dom, &snap, "server-4096");
}
