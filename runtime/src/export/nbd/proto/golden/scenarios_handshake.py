#!/usr/bin/env python3
"""Handshake scenarios (imported by capture.py)."""
import struct

from nbd_client import *  # noqa: F401,F403


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
def export_name_too_long(c):
    "NBD_OPT_EXPORT_NAME with 4097 bytes of name: server drops before reading it"
    start_fixed(c)
    c.opt(OPT_EXPORT_NAME, b"n" * 4097)
    c.expect_eof()


@scenario
def default_and_odd_names(c):
    "empty export name (no default export in QEMU), non-UTF-8 name, 4096-byte name"
    start_fixed(c)
    c.opt(OPT_GO, name_data(""))
    c.reps()
    c.opt(OPT_INFO, struct.pack(">I", 2) + b"\xff\xfe" + b"\0\0")
    c.reps()
    c.opt(OPT_INFO, struct.pack(">I", 4096) + b"n" * 4096 + b"\0\0")
    c.reps()
    c.opt(OPT_LIST_META, struct.pack(">I", 2) + b"\xff\xfe" + b"\0\0\0\0")
    c.reps()
    c.opt(OPT_EXPORT_NAME, b"x\0trailing")
    c.export_name_reply(True)
    c.request(CMD_DISC)
    c.expect_eof()
