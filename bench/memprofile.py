"""Where an idle connection's memory goes: tracemalloc inside a Herald gateway process.

Starts the gateway in a child process under ``tracemalloc`` (in-process, the same ``Gateway``
object ``herald serve`` runs), snapshots the Python heap, connects N subscribed clients (each
on its own channel), snapshots again and prints the allocation sites that grew, per
connection. Python-heap bytes only: RSS also holds allocator slack and C memory that
tracemalloc cannot see (libuv handles, the HTTP parser), which is the difference to the RSS
figure of ``bench.idle``.

    python -m bench.memprofile --clients 5000
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import linecache
import signal
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from bench.common import ServerProcess, append_results, install_signal_cleanup, note, proc_rss, table
from bench.load import LoadGen, workers_for
from bench.targets import SECRET, HeraldTarget

_SNAP_BASE = "base.snap"
_SNAP_LOADED = "loaded.snap"


def _serve(config_path: str, port: int, out: Path) -> None:
    """Child: the gateway, dumping a heap snapshot on each SIGUSR1."""
    from herald.gateway.app import Gateway
    from herald.gateway.config import load_config

    config, _ = load_config(config_path)
    config = dataclasses.replace(config, port=port, address="127.0.0.1")
    import uvloop

    async def main() -> None:
        gateway = Gateway(config)
        await gateway.start()
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        dumps = [0]

        def dump() -> None:
            name = _SNAP_BASE if dumps[0] == 0 else _SNAP_LOADED
            dumps[0] += 1
            import gc

            gc.collect()
            tracemalloc.take_snapshot().dump(str(out / name))
            (out / (name + ".done")).write_text("ok")

        loop.add_signal_handler(signal.SIGUSR1, dump)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await gateway.stop()

    uvloop.run(main())


def _wait_file(path: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"no {path}")
        time.sleep(0.1)


def profile(clients: int, workdir: Path, top: int = 20) -> str:
    cfg_owner = HeraldTarget(workdir)  # writes herald.json
    out = workdir
    server = ServerProcess(
        "herald-tracemalloc",
        lambda port: [
            sys.executable,
            "-X",
            "tracemalloc=12",
            "-m",
            "bench.memprofile",
            "--serve",
            str(cfg_owner.config_path),
            "--port",
            str(port),
            "--out",
            str(out),
        ],
        workdir=workdir,
    )
    server.start()
    try:
        time.sleep(1)
        server.proc.send_signal(signal.SIGUSR1)  # type: ignore[union-attr]
        _wait_file(out / (_SNAP_BASE + ".done"))
        rss0 = proc_rss(server.pid)
        with LoadGen(workers_for(clients)) as load:
            load.configure(port=server.port, mode="centrifugo", path="/connection/websocket", reconnect=False)
            got = load.connect(clients, "user_{i}", token="jwt", secret=SECRET)
            note(f"{got:,}/{clients:,} subscribed")
            time.sleep(2)
            rss1 = proc_rss(server.pid)
            server.proc.send_signal(signal.SIGUSR1)  # type: ignore[union-attr]
            _wait_file(out / (_SNAP_LOADED + ".done"))
    finally:
        server.stop()
    base = tracemalloc.Snapshot.load(str(out / _SNAP_BASE))
    loaded = tracemalloc.Snapshot.load(str(out / _SNAP_LOADED))
    filters = [tracemalloc.Filter(False, tracemalloc.__file__)]
    by_line = loaded.filter_traces(filters).compare_to(base.filter_traces(filters), "lineno")
    by_file = loaded.filter_traces(filters).compare_to(base.filter_traces(filters), "filename")
    heap = sum(s.size_diff for s in by_file)
    rows = []
    for stat in by_line[:top]:
        frame = stat.traceback[0]
        code = linecache.getline(frame.filename, frame.lineno).strip()[:70]
        short = "/".join(Path(frame.filename).parts[-2:])
        rows.append(
            [f"`{short}:{frame.lineno}`", f"`{code}`", f"{stat.size_diff / got:,.0f}", f"{stat.count_diff / got:.2f}"]
        )
    files = [
        ["/".join(Path(s.traceback[0].filename).parts[-2:]), f"{s.size_diff / got:,.0f}"] for s in by_file[: top // 2]
    ]
    return (
        f"{got:,} clients: RSS grew {(rss1 - rss0) / got:,.0f} B/connection (under tracemalloc), "
        f"the traced Python heap {heap / got:,.0f} B/connection.\n\n"
        + table(["allocation site", "code", "bytes/conn", "blocks/conn"], rows)
        + "\n\nby file:\n\n"
        + table(["file", "bytes/conn"], files)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="per-connection heap of Herald, by allocation site")
    parser.add_argument("--clients", type=int, default=5000)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    if args.serve:
        _serve(args.serve, args.port, Path(args.out))
        return
    install_signal_cleanup()
    text = profile(args.clients, Path(tempfile.mkdtemp(prefix="bench-mem-")))
    print(text)
    if not args.no_record:
        append_results("Idle memory by allocation site (tracemalloc)", text)


if __name__ == "__main__":
    main()
