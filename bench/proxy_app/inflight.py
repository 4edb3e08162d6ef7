"""How many proxy requests Django serves at once, across every gunicorn worker.

The counters live in shared memory created when the application is imported; gunicorn runs
with ``--preload`` so the workers fork from a process that already has them, and all of them
count into the same three numbers: in flight now, the peak, and the total.
"""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Callable, Iterable
from typing import Any

from django.http import HttpRequest, HttpResponse

_counts = multiprocessing.Array("q", 3, lock=True)  # in flight, peak, total
NOW, PEAK, TOTAL = 0, 1, 2


def counting(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    """WSGI middleware counting the requests to the proxy views."""

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not environ.get("PATH_INFO", "").startswith("/realtime/proxy/"):
            return app(environ, start_response)
        with _counts.get_lock():
            _counts[NOW] += 1
            _counts[TOTAL] += 1
            _counts[PEAK] = max(_counts[PEAK], _counts[NOW])
        try:
            return list(app(environ, start_response))
        finally:
            with _counts.get_lock():
                _counts[NOW] -= 1

    return wrapped


def health(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok", content_type="text/plain")


def report(request: HttpRequest) -> HttpResponse:
    """GET: the counters; POST: the same, then the peak and the total start again from zero."""
    with _counts.get_lock():
        body = {"in_flight": _counts[NOW], "peak": _counts[PEAK], "total": _counts[TOTAL]}
        if request.method == "POST":
            _counts[PEAK] = _counts[NOW]
            _counts[TOTAL] = 0
    return HttpResponse(json.dumps(body), content_type="application/json")
