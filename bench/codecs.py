"""The client-protocol codecs on their own: µs per operation, no network (issue 12).

Why the Protobuf codec is built on the ``protobuf`` package's upb (C) backend: the same
codec is timed with that package's pure-Python backend (``PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION
=python``, in a child process), which stands for what a pure-Python Protobuf library costs,
beside the JSON codec. Operations: a publication push (done once per publication per node),
a subscribe reply with 10 recovered publications, and decoding a connect + subscribe frame
(done once per client command).

    python -m bench.codecs
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import timeit
from typing import Any

from bench.common import append_results, fmt, fmt_ratio, ratio, table

_CHILD = "--child"


def _measure() -> dict[str, float]:
    from msgspec import Raw

    from herald.gateway.codecs.json import JSON
    from herald.gateway.codecs.messages import Publication, SubscribeResult
    from herald.gateway.codecs.protobuf import PROTOBUF, CommandMessage, varint

    data = Raw(json.dumps({"order": 42, "status": "paid", "items": [1, 2, 3], "note": "x" * 120}).encode())
    pub = Publication(data=data, offset=17)
    reply = SubscribeResult(recoverable=True, positioned=True, epoch="abcd", offset=10, recovered=True)
    reply.publications = [Publication(data=data, offset=i) for i in range(1, 11)]
    cmd_json = (
        b'{"id":1,"connect":{"token":"'
        + b"t" * 200
        + b'"}}\n{"id":2,"subscribe":{"channel":"critical:x","recover":true,"offset":5,"epoch":"abcd"}}'
    )
    first = CommandMessage(id=1)
    first.connect.token = "t" * 200
    second = CommandMessage(id=2)
    second.subscribe.channel, second.subscribe.recover, second.subscribe.offset = "critical:x", True, 5
    cmd_pb = b"".join(varint(len(b)) + b for b in (first.SerializeToString(), second.SerializeToString()))
    out: dict[str, float] = {}
    for name, codec, frame in (("json", JSON, cmd_json), ("protobuf", PROTOBUF, cmd_pb)):
        for op, fn in (
            ("publication push", lambda c=codec: c.encode_publication_push("critical:x", pub)),
            ("subscribe reply, 10 publications", lambda c=codec: c.encode_reply(2, "subscribe", reply)),
            ("connect + subscribe frame decoded", lambda c=codec, f=frame: c.decode_commands(f)),
        ):
            number = 2000
            out[f"{name}|{op}"] = min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6
    return out


def main() -> None:
    if _CHILD in sys.argv:
        print(json.dumps(_measure()))
        return
    runs: dict[str, dict[str, float]] = {}
    for backend in ("upb", "python"):
        env = {**os.environ, "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION": backend}
        done = subprocess.run([sys.executable, "-m", "bench.codecs", _CHILD], env=env, capture_output=True, check=True)
        runs[backend] = json.loads(done.stdout)
    rows: list[list[Any]] = []
    for key in runs["upb"]:
        codec, op = key.split("|")
        if codec == "json":
            rows.append(["JSON (msgspec)", op, fmt(runs["upb"][key], 2), ""])
        else:
            upb, py = runs["upb"][key], runs["python"][key]
            rows.append(["Protobuf, upb backend", op, fmt(upb, 2), ""])
            rows.append(["Protobuf, pure-Python backend", op, fmt(py, 2), fmt_ratio(ratio(py, upb))])
    text = table(["codec", "operation", "µs per operation", "x upb"], rows)
    print(text)
    if "--no-record" not in sys.argv:
        append_results("Codecs", text)


if __name__ == "__main__":
    main()
