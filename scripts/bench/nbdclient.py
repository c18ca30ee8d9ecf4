"""Minimal raw NBD client for the data-plane benchmark (no dependencies).

It does exactly one thing: the fixed-newstyle handshake up to NBD_OPT_GO,
optionally followed by NBD_CMD_DISC, so that scripts/bench/nbd.py can measure
handshakes per second without libnbd's Python binding.  Constants are the
NBD protocol's (doc/proto.md of the NBD project).
"""
import socket
import struct

NBDMAGIC = 0x4E42444D41474943  # "NBDMAGIC"
IHAVEOPT = 0x49484156454F5054  # "IHAVEOPT"
REPLY_MAGIC = 0x0003E889045565A9
REQUEST_MAGIC = 0x25609513

FLAG_FIXED_NEWSTYLE = 1 << 0
FLAG_NO_ZEROES = 1 << 1

OPT_GO = 7
REP_ACK = 1
REP_INFO = 3
REP_ERR_BIT = 1 << 31
INFO_EXPORT = 0
CMD_DISC = 2

# Transmission flags, by name, for reporting what a server advertises.
TRANSMISSION_FLAGS = {
    1 << 1: "read-only",
    1 << 2: "flush",
    1 << 3: "fua",
    1 << 4: "rotational",
    1 << 5: "trim",
    1 << 6: "write-zeroes",
    1 << 7: "df",
    1 << 8: "multi-conn",
    1 << 9: "resize",
    1 << 10: "cache",
    1 << 11: "fast-zero",
}


class NbdError(Exception):
    """The server broke the protocol or refused the export."""


def _recv_exact(s, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise NbdError(f"server closed the connection ({len(buf)} of {n} bytes read)")
        buf += chunk
    return bytes(buf)


def handshake(path, name, disconnect=True):
    """Connect to the UNIX socket `path`, negotiate export `name` with
    NBD_OPT_GO, then (if `disconnect`) send NBD_CMD_DISC and close.

    Returns (export size in bytes, transmission flags); with
    disconnect=False also the connected socket as a third element.
    Raises NbdError when the server misbehaves or refuses the export.
    """
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        magic, opt, hflags = struct.unpack(">QQH", _recv_exact(s, 18))
        if magic != NBDMAGIC or opt != IHAVEOPT:
            raise NbdError("not a fixed-newstyle NBD server")
        if not hflags & FLAG_FIXED_NEWSTYLE:
            raise NbdError("server does not offer fixed newstyle")
        cflags = FLAG_FIXED_NEWSTYLE | (hflags & FLAG_NO_ZEROES)
        bname = name.encode()
        data = struct.pack(">I", len(bname)) + bname + struct.pack(">H", 0)
        # Client flags and the first option may go out in one write.
        s.sendall(struct.pack(">IQII", cflags, IHAVEOPT, OPT_GO, len(data)) + data)
        size = tflags = None
        while True:
            rmagic, ropt, rtype, rlen = struct.unpack(">QIII", _recv_exact(s, 20))
            if rmagic != REPLY_MAGIC or ropt != OPT_GO:
                raise NbdError(f"bad option reply (magic {rmagic:#x}, option {ropt})")
            payload = _recv_exact(s, rlen) if rlen else b""
            if rtype & REP_ERR_BIT:
                raise NbdError(f"NBD_OPT_GO refused: error {rtype:#x} {payload[:200]!r}")
            if rtype == REP_INFO and len(payload) >= 12:
                (info,) = struct.unpack(">H", payload[:2])
                if info == INFO_EXPORT:
                    size, tflags = struct.unpack(">QH", payload[2:12])
            elif rtype == REP_ACK:
                break
        if size is None:
            raise NbdError("server acknowledged NBD_OPT_GO without NBD_INFO_EXPORT")
        if not disconnect:
            return size, tflags, s
        s.sendall(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, CMD_DISC, 0, 0, 0))
        s.close()
        return size, tflags
    except BaseException:
        s.close()
        raise


def describe_flags(tflags):
    """Comma-separated names of the transmission flags set in `tflags`."""
    return ",".join(n for bit, n in TRANSMISSION_FLAGS.items() if tflags & bit) or "-"
