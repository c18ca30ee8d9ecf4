#!/usr/bin/env python3
"""Control-plane benchmark: qsd against qemu-storage-daemon, side by side.

For each round, each daemon is started in turn (alternating which goes
first) and measured on:
  - start-up time: from spawn until the monitor socket answers with its
    greeting;
  - idle RSS after negotiation (VmRSS from /proc);
  - QMP round trips per second, one request in flight, for query-version
    and query-qmp-schema.
Prints per-round values, medians and the ratio ours/theirs (for time and RSS
lower is better, for round trips higher is better).

usage: scripts/bench/qmp.py [--rounds N] [--seconds S] [--qsd PATH]
"""
import argparse, os, socket, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def start(prog):
    d = tempfile.mkdtemp(prefix="qsd-bench-")
    sock = os.path.join(d, "qmp.sock")
    t0 = time.perf_counter()
    p = subprocess.Popen([prog, "--chardev", f"socket,id=m,path={sock},server=on,wait=off",
                          "--monitor", "chardev=m"], stdout=subprocess.DEVNULL)
    while True:
        try:
            s = socket.socket(socket.AF_UNIX)
            s.connect(sock)
            break
        except OSError:
            s.close()
            if p.poll() is not None:
                raise SystemExit(f"{prog} exited during start-up")
            time.sleep(0.0005)
    f = s.makefile("rb")
    f.readline()
    startup = time.perf_counter() - t0
    s.sendall(b'{"execute":"qmp_capabilities"}\n')
    f.readline()
    return p, s, f, startup


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as st:
        for line in st:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def round_trips(s, f, line, seconds):
    n = 0
    end = time.perf_counter() + seconds
    t0 = time.perf_counter()
    while time.perf_counter() < end:
        s.sendall(line)
        f.readline()
        n += 1
    return n / (time.perf_counter() - t0)


def measure(prog, seconds):
    p, s, f, startup = start(prog)
    time.sleep(0.2)
    rss = rss_kib(p.pid)
    qv = round_trips(s, f, b'{"execute":"query-version"}\n', seconds)
    qs = round_trips(s, f, b'{"execute":"query-qmp-schema"}\n', seconds)
    p.terminate()
    p.wait()
    return {"startup_ms": startup * 1000, "rss_kib": rss, "query-version/s": qv, "query-qmp-schema/s": qs}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--qsd", default=os.path.join(ROOT, "target", "release", "qsd"))
    ap.add_argument("--reference", default="qemu-storage-daemon")
    a = ap.parse_args()
    if not os.path.exists(a.qsd):
        raise SystemExit(f"{a.qsd} not found: run 'cargo build --release' first")
    progs = {"qsd": a.qsd, "QSD": a.reference}
    results = {k: [] for k in progs}
    for r in range(a.rounds):
        order = list(progs) if r % 2 == 0 else list(reversed(list(progs)))
        for name in order:
            results[name].append(measure(progs[name], a.seconds))
        print(f"round {r + 1}: " + "; ".join(
            f"{n}: " + ", ".join(f"{k}={v:.1f}" for k, v in results[n][-1].items()) for n in progs), flush=True)
    print()
    print(f"{'metric':<22}{'qsd (ours)':>14}{'QSD 10.0.2':>14}{'ours/QSD':>10}  better")
    for k in results["qsd"][0]:
        ours = statistics.median(x[k] for x in results["qsd"])
        theirs = statistics.median(x[k] for x in results["QSD"])
        better = "lower" if k in ("startup_ms", "rss_kib") else "higher"
        print(f"{k:<22}{ours:>14.1f}{theirs:>14.1f}{ours / theirs:>10.2f}  {better}")


if __name__ == "__main__":
    main()
