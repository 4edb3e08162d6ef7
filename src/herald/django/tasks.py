"""``publish_realtime_event``: a thin Celery task around ``push_event``; ``relay_outbox``,
the outbox relay as a task; ``publish_on_commit``, which picks between the two.

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
* Tasks are acknowledged *after* they ran (``acks_late``) and given back to the broker
  when the worker running them dies (``reject_on_worker_lost``): a worker killed in the
  middle of a publish does not lose the event, and the key makes the second run harmless.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from celery import shared_task
from celery.contrib.django.task import DjangoTask
from celery.result import AsyncResult
from django.db import DEFAULT_DB_ALIAS, transaction

from herald.apiclient import ApiError, PermanentApiError, TransientApiError
from herald.django.backoff import retry_delay
from herald.django.conf import get_settings
from herald.django.publisher import new_idempotency_key, push_event, resolve_channel

__all__ = ["OUTBOX_BEAT_SCHEDULE", "publish_on_commit", "publish_realtime_event", "relay_outbox", "retry_delay"]

logger = logging.getLogger(__name__)

# Position of ``idempotency_key`` among the task's positional parameters.
_KEY_POSITION = 4


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
    # Crash safety (see the module docstring); with Redis or SQS as the broker, a task of a
    # worker that died comes back after the transport's visibility_timeout.
    acks_late=True,
    reject_on_worker_lost=True,
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


# Seconds a beat-started relay run may keep going before it leaves the rest to the next run.
RELAY_TASK_BUDGET = 30.0

# For ``CELERY_BEAT_SCHEDULE``: relay the default database's outbox every few seconds, so a
# row whose wake-up call was lost (broker down at commit) still goes out.
OUTBOX_BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    "herald-relay-outbox": {"task": "herald.relay_outbox", "schedule": 5.0},
}


@shared_task(
    name="herald.relay_outbox",
    ignore_result=True,
    acks_late=True,
    reject_on_worker_lost=True,
)
def relay_outbox(using: str = DEFAULT_DB_ALIAS, channel: str | None = None) -> None:
    """Publish the outbox's pending rows (of one ``channel``, when a commit woke it up for
    that channel; of all, with pruning, when beat runs it). Safe to run anywhere at any
    time: relays lock what they publish (``herald.django.outbox``)."""
    from herald.django.outbox import Relay

    relay = Relay(using)
    report = relay.drain(channel, budget=RELAY_TASK_BUDGET)
    if channel is None:
        relay.prune()
    if report.sent or report.retried or report.parked:
        logger.info(
            "outbox relay (%s%s): %d sent, %d to retry, %d parked",
            using,
            f", {channel}" if channel else "",
            report.sent,
            report.retried,
            report.parked,
        )


def publish_on_commit(
    channel: str,
    event_type: str,
    payload: Any,
    *,
    recoverable: bool = False,
    using: str | None = None,
    durable: bool | None = None,
) -> None:
    """Publish the event when the current transaction commits; never if it rolls back.

    ``durable=False``: the task is enqueued on commit. Outside a transaction (autocommit)
    it is enqueued at once. If enqueueing fails (the broker is down), the failure is
    logged rather than raised: the rows are already committed, and the response should
    not turn into an error over a notification. The event is lost.

    ``durable=True``: the event is written to the outbox *now*, in the transaction (see
    ``herald.django.outbox``), and a relay task is woken up on commit. If the broker is
    down, the row waits for the next relay run (``relay_outbox`` on beat, or
    ``manage.py herald_relay``): nothing is lost. A payload that is not plain JSON raises
    here, inside the transaction.

    ``durable=None`` (the default) means durable for ``critical:`` events when
    ``REALTIME_OUTBOX_CRITICAL`` is on, not durable otherwise.
    """
    if durable is None:
        from herald.django.outbox import is_critical

        durable = get_settings().outbox_critical and is_critical(channel, recoverable)
    if durable:
        _publish_durably_on_commit(channel, event_type, payload, recoverable=recoverable, using=using)
        return

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


def _publish_durably_on_commit(
    channel: str, event_type: str, payload: Any, *, recoverable: bool, using: str | None
) -> None:
    from herald.django.outbox import database_for, publish_durably

    alias = database_for(using)
    row = publish_durably(channel, event_type, payload, recoverable=recoverable, using=alias)

    def wake_relay() -> None:
        try:
            # No publish retries: the row is safe, and the request must not wait on a dead broker.
            relay_outbox.apply_async(kwargs={"using": alias, "channel": row.channel}, retry=False)
        except Exception as exc:
            logger.warning(
                "outbox: could not wake the relay for row %d (%s: %s); it waits for the next relay run",
                row.id,
                type(exc).__name__,
                exc,
            )

    transaction.on_commit(wake_relay, using=alias)
