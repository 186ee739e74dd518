"""Property tests of PIDF: any document hotline writes reads back the same; any bytes
at all either parse or raise PidfError (never another exception, never an entity
expanded); a status written is the status read."""

from __future__ import annotations

import string

from hypothesis import given, settings
from hypothesis import strategies as st

from hotline.acd.errors import PidfError
from hotline.acd.presence import (
    AWAY_ACTIVITIES,
    BUSY_ACTIVITIES,
    Basic,
    PidfDocument,
    PidfTuple,
    PresenceStatus,
    build_pidf,
    parse_pidf,
    pidf_for_status,
    status_from_pidf,
)

# text XML can carry and a reader gets back as written: no forbidden characters, no CR,
# no surrounding blanks
_chars = st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufffe\uffff")
texts = st.text(_chars, min_size=1, max_size=40).map(str.strip).filter(bool)
priorities = st.integers(0, 1000).map(lambda n: n / 1000)
tuples = st.builds(
    PidfTuple,
    id=st.text(string.ascii_letters + string.digits + "-_.", min_size=1, max_size=12),
    basic=st.none() | st.sampled_from(list(Basic)),
    contact=st.none() | texts,
    priority=st.none(),
    notes=st.lists(texts, max_size=3).map(tuple),
    timestamp=st.none() | st.just("2026-11-23T10:00:00Z"),
)
activities = st.frozensets(st.sampled_from(sorted(BUSY_ACTIVITIES | AWAY_ACTIVITIES)), max_size=3)


@st.composite
def documents(draw: st.DrawFn) -> PidfDocument:
    ts = draw(st.lists(tuples, max_size=4, unique_by=lambda t: t.id))
    with_priority = []
    for t in ts:
        if t.contact is not None and draw(st.booleans()):
            t = PidfTuple(t.id, t.basic, t.contact, draw(priorities), t.notes, t.timestamp)
        with_priority.append(t)
    return PidfDocument(
        entity=draw(texts),
        tuples=tuple(with_priority),
        notes=tuple(draw(st.lists(texts, max_size=3))),
        activities=draw(activities),
        person_notes=tuple(draw(st.lists(texts, max_size=2))),
    )


@settings(max_examples=300)
@given(documents())
def test_written_documents_read_back_the_same(doc: PidfDocument) -> None:
    assert parse_pidf(build_pidf(doc)) == doc


def parses_or_refuses(data: bytes) -> None:
    """A document with an entity, or a PidfError saying what is wrong — nothing else."""
    try:
        doc = parse_pidf(data)
    except PidfError as exc:
        assert str(exc).startswith("PIDF")
    else:
        assert doc.entity


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_any_bytes_parse_or_raise_pidf_error(data: bytes) -> None:
    parses_or_refuses(data)


@settings(max_examples=300)
@given(documents(), st.integers(0, 400), st.binary(min_size=1, max_size=12))
def test_damaged_documents_parse_or_raise_pidf_error(
    doc: PidfDocument, at: int, junk: bytes
) -> None:
    body = build_pidf(doc)
    at %= len(body)
    for damaged in (body[:at], body[:at] + junk + body[at:], body[:at] + body[at + 1 :]):
        parses_or_refuses(damaged)


@given(st.sampled_from(list(PresenceStatus)), st.none() | texts)
def test_a_status_written_is_the_status_read(status: PresenceStatus, note: str | None) -> None:
    doc = pidf_for_status("sip:ann@hotline.test", status, note)
    assert status_from_pidf(parse_pidf(build_pidf(doc))) is status
