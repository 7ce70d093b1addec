//! `passthru advise`: which GPU for which job, from a catalog shipped in the binary. Pure.
pub mod catalog;
pub mod generate;
pub mod llm;
pub mod rank;
pub mod request;
pub mod speed;
