"""PIDF parsing and writing (with DTDs and entities refused) and the directory's
merged presence and skill queries."""

from __future__ import annotations

import pytest

from hotline.acd.errors import AcdConfigError, PidfError, UnknownExpert
from hotline.acd.presence import (
    MAX_DEPTH,
    MAX_PIDF_BYTES,
    Basic,
    Directory,
    Expert,
    ExpertCallEnded,
    ExpertCallStarted,
    ExpertRegistration,
    ExpertStatusSet,
    PidfDocument,
    PidfTuple,
    PresenceChanged,
    PresencePublished,
    PresenceStatus,
    build_pidf,
    parse_pidf,
    pidf_for_status,
    status_from_pidf,
    uri_key,
)

# A document in the shape RFC 3863 and RFC 4480 describe: tuple with status and
# contact, a document note, and a person with activities.
RICH = b"""<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf"
          xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"
          xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid"
          entity="pres:ann@example.org">
  <tuple id="t8c4">
    <status><basic>open</basic></status>
    <contact priority="0.8">sip:ann@pc33.example.org</contact>
    <note xml:lang="en">desk phone</note>
    <timestamp>2026-11-23T10:00:00+11:00</timestamp>
  </tuple>
  <note>Ward rounds until 11</note>
  <dm:person id="p1">
    <rpid:activities><rpid:meeting/></rpid:activities>
    <dm:note>In a meeting</dm:note>
  </dm:person>
</presence>"""

# What many desk phones publish: a status with basic, and the state in a note.
NOTE_ONLY = b"""<?xml version="1.0"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:bob@example.org">
  <tuple id="1"><status><basic>open</basic></status><note>On the phone</note></tuple>
</presence>"""


def test_parse_a_rich_document() -> None:
    doc = parse_pidf(RICH)
    assert doc.entity == "pres:ann@example.org"
    assert doc.tuples == (
        PidfTuple(
            "t8c4",
            Basic.OPEN,
            "sip:ann@pc33.example.org",
            0.8,
            ("desk phone",),
            "2026-11-23T10:00:00+11:00",
        ),
    )
    assert doc.notes == ("Ward rounds until 11",)
    assert doc.activities == frozenset({"meeting"})
    assert doc.person_notes == ("In a meeting",)
    assert status_from_pidf(doc) is PresenceStatus.BUSY


def test_status_from_notes_activities_and_basic() -> None:
    assert status_from_pidf(parse_pidf(NOTE_ONLY)) is PresenceStatus.BUSY
    base = PidfDocument("sip:x@y", (PidfTuple("t", Basic.OPEN),))
    assert status_from_pidf(base) is PresenceStatus.AVAILABLE
    assert status_from_pidf(PidfDocument("sip:x@y", (PidfTuple("t", Basic.CLOSED),))) is (
        PresenceStatus.OFFLINE
    )
    assert status_from_pidf(PidfDocument("sip:x@y")) is PresenceStatus.OFFLINE
    away = PidfDocument("sip:x@y", base.tuples, activities=frozenset({"lunch", "meal"}))
    assert status_from_pidf(away) is PresenceStatus.AWAY
    dnd = PidfDocument("sip:x@y", base.tuples, notes=("DND",), activities=frozenset({"away"}))
    assert status_from_pidf(dnd) is PresenceStatus.DND
    # a word inside another word is not a phrase
    assert status_from_pidf(PidfDocument("sip:x@y", base.tuples, notes=("Castaway",))) is (
        PresenceStatus.AVAILABLE
    )


def test_round_trip() -> None:
    doc = parse_pidf(RICH)
    again = parse_pidf(build_pidf(doc))
    assert again == doc
    body = build_pidf(doc).decode()
    assert body.startswith("<?xml version='1.0' encoding='utf-8'?>")
    assert 'xmlns="urn:ietf:params:xml:ns:pidf"' in body and "<rpid:meeting />" in body


@pytest.mark.parametrize("status", list(PresenceStatus))
def test_our_own_documents_say_what_we_mean(status: PresenceStatus) -> None:
    doc = pidf_for_status("sip:ann@hotline.test", status, note="back at 3")
    assert status_from_pidf(parse_pidf(build_pidf(doc))) is status


def test_a_contradicting_note_is_left_out() -> None:
    doc = pidf_for_status("sip:ann@hotline.test", PresenceStatus.AVAILABLE, note="away soon")
    assert doc.notes == () and status_from_pidf(doc) is PresenceStatus.AVAILABLE


def test_special_characters_are_escaped() -> None:
    doc = PidfDocument("sip:a&b@example.org", (PidfTuple("t<1>", Basic.OPEN, notes=("<&>\"'",)),))
    assert parse_pidf(build_pidf(doc)) == doc


# -- refusals ---------------------------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE presence [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@b"><note>&lol3;</note></presence>"""

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE presence [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@b"><note>&xxe;</note></presence>"""

PLAIN_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE presence SYSTEM "http://example.org/pidf.dtd">
<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@b"/>"""


@pytest.mark.parametrize("body", [BILLION_LAUGHS, XXE, PLAIN_DTD])
def test_dtds_and_entities_are_refused(body: bytes) -> None:
    with pytest.raises(PidfError, match="DTDs and entities are not accepted"):
        parse_pidf(body)


def _doc(inner: str, root: str = 'xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@b"') -> bytes:
    return f"<presence {root}>{inner}</presence>".encode()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<presence", "not well-formed XML: .* at line 1, column"),
        (_doc("<note>&undefined;</note>"), "not well-formed XML: undefined entity"),
        (b'<presence entity="sip:a@b"/>', "root element must be <presence> .* without a namespace"),
        (b'<x:status xmlns:x="urn:other"/>', "got <status> in namespace 'urn:other'"),
        (_doc("", 'xmlns="urn:ietf:params:xml:ns:pidf"'), "no entity attribute"),
        (_doc("<tuple><status/></tuple>"), "a <tuple> has no id attribute"),
        (_doc('<tuple id="t"/>'), "tuple 't' has no <status>"),
        (
            _doc('<tuple id="t"><status/></tuple><tuple id="t"><status/></tuple>'),
            "two tuples have the id 't'",
        ),
        (
            _doc('<tuple id="t"><status><basic>ajar</basic></status></tuple>'),
            "<basic>ajar</basic>; expected open or closed",
        ),
        (
            _doc('<tuple id="t"><status/><contact priority="2">sip:x</contact></tuple>'),
            "contact priority '2'",
        ),
        (
            _doc('<tuple id="t"><status/><contact priority="high">sip:x</contact></tuple>'),
            "contact priority 'high'",
        ),
        (
            _doc('<tuple id="t"><status/><x:geo xmlns:x="urn:geo" mustUnderstand="true"/></tuple>'),
            "<geo> in namespace 'urn:geo' is marked mustUnderstand",
        ),
        (
            _doc(
                '<x:geo xmlns:x="urn:geo" xmlns:p="urn:ietf:params:xml:ns:pidf" '
                'p:mustUnderstand="1"/>'
            ),
            "marked mustUnderstand",
        ),
    ],
)
def test_malformed_documents(body: bytes, message: str) -> None:
    with pytest.raises(PidfError, match=message):
        parse_pidf(body)


def test_unknown_extensions_are_ignored() -> None:
    doc = parse_pidf(
        _doc(
            '<tuple id="t"><status><basic>open</basic><x:y xmlns:x="urn:z"/>'
            '</status></tuple><x:geo xmlns:x="urn:geo" mustUnderstand="false"/>'
        )
    )
    assert doc.basic is Basic.OPEN


def test_size_and_depth_limits() -> None:
    with pytest.raises(PidfError, match="over the 65536-byte limit"):
        parse_pidf(_doc("<note>" + "x" * MAX_PIDF_BYTES + "</note>"))
    deep = "<x:a xmlns:x='urn:x'>" * MAX_DEPTH + "</x:a>" * MAX_DEPTH
    with pytest.raises(PidfError, match="nested deeper than 32"):
        parse_pidf(_doc(deep))


def test_build_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="not an activity name"):
        build_pidf(PidfDocument("sip:a@b", activities=frozenset({"On Phone"})))
    with pytest.raises(ValueError, match="needs an entity"):
        build_pidf(PidfDocument(""))


# -- the directory ----------------------------------------------------------------------

ANN = Expert("ann", "Ann Lee", "sip:ann@hotline.test", "pharmacy", {"vax": 9, "zh": 5})
BOB = Expert("bob", "Bob Ng", "<sip:Bob@Hotline.test;transport=tcp>", "nursing", {"vax": 6})
CY = Expert("cy", "Cy Park", "sip:cy@hotline.test", "nursing", {"vax": 9})


def directory() -> Directory:
    return Directory([ANN, BOB, CY], now=0.0)


def test_registration_makes_an_expert_available_and_a_call_busy() -> None:
    d = directory()
    assert d.handle(ExpertRegistration("ann", True), 1.0) == [
        PresenceChanged("ann", PresenceStatus.AVAILABLE, PresenceStatus.OFFLINE, None, 1.0)
    ]
    [change] = d.handle(ExpertCallStarted("ann", "k1"), 2.0)
    assert (change.status, change.note) == (PresenceStatus.BUSY, "on the phone")
    assert d.handle(ExpertCallStarted("ann", "k2"), 3.0) == []
    assert d.handle(ExpertCallEnded("ann", "k1"), 4.0) == []  # k2 still in progress
    [change] = d.handle(ExpertCallEnded("ann", "k2"), 5.0)
    assert change.status is PresenceStatus.AVAILABLE and d.view("ann").since == 5.0


def test_an_explicit_status_wins_and_lapses() -> None:
    d = directory()
    d.handle(ExpertRegistration("ann", True), 0.0)
    [change] = d.handle(ExpertStatusSet("ann", PresenceStatus.DND, "in surgery", until=60.0), 1.0)
    assert (change.status, change.note) == (PresenceStatus.DND, "in surgery")
    d.handle(ExpertCallStarted("ann", "k1"), 2.0)
    assert d.view("ann").status is PresenceStatus.DND  # the person said so
    d.handle(ExpertCallEnded("ann", "k1"), 3.0)
    assert d.next_deadline() == 60.0
    assert d.handle_timer(59.0) == []
    [change] = d.handle_timer(60.0)
    assert change.status is PresenceStatus.AVAILABLE and d.next_deadline() is None


def test_explicit_available_reaches_an_unregistered_expert_but_not_over_a_call() -> None:
    d = directory()
    d.handle(ExpertStatusSet("bob", PresenceStatus.AVAILABLE), 0.0)
    assert d.view("bob").status is PresenceStatus.AVAILABLE
    d.handle(ExpertCallStarted("bob", "k"), 1.0)
    assert d.view("bob").status is PresenceStatus.BUSY
    d.handle(ExpertCallEnded("bob", "k"), 2.0)
    d.handle(ExpertStatusSet("bob", None), 3.0)
    assert d.view("bob").status is PresenceStatus.OFFLINE


def test_published_pidf_feeds_presence_and_expires() -> None:
    d = directory()
    d.handle(PresencePublished("cy", parse_pidf(NOTE_ONLY), expires_at=100.0), 0.0)
    assert (d.view("cy").status, d.view("cy").note) == (PresenceStatus.BUSY, "On the phone")
    open_doc = PidfDocument("sip:cy@pbx", (PidfTuple("t", Basic.OPEN),))
    [change] = d.handle(PresencePublished("cy", open_doc, expires_at=100.0), 10.0)
    assert change.status is PresenceStatus.AVAILABLE
    [change] = d.handle_timer(100.0)
    assert change.status is PresenceStatus.OFFLINE
    d.handle(ExpertRegistration("cy", True), 101.0)
    d.handle(PresencePublished("cy", parse_pidf(RICH)), 102.0)  # in a meeting
    assert d.view("cy").status is PresenceStatus.BUSY
    d.handle(PresencePublished("cy", None), 103.0)
    assert d.view("cy").status is PresenceStatus.AVAILABLE


def test_available_experts_by_proficiency_then_idle_time() -> None:
    d = directory()
    d.handle(ExpertRegistration("cy", True), 1.0)
    d.handle(ExpertRegistration("bob", True), 2.0)
    d.handle(ExpertRegistration("ann", True), 3.0)
    assert [v.expert.id for v in d.available_experts("vax")] == ["cy", "ann", "bob"]
    d.handle(ExpertCallStarted("cy", "k"), 4.0)
    d.handle(ExpertCallEnded("cy", "k"), 5.0)  # cy is now the most recently busy
    assert [v.expert.id for v in d.available_experts("vax")] == ["ann", "cy", "bob"]
    assert [v.expert.id for v in d.available_experts("vax", min_proficiency=7)] == ["ann", "cy"]
    assert [v.expert.id for v in d.available_experts("zh")] == ["ann"]
    assert d.available_experts("cardiology") == []


def test_directory_lookup_and_pidf_for_watchers() -> None:
    d = directory()
    assert d.find_by_uri("sip:bob@hotline.test") == BOB
    assert uri_key("<sips:Ann@Example.org;transport=tls>") == "ann@example.org"
    d.handle(ExpertRegistration("ann", True), 0.0)
    doc = parse_pidf(d.pidf("ann"))
    assert doc.entity == "sip:ann@hotline.test" and status_from_pidf(doc) is (
        PresenceStatus.AVAILABLE
    )
    with pytest.raises(UnknownExpert, match="unknown expert 'zed'"):
        d.handle(ExpertRegistration("zed", True), 0.0)
    with pytest.raises(AcdConfigError, match="same URI"):
        d.add(Expert("ann2", "Ann Two", "sip:ANN@hotline.test"), 0.0)
    with pytest.raises(AcdConfigError, match="needs a SIP URI"):
        Expert("x", "X", "")
    d.remove("ann")
    assert d.find_by_uri("sip:ann@hotline.test") is None and "ann" not in d


def test_unknown_encoding_is_a_pidf_error() -> None:
    body = b'<?xml version="1.0" encoding="klingon"?>' + _doc("")
    with pytest.raises(PidfError, match="declares an encoding hotline cannot read"):
        parse_pidf(body)


def test_other_encodings_are_read() -> None:
    body = ('<?xml version="1.0" encoding="UTF-16"?>' + _doc("<note>café</note>").decode()).encode(
        "utf-16"
    )
    assert parse_pidf(body).notes == ("café",)
