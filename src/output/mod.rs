//! Everything passthru prints goes through here, to any `io::Write`, so tests print into a
//! `Vec<u8>`. Rendering is pure: a function of the snapshot and the style.

pub mod advise;
pub mod check;
pub mod cluster;
pub mod documents;
pub mod list;
pub mod plan;
pub mod power;
pub mod report;
pub mod schema;
pub mod style;
pub mod tree;
pub mod verify;
pub mod words;
