"""The admin web UI: one page and a few JSON endpoints under ``/admin`` on the gateway's port.

Off unless the config sets ``admin: true`` (with ``admin_password`` and ``admin_secret``, which
the config check in ``checks.py`` holds to a minimum strength). Every action the page offers is
a server API method run through ``ServerAPI.call``, the code behind ``/api/<method>``
(``handlers.py``); watching a channel subscribes a server-side watcher on this node
(``watch.py``); sessions and login throttling are ``session.py``. Static files live in
``static/`` and ship with the package; there is no build step.

Nothing is imported here, so the config parser can import ``checks`` without the web server.
"""
