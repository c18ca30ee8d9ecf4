#!/usr/bin/env python3
"""A minimal raw NBD client that records every message it exchanges.

Used by capture.py; see its docstring for the recording format.
"""
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time


IHAVEOPT = 0x49484156454F5054
REP_MAGIC = 0x3E889045565A9
REQ_MAGIC = 0x25609513
EXT_REQ_MAGIC = 0x21E41C71
SIMPLE_MAGIC = 0x67446698
STRUCT_MAGIC = 0x668E33EF
EXT_REPLY_MAGIC = 0x6E8A278C

OPT_EXPORT_NAME, OPT_ABORT, OPT_LIST, OPT_STARTTLS, OPT_INFO, OPT_GO = 1, 2, 3, 5, 6, 7
OPT_STRUCTURED_REPLY, OPT_LIST_META, OPT_SET_META, OPT_EXTENDED = 8, 9, 10, 11

CMD_READ, CMD_WRITE, CMD_DISC, CMD_FLUSH, CMD_TRIM, CMD_CACHE = 0, 1, 2, 3, 4, 5
CMD_WRITE_ZEROES, CMD_BLOCK_STATUS = 6, 7


class Closed(Exception):
    pass


class Conn:
    def __init__(self, path, out):
        self.s = socket.socket(socket.AF_UNIX)
        self.s.connect(path)
        self.s.settimeout(5)
        self.out = out
        self.ext = False  # extended headers negotiated
        self.structured = False

    def send(self, data):
        self.out.append("C " + data.hex())
        try:
            self.s.sendall(data)
        except (ConnectionResetError, BrokenPipeError):
            self.out.append("S EOF")
            raise Closed("reset")

    def recv_exact(self, n, acc):
        while len(acc) < n:
            try:
                c = self.s.recv(n - len(acc))
            except socket.timeout:
                raise Closed("timeout")
            except (ConnectionResetError, BrokenPipeError):
                raise Closed("reset")
            if not c:
                raise Closed("eof")
            acc += c
        return acc

    def recv_msg(self, head, payload_len_of):
        """Receive a message: `head` bytes, then payload_len_of(head) bytes."""
        try:
            b = self.recv_exact(head, b"")
            b = self.recv_exact(head + payload_len_of(b), b)
        except Closed:
            self.out.append("S EOF")
            raise
        self.out.append("S " + b.hex())
        return b

    def expect_eof(self):
        """Read until the server closes; record anything it sent first."""
        data = b""
        while True:
            try:
                c = self.s.recv(65536)
            except socket.timeout:
                self.out.append("S " + data.hex() + " (then no EOF within 5s)")
                return
            except ConnectionResetError:
                c = b""
            if not c:
                break
            data += c
        if data:
            self.out.append("S " + data.hex())
        self.out.append("S EOF")

    # handshake
    def greeting(self):
        return self.recv_msg(18, lambda b: 0)

    def flags(self, f):
        self.send(struct.pack(">I", f))

    def opt_raw(self, data):
        self.send(data)

    def opt(self, option, data=b""):
        self.send(struct.pack(">QII", IHAVEOPT, option, len(data)) + data)

    def rep(self):
        b = self.recv_msg(20, lambda b: struct.unpack(">I", b[16:20])[0])
        return struct.unpack(">I", b[12:16])[0], b[20:]

    def reps(self):
        """Option replies up to the final one (ACK or error)."""
        out = []
        while True:
            t, d = self.rep()
            out.append((t, d))
            if t == 1 or t & 0x80000000:
                return out

    def export_name_reply(self, no_zeroes):
        return self.recv_msg(10 if no_zeroes else 134, lambda b: 0)

    # transmission
    def request(self, typ, flags=0, cookie=1, offset=0, length=0, payload=b""):
        if self.ext:
            hdr = struct.pack(">IHHQQQ", EXT_REQ_MAGIC, flags, typ, cookie, offset, length)
        else:
            hdr = struct.pack(">IHHQQI", REQ_MAGIC, flags, typ, cookie, offset, length)
        self.send(hdr + payload)

    def reply(self, read_len=0):
        """One reply message; read_len is the data that follows a successful
        simple reply to READ."""
        b = self.recv_exact_noeof(4)
        magic = struct.unpack(">I", b)[0]
        if magic == SIMPLE_MAGIC:
            def plen(h):
                err = struct.unpack(">I", h[4:8])[0]
                return read_len if err == 0 else 0
            return self.finish(b, 16, plen)
        if magic == STRUCT_MAGIC:
            return self.finish(b, 20, lambda h: struct.unpack(">I", h[16:20])[0])
        if magic == EXT_REPLY_MAGIC:
            return self.finish(b, 32, lambda h: struct.unpack(">Q", h[24:32])[0])
        self.out.append("S UNKNOWN " + b.hex())
        raise Closed("bad magic")

    def recv_exact_noeof(self, n):
        try:
            return self.recv_exact(n, b"")
        except Closed:
            self.out.append("S EOF")
            raise

    def finish(self, first, head, plen):
        try:
            b = self.recv_exact(head, first)
            b = self.recv_exact(head + plen(b), b)
        except Closed:
            self.out.append("S EOF")
            raise
        self.out.append("S " + b.hex())
        return b

    def chunks(self):
        """Reply chunks up to the one with the DONE flag (or a simple reply)."""
        out = []
        while True:
            b = self.reply()
            out.append(b)
            magic = struct.unpack(">I", b[:4])[0]
            if magic == SIMPLE_MAGIC or struct.unpack(">H", b[4:6])[0] & 1:
                return out


def name_data(name, infos=()):
    n = name.encode()
    return struct.pack(">I", len(n)) + n + struct.pack(">H", len(infos)) + b"".join(
        struct.pack(">H", i) for i in infos)


def meta_data(name, queries):
    n = name.encode()
    d = struct.pack(">I", len(n)) + n + struct.pack(">I", len(queries))
    for q in queries:
        q = q.encode()
        d += struct.pack(">I", len(q)) + q
    return d


def start_fixed(c, flags=3):
    c.greeting()
    c.flags(flags)


def go(c, name="x", infos=()):
    c.opt(OPT_GO, name_data(name, infos))
    return c.reps()


# Scenario registries, in capture order (order matters: scenarios share the
# daemon, e.g. writes dirty the exported bitmap).
SCENARIOS = []


def scenario(fn):
    SCENARIOS.append(fn)
    return fn


TLS_SCENARIOS = []


def tls_scenario(fn):
    TLS_SCENARIOS.append(fn)
    return fn
