use crate::util::*;
use clap::ValueEnum;
use clap_complete::{Generator, Shell};

/// `completions/` must match what the binary generates now. Run with
/// `FXFER_BLESS=1` to rewrite the files after changing the CLI.
#[test]
fn committed_completions_are_current() {
    let dir = tempfile::tempdir().unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("completions");
    for shell in Shell::value_variants() {
        let o = fxfer(dir.path())
            .args(["completions", &shell.to_string()])
            .output()
            .unwrap();
        assert_exit(&o, 0);
        let file = root.join(shell.file_name("fxfer"));
        if std::env::var_os("FXFER_BLESS").is_some() {
            bless_write(&file, &o.stdout);
        }
        let committed = std::fs::read(&file)
            .unwrap_or_else(|e| panic!("{}: {e} (run FXFER_BLESS=1 cargo test)", file.display()));
        assert!(
            committed == o.stdout,
            "{} is stale: run FXFER_BLESS=1 cargo test committed_completions",
            file.display()
        );
    }
}

#[test]
fn completion_for_unknown_shell_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let o = fxfer(dir.path())
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_exit(&o, 2);
}

/// README's per-user install lines for completions and man pages, run in a
/// home where none of their folders exist yet.
#[test]
fn readme_install_lines_work_in_an_empty_home() {
    let readme = include_str!("../README.md");
    let home = tempfile::tempdir().unwrap();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut ran = 0;
    for block in readme.split("```sh\n").skip(1) {
        let block = &block[..block.find("```").unwrap()];
        for line in block.lines().map(str::trim) {
            let per_user = line.starts_with("mkdir -p ~/")
                || line.starts_with("cp completions/")
                || (line.starts_with("install ") && line.contains(" ~/"));
            if !per_user {
                continue;
            }
            let o = std::process::Command::new("sh")
                .args(["-c", line])
                .current_dir(repo)
                .env("HOME", home.path())
                .output()
                .unwrap();
            assert!(o.status.success(), "{line}: {}", stderr(&o));
            ran += 1;
        }
    }
    assert!(ran >= 9, "only {ran} install lines found in README");
    for f in [
        ".local/share/bash-completion/completions/fxfer",
        ".zsh/completions/_fxfer",
        ".config/fish/completions/fxfer.fish",
        ".config/elvish/lib/fxfer.elv",
        ".local/share/man/man1/fxfer.1",
        ".local/share/man/man1/fxfer-get.1",
    ] {
        assert!(home.path().join(f).is_file(), "{f} not installed");
    }
}

/// README names the Rust version Cargo.toml declares, and no locked
/// dependency needs a newer one.
#[test]
fn the_stated_rust_version_is_enough_for_every_dependency() {
    let ours = env!("CARGO_PKG_RUST_VERSION");
    let readme = include_str!("../README.md");
    assert!(
        readme.contains(&format!("Rust {ours} or newer")),
        "README vs {ours}"
    );
    // Only what builds for this machine counts (wasm- or Windows-only
    // crates may declare newer versions).
    let rustc = std::process::Command::new("rustc")
        .arg("-vV")
        .output()
        .unwrap();
    let host = stdout(&rustc)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .unwrap();
    let o = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--locked", "--offline", "--format-version", "1"])
        .args(["--filter-platform", &host])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let meta: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // "1.85" and "1.85.0" are the same version.
    let version = |v: &str| -> [u32; 3] {
        let mut n = [0; 3];
        for (slot, x) in n.iter_mut().zip(v.split('.')) {
            *slot = x.parse().unwrap();
        }
        n
    };
    let resolved: std::collections::HashSet<&str> = meta["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    for p in meta["packages"].as_array().unwrap() {
        let (Some(needs), Some(id)) = (p["rust_version"].as_str(), p["id"].as_str()) else {
            continue;
        };
        if resolved.contains(id) {
            assert!(
                version(needs) <= version(ours),
                "{} {} needs Rust {needs}, Cargo.toml says {ours}",
                p["name"],
                p["version"]
            );
        }
    }
}
