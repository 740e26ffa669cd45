use crate::util::*;
use std::os::unix::fs::MetadataExt;

fn sample(host: &std::path::Path) {
    write(host, "b.bin", &bytes(1, 5000));
    write(host, "a.txt", b"hello\n");
    write(host, "empty", b"");
    write(host, "with space ü.txt", b"x");
    std::fs::create_dir(host.join("sub")).unwrap();
}

#[test]
fn ls_prints_every_file_sorted_with_size_and_time() {
    let s = Server::with_files(sample);
    let o = s.client("ls").output().unwrap();
    assert_exit(&o, 0);
    let out = stdout(&o);
    let names: Vec<&str> = out
        .lines()
        .map(|l| l.rsplit("  ").next().unwrap())
        .collect();
    assert_eq!(
        names,
        ["a.txt", "b.bin", "empty", "sub/", "with space ü.txt"]
    );
    assert!(out.lines().next().unwrap().contains("6 B"), "{out}");
    assert!(out.contains("4.9 KiB"), "{out}");
    // A time column: YYYY-MM-DD HH:MM
    assert!(
        out.lines().all(|l| l.contains("-") && l.contains(":")),
        "{out}"
    );
    assert!(s.wait_log("list").contains("list \"/\""));
}

#[test]
fn ls_json_gives_exact_sizes_and_unix_times_and_nothing_else() {
    let s = Server::with_files(sample);
    let o = s.client("ls").arg("--json").output().unwrap();
    assert_exit(&o, 0);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("stdout is JSON only");
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 5);
    for e in arr {
        let name = e["name"].as_str().unwrap();
        let md = std::fs::metadata(s.host.join(name)).unwrap();
        assert_eq!(e["mtime"].as_i64().unwrap(), md.mtime(), "{name}");
        if md.is_file() {
            assert_eq!(e["kind"], "file");
            assert_eq!(e["size"].as_u64().unwrap(), md.len(), "{name}");
        } else {
            assert_eq!(e["kind"], "dir");
        }
    }
}

#[test]
fn ls_of_unreachable_server_is_one_clear_line_and_exit_3() {
    // Bind and drop to find a port nobody listens on.
    let port = dead_port();
    let dir = tempfile::tempdir().unwrap();
    let o = fxfer(dir.path())
        .args(["ls", "--port", &port.to_string()])
        .output()
        .unwrap();
    assert_exit(&o, 3);
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!(
            "cannot connect to 127.0.0.1:{port}: connection refused (is fxfer serve running?)"
        )),
        "{err}"
    );
    assert!(o.stdout.is_empty());
}

#[test]
fn ls_of_an_empty_folder_says_which_folder_is_empty() {
    let s = Server::with_files(|h| std::fs::create_dir(h.join("logs")).unwrap());
    let o = s.client("ls").arg("logs").output().unwrap();
    assert_exit(&o, 0);
    assert_eq!(stdout(&o), "");
    assert_eq!(stderr(&o), "fxfer: folder logs is empty\n");
    // -q: nothing at all.
    let o = s.client("ls").args(["-q", "logs/"]).output().unwrap();
    assert_eq!((stdout(&o), stderr(&o)), (String::new(), String::new()));

    let empty = Server::with_files(|_| {});
    let o = empty.client("ls").output().unwrap();
    assert_exit(&o, 0);
    assert_eq!(stderr(&o), "fxfer: the hosted folder is empty\n");
}
