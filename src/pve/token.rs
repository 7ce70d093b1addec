//! The Proxmox API token: read from a file, never from the command line.
//!
//! A token on the command line would be visible to every user in `ps`, so passthru takes
//! only the path of a file (`--token-file`, or `PASSTHRU_PVE_TOKEN_FILE`). The file holds
//! one line `USER@REALM!TOKENID=SECRET`, the form `pveum user token add` prints as
//! `full-tokenid` and `value` joined by `=`, and the form the `Authorization:
//! PVEAPIToken=...` header carries (pve-docs `pveum.adoc`).
//!
//! The secret never leaves [`ApiToken`] except through [`ApiToken::authorization`], which
//! only the HTTPS client calls to build the request header: `Debug` and `Display` show the
//! token id with the secret elided, and no error of this module contains it.

use std::fmt;
use std::path::{Path, PathBuf};

/// Why a token file cannot be used. No variant holds the secret (or any part of the file's
/// text): the file may hold a token in a form this parser does not expect.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("reading the API token file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the API token file {path} does not hold one line USER@REALM!TOKENID=SECRET ({why}; \
         the file's text is not shown)"
    )]
    Format { path: PathBuf, why: &'static str },
}

/// An API token. Its secret is private and elided from every rendering.
#[derive(Clone)]
pub struct ApiToken {
    /// `USER@REALM!TOKENID`.
    id: String,
    secret: String,
}

impl ApiToken {
    /// The full token id (`root@pam!passthru`): not a secret, shown in messages.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The value of the `Authorization` header: `PVEAPIToken=USER@REALM!TOKENID=SECRET`
    /// (`PVE/HTTPServer.pm` `extract_auth_value`). For the HTTPS client only.
    pub(crate) fn authorization(&self) -> String {
        format!("PVEAPIToken={}={}", self.id, self.secret)
    }

    /// The secret, for tests that check it is never shown.
    #[doc(hidden)]
    pub fn secret_for_tests(&self) -> &str {
        &self.secret
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiToken({}=<secret>)", self.id)
    }
}

impl fmt::Display for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.id)
    }
}

/// Parses the text of a token file: one line `USER@REALM!TOKENID=SECRET`, surrounding
/// whitespace ignored; a leading `PVEAPIToken=` (the header form) is accepted too.
pub fn parse_token(text: &str) -> Result<ApiToken, &'static str> {
    let line = text.trim();
    if line.is_empty() {
        return Err("the file is empty");
    }
    if line.lines().count() > 1 {
        return Err("the file has more than one line");
    }
    let line = line.strip_prefix("PVEAPIToken=").unwrap_or(line);
    let (id, secret) = line
        .split_once('=')
        .ok_or("no `=` between the token id and the secret")?;
    let (user, token_name) = id
        .split_once('!')
        .ok_or("no `!` between the user and the token name")?;
    let (name, realm) = user.rsplit_once('@').ok_or("the user has no `@REALM`")?;
    if name.is_empty() || realm.is_empty() || token_name.is_empty() {
        return Err("an empty user, realm or token name");
    }
    let bad = |s: &str| s.chars().any(|c| c.is_whitespace() || c.is_control());
    if bad(id) || token_name.contains(['!', '@']) {
        return Err("the token id holds whitespace, control characters or a second `!`");
    }
    if secret.is_empty() {
        return Err("the secret is empty");
    }
    if bad(secret) || secret.contains(';') {
        return Err("the secret holds whitespace, control characters or `;`");
    }
    Ok(ApiToken {
        id: id.to_string(),
        secret: secret.to_string(),
    })
}

/// Reads the token file at `path` (see [`parse_token`]).
pub fn read_token_file(path: &Path) -> Result<ApiToken, TokenError> {
    let text = std::fs::read_to_string(path).map_err(|source| TokenError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_token(&text).map_err(|why| TokenError::Format {
        path: path.to_path_buf(),
        why,
    })
}

/// Whether users other than the owner can read the file (mode bits 0o044): worth a warning,
/// since the token is a password.
pub fn readable_by_others(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o044 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "c0ffee00-1234-5678-9abc-def012345678";

    #[test]
    fn the_pveum_form_parses_and_the_secret_is_never_rendered() {
        let t = parse_token(&format!("root@pam!passthru={SECRET}\n")).unwrap();
        assert_eq!(t.id(), "root@pam!passthru");
        assert_eq!(
            t.authorization(),
            format!("PVEAPIToken=root@pam!passthru={SECRET}")
        );
        for shown in [format!("{t}"), format!("{t:?}")] {
            assert!(!shown.contains(SECRET), "{shown}");
        }
        let header_form = parse_token(&format!("PVEAPIToken=u@pve!t={SECRET}")).unwrap();
        assert_eq!(header_form.id(), "u@pve!t");
    }

    #[test]
    fn malformed_files_are_refused_without_echoing_them() {
        for bad in [
            "",
            SECRET,
            &format!("root@pam={SECRET}"),
            &format!("root!tok={SECRET}"),
            "root@pam!tok=",
            &format!("root@pam!tok={SECRET}\nsecond line"),
            &format!("root@pam!tok={SECRET} trailing"),
        ] {
            let e = parse_token(bad).unwrap_err();
            assert!(!e.contains(SECRET), "{e}");
        }
    }

    #[test]
    fn a_file_error_names_the_file_and_not_its_text() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tok");
        std::fs::write(&p, format!("{SECRET}\n")).unwrap();
        let e = read_token_file(&p).unwrap_err().to_string();
        assert!(e.contains("tok"), "{e}");
        assert!(!e.contains(SECRET), "{e}");
    }
}
