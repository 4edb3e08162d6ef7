"""``publish_realtime_event``: a thin Celery task around ``push_event``.

Policy, in one place:

* Transient failures (network, timeout, HTTP 5xx/429, temporary API errors) are retried
  with exponential backoff and jitter, up to ``REALTIME_PUBLISH_MAX_RETRIES``; then the
  event is dropped.
* Permanent failures (4xx, API errors such as an unknown channel, a payload that is not
  plain JSON) are dropped at once: retrying a request that is wrong cannot make it
  right, and a task that always fails must not clog the queue (no poison pill, no
  retry storm).
* Each dropped event is one ERROR line naming the channel and the reason.
* Every event carries one ``idempotency_key``, created when the task is *enqueued* and
  kept across retries, so a retry after a timeout that in fact succeeded is
  deduplicated by the gateway (decisions §6).
"""

from __future__ import annotations

import functools
import logging
import random
from collections.abc import Callable
from typing import Any

from celery import shared_task
from celery.contrib.django.task import DjangoTask
from celery.result import AsyncResult
from django.db import transaction

from herald.apiclient import ApiError, PermanentApiError, TransientApiError
from herald.django.conf import get_settings
from herald.django.publisher import new_idempotency_key, push_event, resolve_channel

logger = logging.getLogger(__name__)

# Position of ``idempotency_key`` among the task's positional parameters.
_KEY_POSITION = 4


def retry_delay(retries: int, base: float, cap: float, rand: Callable[[], float] = random.random) -> float:
    """Delay before retry number ``retries + 1``: exponential with "equal jitter", capped.

    Before the cap the delay lies in ``[d/2, d]`` with ``d = base * 2**retries``: ranges of
    consecutive retries touch but never go backwards, so delays only grow, while the random
    half spreads the retries of many events that failed together (a gateway restart).
    Capping the result keeps that order; by the time delays reach the cap, the earlier
    jitter has already spread those events apart.
    """
    full = base * (1 << retries)
    return min(cap, full / 2 + rand() * full / 2)


class PublishEventTask(DjangoTask[Any, None]):
    """Adds the idempotency key at enqueue time, so even a redelivered message keeps it."""

    def apply_async(
        self,
        args: tuple[Any, ...] | None = None,
        kwargs: dict[str, Any] | None = None,
        *rest: Any,
        **options: Any,
    ) -> AsyncResult[None]:
        kwargs = dict(kwargs or {})
        if not kwargs.get("idempotency_key") and len(args or ()) <= _KEY_POSITION:
            kwargs["idempotency_key"] = new_idempotency_key()
        return super().apply_async(args, kwargs, *rest, **options)


@shared_task(
    bind=True,
    base=PublishEventTask,
    name="herald.publish_realtime_event",
    ignore_result=True,
    # Retries are counted against REALTIME_PUBLISH_MAX_RETRIES below, read at run time.
    max_retries=None,
)
def publish_realtime_event(
    self: PublishEventTask,
    channel: str,
    event_type: str,
    payload: Any,
    recoverable: bool = False,
    idempotency_key: str | None = None,
) -> None:
    """Publish ``{"type": event_type, "payload": payload}`` to ``channel`` (see ``push_event``)."""
    # Messages sent by name from elsewhere may lack a key: make one before the first attempt.
    key = idempotency_key or new_idempotency_key()
    try:
        push_event(channel, event_type, payload, recoverable=recoverable, idempotency_key=key)
    except PermanentApiError as exc:
        _log_drop(channel, recoverable, event_type, exc)
        return
    except TransientApiError as exc:
        settings = get_settings()
        attempt = self.request.retries
        if attempt >= settings.publish_max_retries:
            _log_drop(channel, recoverable, event_type, exc, attempts=attempt + 1)
            return
        delay = retry_delay(attempt, settings.publish_retry_backoff, settings.publish_retry_backoff_max)
        if exc.retry_after is not None:
            # Honour the server's own estimate, within our cap.
            delay = max(delay, min(exc.retry_after, settings.publish_retry_backoff_max))
        logger.warning(
            "realtime publish to %s failed (%s); retry %d/%d in %.3fs",
            _gateway_channel(channel, recoverable),
            exc.reason,
            attempt + 1,
            settings.publish_max_retries,
            delay,
        )
        kwargs = {
            "channel": channel,
            "event_type": event_type,
            "payload": payload,
            "recoverable": recoverable,
            "idempotency_key": key,
        }
        raise self.retry(args=(), kwargs=kwargs, countdown=delay) from None


def _gateway_channel(channel: str, recoverable: bool) -> str:
    try:
        return resolve_channel(channel, recoverable=recoverable)
    except (ValueError, TypeError):
        return repr(channel)


def _log_drop(channel: str, recoverable: bool, event_type: str, exc: ApiError, attempts: int = 1) -> None:
    after = f" after {attempts} attempts" if attempts > 1 else ""
    logger.error(
        "realtime event dropped%s: channel=%s type=%s reason=%s",
        after,
        _gateway_channel(channel, recoverable),
        event_type,
        exc.reason,
    )


def publish_on_commit(
    channel: str,
    event_type: str,
    payload: Any,
    *,
    recoverable: bool = False,
    using: str | None = None,
) -> None:
    """Enqueue the event when the current transaction commits; never if it rolls back.

    Outside a transaction (autocommit) it is enqueued at once. If enqueueing fails (the
    broker is down), the failure is logged rather than raised: the rows are already
    committed, and the response should not turn into an error over a notification.
    """
    send = functools.partial(
        publish_realtime_event.delay,
        channel=channel,
        event_type=event_type,
        payload=payload,
        recoverable=recoverable,
        idempotency_key=new_idempotency_key(),
    )

    def enqueue() -> None:
        try:
            send()
        except Exception as exc:
            logger.error(
                "realtime event dropped: channel=%s type=%s reason=could not be enqueued (%s: %s)",
                _gateway_channel(channel, recoverable),
                event_type,
                type(exc).__name__,
                exc,
            )

    transaction.on_commit(enqueue, using=using)
