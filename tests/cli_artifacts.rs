//! The committed shell completions and man pages match the clap definition.
//!
//! Run with `RESONATE_BLESS=1` to regenerate them after changing the CLI.

#[path = "../commands/cli.rs"]
#[allow(dead_code)]
mod cli;

use std::fs;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every generated file, by path relative to the repository root.
fn generate() -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    for shell in [
        Shell::Bash,
        Shell::Zsh,
        Shell::Fish,
        Shell::Elvish,
        Shell::PowerShell,
    ] {
        let mut command = cli::Cli::command();
        let mut bytes = Vec::new();
        clap_complete::generate(shell, &mut command, "resonate", &mut bytes);
        let name = match shell {
            Shell::Bash => "resonate.bash",
            Shell::Zsh => "_resonate",
            Shell::Fish => "resonate.fish",
            Shell::Elvish => "resonate.elv",
            Shell::PowerShell => "_resonate.ps1",
            _ => unreachable!("only the shells listed above"),
        };
        files.push((Path::new("completions").join(name), bytes));
    }
    let command = cli::Cli::command();
    files.push((Path::new("man").join("resonate.1"), render_man(&command)));
    for sub in command.get_subcommands() {
        let name = format!("resonate-{}", sub.get_name());
        let page = sub.clone().name(name.clone());
        files.push((
            Path::new("man").join(format!("{name}.1")),
            render_man(&page),
        ));
    }
    files
}

fn render_man(command: &clap::Command) -> Vec<u8> {
    let mut bytes = Vec::new();
    clap_mangen::Man::new(command.clone())
        .render(&mut bytes)
        .expect("render man page");
    bytes
}

#[test]
fn cli_definition_is_valid() {
    cli::Cli::command().debug_assert();
}

#[test]
fn completions_and_man_pages_are_current() {
    let bless = std::env::var_os("RESONATE_BLESS").is_some();
    let mut stale = Vec::new();
    for (relative, expected) in generate() {
        let path = root().join(&relative);
        if bless {
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, &expected).unwrap();
            continue;
        }
        match fs::read(&path) {
            Ok(actual) if actual == expected => {}
            _ => stale.push(relative.display().to_string()),
        }
    }
    assert!(
        stale.is_empty(),
        "stale generated files: {}; run `RESONATE_BLESS=1 cargo test --test cli_artifacts` and commit them",
        stale.join(", ")
    );
}
