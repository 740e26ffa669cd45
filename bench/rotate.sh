#!/usr/bin/env bash
# Times several download commands in rotation, so that each sees the same
# history of the file system. On ext4 without a journal, creating a file
# scans past every free inode deleted in the last minute or so (five more
# while its inode-table block is dirty), so a run's time depends on how many
# files the runs before it deleted; hyperfine, which runs all of one command
# before the next, charges that to whichever command comes later.
#
#   bench/rotate.sh ROUNDS OUT NAME=COMMAND ...
#
# Each round runs every command once, each after `rm -rf OUT && mkdir -p OUT
# && sync` and inside OUT; round r starts with command r (mod count), so no
# command always follows the same one. EXPECT=N checks that each run left N
# files. Prints each command's median and its runs, in seconds (to the millisecond).
set -u
(($# >= 3)) || { sed -n '2,14p' "$0"; exit 2; }
ROUNDS=$1 OUT=$2
shift 2
names=() cmds=() times=()
for a in "$@"; do names+=("${a%%=*}") cmds+=("${a#*=}") times+=(""); done
n=${#cmds[@]}
for ((r = 0; r < ROUNDS; r++)); do
  for ((i = 0; i < n; i++)); do
    k=$(((i + r) % n))
    rm -rf "$OUT" && mkdir -p "$OUT" && sync
    s=$(date +%s%N)
    (cd "$OUT" && eval "${cmds[$k]}") >/dev/null 2>&1 || echo "failed: ${names[$k]}" >&2
    e=$(date +%s%N)
    got=$(find "$OUT" -type f | wc -l)
    [[ -z ${EXPECT:-} || $got == "$EXPECT" ]] || echo "wrong count ($got files): ${names[$k]}" >&2
    times[$k]+="$(((e - s) / 1000000)) "
  done
done
for ((i = 0; i < n; i++)); do
  printf '%s\n' ${times[$i]} | sort -n | awk -v name="${names[$i]}" -v runs="${times[$i]}" '
    { t[NR] = $1 / 1000 }
    END {
      m = (NR % 2) ? t[(NR + 1) / 2] : (t[NR / 2] + t[NR / 2 + 1]) / 2
      gsub(/ $/, "", runs); n = split(runs, r, " "); s = ""
      for (j = 1; j <= n; j++) s = s sprintf("%.3f ", r[j] / 1000)
      printf "%-26s median %.3f  runs %s\n", name, m, s
    }'
done
