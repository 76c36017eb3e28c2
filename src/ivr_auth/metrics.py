"""Prometheus metrics: the counters and latency histograms this process
keeps, and the figures every process shares, read from Postgres at scrape
time so that they are right whichever API process Prometheus happens to
scrape (a controller-only process leaves those to the API).

No label ever carries a phone number, a request id or a string a tenant
chose: methods, statuses, outcomes, Q.850 causes and refusal reasons come
from the code; nodes and trunks from the operator's config."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Iterable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ivr_auth import errors
from ivr_auth.ari import client as ari_client
from ivr_auth.store import gauges

logger = logging.getLogger(__name__)

PREFIX = "ivr_auth"
METHODS = ("dtmf", "voice", "inbound", "sms")
OUTBOUND_METHODS = ("dtmf", "voice")
SCRAPE_TIMEOUT_SECONDS = 2.0
# The API's refusals by reason: the limits' own reasons, and these for the
# other 4xx answers (by status; any other status is "other"). What aiohttp's
# HTTP parser refuses (400, 414, 431) never reaches the application: logged,
# not counted.
REFUSAL_STATUSES = {400: "invalid", 401: "unauthorized", 409: "conflict", 415: "invalid", 422: "invalid"}
WEBHOOK_RESULTS = ("delivered", "failed", "given_up")
SMS_SUBMIT_RESULTS = ("ok", "refused", "retry")
SMPP_BIND_RESULTS = ("ok", "failed")

# From due to the originate: the queue's wait plus the claim; minutes mean a backlog.
ACCEPT_TO_INVITE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
# From the answer to the result: prompts and keying, tens of seconds.
ANSWER_TO_RESULT_BUCKETS = (2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0)
# From the result to its webhook delivered: sub-second, or hours of retries.
RESULT_TO_WEBHOOK_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 21600.0, 86400.0)


def _labelled(
    family: GaugeMetricFamily | CounterMetricFamily, counts: Mapping[tuple[str, ...], int]
) -> GaugeMetricFamily | CounterMetricFamily:
    for values, n in sorted(counts.items()):
        family.add_metric(list(values), n)
    return family


def families(snapshot: gauges.Snapshot | None) -> list[GaugeMetricFamily | CounterMetricFamily]:
    """The database's figures as metric families; only ``..._database_up 0``
    when it could not be read."""
    up = GaugeMetricFamily(f"{PREFIX}_database_up", "1 when this scrape could read Postgres, else 0.")
    up.add_metric([], 0 if snapshot is None else 1)
    if snapshot is None:
        return [up]
    created = {(m,): 0 for m in METHODS} | dict(snapshot.total("requests_created"))
    webhooks = {("delivered",): 0, ("given_up",): 0} | dict(snapshot.total("webhooks"))
    return [
        up,
        _labelled(
            GaugeMetricFamily(
                f"{PREFIX}_requests_in_progress",
                "Requests not finished, by method and status (queued, calling, in_call, sent, delivered).",
                labels=["method", "status"],
            ),
            snapshot.requests_in_progress,
        ),
        GaugeMetricFamily(
            f"{PREFIX}_queue_depth",
            "Queued dtmf and voice requests (due or waiting for a retry).",
            snapshot.queue_depth,
        ),
        GaugeMetricFamily(
            f"{PREFIX}_queue_oldest_age_seconds",
            "Age of the oldest queued dtmf or voice request (0 when none is queued).",
            snapshot.queue_oldest_age_seconds,
        ),
        _labelled(
            GaugeMetricFamily(
                f"{PREFIX}_calls_in_progress",
                "Calls placed and not yet ended, by node and trunk.",
                labels=["node", "trunk"],
            ),
            snapshot.calls_in_progress,
        ),
        _labelled(
            CounterMetricFamily(
                f"{PREFIX}_requests_created", "Requests created, by method (every process).", labels=["method"]
            ),
            created,
        ),
        _labelled(
            CounterMetricFamily(
                f"{PREFIX}_request_transitions",
                "Times a request entered a status, by method and status (every process; each terminal"
                " status once per request).",
                labels=["method", "status"],
            ),
            snapshot.total("request_transitions"),
        ),
        _labelled(
            CounterMetricFamily(
                f"{PREFIX}_dial_outcomes",
                "Call attempts ended, by outcome and Q.850 cause ('none' when there was none).",
                labels=["outcome", "cause"],
            ),
            snapshot.total("dial_outcomes"),
        ),
        GaugeMetricFamily(
            f"{PREFIX}_webhook_deliveries_pending",
            "Webhook deliveries in the outbox not yet delivered or given up.",
            snapshot.webhooks_pending,
        ),
        _labelled(
            CounterMetricFamily(
                f"{PREFIX}_webhook_deliveries",
                "Webhook deliveries ended, by result (delivered, given_up).",
                labels=["result"],
            ),
            webhooks,
        ),
        GaugeMetricFamily(
            f"{PREFIX}_sms_pending",
            "SMS in the outbox not yet taken by a carrier (waiting, or being submitted).",
            snapshot.sms_pending,
        ),
        _labelled(
            CounterMetricFamily(
                f"{PREFIX}_sms_outcomes",
                "SMS ended, by outcome (delivered, undeliverable, expired, refused, canceled) and encoding"
                " (gsm7, ucs2; none: never sent), every process.",
                labels=["outcome", "encoding"],
            ),
            snapshot.total("sms_outcomes"),
        ),
    ]


class _Database(Collector):
    """Yields the snapshot ``Metrics.exposition`` read just before."""

    def __init__(self) -> None:
        self.snapshot: gauges.Snapshot | None = None

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        return iter(families(self.snapshot))


class _AriRequests(Collector):
    """The process's ARI REST requests, counted where they are made (ari/client.py)."""

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            f"{PREFIX}_ari_requests", "ARI REST requests made by this process, by HTTP method.", labels=["method"]
        )
        for method, n in sorted(ari_client.REQUESTS.items()):
            family.add_metric([method], n)
        yield family


class Metrics:
    """One per process, built by the composition root and injected."""

    def __init__(self, figures: gauges.Gauges | None, *, timeout: float = SCRAPE_TIMEOUT_SECONDS) -> None:
        """``figures``: where the figures shared by every process are read
        (None: this process exposes only its own)."""
        self.registry = CollectorRegistry()
        self._gauges = figures
        self._timeout = timeout
        # One scrape at a time: each exposes the snapshot it read itself.
        self._lock = asyncio.Lock()
        self._database = _Database()
        self.requests_created = Counter(
            f"{PREFIX}_api_verifications",
            "Verification requests created by this API process, by method (replays not counted).",
            ["method"],
            registry=self.registry,
        )
        self.requests_refused = Counter(
            f"{PREFIX}_api_refusals",
            "Requests this API process refused, by reason: a limit's, or unauthorized, conflict, invalid, other.",
            ["reason"],
            registry=self.registry,
        )
        self.accept_to_invite = Histogram(
            f"{PREFIX}_accept_to_invite_seconds",
            "From a request becoming due (created, or its retry's time) to its call's originate, by method.",
            ["method"],
            buckets=ACCEPT_TO_INVITE_BUCKETS,
            registry=self.registry,
        )
        self.answer_to_result = Histogram(
            f"{PREFIX}_answer_to_result_seconds",
            "From a call's answer to the request's result recorded by the call, by method.",
            ["method"],
            buckets=ANSWER_TO_RESULT_BUCKETS,
            registry=self.registry,
        )
        self.result_to_webhook = Histogram(
            f"{PREFIX}_result_to_webhook_seconds",
            "From a request's result to its webhook delivered.",
            buckets=RESULT_TO_WEBHOOK_BUCKETS,
            registry=self.registry,
        )
        self.webhook_attempts = Counter(
            f"{PREFIX}_webhook_attempts",
            "Webhook delivery attempts made by this process, by result (delivered, failed, given_up).",
            ["result"],
            registry=self.registry,
        )
        self.ari_reconnects = Counter(
            f"{PREFIX}_ari_reconnects",
            "Times the ARI events websocket connected again after a loss, by node.",
            ["node"],
            registry=self.registry,
        )
        self.ari_up = Gauge(
            f"{PREFIX}_ari_connected",
            "1 while the ARI events websocket to the node is connected, else 0.",
            ["node"],
            registry=self.registry,
        )
        self.asterisk_info = Gauge(
            f"{PREFIX}_asterisk_info",
            "1 for the Asterisk release each ARI node runs (GET /asterisk/info when its websocket connected).",
            ["node", "version"],
            registry=self.registry,
        )
        self._asterisk_versions: dict[str, str] = {}
        self.inbound_claims = Counter(
            f"{PREFIX}_inbound_claims",
            "Inbound calls StasisBroadcast offered this controller that it claimed, by node and result"
            " (won; lost: another controller won, or the offer was over).",
            ["node", "result"],
            registry=self.registry,
        )
        for method in METHODS:
            self.requests_created.labels(method)
            self.answer_to_result.labels(method)
        for method in OUTBOUND_METHODS:
            self.accept_to_invite.labels(method)
        for result in WEBHOOK_RESULTS:
            self.webhook_attempts.labels(result)
        self.registry.register(_AriRequests())
        if figures is not None:
            self.registry.register(self._database)

    def created(self, method: str) -> None:
        self.requests_created.labels(method).inc()

    def refused(self, reason: str) -> None:
        self.requests_refused.labels(reason).inc()

    def api_error(self, status: int) -> None:
        """An API refusal other than a limit's, counted by its status's reason."""
        self.refused(REFUSAL_STATUSES.get(status, "other"))

    def invited(self, method: str, seconds: float) -> None:
        self.accept_to_invite.labels(method).observe(max(seconds, 0.0))

    def result(self, method: str, seconds: float) -> None:
        self.answer_to_result.labels(method).observe(max(seconds, 0.0))

    def webhook_attempt(self, result: str, seconds_since_result: float | None = None) -> None:
        """``seconds_since_result`` only for a delivery."""
        self.webhook_attempts.labels(result).inc()
        if seconds_since_result is not None:
            self.result_to_webhook.observe(max(seconds_since_result, 0.0))

    def asterisk_release(self, node: str, version: str) -> None:
        """The node's Asterisk is ``version`` now (an upgrade replaces the old label)."""
        previous = self._asterisk_versions.get(node)
        if previous is not None and previous != version:
            self.asterisk_info.remove(node, previous)
        self._asterisk_versions[node] = version
        self.asterisk_info.labels(node, version).set(1)

    def ari_connection(self, node: str, *, up: bool, reconnect: bool = False) -> None:
        self.ari_up.labels(node).set(1 if up else 0)
        reconnects = self.ari_reconnects.labels(node)  # shown at 0 before the first
        if reconnect:
            reconnects.inc()

    def inbound_claim(self, node: str, *, won: bool) -> None:
        self.inbound_claims.labels(node, "won" if won else "lost").inc()

    async def exposition(self) -> bytes:
        """The text format; never raises for a database that cannot answer."""
        async with self._lock:
            if self._gauges is not None:
                self._database.snapshot = await self._read(self._gauges)
            return generate_latest(self.registry)

    async def _read(self, figures: gauges.Gauges) -> gauges.Snapshot | None:
        try:
            # The pool's wait for a connection is bounded here too.
            return await asyncio.wait_for(figures.read(self._timeout), self._timeout * 2)
        except (errors.StoreError, TimeoutError) as exc:
            logger.warning("metrics: could not read Postgres: %s", exc)
            return None

    @functools.cached_property
    def ari_missed_events(self) -> Counter:
        return Counter(
            f"{PREFIX}_ari_missed_events",
            "Events calls in progress missed while the node's events websocket was down, made up after the"
            " reconnect from what ARI said, by node and type (ChannelDestroyed: the channel was gone).",
            ["node", "event"],
            registry=self.registry,
        )

    @functools.cached_property
    def orphan_channels(self) -> Counter:
        return Counter(
            f"{PREFIX}_orphan_channels_hung_up",
            "Channels of ours hung up after a reconnect because no call followed them any more (those of calls"
            " settled while their node was lost), by node.",
            ["node"],
            registry=self.registry,
        )

    def reconciled(self, node: str, told: Mapping[str, int], *, gone: int, orphans: int) -> None:
        """One reconnect's work (``reconcile``): the events made up, by type, and the orphans hung up."""
        events = self.ari_missed_events
        for kind, n in {**told, "ChannelDestroyed": gone}.items():
            events.labels(node, kind).inc(n)
        self.orphan_channels.labels(node).inc(orphans)

    # --- SMS (a process running the SMS sender) ------------------------------------------

    @functools.cached_property
    def sms_parts_sent(self) -> Counter:
        return Counter(
            f"{PREFIX}_sms_parts",
            "SMS parts (submit_sm) a carrier accepted from this process, by carrier and encoding (gsm7, ucs2).",
            ["carrier", "encoding"],
            registry=self.registry,
        )

    @functools.cached_property
    def sms_submits(self) -> Counter:
        return Counter(
            f"{PREFIX}_sms_submits",
            "SMS this process submitted, by carrier and result (ok: every part accepted; refused: for good;"
            " retry: due again later, carrier 'none' when no carrier was bound).",
            ["carrier", "result"],
            registry=self.registry,
        )

    @functools.cached_property
    def sms_receipts(self) -> Counter:
        return Counter(
            f"{PREFIX}_sms_receipts",
            "Delivery receipts this process received, by carrier and stat (DELIVRD, UNDELIV, EXPIRED, ...;"
            " other: a stat SMPP does not define; unmatched: no SMS sent had its message id).",
            ["carrier", "stat"],
            registry=self.registry,
        )

    @functools.cached_property
    def smpp_bound(self) -> Gauge:
        return Gauge(
            f"{PREFIX}_smpp_bound",
            "1 while this process is bound to the carrier's SMSC (transceiver), else 0.",
            ["carrier"],
            registry=self.registry,
        )

    @functools.cached_property
    def smpp_binds(self) -> Counter:
        return Counter(
            f"{PREFIX}_smpp_binds",
            "Binds this process tried to the carrier's SMSC, by result (ok, failed).",
            ["carrier", "result"],
            registry=self.registry,
        )

    def sms_carriers(self, names: Iterable[str]) -> None:
        """Show each carrier's series at 0 before anything happens on it."""
        for carrier in names:
            self.smpp_bound.labels(carrier).set(0)
            for result in SMPP_BIND_RESULTS:
                self.smpp_binds.labels(carrier, result)
            for result in SMS_SUBMIT_RESULTS:
                self.sms_submits.labels(carrier, result)
            self.sms_receipts.labels(carrier, "unmatched")

    def sms_submit(self, carrier: str, result: str) -> None:
        self.sms_submits.labels(carrier, result).inc()

    def sms_parts(self, carrier: str, encoding: str, parts: int) -> None:
        self.sms_parts_sent.labels(carrier, encoding).inc(parts)

    def sms_receipt(self, carrier: str, stat: str) -> None:
        self.sms_receipts.labels(carrier, stat).inc()

    def smpp_bind(self, carrier: str, *, ok: bool) -> None:
        """A bind to the carrier ended: bound (``ok``) or failed."""
        self.smpp_binds.labels(carrier, "ok" if ok else "failed").inc()
        self.smpp_bound.labels(carrier).set(1 if ok else 0)

    def smpp_unbound(self, carrier: str) -> None:
        self.smpp_bound.labels(carrier).set(0)
