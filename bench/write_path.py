"""The per-delivery step the metrics touch: one WebSocket ``write()`` of a broadcast payload.

A fan-out writes the same encoded publication to every subscriber (``WebSocketConnection.write``:
frame from the one-entry cache, hand to the socket transport, and, since the operators'
metrics, add to the transport's message and byte counts). This times that call alone, over a
transport that drops the bytes, so the difference between two revisions is measurable well
below the fan-out benchmark's run-to-run noise:

    python -m bench.write_path                          # this checkout
    PYTHONPATH=/path/to/other/src python -m bench.write_path   # another revision's sources
"""

from __future__ import annotations

import argparse
import asyncio
import time

from herald.gateway.config import parse_config
from herald.gateway.engines.memory import MemoryBroker, MemoryPresence
from herald.gateway.node import Node
from herald.gateway.transports.websocket import WebSocketConnection


class _NullTransport:
    """Accepts bytes and forgets them (the kernel's part is not what is measured)."""

    def write(self, data: bytes) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return False


async def _measure(writes: int, repeat: int, size: int) -> list[float]:
    config, _ = parse_config({"token_hmac_secret_key": "x" * 32}, environ={})
    node = Node(config, MemoryBroker(), MemoryPresence())
    conn = WebSocketConnection(node, _NullTransport())  # type: ignore[arg-type]
    payload = b'{"push":{"channel":"bench","pub":{"data":"' + b"x" * size + b'"}}}'
    write = conn.write
    results = []
    for _ in range(repeat):
        started = time.process_time()
        for _ in range(writes):
            write(payload)
        results.append((time.process_time() - started) * 1e9 / writes)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--size", type=int, default=200, help="payload bytes")
    args = parser.parse_args()
    results = asyncio.run(_measure(args.writes, args.repeat, args.size))
    best, median = min(results), sorted(results)[len(results) // 2]
    print(f"WebSocket write(): best {best:.1f} CPU-ns, median {median:.1f} CPU-ns ({args.repeat} x {args.writes:,})")


if __name__ == "__main__":
    main()
