use crate::util::*;

fn tree_host(h: &std::path::Path) {
    write(h, "a.log", b"a");
    write(h, "b.txt", b"bb");
    write(h, "logs/2026/x.txt", b"xxx");
    write(h, "logs/2026/y.log", b"yyyy");
    write(h, "logs/top.txt", b"top");
    std::fs::create_dir_all(h.join("empty")).unwrap();
}

#[test]
fn get_json_reports_each_file_and_totals_and_nothing_else() {
    let s = Server::with_files(tree_host);
    let o = s.get(&["--json", "a.log", "missing.bin", "logs/top.txt"]);
    assert_exit(&o, 1);
    let v: serde_json::Value =
        serde_json::from_slice(&o.stdout).expect("stdout is one JSON document");
    let files = v["files"].as_array().unwrap();
    assert_eq!(files.len(), 3);
    let by = |n: &str| files.iter().find(|f| f["name"] == n).unwrap().clone();
    assert_eq!(by("a.log")["status"], "ok");
    assert_eq!(by("a.log")["bytes"], 1);
    let p = by("logs/top.txt")["path"].as_str().unwrap().to_string();
    assert_eq!(std::fs::read(&p).unwrap(), b"top");
    assert!(by("logs/top.txt")["seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(by("missing.bin")["status"], "failed");
    assert!(by("missing.bin")["error"]
        .as_str()
        .unwrap()
        .contains("no such file"));
    assert_eq!(v["totals"]["files"], 3);
    assert_eq!(v["totals"]["ok"], 2);
    assert_eq!(v["totals"]["failed"], 1);
    assert_eq!(v["totals"]["bytes"], 4);
}

#[test]
fn get_json_when_the_server_is_unreachable_still_prints_json_and_exits_3() {
    let port = dead_port();
    let dir = tempfile::tempdir().unwrap();
    let o = fxfer(dir.path())
        .args([
            "get",
            "--json",
            "--retries",
            "1",
            "--port",
            &port.to_string(),
            "x",
        ])
        .output()
        .unwrap();
    assert_exit(&o, 3);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["totals"]["failed"], 1);
    assert!(v["files"][0]["error"]
        .as_str()
        .unwrap()
        .contains("cannot connect"));
    // The retry was announced on stderr and counted.
    assert_eq!(
        stderr(&o).matches("retrying in").count(),
        1,
        "{}",
        stderr(&o)
    );
    assert_eq!(v["files"][0]["retries"], 1, "{v}");
    let o = fxfer(dir.path())
        .args([
            "get",
            "--json",
            "--parallel",
            "--port",
            &port.to_string(),
            "x",
            "y",
        ])
        .output()
        .unwrap();
    assert_exit(&o, 3);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["totals"]["failed"], 2);
}

#[test]
fn globs_match_against_the_server_listing() {
    let s = Server::with_files(tree_host);
    let o = s.get(&["*.log"]);
    assert_exit(&o, 0);
    assert_eq!(tree(&s.downloads()), ["a.log"]);
    let o = s.get(&["--parallel", "logs/**/*.txt"]);
    assert_exit(&o, 0);
    assert_eq!(
        tree(&s.downloads()),
        ["a.log", "logs/2026/x.txt", "logs/top.txt"]
    );
    let o = s.get(&["*.zip", "b.txt"]);
    assert_exit(&o, 1);
    assert!(
        stderr(&o).contains("*.zip: no files on the server match this pattern"),
        "{}",
        stderr(&o)
    );
    assert!(
        s.downloads().join("b.txt").exists(),
        "other names still fetched"
    );
}

#[test]
fn folders_download_with_r_recreating_structure() {
    let s = Server::with_files(tree_host);
    let o = s.get(&["logs"]);
    assert_exit(&o, 1);
    assert!(
        stderr(&o).contains("logs: not a regular file (use -r to download folders)"),
        "{}",
        stderr(&o)
    );
    let o = s.get(&["-r", "logs/"]);
    assert_exit(&o, 0);
    assert_eq!(
        tree(&s.downloads()),
        ["logs/2026/x.txt", "logs/2026/y.log", "logs/top.txt"]
    );
    assert_eq!(
        std::fs::read(s.downloads().join("logs/2026/y.log")).unwrap(),
        b"yyyy"
    );
}

#[test]
fn ls_lists_one_folder_or_recursively() {
    let s = Server::with_files(tree_host);
    let o = s.client("ls").arg("logs").output().unwrap();
    assert_exit(&o, 0);
    let out = stdout(&o);
    assert!(
        out.contains("logs/2026/") && out.contains("logs/top.txt"),
        "{out}"
    );
    assert!(!out.contains("x.txt") && !out.contains("a.log"), "{out}");
    let o = s.client("ls").args(["-R", "--json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "a.log",
            "b.txt",
            "empty",
            "logs",
            "logs/2026",
            "logs/2026/x.txt",
            "logs/2026/y.log",
            "logs/top.txt"
        ]
    );
    let o = s.client("ls").arg("nope").output().unwrap();
    assert_exit(&o, 1);
    assert!(stderr(&o).contains("no such file"), "{}", stderr(&o));
    let o = s.client("ls").arg("../").output().unwrap();
    assert_exit(&o, 1);
    assert!(stderr(&o).contains("forbidden path"), "{}", stderr(&o));
}

#[test]
fn symlinked_folder_lists_under_the_link_name() {
    let s = Server::with_files(|h| {
        write(h, "real/f.txt", b"f");
        std::os::unix::fs::symlink("real", h.join("link")).unwrap();
    });
    let o = s.client("ls").args(["link", "--json"]).output().unwrap();
    assert_exit(&o, 0);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[0]["name"], "link/f.txt");
}

#[test]
fn every_exit_code_is_reachable() {
    let s = Server::with_files(tree_host);
    assert_exit(&s.get(&["a.log"]), 0);
    assert_exit(&s.get(&["a.log", "nope"]), 1);
    assert_exit(&s.get(&["--jobs", "0", "a.log"]), 2);
    let o = fxfer(&s.work)
        .args(["get", "--port", "1", "a.log"])
        .output()
        .unwrap();
    assert_exit(&o, 3);
}

#[test]
fn quiet_prints_only_errors() {
    let s = Server::with_files(tree_host);
    let o = s.get(&["-q", "a.log", "nope"]);
    assert_exit(&o, 1);
    assert!(o.stdout.is_empty());
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
}
