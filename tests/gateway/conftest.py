from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.gateway import GatewayProcess, base_config, running_gateway

# The engine contract lives outside test_*.py: without this its failures would say nothing.
pytest.register_assert_rewrite("tests.gateway.broker_contract")


@pytest.fixture(scope="module")
def gateway() -> Iterator[GatewayProcess]:
    """One gateway process per test module, with the base config."""
    with running_gateway(base_config()) as gw:
        yield gw
