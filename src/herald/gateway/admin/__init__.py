"""The admin web UI: one page and a few JSON endpoints under ``/admin`` on the gateway's port.

Off unless the config sets ``admin: true`` (with ``admin_password`` and ``admin_secret``, which
the config check holds to a minimum strength). Every action the page offers is a server API
method run through ``ServerAPI.call``, the code behind ``/api/<method>``; watching a channel
subscribes a server-side watcher on this node (``watch.py``). Static files live in
``static/`` and ship with the package; there is no build step.
"""

from __future__ import annotations

from aiohttp import web

from herald.gateway.admin.handlers import Admin
from herald.gateway.api import ServerAPI
from herald.gateway.node import Node


def mount_admin(app: web.Application, node: Node, api: ServerAPI) -> Admin:
    """Add the admin routes to the gateway's HTTP application (before it starts)."""
    admin = Admin(node, api)
    admin.mount(app)
    return admin
