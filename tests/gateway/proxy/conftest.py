"""The application backend every proxy test talks to: one per test module, forgetting the
calls and scripted answers of the previous test before each one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.app_backend import AppBackend


@pytest.fixture(scope="module")
def backend() -> Iterator[AppBackend]:
    with AppBackend() as app:
        yield app


@pytest.fixture(autouse=True)
def fresh_backend(backend: AppBackend) -> None:
    backend.reset()
