"""``manage.py herald_token alice``: a connection token for a user, as the token view answers it."""

from __future__ import annotations

import json
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.core.management.base import BaseCommand, CommandError, CommandParser

from herald.django.tokens import RealtimeTokenService


class Command(BaseCommand):
    help = 'Print {"token", "socket_url"} for a user, exactly what POST /realtime/token/ would answer.'

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("user", help="the username (or, with --id, the primary key)")
        parser.add_argument("--id", action="store_true", help="USER is a primary key, not a username")

    def handle(self, *args: Any, **options: Any) -> None:
        model = get_user_model()
        field = "pk" if options["id"] else str(model.USERNAME_FIELD)
        lookup: dict[str, Any] = {field: options["user"]}
        try:
            user = model._default_manager.get(**lookup)
        except (model.DoesNotExist, ValueError):
            what = "id" if options["id"] else model.USERNAME_FIELD
            raise CommandError(f"no user with {what} {options['user']!r}") from None
        service = RealtimeTokenService()
        try:
            token = service.generate_connection_token(user)
        except PermissionDenied:
            raise CommandError(f"user {options['user']!r} is not active: no token for them") from None
        self.stdout.write(json.dumps({"token": token, "socket_url": service.settings.socket_url}))
