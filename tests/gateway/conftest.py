from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.gateway import GatewayProcess, base_config, running_gateway


@pytest.fixture(scope="module")
def gateway() -> Iterator[GatewayProcess]:
    """One gateway process per test module, with the base config."""
    with running_gateway(base_config()) as gw:
        yield gw
