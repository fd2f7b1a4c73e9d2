"""asyncua's own OPC-UA server, run in-process on 127.0.0.1 for the OPC-UA source tests: a small plant address space
(Objects/Plant/Press1 and Press2, each with State and Temperature variables) that can be stopped and started again on
the same port, and written to with a value, a source time and a status code."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import socket
import threading
from typing import Any

from asyncua import Server, ua

NAMESPACE = "urn:enterprise-twin:test-plant"
PRESSES = ("Press1", "Press2")

logging.getLogger("asyncua").setLevel(logging.ERROR)


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PlantServer:
    """The test plant's OPC-UA server on its own event loop thread."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"opc.tcp://127.0.0.1:{self.port}/twin-test/"
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="opcua-test-server", daemon=True)
        self.thread.start()
        self.server: Server | None = None
        self.namespace = 0

    def _run(self, work: Any, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout)

    def start(self) -> None:
        """Build the address space (same NodeIds every time) and listen."""
        self._run(self._start())

    async def _start(self) -> None:
        server = Server()
        await server.init()
        server.set_endpoint(self.url)
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        self.namespace = await server.register_namespace(NAMESPACE)
        ns = self.namespace
        plant = await server.nodes.objects.add_object(ua.NodeId("Plant", ns), ua.QualifiedName("Plant", ns))
        for press in PRESSES:
            folder = await plant.add_object(ua.NodeId(press, ns), ua.QualifiedName(press, ns))
            await folder.add_variable(ua.NodeId(f"{press}.State", ns), ua.QualifiedName("State", ns), "running")
            await folder.add_variable(ua.NodeId(f"{press}.Temperature", ns), ua.QualifiedName("Temperature", ns), 20.0)
        await server.start()
        self.server = server

    def stop(self) -> None:
        """Stop listening (clients see the connection drop)."""
        if self.server is not None:
            self._run(self.server.stop())
            self.server = None

    def write(self, node: str, value: Any, *, at: dt.datetime | None = None, status: int = ua.StatusCodes.Good) -> None:
        """Set a variable (`node` such as Press1.Temperature) with a source time and a status code."""
        assert self.server is not None
        server = self.server

        async def write() -> None:
            target = server.get_node(ua.NodeId(node, self.namespace))
            variant = ua.Variant(value, ua.VariantType.Double if isinstance(value, float) else ua.VariantType.String)
            await target.write_value(
                ua.DataValue(
                    variant,
                    StatusCode=ua.StatusCode(status),
                    SourceTimestamp=at or dt.datetime.now(dt.UTC),
                    ServerTimestamp=dt.datetime.now(dt.UTC),
                )
            )

        self._run(write())

    def close(self) -> None:
        """Stop the server, cancel what still runs on its loop, and stop the loop."""
        self.stop()

        async def cancel() -> None:
            tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self._run(cancel())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
