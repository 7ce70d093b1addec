//! `passthru generate-assets DIR` (hidden): the man pages (one for the command and one for
//! each subcommand, clap_mangen) and the bash, zsh and fish completions (clap_complete),
//! rendered from the same clap definition the binary parses with, so they cannot drift from
//! it; and the JSON Schema of every `--json` output. The .deb build (`scripts/deb/build.sh`) runs it. Writes only below DIR.

use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::{Cli, GenerateAssetsArgs};

pub fn run(a: &GenerateAssetsArgs, out: &mut dyn Write) -> Result<()> {
    let man = a.dir.join("man");
    let completions = a.dir.join("completions");
    for d in [&man, &completions] {
        fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    write_man_pages(&man)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut cmd = Cli::command();
        let path = clap_complete::generate_to(shell, &mut cmd, "passthru", &completions)
            .with_context(|| {
                format!(
                    "writing the {shell} completion in {}",
                    completions.display()
                )
            })?;
        writeln!(out, "{}", path.display())?;
    }
    writeln!(out, "{}", man.display())?;
    let schema = a.dir.join("schema.json");
    fs::write(&schema, passthru::output::schema::render_output_schema())
        .with_context(|| format!("writing {}", schema.display()))?;
    writeln!(out, "{}", schema.display())?;
    Ok(())
}

/// `passthru.1`, `passthru-setup.1`, `passthru-setup-vm.1` … for every subcommand not hidden.
fn write_man_pages(dir: &Path) -> Result<()> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    fn generate(cmd: &clap::Command, dir: &Path) -> Result<()> {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            generate(sub, dir)?;
        }
        let man = clap_mangen::Man::new(cmd.clone());
        man.generate_to(dir)
            .with_context(|| format!("writing {}", dir.join(man.get_filename()).display()))?;
        Ok(())
    }
    generate(&cmd, dir)
}
