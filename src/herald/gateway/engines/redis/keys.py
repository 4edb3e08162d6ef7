"""Redis key and PUB/SUB channel names of the engine (``<p>`` = ``redis_prefix``).

=====================================  ==========================================================
``<p>.client.<ch>``                    PUB/SUB channel carrying publications and join/leave events
``<p>.control``                        PUB/SUB channel for node-to-node control messages
``<p>.probe.<id>``                     PUB/SUB channel on which one node's connection checks itself
``<p>.stream.<ch>``                    Redis STREAM of publications, entry id ``<offset>-0``
``<p>.meta.<ch>``                      HASH ``e`` = epoch, ``s`` = top offset
``<p>.result.<n>.<ch>.<key>``          HASH ``e``, ``s``: an idempotent publish result (expires);
                                       ``<n>`` = the channel's length, so keys never collide
``<p>.presence.data.<ch>``             HASH client id → ClientInfo JSON
``<p>.presence.expire.<ch>``           ZSET client id scored by its expiry time
``<p>.revoked.<n>.<scope><jti>``       revoked token id (expires at the revocation's end); ``<n>``
                                       = the length of the scope (the API key's environment prefix)
``<p>.invalidated.<n>.<scope><u>``     ``issued_before:expire_at`` of a user-wide invalidation
=====================================  ==========================================================

On Redis Cluster ``<ch>`` is written ``{<ch>}``, a hash tag (spec §9.1): every key of a channel,
and its PUB/SUB channel, hash to one slot, so the publish script (stream, meta, result and
``SPUBLISH`` together) runs on one node. A channel name that starts with ``}`` would make an
empty tag, which Redis ignores, so such a channel is written ``{_}<ch>~`` (its tag is ``_``;
the ``~`` instead of a closing brace tells the two forms apart when a name is read back).
"""

from __future__ import annotations


class KeyNames:
    __slots__ = ("_client", "control", "prefix", "tagged")

    def __init__(self, prefix: str, *, tagged: bool = False) -> None:
        self.prefix = prefix
        self.tagged = tagged
        self.control = f"{prefix}.control"
        self._client = f"{prefix}.client."

    def _ch(self, channel: str) -> str:
        if not self.tagged:
            return channel
        return "{_}" + channel + "~" if channel.startswith("}") else "{" + channel + "}"

    def key(self, *parts: str) -> str:
        return ".".join((self.prefix, *parts))

    def client(self, channel: str) -> str:
        """The PUB/SUB channel of a channel."""
        return self._client + self._ch(channel)

    def channel_of(self, pubsub_name: str) -> str | None:
        """The channel a PUB/SUB channel name carries; None for control and probe channels."""
        if not pubsub_name.startswith(self._client):
            return None
        name = pubsub_name[len(self._client) :]
        if not self.tagged:
            return name
        return name[1:-1] if name.endswith("}") else name[3:-1]

    def stream(self, channel: str) -> str:
        return f"{self.prefix}.stream.{self._ch(channel)}"

    def meta(self, channel: str) -> str:
        return f"{self.prefix}.meta.{self._ch(channel)}"

    def result(self, channel: str, idempotency_key: str) -> str:
        return f"{self.prefix}.result.{len(channel)}.{self._ch(channel)}.{idempotency_key}"

    def presence(self, channel: str) -> tuple[str, str]:
        """(data hash, expiry zset)."""
        ch = self._ch(channel)
        return f"{self.prefix}.presence.data.{ch}", f"{self.prefix}.presence.expire.{ch}"

    def probe(self, tag: str) -> str:
        return f"{self.prefix}.probe.{tag}"
