#!/usr/bin/env python3
"""Transmission and TLS scenarios (imported by capture.py)."""
import struct

from nbd_client import *  # noqa: F401,F403


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
