#!/usr/bin/env python3
"""Starvation check for `fxfer serve` (loopback only, bounded in count and time).

Three scenarios, each against its own server:

  flood  CONNS connections from ADDRS source addresses (127.0.1.0/24 and
         up) that never finish the handshake: half say nothing, half
         trickle the greeting a byte every 0.4 s. They are held and
         renewed (a closed one is reopened) while a real `fxfer get` of a
         small file runs RUNS times from 127.0.0.1. Reports successes, the
         median and worst time of a get, how many attackers were held, and
         the server's peak RSS and threads.
  idle   IDLE silent connections held at once (from 1,000 addresses);
         reports the server's RSS with all of them open.
  guess  a token guesser from 127.0.2.1 trying wrong proofs as fast as it
         can for GUESS_SECS, while a real client with the right token runs
         `fxfer ls` from 127.0.0.1 every second. Reports the guesser's
         tries per minute and the real client's successes and median time.

    python3 bench/starve.py [--fxfer target/release/fxfer] [--only flood,idle,guess]
"""
import argparse, os, resource, selectors, socket, statistics, subprocess, sys
import tempfile, threading, time

p = argparse.ArgumentParser()
p.add_argument("--fxfer", default="target/release/fxfer")
p.add_argument("--only", default="flood,idle,guess")
p.add_argument("--conns", type=int, default=2000)
p.add_argument("--addrs", type=int, default=250)
p.add_argument("--runs", type=int, default=20)
p.add_argument("--idle", type=int, default=10000)
p.add_argument("--guess-secs", type=float, default=60.0)
p.add_argument("--seconds", type=float, default=600.0, help="hard time limit")
a = p.parse_args()
fxfer = os.path.abspath(a.fxfer)
deadline = time.time() + a.seconds

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

HELLO = b"FXFR\x00\x03\x00\x00"


def source(i):
    """The i-th attacker address: 127.1.x.y, never 127.0.0.1."""
    return f"127.1.{i // 250}.{i % 250 + 1}"


class Server:
    def __init__(self, work, extra, env=None):
        self.host = os.path.join(work, "host")
        os.makedirs(self.host, exist_ok=True)
        with open(os.path.join(self.host, "small.txt"), "wb") as f:
            f.write(os.urandom(4096))
        self.log = os.path.join(work, "server.log")
        self.proc = subprocess.Popen(
            [fxfer, "serve", "--ip", "127.0.0.1", "--port", "0", "--dir", self.host,
             "--log-file", self.log] + extra,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env=dict(os.environ, **(env or {})))
        self.port = int(self.proc.stdout.readline().strip().rsplit(":", 1)[1])
        self.peak = {"hwm_kb": 0, "rss_kb": 0, "threads": 0}
        self.stop = threading.Event()
        threading.Thread(target=self.sample, daemon=True).start()

    def status(self):
        out = {}
        with open(f"/proc/{self.proc.pid}/status") as s:
            for line in s:
                k, _, v = line.partition(":")
                if k in ("VmHWM", "VmRSS", "Threads"):
                    out[k] = int(v.split()[0])
        return out

    def sample(self):
        while not self.stop.is_set():
            try:
                st = self.status()
            except OSError:
                break
            self.peak["hwm_kb"] = max(self.peak["hwm_kb"], st["VmHWM"])
            self.peak["rss_kb"] = max(self.peak["rss_kb"], st["VmRSS"])
            self.peak["threads"] = max(self.peak["threads"], st["Threads"])
            time.sleep(0.05)

    def close(self):
        self.stop.set()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Attackers:
    """Holds n unfinished handshakes, renewing any the server closes."""

    def __init__(self, port, n, addrs, trickle=True):
        self.port, self.n, self.addrs, self.trickle = port, n, addrs, trickle
        self.sel = selectors.DefaultSelector()
        self.held = 0
        self.opened = 0
        self.refused = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def open_one(self, i):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind((source(i % self.addrs), 0))
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", self.port))
        except OSError:
            s.close()
            self.refused += 1
            return
        # Trickling ones send one byte of the greeting at a time, slower
        # than any per-read time-out would allow, and never finish it.
        state = {"i": i, "sent": 0, "next": time.time() + 0.4,
                 "trickle": self.trickle and i % 2 == 1}
        self.sel.register(s, selectors.EVENT_READ, state)
        self.held += 1
        self.opened += 1

    def run(self):
        for i in range(self.n):
            if self.stop.is_set() or time.time() > deadline:
                return
            self.open_one(i)
        while not self.stop.is_set() and time.time() < deadline:
            for key, _ in self.sel.select(timeout=0.1):
                s = key.fileobj
                try:
                    data = s.recv(4096)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if not data:
                    # Closed by the server: renew from the same address.
                    i = key.data["i"]
                    self.sel.unregister(s)
                    s.close()
                    self.held -= 1
                    self.open_one(i)
            now = time.time()
            for key in list(self.sel.get_map().values()):
                st = key.data
                if st["trickle"] and st["sent"] < 7 and now >= st["next"]:
                    try:
                        key.fileobj.send(HELLO[st["sent"]:st["sent"] + 1])
                        st["sent"] += 1
                    except OSError:
                        pass
                    st["next"] = now + 0.4

    def start(self):
        self.thread.start()
        return self

    def wait_held(self, want, limit):
        end = time.time() + limit
        while self.held < want and time.time() < end:
            time.sleep(0.1)
        return self.held

    def close(self):
        self.stop.set()
        self.thread.join(timeout=5)
        for key in list(self.sel.get_map().values()):
            key.fileobj.close()


def timed(cmd, cwd, env=None):
    t = time.perf_counter()
    r = subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       env=dict(os.environ, **(env or {})), timeout=60)
    return r.returncode, (time.perf_counter() - t) * 1000, r.stderr.decode(errors="replace")


def flood(work):
    srv = Server(work, [])
    att = Attackers(srv.port, a.conns, a.addrs).start()
    held = att.wait_held(a.conns, 60)
    time.sleep(1)
    client = os.path.join(work, "client")
    os.makedirs(client, exist_ok=True)
    times, ok, errors, held_during = [], 0, [], []
    for _ in range(a.runs):
        code, ms, err = timed([fxfer, "get", "--port", str(srv.port), "--dir", "dl",
                               "--retries", "0", "small.txt"], client)
        held_during.append(att.held)
        if code == 0:
            ok += 1
            times.append(ms)
        else:
            errors.append(err.strip())
        time.sleep(0.5)
    print(f"flood: {a.conns} unfinished handshakes from {a.addrs} addresses "
          f"(half silent, half trickling a byte every 0.4 s), held {held} at the start, "
          f"{min(held_during)}-{max(held_during)} during the gets, {att.opened} opened in all")
    print(f"flood: real get from 127.0.0.1: {ok}/{a.runs} succeeded; "
          f"median {statistics.median(times):.1f} ms, worst {max(times):.1f} ms"
          if times else f"flood: real get: {ok}/{a.runs} succeeded")
    for e in errors[:3]:
        print(f"flood:   failure: {e}")
    print(f"flood: server peak RSS {srv.peak['hwm_kb'] / 1024:.1f} MiB, "
          f"peak threads {srv.peak['threads']}")
    att.close()
    srv.close()
    return ok == a.runs and times and statistics.median(times) < 100


def idle(work):
    srv = Server(work, ["--max-startups", str(a.idle + 1000), "--handshake-timeout", "120",
                        "--max-connections-per-ip", "64"])
    att = Attackers(srv.port, a.idle, 1000, trickle=False).start()
    held = att.wait_held(a.idle, 120)
    time.sleep(2)
    st = srv.status()
    print(f"idle: {held} silent connections held at once; server RSS {st['VmRSS'] / 1024:.1f} MiB "
          f"(peak {st['VmHWM'] / 1024:.1f} MiB), {st['Threads']} threads")
    att.close()
    srv.close()
    return held >= a.idle and st["VmHWM"] < 200 * 1024


def guess(work):
    token = os.path.join(work, "token")
    with open(token, "w") as f:
        f.write("starve-bench-token-0123456789abcdef")
    os.chmod(token, 0o600)
    srv = Server(work, ["--token-file", token])
    tries, penalized = [0], [0]
    stop = threading.Event()

    def guesser():
        while not stop.is_set() and time.time() < deadline:
            try:
                s = socket.socket()
                s.bind(("127.0.2.1", 0))
                s.settimeout(10)
                s.connect(("127.0.0.1", srv.port))
                s.sendall(HELLO)
                reply = s.recv(8 + 5 + 32)
                if len(reply) >= 13 and reply[8] == 0x86:
                    s.sendall(b"\x04\x00\x00\x00\x40" + b"\x01" * 64)
                    s.recv(4096)
                    tries[0] += 1
                else:
                    penalized[0] += 1
                s.close()
            except OSError:
                pass
            time.sleep(0.05)

    t = threading.Thread(target=guesser, daemon=True)
    started = time.time()
    t.start()
    client = os.path.join(work, "client")
    os.makedirs(client, exist_ok=True)
    times, ok, runs = [], 0, 0
    while time.time() - started < a.guess_secs and time.time() < deadline:
        code, ms, _ = timed([fxfer, "ls", "--port", str(srv.port)], client,
                            {"FXFER_TOKEN": "starve-bench-token-0123456789abcdef"})
        runs += 1
        if code == 0:
            ok += 1
            times.append(ms)
        time.sleep(1)
    stop.set()
    t.join(timeout=15)
    mins = (time.time() - started) / 60
    print(f"guess: a guesser from 127.0.2.1 made {tries[0]} wrong proofs in {mins * 60:.0f} s "
          f"({tries[0] / mins:.1f} per minute); {penalized[0]} more connections were refused "
          f"by its penalty before any challenge")
    print(f"guess: the real client from 127.0.0.1 meanwhile: {ok}/{runs} ls succeeded, "
          f"median {statistics.median(times):.1f} ms" if times else f"guess: real client {ok}/{runs}")
    srv.close()
    return ok == runs and tries[0] / mins <= 6


results = {}
for name in a.only.split(","):
    with tempfile.TemporaryDirectory(prefix=f"fxfer-starve-{name}-") as work:
        results[name] = {"flood": flood, "idle": idle, "guess": guess}[name](work)
print("targets: " + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in results.items()))
sys.exit(0 if all(results.values()) else 1)
