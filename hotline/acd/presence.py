"""Presence of back-office experts, and the PIDF documents that carry presence over SIP.

Owns two things:

* PIDF (RFC 3863, the `application/pidf+xml` body of PUBLISH and NOTIFY in the SIP
  presence event package, RFC 3856), with the person/activities extensions of RFC 4479
  and RFC 4480 that phones use for "on the phone", "away" and the like: `parse_pidf`
  reads one into a `PidfDocument`, `build_pidf` writes one, `status_from_pidf` maps it to
  a `PresenceStatus`. Parsing runs the stdlib's expat with every DTD, entity declaration
  and external entity refused (no entity expansion, no network, no billion laughs) and
  builds an `xml.etree` tree from its events; documents over `MAX_PIDF_BYTES` or nested
  deeper than `MAX_DEPTH` are refused too.
* The `Directory` of experts (name, department, skills with proficiency, SIP URI) and
  each expert's presence, merged from four sources — registration with us, calls in
  progress, a status set explicitly through the API, and PIDF published by another
  phone system — into one `PresenceStatus`, with the query "available experts for a
  skill", best proficiency first, then the longest available.

The merge, in order: an explicit status other than *available* wins (the person said
so); a call in progress makes the expert busy; a published PIDF that says busy, away or
do-not-disturb comes next; then the expert is available if they told us so, are
registered with us, or a published PIDF says `open`; otherwise offline. An explicit
status and a PIDF document may carry an expiry, held as deadlines (`next_deadline`,
`handle_timer(now)`).

Must not know: SIP messages or subscriptions (the engine answers PUBLISH/SUBSCRIBE and
sends NOTIFY with `Directory.pidf`), queues, agents, sockets or the clock.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import NoReturn
from xml.parsers import expat

from hotline.acd.agents import check_skills
from hotline.acd.errors import AcdConfigError, PidfError, UnknownExpert
from hotline.acd.timers import Deadlines

PIDF_NS = "urn:ietf:params:xml:ns:pidf"
DM_NS = "urn:ietf:params:xml:ns:pidf:data-model"  # RFC 4479
RPID_NS = "urn:ietf:params:xml:ns:pidf:rpid"  # RFC 4480
CONTENT_TYPE = "application/pidf+xml"
MAX_PIDF_BYTES = 64 * 1024
MAX_DEPTH = 32
_UNDERSTOOD = {PIDF_NS, DM_NS, RPID_NS}
_ACTIVITY_NAME = re.compile(r"[a-z][a-z0-9-]{0,63}")


class PresenceStatus(Enum):
    AVAILABLE = "available"
    BUSY = "busy"
    AWAY = "away"
    DND = "dnd"  # do not disturb
    OFFLINE = "offline"


class Basic(Enum):
    OPEN = "open"
    CLOSED = "closed"


# RFC 4480 activities, by what they mean for "can I call this expert now?"
BUSY_ACTIVITIES = frozenset(
    {
        "on-the-phone",
        "busy",
        "meeting",
        "presentation",
        "appointment",
        "performance",
    }
)
AWAY_ACTIVITIES = frozenset(
    {
        "away",
        "breakfast",
        "dinner",
        "meal",
        "holiday",
        "vacation",
        "sleeping",
        "travel",
        "in-transit",
        "shopping",
        "steering",
        "permanent-absence",
        "looking-for-work",
        "playing",
        "spectator",
        "tv",
        "worship",
    }
)
# What phones write in a <note> when they set no activity (checked in this order).
_NOTE_WORDS: tuple[tuple[PresenceStatus, tuple[str, ...]], ...] = (
    (PresenceStatus.DND, ("do not disturb", "don't disturb", "dnd")),
    (
        PresenceStatus.BUSY,
        (
            "on the phone",
            "on-the-phone",
            "in a call",
            "on a call",
            "busy",
            "in a meeting",
            "meeting",
        ),
    ),
    (
        PresenceStatus.AWAY,
        ("away", "out to lunch", "lunch", "be right back", "brb", "on vacation", "out of office"),
    ),
)


# -- PIDF -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PidfTuple:
    id: str
    basic: Basic | None = None
    contact: str | None = None
    priority: float | None = None  # the contact's priority, 0 to 1
    notes: tuple[str, ...] = ()
    timestamp: str | None = None  # as written (xs:dateTime)


@dataclass(frozen=True)
class PidfDocument:
    """What hotline reads and writes of a PIDF document: the presentity, its tuples,
    the document's notes, and the person's activities and notes (RFC 4479/4480)."""

    entity: str
    tuples: tuple[PidfTuple, ...] = ()
    notes: tuple[str, ...] = ()
    activities: frozenset[str] = frozenset()
    person_notes: tuple[str, ...] = ()

    @property
    def basic(self) -> Basic | None:
        """OPEN if any tuple is open, CLOSED if some are and none is open, else None."""
        seen = {t.basic for t in self.tuples if t.basic is not None}
        if Basic.OPEN in seen:
            return Basic.OPEN
        return Basic.CLOSED if seen else None


def _refuse(what: str) -> NoReturn:
    raise PidfError(
        f"PIDF refused: the document contains {what}; DTDs and entities are not accepted"
    )


def _qualified(name: str) -> str:
    uri, sep, local = name.rpartition(" ")
    return f"{{{uri}}}{local}" if sep else name


def _parse_xml(data: bytes) -> ET.Element:
    if len(data) > MAX_PIDF_BYTES:
        raise PidfError(f"PIDF refused: {len(data)} bytes is over the {MAX_PIDF_BYTES}-byte limit")
    parser = expat.ParserCreate(namespace_separator=" ")
    builder = ET.TreeBuilder()
    depth = 0

    def start(name: str, attrs: dict[str, str]) -> None:
        nonlocal depth
        depth += 1
        if depth > MAX_DEPTH:
            raise PidfError(f"PIDF refused: elements nested deeper than {MAX_DEPTH}")
        builder.start(_qualified(name), {_qualified(k): v for k, v in attrs.items()})

    def end(name: str) -> None:
        nonlocal depth
        depth -= 1
        builder.end(_qualified(name))

    def doctype(*_: object) -> None:
        _refuse("a document type declaration (DTD)")

    def entity_decl(*_: object) -> None:
        _refuse("an entity declaration")

    def external_entity(*_: object) -> int:
        _refuse("an external entity reference")

    def notation_decl(*_: object) -> None:
        _refuse("a notation declaration")

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = builder.data
    parser.StartDoctypeDeclHandler = doctype
    parser.EntityDeclHandler = entity_decl
    parser.UnparsedEntityDeclHandler = entity_decl
    parser.ExternalEntityRefHandler = external_entity
    parser.NotationDeclHandler = notation_decl
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        raise PidfError(
            f"PIDF is not well-formed XML: {expat.ErrorString(exc.code)} at line "
            f"{exc.lineno}, column {exc.offset + 1}"
        ) from None
    except LookupError as exc:  # <?xml encoding="..."?> names no codec Python has
        raise PidfError(f"PIDF declares an encoding hotline cannot read: {exc}") from None
    except (UnicodeError, ValueError) as exc:
        raise PidfError(f"PIDF cannot be decoded: {exc}") from None
    return builder.close()


def _text(element: ET.Element) -> str:
    return "".join(element.itertext()).strip()


def _local(tag: str) -> tuple[str, str]:
    if tag.startswith("{"):
        uri, _, local = tag[1:].partition("}")
        return uri, local
    return "", tag


def parse_pidf(data: bytes) -> PidfDocument:
    """Read a PIDF document. Raises `PidfError` naming what is wrong: not XML, a DTD or
    entity, not a `<presence>` in the PIDF namespace, a missing `entity` or tuple `id`,
    a tuple without `<status>`, a `<basic>` other than open/closed, a contact priority
    outside 0–1, or an extension marked `mustUnderstand` that hotline does not know."""
    root = _parse_xml(data)
    if root.tag != f"{{{PIDF_NS}}}presence":
        uri, local = _local(root.tag)
        where = f" in namespace {uri!r}" if uri else " without a namespace"
        raise PidfError(
            f"PIDF: the root element must be <presence> in {PIDF_NS!r}, got <{local}>{where}"
        )
    entity = root.get("entity", "").strip()
    if not entity:
        raise PidfError("PIDF: <presence> has no entity attribute")
    for element in root.iter():
        uri, local = _local(element.tag)
        if uri in _UNDERSTOOD:
            continue
        flag = element.get("mustUnderstand", element.get(f"{{{PIDF_NS}}}mustUnderstand", ""))
        if flag.strip() in ("true", "1"):
            raise PidfError(
                f"PIDF: <{local}> in namespace {uri!r} is marked mustUnderstand "
                "and hotline does not understand it"
            )
    tuples: list[PidfTuple] = []
    ids: set[str] = set()
    for t in root.findall(f"{{{PIDF_NS}}}tuple"):
        tuples.append(_parse_tuple(t, ids))
    notes = tuple(_text(n) for n in root.findall(f"{{{PIDF_NS}}}note"))
    activities: set[str] = set()
    for holder in root.iter(f"{{{RPID_NS}}}activities"):
        for child in holder:
            uri, local = _local(child.tag)
            if uri == RPID_NS and local != "note":
                activities.add(local)
    person_notes: list[str] = []
    for person in root.findall(f"{{{DM_NS}}}person"):
        person_notes.extend(_text(n) for n in person.findall(f"{{{DM_NS}}}note"))
        for holder in person.iter(f"{{{RPID_NS}}}activities"):
            person_notes.extend(_text(n) for n in holder.findall(f"{{{RPID_NS}}}other") if _text(n))
    return PidfDocument(entity, tuple(tuples), notes, frozenset(activities), tuple(person_notes))


def _parse_tuple(t: ET.Element, ids: set[str]) -> PidfTuple:
    tuple_id = t.get("id", "").strip()
    if not tuple_id:
        raise PidfError("PIDF: a <tuple> has no id attribute")
    if tuple_id in ids:
        raise PidfError(f"PIDF: two tuples have the id {tuple_id!r}")
    ids.add(tuple_id)
    status = t.find(f"{{{PIDF_NS}}}status")
    if status is None:
        raise PidfError(f"PIDF: tuple {tuple_id!r} has no <status>")
    basic: Basic | None = None
    basic_el = status.find(f"{{{PIDF_NS}}}basic")
    if basic_el is not None:
        word = _text(basic_el)
        try:
            basic = Basic(word)
        except ValueError:
            raise PidfError(
                f"PIDF: tuple {tuple_id!r} has <basic>{word}</basic>; expected open or closed"
            ) from None
    contact: str | None = None
    priority: float | None = None
    contact_el = t.find(f"{{{PIDF_NS}}}contact")
    if contact_el is not None:
        contact = _text(contact_el) or None
        raw = contact_el.get("priority")
        if raw is not None:
            try:
                priority = float(raw)
            except ValueError:
                priority = math.nan
            if not 0.0 <= priority <= 1.0:
                raise PidfError(
                    f"PIDF: tuple {tuple_id!r} has contact priority {raw!r}; "
                    "expected a number from 0 to 1"
                )
    notes = tuple(_text(n) for n in t.findall(f"{{{PIDF_NS}}}note"))
    ts_el = t.find(f"{{{PIDF_NS}}}timestamp")
    timestamp = _text(ts_el) if ts_el is not None else None
    return PidfTuple(tuple_id, basic, contact, priority, notes, timestamp or None)


_NOT_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml_text(text: str) -> str:
    """Text as XML 1.0 can carry it and a reader gets it back: characters XML forbids
    dropped, line ends as LF, no surrounding blanks (the reader strips them)."""
    return _NOT_XML.sub("", text.replace("\r\n", "\n").replace("\r", "\n")).strip()


def _qvalue(priority: float) -> str:
    """A contact priority as PIDF writes it: 0 to 1 with at most three decimals."""
    if not 0.0 <= priority <= 1.0:
        raise ValueError(f"contact priority must be from 0 to 1, got {priority}")
    return f"{priority:.3f}".rstrip("0").rstrip(".") or "0"


def build_pidf(doc: PidfDocument, person_id: str = "p1") -> bytes:
    """Write `doc` as a UTF-8 PIDF document (tuples, notes, then the person). Text is
    passed through `_xml_text`; a contact priority is rounded to three decimals."""
    if not _xml_text(doc.entity):
        raise ValueError("a PIDF document needs an entity")
    for name in doc.activities:
        if not _ACTIVITY_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not an activity name (lower-case letters, digits, -)")
    attrs = {"xmlns": PIDF_NS, "entity": _xml_text(doc.entity)}
    if doc.activities or doc.person_notes:
        attrs["xmlns:dm"] = DM_NS
        attrs["xmlns:rpid"] = RPID_NS
    root = ET.Element("presence", attrs)
    for t in doc.tuples:
        if not _xml_text(t.id):
            raise ValueError("a PIDF tuple needs an id")
        el = ET.SubElement(root, "tuple", {"id": _xml_text(t.id)})
        status = ET.SubElement(el, "status")
        if t.basic is not None:
            ET.SubElement(status, "basic").text = t.basic.value
        if t.contact is not None:
            contact = ET.SubElement(el, "contact")
            contact.text = _xml_text(t.contact)
            if t.priority is not None:
                contact.set("priority", _qvalue(t.priority))
        for note in t.notes:
            ET.SubElement(el, "note").text = _xml_text(note)
        if t.timestamp is not None:
            ET.SubElement(el, "timestamp").text = _xml_text(t.timestamp)
    for note in doc.notes:
        ET.SubElement(root, "note").text = _xml_text(note)
    if doc.activities or doc.person_notes:
        person = ET.SubElement(root, "dm:person", {"id": _xml_text(person_id) or "p1"})
        if doc.activities:
            holder = ET.SubElement(person, "rpid:activities")
            for name in sorted(doc.activities):
                ET.SubElement(holder, f"rpid:{name}")
        for note in doc.person_notes:
            ET.SubElement(person, "dm:note").text = _xml_text(note)
    body: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return body


def status_from_pidf(doc: PidfDocument) -> PresenceStatus:
    """What a PIDF document says about reaching the presentity: a do-not-disturb note,
    then busy and away activities (or notes that say so), then `<basic>` (any tuple
    open → available; closed, or no basic at all → offline)."""
    words = " ".join(
        doc.notes + doc.person_notes + tuple(n for t in doc.tuples for n in t.notes)
    ).lower()
    for status, phrases in _NOTE_WORDS[:1]:
        if any(_has_phrase(words, p) for p in phrases):
            return status
    if doc.activities & BUSY_ACTIVITIES:
        return PresenceStatus.BUSY
    if doc.activities & AWAY_ACTIVITIES:
        return PresenceStatus.AWAY
    for status, phrases in _NOTE_WORDS[1:]:
        if any(_has_phrase(words, p) for p in phrases):
            return status
    return PresenceStatus.AVAILABLE if doc.basic is Basic.OPEN else PresenceStatus.OFFLINE


def _has_phrase(words: str, phrase: str) -> bool:
    return re.search(rf"(?<![a-z]){re.escape(phrase)}(?![a-z])", words) is not None


def pidf_for_status(
    entity: str,
    status: PresenceStatus,
    note: str | None = None,
    contact: str | None = None,
    tuple_id: str = "hotline",
) -> PidfDocument:
    """The PIDF document hotline publishes for a status (`status_from_pidf` of it gives
    the status back)."""
    basic = Basic.CLOSED if status is PresenceStatus.OFFLINE else Basic.OPEN
    activities: frozenset[str] = frozenset()
    notes: tuple[str, ...] = (note,) if note else ()
    if status is PresenceStatus.BUSY:
        activities = frozenset({"busy"})
    elif status is PresenceStatus.AWAY:
        activities = frozenset({"away"})
    elif status is PresenceStatus.DND:
        activities = frozenset({"busy"})
        notes = ("Do not disturb", *notes)
    doc = PidfDocument(entity, (PidfTuple(tuple_id, basic, contact),), notes, activities)
    if note and status_from_pidf(doc) is not status:
        # a free-text note that reads as another status ("away until 3") is left out
        # rather than contradict the status
        doc = PidfDocument(entity, doc.tuples, notes[:-1], activities)
    return doc


# -- the directory ----------------------------------------------------------------------


@dataclass(frozen=True)
class Expert:
    id: str
    name: str
    uri: str  # the SIP URI an agent's consult call dials
    department: str = ""
    skills: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.id:
            raise AcdConfigError("an expert needs a non-empty id")
        if not self.uri:
            raise AcdConfigError(f"expert {self.id!r} needs a SIP URI")
        check_skills(f"expert {self.id!r}", self.skills)


@dataclass(frozen=True, slots=True)
class ExpertRegistration:
    expert_id: str
    registered: bool


@dataclass(frozen=True, slots=True)
class ExpertCallStarted:
    expert_id: str
    call_id: str


@dataclass(frozen=True, slots=True)
class ExpertCallEnded:
    expert_id: str
    call_id: str


@dataclass(frozen=True, slots=True)
class ExpertStatusSet:
    """An explicit status from the API; `status=None` clears it. `until` makes it
    lapse by itself."""

    expert_id: str
    status: PresenceStatus | None
    note: str | None = None
    until: float | None = None


@dataclass(frozen=True, slots=True)
class PresencePublished:
    """A PIDF document published for the expert (PUBLISH, or a NOTIFY we subscribed
    to); `document=None` withdraws it. `expires_at`: when it lapses by itself."""

    expert_id: str
    document: PidfDocument | None
    expires_at: float | None = None


PresenceEvent = (
    ExpertRegistration | ExpertCallStarted | ExpertCallEnded | ExpertStatusSet | PresencePublished
)


@dataclass(frozen=True, slots=True)
class PresenceChanged:
    """An expert's merged presence changed: notify watchers (`Directory.pidf`)."""

    expert_id: str
    status: PresenceStatus
    previous: PresenceStatus
    note: str | None
    at: float


@dataclass(frozen=True)
class ExpertView:
    expert: Expert
    status: PresenceStatus
    note: str | None
    since: float  # when the merged status last changed

    def proficiency(self, skill: str) -> int:
        return self.expert.skills.get(skill, 0)


@dataclass(eq=False)
class _Presence:
    expert: Expert
    since: float
    registered: bool = False
    calls: set[str] = field(default_factory=set)
    manual: tuple[PresenceStatus, str | None] | None = None
    document: PidfDocument | None = None
    status: PresenceStatus = PresenceStatus.OFFLINE
    note: str | None = None


def uri_key(uri: str) -> str:
    """A SIP/pres URI reduced for matching: no display brackets, no scheme, no params,
    lower case (`<sip:Ann@Example.org;transport=tcp>` → `ann@example.org`)."""
    text = uri.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    scheme, sep, rest = text.partition(":")
    if sep and scheme.lower() in ("sip", "sips", "pres", "tel"):
        text = rest
    return text.split(";", 1)[0].split("?", 1)[0].lower()


class Directory:
    """The experts and their merged presence. Feed it events with `handle(event, now)`;
    it returns what changed. `next_deadline()` / `handle_timer(now)` expire explicit
    statuses and published documents."""

    def __init__(self, experts: Iterable[Expert] = (), now: float = 0.0) -> None:
        self._experts: dict[str, _Presence] = {}
        self._by_uri: dict[str, str] = {}
        self._timers = Deadlines()
        for expert in experts:
            self.add(expert, now)

    # -- membership -------------------------------------------------------------------

    def add(self, expert: Expert, now: float) -> None:
        if expert.id in self._experts:
            raise AcdConfigError(f"expert {expert.id!r} is already in the directory")
        key = uri_key(expert.uri)
        other = self._by_uri.get(key)
        if other is not None:
            raise AcdConfigError(
                f"experts {other!r} and {expert.id!r} have the same URI {expert.uri!r}"
            )
        self._experts[expert.id] = _Presence(expert, since=now)
        self._by_uri[key] = expert.id

    def update(self, expert: Expert) -> None:
        """Replace an expert's details (name, department, skills, URI); presence stays."""
        entry = self._entry(expert.id)
        new_key = uri_key(expert.uri)
        other = self._by_uri.get(new_key)
        if other is not None and other != expert.id:
            raise AcdConfigError(
                f"experts {other!r} and {expert.id!r} have the same URI {expert.uri!r}"
            )
        del self._by_uri[uri_key(entry.expert.uri)]
        self._by_uri[new_key] = expert.id
        entry.expert = expert

    def remove(self, expert_id: str) -> None:
        entry = self._entry(expert_id)
        del self._by_uri[uri_key(entry.expert.uri)]
        del self._experts[expert_id]
        self._timers.cancel(("manual", expert_id))
        self._timers.cancel(("pidf", expert_id))

    def find_by_uri(self, uri: str) -> Expert | None:
        expert_id = self._by_uri.get(uri_key(uri))
        return None if expert_id is None else self._experts[expert_id].expert

    def __contains__(self, expert_id: str) -> bool:
        return expert_id in self._experts

    # -- events -----------------------------------------------------------------------

    def handle(self, event: PresenceEvent, now: float) -> list[PresenceChanged]:
        entry = self._entry(event.expert_id)
        if isinstance(event, ExpertRegistration):
            entry.registered = event.registered
        elif isinstance(event, ExpertCallStarted):
            entry.calls.add(event.call_id)
        elif isinstance(event, ExpertCallEnded):
            entry.calls.discard(event.call_id)
        elif isinstance(event, ExpertStatusSet):
            key = ("manual", event.expert_id)
            if event.status is None or (event.until is not None and event.until <= now):
                entry.manual = None
                self._timers.cancel(key)
            else:
                entry.manual = (event.status, event.note)
                if event.until is None:
                    self._timers.cancel(key)
                else:
                    self._timers.set(key, event.until)
        else:
            key = ("pidf", event.expert_id)
            expired = event.expires_at is not None and event.expires_at <= now
            if event.document is None or expired:
                entry.document = None
                self._timers.cancel(key)
            else:
                entry.document = event.document
                if event.expires_at is None:
                    self._timers.cancel(key)
                else:
                    self._timers.set(key, event.expires_at)
        change = self._refresh(entry, now)
        return [] if change is None else [change]

    def next_deadline(self) -> float | None:
        return self._timers.next()

    def handle_timer(self, now: float) -> list[PresenceChanged]:
        changes: list[PresenceChanged] = []
        while (key := self._timers.pop_due(now)) is not None:
            assert isinstance(key, tuple)
            kind, expert_id = key
            entry = self._experts.get(expert_id)
            if entry is None:
                continue
            if kind == "manual":
                entry.manual = None
            else:
                entry.document = None
            change = self._refresh(entry, now)
            if change is not None:
                changes.append(change)
        return changes

    # -- queries ----------------------------------------------------------------------

    def view(self, expert_id: str) -> ExpertView:
        entry = self._entry(expert_id)
        return ExpertView(entry.expert, entry.status, entry.note, entry.since)

    def experts(self) -> list[ExpertView]:
        return [self.view(expert_id) for expert_id in self._experts]

    def available_experts(self, skill: str, min_proficiency: int = 1) -> list[ExpertView]:
        """Experts available now with `skill` at `min_proficiency` or better: highest
        proficiency first, then the one available the longest, then by name."""
        found = [
            ExpertView(e.expert, e.status, e.note, e.since)
            for e in self._experts.values()
            if e.status is PresenceStatus.AVAILABLE
            and e.expert.skills.get(skill, 0) >= max(1, min_proficiency)
        ]
        found.sort(key=lambda v: (-v.proficiency(skill), v.since, v.expert.name, v.expert.id))
        return found

    def pidf(self, expert_id: str) -> bytes:
        """The PIDF body to NOTIFY watchers of this expert with."""
        entry = self._entry(expert_id)
        entity = entry.expert.uri.strip().strip("<>")
        doc = pidf_for_status(entity, entry.status, entry.note, contact=entity)
        return build_pidf(doc)

    # -- internals --------------------------------------------------------------------

    def _entry(self, expert_id: str) -> _Presence:
        entry = self._experts.get(expert_id)
        if entry is None:
            raise UnknownExpert(expert_id)
        return entry

    def _refresh(self, entry: _Presence, now: float) -> PresenceChanged | None:
        status, note = _merge(entry)
        previous = entry.status
        if status is previous and note == entry.note:
            return None
        entry.note = note
        if status is not previous:
            entry.status = status
            entry.since = now
        return PresenceChanged(entry.expert.id, status, previous, note, now)


def _merge(entry: _Presence) -> tuple[PresenceStatus, str | None]:
    doc = entry.document
    doc_status = status_from_pidf(doc) if doc is not None else None
    doc_note = None
    if doc is not None:
        notes = doc.person_notes + doc.notes + tuple(n for t in doc.tuples for n in t.notes)
        doc_note = next((n for n in notes if n), None)
    if entry.manual is not None and entry.manual[0] is not PresenceStatus.AVAILABLE:
        return entry.manual
    if entry.calls:
        return PresenceStatus.BUSY, "on the phone"
    if doc_status in (PresenceStatus.BUSY, PresenceStatus.AWAY, PresenceStatus.DND):
        return doc_status, doc_note
    if entry.manual is not None:
        return entry.manual
    if entry.registered or doc_status is PresenceStatus.AVAILABLE:
        return PresenceStatus.AVAILABLE, doc_note
    return PresenceStatus.OFFLINE, doc_note
