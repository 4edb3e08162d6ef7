"""Proxy mode: the gateway asks Django at connect, subscribe, publish, RPC and refresh, over
HTTP, with Centrifugo's proxy protocol; see docs/django.md ("Proxy mode").

Public API: ``realtime_publish`` and ``realtime_rpc`` (decorators), ``HeraldProxyError`` and
``HeraldProxyDisconnect`` (refusals), ``herald.django.proxy.urls`` (the endpoints).
"""

from __future__ import annotations

from herald.django.proxy.errors import HeraldProxyDisconnect, HeraldProxyError
from herald.django.proxy.registry import realtime_publish, realtime_rpc

__all__ = ["HeraldProxyDisconnect", "HeraldProxyError", "realtime_publish", "realtime_rpc"]
