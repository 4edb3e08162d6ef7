"""Create the Channels app's SQLite database with users and tokens ``tok0`` .. ``tok<N-1>``.

BENCH_CHANNELS_DB=channels-bench.sqlite3 python -m bench.channels_app.setup_db --tokens 20000
"""

from __future__ import annotations

import argparse
import os


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, required=True)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.channels_app.settings")
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command

    from bench.channels_app.models import AccessToken

    call_command("migrate", run_syncdb=True, verbosity=0)
    have = AccessToken.objects.count()
    if have >= args.tokens:
        return
    users = User.objects.bulk_create(
        [User(username=f"u{i}", password="!") for i in range(have, args.tokens)], batch_size=2000
    )
    AccessToken.objects.bulk_create(
        [AccessToken(key=f"tok{have + i}", user=user) for i, user in enumerate(users)], batch_size=2000
    )


if __name__ == "__main__":
    main()
