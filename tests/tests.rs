//! Integration tests: every test starts the real `fxfer` binary as a server
//! on 127.0.0.1 (port 0) and runs the real client, or a raw socket, against
//! it. One test target, so the suite links once.

mod util;

// `fxfer ls` and `ls --json`.
mod ls;
// `fxfer get`: serial and parallel, odd names, big and empty files, failures.
mod get;
// The server under hostile or broken clients, limits, logging and shutdown.
mod server;
// Config file lookup, precedence and errors; exit codes.
mod config;
// The server as a daemon: the systemd unit, journald, log targets, signals.
mod service;
// Completions and other CLI surface checks.
mod cli;
// Man pages generated from the clap definitions, kept current.
mod man;
// Tab completion as bash, zsh and fish ask for it, server names included.
mod complete;
// `fxfer shell` driven through a pseudo-terminal.
mod shell;
// Scripting surface: get --json, globs, folders, ls PATH / -R, exit codes.
mod scripting;
// Faults: killed peers, corrupt and cut streams, changing sources, full and
// read-only disks, resume and retries.
mod faults;
// Hostile clients against the server and a hostile server against the client.
mod hostile;
// Token authentication.
mod auth;
// What users of curl, rsync and scp expect: pipes, --ip HOST:PORT,
// --files-from, -o -, rate limits, clear errors.
mod conventions;
// Progress on a terminal (bars at 80 columns) and in a pipe; Ctrl-C.
mod progress;
// Findings of an attack review: stale digests, odd paths, token hygiene,
// what a hostile server or download folder can make the client do.
mod hardening;
// Admission: token-guess penalties, descriptor limits, unfinished handshakes.
mod admission;
// Fetching only what changed: times and modes, --update, --checksum,
// --delete, --dry-run.
mod sync;
// TLS: eavesdroppers, server identities and trust, channel binding,
// plaintext mismatches, broken TLS streams.
mod tls;
// Property tests of both decoders on random input.
mod props;
// The documented wire bytes against the real server; version 3 clients.
mod wire;
// Clients of versions 3 to 5 against a --plaintext server, and refused by a
// TLS one.
mod compat;
// get --parallel: kept connections, large files in pieces, cut, resumed and
// changing pieces.
mod pieces;
