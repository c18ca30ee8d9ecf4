#!/usr/bin/env python3
"""Capture golden NBD byte sequences from the installed qemu-storage-daemon.

usage: capture.py [QSD-BINARY] > qsd-10.0.2.golden

Starts one qemu-storage-daemon with a QMP monitor, sets up exports over QMP,
then runs a list of scenarios. Each scenario opens a fresh connection on the
daemon's NBD unix socket, speaks raw NBD and records every message in order:

    = NAME                 start of a scenario
    # text                 comment
    C <hex>                bytes the client sent (one message)
    S <hex>                bytes the server sent (one message, framed by the
                           protocol: greeting, option reply, export-name
                           reply, simple reply + data, chunk + payload)
    S EOF                  the server closed the connection

Scenarios live in scenarios_handshake.py and scenarios_transmission.py,
the recording client in nbd_client.py.

The Rust tests in ../tests_golden.rs parse the output file (include_str!) and check
our encoders produce the server bytes and our decoders accept the client
bytes. The script is the record of how the file was made; run it again to
refresh the file after a QEMU upgrade.

Exports set up:
  x      null-co 1 GiB (read-zeroes=on), writable, description "golden test
         export", dirty bitmap b0 exported, allocation-depth on
  plain  null-co 64 MiB, read-only, read-zeroes=on, nothing else
  tls    (second daemon, on the socket nbd-tls.sock, with tls-creds-psk)
         null-co 1 MiB named "t": everything before STARTTLS
  align  blkdebug align=512 over null-co 1 MiB, read-only (request alignment
         512, used for NBD_INFO_BLOCK_SIZE and NBD_REP_ERR_BLOCK_SIZE_REQD)
"""
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nbd_client import *  # noqa: E402,F401,F403  (Conn, constants, helpers)

QSD = sys.argv[1] if len(sys.argv) > 1 else "qemu-storage-daemon"


import scenarios_handshake  # noqa: E402,F401  (registers scenarios)
import scenarios_transmission  # noqa: E402,F401


def qmp(path, cmds):
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    f = s.makefile("rw")
    f.readline()
    for name, args in [("qmp_capabilities", None)] + cmds:
        msg = {"execute": name}
        if args is not None:
            msg["arguments"] = args
        f.write(json.dumps(msg) + "\n")
        f.flush()
        while True:
            r = json.loads(f.readline())
            if "event" in r:
                continue
            if "error" in r:
                raise SystemExit("QMP %s failed: %s" % (name, r))
            break
    s.close()


def main():
    d = tempfile.mkdtemp()
    qsock = os.path.join(d, "qmp.sock")
    nsock = os.path.join(d, "nbd.sock")
    p = subprocess.Popen([
        QSD,
        "--chardev", "socket,id=m,path=%s,server=on,wait=off" % qsock,
        "--monitor", "chardev=m",
        "--blockdev", "driver=null-co,node-name=n,size=1073741824,read-zeroes=on",
        "--blockdev", "driver=null-co,node-name=p,size=67108864,read-zeroes=on",
        "--blockdev", "driver=blkdebug,node-name=a,align=512,image.driver=null-co,"
                      "image.size=1048576",
        "--nbd-server", "addr.type=unix,addr.path=%s" % nsock,
    ])
    try:
        for _ in range(200):
            if os.path.exists(qsock) and os.path.exists(nsock):
                break
            time.sleep(0.05)
        qmp(qsock, [
            ("block-dirty-bitmap-add", {"node": "n", "name": "b0"}),
            ("block-export-add", {"type": "nbd", "id": "ex", "node-name": "n", "name": "x",
                                  "description": "golden test export", "writable": True,
                                  "bitmaps": ["b0"], "allocation-depth": True}),
            ("block-export-add", {"type": "nbd", "id": "ep", "node-name": "p",
                                  "name": "plain"}),
            ("block-export-add", {"type": "nbd", "id": "ea", "node-name": "a",
                                  "name": "align"}),
        ])
        ver = subprocess.run([QSD, "--version"], capture_output=True, text=True).stdout
        print("# Captured by capture.py from: " + ver.splitlines()[0])
        print("# Exports: see capture.py's docstring.")
        tls_dir = os.path.join(d, "psk")
        os.mkdir(tls_dir)
        with open(os.path.join(tls_dir, "keys.psk"), "w") as f:
            f.write("qemu:" + "ab" * 16 + "\n")
        tsock = os.path.join(d, "nbd-tls.sock")
        p2 = subprocess.Popen([
            QSD,
            "--object", "tls-creds-psk,id=tls0,endpoint=server,dir=%s" % tls_dir,
            "--blockdev", "driver=null-co,node-name=t,size=1048576",
            "--nbd-server", "addr.type=unix,addr.path=%s,tls-creds=tls0" % tsock,
            "--export", "type=nbd,id=et,node-name=t,name=t",
        ])
        try:
            for _ in range(200):
                if os.path.exists(tsock):
                    break
                time.sleep(0.05)
            for path, scenarios in ((nsock, SCENARIOS), (tsock, TLS_SCENARIOS)):
                for fn in scenarios:
                    out = []
                    c = Conn(path, out)
                    try:
                        fn(c)
                    except Closed:
                        pass
                    c.s.close()
                    print("= " + fn.__name__)
                    print("# " + fn.__doc__)
                    for line in out:
                        print(line)
        finally:
            p2.terminate()
            p2.wait()
    finally:
        p.terminate()
        p.wait()


if __name__ == "__main__":
    main()
