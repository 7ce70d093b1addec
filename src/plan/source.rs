//! The plan builders' only view of the host's files: current bytes by root-relative path.
//! Absent and unreadable are different answers: a file that exists but cannot be read (a
//! directory where a file should be, permission denied, an I/O error) must stop the plan, not
//! be planned over as if it were new.

/// A file that exists but could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: cannot read it ({why}); nothing was changed")]
pub struct ReadError {
    pub file: String,
    pub why: String,
}

/// Current bytes of a root-relative file.
pub trait FileSource {
    /// `Ok(None)` when the file does not exist; an error when it exists and cannot be read.
    fn read(&self, rel: &str) -> Result<Option<Vec<u8>>, ReadError>;
    fn list(&self, rel: &str) -> Vec<String>;
    fn is_dir(&self, rel: &str) -> bool;

    /// The file as text; bytes that are not UTF-8 are an error (an edit must not replace them).
    fn read_text(&self, rel: &str) -> Result<Option<String>, ReadError> {
        match self.read(rel)? {
            None => Ok(None),
            Some(b) => String::from_utf8(b).map(Some).map_err(|e| ReadError {
                file: rel.to_string(),
                why: format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
            }),
        }
    }
}
