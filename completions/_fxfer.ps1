
using namespace System.Management.Automation
using namespace System.Management.Automation.Language

Register-ArgumentCompleter -Native -CommandName 'fxfer' -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)

    $commandElements = $commandAst.CommandElements
    $command = @(
        'fxfer'
        for ($i = 1; $i -lt $commandElements.Count; $i++) {
            $element = $commandElements[$i]
            if ($element -isnot [StringConstantExpressionAst] -or
                $element.StringConstantType -ne [StringConstantType]::BareWord -or
                $element.Value.StartsWith('-') -or
                $element.Value -eq $wordToComplete) {
                break
        }
        $element.Value
    }) -join ';'

    $completions = @(switch ($command) {
        'fxfer' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (default: $FXFER_CONFIG, ./fxfer.toml, then $XDG_CONFIG_HOME/fxfer/config.toml)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output on stderr (-v info, -vv debug)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output on stderr (-v info, -vv debug)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('serve', 'serve', [CompletionResultType]::ParameterValue, 'Host a folder for fxfer clients')
            [CompletionResult]::new('ls', 'ls', [CompletionResultType]::ParameterValue, 'List the files a server hosts')
            [CompletionResult]::new('get', 'get', [CompletionResultType]::ParameterValue, 'Download files from a server')
            [CompletionResult]::new('shell', 'shell', [CompletionResultType]::ParameterValue, 'Interactive session: browse, pick and download files')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'fxfer;serve' {
            [CompletionResult]::new('--ip', '--ip', [CompletionResultType]::ParameterName, 'Address to listen on; 0.0.0.0 shares on every network [default: 127.0.0.1]')
            [CompletionResult]::new('--port', '--port', [CompletionResultType]::ParameterName, 'Port to listen on; 0 picks a free one [default: 9000]')
            [CompletionResult]::new('--dir', '--dir', [CompletionResultType]::ParameterName, 'Folder to host [default: ./host_dir]')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Log file, appended to; - for none (the whole log goes to stderr) [default: fxfer-server.log]')
            [CompletionResult]::new('--max-connections', '--max-connections', [CompletionResultType]::ParameterName, 'Most clients served at once; more get a "busy" error [default: 64]')
            [CompletionResult]::new('--grace-period', '--grace-period', [CompletionResultType]::ParameterName, 'Seconds that transfers in flight may take to finish after Ctrl-C or SIGTERM [default: 10]')
            [CompletionResult]::new('--max-connections-per-ip', '--max-connections-per-ip', [CompletionResultType]::ParameterName, 'Most connections from one IP address at once [default: 16]')
            [CompletionResult]::new('--handshake-timeout', '--handshake-timeout', [CompletionResultType]::ParameterName, 'Seconds a new connection has to complete the handshake [default: 10]')
            [CompletionResult]::new('--idle-timeout', '--idle-timeout', [CompletionResultType]::ParameterName, 'Seconds an idle connection is kept open [default: 300]')
            [CompletionResult]::new('--write-timeout', '--write-timeout', [CompletionResultType]::ParameterName, 'Seconds a client may stop reading before it is dropped [default: 60]')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'Require this shared token from clients (or set FXFER_TOKEN)')
            [CompletionResult]::new('--limit-rate', '--limit-rate', [CompletionResultType]::ParameterName, 'Most bytes per second sent to each connection, e.g. 10M or 500K (K, M, G = 1024-based) [default: no limit]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (default: $FXFER_CONFIG, ./fxfer.toml, then $XDG_CONFIG_HOME/fxfer/config.toml)')
            [CompletionResult]::new('--hidden', '--hidden', [CompletionResultType]::ParameterName, 'List and serve dot-files too')
            [CompletionResult]::new('--no-hidden', '--no-hidden', [CompletionResultType]::ParameterName, 'Keep dot-files hidden (the default)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output on stderr (-v info, -vv debug)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output on stderr (-v info, -vv debug)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'fxfer;ls' {
            [CompletionResult]::new('--ip', '--ip', [CompletionResultType]::ParameterName, 'Server address or host name [default: 127.0.0.1]')
            [CompletionResult]::new('--port', '--port', [CompletionResultType]::ParameterName, 'Server port [default: 9000]')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'File holding the server''s shared token (or set FXFER_TOKEN)')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (default: $FXFER_CONFIG, ./fxfer.toml, then $XDG_CONFIG_HOME/fxfer/config.toml)')
            [CompletionResult]::new('-R', '-R ', [CompletionResultType]::ParameterName, 'List subfolders too')
            [CompletionResult]::new('--recursive', '--recursive', [CompletionResultType]::ParameterName, 'List subfolders too')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON array (exact sizes, Unix times) and nothing else')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output on stderr (-v info, -vv debug)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output on stderr (-v info, -vv debug)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'fxfer;get' {
            [CompletionResult]::new('--files-from', '--files-from', [CompletionResultType]::ParameterName, 'Read more names from FILE, one per line (''-'' for standard input); blank lines and lines starting with ''#'' are skipped')
            [CompletionResult]::new('--ip', '--ip', [CompletionResultType]::ParameterName, 'Server address or host name [default: 127.0.0.1]')
            [CompletionResult]::new('--port', '--port', [CompletionResultType]::ParameterName, 'Server port [default: 9000]')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'File holding the server''s shared token (or set FXFER_TOKEN)')
            [CompletionResult]::new('--dir', '--dir', [CompletionResultType]::ParameterName, 'Download folder, created when missing [default: ./downloads]')
            [CompletionResult]::new('-j', '-j', [CompletionResultType]::ParameterName, 'Most downloads at once with --parallel [default: 8]')
            [CompletionResult]::new('--jobs', '--jobs', [CompletionResultType]::ParameterName, 'Most downloads at once with --parallel [default: 8]')
            [CompletionResult]::new('--retries', '--retries', [CompletionResultType]::ParameterName, 'Retries after a transient failure (connection refused, reset or timed out), resuming from the partial data [default: 3]')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Seconds without progress before a connection counts as dead [default: 30]')
            [CompletionResult]::new('--limit-rate', '--limit-rate', [CompletionResultType]::ParameterName, 'Most bytes per second for the whole download, all connections together, e.g. 10M or 500K (K, M, G = 1024-based) [default: no limit]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Save the one file named as PATH; ''-'' writes its bytes to stdout (checked as they go: a bad digest means a non-zero exit after the bytes went out)')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Save the one file named as PATH; ''-'' writes its bytes to stdout (checked as they go: a bad digest means a non-zero exit after the bytes went out)')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (default: $FXFER_CONFIG, ./fxfer.toml, then $XDG_CONFIG_HOME/fxfer/config.toml)')
            [CompletionResult]::new('--parallel', '--parallel', [CompletionResultType]::ParameterName, 'One connection per file, several at once')
            [CompletionResult]::new('--no-parallel', '--no-parallel', [CompletionResultType]::ParameterName, 'One connection for all files, requests pipelined (the default)')
            [CompletionResult]::new('-r', '-r', [CompletionResultType]::ParameterName, 'Download folders too, recreating their structure')
            [CompletionResult]::new('--recursive', '--recursive', [CompletionResultType]::ParameterName, 'Download folders too, recreating their structure')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON report (per file: name, status, error, bytes, seconds, path, digest, retries; plus totals) and nothing else on stdout')
            [CompletionResult]::new('--no-resume', '--no-resume', [CompletionResultType]::ParameterName, 'Start over instead of resuming partial downloads')
            [CompletionResult]::new('-n', '-n', [CompletionResultType]::ParameterName, 'Keep existing local files; report them as skipped')
            [CompletionResult]::new('--no-clobber', '--no-clobber', [CompletionResultType]::ParameterName, 'Keep existing local files; report them as skipped')
            [CompletionResult]::new('--no-fsync', '--no-fsync', [CompletionResultType]::ParameterName, 'Skip flushing files to disk before renaming them: faster, but a crash right after may lose recent downloads')
            [CompletionResult]::new('--fsync', '--fsync', [CompletionResultType]::ParameterName, 'Flush every file to disk before renaming it into place (the default)')
            [CompletionResult]::new('--stdout', '--stdout', [CompletionResultType]::ParameterName, 'Write the one file named to stdout (the same as -o -)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output on stderr (-v info, -vv debug)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output on stderr (-v info, -vv debug)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'fxfer;shell' {
            [CompletionResult]::new('--ip', '--ip', [CompletionResultType]::ParameterName, 'Server address or host name [default: 127.0.0.1]')
            [CompletionResult]::new('--port', '--port', [CompletionResultType]::ParameterName, 'Server port [default: 9000]')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'File holding the server''s shared token (or set FXFER_TOKEN)')
            [CompletionResult]::new('--dir', '--dir', [CompletionResultType]::ParameterName, 'Download folder, created on first download [default: ./downloads]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (default: $FXFER_CONFIG, ./fxfer.toml, then $XDG_CONFIG_HOME/fxfer/config.toml)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output on stderr (-v info, -vv debug)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output on stderr (-v info, -vv debug)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'fxfer;completions' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (default: $FXFER_CONFIG, ./fxfer.toml, then $XDG_CONFIG_HOME/fxfer/config.toml)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output on stderr (-v info, -vv debug)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output on stderr (-v info, -vv debug)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'fxfer;help' {
            [CompletionResult]::new('serve', 'serve', [CompletionResultType]::ParameterValue, 'Host a folder for fxfer clients')
            [CompletionResult]::new('ls', 'ls', [CompletionResultType]::ParameterValue, 'List the files a server hosts')
            [CompletionResult]::new('get', 'get', [CompletionResultType]::ParameterValue, 'Download files from a server')
            [CompletionResult]::new('shell', 'shell', [CompletionResultType]::ParameterValue, 'Interactive session: browse, pick and download files')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'fxfer;help;serve' {
            break
        }
        'fxfer;help;ls' {
            break
        }
        'fxfer;help;get' {
            break
        }
        'fxfer;help;shell' {
            break
        }
        'fxfer;help;completions' {
            break
        }
        'fxfer;help;help' {
            break
        }
    })

    $completions.Where{ $_.CompletionText -like "$wordToComplete*" } |
        Sort-Object -Property ListItemText
}
