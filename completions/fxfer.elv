
set edit:completion:arg-completer[fxfer] = { |@words|
    var index = (count $words)
    set index = (- $index 1)

    put (env _CLAP_IFS="\n" _CLAP_COMPLETE_INDEX=(to-string $index) FXFER_COMPLETE="elvish" fxfer -- $@words) | to-lines
}

