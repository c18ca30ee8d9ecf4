#!/usr/bin/env python3
"""qcow2 data-plane benchmark: qsd against qemu-storage-daemon over NBD.

Both daemons get the same command line, a qcow2 node on a file node on
tmpfs exported writable over a UNIX socket (export name "bench"):

  --blockdev driver=file,node-name=file,filename=IMG
  --blockdev driver=qcow2,node-name=disk,file=file
  --nbd-server addr.type=unix,addr.path=SOCK
  --export type=nbd,id=export,node-name=disk,name=bench,writable=on

Images (64 KiB clusters, made by qemu-img, the default qcow2 options):

  sparse    a fresh empty image (qemu-img create), new for every single
            measurement that writes to it
  prealloc  a fresh image with preallocation=metadata (every L2 entry
            points at a cluster; the clusters are sparse in the file), new
            for every single measurement
  data      an image whose every cluster holds random data (qemu-img
            convert of random bytes), made once and only read

Method.  A run is --rounds rounds.  In each round every measurement is
taken on each daemon in turn, the order alternating from round to round.
Each daemon is started FRESH for every single measurement (and stopped
right after it), so no measurement sees caches or threads of another.
fio's nbd engine drives the I/O (one connection):

  rand-write-alloc      4 KiB random writes at queue depth 32 on a sparse
                        image of --alloc-size (16 GiB) virtual size, a
                        fixed count of --alloc-requests: nearly every
                        write allocates a cluster (copy-on-write of the
                        rest of it), so both daemons do the same work
  rand-write-prealloc   4 KiB random writes, QD32, --seconds, prealloc
  rand-read             4 KiB random reads, QD32, --seconds, data
  seq-write-sparse      1 MiB sequential writes, QD8, the whole image once
                        (sparse: every cluster is allocated on the way)
  seq-write-prealloc    the same on a prealloc image
  seq-read-sparse       1 MiB sequential reads, QD8, --seconds, of an
                        empty sparse image: the daemon answers with NBD
                        hole chunks (structured replies) instead of data;
                        also the server's CPU time (utime+stime from
                        /proc/PID/stat) per request over the same run
  seq-read              1 MiB sequential reads, QD8, --seconds, data

For every figure the table gives the median over rounds with the min-max
in brackets, and the median of the per-round ratios ours/QSD, again with
min-max.  On the project's 2-core machines ratios within about +-15 % are
noise; look at the spread before drawing conclusions.

Needs: fio (with the nbd engine), qemu-img and qemu-storage-daemon
(qemu-utils).  Shares its helpers with scripts/bench/nbd.py.

usage: scripts/bench/qcow2.py [--rounds N] [--seconds S] [--size SIZE]
           [--alloc-size SIZE] [--alloc-requests N] [--metrics LIST]
           [--ours PATH] [--qsd PATH] [--fio PATH] [--dir DIR]
           [--markdown] [--json FILE]
"""
import argparse
import datetime
import json
import os
import shlex
import shutil
import signal
import sys
import tempfile

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nbd as common  # noqa: E402
from nbd import BenchError, MiB  # noqa: E402

CLUSTER = 65536


def qcow2_argv(binary, image, sock, _a):
    return [binary,
            "--blockdev", f"driver=file,node-name=file,filename={image}",
            "--blockdev", "driver=qcow2,node-name=disk,file=file",
            "--nbd-server", f"addr.type=unix,addr.path={sock}",
            "--export", f"type=nbd,id=export,node-name=disk,name={common.EXPORT},writable=on"]


def qemu_img(*args):
    common.run_tool(["qemu-img", *args], 600)


def fresh(ctx, kind, size):
    """A new image of `kind` (sparse or prealloc) for one measurement."""
    path = os.path.join(ctx.imgdir, "fresh.qcow2")
    if os.path.exists(path):
        os.unlink(path)
    opts = f"cluster_size={CLUSTER}"
    if kind == "prealloc":
        opts += ",preallocation=metadata"
    qemu_img("create", "-q", "-f", "qcow2", "-o", opts, path, str(size))
    return path


# Each measurement: (image kind, virtual size attribute, function).
def m_rand_write_alloc(ctx, r):
    res = common.fio(ctx, r, "randwrite", 4096, 32, requests=ctx.args.alloc_requests)
    return res["iops"]


def m_iops(rw):
    return lambda ctx, r: common.fio(ctx, r, rw, 4096, 32, seconds=ctx.args.seconds)["iops"]


def m_bw(rw):
    return lambda ctx, r: common.fio(ctx, r, rw, MiB, 8, seconds=ctx.args.seconds)["bw_bytes"] / MiB


def m_bw_cpu(rw, name):
    """MiB/s, and the server's CPU time per request (us) over the same run."""
    def measure(ctx, r):
        c0 = common.cpu_seconds(r.pid)
        res = common.fio(ctx, r, rw, MiB, 8, seconds=ctx.args.seconds)
        c1 = common.cpu_seconds(r.pid)
        return {name: res["bw_bytes"] / MiB,
                name + "-cpu": (c1 - c0) * 1e6 / max(res["total_ios"], 1)}
    return measure


def m_write_once(ctx, r):
    res = common.fio(ctx, r, "write", MiB, 8, requests=ctx.size // MiB)
    return res["bw_bytes"] / MiB


GROUPS = [
    ("rand-write-alloc", "sparse", "alloc_size", m_rand_write_alloc),
    ("rand-write-prealloc", "prealloc", "size", m_iops("randwrite")),
    ("rand-read", "data", "size", m_iops("randread")),
    ("seq-write-sparse", "sparse", "size", m_write_once),
    ("seq-write-prealloc", "prealloc", "size", m_write_once),
    ("seq-read-sparse", "sparse", "size", m_bw_cpu("read", "seq-read-sparse")),
    ("seq-read", "data", "size", m_bw("read")),
]

METRICS = {
    "rand-write-alloc": ("random write 4 KiB QD32, allocating, sparse (IOPS)", "higher"),
    "rand-write-prealloc": ("random write 4 KiB QD32, preallocated (IOPS)", "higher"),
    "rand-read": ("random read 4 KiB QD32, allocated (IOPS)", "higher"),
    "seq-write-sparse": ("sequential write 1 MiB QD8, sparse (MiB/s)", "higher"),
    "seq-write-prealloc": ("sequential write 1 MiB QD8, preallocated (MiB/s)", "higher"),
    "seq-read-sparse": ("sequential read 1 MiB QD8, empty sparse (MiB/s)", "higher"),
    "seq-read-sparse-cpu": ("server CPU per sparse 1 MiB read (us)", "lower"),
    "seq-read": ("sequential read 1 MiB QD8, allocated (MiB/s)", "higher"),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\nusage:")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5.0, help="per time-based fio job")
    ap.add_argument("--size", type=common.parse_size, default=common.parse_size("1G"),
                    help="virtual size of the images (default 1G)")
    ap.add_argument("--alloc-size", type=common.parse_size, default=common.parse_size("16G"),
                    help="virtual size of the image of rand-write-alloc (default 16G)")
    ap.add_argument("--alloc-requests", type=int, default=40000,
                    help="writes of rand-write-alloc (default 40000)")
    ap.add_argument("--metrics", default=",".join(g[0] for g in GROUPS),
                    help="comma-separated subset of: " + ",".join(g[0] for g in GROUPS))
    ap.add_argument("--ours", default=os.path.join(common.ROOT, "target", "release", "qsd"))
    ap.add_argument("--qsd", default="qemu-storage-daemon")
    ap.add_argument("--fio", default="fio")
    ap.add_argument("--dir", default="/dev/shm", help="where the images go (tmpfs)")
    ap.add_argument("--markdown", action="store_true", help="also print the table as Markdown")
    ap.add_argument("--json", help="write all per-round values to this file")
    a = ap.parse_args()
    wanted = [s.strip() for s in a.metrics.split(",") if s.strip()]
    groups = [g for g in GROUPS if g[0] in wanted]
    unknown = set(wanted) - {g[0] for g in GROUPS}

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda n, _f: sys.exit(128 + n))
    ctx = common.Ctx()
    ctx.args = a
    dirs = []
    try:
        if unknown:
            raise BenchError(f"unknown metrics: {', '.join(sorted(unknown))}")
        if a.rounds < 1 or a.seconds <= 0 or a.size < MiB or a.size % MiB:
            raise BenchError("need --rounds >= 1, --seconds > 0, --size >= 1M and a multiple of 1M")
        if not os.access(a.ours, os.X_OK):
            raise BenchError(f"{a.ours} not found: run 'cargo build --release -p qsd'")
        qsd = common.need_tool(a.qsd, "qemu-utils")
        v = common.version_of([qsd, "--version"], r"version (\S+)")
        servers = [common.Server("ours", "qsd (ours)", a.ours, qcow2_argv),
                   common.Server("qsd", f"QSD {v or '?'}", qsd, qcow2_argv)]
        common.need_tool("qemu-img", "qemu-utils")
        common.check_drivers(a, [(None, None, "fio")])
        alloc_space = min(a.alloc_size, a.alloc_requests * CLUSTER)
        if shutil.disk_usage(a.dir).free < 2 * a.size + alloc_space + 64 * MiB:
            raise BenchError(f"not enough space in {a.dir}")
        ctx.rundir = tempfile.mkdtemp(prefix="qcow2-bench-")
        dirs.append(ctx.rundir)
        ctx.imgdir = tempfile.mkdtemp(prefix="qcow2-bench-", dir=a.dir)
        dirs.append(ctx.imgdir)
        data = os.path.join(ctx.imgdir, "data.qcow2")
        if any(g[1] == "data" for g in groups):
            raw = os.path.join(ctx.imgdir, "data.raw")
            common.make_image(raw, a.size)
            qemu_img("convert", "-f", "raw", "-O", "qcow2", "-o", f"cluster_size={CLUSTER}", raw, data)
            os.unlink(raw)

        started = datetime.datetime.now()
        results = {s.key: {} for s in servers}
        for rnd in range(a.rounds):
            order = servers if rnd % 2 == 0 else servers[::-1]
            for name, kind, size_attr, fn in groups:
                for srv in order:
                    ctx.size = getattr(a, size_attr)
                    ctx.image = data if kind == "data" else fresh(ctx, kind, ctx.size)
                    r = common.start_server(srv, ctx)
                    try:
                        val = fn(ctx, r)
                    except (BenchError, OSError, common.nbdclient.NbdError) as e:
                        died = r.p.poll()
                        why = f" (the server exited with status {died})" if died is not None else ""
                        raise BenchError(f"{name} on {srv.label} failed{why}: {e}") from None
                    finally:
                        common.stop(r.p)
                    for m, v in (val if isinstance(val, dict) else {name: val}).items():
                        results[srv.key].setdefault(m, []).append(v)
                shown = [m for m in METRICS if m in results[servers[0].key] and m.startswith(name)]
                print(f"round {rnd + 1}/{a.rounds} {name}: " + "; ".join(
                    f"{s.label} " + ", ".join(common.fmt(results[s.key][m][-1]) for m in shown)
                    for s in servers), file=sys.stderr, flush=True)
    except BenchError as e:
        raise SystemExit(f"qcow2.py: {e}") from None
    finally:
        common.stop_all()
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)

    cmd = "scripts/bench/qcow2.py " + shlex.join(sys.argv[1:])
    desc = (f"{started:%Y-%m-%d}, {common.machine()}; {a.rounds} rounds, {a.seconds:g} s per "
            f"time-based fio job, images of {a.size // MiB} MiB ({a.alloc_size // MiB} MiB and "
            f"{a.alloc_requests} writes for rand-write-alloc), 64 KiB clusters, on {a.dir}")
    common.METRICS.clear()
    common.METRICS.update(METRICS)
    head, rows = common.table(servers, results)
    print()
    print(desc)
    print("values: median [min-max] over rounds; ratios: median [min-max] of per-round ratios")
    print()
    common.print_plain(head, rows)
    if a.markdown:
        print()
        print(f"Measured {desc}, with `{cmd}`.")
        print()
        common.print_markdown(head, rows)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"command": cmd, "description": desc,
                       "servers": {s.key: s.label for s in servers}, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
