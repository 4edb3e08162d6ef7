"""Herald's token endpoint, spreading users over the gateway nodes when there are several;
and the proxy-mode functions of the live chat page (publish validator, RPC).

With one node (``make run``) this is exactly ``herald.django.views.RealtimeTokenView``.
With the multi-node launcher, ``DEMO_SOCKET_URLS`` lists every node and each user is sent
to one of them by id, so two users of one tenant sit on different nodes and still see
each other's events: that crossing is what the Redis engine is for.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.request import Request
from rest_framework.response import Response

from herald.django.proxy import HeraldProxyError, realtime_publish, realtime_rpc
from herald.django.views import RealtimeTokenView
from orders import services
from orders.models import ChatLine, Order, User


class NodePickingTokenView(RealtimeTokenView):
    def post(self, request: Request) -> Response:
        response = super().post(request)
        urls: list[str] = settings.DEMO_SOCKET_URLS
        response.data["socket_url"] = urls[int(request.user.pk or 0) % len(urls)]
        return response


# --- Proxy mode: the live chat page (/live-chat/) -------------------------------------
# That page connects with no token: the gateway asks herald.django.proxy at connect (the
# session cookie), at subscribe (the "chat" namespace has proxy_subscribe) and at publish
# (proxy_publish). These two functions are found by herald.django.proxy's autodiscovery
# of ``realtime`` modules.


@realtime_publish("chat")
def chat_line(user: Any, channel: str, data: Any) -> dict[str, Any]:
    """A line posted to ``chat:tenant_<id>`` by a member of that tenant: checked, stored,
    and published as stored (with its id and author), never as the browser sent it."""
    if not isinstance(user, User) or user.tenant_id is None or channel != services.chat_channel(user.tenant_id):
        raise HeraldProxyError(403, "not your tenant's chat")
    text = data.get("text") if isinstance(data, dict) else None
    if not isinstance(text, str) or not text.strip():
        raise HeraldProxyError(400, "a message needs text")
    if len(text) > services.CHAT_TEXT_MAX:
        raise HeraldProxyError(413, f"at most {services.CHAT_TEXT_MAX} characters")
    line = ChatLine.objects.create(tenant_id=user.tenant_id, author=user, text=text.strip())
    return services.chat_line_data(line)


@realtime_rpc("orders.search")
def search_orders(user: Any, data: Any) -> dict[str, Any]:
    """The user's tenant's orders whose item contains ``q``, newest first (at most 10)."""
    if not isinstance(user, User) or user.tenant_id is None:
        raise HeraldProxyError(403, "you belong to no tenant")
    query = data.get("q", "") if isinstance(data, dict) else ""
    if not isinstance(query, str) or len(query) > 100:
        raise HeraldProxyError(400, "q must be a string of at most 100 characters")
    orders = Order.objects.filter(tenant_id=user.tenant_id, item__icontains=query.strip()).select_related("created_by")
    return {"q": query, "orders": [services.order_data(order) for order in orders[:10]]}


def can_subscribe(user: Any, channel: str) -> bool:
    """``REALTIME_SUBSCRIPTION_AUTHORIZER``: the live chat of the user's own tenant. The
    subscribe proxy asks it (the channel comes without the environment prefix)."""
    return isinstance(user, User) and user.tenant_id is not None and channel == services.chat_channel(user.tenant_id)
