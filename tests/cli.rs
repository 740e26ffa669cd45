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
            std::fs::write(&file, &o.stdout).unwrap();
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
