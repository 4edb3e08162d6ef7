"""Create the proxy benchmark's SQLite database: users ``u0`` .. ``u<N-1>``, each with a live
session whose key is :func:`session_key` of its index, as if each had logged in once.

BENCH_PROXY_DB=proxy.sqlite3 python -m bench.proxy_app.setup_db --users 10000
"""

from __future__ import annotations

import argparse
import os

# The session key of storm client ``i`` (32 characters, like Django's own keys).
SESSION_KEY_TEMPLATE = "benchsession{i:020d}"


def session_key(index: int) -> str:
    return SESSION_KEY_TEMPLATE.format(i=index)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, required=True)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.proxy_app.settings")
    import django

    django.setup()
    from datetime import timedelta

    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.auth.models import User
    from django.contrib.sessions.backends.db import SessionStore
    from django.contrib.sessions.models import Session
    from django.core.management import call_command
    from django.utils import timezone

    call_command("migrate", verbosity=0)
    have = User.objects.count()
    if have >= args.users:
        return
    users = User.objects.bulk_create(
        [User(username=f"u{i}", password="!") for i in range(have, args.users)], batch_size=2000
    )
    expire = timezone.now() + timedelta(days=1)
    store = SessionStore()
    sessions = [
        Session(
            session_key=session_key(have + i),
            session_data=store.encode(
                {
                    SESSION_KEY: str(user.pk),
                    BACKEND_SESSION_KEY: "django.contrib.auth.backends.ModelBackend",
                    HASH_SESSION_KEY: user.get_session_auth_hash(),
                }
            ),
            expire_date=expire,
        )
        for i, user in enumerate(users)
    ]
    Session.objects.bulk_create(sessions, batch_size=2000)


if __name__ == "__main__":
    main()
