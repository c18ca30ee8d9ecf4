#!/usr/bin/env python3
"""NBD data-plane benchmark: qsd, qemu-storage-daemon and nbdkit side by side.

Every server exports the same fully allocated image of random data on tmpfs
(so reads hit a warm page cache) over a UNIX socket, export name "bench",
writable.  qsd and qemu-storage-daemon (QSD) get the same command line:

  --blockdev driver=file,node-name=disk,filename=IMG[,aio=A]
  --nbd-server addr.type=unix,addr.path=SOCK[,max-connections=N]
  --export type=nbd,id=export,node-name=disk,name=bench,writable=on

nbdkit runs its file plugin: nbdkit --exit-with-parent --foreground
--unix SOCK --exportname bench file file=IMG.

Method.  A run is --rounds rounds.  In each round every measurement is taken
on each selected server in turn, the order rotating from round to round, so
the servers alternate closely and drift of a shared machine hits them alike.
Each server is started FRESH for every single measurement (and killed right
after it): no measurement sees caches, connections or threads left behind by
another.  A server counts as ready once its socket accepts a connection;
then one NBD handshake checks that the export has the image's size.
Measurements (fio's nbd engine and nbdcopy from libnbd-bin drive the I/O):

  seq-read, seq-write   fio, 1 MiB sequential, queue depth 8, one connection
  rand-read-qd1/-qd32   fio, 4 KiB random reads, queue depth 1 and 32
  rand-write-qd1/-qd32  the same with writes
  fio-4conn             fio numjobs=4 (4 connections), 4 KiB random reads,
                        queue depth 8 each
  nbdcopy-read          nbdcopy --connections=4 --threads=4 NBD -> null:
  nbdcopy-write         nbdcopy --connections=4 --threads=4 file -> NBD
                        (nbdcopy only opens several connections when the
                        server advertises multi-conn, and never more than
                        --threads, whose default is the number of cores)
  cpu-read, cpu-write   server CPU (utime+stime of the whole process from
                        /proc/PID/stat, all threads) over a fixed-count fio
                        run of --cpu-requests 4 KiB random requests at queue
                        depth 32, divided by the requests fio completed
                        (/proc counts in clock ticks, 10 ms: keep
                        --cpu-requests large enough for a second of CPU)
  handshakes            connect, fixed-newstyle handshake with NBD_OPT_GO,
                        NBD_CMD_DISC, close, in a tight loop for --seconds
                        (raw Python client, scripts/bench/nbdclient.py);
                        also server CPU per handshake, the fairer figure
                        when a server is faster than the Python client
  idle                  time from spawn until the socket accepts, and VmRSS
                        0.5 s after start-up and one handshake

For every figure the table gives the median over rounds with the min-max in
brackets, and for each pair of servers the median of the per-round ratios,
again with min-max.  On the project's 2-core machines ratios within about
+-25 % are noise; look at the spread before drawing conclusions.

Needs: fio (with the nbd engine, Debian's fio 3.33 has it), nbdcopy
(libnbd-bin), qemu-storage-daemon (qemu-utils), nbdkit; no Python modules
beyond the standard library.

usage: scripts/bench/nbd.py [--rounds N] [--seconds S] [--size SIZE]
           [--servers ours,qsd,nbdkit] [--metrics LIST] [--markdown]
           [--ours PATH] [--qsd PATH] [--nbdkit PATH] [--fio PATH]
           [--nbdcopy PATH] [--cpu-requests N] [--aio MODE]
           [--max-connections N] [--dir DIR] [--json FILE]
"""
import argparse
import ctypes
import datetime
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__ beside the scripts
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nbdclient  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXPORT = "bench"
MiB = 1 << 20
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """A tool or server failed; the message says which and why."""


# ---------------------------------------------------------------- processes

_libc = ctypes.CDLL(None, use_errno=True)
_live = set()


def _die_with_parent():
    # prctl(PR_SET_PDEATHSIG, SIGKILL): children die even if we are killed
    # with SIGKILL and cannot clean up.
    _libc.prctl(1, signal.SIGKILL, 0, 0, 0)


def spawn(argv, **kw):
    try:
        p = subprocess.Popen(argv, preexec_fn=_die_with_parent, stdin=subprocess.DEVNULL, **kw)
    except OSError as e:
        raise BenchError(f"cannot run {argv[0]}: {e}") from e
    _live.add(p)
    return p


def stop(p):
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    _live.discard(p)


def stop_all():
    for p in list(_live):
        stop(p)


def run_tool(argv, timeout):
    p = spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(p)
        raise BenchError(f"{shlex.join(argv)} did not finish within {timeout:.0f} s") from None
    _live.discard(p)
    if p.returncode != 0:
        raise BenchError(f"{shlex.join(argv)} failed with status {p.returncode}:\n"
                         + err.decode(errors="replace")[-2000:])
    return out


def cpu_seconds(pid):
    """utime+stime of the whole process (live and exited threads)."""
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    fields = data[data.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as st:
        for line in st:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise BenchError(f"no VmRSS for process {pid}")


# ---------------------------------------------------------------- servers

def qsd_argv(binary, image, sock, a):
    blockdev = f"driver=file,node-name=disk,filename={image}"
    if a.aio:
        blockdev += f",aio={a.aio}"
    server = f"addr.type=unix,addr.path={sock}"
    if a.max_connections:
        server += f",max-connections={a.max_connections}"
    return [binary, "--blockdev", blockdev, "--nbd-server", server,
            "--export", f"type=nbd,id=export,node-name=disk,name={EXPORT},writable=on"]


def nbdkit_argv(binary, image, sock, a):
    return [binary, "--exit-with-parent", "--foreground", "--unix", sock,
            "--exportname", EXPORT, "file", f"file={image}"]


class Server:
    def __init__(self, key, label, binary, argv_fn):
        self.key, self.label, self.binary, self.argv_fn = key, label, binary, argv_fn
        self.flags = None  # transmission flags seen in the last handshake


class Running:
    """One started server: process, socket path, start-up time."""

    def __init__(self, srv, p, sock, startup):
        self.srv, self.p, self.pid, self.sock, self.startup = srv, p, p.pid, sock, startup
        self.uri = f"nbd+unix:///{EXPORT}?socket={sock}"


def start_server(srv, ctx):
    sock = os.path.join(ctx.rundir, f"{srv.key}.sock")
    if os.path.exists(sock):
        os.unlink(sock)
    logpath = os.path.join(ctx.rundir, f"{srv.key}.log")
    argv = srv.argv_fn(srv.binary, ctx.image, sock, ctx.args)
    with open(logpath, "wb") as log:
        t0 = time.perf_counter()
        p = spawn(argv, stdout=log, stderr=subprocess.STDOUT)

    def failure(what):
        stop(p)
        with open(logpath, "rb") as f:
            tail = f.read()[-2000:].decode(errors="replace")
        return BenchError(f"{srv.label}: {what}\ncommand: {shlex.join(argv)}\noutput:\n{tail}")

    while True:
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(sock)
            break
        except OSError:
            pass
        finally:
            s.close()
        if p.poll() is not None:
            raise failure(f"exited with status {p.returncode} during start-up")
        if time.perf_counter() - t0 > 10:
            raise failure("socket did not accept a connection within 10 s")
        time.sleep(0.0005)
    startup = time.perf_counter() - t0
    try:
        size, flags = nbdclient.handshake(sock, EXPORT)
    except (OSError, nbdclient.NbdError) as e:
        raise failure(f"NBD handshake failed: {e}") from None
    if size != ctx.size:
        raise failure(f"export size {size}, expected {ctx.size}")
    srv.flags = flags
    return Running(srv, p, sock, startup)


# ---------------------------------------------------------------- drivers

def fio(ctx, r, rw, bs, depth, jobs=1, seconds=None, requests=None):
    out = os.path.join(ctx.rundir, "fio.json")
    argv = [ctx.args.fio, "--name=bench", "--ioengine=nbd", f"--uri={r.uri}",
            f"--rw={rw}", f"--bs={bs}", f"--iodepth={depth}", f"--numjobs={jobs}",
            "--thread", "--group_reporting", "--norandommap", "--randrepeat=0",
            "--output-format=json", f"--output={out}"]
    if seconds is not None:
        argv += ["--time_based", f"--runtime={round(seconds * 1000)}ms"]
        timeout = seconds + 120
    else:
        argv += [f"--io_size={requests * bs}"]
        timeout = 900
    run_tool(argv, timeout)
    with open(out) as f:
        text = f.read()
    # fio's nbd engine writes "fio: connected to NBD server" into the same
    # output; the JSON document starts at the first line opening a brace.
    start = text.find("\n{") + 1 if not text.startswith("{") else 0
    try:
        job = json.loads(text[start:])["jobs"][0]
    except (ValueError, KeyError, IndexError) as e:
        raise BenchError(f"cannot parse fio's JSON output ({e}): {text[:500]!r}") from None
    if job.get("error"):
        raise BenchError(f"fio reported error {job['error']} on {r.srv.label}")
    return job["read" if "read" in rw else "write"]


def nbdcopy_rate(ctx, src, dst):
    """MiB/s over as many whole copies as fit in --seconds (at least one)."""
    argv = [ctx.args.nbdcopy, "--connections=4", "--threads=4", src, dst]
    n = 0
    t0 = time.perf_counter()
    while True:
        run_tool(argv, 600)
        n += 1
        if time.perf_counter() - t0 >= ctx.args.seconds:
            break
    return n * ctx.size / (time.perf_counter() - t0) / MiB


def m_fio_bw(rw):
    return lambda ctx, r: fio(ctx, r, rw, MiB, 8, seconds=ctx.args.seconds)["bw_bytes"] / MiB


def m_fio_iops(rw, depth, jobs=1):
    return lambda ctx, r: fio(ctx, r, rw, 4096, depth, jobs, seconds=ctx.args.seconds)["iops"]


def m_cpu(rw):
    def measure(ctx, r):
        c0 = cpu_seconds(r.pid)
        res = fio(ctx, r, rw, 4096, 32, requests=ctx.args.cpu_requests)
        c1 = cpu_seconds(r.pid)
        return (c1 - c0) * 1e6 / res["total_ios"]
    return measure


def m_handshakes(ctx, r):
    c0 = cpu_seconds(r.pid)
    n = 0
    t0 = time.perf_counter()
    end = t0 + ctx.args.seconds
    while time.perf_counter() < end:
        nbdclient.handshake(r.sock, EXPORT)
        n += 1
    rate = n / (time.perf_counter() - t0)
    return {"handshakes": rate, "cpu-handshake": (cpu_seconds(r.pid) - c0) * 1e6 / n}


def m_idle(ctx, r):
    time.sleep(0.5)
    return {"startup": r.startup * 1000, "rss": rss_kib(r.pid)}


# (group, measure function, needs): a function returns one value (the metric
# named like the group) or a dict of metric -> value.
GROUPS = [
    ("seq-read", m_fio_bw("read"), "fio"),
    ("seq-write", m_fio_bw("write"), "fio"),
    ("rand-read-qd1", m_fio_iops("randread", 1), "fio"),
    ("rand-read-qd32", m_fio_iops("randread", 32), "fio"),
    ("rand-write-qd1", m_fio_iops("randwrite", 1), "fio"),
    ("rand-write-qd32", m_fio_iops("randwrite", 32), "fio"),
    ("fio-4conn", m_fio_iops("randread", 8, jobs=4), "fio"),
    ("nbdcopy-read", lambda ctx, r: nbdcopy_rate(ctx, r.uri, "null:"), "nbdcopy"),
    ("nbdcopy-write", lambda ctx, r: nbdcopy_rate(ctx, ctx.source, r.uri), "nbdcopy"),
    ("cpu-read", m_cpu("randread"), "fio"),
    ("cpu-write", m_cpu("randwrite"), "fio"),
    ("handshakes", m_handshakes, None),
    ("idle", m_idle, None),
]

# metric -> (label, better)
METRICS = {
    "seq-read": ("sequential read 1 MiB QD8 (MiB/s)", "higher"),
    "seq-write": ("sequential write 1 MiB QD8 (MiB/s)", "higher"),
    "rand-read-qd1": ("random read 4 KiB QD1 (IOPS)", "higher"),
    "rand-read-qd32": ("random read 4 KiB QD32 (IOPS)", "higher"),
    "rand-write-qd1": ("random write 4 KiB QD1 (IOPS)", "higher"),
    "rand-write-qd32": ("random write 4 KiB QD32 (IOPS)", "higher"),
    "fio-4conn": ("random read 4 KiB, 4 conns x QD8 (IOPS)", "higher"),
    "nbdcopy-read": ("nbdcopy 4 conns NBD -> null: (MiB/s)", "higher"),
    "nbdcopy-write": ("nbdcopy 4 conns file -> NBD (MiB/s)", "higher"),
    "cpu-read": ("server CPU per 4 KiB read, QD32 (us)", "lower"),
    "cpu-write": ("server CPU per 4 KiB write, QD32 (us)", "lower"),
    "handshakes": ("handshakes (NBD_OPT_GO) per second", "higher"),
    "cpu-handshake": ("server CPU per handshake (us)", "lower"),
    "startup": ("start-up to accepting socket (ms)", "lower"),
    "rss": ("idle RSS after one handshake (KiB)", "lower"),
}

PAIRS = [("ours", "qsd"), ("ours", "nbdkit"), ("nbdkit", "qsd")]
SHORT = {"ours": "ours", "qsd": "QSD", "nbdkit": "nbdkit"}


# ---------------------------------------------------------------- set-up

def parse_size(text):
    m = re.fullmatch(r"(\d+)([KMGT]?)(i?B)?", text.strip(), re.I)
    if not m:
        raise argparse.ArgumentTypeError(f"bad size {text!r} (e.g. 1G, 512M)")
    return int(m.group(1)) << (10 * " KMGT".index((m.group(2) or " ").upper()))


def need_tool(path, package):
    found = shutil.which(path)
    if not found:
        raise BenchError(f"{path} not found: install the Debian package {package} "
                         "(or pass its path)")
    return found


def version_of(argv, pattern):
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout
    except OSError:
        return None
    m = re.search(pattern, out)
    return m.group(1) if m else None


def make_servers(a):
    servers = []
    for key in a.servers:
        if key == "ours":
            if not os.access(a.ours, os.X_OK):
                raise BenchError(f"{a.ours} not found: run 'cargo build --release -p qsd' "
                                 "or leave ours out with --servers qsd,nbdkit")
            servers.append(Server("ours", "qsd (ours)", a.ours, qsd_argv))
        elif key == "qsd":
            b = need_tool(a.qsd, "qemu-utils")
            v = version_of([b, "--version"], r"version (\S+)")
            servers.append(Server("qsd", f"QSD {v or '?'}", b, qsd_argv))
        elif key == "nbdkit":
            b = need_tool(a.nbdkit, "nbdkit")
            v = version_of([b, "--version"], r"nbdkit (\S+)")
            if subprocess.run([b, "--dump-plugin", "file"], capture_output=True).returncode:
                raise BenchError(f"{b} has no file plugin: install the Debian package nbdkit")
            servers.append(Server("nbdkit", f"nbdkit {v or '?'}", b, nbdkit_argv))
        else:
            raise BenchError(f"unknown server {key!r}: choose from ours, qsd, nbdkit")
    return servers


def check_drivers(a, groups):
    needs = {g[2] for g in groups}
    if "fio" in needs:
        a.fio = need_tool(a.fio, "fio")
        eng = subprocess.run([a.fio, "--enghelp=nbd"], capture_output=True, text=True)
        if eng.returncode or "uri" not in eng.stdout:
            raise BenchError(f"{a.fio} has no nbd ioengine (Debian's fio 3.33 has it)")
    if "nbdcopy" in needs:
        a.nbdcopy = need_tool(a.nbdcopy, "libnbd-bin")


def make_image(path, size):
    """A fully allocated file of random data."""
    chunk = 4 * MiB
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(chunk, left)
            f.write(os.urandom(n))
            left -= n


def machine():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({model}), Linux {platform.release()}"


class Ctx:
    pass


# ---------------------------------------------------------------- report

def fmt(v):
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def cell(vals, f=fmt):
    if not vals:
        return "-"
    if len(vals) == 1:
        return f(vals[0])
    return f"{f(statistics.median(vals))} [{f(min(vals))}-{f(max(vals))}]"


def table(servers, results):
    keys = [s.key for s in servers]
    pairs = [p for p in PAIRS if p[0] in keys and p[1] in keys]
    head = ["metric"] + [s.label for s in servers] + [f"{SHORT[x]}/{SHORT[y]}" for x, y in pairs] + ["better"]
    rows = []
    for m, (label, better) in METRICS.items():
        if not any(results[k].get(m) for k in keys):
            continue
        row = [label] + [cell(results[k].get(m, [])) for k in keys]
        for x, y in pairs:
            xs, ys = results[x].get(m, []), results[y].get(m, [])
            ratios = [u / v for u, v in zip(xs, ys) if v]
            row.append(cell(ratios, lambda v: f"{v:.2f}"))
        rows.append(row + [better])
    return head, rows


def print_plain(head, rows):
    w = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    for r in [head] + rows:
        print("  ".join(c.ljust(w[i]) if i in (0, len(r) - 1) else c.rjust(w[i])
                        for i, c in enumerate(r)).rstrip())


def print_markdown(head, rows):
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join(["---"] + ["---:"] * (len(head) - 2) + ["---"]) + "|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\nusage:")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5.0, help="per fio job, nbdcopy series and handshake loop")
    ap.add_argument("--size", type=parse_size, default=parse_size("1G"), help="image size (default 1G)")
    ap.add_argument("--servers", default="ours,qsd,nbdkit", help="comma-separated subset of ours,qsd,nbdkit")
    ap.add_argument("--metrics", default=",".join(g[0] for g in GROUPS),
                    help="comma-separated subset of: " + ",".join(g[0] for g in GROUPS))
    ap.add_argument("--cpu-requests", type=int, default=100000, help="requests per CPU-time run")
    ap.add_argument("--ours", default=os.path.join(ROOT, "target", "release", "qsd"))
    ap.add_argument("--qsd", default="qemu-storage-daemon")
    ap.add_argument("--nbdkit", default="nbdkit")
    ap.add_argument("--fio", default="fio")
    ap.add_argument("--nbdcopy", default="nbdcopy")
    ap.add_argument("--aio", help="aio= for the file blockdev of ours and QSD (default: theirs)")
    ap.add_argument("--max-connections", type=int, help="max-connections= for ours and QSD")
    ap.add_argument("--dir", default="/dev/shm", help="where the image goes (tmpfs)")
    ap.add_argument("--markdown", action="store_true", help="also print the table as Markdown")
    ap.add_argument("--json", help="write all per-round values to this file")
    a = ap.parse_args()
    a.servers = [s.strip() for s in a.servers.split(",") if s.strip()]
    wanted = [s.strip() for s in a.metrics.split(",") if s.strip()]
    groups = [g for g in GROUPS if g[0] in wanted]
    unknown = set(wanted) - {g[0] for g in GROUPS}

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda n, _f: sys.exit(128 + n))
    ctx = Ctx()
    ctx.args, ctx.size = a, a.size
    dirs = []
    try:
        if unknown:
            raise BenchError(f"unknown metrics: {', '.join(sorted(unknown))}")
        if a.rounds < 1 or a.seconds <= 0 or a.size < 1 << 20 or a.size % 4096:
            raise BenchError("need --rounds >= 1, --seconds > 0, --size >= 1M and a multiple of 4K")
        servers = make_servers(a)
        if not servers or not groups:
            raise BenchError("nothing to do: --servers and --metrics need at least one entry")
        check_drivers(a, groups)
        copies = 2 if any(g[0] == "nbdcopy-write" for g in groups) else 1
        if shutil.disk_usage(a.dir).free < copies * a.size + 64 * MiB:
            raise BenchError(f"not enough space in {a.dir} for {copies} x {a.size} bytes")
        ctx.rundir = tempfile.mkdtemp(prefix="nbd-bench-")  # short path for sockets
        dirs.append(ctx.rundir)
        imgdir = tempfile.mkdtemp(prefix="nbd-bench-", dir=a.dir)
        dirs.append(imgdir)
        ctx.image = os.path.join(imgdir, "disk.img")
        ctx.source = os.path.join(imgdir, "source.img")
        make_image(ctx.image, a.size)
        if copies == 2:
            shutil.copyfile(ctx.image, ctx.source)

        started = datetime.datetime.now()
        results = {s.key: {} for s in servers}
        for rnd in range(a.rounds):
            shift = rnd % len(servers)
            order = servers[shift:] + servers[:shift]
            for name, fn, _ in groups:
                for srv in order:
                    r = start_server(srv, ctx)
                    try:
                        val = fn(ctx, r)
                    except (BenchError, OSError, nbdclient.NbdError) as e:
                        died = r.p.poll()
                        why = f" (the server exited with status {died})" if died is not None else ""
                        raise BenchError(f"{name} on {srv.label} failed{why}: {e}") from None
                    finally:
                        stop(r.p)
                    for m, v in (val if isinstance(val, dict) else {name: val}).items():
                        results[srv.key].setdefault(m, []).append(v)
                shown = {m for m in METRICS if m == name or (isinstance(val, dict) and m in val)}
                print(f"round {rnd + 1}/{a.rounds} {name}: " + "; ".join(
                    f"{s.label} " + ", ".join(f"{m}={fmt(results[s.key][m][-1])}" for m in METRICS if m in shown)
                    for s in servers), file=sys.stderr, flush=True)
    except BenchError as e:
        raise SystemExit(f"nbd.py: {e}") from None
    finally:
        stop_all()
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)

    cmd = "scripts/bench/nbd.py " + shlex.join(sys.argv[1:])
    desc = (f"{started:%Y-%m-%d}, {machine()}; {a.rounds} rounds, {a.seconds:g} s per fio job, "
            f"image {a.size // MiB} MiB on {a.dir}"
            + (f", aio={a.aio} for ours and QSD" if a.aio else "")
            + (f", max-connections={a.max_connections}" if a.max_connections else ""))
    flags = "; ".join(f"{s.label}: {nbdclient.describe_flags(s.flags)}" for s in servers)
    head, rows = table(servers, results)
    print()
    print(desc)
    print("advertised: " + flags)
    print("values: median [min-max] over rounds; ratios: median [min-max] of per-round ratios")
    print()
    print_plain(head, rows)
    if a.markdown:
        print()
        print(f"Measured {desc}, with `{cmd}`.")
        print("Values: median [min-max] over rounds; ratios: median [min-max] of the per-round ratios.")
        print(f"Advertised transmission flags: {flags}.")
        print()
        print_markdown(head, rows)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"command": cmd, "description": desc,
                       "servers": {s.key: s.label for s in servers}, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
