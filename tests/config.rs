use crate::util::*;

#[test]
fn config_file_supplies_defaults_and_flags_win() {
    let s = Server::with_files(|h| write(h, "f.txt", b"from config"));
    std::fs::write(
        s.work.join("fxfer.toml"),
        format!("[client]\nport = {}\ndir = \"from-config\"\n", s.port),
    )
    .unwrap();
    // No --port: the file's port and folder are used.
    let o = fxfer(&s.work).args(["get", "f.txt"]).output().unwrap();
    assert_exit(&o, 0);
    assert_eq!(
        std::fs::read(s.work.join("from-config/f.txt")).unwrap(),
        b"from config"
    );
    // A flag wins over the file.
    let o = fxfer(&s.work)
        .args(["get", "--dir", "from-flag", "f.txt"])
        .output()
        .unwrap();
    assert_exit(&o, 0);
    assert!(s.work.join("from-flag/f.txt").exists());
    // --config (after the subcommand) and FXFER_CONFIG point elsewhere.
    std::fs::write(s.work.join("other.toml"), "[client]\nport = 1\n").unwrap();
    let o = fxfer(&s.work)
        .args(["ls", "--config", "other.toml"])
        .output()
        .unwrap();
    assert_exit(&o, 3);
    assert!(stderr(&o).contains("127.0.0.1:1"), "{}", stderr(&o));
    let o = fxfer(&s.work)
        .args(["ls"])
        .env("FXFER_CONFIG", "other.toml")
        .output()
        .unwrap();
    assert_exit(&o, 3);
    let o = fxfer(&s.work)
        .args(["--config", "fxfer.toml", "ls"])
        .output()
        .unwrap();
    assert_exit(&o, 0);
}

#[test]
fn server_reads_its_defaults_from_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("shared")).unwrap();
    std::fs::write(dir.path().join("shared/x.txt"), b"x").unwrap();
    std::fs::write(
        dir.path().join("fxfer.toml"),
        "[server]\nport = 0\ndir = \"shared\"\nlog_file = \"logs/s.log\"\n",
    )
    .unwrap();
    let mut child = fxfer(dir.path())
        .arg("serve")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let port = line.trim().rsplit(':').next().unwrap().to_string();
    let o = fxfer(dir.path())
        .args(["ls", "--port", &port])
        .output()
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("x.txt"));
    assert!(dir.path().join("logs/s.log").exists());
}

#[test]
fn bad_config_names_file_line_and_key_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("fxfer.toml"),
        "[client]\nport = 9000\njobz = 4\n",
    )
    .unwrap();
    let o = fxfer(dir.path()).args(["ls"]).output().unwrap();
    assert_exit(&o, 2);
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("fxfer.toml") && err.contains("line 3") && err.contains("jobz"),
        "{err}"
    );

    std::fs::write(dir.path().join("fxfer.toml"), "[server]\nport = \"high\"\n").unwrap();
    let o = fxfer(dir.path()).args(["serve"]).output().unwrap();
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("line 2, key `port`"), "{}", stderr(&o));

    let o = fxfer(dir.path())
        .args(["ls", "--config", "missing.toml"])
        .output()
        .unwrap();
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("cannot read config file missing.toml"));
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["get"][..],
        &["frobnicate"][..],
        &["get", "--jobs", "0", "x"][..],
        &["ls", "--port", "99999"][..],
    ] {
        let o = fxfer(dir.path()).args(args).output().unwrap();
        assert_exit(&o, 2);
    }
}

#[test]
fn help_lists_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let o = fxfer(dir.path()).arg("--help").output().unwrap();
    let out = stdout(&o);
    for l in [
        "0  success",
        "1  some files failed",
        "2  usage or config error",
        "3  cannot connect",
    ] {
        assert!(out.contains(l), "{out}");
    }
}

#[test]
fn a_bad_value_in_the_config_file_names_the_file_and_line_not_a_flag() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("fxfer.toml"),
        "[server]\nmax_connections = 0\n\n[client]\nretries = 1\njobs = 0\n",
    )
    .unwrap();
    let o = fxfer(dir.path()).args(["get", "x"]).output().unwrap();
    assert_exit(&o, 2);
    assert_eq!(
        stderr(&o),
        "fxfer: config file fxfer.toml, line 6, key `jobs`: must be at least 1\n"
    );
    let o = fxfer(dir.path()).args(["serve"]).output().unwrap();
    assert_exit(&o, 2);
    assert_eq!(
        stderr(&o),
        "fxfer: config file fxfer.toml, line 2, key `max_connections`: must be at least 1\n"
    );
    // A flag that overrides the bad value makes it harmless; a bad flag is
    // still blamed on the flag.
    let o = fxfer(dir.path())
        .args(["get", "-j", "0", "x"])
        .output()
        .unwrap();
    assert_exit(&o, 2);
    assert_eq!(stderr(&o), "fxfer: '--jobs' must be at least 1\n");
    // An address that is no address, in either table.
    std::fs::write(
        dir.path().join("fxfer.toml"),
        "[server]\nip = \"localhost\"\n[client]\nip = \"[::1\"\n",
    )
    .unwrap();
    let o = fxfer(dir.path()).args(["serve"]).output().unwrap();
    assert_exit(&o, 2);
    assert_eq!(
        stderr(&o),
        "fxfer: config file fxfer.toml, line 2, key `ip`: must be an IP address, not 'localhost'\n"
    );
    let o = fxfer(dir.path()).args(["ls"]).output().unwrap();
    assert_exit(&o, 2);
    assert_eq!(
        stderr(&o),
        "fxfer: config file fxfer.toml, line 4, key `ip`: '[::1' has no closing ']'\n"
    );
}

#[test]
fn debug_output_shows_plain_values() {
    let s = Server::with_files(|h| write(h, "a.txt", b"a"));
    let o = s.client("ls").arg("-vv").output().unwrap();
    assert_exit(&o, 0);
    let err = stderr(&o);
    assert!(err.contains("connected to 127.0.0.1:"), "{err}");
    assert!(!err.contains("Some(") && !err.contains("None"), "{err}");
    let o = s.get(&["-vv", "a.txt"]);
    assert_exit(&o, 0);
    assert!(!stderr(&o).contains("Some("), "{}", stderr(&o));
}
