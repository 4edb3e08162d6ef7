"""Who may do what on a channel: pure decisions from config, options and connection facts.

Subscribe (decisions §1 over spec §4.6): allowed by a subscription token, by a ``#``
user-limited channel naming the user, by the connection token's grant list (exact string
match), by the namespace's ``allow_subscribe_for_client``, or by ``client_insecure``.
Nothing else: a grant nobody gave means error 103.

Channel names (spec §7, hardened): every name, from a client command or a server API call,
passes :func:`check_channel_name`; a client subscribe also passes :func:`check_subscribe_name`
(ASCII or the namespace's ``channel_regex``, as the reference does).
"""

from __future__ import annotations

import re
from functools import lru_cache

from herald import errors
from herald.gateway.config import ChannelOptions, Config


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


# C0 and C1 control characters and DEL: never part of a name, and dangerous in logs and keys.
_CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f]")


def check_channel_name(config: Config, channel: str) -> None:
    """Error 107 for a name that is over ``channel_max_length`` bytes, not valid UTF-8 (a lone
    surrogate), or holds a control character. Emptiness is checked by callers: the client
    protocol answers it with 3501, the server API with 107."""
    try:
        size = len(channel.encode())
    except UnicodeEncodeError:
        raise errors.ERROR_BAD_REQUEST from None
    if size > config.channel_max_length or _CONTROL_CHARACTERS.search(channel):
        raise errors.ERROR_BAD_REQUEST


def check_subscribe_name(config: Config, opts: ChannelOptions, channel: str) -> None:
    """Error 107 for a client subscribe to a non-ASCII name or one missing ``channel_regex``."""
    if opts.channel_regex:
        name = channel
        if config.channel_private_prefix and name.startswith(config.channel_private_prefix):
            name = name[len(config.channel_private_prefix) :]
        _, sep, rest = name.partition(config.channel_namespace_boundary)
        if not _compiled(opts.channel_regex).fullmatch(rest if sep else name):
            raise errors.ERROR_BAD_REQUEST
    elif not channel.isascii():
        raise errors.ERROR_BAD_REQUEST


def is_private(config: Config, channel: str) -> bool:
    return bool(config.channel_private_prefix) and channel.startswith(config.channel_private_prefix)


def is_user_limited(config: Config, opts: ChannelOptions, channel: str) -> bool:
    return opts.allow_user_limited_channels and config.channel_user_boundary in channel


def user_limited_allows(config: Config, channel: str, user: str) -> bool:
    """``dialog#42,43``: the users after the last ``#``, comma-separated (spec §7)."""
    users = channel.rsplit(config.channel_user_boundary, 1)[1]
    return bool(user) and user in users.split(config.channel_user_separator)


def subscribe_allowed_by(config: Config, opts: ChannelOptions, channel: str, user: str, grants: frozenset[str]) -> str:
    """Why a token-less subscribe is allowed ("user", "grant", "namespace", "insecure"), else 103."""
    if is_private(config, channel):
        raise errors.ERROR_PERMISSION_DENIED  # private channels always need a subscription token
    if channel in grants:
        return "grant"
    if is_user_limited(config, opts, channel):
        if user_limited_allows(config, channel, user):
            return "user"
    elif opts.allow_subscribe_for_client and (user or opts.allow_subscribe_for_anonymous):
        return "namespace"
    if config.client_insecure:
        return "insecure"
    raise errors.ERROR_PERMISSION_DENIED


def can_publish(config: Config, opts: ChannelOptions, user: str, subscribed: bool) -> bool:
    if config.client_insecure:
        return True
    if opts.allow_publish_for_client and (user or opts.allow_publish_for_anonymous):
        return True
    return opts.allow_publish_for_subscriber and subscribed and (bool(user) or opts.allow_publish_for_anonymous)


def can_read_presence(config: Config, opts: ChannelOptions, user: str, subscribed: bool) -> bool:
    if config.client_insecure:
        return True
    if not user and not opts.allow_presence_for_anonymous:
        return False
    return opts.allow_presence_for_client or (opts.allow_presence_for_subscriber and subscribed)


def can_read_history(config: Config, opts: ChannelOptions, user: str, subscribed: bool) -> bool:
    if config.client_insecure:
        return True
    if not user and not opts.allow_history_for_anonymous:
        return False
    return opts.allow_history_for_client or (opts.allow_history_for_subscriber and subscribed)
