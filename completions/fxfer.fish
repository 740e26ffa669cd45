# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_fxfer_global_optspecs
    string join \n config= q/quiet v/verbose h/help V/version
end

function __fish_fxfer_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_fxfer_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_fxfer_using_subcommand
    set -l cmd (__fish_fxfer_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c fxfer -n "__fish_fxfer_needs_command" -l config -d 'Config file (default: $FXFER_CONFIG, ./fxfer.toml, then $XDG_CONFIG_HOME/fxfer/config.toml)' -r -F
complete -c fxfer -n "__fish_fxfer_needs_command" -s q -l quiet -d 'Print only errors'
complete -c fxfer -n "__fish_fxfer_needs_command" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug)'
complete -c fxfer -n "__fish_fxfer_needs_command" -s h -l help -d 'Print help'
complete -c fxfer -n "__fish_fxfer_needs_command" -s V -l version -d 'Print version'
complete -c fxfer -n "__fish_fxfer_needs_command" -f -a "serve" -d 'Host a folder for fxfer clients'
complete -c fxfer -n "__fish_fxfer_needs_command" -f -a "ls" -d 'List the files a server hosts'
complete -c fxfer -n "__fish_fxfer_needs_command" -f -a "get" -d 'Download files from a server'
complete -c fxfer -n "__fish_fxfer_needs_command" -f -a "shell" -d 'Interactive session: browse, pick and download files'
complete -c fxfer -n "__fish_fxfer_needs_command" -f -a "completions" -d 'Print a shell completion script'
complete -c fxfer -n "__fish_fxfer_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fxfer -n "__fish_fxfer_using_subcommand serve" -l ip -d 'Address to listen on; 0.0.0.0 shares on every network [default: 127.0.0.1]' -r
complete -c fxfer -n "__fish_fxfer_using_subcommand serve" -l port -d 'Port to listen on; 0 picks a free one [default: 9000]' -r
complete -c fxfer -n "__fish_fxfer_using_subcommand serve" -l dir -d 'Folder to host [default: ./host_dir]' -r -F
complete -c fxfer -n "__fish_fxfer_using_subcommand serve" -l log-file -d 'Log file, appended to; - for none (the whole log goes to stderr) [default: fxfer-server.log]' -r -F
complete -c fxfer -n "__fish_fxfer_using_subcommand serve" -l max-connections -d 'Most clients served at once; more get a "busy" error [default: 64]' -r
complete -c fxfer -n "__fish_fxfer_using_subcommand serve" -l grace-period -d 'Seconds that transfers in flight may take to finish after Ctrl-C or SIGTERM [default: 10]' -r
complete -c fxfer -n "__fish_fxfer_using_subcommand serve" -l max-connections-per-ip -d 'Most connections from one IP address at once [default: 16]' -r
complete -c fxfer -n "__fish_fxfer_using_subcommand serve" -l handshake-timeout -d 'Seconds a new connection has to complete the handshake [default: 10]' -r
complete -c fxfer -n "__fish_fxfer_using_subcommand serve" -l idle-timeout -d 'Seconds an idle connection is kept open [default: 300]' -r
complete -c fxfer -n "__fish_fxfer_using_subcommand serve" -l write-timeout -d 'Seconds a client may stop reading before it is dropped [default: 60]' -r
complete -c fxfer -n "__fish_fxfer_using_subcommand serve" -l token-file -d 'Require this shared token from clients (or set FXFER_TOKEN)' -r -F
complete -c fxfer -n "__fish_fxfer_using_subcommand serve" -l limit-rate -d 'Most bytes per second sent to each connection, e.g. 10M or 500K (K, M, G = 1024-based) [default: no limit]' -r
complete -c fxfer -n "__fish_fxfer_using_subcommand serve" -l config -d 'Config file (default: $FXFER_CONFIG, ./fxfer.toml, then $XDG_CONFIG_HOME/fxfer/config.toml)' -r -F
complete -c fxfer -n "__fish_fxfer_using_subcommand serve" -l hidden -d 'List and serve dot-files too'
complete -c fxfer -n "__fish_fxfer_using_subcommand serve" -l no-hidden -d 'Keep dot-files hidden (the default)'
complete -c fxfer -n "__fish_fxfer_using_subcommand serve" -s q -l quiet -d 'Print only errors'
complete -c fxfer -n "__fish_fxfer_using_subcommand serve" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug)'
complete -c fxfer -n "__fish_fxfer_using_subcommand serve" -s h -l help -d 'Print help'
complete -c fxfer -n "__fish_fxfer_using_subcommand ls" -l ip -d 'Server address or host name [default: 127.0.0.1]' -r
complete -c fxfer -n "__fish_fxfer_using_subcommand ls" -l port -d 'Server port [default: 9000]' -r
complete -c fxfer -n "__fish_fxfer_using_subcommand ls" -l token-file -d 'File holding the server\'s shared token (or set FXFER_TOKEN)' -r -F
complete -c fxfer -n "__fish_fxfer_using_subcommand ls" -l config -d 'Config file (default: $FXFER_CONFIG, ./fxfer.toml, then $XDG_CONFIG_HOME/fxfer/config.toml)' -r -F
complete -c fxfer -n "__fish_fxfer_using_subcommand ls" -s R -l recursive -d 'List subfolders too'
complete -c fxfer -n "__fish_fxfer_using_subcommand ls" -l json -d 'Print one JSON array (exact sizes, Unix times) and nothing else'
complete -c fxfer -n "__fish_fxfer_using_subcommand ls" -s q -l quiet -d 'Print only errors'
complete -c fxfer -n "__fish_fxfer_using_subcommand ls" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug)'
complete -c fxfer -n "__fish_fxfer_using_subcommand ls" -s h -l help -d 'Print help'
complete -c fxfer -n "__fish_fxfer_using_subcommand get" -l files-from -d 'Read more names from FILE, one per line (\'-\' for standard input); blank lines and lines starting with \'#\' are skipped' -r -F
complete -c fxfer -n "__fish_fxfer_using_subcommand get" -l ip -d 'Server address or host name [default: 127.0.0.1]' -r
complete -c fxfer -n "__fish_fxfer_using_subcommand get" -l port -d 'Server port [default: 9000]' -r
complete -c fxfer -n "__fish_fxfer_using_subcommand get" -l token-file -d 'File holding the server\'s shared token (or set FXFER_TOKEN)' -r -F
complete -c fxfer -n "__fish_fxfer_using_subcommand get" -l dir -d 'Download folder, created when missing [default: ./downloads]' -r -F
complete -c fxfer -n "__fish_fxfer_using_subcommand get" -s j -l jobs -d 'Most downloads at once with --parallel [default: 8]' -r
complete -c fxfer -n "__fish_fxfer_using_subcommand get" -l retries -d 'Retries after a transient failure (connection refused, reset or timed out), resuming from the partial data [default: 3]' -r
complete -c fxfer -n "__fish_fxfer_using_subcommand get" -l timeout -d 'Seconds without progress before a connection counts as dead [default: 30]' -r
complete -c fxfer -n "__fish_fxfer_using_subcommand get" -l limit-rate -d 'Most bytes per second for the whole download, all connections together, e.g. 10M or 500K (K, M, G = 1024-based) [default: no limit]' -r
complete -c fxfer -n "__fish_fxfer_using_subcommand get" -s o -l output -d 'Save the one file named as PATH; \'-\' writes its bytes to stdout (checked as they go: a bad digest means a non-zero exit after the bytes went out)' -r -F
complete -c fxfer -n "__fish_fxfer_using_subcommand get" -l config -d 'Config file (default: $FXFER_CONFIG, ./fxfer.toml, then $XDG_CONFIG_HOME/fxfer/config.toml)' -r -F
complete -c fxfer -n "__fish_fxfer_using_subcommand get" -l parallel -d 'One connection per file, several at once'
complete -c fxfer -n "__fish_fxfer_using_subcommand get" -l no-parallel -d 'One connection for all files, requests pipelined (the default)'
complete -c fxfer -n "__fish_fxfer_using_subcommand get" -s r -l recursive -d 'Download folders too, recreating their structure'
complete -c fxfer -n "__fish_fxfer_using_subcommand get" -l json -d 'Print one JSON report (per file: name, status, error, bytes, seconds, path, digest, retries; plus totals) and nothing else on stdout'
complete -c fxfer -n "__fish_fxfer_using_subcommand get" -l no-resume -d 'Start over instead of resuming partial downloads'
complete -c fxfer -n "__fish_fxfer_using_subcommand get" -s n -l no-clobber -d 'Keep existing local files; report them as skipped'
complete -c fxfer -n "__fish_fxfer_using_subcommand get" -l no-fsync -d 'Skip flushing files to disk before renaming them: faster, but a crash right after may lose recent downloads'
complete -c fxfer -n "__fish_fxfer_using_subcommand get" -l fsync -d 'Flush every file to disk before renaming it into place (the default)'
complete -c fxfer -n "__fish_fxfer_using_subcommand get" -l stdout -d 'Write the one file named to stdout (the same as -o -)'
complete -c fxfer -n "__fish_fxfer_using_subcommand get" -s q -l quiet -d 'Print only errors'
complete -c fxfer -n "__fish_fxfer_using_subcommand get" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug)'
complete -c fxfer -n "__fish_fxfer_using_subcommand get" -s h -l help -d 'Print help'
complete -c fxfer -n "__fish_fxfer_using_subcommand shell" -l ip -d 'Server address or host name [default: 127.0.0.1]' -r
complete -c fxfer -n "__fish_fxfer_using_subcommand shell" -l port -d 'Server port [default: 9000]' -r
complete -c fxfer -n "__fish_fxfer_using_subcommand shell" -l token-file -d 'File holding the server\'s shared token (or set FXFER_TOKEN)' -r -F
complete -c fxfer -n "__fish_fxfer_using_subcommand shell" -l dir -d 'Download folder, created on first download [default: ./downloads]' -r -F
complete -c fxfer -n "__fish_fxfer_using_subcommand shell" -l config -d 'Config file (default: $FXFER_CONFIG, ./fxfer.toml, then $XDG_CONFIG_HOME/fxfer/config.toml)' -r -F
complete -c fxfer -n "__fish_fxfer_using_subcommand shell" -s q -l quiet -d 'Print only errors'
complete -c fxfer -n "__fish_fxfer_using_subcommand shell" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug)'
complete -c fxfer -n "__fish_fxfer_using_subcommand shell" -s h -l help -d 'Print help'
complete -c fxfer -n "__fish_fxfer_using_subcommand completions" -l config -d 'Config file (default: $FXFER_CONFIG, ./fxfer.toml, then $XDG_CONFIG_HOME/fxfer/config.toml)' -r -F
complete -c fxfer -n "__fish_fxfer_using_subcommand completions" -s q -l quiet -d 'Print only errors'
complete -c fxfer -n "__fish_fxfer_using_subcommand completions" -s v -l verbose -d 'More log output on stderr (-v info, -vv debug)'
complete -c fxfer -n "__fish_fxfer_using_subcommand completions" -s h -l help -d 'Print help'
complete -c fxfer -n "__fish_fxfer_using_subcommand help; and not __fish_seen_subcommand_from serve ls get shell completions help" -f -a "serve" -d 'Host a folder for fxfer clients'
complete -c fxfer -n "__fish_fxfer_using_subcommand help; and not __fish_seen_subcommand_from serve ls get shell completions help" -f -a "ls" -d 'List the files a server hosts'
complete -c fxfer -n "__fish_fxfer_using_subcommand help; and not __fish_seen_subcommand_from serve ls get shell completions help" -f -a "get" -d 'Download files from a server'
complete -c fxfer -n "__fish_fxfer_using_subcommand help; and not __fish_seen_subcommand_from serve ls get shell completions help" -f -a "shell" -d 'Interactive session: browse, pick and download files'
complete -c fxfer -n "__fish_fxfer_using_subcommand help; and not __fish_seen_subcommand_from serve ls get shell completions help" -f -a "completions" -d 'Print a shell completion script'
complete -c fxfer -n "__fish_fxfer_using_subcommand help; and not __fish_seen_subcommand_from serve ls get shell completions help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
