"""The six proxy endpoints the gateway (or Centrifugo) calls: connect, refresh, subscribe,
sub_refresh, publish, rpc. Request and answer bodies are exactly those of the proxy spec §3.

Every view answers HTTP 200 with ``{"result": …}``, ``{"error": …}`` or ``{"disconnect": …}``
for a decision, and a non-200 JSON answer when the call itself is wrong (401/403 caller,
400 body, 405 method). An unexpected fault answers 500 where the gateway's failure handling
is what we want (connect: error 100, temporary, the SDK retries; refresh/sub_refresh: kept,
asked again in 60 s, so a database outage does not end every connection; subscribe: 100,
temporary) and error 100 in the body for publish and RPC (the caller's promise fails).

CSRF-exempt: the caller is the gateway, authenticated by the shared secret (caller.py), and
it carries no CSRF token. The browser's own CSRF exposure is the WebSocket handshake: the
gateway's ``allowed_origins`` must list the site's origins (proxy spec §2).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.utils.cache import add_never_cache_headers
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from herald.django.channels import AuthorizerHook, granted_channels, load_hook, split_channel, without_prefix
from herald.django.conf import HeraldSettings, get_settings
from herald.django.proxy import errors, registry
from herald.django.proxy.caller import BadCall, check_caller, json_response, read_body, string_field
from herald.django.proxy.users import session_key, session_user, user_by_id
from herald.django.tokens import RealtimeTokenService

logger = logging.getLogger("herald.django.proxy")


@method_decorator(csrf_exempt, name="dispatch")
class ProxyView(View):
    http_method_names = ["post"]
    #: Which proxy call this is, for the log.
    event = ""
    #: True: an unexpected fault is answered with error 100 in a 200 body (publish, RPC);
    #: False: with HTTP 500, which the gateway handles as a transient failure.
    fault_as_error = False

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if request.method != "POST":
            response = json_response({"detail": f"method {request.method} not allowed; POST"}, status=405)
            response["Allow"] = "POST"
            return response
        try:
            settings = get_settings()  # a setting of the wrong type is a fault, logged, not a crash page
            check_caller(request, settings)
            body = read_body(request)
            answer = self.answer(request, body, settings)
            # Encoded here, inside the try: a result that is not JSON-serialisable is a fault.
            content = json.dumps(answer, cls=DjangoJSONEncoder)
        except BadCall as exc:
            return json_response({"detail": exc.detail}, status=exc.status)
        # Raised by a hook (REALTIME_CHANNELS, the authorizer) rather than a registered
        # function: the same answer. (Refresh and sub_refresh answers carry only ``result``,
        # proxy spec §3.2/§3.5; the gateway then treats the connection as expired.)
        except errors.HeraldProxyError as exc:
            return json_response({"error": exc.as_error()})
        except errors.HeraldProxyDisconnect as exc:
            return json_response({"disconnect": exc.as_disconnect()})
        except Exception:
            logger.exception("%s proxy call failed", self.event)
            if self.fault_as_error:
                return json_response({"error": errors.INTERNAL})
            return json_response({"detail": "internal server error"}, status=500)
        ok = HttpResponse(content, content_type="application/json")
        add_never_cache_headers(ok)
        return ok

    def answer(self, request: HttpRequest, body: dict[str, Any], settings: HeraldSettings) -> dict[str, Any]:
        raise NotImplementedError


def _now() -> int:
    return int(time.time())


class ConnectView(ProxyView):
    """Proxy spec §3.1: the user of the forwarded session cookie, and their grants."""

    event = "connect"
    token_service_class: type[RealtimeTokenService] = RealtimeTokenService

    def answer(self, request: HttpRequest, body: dict[str, Any], settings: HeraldSettings) -> dict[str, Any]:
        user = session_user(request)
        if not user.is_authenticated:
            return {"disconnect": errors.UNAUTHORIZED}
        result: dict[str, Any] = {
            "user": str(user.pk),
            # The REALTIME_CHANNELS grants with the environment prefix, as in a token's claim;
            # the gateway subscribes the connection to them (server-side, proxy spec §3.1).
            "channels": granted_channels(user, settings),
            "info": self.token_service_class(settings).user_info(user),
        }
        if settings.proxy_connection_ttl_seconds:
            # With an expiry the gateway calls the refresh endpoint then (proxy spec §6).
            result["expire_at"] = _now() + settings.proxy_connection_ttl_seconds
        return {"result": result}


class RefreshView(ProxyView):
    """Proxy spec §3.2, §6: extend while the session lives; ``expired`` once it is gone.

    The gateway forwards the headers captured at connect (spec §8.4), so the cookie is the
    one the connection was made with. A connection made with a token carries no session
    cookie: it lives while its user exists and is active.
    """

    event = "refresh"

    def answer(self, request: HttpRequest, body: dict[str, Any], settings: HeraldSettings) -> dict[str, Any]:
        user_id = string_field(body, "user")
        if session_key(request) is not None:
            user = session_user(request)
            alive = user.is_authenticated and str(user.pk) == user_id
        else:
            alive = bool(user_id) and user_by_id(user_id).is_authenticated
        if not alive:
            # ``error``/``disconnect`` are ignored for refresh (§3.2): expired closes with 3005.
            return {"result": {"expired": True}}
        ttl = settings.proxy_connection_ttl_seconds or settings.token_ttl_seconds
        return {"result": {"expire_at": _now() + ttl}}


def may_subscribe(user: Any, channel: str, settings: HeraldSettings) -> bool:
    """A logged-in user may subscribe to a channel of this environment that REALTIME_CHANNELS
    grants or REALTIME_SUBSCRIPTION_AUTHORIZER allows (it sees the name without the prefix)."""
    if not user.is_authenticated:
        return False
    app_name = without_prefix(channel, settings.channel_prefix)
    if app_name is None:
        return False
    if channel in granted_channels(user, settings):
        return True
    authorizer: AuthorizerHook = load_hook(settings.subscription_authorizer)
    return authorizer(user, app_name) is True


class SubscribeView(ProxyView):
    """Proxy spec §3.3: allowed (``{"result": {}}``) or 103."""

    event = "subscribe"

    def answer(self, request: HttpRequest, body: dict[str, Any], settings: HeraldSettings) -> dict[str, Any]:
        user = user_by_id(string_field(body, "user"))
        if not may_subscribe(user, string_field(body, "channel"), settings):
            return {"error": errors.PERMISSION_DENIED}
        result: dict[str, Any] = {}
        if settings.proxy_subscription_ttl_seconds:
            # Only with a sub_refresh proxy on the namespace: otherwise the SDK would need a
            # subscription token to refresh (proxy spec §6).
            result["expire_at"] = _now() + settings.proxy_subscription_ttl_seconds
        return {"result": result}


class SubRefreshView(ProxyView):
    """Proxy spec §3.5: extend while the subscription is still allowed, else ``expired``."""

    event = "sub_refresh"

    def answer(self, request: HttpRequest, body: dict[str, Any], settings: HeraldSettings) -> dict[str, Any]:
        user = user_by_id(string_field(body, "user"))
        if not may_subscribe(user, string_field(body, "channel"), settings):
            return {"result": {"expired": True}}
        ttl = settings.proxy_subscription_ttl_seconds or settings.token_ttl_seconds
        return {"result": {"expire_at": _now() + ttl}}


class PublishView(ProxyView):
    """Proxy spec §3.4: the namespace's validator decides, and may rewrite the data."""

    event = "publish"
    fault_as_error = True

    def answer(self, request: HttpRequest, body: dict[str, Any], settings: HeraldSettings) -> dict[str, Any]:
        user = user_by_id(string_field(body, "user"))
        app_name = without_prefix(string_field(body, "channel"), settings.channel_prefix)
        if app_name is None:
            return {"error": errors.PERMISSION_DENIED}
        namespace = split_channel(app_name)[1][:-1]
        entry = registry.publish_validator(namespace)
        if entry is None or not (user.is_authenticated or entry.allow_anonymous):
            return {"error": errors.PERMISSION_DENIED}
        return _call(entry, user, app_name, body.get("data"))


class RpcView(ProxyView):
    """Proxy spec §3.6: the method's handler answers; unknown methods get 104."""

    event = "rpc"
    fault_as_error = True

    def answer(self, request: HttpRequest, body: dict[str, Any], settings: HeraldSettings) -> dict[str, Any]:
        user = user_by_id(string_field(body, "user"))
        entry = registry.rpc_handler(string_field(body, "method", required=False))
        if entry is None:
            return {"error": errors.METHOD_NOT_FOUND}
        if not (user.is_authenticated or entry.allow_anonymous):
            return {"error": errors.PERMISSION_DENIED}
        return _call(entry, user, body.get("data"))


def _call(entry: registry.Registered, *args: Any) -> dict[str, Any]:
    """Run a validator or handler in a transaction, so a refusal leaves no half-done write.

    Returning None means "as sent" (publish) or an empty reply (RPC): ``{"result": {}}``,
    never ``"data": null``, which the gateway would pass on as the literal null (spec §2).
    """
    try:
        with transaction.atomic():
            value = entry.function(*args)
    except errors.HeraldProxyError as exc:
        return {"error": exc.as_error()}
    except errors.HeraldProxyDisconnect as exc:
        return {"disconnect": exc.as_disconnect()}
    return {"result": {} if value is None else {"data": value}}
