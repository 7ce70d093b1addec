//! Everything passthru prints goes through here, to any `io::Write`, so tests print into a
//! `Vec<u8>`. Rendering is pure: a function of the snapshot and the style.

pub mod advise;
pub mod check;
pub mod list;
pub mod power;
pub mod report;
pub mod style;
pub mod tree;
pub mod words;
