#!/usr/bin/env python3
"""Connection-exhaustion load against a running gateway (a load script, not a test).

1. Opens N connections (default 1,000), each sending an unfinished request head padded
   with 400 KB, and keeps them open for a while: the gateway's RSS must stay bounded and
   /health/live must keep answering.
2. Closes them and measures RSS again: memory returns near its baseline.
3. Slowloris: M connections (default 200) each trickle one header byte a second; they must
   be closed by the server after its header-read timeout.

Everything goes to 127.0.0.1; every loop is bounded in count and time.
Usage: conn_flood.py --port PORT --pid PID [--connections 1000] [--slowloris 200]
"""
import argparse
import socket
import time
import urllib.request


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def health(port):
    t = time.monotonic()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/live", timeout=5) as r:
            return r.status, (time.monotonic() - t) * 1000
    except Exception as e:  # noqa: BLE001 - reported, not raised
        return str(e), (time.monotonic() - t) * 1000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--connections", type=int, default=1000)
    ap.add_argument("--header-kb", type=int, default=400)
    ap.add_argument("--hold", type=float, default=5.0)
    ap.add_argument("--slowloris", type=int, default=200)
    ap.add_argument("--slowloris-seconds", type=float, default=30.0)
    a = ap.parse_args()

    base = rss_mb(a.pid)
    print(f"baseline RSS {base:.1f} MB; /health/live {health(a.port)}")

    pad = b"a" * (a.header_kb * 1024)
    socks, refused, answered = [], 0, {}
    for _ in range(a.connections):
        s = socket.socket()
        s.settimeout(2)
        try:
            s.connect(("127.0.0.1", a.port))
            s.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-pad: ")
            s.setblocking(False)
            try:
                s.send(pad)  # as much as the socket takes; never finished
            except (BlockingIOError, OSError):
                pass
            socks.append(s)
        except OSError:
            refused += 1
            s.close()
    peak = rss_mb(a.pid)
    checks = []
    deadline = time.monotonic() + a.hold
    while time.monotonic() < deadline:
        peak = max(peak, rss_mb(a.pid))
        checks.append(health(a.port))
        time.sleep(0.25)
    for s in socks:
        try:
            s.setblocking(True)
            s.settimeout(0.05)
            head = s.recv(32)
            code = head.split(b" ")[1].decode() if head.startswith(b"HTTP/") else "closed"
        except (OSError, IndexError):
            code = "no answer"
        answered[code] = answered.get(code, 0) + 1
    ok = sum(1 for c, _ in checks if c == 200)
    worst = max((ms for _, ms in checks), default=0.0)
    print(f"{a.connections} connections x {a.header_kb} KB unfinished heads: "
          f"peak RSS {peak:.1f} MB (baseline {base:.1f}); answers {answered}; "
          f"refused at connect {refused}; /health/live {ok}/{len(checks)} ok, worst {worst:.0f} ms")
    for s in socks:
        s.close()
    time.sleep(2)
    after = rss_mb(a.pid)
    print(f"after closing them: RSS {after:.1f} MB")

    # Slowloris.
    slow = []
    for _ in range(a.slowloris):
        s = socket.socket()
        s.settimeout(2)
        try:
            s.connect(("127.0.0.1", a.port))
            s.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n")
            s.setblocking(False)
            slow.append(s)
        except OSError:
            s.close()
    opened = time.monotonic()
    closed_at = {}
    while time.monotonic() - opened < a.slowloris_seconds and len(closed_at) < len(slow):
        for i, s in enumerate(slow):
            if i in closed_at:
                continue
            try:
                s.send(b"X")
                data = s.recv(64)
                if data == b"" or data.startswith(b"HTTP/"):
                    closed_at[i] = time.monotonic() - opened
            except BlockingIOError:
                pass
            except OSError:
                closed_at[i] = time.monotonic() - opened
        time.sleep(1.0)
    times = sorted(closed_at.values())
    med = times[len(times) // 2] if times else float("nan")
    print(f"slowloris: {len(closed_at)}/{len(slow)} connections closed by the server "
          f"within {a.slowloris_seconds:.0f} s (median {med:.1f} s); /health/live {health(a.port)}")
    for s in slow:
        s.close()


if __name__ == "__main__":
    main()
