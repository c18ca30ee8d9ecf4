#!/usr/bin/env python3
"""vhost-user-blk data-plane benchmark: qsd and qemu-storage-daemon side by side.

Both servers export the same fully allocated image of random data on tmpfs
(so reads hit a warm page cache) as a writable vhost-user-blk device, with
the same command line:

  --blockdev driver=file,node-name=disk,filename=IMG[,aio=A]
  --export type=vhost-user-blk,id=e,node-name=disk,writable=on,
           num-queues=Q,addr.type=unix,addr.path=SOCK

The client is not ours: libblkio's virtio-blk-vhost-user driver (the blkio
crate), in scripts/bench/vhost-client, built on first use with cargo.  It
maps its own buffers as guest memory, runs one thread per queue with DEPTH
requests in flight, and waits for completions on the queue's eventfd (no
busy polling).

Method.  A run is --rounds rounds.  In each round every measurement is taken
on each server in turn, the order rotating from round to round.  Each
server is started FRESH for every single measurement and killed right after
it.  Measurements:

  rand-read-qd1/-qd32     4 KiB random reads, 1 queue, depth 1 and 32
  rand-write-qd1/-qd32    4 KiB random writes, 1 queue, depth 1 and 32
  rand-read-qd32-2q       4 KiB random reads, 2 queues, depth 32 each
  rand-write-qd32-2q      the same with writes
  seq-read, seq-write     1 MiB sequential, 1 queue, depth 8 (MiB/s)

For every figure the table gives the median over rounds with the min-max in
brackets, and the median of the per-round ratios ours/QSD with min-max.  On
the project's 2-core machines ratios within about +-25 % are noise.

usage: scripts/bench/vhost.py [--rounds N] [--seconds S] [--size SIZE]
           [--metrics LIST] [--aio MODE] [--markdown] [--ours PATH]
           [--qsd PATH] [--client PATH] [--dir DIR] [--json FILE]
"""
import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

# name: (pattern, block size, depth, queues, unit)
METRICS = {
    "rand-read-qd1": ("randread", 4096, 1, 1, "IOPS"),
    "rand-read-qd32": ("randread", 4096, 32, 1, "IOPS"),
    "rand-write-qd1": ("randwrite", 4096, 1, 1, "IOPS"),
    "rand-write-qd32": ("randwrite", 4096, 32, 1, "IOPS"),
    "rand-read-qd32-2q": ("randread", 4096, 32, 2, "IOPS"),
    "rand-write-qd32-2q": ("randwrite", 4096, 32, 2, "IOPS"),
    "seq-read": ("read", 1 << 20, 8, 1, "MiB/s"),
    "seq-write": ("write", 1 << 20, 8, 1, "MiB/s"),
}

CHILDREN = []


def die(msg):
    print(f"vhost.py: {msg}", file=sys.stderr)
    for p in CHILDREN:
        stop(p)
    sys.exit(1)


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def wait_socket(path, p, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if p.poll() is not None:
            die(f"server exited with {p.returncode}")
        if os.path.exists(path):
            s = socket.socket(socket.AF_UNIX)
            try:
                s.connect(path)
                s.close()
                # That connection was served and dropped; let the server
                # get back to accepting.
                time.sleep(0.05)
                return
            except OSError:
                pass
            finally:
                s.close()
        time.sleep(0.01)
    die(f"{path} never accepted a connection")


def build_client():
    src = os.path.join(ROOT, "scripts", "bench", "vhost-client")
    target = os.path.join(ROOT, "target", "bench")
    r = subprocess.run(["cargo", "build", "--release", "-q", "--manifest-path",
                        os.path.join(src, "Cargo.toml"), "--target-dir", target])
    if r.returncode != 0:
        die("building scripts/bench/vhost-client failed")
    return os.path.join(target, "release", "vhost-bench-client")


def measure(server, a, image, sock, metric):
    pattern, bs, depth, queues, unit = METRICS[metric]
    blockdev = f"driver=file,node-name=disk,filename={image}"
    if a.aio:
        blockdev += f",aio={a.aio}"
    export = (f"type=vhost-user-blk,id=e,node-name=disk,writable=on,num-queues={queues},"
              f"addr.type=unix,addr.path={sock}")
    if os.path.exists(sock):
        os.unlink(sock)
    p = subprocess.Popen([server, "--blockdev", blockdev, "--export", export],
                         stdin=subprocess.DEVNULL)
    CHILDREN.append(p)
    try:
        wait_socket(sock, p)
        r = subprocess.run([a.client, sock, pattern, str(bs), str(depth), str(queues),
                            str(a.seconds)], capture_output=True, text=True,
                           timeout=a.seconds + 60)
        if r.returncode != 0:
            die(f"client failed: {r.stderr.strip()}")
        res = json.loads(r.stdout)
        if res["errors"]:
            die(f"{res['errors']} requests failed on {server}")
        return res["iops"] if unit == "IOPS" else res["mib_s"]
    finally:
        stop(p)
        CHILDREN.remove(p)


def make_image(path, size):
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 1 << 20)
            f.write(os.urandom(n))
            left -= n


def parse_size(text):
    m = re.fullmatch(r"(\d+)([KMG]?)", text.upper())
    if not m:
        raise argparse.ArgumentTypeError(f"bad size {text!r} (e.g. 1G, 512M)")
    return int(m.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30}[m.group(2)]


def fmt(v):
    return f"{v:.2f}" if v < 10 else f"{v:.0f}"


def cell(vals):
    return f"{fmt(statistics.median(vals))} [{fmt(min(vals))}-{fmt(max(vals))}]"


def machine():
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({model}), Linux {platform.release()}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\nusage:")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    ap.add_argument("--size", type=parse_size, default=parse_size("1G"), help="image size")
    ap.add_argument("--metrics", default=",".join(METRICS), help="comma-separated subset")
    ap.add_argument("--aio", default="", help="aio= of the file node (default: the driver's)")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--ours", default=os.path.join(ROOT, "target", "release", "qsd"))
    ap.add_argument("--qsd", default="qemu-storage-daemon")
    ap.add_argument("--client", default="", help="prebuilt vhost-bench-client")
    ap.add_argument("--dir", default="/dev/shm", help="where the image goes (tmpfs)")
    ap.add_argument("--json", default="", help="also write raw results here")
    a = ap.parse_args()
    metrics = [m for m in a.metrics.split(",") if m]
    for m in metrics:
        if m not in METRICS:
            die(f"unknown metric {m} (known: {', '.join(METRICS)})")
    for b in (a.ours, a.qsd):
        if not shutil.which(b) and not os.access(b, os.X_OK):
            die(f"{b} not found (build qsd with: cargo build --release -p qsd)")
    if not a.client:
        a.client = build_client()
    tmp = tempfile.mkdtemp(prefix="vhost-bench-", dir=a.dir)
    image = os.path.join(tmp, "image")
    sock = os.path.join(tempfile.mkdtemp(prefix="vhost-bench-"), "vu.sock")
    make_image(image, a.size)
    servers = [("qsd", a.ours), ("QSD", a.qsd)]
    results = {m: {s: [] for s, _ in servers} for m in metrics}
    try:
        for rnd in range(a.rounds):
            for m in metrics:
                order = servers[rnd % 2:] + servers[:rnd % 2]
                for name, binary in order:
                    v = measure(binary, a, image, sock, m)
                    results[m][name].append(v)
                    print(f"round {rnd + 1} {m} {name}: {fmt(v)}", file=sys.stderr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    head = ["metric", "qsd", "QSD 10.0.2", "ours/QSD", "better"]
    rows = []
    for m in metrics:
        o, q = results[m]["qsd"], results[m]["QSD"]
        ratios = [x / y for x, y in zip(o, q) if y]
        rows.append([f"{m} ({METRICS[m][4]})", cell(o), cell(q), cell(ratios), "higher"])
    qver = subprocess.run([a.qsd, "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    print(f"# {datetime.date.today()} on {machine()}; {qver}; "
          f"{a.rounds} rounds, {a.seconds:g} s each, {a.size >> 20} MiB image on {a.dir}"
          f"{', aio=' + a.aio if a.aio else ''}")
    if a.markdown:
        print("| " + " | ".join(head) + " |")
        print("|---|---:|---:|---:|---|")
        for r in rows:
            print("| " + " | ".join(r) + " |")
    else:
        w = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
        for r in [head] + rows:
            print("  ".join(str(c).ljust(w[i]) for i, c in enumerate(r)))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
