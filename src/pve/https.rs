//! The HTTPS transport: `https://HOST:8006/api2/json/...` with an API token.
//!
//! A small HTTP/1.1 client over rustls (one connection per call, `Connection: close`),
//! rather than a general HTTP crate, so that the one property that matters is visible in
//! one place: [`Https::call`] completes the TLS handshake, certificate check included,
//! *before* it writes a byte of the request; so a certificate that is not the pinned one (or
//! not trusted by the system's CAs) never receives the request, and the token in its header
//! never leaves (issue 13; docs/cluster.md "TLS").
//!
//! Trust is one of two modes, never none (there is no "insecure" mode):
//! - [`Trust::SystemCas`]: WebPKI verification against the system's CA store
//!   (rustls-native-certs), host name included.
//! - [`Trust::Pinned`]: the leaf certificate's SHA-256 must equal the pin; the host name and
//!   issuer are not looked at, as for the self-signed certificate every node serves by default
//!   (`pve-ssl.pem`, signed by the cluster's own CA). The handshake signature is still
//!   verified, so the server must hold that certificate's key. Proxmox's own client
//!   (`proxmox-client` `TlsOptions::Fingerprint`) also accepts a CA-valid certificate that does
//!   not match the pin; passthru does not: a pin means that certificate.
//!
//! The token goes only into the `Authorization: PVEAPIToken=...` header
//! (`PVE/HTTPServer.pm`; no CSRF token is needed with API tokens). Errors name the host and
//! the endpoint, never a header.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme,
};

use super::fingerprint::Fingerprint;
use super::token::ApiToken;
use super::{ApiRequest, Method, PveError, Transport};

/// How the server's certificate is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// Verified against the system's CA store, host name included.
    SystemCas,
    /// The leaf certificate must have this SHA-256 fingerprint.
    Pinned(Fingerprint),
}

/// `--api https://HOST[:PORT][/]`: host and port (8006 by default, pveproxy's port).
pub fn parse_api_url(s: &str) -> Result<(String, u16), String> {
    let rest = s
        .strip_prefix("https://")
        .ok_or_else(|| format!("--api {s:?}: expected https://HOST:8006 (only HTTPS is spoken)"))?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let rest = rest.strip_suffix("/api2/json").unwrap_or(rest);
    if rest.is_empty() || rest.contains(['/', '?', '#', '@']) || rest.contains(char::is_whitespace)
    {
        return Err(format!(
            "--api {s:?}: expected https://HOST:8006, without a path, user or query"
        ));
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("--api {s:?}: unclosed [ in an IPv6 address"))?;
        (h.to_string(), after.strip_prefix(':'))
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (rest.to_string(), None),
        }
    };
    let port = match port {
        None => 8006,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("--api {s:?}: {p:?} is not a port"))?,
    };
    if host.is_empty() {
        return Err(format!("--api {s:?}: no host"));
    }
    Ok((host, port))
}

/// The certificate check failed; carried inside rustls's error so the client can say which
/// certificate it saw.
#[derive(Debug)]
struct Rejected {
    seen: Fingerprint,
    /// `None`: it is not the pinned one. `Some`: why the system's CAs refused it.
    untrusted: Option<String>,
}

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.untrusted {
            None => write!(f, "certificate {} is not the pinned one", self.seen),
            Some(why) => write!(f, "certificate {} not trusted: {why}", self.seen),
        }
    }
}

impl std::error::Error for Rejected {}

#[derive(Debug)]
enum Check {
    System(Arc<WebPkiServerVerifier>),
    Pinned(Fingerprint),
}

#[derive(Debug)]
struct Verifier {
    check: Check,
    provider: Arc<CryptoProvider>,
}

fn reject(seen: Fingerprint, untrusted: Option<String>) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(
        Rejected { seen, untrusted },
    ))))
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let seen = Fingerprint::of_der(end_entity.as_ref());
        match &self.check {
            Check::Pinned(pin) if *pin == seen => Ok(ServerCertVerified::assertion()),
            Check::Pinned(_) => Err(reject(seen, None)),
            Check::System(webpki) => webpki
                .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
                .map_err(|e| reject(seen, Some(e.to_string()))),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The HTTPS transport to one pveproxy (which proxies node requests to the other nodes).
pub struct Https {
    host: String,
    port: u16,
    trust: Trust,
    config: Arc<ClientConfig>,
    token: ApiToken,
    timeout: Duration,
}

impl std::fmt::Debug for Https {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Https({}:{}, {:?}, {:?})",
            self.host, self.port, self.trust, self.token
        )
    }
}

impl Https {
    /// A client for `host:port`. With [`Trust::SystemCas`] the system's CA store is loaded
    /// here; an empty store is an error (pin the node's certificate instead).
    pub fn new(
        host: String,
        port: u16,
        trust: Trust,
        token: ApiToken,
        timeout: Duration,
    ) -> Result<Self, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let check = match trust {
            Trust::Pinned(f) => Check::Pinned(f),
            Trust::SystemCas => {
                let loaded = rustls_native_certs::load_native_certs();
                let mut roots = rustls::RootCertStore::empty();
                let (added, _) = roots.add_parsable_certificates(loaded.certs);
                if added == 0 {
                    return Err(
                        "no CA certificates found in the system's store; pin the node's \
                         certificate with --fingerprint (from `pvenode cert info`)"
                            .into(),
                    );
                }
                let webpki =
                    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                        .build()
                        .map_err(|e| format!("setting up TLS verification: {e}"))?;
                Check::System(webpki)
            }
        };
        let verifier = Arc::new(Verifier {
            check,
            provider: provider.clone(),
        });
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("setting up TLS: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(Https {
            host,
            port,
            trust,
            config: Arc::new(config),
            token,
            timeout,
        })
    }

    fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Connects and completes the TLS handshake (certificate check included); nothing of the
    /// request has been written when this returns.
    fn connect(
        &self,
        endpoint: &str,
        deadline: Instant,
    ) -> Result<rustls::StreamOwned<ClientConnection, TcpStream>, PveError> {
        let conn_err = |detail: String| PveError::Connection {
            endpoint: endpoint.to_string(),
            detail,
        };
        let hp = self.host_port();
        let addrs: Vec<_> = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| conn_err(format!("resolving {hp}: {e}")))?
            .collect();
        let mut last = None;
        let mut tcp = None;
        for a in addrs {
            let left = self.left(endpoint, deadline)?;
            match TcpStream::connect_timeout(&a, left) {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    return Err(self.timed_out(endpoint))
                }
                Err(e) => last = Some(e),
            }
        }
        let mut tcp = tcp.ok_or_else(|| {
            conn_err(format!(
                "connecting to {hp}: {}",
                last.map(|e| e.to_string())
                    .unwrap_or_else(|| "no address".into())
            ))
        })?;
        let name = ServerName::try_from(self.host.clone())
            .map_err(|e| conn_err(format!("{:?} as a TLS server name: {e}", self.host)))?;
        let mut tls = ClientConnection::new(self.config.clone(), name)
            .map_err(|e| conn_err(format!("TLS with {hp}: {e}")))?;
        while tls.is_handshaking() {
            let left = self.left(endpoint, deadline)?;
            tcp.set_read_timeout(Some(left)).ok();
            tcp.set_write_timeout(Some(left)).ok();
            if let Err(e) = tls.complete_io(&mut tcp) {
                return Err(self.handshake_error(endpoint, e));
            }
        }
        Ok(rustls::StreamOwned::new(tls, tcp))
    }

    fn handshake_error(&self, endpoint: &str, e: io::Error) -> PveError {
        if is_timeout(&e) {
            return self.timed_out(endpoint);
        }
        let rejected = e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .and_then(|re| match re {
                rustls::Error::InvalidCertificate(CertificateError::Other(o)) => {
                    o.0.downcast_ref::<Rejected>()
                }
                _ => None,
            });
        match (rejected, self.trust) {
            (Some(r), Trust::Pinned(pin)) if r.untrusted.is_none() => {
                PveError::FingerprintMismatch {
                    host: self.host_port(),
                    seen: r.seen.to_string(),
                    pinned: pin.to_string(),
                }
            }
            (Some(r), _) => PveError::Untrusted {
                host: self.host_port(),
                detail: r.untrusted.clone().unwrap_or_default(),
                seen: r.seen.to_string(),
            },
            (None, _) => PveError::Connection {
                endpoint: endpoint.to_string(),
                detail: format!("TLS handshake with {}: {e}", self.host_port()),
            },
        }
    }

    fn left(&self, endpoint: &str, deadline: Instant) -> Result<Duration, PveError> {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| self.timed_out(endpoint))
    }

    fn timed_out(&self, endpoint: &str) -> PveError {
        PveError::Timeout {
            endpoint: endpoint.to_string(),
            timeout: self.timeout,
        }
    }

    fn request_bytes(&self, req: &ApiRequest) -> Vec<u8> {
        let path = format!("/api2/json{}", encode_path(&req.path));
        let form = encode_form(&req.params);
        let (target, body) = match req.method {
            Method::Get if form.is_empty() => (path, String::new()),
            Method::Get => (format!("{path}?{form}"), String::new()),
            Method::Post | Method::Put => (path, form),
        };
        let mut head = format!(
            "{} {target} HTTP/1.1\r\nHost: {}\r\nUser-Agent: passthru/{}\r\nAccept: application/json\r\nConnection: close\r\n",
            req.method.http(),
            self.host_port(),
            env!("CARGO_PKG_VERSION"),
        );
        if req.method != Method::Get {
            head.push_str(&format!(
                "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(b"Authorization: ");
        bytes.extend_from_slice(self.token.authorization().as_bytes());
        bytes.extend_from_slice(b"\r\n\r\n");
        bytes.extend_from_slice(body.as_bytes());
        bytes
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    )
}

impl Transport for Https {
    fn call(&self, req: &ApiRequest) -> Result<serde_json::Value, PveError> {
        let endpoint = req.endpoint();
        let deadline = Instant::now() + self.timeout;
        let mut stream = self.connect(&endpoint, deadline)?;
        let io_err = |what: &str, e: io::Error| PveError::Connection {
            endpoint: endpoint.clone(),
            detail: format!("{what} {}: {e}", self.host_port()),
        };
        let left = self.left(&endpoint, deadline)?;
        stream.sock.set_write_timeout(Some(left)).ok();
        let bytes = self.request_bytes(req);
        stream
            .write_all(&bytes)
            .and_then(|()| stream.flush())
            .map_err(|e| {
                if is_timeout(&e) {
                    self.timed_out(&endpoint)
                } else {
                    io_err("sending to", e)
                }
            })?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16384];
        loop {
            if response_complete(&buf) {
                break;
            }
            let left = self.left(&endpoint, deadline)?;
            stream.sock.set_read_timeout(Some(left)).ok();
            match stream.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if is_timeout(&e) => return Err(self.timed_out(&endpoint)),
                // A server that closes without TLS close_notify: the data so far stands, and
                // parsing says whether it is whole.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(io_err("reading from", e)),
            }
        }
        let resp = parse_response(&buf).map_err(|detail| PveError::Decode {
            endpoint: endpoint.clone(),
            detail,
        })?;
        decode_answer(&endpoint, resp.status, &resp.reason, &resp.body)
    }

    fn describe(&self) -> String {
        format!("https://{}", self.host_port())
    }
}

/// What an HTTP response holds once read.
#[derive(Debug, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub reason: String,
    pub body: Vec<u8>,
}

fn header_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

fn header_value<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Whether `buf` already holds a whole response (by `Content-Length`, or the last chunk of a
/// chunked body); otherwise the client reads on, to the end of the connection.
fn response_complete(buf: &[u8]) -> bool {
    let Some(end) = header_end(buf) else {
        return false;
    };
    let head = String::from_utf8_lossy(&buf[..end]);
    if let Some(len) = header_value(&head, "content-length").and_then(|v| v.parse::<usize>().ok()) {
        return buf.len() - end >= len;
    }
    if header_value(&head, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        return decode_chunked(&buf[end..]).is_ok();
    }
    false
}

fn decode_chunked(mut b: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("a chunk size line is cut off")?;
        let size_text = String::from_utf8_lossy(&b[..line_end]);
        let size_hex = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| format!("{size_hex:?} is not a chunk size"))?;
        b = &b[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if b.len() < size + 2 {
            return Err("a chunk is cut off".into());
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

/// Parses a complete HTTP/1.x response.
pub fn parse_response(buf: &[u8]) -> Result<HttpResponse, String> {
    let end = header_end(buf).ok_or("the connection closed before the HTTP headers ended")?;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let status_line = head.lines().next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(format!("not an HTTP/1 status line: {status_line:?}"));
    }
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("no status code in {status_line:?}"))?;
    let reason = parts.next().unwrap_or("").trim().to_string();
    let raw = &buf[end..];
    let body = if header_value(&head, "transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        decode_chunked(raw)?
    } else if let Some(len) = header_value(&head, "content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| format!("Content-Length {len:?} is not a number"))?;
        if raw.len() < len {
            return Err(format!(
                "the body is cut off ({} of {len} bytes arrived)",
                raw.len()
            ));
        }
        raw[..len].to_vec()
    } else {
        raw.to_vec()
    };
    Ok(HttpResponse {
        status,
        reason,
        body,
    })
}

/// The `data` of a success, or the error the body and reason phrase describe: Proxmox puts
/// a `die` text in the reason phrase and in `message`, and a failed parameter check in
/// `errors` (PROXMOX-API.md §1.0).
pub fn decode_answer(
    endpoint: &str,
    status: u16,
    reason: &str,
    body: &[u8],
) -> Result<serde_json::Value, PveError> {
    let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    if (200..300).contains(&status) {
        let json = json.ok_or_else(|| PveError::Decode {
            endpoint: endpoint.to_string(),
            detail: format!("HTTP {status} with a body that is not JSON"),
        })?;
        return Ok(json.get("data").cloned().unwrap_or(serde_json::Value::Null));
    }
    let mut message = json
        .as_ref()
        .and_then(|j| j.get("message"))
        .and_then(|m| m.as_str())
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .unwrap_or(reason.trim())
        .to_string();
    if let Some(errors) = json
        .as_ref()
        .and_then(|j| j.get("errors"))
        .and_then(|e| e.as_object())
    {
        let per: Vec<String> = errors
            .iter()
            .map(|(k, v)| {
                format!(
                    "{k}: {}",
                    v.as_str().unwrap_or("").trim().replace('\n', "; ")
                )
            })
            .collect();
        message = format!("{message} ({})", per.join(", "));
    }
    if message.is_empty() {
        message = "(no message)".into();
    }
    Err(PveError::Status {
        endpoint: endpoint.to_string(),
        status,
        message,
    })
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn encode_path(path: &str) -> String {
    path.split('/')
        .map(percent_encode)
        .collect::<Vec<_>>()
        .join("/")
}

/// `k=v&k=v`, a repeated key once per value (how Proxmox reads an array).
pub fn encode_form(params: &[(String, String)]) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_urls_take_a_host_and_an_optional_port() {
        assert_eq!(
            parse_api_url("https://pve1:8006").unwrap(),
            ("pve1".into(), 8006)
        );
        assert_eq!(
            parse_api_url("https://pve1").unwrap(),
            ("pve1".into(), 8006)
        );
        assert_eq!(
            parse_api_url("https://10.0.0.2:443/").unwrap(),
            ("10.0.0.2".into(), 443)
        );
        assert_eq!(
            parse_api_url("https://[fd00::2]:8006/api2/json").unwrap(),
            ("fd00::2".into(), 8006)
        );
        for bad in [
            "http://pve1:8006",
            "pve1:8006",
            "https://",
            "https://pve1:0",
            "https://pve1:x",
            "https://user@pve1",
            "https://pve1/nodes",
        ] {
            assert!(parse_api_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn responses_by_length_by_chunks_and_to_the_end() {
        let by_len = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{\"data\":1}\n";
        assert!(response_complete(by_len));
        assert_eq!(parse_response(by_len).unwrap().body, b"{\"data\":1}\n");
        assert!(!response_complete(&by_len[..by_len.len() - 1]));
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"dat\r\n5\r\na\":2}\r\n0\r\n\r\n";
        assert!(response_complete(chunked));
        assert_eq!(parse_response(chunked).unwrap().body, b"{\"data\":2}");
        let to_end = b"HTTP/1.0 500 boom\r\n\r\n{}";
        assert!(!response_complete(to_end));
        let r = parse_response(to_end).unwrap();
        assert_eq!((r.status, r.reason.as_str()), (500, "boom"));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab").is_err());
        assert!(parse_response(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
    }

    #[test]
    fn errors_carry_the_message_the_parameter_errors_and_the_status() {
        let e = decode_answer(
            "PUT /x",
            400,
            "Parameter verification failed.",
            br#"{"data":null,"errors":{"hostpci0":"invalid format - format error\nhostpci0.host: value does not match the regex pattern\n"}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("HTTP 400"), "{e}");
        assert!(e.contains("Parameter verification failed."), "{e}");
        assert!(e.contains("hostpci0: invalid format"), "{e}");
        let e = decode_answer("GET /y", 500, "only root can set 'hostpci1'", b"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("only root can set 'hostpci1'"), "{e}");
        assert_eq!(
            decode_answer("GET /z", 200, "OK", br#"{"data":[1]}"#).unwrap(),
            serde_json::json!([1])
        );
        assert_eq!(
            decode_answer("POST /z", 200, "OK", br#"{"data":null}"#).unwrap(),
            serde_json::Value::Null
        );
    }

    #[test]
    fn form_values_are_percent_encoded_and_arrays_repeat() {
        let f = encode_form(&[
            ("id".into(), "gpu0".into()),
            ("map".into(), "node=pve1,path=0000:01:00".into()),
            ("map".into(), "node=pve2".into()),
        ]);
        assert_eq!(
            f,
            "id=gpu0&map=node%3Dpve1%2Cpath%3D0000%3A01%3A00&map=node%3Dpve2"
        );
        assert_eq!(encode_path("/nodes/pve 1/qemu"), "/nodes/pve%201/qemu");
    }
}
