//! Command-line types, parsed by clap. Defaults that a config file can set
//! are not clap defaults: they are resolved in `config.rs` and only stated
//! in the help text here. `completions/` and the man pages in `man/` are
//! generated from these definitions (tests/cli.rs, tests/man.rs check that
//! the committed copies are current).

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand};
use clap_complete::engine::ArgValueCompleter;

use crate::complete;

pub const EXIT_CODES: &str = "\
Exit status:
  0  success
  1  some files failed (or the job failed locally)
  2  usage or config error
  3  cannot connect, or protocol error
  130  get stopped by Ctrl-C (what arrived is kept)";

#[derive(Debug, Parser)]
#[command(
    name = "fxfer",
    version,
    about = "Fast, safe, scriptable file transfer: host a folder, list it, fetch from it",
    after_help = EXIT_CODES
)]
pub struct Cli {
    /// Config file (default: $FXFER_CONFIG, ./fxfer.toml, then
    /// $XDG_CONFIG_HOME/fxfer/config.toml)
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Print only errors
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// More log output on stderr (-v info, -vv debug)
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Host a folder for fxfer clients
    Serve(ServeArgs),
    /// List the files a server hosts
    Ls(LsArgs),
    /// Download files from a server
    Get(GetArgs),
    /// Interactive session: browse, pick and download files
    Shell(ShellArgs),
    /// Print a shell's completion script (it completes the server's file
    /// names too)
    Completions(CompletionsArgs),
}

/// Where the server is.
#[derive(Debug, Args, Clone, Default)]
pub struct ServerAddrArgs {
    /// Server address or host name [default: 127.0.0.1]
    #[arg(long, value_name = "ADDR")]
    pub ip: Option<String>,

    /// Server port [default: 9000]
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,

    /// File holding the server's shared token (or set FXFER_TOKEN)
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,

    /// Trust only a server with this key, as `fxfer serve` prints it
    /// (SHA256:...; or set FXFER_FINGERPRINT)
    #[arg(long, value_name = "SHA256:...")]
    pub fingerprint: Option<String>,

    /// Record a server seen for the first time without asking
    #[arg(long)]
    pub trust_new: bool,

    /// Talk to a server started with --plaintext: no encryption, no server
    /// identity (for a trusted link only)
    #[arg(long, overrides_with = "no_plaintext")]
    pub plaintext: bool,

    /// Use TLS even if the config file says plaintext (the default)
    #[arg(long, overrides_with = "plaintext")]
    pub no_plaintext: bool,
}

/// What the client puts up with from a server.
#[derive(Debug, Args, Clone, Default)]
pub struct LimitsArgs {
    /// Seconds without progress before a connection counts as dead
    /// [default: 30]
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,

    /// Slowest acceptable rate in bytes per second, measured over
    /// --speed-time of waiting on the server; 0 turns it off [default: 1024]
    #[arg(long, value_name = "BYTES")]
    pub speed_limit: Option<u64>,

    /// Seconds over which --speed-limit is measured [default: 30]
    #[arg(long, value_name = "SECS")]
    pub speed_time: Option<u64>,

    /// Give up after this many seconds in all, retries included
    /// [default: no limit]
    #[arg(long, value_name = "SECS")]
    pub max_time: Option<u64>,

    /// Most entries a server's listing may have [default: 5000000]
    #[arg(long, value_name = "N")]
    pub max_list_entries: Option<u64>,

    /// Most bytes a server's listing may take [default: 536870912 (512 MiB)]
    #[arg(long, value_name = "BYTES")]
    pub max_list_bytes: Option<u64>,
}

#[derive(Debug, Args, Clone)]
pub struct ServeArgs {
    /// Address to listen on; 0.0.0.0 shares on every network [default: 127.0.0.1]
    #[arg(long, value_name = "ADDR")]
    pub ip: Option<String>,

    /// Port to listen on; 0 picks a free one [default: 9000]
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,

    /// Folder to host [default: ./host_dir]
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// Log file, appended to; - for none (the whole log goes to stderr)
    /// [default: fxfer-server.log]
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<PathBuf>,

    /// Most clients served at once; more get a "busy" error [default: 64]
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,

    /// Seconds that transfers in flight may take to finish after Ctrl-C or
    /// SIGTERM [default: 10]
    #[arg(long, value_name = "SECS")]
    pub grace_period: Option<u64>,

    /// Most connections from one IP address at once (IPv6: from one /64)
    /// [default: 16]
    #[arg(long, value_name = "N")]
    pub max_connections_per_ip: Option<usize>,

    /// Seconds a new connection has to complete the handshake, in all
    /// [default: 10]
    #[arg(long, value_name = "SECS")]
    pub handshake_timeout: Option<u64>,

    /// Unfinished handshakes allowed at once, as START:RATE:FULL: from
    /// START on, new connections are dropped with RATE% probability,
    /// rising to 100% at FULL (a single N is a hard limit)
    /// [default: 4096:30:16384]
    #[arg(long, value_name = "START:RATE:FULL")]
    pub max_startups: Option<String>,

    /// Seconds an idle connection is kept open [default: 300]
    #[arg(long, value_name = "SECS")]
    pub idle_timeout: Option<u64>,

    /// Seconds a client may stop reading before it is dropped [default: 60]
    #[arg(long, value_name = "SECS")]
    pub write_timeout: Option<u64>,

    /// Require this shared token from clients (or set FXFER_TOKEN)
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,

    /// Folder for the server's identity (key and certificate, created on
    /// first start) [default: $STATE_DIRECTORY, else $XDG_DATA_HOME/fxfer]
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Certificate chain (PEM) to use instead of the self-signed identity,
    /// e.g. one issued by a CA; needs --key
    #[arg(long, value_name = "PATH", requires = "key")]
    pub cert: Option<PathBuf>,

    /// Private key (PEM) of --cert
    #[arg(long, value_name = "PATH", requires = "cert")]
    pub key: Option<PathBuf>,

    /// Serve without TLS: everything crosses the network in the clear (for
    /// a trusted link or to compare speeds); clients need --plaintext too.
    /// Clients of protocol versions 3 to 5 (which have no TLS) are then
    /// served too, each in its own version
    #[arg(long, overrides_with = "no_plaintext")]
    pub plaintext: bool,

    /// Serve with TLS even if the config file says plaintext (the default)
    #[arg(long, overrides_with = "plaintext")]
    pub no_plaintext: bool,

    /// List and serve dot-files too
    #[arg(long, overrides_with = "no_hidden")]
    pub hidden: bool,

    /// Keep dot-files hidden (the default)
    #[arg(long, overrides_with = "hidden")]
    pub no_hidden: bool,

    /// Most bytes per second sent to each connection, e.g. 10M or 500K
    /// (K, M, G = 1024-based) [default: no limit]
    #[arg(long, value_name = "RATE")]
    pub limit_rate: Option<String>,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Folder on the server to list [default: the top folder]
    #[arg(value_name = "PATH", add = ArgValueCompleter::new(complete::ls_folders))]
    pub path: Option<String>,

    #[command(flatten)]
    pub server: ServerAddrArgs,

    /// List subfolders too
    #[arg(short = 'R', long)]
    pub recursive: bool,

    /// Print one JSON array (exact sizes, Unix times) and nothing else
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub limits: LimitsArgs,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// Files to download, as the server lists them; glob patterns such as
    /// '*.log' or 'logs/**/*.txt' match against the server's files
    #[arg(
        required_unless_present = "files_from",
        value_name = "NAME",
        add = ArgValueCompleter::new(complete::get_names)
    )]
    pub names: Vec<String>,

    /// Read more names from FILE, one per line ('-' for standard input);
    /// blank lines and lines starting with '#' are skipped
    #[arg(long, value_name = "FILE")]
    pub files_from: Option<PathBuf>,

    #[command(flatten)]
    pub server: ServerAddrArgs,

    /// Download folder, created when missing [default: ./downloads]
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// Several kept connections sharing the files; large files in pieces
    #[arg(long, overrides_with = "no_parallel")]
    pub parallel: bool,

    /// One connection for all files, requests pipelined (the default)
    #[arg(long, overrides_with = "parallel")]
    pub no_parallel: bool,

    /// Most connections at once with --parallel [default: 8]
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<usize>,

    /// Download folders too, recreating their structure
    #[arg(short, long)]
    pub recursive: bool,

    /// Print one JSON report (per file: name, status, error, bytes,
    /// seconds, path, digest, retries; deletions; totals) and nothing else
    /// on stdout
    #[arg(long)]
    pub json: bool,

    /// Retries after a transient failure (connection refused, reset or
    /// timed out), resuming from the partial data [default: 3]
    #[arg(long, value_name = "N")]
    pub retries: Option<u32>,

    #[command(flatten)]
    pub limits: LimitsArgs,

    /// Start over instead of resuming partial downloads
    #[arg(long)]
    pub no_resume: bool,

    /// Keep existing local files; report them as skipped
    #[arg(long, short = 'n')]
    pub no_clobber: bool,

    /// Skip flushing files to disk before renaming them: faster, but a
    /// crash right after may lose recent downloads
    #[arg(long, overrides_with = "fsync")]
    pub no_fsync: bool,

    /// Flush every file to disk before renaming it into place (the default)
    #[arg(long, overrides_with = "no_fsync")]
    pub fsync: bool,

    /// Most bytes per second for the whole download, all connections
    /// together, e.g. 10M or 500K (K, M, G = 1024-based) [default: no limit]
    #[arg(long, value_name = "RATE")]
    pub limit_rate: Option<String>,

    /// Save the one file named as PATH; '-' writes its bytes to stdout
    /// (checked as they go: a bad digest means a non-zero exit after the
    /// bytes went out)
    #[arg(short, long, value_name = "PATH", conflicts_with_all = ["recursive", "parallel"])]
    pub output: Option<PathBuf>,

    /// Write the one file named to stdout (the same as -o -)
    #[arg(long, conflicts_with_all = ["output", "json", "recursive", "parallel"])]
    pub stdout: bool,

    #[command(flatten)]
    pub sync: SyncArgs,
}

/// Fetching only what changed.
#[derive(Debug, Args, Clone, Default)]
pub struct SyncArgs {
    /// Keep local copies with the server's size and modification time
    /// without reading them (rsync's quick check; --compare update)
    #[arg(long, conflicts_with_all = ["checksum", "compare"])]
    pub update: bool,

    /// Keep local copies whose content matches the server's (BLAKE3),
    /// whatever their times (--compare checksum)
    #[arg(long, conflicts_with = "compare")]
    pub checksum: bool,

    /// How local copies are compared with the server's files: verify (size
    /// and time, confirmed by content), update (size and time), checksum
    /// (content), none (fetch everything again) [default: verify]
    #[arg(long, value_name = "MODE", value_enum)]
    pub compare: Option<crate::transfer::Compare>,

    /// With -r: also remove what the server no longer has from the local
    /// copies of the named folders (of dot-files only fxfer's own partial
    /// downloads; never through symlinks)
    #[arg(long, requires = "recursive")]
    pub delete: bool,

    /// Show what would be fetched, kept and deleted; change nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct ShellArgs {
    #[command(flatten)]
    pub server: ServerAddrArgs,

    /// Download folder, created on first download [default: ./downloads]
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,

    #[command(flatten)]
    pub limits: LimitsArgs,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// Shell to generate the script for
    pub shell: clap_complete::Shell,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn config_flag_is_accepted_before_and_after_the_subcommand() {
        let a = Cli::try_parse_from(["fxfer", "--config", "x.toml", "ls"]).unwrap();
        let b = Cli::try_parse_from(["fxfer", "ls", "--config", "x.toml"]).unwrap();
        assert_eq!(a.config, b.config);
    }
}
