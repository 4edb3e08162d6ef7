"""What the browser tests share: the demo's launcher, and questions asked of a dashboard page."""

from __future__ import annotations

import importlib.util
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from playwright.sync_api import Page

from herald.apiclient import ApiClient
from tests.support.ports import free_port
from tests.support.timing import seconds

ROOT = Path(__file__).resolve().parents[2]
DEMO_DIR = ROOT / "examples" / "demo"
ARTIFACTS = ROOT / "test-artifacts"
# Seconds from "order created" to the Celery task that pays it, in this test stack.
COMPLETE_DELAY = 1.0
# The shortest lifetime herald.django allows, so the refresh test sees a refresh soon.
TOKEN_TTL = 30


def _load_launcher() -> ModuleType:
    # By path: examples/ is not a package, and the demo's folder must not shadow anything.
    spec = importlib.util.spec_from_file_location("herald_demo_launcher", DEMO_DIR / "launcher.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


launcher = _load_launcher()


@contextmanager
def running_demo(data: Path, name: str, nodes: int = 1, **config: Any) -> Iterator[Any]:
    """The demo's processes, started by its own launcher on free ports with a fresh database;
    their logs are kept in ``test-artifacts/browser-logs/<name>``, the first place to look."""
    extra_env = {"DEMO_COMPLETE_DELAY": str(COMPLETE_DELAY), "DEMO_TOKEN_TTL": str(TOKEN_TTL)}
    extra_env.update(config.pop("extra_env", {}))
    ports: list[int] = []
    while len(ports) < nodes + 1:
        port = free_port()
        if port not in ports:
            ports.append(port)
    settings = launcher.DemoConfig(
        web_port=ports[0],
        gateway_ports=ports[1:],
        data_dir=data,
        db_path=data / "demo.sqlite3",
        extra_env=extra_env,
        **config,
    )
    stack = launcher.Demo(settings, data / "logs")
    stack.prepare()
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
        shutil.copytree(stack.log_dir, ARTIFACTS / "browser-logs" / name, dirs_exist_ok=True)


def orders_channel(page: Page) -> str:
    channel: str = page.evaluate("JSON.parse(document.getElementById('demo-config').textContent).channels.orders")
    return channel


def number(page: Page, selector: str) -> int:
    return int(page.inner_text(selector))


def assert_not_reloaded(page: Page) -> None:
    assert page.evaluate("window.sameDocument === true"), "the page was reloaded"


Login = Callable[[str], Page]


def row(page: Page, order_id: int) -> Any:
    return page.locator(f'#orders tr[data-order-id="{order_id}"]')


def place_order_by_click(page: Page) -> int:
    """Press "New order" and return the new order's id, as Django answered it."""
    with page.expect_response("**/api/orders/") as answer:
        page.click("#new-order")
    assert answer.value.status == 201, answer.value.text()
    order_id: int = answer.value.json()["id"]
    return order_id


def place_order_by_command(demo: Any, username: str, delay: float | None = None) -> int:
    """``manage.py create_order`` (the command a newcomer can run beside the browser). Without
    a ``delay`` the order stays pending until :func:`pay_order_by_command`."""
    options = ["--hold"] if delay is None else ["--delay", str(delay)]
    out: str = demo.manage("create_order", username, *options)
    return int(out.split()[0])


def pay_order_by_command(demo: Any, order_id: int) -> None:
    """``manage.py pay_order``: what the Celery task does, at the moment the test chooses."""
    demo.manage("pay_order", str(order_id))


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + seconds(timeout)
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


def completed_in_history(api: ApiClient, channel: str, order_id: int) -> bool:
    result = api.call("history", {"channel": channel, "limit": 100})
    return any(
        pub["data"]["type"] == "order.completed" and pub["data"]["payload"]["id"] == order_id
        for pub in result.get("publications", [])
    )


def paid_in_django(demo: Any, page: Page, order_id: int) -> bool:
    """Asked of Django with the page's session cookie, not through the page's script."""
    state = page.context.request.get(f"{demo.config.web_url}/api/state/").json()
    return any(order["id"] == order_id and order["status"] == "paid" for order in state["orders"])
