"""The alternative Herald replaces: a minimal Django Channels push app (daphne + channels_redis).

Run by the benchmarks as ``daphne bench.channels_app.asgi:application``. A WebSocket at
``/ws/<group>/?token=<key>`` is authenticated by looking the token up in the database, joins
the group and receives whatever ``POST /publish/<group>/`` sends to the group with
``group_send``. ``POST /close/<group>/`` makes every consumer in the group close its socket.
"""
