"""The server-API client for asyncio code (an ASGI Django app, an aiohttp service).

Same methods, same results and the same error classes as the blocking
``herald.apiclient.ApiClient``: both hand the answer to ``herald.apiresults`` for
classification, so "transient" means the same thing on either side.

One client holds one aiohttp session, and a session belongs to the event loop it was
first used on. Use one client per loop; ``herald.django.publisher.get_async_client``
keeps one per running loop and closes it when that loop shuts down.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

import aiohttp

from herald.apiresults import (
    PermanentApiError,
    TransientApiError,
    batch_replies,
    disconnect_params,
    encode_body,
    invalidate_params,
    publish_params,
    result_of,
    revoke_params,
    short_reason,
)


class AsyncApiClient:
    """One pooled aiohttp session to ``{api_url}/<method>`` with ``X-API-Key`` (spec §8.1)."""

    def __init__(self, api_url: str, api_key: str, *, timeout: float = 10.0, pool_size: int = 10) -> None:
        self.api_url = api_url.rstrip("/")
        self.timeout = timeout
        self._pool_size = pool_size
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key:
            self._headers["X-API-Key"] = api_key
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._pool_size),
                # Proxies from the environment are for browsing, not for a backend-to-gateway hop.
                trust_env=False,
            )
        return self._session

    # -- context management -------------------------------------------------------------

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> AsyncApiClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- methods (spec §8.2, decisions §3 and §6); see ApiClient for each one -------------

    async def publish(
        self,
        channel: str,
        data: Any,
        *,
        idempotency_key: str | None = None,
        skip_history: bool = False,
        tags: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        params = publish_params(data, idempotency_key, skip_history, tags, channel=channel)
        return await self.call("publish", params, timeout=timeout)

    async def broadcast(
        self,
        channels: Iterable[str],
        data: Any,
        *,
        idempotency_key: str | None = None,
        skip_history: bool = False,
        tags: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> list[dict[str, Any]]:
        params = publish_params(data, idempotency_key, skip_history, tags, channels=list(channels))
        responses = (await self.call("broadcast", params, timeout=timeout)).get("responses", [])
        if not isinstance(responses, list):
            raise TransientApiError("broadcast", "malformed response: 'responses' is not a list")
        return responses

    async def batch(
        self, commands: Sequence[tuple[str, Mapping[str, Any]]], *, parallel: bool = False, timeout: float | None = None
    ) -> list[dict[str, Any]]:
        params = {"commands": [{method: dict(p)} for method, p in commands], "parallel": parallel}
        return batch_replies("batch", await self.call("batch", params, timeout=timeout), len(commands))

    async def disconnect(
        self,
        user: str,
        *,
        client: str = "",
        session: str = "",
        code: int | None = None,
        reason: str = "",
        timeout: float | None = None,
    ) -> None:
        await self.call("disconnect", disconnect_params(user, client, session, code, reason), timeout=timeout)

    async def invalidate_user_tokens(
        self,
        user: str,
        *,
        issued_before: int | None = None,
        expire_at: int | None = None,
        timeout: float | None = None,
    ) -> None:
        await self.call("invalidate_user_tokens", invalidate_params(user, issued_before, expire_at), timeout=timeout)

    async def revoke_token(self, uid: str, *, expire_at: int | None = None, timeout: float | None = None) -> None:
        await self.call("revoke_token", revoke_params(uid, expire_at), timeout=timeout)

    async def info(self, *, timeout: float | None = None) -> dict[str, Any]:
        return await self.call("info", {}, timeout=timeout)

    # -- transport ------------------------------------------------------------------------

    async def call(self, method: str, params: Mapping[str, Any], *, timeout: float | None = None) -> dict[str, Any]:
        """POST one method; return its ``result`` object or raise a classified ``ApiError``."""
        body = encode_body(method, params)
        seconds = self.timeout if timeout is None else timeout
        try:
            async with self._get_session().post(
                f"{self.api_url}/{method}",
                data=body,
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=seconds),
                # A redirect would turn the POST into a GET elsewhere: a configuration error.
                allow_redirects=False,
            ) as response:
                content = await response.read()
                status, retry_after = response.status, response.headers.get("Retry-After")
        except TimeoutError as exc:
            # The gateway may have applied the call before the timeout: only an
            # idempotency key makes the retry safe (decisions §6).
            raise TransientApiError(method, f"timed out ({type(exc).__name__})") from None
        except (aiohttp.InvalidURL, ValueError) as exc:  # a malformed URL: configuration
            raise PermanentApiError(method, f"request could not be sent ({short_reason(exc)})") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise TransientApiError(method, f"connection failed ({short_reason(exc)})") from None
        return result_of(method, status, content, retry_after)
