#!/usr/bin/env python3
"""Load check for `fxfer serve` (loopback only, bounded in count and time).

Holds CONNS - DOWNLOADS idle connections (handshake done, then silent)
while DOWNLOADS real `fxfer get` clients fetch a 32 MiB file through the
same server, so CONNS connections are open at once; then opens OVERFLOW
more, which must be refused as BUSY. Reports whether the downloads
completed, the BUSY count, and the server's peak RSS and thread count.

    python3 bench/load.py [--fxfer target/release/fxfer] [--conns 1000]
                          [--downloads 20] [--overflow 50]
"""
import argparse, os, resource, socket, subprocess, sys, tempfile, threading, time

p = argparse.ArgumentParser()
p.add_argument("--fxfer", default="target/release/fxfer")
p.add_argument("--conns", type=int, default=1000)
p.add_argument("--downloads", type=int, default=20)
p.add_argument("--overflow", type=int, default=50)
p.add_argument("--seconds", type=float, default=60.0, help="hard time limit")
a = p.parse_args()

deadline = time.time() + a.seconds
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
want = min(hard, max(soft, (a.conns + a.overflow) * 2 + 256))
resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

work = tempfile.mkdtemp(prefix="fxfer-load-")
host = os.path.join(work, "host")
os.mkdir(host)
with open(os.path.join(host, "f.bin"), "wb") as f:
    f.write(os.urandom(32 << 20))
srv = subprocess.Popen(
    [a.fxfer, "serve", "--ip", "127.0.0.1", "--port", "0", "--dir", host,
     "--log-file", os.path.join(work, "server.log"),
     "--max-connections", str(a.conns),
     "--max-connections-per-ip", str(a.conns),
     "--idle-timeout", "120"],
    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
port = int(srv.stdout.readline().strip().rsplit(":", 1)[1])

peak = {"rss_kb": 0, "threads": 0}
stop = threading.Event()

def sample():
    while not stop.is_set():
        try:
            with open(f"/proc/{srv.pid}/status") as s:
                for line in s:
                    if line.startswith("VmHWM:"):
                        peak["rss_kb"] = max(peak["rss_kb"], int(line.split()[1]))
                    elif line.startswith("Threads:"):
                        peak["threads"] = max(peak["threads"], int(line.split()[1]))
        except OSError:
            break
        time.sleep(0.05)

threading.Thread(target=sample, daemon=True).start()

hello = b"FXFR\x00\x03\x00\x00"

def open_conns(n):
    """Opens n connections and sends the greeting on each."""
    out, failed = [], 0
    for _ in range(n):
        if time.time() > deadline:
            break
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(hello)
            out.append(s)
        except OSError:
            failed += 1
    return out, failed

def classify(socks):
    """held: greeted and kept open; busy: greeting + ERROR 4; closed: no reply."""
    held = busy = closed = 0
    for s in socks:
        try:
            s.settimeout(5)
            data = b""
            while len(data) < 8:
                chunk = s.recv(8 - len(data))
                if not chunk:
                    break
                data += chunk
            if len(data) < 8:
                closed += 1
                continue
            # A refusal arrives in the same write as the greeting.
            s.settimeout(0.5 if busy + held == 0 else 0.001)
            try:
                extra = s.recv(64)
            except (socket.timeout, BlockingIOError):
                extra = b""
            if len(extra) >= 7 and extra[0] == 0xEE and extra[5:7] == b"\x00\x04":
                busy += 1
            else:
                held += 1
        except OSError:
            closed += 1
    return held, busy, closed

t0 = time.time()
idle, failed = open_conns(a.conns - a.downloads)
held, busy0, closed0 = classify(idle)
opened = time.time() - t0

# Downloads while the idle connections are held.
dl_ok = 0
t1 = time.time()
procs = []
for i in range(a.downloads):
    d = os.path.join(work, f"dl{i}")
    procs.append(subprocess.Popen(
        [a.fxfer, "get", "-q", "--no-fsync", "--retries", "5", "--port", str(port), "--dir", d, "f.bin"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
# Meanwhile, more connections than the server allows.
time.sleep(0.2)
extra, failed2 = open_conns(a.overflow)
_, busy, closed = classify(extra)
for pr in procs:
    try:
        pr.wait(timeout=max(1, deadline - time.time()))
        dl_ok += pr.returncode == 0
    except subprocess.TimeoutExpired:
        pr.kill()
dl_secs = time.time() - t1

stop.set()
for s in idle + extra:
    s.close()
srv.terminate()
srv.wait(timeout=30)
print(f"server limit: {a.conns} connections")
print(f"idle connections held: {held} of {a.conns - a.downloads} (refused {busy0}, closed {closed0 + failed}), opened in {opened:.2f} s")
print(f"over the limit: {a.overflow} more -> {busy} refused BUSY, {closed + failed2} closed without reply")
print(f"downloads of 32 MiB while held: {dl_ok}/{a.downloads} complete in {dl_secs:.2f} s")
print(f"server peak RSS: {peak['rss_kb'] / 1024:.1f} MiB; peak threads: {peak['threads']}")
subprocess.run(["rm", "-rf", work])
sys.exit(0 if dl_ok == a.downloads else 1)
