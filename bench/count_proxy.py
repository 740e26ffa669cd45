#!/usr/bin/env python3
"""A loopback TCP proxy that counts the bytes it passes, for measuring what a
transfer costs on the wire (not for timing: it copies through Python).

    count_proxy.py --to 127.0.0.1:PORT --log FILE [--exit-after SECS]

Listens on 127.0.0.1 (a free port), prints `listening on 127.0.0.1:PORT`,
and appends one line per finished connection to FILE: the bytes sent by the
client, then those sent by the server. Loopback only; stops after
--exit-after seconds (default 600).
"""

import argparse
import ipaddress
import socket
import sys
import threading


def pump(src, dst, counts, i):
    try:
        while True:
            b = src.recv(1 << 20)
            if not b:
                break
            dst.sendall(b)
            counts[i] += len(b)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def serve(client, to, log, lock):
    server = socket.create_connection(to)
    counts = [0, 0]
    t = threading.Thread(target=pump, args=(client, server, counts, 0), daemon=True)
    t.start()
    pump(server, client, counts, 1)
    t.join(timeout=60)
    client.close()
    server.close()
    with lock, open(log, "a") as f:
        f.write(f"{counts[0]} {counts[1]}\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--to", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--exit-after", type=float, default=600)
    a = ap.parse_args()
    host, port = a.to.rsplit(":", 1)
    if not ipaddress.ip_address(host).is_loopback:
        sys.exit("count_proxy.py: --to must be a loopback address")
    l = socket.socket()
    l.bind(("127.0.0.1", 0))
    l.listen(64)
    print(f"listening on 127.0.0.1:{l.getsockname()[1]}", flush=True)
    threading.Timer(a.exit_after, lambda: l.close()).start()
    lock = threading.Lock()
    while True:
        try:
            c, _ = l.accept()
        except OSError:
            break
        threading.Thread(target=serve, args=(c, (host, int(port)), a.log, lock), daemon=True).start()


if __name__ == "__main__":
    main()
