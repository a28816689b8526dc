"""A loopback TCP proxy that makes the network between the operator and the API
server bad on purpose: it stalls, drops and resets connections.

Only 127.0.0.1 is ever a target. Faults happen only while `chaos` is on, and
the proxy stops with the test (bounded in time and count).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import threading
from dataclasses import dataclass, field


@dataclass(eq=False)  # identity semantics: kept in a set
class _Conn:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    stalled_until: float = 0.0


@dataclass
class FlakyProxy:
    upstream_port: int
    seed: int = 1
    listen_port: int = 0
    chaos: bool = False
    faults: dict[str, int] = field(default_factory=lambda: {"reset": 0, "stall": 0, "refuse": 0})
    _conns: set[_Conn] = field(default_factory=set)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _server: asyncio.Server | None = None
    _ready: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def start(self) -> FlakyProxy:
        self._thread = threading.Thread(target=self._run, name="flaky-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("proxy did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    # ------------------------------------------------------------------ internals
    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(self._serve())
        self._loop.create_task(self._chaos_loop())
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            if self._server is not None:
                self._server.close()
            for c in list(self._conns):
                c.client.close()
                c.upstream.close()
            self._loop.close()

    async def _serve(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.listen_port)
        self.listen_port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.chaos and self._rng.random() < 0.2:
            self.faults["refuse"] += 1
            _reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        conn = _Conn(writer, up_writer)
        self._conns.add(conn)
        try:
            await asyncio.gather(
                self._pump(reader, up_writer, conn), self._pump(up_reader, writer, conn)
            )
        finally:
            self._conns.discard(conn)
            writer.close()
            up_writer.close()

    async def _pump(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, conn: _Conn
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            while data := await src.read(65536):
                while conn.stalled_until > loop.time():  # a black hole: bytes go nowhere yet
                    await asyncio.sleep(0.05)
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            dst.close()

    async def _chaos_loop(self) -> None:
        rng = self._rng
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(rng.uniform(0.5, 2.0))
            if not self.chaos or not self._conns:
                continue
            victims = rng.sample(sorted(self._conns, key=id), k=max(1, len(self._conns) // 2))
            if rng.random() < 0.5:
                self.faults["reset"] += 1
                for c in victims:
                    _reset(c.client)
                    _reset(c.upstream)
            else:
                self.faults["stall"] += 1
                until = loop.time() + rng.uniform(2.0, 8.0)
                for c in victims:
                    c.stalled_until = until


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0), as a crashed middlebox would."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.close()
