//! `deb-copyright PACKAGE LICENCE_DIR < metadata.json > copyright`: the machine-readable
//! Debian copyright file (DEP-5) for the binary of PACKAGE, from `cargo metadata
//! --format-version 1 --filter-platform TRIPLE`. See the library for what is listed.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [package, licences] = args.as_slice() else {
        eprintln!("usage: deb-copyright PACKAGE LICENCE_DIR < cargo-metadata.json");
        return ExitCode::from(2);
    };
    let mut text = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut text) {
        eprintln!("deb-copyright: reading cargo metadata from standard input: {e}");
        return ExitCode::from(2);
    }
    match passthru_deb::render_copyright(&text, package, &PathBuf::from(licences)) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("deb-copyright: {e}");
            ExitCode::from(2)
        }
    }
}
