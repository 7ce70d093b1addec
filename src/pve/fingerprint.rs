//! TLS certificate fingerprints in the form Proxmox prints them.
//!
//! `pvenode cert info`, `GET /nodes` (`ssl_fingerprint`) and `GET
//! /nodes/{node}/certificates/info` print the SHA-256 of the certificate's DER bytes as 32
//! upper-case hex pairs joined by `:` (`Net::SSLeay::X509_get_fingerprint($cert,'sha256')`
//! in pve-common `src/PVE/Certificate.pm`; schema format `fingerprint-sha256`, pattern
//! `([A-Fa-f0-9]{2}:){31}[A-Fa-f0-9]{2}`). Proxmox's own Rust client
//! (`proxmox-client/src/client.rs`, `parse_fingerprint`) strips the colons and hex-decodes
//! exactly 32 bytes; so does [`parse_fingerprint`], which also accepts lower case.
//!
//! Pure; no I/O.

use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

/// A SHA-256 certificate fingerprint.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER-encoded certificate.
    pub fn of_der(der: &[u8]) -> Self {
        Fingerprint(Sha256::digest(der).into())
    }
}

/// Why a `--fingerprint` value is not a SHA-256 fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a SHA-256 fingerprint: expected 32 hex pairs joined by `:`, as \
     `pvenode cert info` prints it (5F:40:6C:...:7F:23)"
)]
pub struct ParseFingerprintError(pub String);

/// Parses `AA:BB:...` (32 pairs, any case). A bare 64-digit hex string is accepted too.
pub fn parse_fingerprint(s: &str) -> Result<Fingerprint, ParseFingerprintError> {
    let err = || ParseFingerprintError(s.to_string());
    let t = s.trim();
    let hex: String = if t.contains(':') {
        let pairs: Vec<&str> = t.split(':').collect();
        if pairs.len() != 32 || pairs.iter().any(|p| p.len() != 2) {
            return Err(err());
        }
        pairs.concat()
    } else {
        t.to_string()
    };
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(err());
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| err())?;
    }
    Ok(Fingerprint(out))
}

impl FromStr for Fingerprint {
    type Err = ParseFingerprintError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_fingerprint(s)
    }
}

impl fmt::Display for Fingerprint {
    /// Upper-case pairs joined by `:`, as `pvenode cert info` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|b| format!("{b:02X}")).collect();
        f.write_str(&parts.join(":"))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `ssl_fingerprint` of the real `GET /nodes` capture in PROXMOX-API.md §1.1.
    const REAL: &str = "5F:40:6C:F3:29:55:81:AB:2E:20:DB:C5:DE:CB:5C:0F:37:F0:80:FB:B3:52:A2:A9:F6:4E:C7:11:80:8A:7F:23";

    #[test]
    fn the_pvenode_form_round_trips_and_case_does_not_matter() {
        let f = parse_fingerprint(REAL).unwrap();
        assert_eq!(f.to_string(), REAL);
        assert_eq!(parse_fingerprint(&REAL.to_lowercase()).unwrap(), f);
        assert_eq!(parse_fingerprint(&REAL.replace(':', "")).unwrap(), f);
    }

    #[test]
    fn short_long_or_non_hex_values_are_refused() {
        for bad in [
            "",
            &REAL[..REAL.len() - 3],
            &format!("{REAL}:00"),
            &REAL.replace("5F", "5G"),
            "5F40:6C",
        ] {
            assert!(parse_fingerprint(bad).is_err(), "{bad}");
        }
    }
}
