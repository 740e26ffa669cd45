complete --keep-order --exclusive --command fxfer --arguments "(FXFER_COMPLETE=fish fxfer -- (commandline --current-process --tokenize --cut-at-cursor) (commandline --current-token))"
