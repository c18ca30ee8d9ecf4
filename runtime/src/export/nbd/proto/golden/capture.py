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

The Rust tests in ../tests_golden.rs parse this file (include_str!) and check
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

QSD = sys.argv[1] if len(sys.argv) > 1 else "qemu-storage-daemon"

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


SCENARIOS = []


def scenario(fn):
    SCENARIOS.append(fn)
    return fn


@scenario
def greeting_and_abort(c):
    "greeting, client flags FIXED_NEWSTYLE|NO_ZEROES, NBD_OPT_ABORT"
    start_fixed(c)
    c.opt(OPT_ABORT)
    c.reps()
    c.expect_eof()


@scenario
def abort_with_data(c):
    "NBD_OPT_ABORT carrying 3 data bytes: still ACKed"
    start_fixed(c)
    c.opt(OPT_ABORT, b"abc")
    c.reps()
    c.expect_eof()


@scenario
def unknown_client_flags(c):
    "client flags 0x4 (unknown): server drops the connection"
    start_fixed(c, 4 | 1)
    c.expect_eof()


@scenario
def list_exports(c):
    "NBD_OPT_LIST: one NBD_REP_SERVER per export (name + description), ACK"
    start_fixed(c)
    c.opt(OPT_LIST)
    c.reps()


@scenario
def list_with_data(c):
    "NBD_OPT_LIST with data: NBD_REP_ERR_INVALID"
    start_fixed(c)
    c.opt(OPT_LIST, b"xy")
    c.reps()


@scenario
def unknown_option(c):
    "option 99 (unknown), with 4 data bytes: NBD_REP_ERR_UNSUP"
    start_fixed(c)
    c.opt(99, b"abcd")
    c.reps()
    c.opt(4)
    c.reps()


@scenario
def starttls_without_tls(c):
    "NBD_OPT_STARTTLS on a server without tls-creds: NBD_REP_ERR_POLICY; with data: ERR_INVALID"
    start_fixed(c)
    c.opt(OPT_STARTTLS)
    c.reps()
    c.opt(OPT_STARTTLS, b"z")
    c.reps()


@scenario
def structured_twice(c):
    "NBD_OPT_STRUCTURED_REPLY: ACK, then again: ERR_INVALID; with data: ERR_INVALID"
    start_fixed(c)
    c.opt(OPT_STRUCTURED_REPLY)
    c.reps()
    c.opt(OPT_STRUCTURED_REPLY)
    c.reps()
    c.opt(OPT_STRUCTURED_REPLY, b"q")
    c.reps()


@scenario
def extended_then_structured(c):
    "NBD_OPT_EXTENDED_HEADERS: ACK; again: ERR_INVALID; STRUCTURED_REPLY after: ERR_EXT_HEADER_REQD"
    start_fixed(c)
    c.opt(OPT_EXTENDED)
    c.reps()
    c.opt(OPT_EXTENDED)
    c.reps()
    c.opt(OPT_STRUCTURED_REPLY)
    c.reps()
    c.opt(OPT_EXTENDED, b"qq")
    c.reps()


@scenario
def structured_then_extended(c):
    "STRUCTURED_REPLY then EXTENDED_HEADERS: both ACK"
    start_fixed(c)
    c.opt(OPT_STRUCTURED_REPLY)
    c.reps()
    c.opt(OPT_EXTENDED)
    c.reps()


@scenario
def set_meta_without_structured(c):
    "NBD_OPT_SET_META_CONTEXT before structured replies: ERR_INVALID"
    start_fixed(c)
    c.opt(OPT_SET_META, meta_data("x", ["base:allocation"]))
    c.reps()


@scenario
def list_meta_without_structured(c):
    "NBD_OPT_LIST_META_CONTEXT before structured replies, no queries: all contexts"
    start_fixed(c)
    c.opt(OPT_LIST_META, meta_data("x", []))
    c.reps()


@scenario
def list_meta_queries(c):
    "NBD_OPT_LIST_META_CONTEXT with wildcard and specific queries"
    start_fixed(c)
    c.opt(OPT_STRUCTURED_REPLY)
    c.reps()
    for qs in (["qemu:"], ["base:"], ["qemu:dirty-bitmap:"], ["qemu:allocation-depth"],
               ["qemu:dirty-bitmap:b0"], ["qemu:dirty-bitmap:nope"], ["other:thing"],
               ["base:allocation", "base:allocation"], ["qemu:bogus"], ["noColon"]):
        c.opt(OPT_LIST_META, meta_data("x", qs))
        c.reps()
    c.opt(OPT_LIST_META, meta_data("plain", []))
    c.reps()
    c.opt(OPT_LIST_META, meta_data("plain", ["qemu:"]))
    c.reps()
    c.opt(OPT_LIST_META, meta_data("nosuch", []))
    c.reps()


@scenario
def set_meta_queries(c):
    "NBD_OPT_SET_META_CONTEXT: ids 0/1/2, wildcards select nothing"
    start_fixed(c)
    c.opt(OPT_STRUCTURED_REPLY)
    c.reps()
    c.opt(OPT_SET_META, meta_data("x", ["qemu:", "base:", "qemu:dirty-bitmap:"]))
    c.reps()
    c.opt(OPT_SET_META, meta_data("x", []))
    c.reps()
    c.opt(OPT_SET_META, meta_data("x", ["qemu:dirty-bitmap:b0", "qemu:allocation-depth",
                                        "base:allocation"]))
    c.reps()


@scenario
def meta_malformed(c):
    "malformed meta-context option payloads"
    start_fixed(c)
    c.opt(OPT_STRUCTURED_REPLY)
    c.reps()
    # query length runs past the option
    d = meta_data("x", []) [:-4] + struct.pack(">I", 1) + struct.pack(">I", 50) + b"base:"
    c.opt(OPT_SET_META, d)
    c.reps()
    # query count larger than the queries sent
    d = meta_data("x", ["base:allocation"])
    d = d[:5] + struct.pack(">I", 2) + d[9:]
    c.opt(OPT_SET_META, d)
    c.reps()
    # query longer than 4096: skipped
    d = meta_data("x", []) [:-4] + struct.pack(">I", 1) + struct.pack(">I", 5000) + b"q" * 5000
    c.opt(OPT_LIST_META, d)
    c.reps()
    # NUL in a query
    c.opt(OPT_LIST_META, meta_data("x", ["base:\0allocation"]))
    c.reps()
    # export name too long
    c.opt(OPT_LIST_META, struct.pack(">I", 4097) + b"n" * 4097 + struct.pack(">I", 0))
    c.reps()
    # truncated before the query count
    c.opt(OPT_LIST_META, struct.pack(">I", 1) + b"x")
    c.reps()
    # trailing bytes after the queries: QEMU answers, but leaves the bytes
    # unread, so they are taken as the start of the next option (bad magic)
    c.opt(OPT_SET_META, meta_data("x", ["base:allocation"]) + b"zz")
    c.reps()
    c.opt(OPT_LIST)
    c.expect_eof()


@scenario
def info_requests(c):
    "NBD_OPT_INFO with NAME and BLOCK_SIZE requests; without; unknown export"
    start_fixed(c)
    c.opt(OPT_INFO, name_data("x", [1, 3, 0, 2, 77]))
    c.reps()
    c.opt(OPT_INFO, name_data("x", []))
    c.reps()
    c.opt(OPT_INFO, name_data("plain", [1]))
    c.reps()
    c.opt(OPT_INFO, name_data("nosuch", [1]))
    c.reps()
    c.opt(OPT_INFO, name_data("n" * 100, []))
    c.reps()


@scenario
def info_alignment(c):
    "NBD_OPT_INFO on an export with 512-byte request alignment"
    start_fixed(c)
    c.opt(OPT_INFO, name_data("align", []))
    c.reps()
    c.opt(OPT_INFO, name_data("align", [3]))
    c.reps()
    c.opt(OPT_STRUCTURED_REPLY)
    c.reps()
    c.opt(OPT_GO, name_data("align", []))
    c.reps()


@scenario
def info_malformed(c):
    "malformed NBD_OPT_INFO payloads"
    start_fixed(c)
    c.opt(OPT_INFO, b"")
    c.reps()
    c.opt(OPT_INFO, struct.pack(">I", 4097) + b"n" * 4097 + b"\0\0")
    c.reps()
    c.opt(OPT_INFO, struct.pack(">I", 10) + b"x")
    c.reps()
    c.opt(OPT_INFO, struct.pack(">I", 1) + b"\0" + b"\0\0")
    c.reps()
    c.opt(OPT_INFO, name_data("x", [1, 3])[:-2])
    c.reps()
    c.opt(OPT_INFO, name_data("x", []) + b"extra")
    c.reps()


@scenario
def option_too_long(c):
    "option length 32 MiB + 1: server drops the connection"
    start_fixed(c)
    c.opt_raw(struct.pack(">QII", IHAVEOPT, OPT_LIST, 32 * 1024 * 1024 + 1))
    c.expect_eof()


@scenario
def bad_option_magic(c):
    "option with a wrong magic: server drops the connection"
    start_fixed(c)
    c.opt_raw(struct.pack(">QII", IHAVEOPT ^ 1, OPT_LIST, 0))
    c.expect_eof()


@scenario
def export_name_zeroes(c):
    "NBD_OPT_EXPORT_NAME without NO_ZEROES: 134-byte reply; then a READ"
    start_fixed(c, 1)
    c.opt(OPT_EXPORT_NAME, b"plain")
    c.export_name_reply(False)
    c.request(CMD_READ, cookie=0x1122334455667788, offset=512, length=16)
    c.reply(read_len=16)
    c.request(CMD_DISC)
    c.expect_eof()


@scenario
def export_name_no_zeroes(c):
    "NBD_OPT_EXPORT_NAME with NO_ZEROES after STRUCTURED_REPLY: 10-byte reply (DF set)"
    start_fixed(c)
    c.opt(OPT_STRUCTURED_REPLY)
    c.reps()
    c.opt(OPT_EXPORT_NAME, b"x")
    c.export_name_reply(True)
    c.request(CMD_DISC)
    c.expect_eof()


@scenario
def export_name_unknown(c):
    "NBD_OPT_EXPORT_NAME with an unknown name: server drops the connection"
    start_fixed(c)
    c.opt(OPT_EXPORT_NAME, b"nosuch")
    c.expect_eof()


@scenario
def oldstyle_client_no_fixed(c):
    "client flags 0 (not fixed newstyle): any option but EXPORT_NAME drops"
    start_fixed(c, 0)
    c.opt(OPT_LIST)
    c.expect_eof()


@scenario
def simple_transmission(c):
    "simple replies: READ, WRITE, FLUSH, TRIM, WRITE_ZEROES, CACHE, bad cmd, bad flags, EOF"
    start_fixed(c)
    go(c, "x")
    c.request(CMD_READ, cookie=1, offset=0, length=8)
    c.reply(read_len=8)
    c.request(CMD_WRITE, cookie=2, offset=4096, length=4, payload=b"abcd")
    c.reply()
    c.request(CMD_WRITE, flags=1, cookie=3, offset=0, length=4, payload=b"abcd")
    c.reply()
    c.request(CMD_FLUSH, cookie=4)
    c.reply()
    c.request(CMD_TRIM, cookie=5, offset=0, length=4096)
    c.reply()
    c.request(CMD_WRITE_ZEROES, flags=2, cookie=6, offset=0, length=4096)
    c.reply()
    c.request(CMD_CACHE, cookie=7, offset=0, length=4096)
    c.reply()
    c.request(42, cookie=8)
    c.reply()
    c.request(CMD_READ, flags=0x40, cookie=9, offset=0, length=8)
    c.reply()
    c.request(CMD_READ, flags=4, cookie=10, offset=0, length=8)
    c.reply()
    c.request(CMD_READ, cookie=11, offset=1 << 30, length=8)
    c.reply()
    c.request(CMD_WRITE_ZEROES, cookie=12, offset=(1 << 30) - 512, length=4096)
    c.reply()
    c.request(CMD_BLOCK_STATUS, cookie=13, offset=0, length=4096)
    c.reply()
    c.request(CMD_READ, cookie=14, offset=0, length=0)
    c.reply()
    c.request(CMD_DISC)
    c.expect_eof()


@scenario
def read_only_errors(c):
    "read-only export: WRITE and TRIM give EPERM"
    start_fixed(c)
    go(c, "plain")
    c.request(CMD_WRITE, cookie=1, offset=0, length=4, payload=b"abcd")
    c.reply()
    c.request(CMD_TRIM, cookie=2, offset=0, length=4096)
    c.reply()
    c.request(CMD_WRITE_ZEROES, cookie=3, offset=0, length=4096)
    c.reply()
    c.request(CMD_DISC)
    c.expect_eof()


@scenario
def structured_transmission(c):
    "structured replies: READ data, READ hole, DF, BLOCK_STATUS for 3 contexts, errors"
    start_fixed(c)
    c.opt(OPT_STRUCTURED_REPLY)
    c.reps()
    c.opt(OPT_SET_META, meta_data("x", ["base:allocation", "qemu:allocation-depth",
                                        "qemu:dirty-bitmap:b0"]))
    c.reps()
    go(c, "x")
    c.request(CMD_READ, cookie=1, offset=0, length=8)
    c.chunks()
    c.request(CMD_READ, flags=4, cookie=2, offset=0, length=8)
    c.chunks()
    c.request(CMD_BLOCK_STATUS, cookie=3, offset=0, length=1 << 20)
    c.chunks()
    c.request(CMD_BLOCK_STATUS, flags=8, cookie=4, offset=4096, length=512)
    c.chunks()
    c.request(CMD_READ, cookie=5, offset=1 << 30, length=8)
    c.chunks()
    c.request(CMD_FLUSH, cookie=6)
    c.chunks()
    c.request(42, cookie=7)
    c.chunks()
    c.request(CMD_BLOCK_STATUS, cookie=8, offset=0, length=0)
    c.chunks()
    c.request(CMD_DISC)
    c.expect_eof()


@scenario
def structured_hole(c):
    "structured READ of a read-zeroes export: OFFSET_HOLE chunk"
    start_fixed(c)
    c.opt(OPT_STRUCTURED_REPLY)
    c.reps()
    go(c, "plain")
    c.request(CMD_READ, cookie=1, offset=0, length=4096)
    c.chunks()
    c.request(CMD_DISC)
    c.expect_eof()


@scenario
def extended_transmission(c):
    "extended headers: READ, WRITE with PAYLOAD_LEN, BLOCK_STATUS (64-bit extents), payload filter"
    start_fixed(c)
    c.opt(OPT_EXTENDED)
    c.reps()
    c.opt(OPT_SET_META, meta_data("x", ["base:allocation", "qemu:dirty-bitmap:b0"]))
    c.reps()
    go(c, "x")
    c.ext = True
    c.request(CMD_READ, cookie=1, offset=0, length=8)
    c.chunks()
    c.request(CMD_WRITE, flags=0x20, cookie=2, offset=0, length=4, payload=b"wxyz")
    c.chunks()
    c.request(CMD_FLUSH, cookie=3)
    c.chunks()
    c.request(CMD_BLOCK_STATUS, cookie=4, offset=0, length=1 << 20)
    c.chunks()
    # BLOCK_STATUS with a payload: effect length 4096, only context id 2
    c.request(CMD_BLOCK_STATUS, flags=0x20, cookie=5, offset=0, length=12,
              payload=struct.pack(">QI", 4096, 2))
    c.chunks()
    # payload naming an id that was not negotiated
    c.request(CMD_BLOCK_STATUS, flags=0x20, cookie=6, offset=0, length=12,
              payload=struct.pack(">QI", 4096, 1))
    c.chunks()
    # payload too short
    c.request(CMD_BLOCK_STATUS, flags=0x20, cookie=7, offset=0, length=8,
              payload=struct.pack(">Q", 4096))
    c.chunks()
    c.request(42, cookie=8)
    c.chunks()
    c.request(CMD_READ, cookie=9, offset=1 << 30, length=8)
    c.chunks()
    c.request(CMD_DISC)
    c.expect_eof()


@scenario
def extended_write_without_payload_flag(c):
    "extended headers: WRITE without NBD_CMD_FLAG_PAYLOAD_LEN"
    start_fixed(c)
    c.opt(OPT_EXTENDED)
    c.reps()
    go(c, "x")
    c.ext = True
    c.request(CMD_WRITE, cookie=1, offset=0, length=4, payload=b"wxyz")
    try:
        c.chunks()
    except Closed:
        return
    c.request(CMD_DISC)
    c.expect_eof()


@scenario
def extended_wrong_magic(c):
    "extended headers negotiated but a compact request sent: EINVAL chunk, then the server drops"
    start_fixed(c)
    c.opt(OPT_EXTENDED)
    c.reps()
    go(c, "x")
    c.send(struct.pack(">IHHQQI", REQ_MAGIC, 0, CMD_READ, 1, 0, 8) + b"\0" * 4)
    c.expect_eof()


@scenario
def write_too_big(c):
    "WRITE header with length 32 MiB + 1 (no payload sent): EINVAL, then the server drops"
    start_fixed(c)
    go(c, "x")
    c.request(CMD_WRITE, cookie=1, offset=0, length=32 * 1024 * 1024 + 1)
    c.expect_eof()


@scenario
def read_too_big(c):
    "READ with length 32 MiB + 1: EINVAL, and the connection stays (nothing to skip)"
    start_fixed(c)
    go(c, "x")
    c.request(CMD_READ, cookie=1, offset=0, length=32 * 1024 * 1024 + 1)
    c.reply()
    c.request(CMD_DISC)
    c.expect_eof()


@scenario
def trim_large(c):
    "TRIM with length 64 MiB (no payload, not bounded by the buffer max)"
    start_fixed(c)
    go(c, "x")
    c.request(CMD_TRIM, cookie=1, offset=0, length=64 * 1024 * 1024)
    c.reply()
    c.request(CMD_DISC)
    c.expect_eof()


@scenario
def go_info_order(c):
    "NBD_OPT_GO requesting everything, after structured replies"
    start_fixed(c)
    c.opt(OPT_STRUCTURED_REPLY)
    c.reps()
    go(c, "x", [0, 1, 2, 3])
    c.request(CMD_DISC)
    c.expect_eof()


def setup_tx(c, ext=False, meta=("base:allocation", "qemu:dirty-bitmap:b0"), name="x"):
    start_fixed(c)
    c.opt(OPT_EXTENDED if ext else OPT_STRUCTURED_REPLY)
    c.reps()
    if meta:
        c.opt(OPT_SET_META, meta_data(name, list(meta)))
        c.reps()
    go(c, name)
    c.ext = ext


@scenario
def structured_request_errors(c):
    "structured replies: QEMU's messages for length, flag, range and command errors"
    setup_tx(c)
    c.request(CMD_READ, cookie=1, length=32 * 1024 * 1024 + 1)
    c.chunks()
    c.request(CMD_READ, flags=0x40, cookie=2, length=8)
    c.chunks()
    c.request(CMD_READ, flags=0x20, cookie=3, length=8)
    c.chunks()
    c.request(CMD_WRITE_ZEROES, cookie=4, offset=(1 << 30) - 512, length=4096)
    c.chunks()
    c.request(CMD_CACHE, cookie=5, length=32 * 1024 * 1024 + 1)
    c.chunks()
    c.request(CMD_TRIM, flags=1, cookie=7, length=4096)
    c.chunks()
    c.request(CMD_BLOCK_STATUS, flags=9, cookie=8, length=4096)
    c.chunks()
    c.request(CMD_FLUSH, flags=2, cookie=9)
    c.chunks()
    c.request(CMD_WRITE_ZEROES, cookie=10, offset=1 << 31, length=(1 << 32) - 1)
    c.chunks()
    c.request(CMD_TRIM, cookie=11, offset=0, length=(1 << 32) - 1)
    c.chunks()
    for i, (cmd, fl) in enumerate([(CMD_WRITE, 2), (CMD_TRIM, 2), (CMD_CACHE, 2),
                                   (CMD_WRITE_ZEROES, 4), (CMD_BLOCK_STATUS, 2), (8, 2), (9, 2),
                                   (CMD_FLUSH, 0x8000), (CMD_READ, 0), (CMD_CACHE, 0),
                                   (CMD_WRITE_ZEROES, 0x3)]):
        c.request(cmd, flags=fl, cookie=20 + i, length=4 if cmd == CMD_WRITE else 0,
                  payload=b"abcd" if cmd == CMD_WRITE else b"")
        c.chunks()
    c.request(CMD_BLOCK_STATUS, cookie=50, offset=(1 << 30) - 4096, length=1 << 20)
    c.chunks()
    c.request(CMD_BLOCK_STATUS, flags=8, cookie=51, offset=1 << 30, length=1)
    c.chunks()
    c.request(CMD_DISC, flags=0xff, cookie=12, offset=5, length=5)
    c.expect_eof()


@scenario
def structured_no_contexts(c):
    "structured replies without SET_META_CONTEXT: BLOCK_STATUS not negotiated"
    setup_tx(c, meta=())
    c.request(CMD_BLOCK_STATUS, cookie=1, length=4096)
    c.chunks()
    c.request(CMD_BLOCK_STATUS, cookie=2, length=0)
    c.chunks()
    c.request(CMD_WRITE, cookie=3, length=4, payload=b"abcd")
    c.chunks()
    c.request(CMD_DISC)
    c.expect_eof()


@scenario
def structured_read_only(c):
    "structured replies on a read-only export: writes refused, past-EOF write"
    start_fixed(c)
    c.opt(OPT_STRUCTURED_REPLY)
    c.reps()
    go(c, "plain")
    c.request(CMD_WRITE, cookie=2, length=4, payload=b"abcd")
    c.chunks()
    c.request(CMD_TRIM, cookie=3, length=4096)
    c.chunks()
    c.request(CMD_WRITE_ZEROES, cookie=4, length=4096)
    c.chunks()
    c.request(CMD_WRITE, cookie=5, offset=1 << 30, length=4, payload=b"abcd")
    c.chunks()
    c.request(CMD_DISC)
    c.expect_eof()


@scenario
def simple_bad_magic(c):
    "simple replies: a request with a wrong magic gets EINVAL, then the server drops"
    start_fixed(c)
    go(c, "x")
    c.send(struct.pack(">IHHQQI", REQ_MAGIC + 1, 0, CMD_READ, 1, 0, 8))
    c.expect_eof()


@scenario
def extended_block_status_payloads(c):
    "extended headers: BLOCK_STATUS payload variants and PAYLOAD_LEN on other commands"
    setup_tx(c, ext=True)
    c.request(CMD_READ, flags=0x20, cookie=2, length=8, payload=b"12345678")
    c.chunks()
    c.request(CMD_BLOCK_STATUS, flags=0x20, cookie=3, length=16,
              payload=struct.pack(">QII", 4096, 2, 0))
    c.chunks()
    c.request(CMD_BLOCK_STATUS, flags=0x20, cookie=4, length=16,
              payload=struct.pack(">QII", 4096, 0, 0))
    c.chunks()
    c.request(CMD_BLOCK_STATUS, flags=0x20, cookie=5, length=13,
              payload=struct.pack(">QI", 4096, 0) + b"z")
    c.chunks()
    c.request(CMD_BLOCK_STATUS, flags=0x28, cookie=6, length=12,
              payload=struct.pack(">QI", 1 << 40, 0))
    c.chunks()
    c.request(CMD_BLOCK_STATUS, flags=0x20, cookie=7, length=24,
              payload=struct.pack(">QIIII", 4096, 0, 2, 0, 2))
    c.chunks()
    c.request(CMD_BLOCK_STATUS, cookie=8, offset=0, length=1 << 33)
    c.chunks()
    c.request(CMD_WRITE_ZEROES, cookie=9, offset=0, length=1 << 33)
    c.chunks()
    c.request(CMD_BLOCK_STATUS, flags=0x20, cookie=10, length=12,
              payload=struct.pack(">QI", 0, 0))
    c.chunks()
    c.request(CMD_FLUSH, flags=0x20, cookie=12, length=0)
    c.chunks()
    c.request(CMD_BLOCK_STATUS, flags=0x20, cookie=13, offset=(1 << 30) - 8, length=13,
              payload=struct.pack(">QI", 4096, 0) + b"z")
    c.chunks()
    c.request(CMD_BLOCK_STATUS, flags=0x20, cookie=14, offset=(1 << 30) - 8, length=12,
              payload=struct.pack(">QI", 4096, 0))
    c.chunks()
    c.request(CMD_BLOCK_STATUS, flags=0x20, cookie=15, length=4,
              payload=struct.pack(">I", 4096))
    c.chunks()
    c.request(CMD_BLOCK_STATUS, flags=0x20, cookie=16, length=1008,
              payload=struct.pack(">Q", 4096) + b"\0" * 1000)
    c.chunks()
    c.request(CMD_WRITE, flags=0x20, cookie=11, offset=0, length=32 * 1024 * 1024 + 1)
    c.expect_eof()


@scenario
def extended_read_too_big(c):
    "extended headers: READ above 32 MiB is refused, the connection stays"
    setup_tx(c, ext=True, meta=())
    c.request(CMD_READ, cookie=1, length=32 * 1024 * 1024 + 1)
    c.chunks()
    c.request(CMD_WRITE, cookie=3, length=32 * 1024 * 1024 + 1)
    c.expect_eof()


@scenario
def structured_payload_flag_write(c):
    "structured (not extended) headers: PAYLOAD_LEN on WRITE is an unsupported flag"
    setup_tx(c, meta=())
    c.request(CMD_WRITE, flags=0x20, cookie=3, offset=0, length=4, payload=b"abcd")
    c.chunks()
    c.request(CMD_DISC)
    c.expect_eof()


@scenario
def meta_other_export_then_go(c):
    "SET_META_CONTEXT on one export, GO to another: no contexts, BLOCK_STATUS refused"
    start_fixed(c)
    c.opt(OPT_STRUCTURED_REPLY)
    c.reps()
    c.opt(OPT_SET_META, meta_data("x", ["base:allocation"]))
    c.reps()
    go(c, "plain")
    c.request(CMD_BLOCK_STATUS, cookie=1, length=4096)
    c.chunks()
    c.request(CMD_DISC)
    c.expect_eof()


TLS_SCENARIOS = []


def tls_scenario(fn):
    TLS_SCENARIOS.append(fn)
    return fn


@tls_scenario
def tls_options_before_starttls(c):
    "server with TLS: options before STARTTLS get NBD_REP_ERR_TLS_REQD"
    start_fixed(c)
    c.opt(OPT_LIST)
    c.reps()
    c.opt(OPT_GO, name_data("t"))
    c.reps()
    c.opt(99, b"abc")
    c.reps()
    c.opt(OPT_STRUCTURED_REPLY)
    c.reps()
    c.opt(OPT_ABORT)
    c.reps()
    c.expect_eof()


@tls_scenario
def tls_export_name_before_starttls(c):
    "server with TLS: EXPORT_NAME before STARTTLS drops the connection"
    start_fixed(c)
    c.opt(OPT_EXPORT_NAME, b"t")
    c.expect_eof()


@tls_scenario
def tls_starttls_with_data(c):
    "server with TLS: STARTTLS with data: ERR_INVALID, then the server drops"
    start_fixed(c)
    c.opt(OPT_STARTTLS, b"x")
    c.reps()
    c.expect_eof()


@tls_scenario
def tls_not_fixed_newstyle(c):
    "server with TLS, client not fixed newstyle: any option drops"
    start_fixed(c, 0)
    c.opt(OPT_LIST)
    c.expect_eof()


@tls_scenario
def tls_starttls_ack(c):
    "server with TLS: STARTTLS is ACKed (the TLS handshake is not attempted)"
    start_fixed(c)
    c.opt(OPT_STARTTLS)
    c.reps()


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
