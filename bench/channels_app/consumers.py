from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async  # type: ignore[import-untyped]
from channels.generic.websocket import AsyncWebsocketConsumer  # type: ignore[import-untyped]

from bench.channels_app.models import AccessToken


def _user_for(key: str) -> int | None:
    token = AccessToken.objects.select_related("user").filter(key=key, user__is_active=True).first()
    return token.user.pk if token is not None else None


class PushConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]
    group = ""

    async def connect(self) -> None:
        query = parse_qs(self.scope["query_string"].decode())
        key = (query.get("token") or [""])[0]
        user = await database_sync_to_async(_user_for)(key) if key else None
        if user is None:
            await self.close(code=4001)
            return
        self.group = self.scope["url_route"]["kwargs"]["group"]
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def push_message(self, event: dict[str, Any]) -> None:
        await self.send(text_data=event["text"])

    async def push_close(self, event: dict[str, Any]) -> None:
        await self.close(code=1012)
