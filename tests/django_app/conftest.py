"""Django (SQLite and PostgreSQL), a private Redis as the Celery broker, a Celery worker, a
scripted API server and a real gateway for these tests.

Django is configured here, for this directory only: other test directories run without it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import django

os.environ["DJANGO_SETTINGS_MODULE"] = "tests.django_app.settings"
from tests.support.ports import free_port

# One queue and one pair of databases per test run: concurrent runs never meet.
QUEUE = os.environ.setdefault("HERALD_TEST_QUEUE", f"herald-test-{uuid.uuid4().hex[:12]}")
os.environ.setdefault("HERALD_TEST_DB_RUN", uuid.uuid4().hex[:12])
# The broker is a redis-server of this run (see ``broker``), so a test can take it down.
BROKER_PORT = free_port()
BROKER_URL = os.environ["HERALD_TEST_BROKER_URL"] = f"redis://127.0.0.1:{BROKER_PORT}/0"
django.setup()

import pytest  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test.utils import (  # noqa: E402
    setup_databases,
    setup_test_environment,
    teardown_databases,
    teardown_test_environment,
)

from herald.django import publisher  # noqa: E402
from tests.django_app.celery_app import app as celery_app  # noqa: E402
from tests.django_app.models import User  # noqa: E402
from tests.django_app.support.scripted_api import ScriptedApi  # noqa: E402
from tests.django_app.support.worker import CeleryWorker, Workers  # noqa: E402
from tests.support.gateway import GatewayProcess, base_config, running_gateway  # noqa: E402
from tests.support.redis_server import RedisServer  # noqa: E402
from tests.support.timing import seconds  # noqa: E402


@pytest.fixture(scope="session")
def django_db_setup() -> Iterator[None]:
    setup_test_environment()
    old_config = setup_databases(verbosity=0, interactive=False)
    try:
        yield
    finally:
        teardown_databases(old_config, verbosity=0)
        teardown_test_environment()


@pytest.fixture
def db(django_db_setup: None) -> Iterator[None]:
    """A database whose rows are really committed (``publish_on_commit`` needs real
    commits), emptied after the test."""
    yield
    call_command("flush", interactive=False, verbosity=0)


@pytest.fixture(params=["default", "postgres"], ids=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, django_db_setup: None) -> Iterator[str]:
    """A database alias, SQLite or PostgreSQL, emptied after the test (rows really committed)."""
    alias: str = request.param
    yield alias
    call_command("flush", interactive=False, verbosity=0, database=alias)


@pytest.fixture
def make_user(db: None) -> Callable[..., User]:
    def make(username: str = "alice", tenant_id: int | None = 7, **extra: Any) -> User:
        return User.objects.create_user(
            username=username, password="pw", email=f"{username}@example.com", tenant_id=tenant_id, **extra
        )

    return make


@pytest.fixture(autouse=True, scope="session")
def _close_pooled_clients() -> Iterator[None]:
    yield
    publisher.close_clients()


@pytest.fixture(scope="session")
def scripted_session() -> Iterator[ScriptedApi]:
    api = ScriptedApi()
    try:
        yield api
    finally:
        api.close()


@pytest.fixture
def scripted(scripted_session: ScriptedApi) -> ScriptedApi:
    """The scripted API server, with an empty script and no history."""
    scripted_session.reset()
    return scripted_session


@pytest.fixture(scope="session")
def broker_server() -> Iterator[RedisServer]:
    server = RedisServer(BROKER_PORT).start()
    try:
        yield server
    finally:
        celery_app.close()
        server.close()


@pytest.fixture(scope="session")
def broker(broker_server: RedisServer) -> str:
    return BROKER_URL


@pytest.fixture(scope="session")
def workers(broker: str) -> Iterator[Workers]:
    pool = Workers(
        {
            "DJANGO_SETTINGS_MODULE": "tests.django_app.settings",
            "HERALD_TEST_QUEUE": QUEUE,
            "HERALD_TEST_BROKER_URL": broker,
            # Fast retries and a short publish timeout, so retry tests take a second or two.
            "HERALD_TEST_PUBLISH_TIMEOUT": str(seconds(1)),
            "HERALD_TEST_MAX_RETRIES": "5",
            "HERALD_TEST_RETRY_BACKOFF": str(seconds(0.05)),
            "HERALD_TEST_RETRY_BACKOFF_MAX": str(seconds(1)),
        }
    )
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture
def scripted_worker(workers: Workers, scripted: ScriptedApi) -> CeleryWorker:
    """A worker whose REALTIME_API_URL is the scripted server."""
    return workers.ensure(HERALD_TEST_API_URL=scripted.url)


@pytest.fixture(scope="session")
def gateway() -> Iterator[GatewayProcess]:
    with running_gateway(base_config()) as gw:
        yield gw
