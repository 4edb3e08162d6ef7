"""Calls to the application backend (Centrifugo's HTTP proxy protocol, proxy.md): the only
package that talks to it. ``client`` holds the pooled HTTP client and its concurrency bound,
``messages`` the request and response bodies, ``outcomes`` what an answer means for the client."""

from herald.gateway.proxy.client import Endpoint, Proxy, ProxyBusy, ProxyFailure, build_proxy, forwarded_headers

__all__ = ["Endpoint", "Proxy", "ProxyBusy", "ProxyFailure", "build_proxy", "forwarded_headers"]
