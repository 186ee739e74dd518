"""SIP-specific event notification as state: RFC 6665 subscriptions, RFC 3903
publications, and the small grammars that come with them (Event, Subscription-State,
RFC 3420 message/sipfrag status lines), sans-IO.

Owns: the expiry policy of an event package (minimum, maximum, default; 423 below the
minimum), the publication table of an event state compositor (entity-tags, expiry, and
the initial / refresh / modify / remove rules of RFC 3903 §6), subscriptions as data
(role, package, watched entity, subscriber, expiry, their dialog) with the table of their
deadlines, and the parsers of the headers and bodies named above.

Must not know: transactions, sockets, clocks, digest authentication, or what a presence
document says (PIDF belongs to hotline.acd.presence). The endpoint drives this module
with `now` and turns its verdicts into SIP responses and requests.
"""

from __future__ import annotations

import heapq
import itertools
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum

from hotline.sip.addr import Peer
from hotline.sip.dialog import Dialog
from hotline.sip.errors import ParseError
from hotline.sip.grammar import Scanner, parse_params, show, unquote
from hotline.sip.headers import MAX_CSEQ, parse_delta_seconds

PRESENCE = "presence"
REFER = "refer"
PIDF = "application/pidf+xml"
SIPFRAG = "message/sipfrag"

# The event packages this endpoint can subscribe to, with the body type of their
# NOTIFYs (sent as Accept in our SUBSCRIBE).
SUBSCRIBABLE: dict[str, str] = {PRESENCE: PIDF}

# A subscriber refreshes this long before its subscription lapses (or half-way through
# an interval shorter than twice this), seconds.
REFRESH_MARGIN = 60.0


# ---------------------------------------------------------------------------
# Header and body grammars
# ---------------------------------------------------------------------------

_NODOT = re.compile(r"[A-Za-z0-9\-!%*_+`'~]+")


@dataclass(frozen=True)
class EventHeader:
    """An Event header (RFC 6665 §8.2.1): package, templates (``presence.winfo``) and
    the ``id`` parameter. Package and templates are lower-cased."""

    package: str
    templates: tuple[str, ...] = ()
    id: str | None = None

    @property
    def name(self) -> str:
        """The event type as written in Allow-Events (``presence``, ``presence.winfo``)."""
        return ".".join((self.package, *self.templates))

    def matches(self, package: str, event_id: str | None) -> bool:
        """Whether this header names the subscription of `package` with `event_id`."""
        return self.name == package and self.id == event_id

    def __str__(self) -> str:
        return self.name + (f";id={self.id}" if self.id is not None else "")


def parse_event(value: str) -> EventHeader:
    """event-type *( SEMI event-param ); raises ParseError (400) on bad syntax."""
    sc = Scanner(value.strip(), "Event")
    if sc.at_end():
        raise ParseError("Event: empty value")
    event_type = sc.token("an event package such as 'presence'")
    parts = event_type.split(".")
    for part in parts:
        if not _NODOT.fullmatch(part):
            raise ParseError(f"Event: malformed event type {show(event_type)}")
    params = parse_params(sc)
    sc.skip_ws()
    if not sc.at_end():
        raise sc.error("';' and event parameters after the event type")
    raw_id = params.get("id")
    if "id" in params and not raw_id:
        raise ParseError("Event: the id parameter needs a value")
    event_id = unquote(raw_id) if raw_id is not None else None
    low = [p.lower() for p in parts]
    return EventHeader(low[0], tuple(low[1:]), event_id)


class SubState(Enum):
    """The substate-value of a Subscription-State header."""

    ACTIVE = "active"
    PENDING = "pending"
    TERMINATED = "terminated"


@dataclass(frozen=True)
class SubscriptionStateHeader:
    """A Subscription-State header (RFC 6665 §8.2.3). `state` is lower-cased; an
    extension substate is kept as written and, per the RFC, treated like pending."""

    state: str
    expires: int | None = None
    reason: str | None = None
    retry_after: int | None = None

    @property
    def terminated(self) -> bool:
        return self.state == SubState.TERMINATED.value

    @property
    def active(self) -> bool:
        return self.state == SubState.ACTIVE.value

    def __str__(self) -> str:
        out = self.state
        if self.reason is not None:
            out += f";reason={self.reason}"
        if self.expires is not None:
            out += f";expires={self.expires}"
        if self.retry_after is not None:
            out += f";retry-after={self.retry_after}"
        return out


def parse_subscription_state(value: str) -> SubscriptionStateHeader:
    """substate-value *( SEMI subexp-params ); raises ParseError (400) on bad syntax."""
    sc = Scanner(value.strip(), "Subscription-State")
    state = sc.token("a substate such as 'active' or 'terminated'").lower()
    params = parse_params(sc)
    sc.skip_ws()
    if not sc.at_end():
        raise sc.error("';' and parameters after the substate")
    expires = params.get("expires")
    retry = params.get("retry-after")
    reason = params.get("reason")
    return SubscriptionStateHeader(
        state,
        parse_delta_seconds(expires, "Subscription-State expires") if expires is not None else None,
        unquote(reason).lower() if reason is not None else None,
        parse_delta_seconds(retry, "Subscription-State retry-after") if retry is not None else None,
    )


_STATUS_LINE = re.compile(r"SIP/2\.0 ([1-6][0-9][0-9])(?: ([^\r\n]*))?", re.IGNORECASE)


def parse_sipfrag_status(body: bytes) -> tuple[int, str]:
    """The status code and reason phrase of a message/sipfrag body whose first line is
    a Status-Line (RFC 3420, as RFC 3515 NOTIFYs carry). Raises ParseError (400)."""
    if not body:
        raise ParseError("message/sipfrag: empty body (a Status-Line is required)")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParseError(f"message/sipfrag: not UTF-8 (byte {exc.start})") from None
    first = text.split("\n", 1)[0].removesuffix("\r")
    m = _STATUS_LINE.fullmatch(first)
    if m is None:
        raise ParseError(
            f"message/sipfrag: expected a Status-Line 'SIP/2.0 <code> <reason>', found {show(first)}"
        )
    return int(m.group(1)), m.group(2) or ""


def sipfrag(status: int, reason: str) -> bytes:
    """A message/sipfrag body holding just a Status-Line."""
    if not 100 <= status <= 699:
        raise ValueError(f"status {status} is not in 100-699")
    clean = "".join(c if c.isprintable() else " " for c in reason)
    return f"SIP/2.0 {status} {clean}\r\n".encode()


# ---------------------------------------------------------------------------
# Expiry policy
# ---------------------------------------------------------------------------


class IntervalTooBrief(Exception):
    """A requested interval below the minimum: the answer is 423 with Min-Expires."""

    def __init__(self, requested: int, min_expires: int) -> None:
        super().__init__(f"interval {requested} s is below the minimum {min_expires} s")
        self.requested = requested
        self.min_expires = min_expires


@dataclass(frozen=True)
class ExpiryPolicy:
    """Intervals a server grants, seconds."""

    min_expires: int = 60
    max_expires: int = 3600
    default_expires: int = 3600

    def __post_init__(self) -> None:
        if not 1 <= self.min_expires <= self.max_expires <= MAX_CSEQ:
            raise ValueError(
                f"expiry bounds must satisfy 1 <= min ({self.min_expires}) <= max "
                f"({self.max_expires}) <= 2**32-1"
            )
        if not self.min_expires <= self.default_expires <= self.max_expires:
            raise ValueError(
                f"the default expiry {self.default_expires} is outside "
                f"[{self.min_expires}, {self.max_expires}]"
            )

    def grant(self, requested: int | None) -> int:
        """The interval to grant for `requested` (None: the default). 0 stays 0 (a
        removal, an unsubscription or a fetch); above the maximum is clamped; between 0
        and the minimum raises IntervalTooBrief."""
        if requested is None:
            return self.default_expires
        if requested == 0:
            return 0
        if requested < self.min_expires:
            raise IntervalTooBrief(requested, self.min_expires)
        return min(requested, self.max_expires)


@dataclass(frozen=True)
class PresencePolicy:
    """What the endpoint's presence server accepts. `check_body`, when given, vets a
    published body: it returns None for a good document, or the reason it is not one
    (answered 400) — hotline.acd.presence.parse_pidf wrapped fits."""

    publish: ExpiryPolicy = field(default_factory=ExpiryPolicy)
    subscribe: ExpiryPolicy = field(default_factory=ExpiryPolicy)
    max_publications: int = 10_000
    max_subscriptions: int = 10_000
    check_body: Callable[[bytes], str | None] | None = None


# ---------------------------------------------------------------------------
# Publications (RFC 3903)
# ---------------------------------------------------------------------------


@dataclass(eq=False)
class Publication:
    """One piece of published event state, named by its current entity-tag."""

    entity: str  # the presentity's AOR, "sip:user@host"
    event: str
    etag: str
    body: bytes
    content_type: str
    expires_at: float

    def live(self, now: float) -> bool:
        return self.expires_at > now


@dataclass(frozen=True)
class PublishResult:
    """The verdict on one PUBLISH.

    `status` is the response code (200, 400, 412, 423 or 503); `etag` and `expires`
    (seconds granted) go in SIP-ETag and Expires of a 200; `min_expires` in the
    Min-Expires of a 423. `published` is the live publication after an initial,
    refresh or modify; `removed` the publication an Expires: 0 removed; `previous_etag`
    the entity-tag the request named (SIP-If-Match). `lapsed` lists publications that
    had expired by `now` and were dropped before the request was looked at."""

    status: int
    reason: str | None = None
    etag: str | None = None
    expires: int = 0
    min_expires: int | None = None
    published: Publication | None = None
    removed: Publication | None = None
    previous_etag: str | None = None
    lapsed: tuple[Publication, ...] = ()


class PublicationTable:
    """The publications of an event state compositor, by entity-tag, with expiry."""

    def __init__(
        self, policy: ExpiryPolicy, make_etag: Callable[[], str], max_publications: int = 10_000
    ) -> None:
        self.policy = policy
        self.max_publications = max_publications
        self._make_etag = make_etag
        self._by_etag: dict[str, Publication] = {}
        self._heap: list[tuple[float, int, Publication]] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._by_etag)

    def __iter__(self) -> Iterator[Publication]:
        return iter(list(self._by_etag.values()))

    def get(self, etag: str) -> Publication | None:
        return self._by_etag.get(etag)

    def live(self, entity: str, now: float, event: str = PRESENCE) -> list[Publication]:
        """The publications for `entity` that have not expired by `now`, oldest first."""
        return [
            p
            for p in self._by_etag.values()
            if p.entity == entity and p.event == event and p.live(now)
        ]

    def next_expiry(self) -> float | None:
        heap = self._heap
        while heap:
            at, _, pub = heap[0]
            if self._by_etag.get(pub.etag) is pub and pub.expires_at == at:
                return at
            heapq.heappop(heap)
        return None

    def expire(self, now: float) -> list[Publication]:
        """Drop and return the publications that have expired by `now`."""
        out: list[Publication] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            at, _, pub = heapq.heappop(heap)
            if self._by_etag.get(pub.etag) is pub and pub.expires_at == at:
                del self._by_etag[pub.etag]
                out.append(pub)
        return out

    def _fresh_etag(self, avoid: str | None = None) -> str:
        while True:
            tag = self._make_etag()
            if tag and tag != avoid and tag not in self._by_etag:
                return tag

    def _store(self, pub: Publication) -> None:
        self._by_etag[pub.etag] = pub
        heapq.heappush(self._heap, (pub.expires_at, next(self._seq), pub))

    def publish(
        self,
        entity: str,
        event: str,
        body: bytes,
        content_type: str | None,
        expires: int | None,
        if_match: str | None,
        now: float,
    ) -> PublishResult:
        """Apply one PUBLISH (RFC 3903 §6 steps 3-8). `expires` is the Expires value
        (None when absent), `if_match` the SIP-If-Match value (None when absent)."""
        lapsed = tuple(self.expire(now))
        current: Publication | None = None
        if if_match is not None:
            current = self._by_etag.get(if_match)
            if current is None or current.entity != entity or current.event != event:
                return PublishResult(412, lapsed=lapsed)
        elif not body:
            return PublishResult(400, "An initial PUBLISH needs a body", lapsed=lapsed)
        try:
            granted = self.policy.grant(expires)
        except IntervalTooBrief as exc:
            return PublishResult(423, min_expires=exc.min_expires, lapsed=lapsed)
        if current is not None:
            old = current.etag
            del self._by_etag[old]
            if granted == 0:
                return PublishResult(
                    200, etag=old, expires=0, removed=current, previous_etag=old, lapsed=lapsed
                )
            current.etag = self._fresh_etag(avoid=old)
            current.expires_at = now + granted
            if body:
                current.body = body
                current.content_type = content_type or current.content_type
            self._store(current)
            return PublishResult(
                200,
                etag=current.etag,
                expires=granted,
                published=current,
                previous_etag=old,
                lapsed=lapsed,
            )
        if granted == 0:
            # An initial publication that expires at once: acknowledged, never live.
            return PublishResult(200, etag=self._fresh_etag(), expires=0, lapsed=lapsed)
        if len(self._by_etag) >= self.max_publications:
            return PublishResult(503, "Too many publications", lapsed=lapsed)
        pub = Publication(
            entity, event, self._fresh_etag(), body, content_type or PIDF, now + granted
        )
        self._store(pub)
        return PublishResult(200, etag=pub.etag, expires=granted, published=pub, lapsed=lapsed)


# ---------------------------------------------------------------------------
# Subscriptions (RFC 6665)
# ---------------------------------------------------------------------------


class SubscriptionRole(Enum):
    NOTIFIER = "notifier"  # someone subscribed to us
    SUBSCRIBER = "subscriber"  # we subscribed to someone


class SubscriptionState(Enum):
    PENDING = "pending"  # not (yet) active: no NOTIFY said so
    ACTIVE = "active"
    TERMINATED = "terminated"


class SubscriptionEndReason(Enum):
    UNSUBSCRIBED = "unsubscribed"  # the subscriber sent Expires: 0 (or we unsubscribed)
    EXPIRED = "expired"  # not refreshed in time (a fetch also ends this way)
    TERMINATED = "terminated"  # the notifier ended it (NOTIFY terminated, or notify(terminate=))
    REJECTED = "rejected"  # a final error answered a SUBSCRIBE or a NOTIFY
    FAILED = "failed"  # a SUBSCRIBE or NOTIFY transaction timed out or could not be sent


class SubscriptionTimer(Enum):
    EXPIRE = "expire"  # the subscription lapses
    REFRESH = "refresh"  # the subscriber sends its refresh
    LINGER = "linger"  # an ended subscription stops answering its late NOTIFYs


@dataclass(eq=False)
class Subscription:
    """One subscription, on either side. `entity` is the watched resource's AOR
    (``sip:user@host``), `subscriber` the watcher's (its From URI's AOR). `expires` is
    the interval last granted (seconds), `expires_at` when the subscription lapses."""

    id: str
    role: SubscriptionRole
    event: str
    entity: str
    subscriber: str
    peer: Peer
    call_id: str
    local_tag: str
    event_id: str | None = None
    dialog: Dialog | None = None
    state: SubscriptionState = SubscriptionState.PENDING
    expires: int = 0
    expires_at: float = 0.0
    created: float = 0.0
    username: str | None = None  # the authenticated subscriber, when we challenged
    target: str = ""  # subscriber side: the URI we subscribed to
    last_body: bytes | None = None  # notifier side: the last body sent in a NOTIFY
    last_content_type: str | None = None
    notify_count: int = 0
    refresh_at: float | None = None  # subscriber side: when the refresh goes out
    app: object = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.call_id, self.local_tag)

    def remaining(self, now: float) -> int:
        """Whole seconds left (rounded up while any time is left; 0 once lapsed)."""
        return max(0, math.ceil(self.expires_at - now))


def refresh_time(granted: float, now: float) -> float:
    """When a subscriber refreshes an interval of `granted` seconds obtained at `now`."""
    return now + max(granted / 2, granted - REFRESH_MARGIN)


class SubscriptionTable:
    """Subscriptions by dialog key (Call-ID, local tag) and id, with one deadline each."""

    def __init__(self, max_subscriptions: int = 10_000) -> None:
        self.max_subscriptions = max_subscriptions
        self._by_key: dict[tuple[str, str], Subscription] = {}
        self._timers: dict[str, tuple[float, SubscriptionTimer]] = {}
        self._heap: list[tuple[float, int, Subscription, SubscriptionTimer]] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._by_key)

    def __iter__(self) -> Iterator[Subscription]:
        return iter(list(self._by_key.values()))

    @property
    def full(self) -> bool:
        return len(self._by_key) >= self.max_subscriptions

    def add(self, sub: Subscription) -> None:
        if sub.key in self._by_key:
            raise ValueError(f"a subscription with dialog key {sub.key} exists")
        self._by_key[sub.key] = sub

    def get(self, call_id: str, local_tag: str) -> Subscription | None:
        return self._by_key.get((call_id, local_tag))

    def remove(self, sub: Subscription) -> None:
        if self._by_key.get(sub.key) is sub:
            del self._by_key[sub.key]
        self._timers.pop(sub.id, None)

    def watchers(self, entity: str, event: str = PRESENCE) -> list[Subscription]:
        """Notifier-side subscriptions to `entity` that have not ended."""
        return [
            s
            for s in self._by_key.values()
            if s.role is SubscriptionRole.NOTIFIER
            and s.entity == entity
            and s.event == event
            and s.state is not SubscriptionState.TERMINATED
        ]

    def schedule(
        self,
        sub: Subscription,
        at: float | None,
        kind: SubscriptionTimer = SubscriptionTimer.EXPIRE,
    ) -> None:
        """Set (or with `at` None, clear) the one deadline of `sub`."""
        if at is None:
            self._timers.pop(sub.id, None)
            return
        self._timers[sub.id] = (at, kind)
        heapq.heappush(self._heap, (at, next(self._seq), sub, kind))

    def timer(self, sub: Subscription) -> tuple[float, SubscriptionTimer] | None:
        return self._timers.get(sub.id)

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap:
            at, _, sub, kind = heap[0]
            if self._timers.get(sub.id) == (at, kind):
                return at
            heapq.heappop(heap)
        return None

    def due(self, now: float) -> list[tuple[Subscription, SubscriptionTimer]]:
        """Pop the deadlines due by `now` (each is cleared before it is returned)."""
        out: list[tuple[Subscription, SubscriptionTimer]] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            at, _, sub, kind = heapq.heappop(heap)
            if self._timers.get(sub.id) == (at, kind):
                del self._timers[sub.id]
                out.append((sub, kind))
        return out
