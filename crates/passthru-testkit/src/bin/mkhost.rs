//! `mkhost DESC.toml OUTDIR`: build a host root tree from a description.
//!
//! Refuses a non-empty OUTDIR so that a stale tree is never half-overwritten.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [desc, out] = args.as_slice() else {
        eprintln!("usage: mkhost DESC.toml OUTDIR");
        return ExitCode::from(2);
    };
    let (desc, out) = (PathBuf::from(desc), PathBuf::from(out));
    if std::fs::read_dir(&out).is_ok_and(|mut d| d.next().is_some()) {
        eprintln!(
            "mkhost: {} exists and is not empty; remove it first",
            out.display()
        );
        return ExitCode::from(2);
    }
    let result = passthru_testkit::load_desc(&desc).and_then(|d| {
        passthru_testkit::build_host(&d, &out).map_err(|source| passthru_testkit::Error::Build {
            desc: Some(desc.clone()),
            root: out.clone(),
            source,
        })
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mkhost: {e}");
            ExitCode::from(2)
        }
    }
}
