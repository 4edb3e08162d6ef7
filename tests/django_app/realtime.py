"""The test project's proxy functions, found by autodiscovery (``<app>.realtime``).

* ``chat`` namespace: a user may post to ``chat:tenant_<their tenant>`` only; text must be a
  non-empty string of at most 200 characters (else 400/401 custom errors); accepted lines are
  stored and published with their id and author.
* ``echo`` namespace: published as sent (the validator returns None).
* RPC ``orders.search``: the tenant's orders with a total of at least ``min_total``.
* RPC ``fail.custom`` raises a custom error, ``fail.crash`` an unexpected exception, and
  ``public.time`` is open to anonymous connections.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from herald.django.proxy import HeraldProxyDisconnect, HeraldProxyError, realtime_publish, realtime_rpc
from tests.django_app.models import ChatMessage, Order

MAX_TEXT = 200


@realtime_publish("chat")
def chat_line(user: Any, channel: str, data: Any) -> dict[str, Any]:
    if channel != f"chat:tenant_{user.tenant_id}":
        raise HeraldProxyError(403, "not your tenant's chat")
    text = data.get("text") if isinstance(data, dict) else None
    if not isinstance(text, str) or not text.strip():
        raise HeraldProxyError(400, "text is required")
    if len(text) > MAX_TEXT:
        raise HeraldProxyError(401, f"text longer than {MAX_TEXT} characters")
    if text == "kick me":
        raise HeraldProxyDisconnect(4503, "kicked")
    message = ChatMessage.objects.create(channel=channel, author=user, text=text)
    return {"id": message.pk, "author": user.get_username(), "text": text}


@realtime_publish("echo")
def echo(user: Any, channel: str, data: Any) -> None:
    return None


@realtime_rpc("orders.search")
def search_orders(user: Any, data: Any) -> dict[str, Any]:
    raw = data.get("min_total", "0") if isinstance(data, dict) else "0"
    try:
        min_total = Decimal(str(raw))
    except InvalidOperation:
        raise HeraldProxyError(400, "min_total must be a number") from None
    orders = Order.objects.filter(tenant_id=user.tenant_id, total__gte=min_total).order_by("pk")
    return {"orders": [{"id": o.pk, "total": str(o.total)} for o in orders]}


@realtime_rpc("fail.custom")
def fail_custom(user: Any, data: Any) -> None:
    raise HeraldProxyError(1404, "no such report", temporary=True)


@realtime_rpc("fail.crash")
def fail_crash(user: Any, data: Any) -> None:
    raise RuntimeError("a bug in the handler")


@realtime_rpc("public.time", allow_anonymous=True)
def public_time(user: Any, data: Any) -> dict[str, Any]:
    return {"anonymous": not user.is_authenticated}
