
use builtin;
use str;

set edit:completion:arg-completer[fxfer] = {|@words|
    fn spaces {|n|
        builtin:repeat $n ' ' | str:join ''
    }
    fn cand {|text desc|
        edit:complex-candidate $text &display=$text' '(spaces (- 14 (wcswidth $text)))$desc
    }
    var command = 'fxfer'
    for word $words[1..-1] {
        if (str:has-prefix $word '-') {
            break
        }
        set command = $command';'$word
    }
    var completions = [
        &'fxfer'= {
            cand --config 'Config file (default: $FXFER_CONFIG, ./fxfer.toml, then $XDG_CONFIG_HOME/fxfer/config.toml)'
            cand -q 'Print only errors'
            cand --quiet 'Print only errors'
            cand -v 'More log output on stderr (-v info, -vv debug)'
            cand --verbose 'More log output on stderr (-v info, -vv debug)'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand serve 'Host a folder for fxfer clients'
            cand ls 'List the files a server hosts'
            cand get 'Download files from a server'
            cand shell 'Interactive session: browse, pick and download files'
            cand completions 'Print a shell completion script'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'fxfer;serve'= {
            cand --ip 'Address to listen on; 0.0.0.0 shares on every network [default: 127.0.0.1]'
            cand --port 'Port to listen on; 0 picks a free one [default: 9000]'
            cand --dir 'Folder to host [default: ./host_dir]'
            cand --log-file 'Log file, appended to; - for none (the whole log goes to stderr) [default: fxfer-server.log]'
            cand --max-connections 'Most clients served at once; more get a "busy" error [default: 64]'
            cand --grace-period 'Seconds that transfers in flight may take to finish after Ctrl-C or SIGTERM [default: 10]'
            cand --max-connections-per-ip 'Most connections from one IP address at once [default: 16]'
            cand --handshake-timeout 'Seconds a new connection has to complete the handshake [default: 10]'
            cand --idle-timeout 'Seconds an idle connection is kept open [default: 300]'
            cand --write-timeout 'Seconds a client may stop reading before it is dropped [default: 60]'
            cand --token-file 'Require this shared token from clients (or set FXFER_TOKEN)'
            cand --limit-rate 'Most bytes per second sent to each connection, e.g. 10M or 500K (K, M, G = 1024-based) [default: no limit]'
            cand --config 'Config file (default: $FXFER_CONFIG, ./fxfer.toml, then $XDG_CONFIG_HOME/fxfer/config.toml)'
            cand --hidden 'List and serve dot-files too'
            cand --no-hidden 'Keep dot-files hidden (the default)'
            cand -q 'Print only errors'
            cand --quiet 'Print only errors'
            cand -v 'More log output on stderr (-v info, -vv debug)'
            cand --verbose 'More log output on stderr (-v info, -vv debug)'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'fxfer;ls'= {
            cand --ip 'Server address or host name [default: 127.0.0.1]'
            cand --port 'Server port [default: 9000]'
            cand --token-file 'File holding the server''s shared token (or set FXFER_TOKEN)'
            cand --config 'Config file (default: $FXFER_CONFIG, ./fxfer.toml, then $XDG_CONFIG_HOME/fxfer/config.toml)'
            cand -R 'List subfolders too'
            cand --recursive 'List subfolders too'
            cand --json 'Print one JSON array (exact sizes, Unix times) and nothing else'
            cand -q 'Print only errors'
            cand --quiet 'Print only errors'
            cand -v 'More log output on stderr (-v info, -vv debug)'
            cand --verbose 'More log output on stderr (-v info, -vv debug)'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'fxfer;get'= {
            cand --files-from 'Read more names from FILE, one per line (''-'' for standard input); blank lines and lines starting with ''#'' are skipped'
            cand --ip 'Server address or host name [default: 127.0.0.1]'
            cand --port 'Server port [default: 9000]'
            cand --token-file 'File holding the server''s shared token (or set FXFER_TOKEN)'
            cand --dir 'Download folder, created when missing [default: ./downloads]'
            cand -j 'Most downloads at once with --parallel [default: 8]'
            cand --jobs 'Most downloads at once with --parallel [default: 8]'
            cand --retries 'Retries after a transient failure (connection refused, reset or timed out), resuming from the partial data [default: 3]'
            cand --timeout 'Seconds without progress before a connection counts as dead [default: 30]'
            cand --limit-rate 'Most bytes per second for the whole download, all connections together, e.g. 10M or 500K (K, M, G = 1024-based) [default: no limit]'
            cand -o 'Save the one file named as PATH; ''-'' writes its bytes to stdout (checked as they go: a bad digest means a non-zero exit after the bytes went out)'
            cand --output 'Save the one file named as PATH; ''-'' writes its bytes to stdout (checked as they go: a bad digest means a non-zero exit after the bytes went out)'
            cand --config 'Config file (default: $FXFER_CONFIG, ./fxfer.toml, then $XDG_CONFIG_HOME/fxfer/config.toml)'
            cand --parallel 'One connection per file, several at once'
            cand --no-parallel 'One connection for all files, requests pipelined (the default)'
            cand -r 'Download folders too, recreating their structure'
            cand --recursive 'Download folders too, recreating their structure'
            cand --json 'Print one JSON report (per file: name, status, error, bytes, seconds, path, digest, retries; plus totals) and nothing else on stdout'
            cand --no-resume 'Start over instead of resuming partial downloads'
            cand -n 'Keep existing local files; report them as skipped'
            cand --no-clobber 'Keep existing local files; report them as skipped'
            cand --no-fsync 'Skip flushing files to disk before renaming them: faster, but a crash right after may lose recent downloads'
            cand --fsync 'Flush every file to disk before renaming it into place (the default)'
            cand --stdout 'Write the one file named to stdout (the same as -o -)'
            cand -q 'Print only errors'
            cand --quiet 'Print only errors'
            cand -v 'More log output on stderr (-v info, -vv debug)'
            cand --verbose 'More log output on stderr (-v info, -vv debug)'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'fxfer;shell'= {
            cand --ip 'Server address or host name [default: 127.0.0.1]'
            cand --port 'Server port [default: 9000]'
            cand --token-file 'File holding the server''s shared token (or set FXFER_TOKEN)'
            cand --dir 'Download folder, created on first download [default: ./downloads]'
            cand --config 'Config file (default: $FXFER_CONFIG, ./fxfer.toml, then $XDG_CONFIG_HOME/fxfer/config.toml)'
            cand -q 'Print only errors'
            cand --quiet 'Print only errors'
            cand -v 'More log output on stderr (-v info, -vv debug)'
            cand --verbose 'More log output on stderr (-v info, -vv debug)'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'fxfer;completions'= {
            cand --config 'Config file (default: $FXFER_CONFIG, ./fxfer.toml, then $XDG_CONFIG_HOME/fxfer/config.toml)'
            cand -q 'Print only errors'
            cand --quiet 'Print only errors'
            cand -v 'More log output on stderr (-v info, -vv debug)'
            cand --verbose 'More log output on stderr (-v info, -vv debug)'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'fxfer;help'= {
            cand serve 'Host a folder for fxfer clients'
            cand ls 'List the files a server hosts'
            cand get 'Download files from a server'
            cand shell 'Interactive session: browse, pick and download files'
            cand completions 'Print a shell completion script'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'fxfer;help;serve'= {
        }
        &'fxfer;help;ls'= {
        }
        &'fxfer;help;get'= {
        }
        &'fxfer;help;shell'= {
        }
        &'fxfer;help;completions'= {
        }
        &'fxfer;help;help'= {
        }
    ]
    $completions[$command]
}
