"""The transactional outbox: an event is a row written in the transaction of the change it
describes, so it exists exactly when the change does; a relay publishes it afterwards.

Theory of operation
-------------------
``publish_durably`` checks the event (channel name, plain JSON) and inserts a *pending*
row with its own idempotency key, in the caller's transaction: a rollback removes it with
the business rows, a commit makes it durable even if the broker, the gateway or the
process dies the next moment.

A relay round (``Relay.run_once``) is one database transaction:

1. Lock the *head* of up to ``batch_size`` channels: a pending row that is due and has no
   earlier pending row in its channel, ``FOR UPDATE SKIP LOCKED``. Whoever holds a
   channel's head owns that channel for the round; another relay skips the locked head and
   never sees a later row of that channel as a head, so two relays never publish the same
   row nor a channel's rows out of order.
2. Lock the rows that follow each head (same channel, in id order, up to the batch).
3. Publish in *waves*: one ``batch`` API request holds the next row of every channel still
   going, run in order by the gateway. One row per channel per request means a channel's
   next row leaves only after the gateway accepted the previous one.
4. A row the gateway accepted is marked sent. A transient failure (network, 5xx, a
   temporary API error) puts the row back with a growing delay and stops its channel for
   this round, so nothing after it overtakes it. A permanent refusal of one row (unknown
   channel…) *parks* it with the reason, visible in the admin, and its channel goes on. A
   refusal of the whole request (wrong key or URL) is a configuration problem, not a
   property of the rows: they are put back, never parked.
5. Commit. A relay that dies before the commit leaves its rows pending; the next round
   publishes them again with the same idempotency keys, and the gateway delivers each
   once (decisions §6: it remembers keys for five minutes).

SQLite has no row locks: there the round starts with a write, which takes the database's
single write lock, so relays (and writers) take turns for the length of a round.

Rows are published in id order among the rows committed when a round reads them. Two
transactions writing to one channel at the same moment may commit in the other order;
their events then leave in commit order.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import DEFAULT_DB_ALIAS, OperationalError, connections, router, transaction
from django.db.models import Exists, F, OuterRef, QuerySet
from django.utils import timezone

from herald.apiclient import ApiClient, ApiError
from herald.apiresults import encode_body, error_of
from herald.django.backoff import retry_delay
from herald.django.channels import RECOVERABLE_NAMESPACE, split_channel
from herald.django.conf import HeraldSettings, get_settings
from herald.django.models import OutboxMessage
from herald.django.publisher import event_publication, get_client, new_idempotency_key

logger = logging.getLogger(__name__)

PENDING = OutboxMessage.Status.PENDING
SENT = OutboxMessage.Status.SENT
PARKED = OutboxMessage.Status.PARKED
# Sent rows are deleted at most this many at a time, so pruning never holds a long lock.
PRUNE_CHUNK = 5_000


def database_for(using: str | None) -> str:
    return using or router.db_for_write(OutboxMessage) or DEFAULT_DB_ALIAS


def is_critical(channel: str, recoverable: bool) -> bool:
    """Whether an event goes to the history-keeping namespace (``REALTIME_OUTBOX_CRITICAL``)."""
    return recoverable or split_channel(channel)[1] == RECOVERABLE_NAMESPACE + ":"


def publish_durably(
    channel: str, event_type: str, payload: Any, *, recoverable: bool = False, using: str | None = None
) -> OutboxMessage:
    """Write the event to the outbox in the current transaction of ``using``; a relay
    publishes it once that transaction has committed. Raises ``PermanentApiError`` (here,
    inside the transaction) for a bad channel or event type and ``UnencodableData`` for a
    payload that is not plain JSON: such an event could never be published."""
    target, data = event_publication(channel, event_type, payload, recoverable=recoverable)
    body = encode_body("publish", data).decode()
    return OutboxMessage.objects.using(database_for(using)).create(
        channel=target, data=body, idempotency_key=new_idempotency_key()
    )


@dataclass
class RelayReport:
    sent: int = 0
    retried: int = 0
    parked: int = 0
    # The round could not start: another relay holds SQLite's write lock.
    busy: bool = False

    def add(self, other: RelayReport) -> None:
        self.sent += other.sent
        self.retried += other.retried
        self.parked += other.parked
        self.busy = self.busy or other.busy


class Relay:
    """Publishes the pending rows of one database (see the module docstring)."""

    def __init__(
        self,
        using: str = DEFAULT_DB_ALIAS,
        *,
        batch_size: int | None = None,
        client: ApiClient | None = None,
        settings: HeraldSettings | None = None,
        clock: Callable[[], datetime] = timezone.now,
    ) -> None:
        self.using = using
        self.settings = settings or get_settings()
        self.batch_size = batch_size or self.settings.outbox_batch_size
        self.client = client or get_client(self.settings)
        self.clock = clock

    def _rows(self) -> QuerySet[OutboxMessage]:
        return OutboxMessage.objects.using(self.using)

    # -- one round ----------------------------------------------------------------------

    def run_once(self, channel: str | None = None) -> RelayReport:
        """One round: lock, publish, mark, commit. ``channel`` limits it to one channel."""
        report = RelayReport()
        with transaction.atomic(using=self.using):
            if not self._take_sqlite_write_lock():
                report.busy = True
                return report
            now = self.clock()
            runs = self._claim(now, channel)
            if runs:
                self._publish(runs, now, report)
        return report

    def drain(self, channel: str | None = None, *, budget: float | None = None) -> RelayReport:
        """Rounds until one finds nothing to send (or ``budget`` seconds have passed)."""
        total = RelayReport()
        deadline = None if budget is None else time.monotonic() + budget
        while True:
            report = self.run_once(channel)
            total.add(report)
            if report.busy or report.sent + report.parked == 0:
                return total
            if deadline is not None and time.monotonic() >= deadline:
                return total

    def _take_sqlite_write_lock(self) -> bool:
        if connections[self.using].vendor != "sqlite":
            return True
        try:
            # An UPDATE that matches nothing still takes SQLite's write lock, held to the
            # end of the transaction: a second relay waits here (busy timeout) for its turn.
            self._rows().filter(pk=-1).update(attempts=0)
        except OperationalError as exc:
            if "locked" not in str(exc):
                raise
            return False
        return True

    def _claim(self, now: datetime, channel: str | None) -> list[list[OutboxMessage]]:
        pending = self._rows().filter(status=PENDING)
        earlier = pending.filter(channel=OuterRef("channel"), id__lt=OuterRef("id"))
        heads_query = pending.filter(next_attempt_at__lte=now).filter(~Exists(earlier))
        if channel is not None:
            heads_query = heads_query.filter(channel=channel)
        heads = list(heads_query.order_by("id").select_for_update(skip_locked=True, of=("self",))[: self.batch_size])
        if not heads:
            return []
        per_channel = max(1, self.batch_size // len(heads))
        runs = []
        for head in heads:
            run = [head]
            if per_channel > 1:
                followers = (
                    pending.filter(channel=head.channel, id__gt=head.id)
                    .order_by("id")
                    .select_for_update(skip_locked=True, of=("self",))[: per_channel - 1]
                )
                for row in followers:
                    if row.next_attempt_at > now:
                        break  # put back after a failure: it and what follows wait
                    run.append(row)
            runs.append(run)
        return runs

    def _publish(self, runs: list[list[OutboxMessage]], now: datetime, report: RelayReport) -> None:
        sent: list[int] = []
        position = [0] * len(runs)
        going = list(range(len(runs)))
        while going:
            wave = [(i, runs[i][position[i]]) for i in going]
            commands = [("publish", _publish_params(row)) for _, row in wave]
            try:
                replies = self.client.batch(commands)
            except ApiError as exc:
                # The whole request failed: nothing is known about any row of the wave.
                if not exc.transient:
                    logger.error(
                        "outbox relay: the gateway refused the request itself (%s); rows stay pending. "
                        "Check REALTIME_API_URL and REALTIME_API_KEY (manage.py herald_ping).",
                        exc.reason,
                    )
                for _, row in wave:
                    self._retry_later(row, exc, now, report)
                break
            still_going = []
            for (i, row), reply in zip(wave, replies, strict=True):
                error = reply.get("error")
                if error is None:
                    sent.append(row.id)
                    report.sent += 1
                else:
                    failure = error_of("publish", error)
                    if failure.transient:
                        self._retry_later(row, failure, now, report)
                        continue  # the channel stops here for this round
                    self._park(row, failure, now, report)
                position[i] += 1
                if position[i] < len(runs[i]):
                    still_going.append(i)
            going = still_going
        if sent:
            self._rows().filter(id__in=sent).update(status=SENT, sent_at=now, attempts=F("attempts") + 1)

    def _retry_later(self, row: OutboxMessage, exc: ApiError, now: datetime, report: RelayReport) -> None:
        s = self.settings
        delay = retry_delay(row.attempts, s.publish_retry_backoff, s.publish_retry_backoff_max)
        if exc.retry_after is not None:
            delay = max(delay, min(exc.retry_after, s.publish_retry_backoff_max))
        row.attempts += 1
        row.next_attempt_at = now + timedelta(seconds=delay)
        row.last_error = exc.reason
        row.save(update_fields=["attempts", "next_attempt_at", "last_error"])
        report.retried += 1
        logger.warning(
            "outbox: publish of row %d to %s failed (%s); attempt %d, next in %.3fs",
            row.id,
            row.channel,
            exc.reason,
            row.attempts,
            delay,
        )

    def _park(self, row: OutboxMessage, exc: ApiError, now: datetime, report: RelayReport) -> None:
        row.attempts += 1
        row.status = PARKED
        row.last_error = exc.reason
        row.save(update_fields=["attempts", "status", "last_error"])
        report.parked += 1
        logger.error(
            "outbox: row %d to %s parked: %s (retry it from the admin once the cause is fixed)",
            row.id,
            row.channel,
            exc.reason,
        )

    # -- housekeeping ---------------------------------------------------------------------

    def prune(self) -> int:
        """Delete rows sent longer than ``REALTIME_OUTBOX_KEEP_SENT_SECONDS`` ago; how many."""
        cutoff = self.clock() - timedelta(seconds=self.settings.outbox_keep_sent_seconds)
        deleted = 0
        while True:
            ids = list(
                self._rows()
                .filter(status=SENT, sent_at__lt=cutoff)
                .order_by("id")
                .values_list("id", flat=True)[:PRUNE_CHUNK]
            )
            if not ids:
                return deleted
            deleted += self._rows().filter(id__in=ids).delete()[0]
            if len(ids) < PRUNE_CHUNK:
                return deleted


def retry_parked(queryset: QuerySet[OutboxMessage]) -> int:
    """Put parked (or waiting) rows back in line for the next relay round; how many."""
    return queryset.exclude(status=SENT).update(status=PENDING, next_attempt_at=timezone.now())


def _publish_params(row: OutboxMessage) -> dict[str, Any]:
    return {"channel": row.channel, "data": json.loads(row.data), "idempotency_key": row.idempotency_key}
