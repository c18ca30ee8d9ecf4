#!/usr/bin/env python3
"""The Python qemu.qmp client against a daemon: connect, negotiate, run
commands, get QMP errors as exceptions, receive events.

usage: qemu_qmp_client.py DAEMON-BINARY WORKDIR
Exits 0 when every check holds; prints what failed otherwise.
"""
import asyncio
import os
import subprocess
import sys

from qemu.qmp import EventListener, ExecuteError, QMPClient


async def main(binary, workdir):
    sock = os.path.join(workdir, "qmp.sock")
    image = os.path.join(workdir, "created.img")
    proc = subprocess.Popen([binary, "--chardev", f"socket,id=m,path={sock},server=on,wait=off",
                             "--monitor", "chardev=m"])
    try:
        for _ in range(200):
            if os.path.exists(sock):
                break
            await asyncio.sleep(0.02)
        qmp = QMPClient("test")
        await qmp.connect(sock)
        greeting = qmp.greeting
        assert greeting is not None
        version = greeting.QMP.version["qemu"]
        assert (version["major"], version["minor"], version["micro"]) == (10, 0, 2), version

        res = await qmp.execute("query-version")
        assert res["qemu"]["major"] == 10, res
        cmds = await qmp.execute("query-commands")
        assert {"name": "blockdev-add"} in cmds, cmds
        schema = await qmp.execute("query-qmp-schema")
        assert any(e["name"] == "query-qmp-schema" for e in schema)

        try:
            await qmp.execute("blockdev-del", {"bogus": 1})
            raise AssertionError("blockdev-del with a bad argument succeeded")
        except ExecuteError as e:
            assert e.error_class == "GenericError", e.error_class
            assert str(e) == "Parameter 'node-name' is missing", str(e)

        # Events: a job emits JOB_STATUS_CHANGE on every transition.
        listener = EventListener(("JOB_STATUS_CHANGE",))
        with qmp.listen(listener):
            await qmp.execute("blockdev-create", {"job-id": "j0", "options": {
                "driver": "file", "filename": image, "size": 1048576}})
            seen = []
            while "concluded" not in seen:
                ev = await asyncio.wait_for(listener.get(), timeout=10)
                assert ev["data"]["id"] == "j0", ev
                seen.append(ev["data"]["status"])
        assert seen == ["created", "running", "waiting", "pending", "concluded"], seen
        await qmp.execute("job-dismiss", {"id": "j0"})
        assert os.path.getsize(image) == 1048576

        # The daemon may close the connection right after its reply to
        # quit (QSD does), so the library can see EOF first.
        try:
            await qmp.execute("quit")
        except (EOFError, ConnectionResetError):
            pass
        try:
            await qmp.disconnect()
        except (EOFError, ConnectionResetError):
            pass
        assert proc.wait(timeout=10) == 0, "daemon did not exit cleanly after quit"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
    print("qemu.qmp client: all checks passed")
