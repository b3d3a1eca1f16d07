"""A bare ``websockets`` server for the benchmark's floor: every message is answered with a
fixed ``status``-shaped JSON reply, with no agent code (no Origin/Host checks, no session,
no protocol layer). The same 200-connection burst against it shows what the library, the
loopback and the benchmark's own client cost on this machine.

Run: ``python -m bench.floor_server PORT`` (prints ``ready`` once listening).
"""

from __future__ import annotations

import asyncio
import json
import sys

from websockets.asyncio.server import ServerConnection, serve  # noqa: TID251 - a benchmark

STATUS = {"version": "0.0.0", "approved": True, "readers": [
    {"name": "Virtual PCD 00 00", "cardPresent": True, "pinpad": False, "card": None},
    {"name": "Virtual PCD 00 01", "cardPresent": False, "pinpad": False, "card": None},
]}


async def _handler(connection: ServerConnection) -> None:
    async for message in connection:
        request = json.loads(message)
        await connection.send(json.dumps({"jsonrpc": "2.0", "id": request.get("id"),
                                          "result": STATUS}, separators=(",", ":")))


async def main(port: int) -> None:
    async with serve(_handler, "127.0.0.1", port, compression=None, max_size=2**20):
        print("ready", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
