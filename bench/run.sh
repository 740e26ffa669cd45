#!/usr/bin/env bash
# bench/run.sh - loopback benchmark of fxfer against raw TCP and common tools.
#
#   bench/run.sh [--quick] [--keep] [--rerun] [--net-only] [--tls]
#
#   --quick     small data (128 MiB; 200 x 8 KiB; 8 x 16 MiB) for a smoke run
#   --keep      keep the scratch folder (server logs, hyperfine JSON)
#   --rerun     only the re-run scenario R, not W1-W4 or N1-N3
#   --net-only  only the round-trip and rate-cap scenarios (N1-N3)
#   --tls       W1-W4 and what TLS costs (CPU per GiB, round trips), not R or N,
#               and of the unencrypted peers only fxfer --plaintext and the
#               baselines (raw TCP, local cp)
#
# Environment: DATA_DIR (default bench/.data) caches the generated data;
# RUNS (default 5) timed runs per cell, after one warm-up run; OUT_DIR puts
# the downloads on another file system (say a tmpfs, to take the disk and
# the file system's file creation out of the numbers); WORKLOADS (default
# "W1 W2 W3 W4") picks workloads, and COSTS=0 leaves out the CPU-per-GiB
# and round-trip measurements, to split a long run into pieces.
#
# Workloads: W1 one 1 GiB file; W2 2,000 x 8 KiB fetched serially over one
# connection; W3 16 x 64 MiB, 8 at a time; W4 the W2 set, 8 at a time.
# R, the re-run: a tree of the W2 files plus 8 x 64 MiB is fetched once,
# then 20 small files and one large one change on the server, and the tree
# is fetched again: fxfer --update, --checksum and its default against the
# rsync daemon (rsync -a, and rsync -a --checksum), with a full fetch for
# scale and the bytes each re-run puts on the wire (bench/count_proxy.py).
# Network scenarios, through bench/delay_proxy.rs (a cargo example): N1 the
# first 200 files of the W2 set at 0 ms round trip, N2 the same at 20 ms
# (fxfer serial and --parallel -j 8, nginx + curl serial and
# --parallel-max 8, the rsync daemon), N3 one 256 MiB file through a cap of
# 200 Mbit/s per connection (fxfer serial vs --parallel -j 8).
# FXFER_BASE=path/to/an/older/fxfer adds its rows to W1, W3, N1 and N2, to
# compare two builds in one run.
# Systems: fxfer (defaults: TLS 1.3, BLAKE3 verification and fsync), fxfer
# --no-fsync, fxfer --plaintext (no TLS), and where installed: raw TCP with
# socat (the baseline), nginx + curl over HTTP and over HTTPS (TLS 1.3),
# rsync daemon, python3 -m http.server + curl, and through an OpenSSH server
# on 127.0.0.1 (a throwaway host and user key): scp (default cipher and
# aes128-gcm), sftp and rsync -e ssh. Missing tools are skipped.
# After the table: CPU seconds per GiB of W1 with and without TLS (client
# and server), and the round trips a small get costs through delay-proxy.
# A second baseline, "local cp", copies the same files without any network:
# the floor that creating and writing those files sets on this file system.
# Every server binds 127.0.0.1 and is killed by PID when the script exits.
set -uo pipefail

QUICK=0 KEEP=0 RERUN_ONLY=0 NET_ONLY=0 TLS_ONLY=0
while (($#)); do
  case $1 in
    --quick) QUICK=1 ;;
    --keep) KEEP=1 ;;
    --rerun) RERUN_ONLY=1 ;;
    --net-only) NET_ONLY=1 ;;
    --tls) TLS_ONLY=1 ;;
    -h | --help) sed -n '2,35p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done

# OUT_DIR is taken relative to where the script was started.
[[ -z ${OUT_DIR:-} || $OUT_DIR == /* ]] || OUT_DIR=$PWD/$OUT_DIR
cd "$(dirname "$0")/.." || exit 1
RUNS=${RUNS:-5} PAR=8
if ((QUICK)); then MODE=quick BIG_MIB=128 NSMALL=200 NMED=8 MED_MIB=16
else MODE=full BIG_MIB=1024 NSMALL=2000 NMED=16 MED_MIB=64; fi

note() { printf '%s\n' "$*" >&2; }
have() { command -v "$1" >/dev/null 2>&1; }
die() { note "run.sh: $*"; exit 1; }

for t in cargo openssl sha256sum; do have "$t" || die "$t is required"; done

note "building fxfer and the delay proxy (cargo build --release)"
cargo build --release --quiet --bin fxfer --example delay-proxy || die "cargo build failed"
TARGET=${CARGO_TARGET_DIR:-target}
[[ $TARGET == /* ]] || TARGET=$PWD/$TARGET
FXFER=$TARGET/release/fxfer
[[ -x $FXFER ]] || die "no binary at $FXFER"
PROXY=$TARGET/release/examples/delay-proxy
[[ -z ${FXFER_BASE:-} || -x ${FXFER_BASE:-} ]] || die "FXFER_BASE=$FXFER_BASE is not a program"

# ---- scratch space and servers ------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/fxfer-bench.XXXXXX") || die "mktemp failed"
# fxfer's identity and known servers live in the scratch folder, not in the
# user's data folder.
export XDG_DATA_HOME=$WORK/xdg
OUT_BASE=$WORK PIDS=()
cleanup() {
  local p i
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  # fxfer and nginx shut down gracefully; give them a moment before KILL.
  for ((i = 0; i < 50; i++)); do
    local up=0
    for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && up=1; done
    ((up)) || break
    sleep 0.1
  done
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  [[ $OUT_BASE == "$WORK" ]] || rm -rf "$OUT_BASE"
  if ((KEEP)); then note "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
if [[ -n ${OUT_DIR:-} ]]; then OUT_BASE=$(mktemp -d "$OUT_DIR/fxfer-bench-out.XXXXXX") || die "cannot use OUT_DIR=$OUT_DIR"; fi
OUT=$OUT_BASE/out LISTS=$WORK/lists RES=$WORK/results.tsv
mkdir -p "$OUT" "$LISTS" "$WORK/json" && : >"$RES"

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# Ports come from below the kernel's ephemeral range: there no client socket
# can hold them, and a connect retried before its listener is up cannot end
# up connected to itself (a TCP self-connect, which hangs the baseline).
EPHEMERAL_LOW=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
((EPHEMERAL_LOW > 21000)) || EPHEMERAL_LOW=32768
USED_PORTS=" "
free_port() { # free_port VAR: random probing, good enough on a quiet loopback (start_server catches a race)
  local _i _p # names the caller's VAR cannot shadow
  for ((_i = 0; _i < 200; _i++)); do
    _p=$((20000 + RANDOM % (EPHEMERAL_LOW - 20000)))
    [[ $USED_PORTS == *" $_p "* ]] || listening "$_p" && continue
    USED_PORTS+="$_p "
    printf -v "$1" %s "$_p"
    return 0
  done
  die "found no free port"
}
start_server() { # start_server NAME PORT CMD... : runs CMD in the background, waits for the port
  local name=$1 port=$2 i pid
  shift 2
  "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  pid=$!
  PIDS+=("$pid")
  for ((i = 0; i < 100; i++)); do
    listening "$port" && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  note "skipping $name: its server did not come up (see $WORK/$name.err)"
  return 1
}

# ---- data: generated once, reused while the spec matches -------------------
DATA_DIR=${DATA_DIR:-bench/.data}
DATA=$(mkdir -p "$DATA_DIR" && cd "$DATA_DIR" && pwd)/$MODE
# AES-CTR keystream: incompressible (no tool gets a free ride from compression)
# yet reproducible from the seed, and far faster than /dev/urandom.
keystream() { # keystream SEED BYTES
  head -c "$2" /dev/zero |
    openssl enc -aes-128-ctr -nosalt -K "$(printf '%032x' "$1")" -iv "$(printf '%032x' 0)"
}
SPEC="big=${BIG_MIB}MiB small=${NSMALL}x8KiB med=${NMED}x${MED_MIB}MiB"
if [[ $(cat "$DATA/.spec" 2>/dev/null) != "$SPEC" ]]; then
  note "generating data in $DATA ($SPEC)"
  rm -rf "$DATA" && mkdir -p "$DATA" || die "cannot create $DATA"
  keystream 1 $((BIG_MIB << 20)) >"$DATA/big.bin"
  keystream 2 $((NSMALL << 13)) | (cd "$DATA" && split -b 8K -d -a 4 --additional-suffix=.bin - s)
  keystream 3 $((NMED * MED_MIB << 20)) | (cd "$DATA" && split -b "${MED_MIB}M" -d -a 2 --additional-suffix=.bin - m)
  echo "$SPEC" >"$DATA/.spec"
fi
CAP_MIB=256
((QUICK)) && CAP_MIB=32
[[ $(stat -c %s "$DATA/cap.bin" 2>/dev/null) == $((CAP_MIB << 20)) ]] || keystream 4 $((CAP_MIB << 20)) >"$DATA/cap.bin"
[[ -e $DATA_DIR/.gitignore ]] || echo '*' >"$DATA_DIR/.gitignore" # a cache, never committed

# Per workload: the names, the expected checksums, bytes and file count; for the
# raw TCP baseline also the split into streams (round-robin over $PAR streams
# for the parallel workloads) and the checksum of each concatenated stream.
(cd "$DATA" && ls big.bin) >"$LISTS/W1"
(cd "$DATA" && ls s*.bin) >"$LISTS/W2"
(cd "$DATA" && ls m*.bin) >"$LISTS/W3"
cp "$LISTS/W2" "$LISTS/W4"
head -n 200 "$LISTS/W2" >"$LISTS/N1"
cp "$LISTS/N1" "$LISTS/N2"
echo cap.bin >"$LISTS/N3"
declare -A BYTES FILES
for W in N1 N2 N3; do
  (cd "$DATA" && xargs -a "$LISTS/$W" sha256sum) >"$LISTS/$W.sha"
  BYTES[$W]=$(cd "$DATA" && xargs -a "$LISTS/$W" stat -c %s | awk '{ s += $1 } END { print s }')
  FILES[$W]=$(wc -l <"$LISTS/$W")
done
for W in W1 W2 W3 W4; do
  (cd "$DATA" && xargs -a "$LISTS/$W" sha256sum) >"$LISTS/$W.sha"
  BYTES[$W]=$(cd "$DATA" && xargs -a "$LISTS/$W" stat -c %s | awk '{ s += $1 } END { print s }')
  FILES[$W]=$(wc -l <"$LISTS/$W")
  n=1; [[ $W == W3 || $W == W4 ]] && n=$PAR
  awk -v n="$n" -v p="$LISTS/$W.stream" '{ print > (p (NR - 1) % n) }' "$LISTS/$W"
  for s in "$LISTS/$W".stream?; do (cd "$DATA" && xargs -a "$s" cat) | sha256sum | cut -d' ' -f1 >"$s.sha"; done
done

# ---- measuring one cell ----------------------------------------------------------
# Deleting the previous run's output also drops its dirty pages, so no run
# pays for the write-back of the one before.
prepare() { rm -rf "$OUT" && mkdir -p "$OUT"; }
check_files() { # every file present with the right bytes, and nothing else (no leftovers)
  [[ $(find "$OUT" -type f | wc -l) -eq ${FILES[$1]} ]] &&
    (cd "$OUT" && sha256sum --quiet --strict -c "$LISTS/$1.sha" >/dev/null 2>&1)
}
check_streams() {
  local s
  for s in "$LISTS/$1".stream?; do
    [[ $(sha256sum <"$OUT/$(basename "$s")" 2>/dev/null | cut -d' ' -f1) == "$(<"$s.sha")" ]] || return 1
  done
}
median_of_runs() { # fallback without hyperfine: warm-up, then $RUNS timed runs; prints the median
  local i s e times=()
  for ((i = 0; i <= RUNS; i++)); do
    prepare
    s=$(date +%s%N)
    bash -c "$1" >>"$WORK/cells.log" 2>&1 || return 1
    e=$(date +%s%N)
    ((i)) && times+=($((e - s)))
  done
  printf '%s\n' "${times[@]}" | sort -n | awk '{ t[NR] = $1 } END { printf "%.6f\n", (NR % 2 ? t[(NR + 1) / 2] : (t[NR / 2] + t[NR / 2 + 1]) / 2) / 1e9 }'
}
cell() { # cell W SYSTEM files|streams COMMAND
  local W=$1 sys=$2 kind=$3 cmd=$4 med json
  note ">> $W $sys"
  if have hyperfine; then
    json=$WORK/json/$W-${sys//[^A-Za-z0-9]/_}.json
    if hyperfine --shell=bash --style basic --warmup 1 --runs "$RUNS" --prepare "rm -rf '$OUT' && mkdir -p '$OUT'" \
      --export-json "$json" "$cmd" >>"$WORK/cells.log" 2>&1; then
      med=$(grep -o '"median": *[0-9.eE+-]*' "$json" | head -n1 | sed 's/.*: *//')
    fi
  else
    med=$(median_of_runs "$cmd")
  fi
  if [[ -z ${med:-} ]]; then
    printf '%s\t%s\t-\tfailed\n' "$W" "$sys" >>"$RES"
  elif "check_$kind" "$W"; then
    printf '%s\t%s\t%s\tok\n' "$W" "$sys" "$med" >>"$RES"
  else
    printf '%s\t%s\t%s\tWRONG BYTES\n' "$W" "$sys" "$med" >>"$RES"
  fi
}
serial() { [[ $1 == W1 || $1 == W2 ]]; }

# ---- servers (all started up front, idle while other systems run) ------------
FX_PORT="" FXP_PORT="" NGX_PORT="" NGXS_PORT="" PY_PORT="" RSYNC_PORT="" SSH_PORT="" RAW_PORTS=()
SKIPPED=()

# An empty config file keeps a user's fxfer.toml or $FXFER_CONFIG out of the numbers.
: >"$WORK/empty.toml"
start_fxfer() { # start_fxfer NAME VAR [ARGS...]: an fxfer server; its port into VAR, its PID into NAME_PID
  local name=$1 var=$2 i port=""
  shift 2
  "$FXFER" serve --config "$WORK/empty.toml" -q --ip 127.0.0.1 --port 0 --dir "$DATA" \
    --log-file "$WORK/$name-server.log" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  PIDS+=($!)
  printf -v "${name}_PID" %s "$!"
  for ((i = 0; i < 100; i++)); do
    port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$WORK/$name.out")
    [[ -n $port ]] && break
    sleep 0.1
  done
  [[ -n $port ]] || die "fxfer serve did not start: $(cat "$WORK/$name.err")"
  printf -v "$var" %s "$port"
}
start_fxfer fxfer FX_PORT
start_fxfer fxferplain FXP_PORT --plaintext

if have socat; then
  for ((k = 0; k < PAR; k++)); do free_port p && RAW_PORTS+=("$p"); done
else SKIPPED+=("raw TCP (socat not installed)"); fi

if have nginx && have curl; then
  free_port NGX_PORT
  free_port NGXS_PORT
  mkdir -p "$WORK/nginx"
  # A throwaway ECDSA P-256 certificate, like fxfer's own.
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=127.0.0.1 \
    -keyout "$WORK/nginx/key.pem" -out "$WORK/nginx/cert.pem" >/dev/null 2>&1 || die "openssl req failed"
  # As root the workers would drop to "nobody", which may not read the data.
  ((EUID == 0)) && ngx_user="user $(id -un) $(id -gn);" || ngx_user=""
  cat >"$WORK/nginx/nginx.conf" <<EOF
$ngx_user
worker_processes auto;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on; tcp_nopush on;
  keepalive_requests 100000;
  default_type application/octet-stream;
  client_body_temp_path $WORK/nginx/tmp-body; proxy_temp_path $WORK/nginx/tmp-proxy;
  fastcgi_temp_path $WORK/nginx/tmp-fcgi; uwsgi_temp_path $WORK/nginx/tmp-uwsgi; scgi_temp_path $WORK/nginx/tmp-scgi;
  server { listen 127.0.0.1:$NGX_PORT; root $DATA; }
  server {
    listen 127.0.0.1:$NGXS_PORT ssl;
    ssl_protocols TLSv1.3;
    ssl_certificate $WORK/nginx/cert.pem; ssl_certificate_key $WORK/nginx/key.pem;
    root $DATA;
  }
}
EOF
  start_server nginx "$NGX_PORT" nginx -p "$WORK/nginx" -e "$WORK/nginx/error.log" \
    -c "$WORK/nginx/nginx.conf" -g 'daemon off;' || NGX_PORT=""
else SKIPPED+=("nginx + curl (nginx or curl not installed)"); fi

if have python3 && have curl; then
  free_port PY_PORT
  start_server pyhttp "$PY_PORT" python3 -m http.server "$PY_PORT" --bind 127.0.0.1 --directory "$DATA" || PY_PORT=""
else SKIPPED+=("python3 http.server + curl (python3 or curl not installed)"); fi

if have rsync; then
  free_port RSYNC_PORT
  cat >"$WORK/rsyncd.conf" <<EOF
use chroot = no
pid file = $WORK/rsyncd.pid
log file = $WORK/rsyncd.log
[data]
  path = $DATA
  read only = yes
  uid = $(id -un)
  gid = $(id -gn)
EOF
  start_server rsyncd "$RSYNC_PORT" rsync --daemon --no-detach --config="$WORK/rsyncd.conf" \
    --address=127.0.0.1 --port="$RSYNC_PORT" || RSYNC_PORT=""
else SKIPPED+=("rsync daemon (rsync not installed)"); fi

# OpenSSH on 127.0.0.1 with a throwaway host key and a throwaway user key
# (scp, sftp and rsync -e ssh log in with it).
SSH_USER=$(id -un)
if have sshd || [[ -x /usr/sbin/sshd ]]; then
  SSHD=$(command -v sshd || echo /usr/sbin/sshd)
  free_port SSH_PORT
  mkdir -p "$WORK/ssh" && chmod 700 "$WORK/ssh"
  ssh-keygen -q -t ed25519 -N '' -f "$WORK/ssh/host_key" && ssh-keygen -q -t ed25519 -N '' -f "$WORK/ssh/id"
  cp "$WORK/ssh/id.pub" "$WORK/ssh/authorized_keys"
  cat >"$WORK/ssh/sshd_config" <<EOF
ListenAddress 127.0.0.1
Port $SSH_PORT
HostKey $WORK/ssh/host_key
AuthorizedKeysFile $WORK/ssh/authorized_keys
PidFile $WORK/ssh/sshd.pid
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
Subsystem sftp internal-sftp
EOF
  ((EUID == 0)) && mkdir -p /run/sshd
  start_server sshd "$SSH_PORT" "$SSHD" -D -e -f "$WORK/ssh/sshd_config" || SSH_PORT=""
  SSH_OPTS="-F /dev/null -i $WORK/ssh/id -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
  SSH_AT=$SSH_USER@127.0.0.1
  if [[ -n $SSH_PORT ]] && ! ssh $SSH_OPTS -p "$SSH_PORT" "$SSH_AT" true 2>"$WORK/ssh/login.err"; then
    SKIPPED+=("scp, sftp, rsync -e ssh (cannot log in: $(head -c 200 "$WORK/ssh/login.err"))"); SSH_PORT=""
  fi
  # fetch.sh TOOL LIST [ARGS...]: the files of LIST with scp (one command,
  # one remote argument per file), sftp (a batch of gets) or rsync -e ssh.
  cat >"$WORK/ssh/fetch.sh" <<EOF
#!/usr/bin/env bash
tool=\$1 list=\$2; shift 2
case \$tool in
  scp) mapfile -t names <"\$list"; exec scp -q $SSH_OPTS -P $SSH_PORT "\$@" "\${names[@]/#/$SSH_AT:$DATA/}" "$OUT/" ;;
  sftp) exec sftp -q $SSH_OPTS -P $SSH_PORT -b "\$list.sftp" $SSH_AT >/dev/null ;;
  rsync) exec rsync -a --whole-file -e "ssh $SSH_OPTS -p $SSH_PORT" --files-from="\$list" "$SSH_AT:$DATA/" "$OUT/" ;;
esac
EOF
  # sftp batch files: one get per file, per stream list for the parallel runs.
  for W in W2 W4; do
    for s in "$LISTS/$W" "$LISTS/$W".stream?; do awk -v d="$DATA/" -v o="$OUT/" '{ printf "get %s%s %s%s\n", d, $0, o, $0 }' "$s" >"$s.sftp"; done
  done
else SKIPPED+=("scp, sftp, rsync -e ssh (OpenSSH server not installed)"); fi

# The baseline: socat pushes the concatenated bytes of each stream list into
# its own socket, all streams at once; no framing, no files on the sender side
# but the source, one file per stream on the receiver side.
cat >"$WORK/raw.sh" <<EOF
#!/usr/bin/env bash
ports=(${RAW_PORTS[*]}) k=0
for s in "$LISTS/\$1".stream?; do
  out="$OUT/\$(basename "\$s")"
  timeout 120 socat -u -b 1048576 TCP-LISTEN:\${ports[k]},bind=127.0.0.1,reuseaddr CREATE:"\$out" &
  dst=TCP:127.0.0.1:\${ports[k]},retry=1000,interval=0.005
  if [[ \$(wc -l <"\$s") -eq 1 ]]; then # one file: socat reads it directly, no pipe
    timeout 120 socat -u -b 1048576 OPEN:"$DATA/\$(<"\$s")",rdonly "\$dst" &
  else
    (cd "$DATA" && xargs -a "\$s" cat) | timeout 120 socat -u -b 1048576 STDIN "\$dst" &
  fi
  k=\$((k + 1))
done
wait
EOF

# curl -K files: one url/output pair per file.
curl_cfg() { # curl_cfg PORT W [SCHEME]
  awk -v b="${3:-http}://127.0.0.1:$1/" -v o="$OUT/" '{ printf "url = \"%s%s\"\noutput = \"%s%s\"\n", b, $0, o, $0 }' "$LISTS/$2" >"$LISTS/$2.curl$1"
}

# ---- the cells, workload by workload so each workload's rows are measured close together
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
WORKLOADS=${WORKLOADS-W1 W2 W3 W4} COSTS=${COSTS:-1}
((RERUN_ONLY || NET_ONLY)) && WORKLOADS="" COSTS=0
for W in $WORKLOADS; do
  if serial $W; then mode=""; else mode="--parallel -j $PAR"; fi
  if ((${#RAW_PORTS[@]})); then
    serial $W && label="raw TCP (socat, 1 stream)" || label="raw TCP (socat, $PAR streams)"
    cell $W "$label" streams "bash '$WORK/raw.sh' $W"
  fi
  if serial $W; then
    cell $W "local cp (no network)" files "cd '$DATA' && xargs -a '$LISTS/$W' cp --reflink=never -t '$OUT'"
  else
    cell $W "local cp (no network, $PAR at a time)" files \
      "cd '$DATA' && xargs -a '$LISTS/$W' -P $PAR -n $(((FILES[$W] + PAR - 1) / PAR)) cp --reflink=never -t '$OUT'"
  fi
  get="'$FXFER' get --config '$WORK/empty.toml' -q --port $FX_PORT --dir '$OUT' $mode \$(<'$LISTS/$W')"
  cell $W "fxfer${mode:+ $mode}" files "$get"
  ((TLS_ONLY)) || cell $W "fxfer${mode:+ $mode} --no-fsync" files "$get --no-fsync"
  getp="'$FXFER' get --config '$WORK/empty.toml' -q --plaintext --port $FXP_PORT --dir '$OUT' $mode \$(<'$LISTS/$W')"
  cell $W "fxfer${mode:+ $mode} --plaintext" files "$getp"
  if [[ -n ${FXFER_BASE:-} && ($W == W1 || $W == W3) ]]; then
    cell $W "fxfer (base build)${mode:+ $mode}" files "'$FXFER_BASE' get --config '$WORK/empty.toml' -q --port $FX_PORT --dir '$OUT' $mode \$(<'$LISTS/$W')"
  fi
  if serial $W; then curl_par=""; else curl_par="--parallel --parallel-max $PAR"; fi
  if [[ -n $NGX_PORT ]]; then
    curl_cfg "$NGX_PORT" $W
    ((TLS_ONLY)) || cell $W "nginx + curl${curl_par:+ $curl_par}" files "curl -sS --fail $curl_par -K '$LISTS/$W.curl$NGX_PORT'"
    curl_cfg "$NGXS_PORT" $W https
    cell $W "nginx HTTPS (TLS 1.3) + curl${curl_par:+ $curl_par}" files \
      "curl -sS --fail --tlsv1.3 --cacert '$WORK/nginx/cert.pem' $curl_par -K '$LISTS/$W.curl$NGXS_PORT'"
  fi
  if [[ -n $SSH_PORT ]]; then
    ssh_list="bash '$WORK/ssh/fetch.sh'"
    # scp opens an SSH connection per remote file named (2,000 for W2, at
    # about 0.3 s each), so the small-file workloads leave it to sftp.
    if serial $W; then
      [[ $W == W1 ]] && cell $W "scp (default cipher)" files "$ssh_list scp '$LISTS/$W'"
      [[ $W == W1 ]] && cell $W "scp -c aes128-gcm" files "$ssh_list scp '$LISTS/$W' -c aes128-gcm@openssh.com"
      [[ $W == W2 ]] && cell $W "sftp" files "$ssh_list sftp '$LISTS/$W'"
      cell $W "rsync -e ssh" files "$ssh_list rsync '$LISTS/$W'"
    else
      each="printf '%s\n' '$LISTS/$W'.stream? | xargs -P $PAR -I{}"
      [[ $W == W3 ]] && cell $W "scp (default cipher, xargs -P $PAR)" files "$each $ssh_list scp {}"
      [[ $W == W4 ]] && cell $W "sftp (xargs -P $PAR)" files "$each $ssh_list sftp {}"
      cell $W "rsync -e ssh (xargs -P $PAR)" files "$each $ssh_list rsync {}"
    fi
  fi
  if [[ -n $RSYNC_PORT ]] && ((!TLS_ONLY)); then
    src="rsync://127.0.0.1:$RSYNC_PORT/data/"
    if serial $W; then
      cell $W "rsync daemon" files "rsync -a --whole-file --files-from='$LISTS/$W' $src '$OUT/'"
    else # one rsync per stream list, so each process gets a share of the files
      cell $W "rsync daemon (xargs -P $PAR)" files \
        "printf '%s\n' '$LISTS/$W'.stream? | xargs -P $PAR -I{} rsync -a --whole-file --files-from={} $src '$OUT/'"
    fi
  fi
  if [[ -n $PY_PORT ]] && ((!TLS_ONLY)); then
    curl_cfg "$PY_PORT" $W
    cell $W "python http.server + curl${curl_par:+ $curl_par}" files "curl -sS --fail $curl_par -K '$LISTS/$W.curl$PY_PORT'"
  fi
done

# ---- R: the re-run ------------------------------------------------------------------
# The server's tree: the W2 files under small/ and 8 of the W3 files under
# large/, with fixed times. Fetched once by each system (BASE_*); then 20
# small files and one large file get new contents (and times). Each timed
# re-run starts from a copy of that system's first fetch, flushed to disk
# first so no run pays for the copy's write-back.
R_RES=$WORK/rerun.tsv R_WIRE=$WORK/rerun-wire.tsv
: >"$R_RES" && : >"$R_WIRE"
SYNC=$WORK/sync
rcell() { # rcell NAME BASE CMD: BASE "" = start from an empty folder
  local name=$1 base=$2 cmd=$3 json med prep
  note ">> R $name"
  json=$WORK/json/R-${name//[^A-Za-z0-9]/_}.json
  if [[ -z $base ]]; then prep="rm -rf '$OUT' && mkdir -p '$OUT' && sync"
  else prep="rm -rf '$OUT' && cp -a '$base' '$OUT' && sync"; fi
  med=""
  if hyperfine --shell=bash --style basic --warmup 1 --runs "$RUNS" --prepare "$prep" \
    --export-json "$json" "$cmd" >>"$WORK/cells.log" 2>&1; then
    med=$(grep -o '"median": *[0-9.eE+-]*' "$json" | head -n1 | sed 's/.*: *//')
  fi
  if [[ -z $med ]]; then printf '%s\t-\tfailed\n' "$name" >>"$R_RES"
  elif (cd "$OUT" && sha256sum --quiet --strict -c "$SYNC/src.sha" >/dev/null 2>&1) &&
    [[ $(find "$OUT" -type f | wc -l) -eq $(wc -l <"$SYNC/src.sha") ]]; then
    printf '%s\t%s\tok\n' "$name" "$med" >>"$R_RES"
  else printf '%s\t%s\tWRONG BYTES\n' "$name" "$med" >>"$R_RES"; fi
}
wire() { # wire NAME BASE CMD TO-PORT: bytes both ways through the counting proxy (CMD's @PORT@), one run
  local name=$1 base=$2 cmd=$3 to=$4 log port="" i pid
  log=$WORK/wire-${name//[^A-Za-z0-9]/_}.log
  : >"$log"
  python3 bench/count_proxy.py --to "127.0.0.1:$to" --log "$log" >"$log.out" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  for ((i = 0; i < 100; i++)); do
    port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$log.out")
    [[ -n $port ]] && break
    sleep 0.1
  done
  [[ -n $port ]] || { note "count_proxy.py did not start"; return 1; }
  rm -rf "$OUT" && cp -a "$base" "$OUT" && sync
  bash -c "${cmd//@PORT@/$port}" >>"$WORK/cells.log" 2>&1
  sleep 0.5
  kill "$pid" 2>/dev/null
  awk -v n="$name" '{ c += $1; s += $2 } END { printf "%s\t%d\t%d\n", n, c, s }' "$log" >>"$R_WIRE"
}
if ((!NET_ONLY && !TLS_ONLY)) && have hyperfine && have python3; then
  rm -rf "$SYNC" && mkdir -p "$SYNC/src/small" "$SYNC/src/large" || die "cannot create $SYNC"
  (cd "$DATA" && xargs -a "$LISTS/W2" cp -t "$SYNC/src/small/" && ls m*.bin | head -n 8 | xargs cp -t "$SYNC/src/large/")
  find "$SYNC/src" -exec touch -h -d '2026-01-01 00:00:00' {} +
  R_SMALL=$(find "$SYNC/src/small" -type f | wc -l) R_LARGE=$(find "$SYNC/src/large" -type f | wc -l)
  R_BYTES=$(du -sb --apparent-size "$SYNC/src" | cut -f1)
  "$FXFER" serve --config "$WORK/empty.toml" -q --ip 127.0.0.1 --port 0 --dir "$SYNC/src" \
    --log-file "$WORK/fxfer-sync.log" >"$WORK/fxfer-sync.out" 2>"$WORK/fxfer-sync.err" &
  PIDS+=($!)
  FXS_PORT=""
  for ((i = 0; i < 100; i++)); do
    FXS_PORT=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$WORK/fxfer-sync.out")
    [[ -n $FXS_PORT ]] && break
    sleep 0.1
  done
  [[ -n $FXS_PORT ]] || die "fxfer serve (R) did not start: $(cat "$WORK/fxfer-sync.err")"
  RS_SYNC_PORT=""
  if have rsync; then
    free_port RS_SYNC_PORT
    cat >"$WORK/rsyncd-sync.conf" <<EOF
use chroot = no
pid file = $WORK/rsyncd-sync.pid
log file = $WORK/rsyncd-sync.log
[sync]
  path = $SYNC/src
  read only = yes
  uid = $(id -un)
  gid = $(id -gn)
EOF
    start_server rsyncd-sync "$RS_SYNC_PORT" rsync --daemon --no-detach --config="$WORK/rsyncd-sync.conf" \
      --address=127.0.0.1 --port="$RS_SYNC_PORT" || RS_SYNC_PORT=""
  else SKIPPED+=("R with rsync (rsync not installed)"); fi
  fx="'$FXFER' get --config '$WORK/empty.toml' -q --dir '$OUT' -r ."
  # The first fetch, by each system.
  rm -rf "$OUT" && eval "$fx --port $FXS_PORT" && mv "$OUT" "$SYNC/base-fxfer" || die "the first fxfer fetch failed"
  if [[ -n $RS_SYNC_PORT ]]; then
    mkdir -p "$OUT" && rsync -a "rsync://127.0.0.1:$RS_SYNC_PORT/sync/" "$OUT/" && mv "$OUT" "$SYNC/base-rsync" ||
      die "the first rsync fetch failed"
  fi
  # The change: 20 small files spread over the set, and one large file.
  R_CHANGED=0
  for f in $(ls "$SYNC/src/small" | awk -v n="$R_SMALL" 'NR % int(n / 20) == 0' | head -n 20); do
    keystream $((1000 + R_CHANGED)) 8192 >"$SYNC/src/small/$f"
    R_CHANGED=$((R_CHANGED + 1))
  done
  keystream 999 $((MED_MIB << 20)) >"$SYNC/src/large/$(ls "$SYNC/src/large" | head -n 1)"
  R_CHANGED_BYTES=$((R_CHANGED * 8192 + (MED_MIB << 20)))
  (cd "$SYNC/src" && find . -type f -print0 | xargs -0 sha256sum) >"$SYNC/src.sha"
  rcell "fxfer full fetch (-r)" "" "$fx --port $FXS_PORT"
  rcell "fxfer --update" "$SYNC/base-fxfer" "$fx --port $FXS_PORT --update"
  rcell "fxfer --update --no-fsync" "$SYNC/base-fxfer" "$fx --port $FXS_PORT --update --no-fsync"
  rcell "fxfer --checksum" "$SYNC/base-fxfer" "$fx --port $FXS_PORT --checksum"
  rcell "fxfer (default: verify)" "$SYNC/base-fxfer" "$fx --port $FXS_PORT"
  if [[ -n $RS_SYNC_PORT ]]; then
    rsrc="rsync://127.0.0.1:$RS_SYNC_PORT/sync/"
    rcell "rsync -a (daemon), full fetch" "" "rsync -a $rsrc '$OUT/'"
    rcell "rsync -a (daemon)" "$SYNC/base-rsync" "rsync -a $rsrc '$OUT/'"
    rcell "rsync -a --checksum (daemon)" "$SYNC/base-rsync" "rsync -a --checksum $rsrc '$OUT/'"
  fi
  wire "fxfer --update" "$SYNC/base-fxfer" "$fx --port @PORT@ --update" "$FXS_PORT"
  wire "fxfer --checksum" "$SYNC/base-fxfer" "$fx --port @PORT@ --checksum" "$FXS_PORT"
  if [[ -n $RS_SYNC_PORT ]]; then
    wire "rsync -a (daemon)" "$SYNC/base-rsync" "rsync -a rsync://127.0.0.1:@PORT@/sync/ '$OUT/'" "$RS_SYNC_PORT"
    wire "rsync -a --checksum (daemon)" "$SYNC/base-rsync" \
      "rsync -a --checksum rsync://127.0.0.1:@PORT@/sync/ '$OUT/'" "$RS_SYNC_PORT"
  fi
else SKIPPED+=("R, the re-run (hyperfine or python3 not installed)"); fi
# ---- network scenarios: a proxy of our own adds the round trip / the cap ------------
if ((!RERUN_ONLY && !TLS_ONLY)); then
proxy() { # proxy VAR TARGET_PORT ARGS...: starts a delay-proxy, puts its port in VAR
  local var=$1 to=$2 i p="" pid
  shift 2
  "$PROXY" --to "127.0.0.1:$to" "$@" >"$WORK/proxy-$var.out" 2>"$WORK/proxy-$var.err" &
  pid=$!
  PIDS+=("$pid")
  for ((i = 0; i < 100; i++)); do
    p=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$WORK/proxy-$var.out")
    [[ -n $p ]] && break
    sleep 0.05
  done
  [[ -n $p ]] || die "delay-proxy did not start: $(cat "$WORK/proxy-$var.err")"
  printf -v "$var" %s "$p"
}
for W in N1 N2; do
  if [[ $W == N1 ]]; then fxp=$FX_PORT ngp=$NGX_PORT rsp=$RSYNC_PORT
  else
    proxy fxp "$FX_PORT" --delay-ms 10
    [[ -n $NGX_PORT ]] && proxy ngp "$NGX_PORT" --delay-ms 10
    [[ -n $RSYNC_PORT ]] && proxy rsp "$RSYNC_PORT" --delay-ms 10
  fi
  get="'$FXFER' get --config '$WORK/empty.toml' -q --port $fxp --dir '$OUT' \$(<'$LISTS/$W')"
  cell $W "fxfer" files "$get"
  cell $W "fxfer --parallel -j $PAR" files "$get --parallel -j $PAR"
  if [[ -n ${FXFER_BASE:-} ]]; then
    base="'$FXFER_BASE' get --config '$WORK/empty.toml' -q --port $fxp --dir '$OUT' \$(<'$LISTS/$W')"
    cell $W "fxfer (base build)" files "$base"
    cell $W "fxfer (base build) --parallel -j $PAR" files "$base --parallel -j $PAR"
  fi
  if [[ -n $NGX_PORT ]]; then
    curl_cfg "$ngp" $W
    cell $W "nginx + curl" files "curl -sS --fail -K '$LISTS/$W.curl$ngp'"
    cell $W "nginx + curl --parallel --parallel-max $PAR" files "curl -sS --fail --parallel --parallel-max $PAR -K '$LISTS/$W.curl$ngp'"
  fi
  if [[ -n $RSYNC_PORT ]]; then
    cell $W "rsync daemon" files "rsync -a --whole-file --files-from='$LISTS/$W' rsync://127.0.0.1:$rsp/data/ '$OUT/'"
  fi
done
proxy capp "$FX_PORT" --rate-mbit 200
get="'$FXFER' get --config '$WORK/empty.toml' -q --port $capp --dir '$OUT' cap.bin"
RUNS_SAVED=$RUNS RUNS=3
cell N3 "fxfer" files "$get"
cell N3 "fxfer --parallel -j $PAR" files "$get --parallel -j $PAR"
RUNS=$RUNS_SAVED
fi

# ---- what TLS costs: CPU per GiB (W1), round trips of a small get ---------------
CPU_ROWS=() RTT_ROWS=()
if ((COSTS)); then
TCK=$(getconf CLK_TCK)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
cpu_row() { # cpu_row LABEL SERVER_PID CMD: CPU seconds per GiB of W1 over 3 runs, client and server
  local label=$1 pid=$2 cmd=$3 i s0 s1 t c=0
  s0=$(cpu_ticks "$pid")
  for ((i = 0; i < 3; i++)); do
    prepare
    t=$({ TIMEFORMAT='%U %S'; time bash -c "$cmd" >/dev/null 2>&1; } 2>&1)
    c=$(awk -v c="$c" -v t="$t" 'BEGIN { split(t, a, " "); print c + a[1] + a[2] }')
  done
  s1=$(cpu_ticks "$pid")
  CPU_ROWS+=("$(awk -v l="$label" -v c="$c" -v s=$((s1 - s0)) -v k="$TCK" -v g="$(awk -v m="$BIG_MIB" 'BEGIN { print 3 * m / 1024 }')" \
    'BEGIN { printf "| %s | %.2f | %.2f | %.2f |", l, c / g, s / k / g, (c + s / k) / g }')")
}
note ">> CPU per GiB"
w1="\$(<'$LISTS/W1')"
cpu_row "fxfer (TLS)" "$fxfer_PID" "'$FXFER' get --config '$WORK/empty.toml' -q --port $FX_PORT --dir '$OUT' $w1"
cpu_row "fxfer --plaintext" "$fxferplain_PID" \
  "'$FXFER' get --config '$WORK/empty.toml' -q --plaintext --port $FXP_PORT --dir '$OUT' $w1"

# A small get through a 50 ms round trip, with and without TLS, and
# straight to the server: what TLS adds there is the handshake's computing,
# and the rest of what it adds through the delay is round trips.
RTT_MS=50
if cargo build --release --quiet --example delay-proxy 2>/dev/null && [[ -x $TARGET/release/examples/delay-proxy ]]; then
  note ">> round trips"
  small=$(head -n1 "$LISTS/W2")
  for v in "TLS:$FX_PORT:" "--plaintext:$FXP_PORT:--plaintext"; do
    IFS=: read -r label port flag <<<"$v"
    "$TARGET/release/examples/delay-proxy" --to "127.0.0.1:$port" --delay-ms $((RTT_MS / 2)) --exit-after 600 \
      >"$WORK/dp-$port.out" 2>&1 &
    PIDS+=($!)
    dp=""
    for ((i = 0; i < 100; i++)); do
      dp=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$WORK/dp-$port.out")
      [[ -n $dp ]] && break
      sleep 0.1
    done
    [[ -n $dp ]] || continue
    row=$label
    for to in "$dp" "$port"; do
      hyperfine --shell=bash --style basic --warmup 1 --runs 10 --export-json "$WORK/json/rtt-$to.json" \
        "'$FXFER' get --config '$WORK/empty.toml' -q $flag --port $to --dir '$OUT' $small" >>"$WORK/cells.log" 2>&1 || continue 2
      row+=" $(grep -o '"median": *[0-9.eE+-]*' "$WORK/json/rtt-$to.json" | head -n1 | sed 's/.*: *//')"
    done
    RTT_ROWS+=("$row")
  done
fi
fi

# ---- report ------------------------------------------------------------------------
echo
echo "fxfer $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) cores, $(uname -sr), mode $MODE," \
  "downloads on $(df --output=fstype "$OUT" 2>/dev/null | tail -n1)," \
  "$RUNS runs + 1 warm-up per cell, load average $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end"
echo "W1: 1 x $BIG_MIB MiB | W2: $NSMALL x 8 KiB serial, one connection | W3: $NMED x $MED_MIB MiB, $PAR at a time | W4: the W2 set, $PAR at a time"
echo "N1: 200 x 8 KiB, 0 ms round trip | N2: the same through a 20 ms round trip | N3: 1 x $CAP_MIB MiB through 200 Mbit/s per connection"
for s in "${SKIPPED[@]}"; do echo "skipped: $s"; done
echo
if [[ -s $RES ]]; then
  awk -F'\t' -v b1="${BYTES[W1]}" -v b3="${BYTES[W3]}" -v b6="${BYTES[N3]}" -v f2="${FILES[W2]}" -v f4="${FILES[W4]}" -v f5="${FILES[N1]}" '
    { row[++n] = $0
      if ($4 == "ok" && $2 !~ /^(raw TCP|local cp)/ && (!($1 in best) || $3 < best[$1])) best[$1] = $3 }
    END {
      bytes["W1"] = b1; bytes["W3"] = b3; bytes["N3"] = b6; files["W2"] = f2; files["W4"] = f4
      files["N1"] = f5; files["N2"] = f5
      print "| workload | system | median s | throughput | speed vs fastest non-baseline |"
      print "|---|---|---:|---:|---:|"
      for (i = 1; i <= n; i++) {
        split(row[i], f, "\t"); W = f[1]; t = f[3]
        if (f[4] == "failed") { printf "| %s | %s | - | - | failed |\n", W, f[2]; continue }
        tp = (W in bytes) ? sprintf("%.0f MB/s", bytes[W] / 1e6 / t) : sprintf("%.0f files/s", files[W] / t)
        r = (f[4] != "ok") ? f[4] : (W in best) ? sprintf("%.2fx", best[W] / t) : "-"
        printf "| %s | %s | %.3f | %s | %s |\n", W, f[2], t, tp, r
      }
    }' "$RES"
  echo
  echo "speed vs fastest non-baseline = that system's speed / the fastest non-baseline system's speed"
  echo "(1.00x = the fastest; 0.50x = half as fast). Baselines, not counted as systems: raw TCP shows the"
  echo "loopback ceiling for one stream of bytes, local cp the cost of creating and writing the files here"
  echo "(cp does not flush to disk: compare it with the --no-fsync rows)."
fi
if [[ -s $R_RES ]]; then
  echo
  echo "R: a tree of $R_SMALL x 8 KiB + $R_LARGE x $MED_MIB MiB ($R_BYTES bytes), fetched once; then $R_CHANGED small" \
    "files and 1 large file changed ($R_CHANGED_BYTES bytes), and the tree fetched again (fxfer get -r . / rsync -a)."
  echo
  awk -F'\t' '{ t[$1] = $2; st[$1] = $3; order[++n] = $1 }
    END {
      print "| R | median s | fxfer full fetch / this | status |"
      print "|---|---:|---:|---|"
      full = t["fxfer full fetch (-r)"]
      for (i = 1; i <= n; i++) {
        k = order[i]
        printf "| %s | %s | %s | %s |\n", k, t[k], (full && t[k] != "-") ? sprintf("%.1fx", full / t[k]) : "-", st[k]
      }
      u = t["fxfer --update"]; c = t["fxfer --checksum"]; r = t["rsync -a (daemon)"]; rc = t["rsync -a --checksum (daemon)"]
      print ""
      print "| target | measured | met |"
      print "|---|---:|---|"
      if (full && u) printf "| fxfer --update re-run at least 20x faster than a full fetch | %.1fx | %s |\n", full / u, (full / u >= 20) ? "yes" : "NO"
      if (r && u) printf "| fxfer --update at least 1.5x the rsync daemon re-run | %.2fx | %s |\n", r / u, (r / u >= 1.5) ? "yes" : "NO"
      if (rc && c) printf "| fxfer --checksum at least 1.5x rsync --checksum | %.2fx | %s |\n", rc / c, (rc / c >= 1.5) ? "yes" : "NO"
    }' "$R_RES"
  echo
  echo "| bytes on the wire in the re-run | client to server | server to client | total vs the $R_CHANGED_BYTES bytes changed |"
  echo "|---|---:|---:|---:|"
  awk -F'\t' -v ch="$R_CHANGED_BYTES" '{ printf "| %s | %d | %d | %+.2f%% |\n", $1, $2, $3, 100 * ($2 + $3 - ch) / ch }' "$R_WIRE"
fi
if ((TLS_ONLY)) && [[ -s $RES ]]; then
  echo
  awk -F'\t' -v par="$PAR" '$4 == "ok" { t[$1 "|" $2] = $3 }
    function target(what, fast, slow, want,   a, b) {
      a = t[fast]; b = t[slow]
      if (a && b) printf "| %s | %.2fx | %s |\n", what, b / a, (b / a >= want) ? "yes" : "NO"
    }
    END {
      print "| target (fxfer with TLS, ratios of medians in this run) | measured | met |"
      print "|---|---:|---|"
      target("W1 at least 1.25x nginx HTTPS + curl", "W1|fxfer", "W1|nginx HTTPS (TLS 1.3) + curl", 1.25)
      target("W1 at least 2x scp (default cipher)", "W1|fxfer", "W1|scp (default cipher)", 2)
      target("W2 at least 1.5x sftp", "W2|fxfer", "W2|sftp", 1.5)
      p = "--parallel -j " par
      target("W4 at least 1.5x sftp (" par " at a time)", "W4|fxfer " p, "W4|sftp (xargs -P " par ")", 1.5)
      # No more than 10 % slower than --plaintext: plaintext / TLS >= 1 / 1.1.
      target("W2 within 10 % of --plaintext (plaintext/TLS >= 0.91)", "W2|fxfer", "W2|fxfer --plaintext", 1 / 1.1)
      target("W4 within 10 % of --plaintext (plaintext/TLS >= 0.91)", "W4|fxfer " p, "W4|fxfer " p " --plaintext", 1 / 1.1)
    }' "$RES"
fi
if ((${#CPU_ROWS[@]})); then
  echo
  echo "CPU seconds per GiB, W1 (1 x $BIG_MIB MiB), 3 runs; client = fxfer get and its children, server = the fxfer serve process:"
  echo
  echo "| system | client CPU s/GiB | server CPU s/GiB | total CPU s/GiB |"
  echo "|---|---:|---:|---:|"
  printf '%s\n' "${CPU_ROWS[@]}"
fi
if ((${#RTT_ROWS[@]} == 2)); then
  read -r _ tls tls0 <<<"${RTT_ROWS[0]}"
  read -r _ plain plain0 <<<"${RTT_ROWS[1]}"
  echo
  awk -v t="$tls" -v p="$plain" -v t0="$tls0" -v p0="$plain0" -v r="$RTT_MS" 'BEGIN {
    printf "One small get, median of 10: through delay-proxy (%d ms round trip) TLS %.4f s, --plaintext %.4f s;\n", r, t, p
    printf "straight to the server TLS %.4f s, --plaintext %.4f s. TLS adds %.4f s through the delay and %.4f s\n", t0, p0, t - p, t0 - p0
    printf "without it (computing), so %.2f round trips ((%.4f - %.4f) / %.3f).\n", (t - p - (t0 - p0)) * 1000 / r, t - p, t0 - p0, r / 1000 }'
fi
