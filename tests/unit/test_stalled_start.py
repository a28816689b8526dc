"""A start against an API server that accepts the connection but answers late:
the first list of a namespace is asked again at once, with a warning, instead
of waiting silently for the client's timeout (sluice.shell.listwatch)."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from kubernetes import client

from sluice.shell.jobs import JobIndex
from sluice.shell.kube import Kube


async def _server(stall: int) -> tuple[asyncio.Server, list[int]]:
    """A tiny HTTP server: the first `stall` connections are accepted and never
    answered; later ones get an empty Job list (and a watch that stays open)."""
    seen = [0]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen[0] += 1
        mine = seen[0]
        request = await reader.readuntil(b"\r\n\r\n")
        if mine <= stall:
            await asyncio.sleep(3600)  # accepted, never answered
        body = json.dumps({"metadata": {"resourceVersion": "1"}, "items": []}).encode()
        if b"watch=true" in request.split(b"\r\n")[0]:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n")
            await writer.drain()
            await asyncio.sleep(3600)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, seen


def test_a_stalled_first_list_is_said_and_asked_again_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        server, seen = await _server(stall=2)
        port = server.sockets[0].getsockname()[1]
        cfg = client.Configuration()
        cfg.host = f"http://127.0.0.1:{port}"
        kube = Kube(cfg)
        index = JobIndex(kube, lambda key, done: None)
        index.answer_timeout = 0.2
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            await asyncio.wait_for(index.synced("ns").wait(), 5)
            assert loop.time() - started < 2  # not the client's 30 s, nor a 10 s timeout
            assert seen[0] >= 3
        finally:
            await index.stop()
            await kube.close()
            server.close()

    with caplog.at_level(logging.WARNING, logger="sluice.shell.listwatch"):
        asyncio.run(scenario())
    stalls = [r for r in caplog.records if "no answer from the API server" in r.getMessage()]
    assert len(stalls) == 2
    assert "listing Jobs in ns" in stalls[0].getMessage()
