"""The reference flow `ivr_flows/vaccine.yaml` run by the simulator against the REAL booking
service (an in-memory SQLite store holding the sample clinics and their slots, a fixed
clock): a first call books, a repeat call from the same number is greeted with the booking
and cancels it, and the edge paths end where they should. Also: the flow checks clean and
its coverage over the scripts."""

from __future__ import annotations

import asyncio
import datetime as dt
import zoneinfo
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest
import yaml

from hotline.booking.csvfiles import parse_clinics
from hotline.booking.geo import shipped_postcodes
from hotline.booking.model import generate_slots, holidays_for
from hotline.booking.rules import default_rules
from hotline.booking.service import BookingService, CallContext
from hotline.booking.store.sqlite import SqliteStore
from hotline.ivr import interpreter as it
from hotline.ivr import simulate as sim
from hotline.ivr.loader import Flow, load_flow

ROOT = Path(__file__).resolve().parents[3]
SCRIPTS = ROOT / "tests" / "data" / "flows" / "vaccine"
SYDNEY = zoneinfo.ZoneInfo("Australia/Sydney")
NOW = dt.datetime(2026, 11, 23, 10, 0, tzinfo=SYDNEY)


@pytest.fixture(scope="module")
def flow() -> Flow:
    return load_flow(ROOT / "ivr_flows" / "vaccine.yaml", audio_dir=ROOT / "audio")


class Live:
    """The booking service on its own event loop, answering the simulator's requests."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.store = SqliteStore(":memory:")
        rules = default_rules()
        self.loop.run_until_complete(self._seed(rules))
        self.service = BookingService(self.store, rules, lambda: NOW)
        self.call = 0

    async def _seed(self, rules: object) -> None:
        await self.store.open()
        text = (resources.files("hotline.booking") / "data" / "clinics_sample.csv").read_text()
        clinics = parse_clinics(text, "clinics_sample.csv", postcodes=shipped_postcodes(),
                                vaccines=default_rules().vaccines.keys())
        await self.store.save_clinics(clinics, now=NOW)
        for clinic in clinics:
            closed = holidays_for(clinic.region, NOW.date(), 14)
            await self.store.add_slots(generate_slots(clinic, NOW.date(), 14,
                                                      default_rules().zone, closed=closed))

    def answer(self, request: it.ServiceRequest) -> sim.ServiceReply | None:
        if request.kind != "booking":
            return None
        outcome, data = self.loop.run_until_complete(self.service.handle(
            request.name, dict(request.args),
            CallContext(call_id=f"sim-{self.call}", caller=self.caller)))
        return sim.ServiceReply(outcome, dict(data))

    def run(self, flow: Flow, name: str | Path, caller: str = "0412345678") -> sim.Run:
        self.call += 1
        self.caller = caller
        path = name if isinstance(name, Path) else SCRIPTS / f"{name}.script.yaml"
        script = sim.parse_script(yaml.safe_load(path.read_text()), str(name))
        live = sim.Script(script.steps, {**script.caller, "caller.number": caller},
                          script.start, {k: v for k, v in script.services.items()
                                         if not k.startswith("booking")}, str(name))
        return sim.simulate(flow, live, service=self.answer)

    def close(self) -> None:
        self.loop.run_until_complete(self.store.close())
        self.loop.close()


@pytest.fixture
def live() -> Iterator[Live]:
    world = Live()
    yield world
    world.close()


def test_the_reference_flow_checks_clean(flow: Flow) -> None:
    assert flow.warnings == ()
    assert flow.languages == ("en", "zh")
    assert flow.sensitive == frozenset({"medicare"})


def test_book_then_the_repeat_call_cancels(flow: Flow, live: Live) -> None:
    booked = live.run(flow, "book")
    assert booked.result == "booked", booked.transcript()
    reference = dict(booked.headers)["X-Hotline-Reference"]
    # committed before its reference was read out: it is in the store, confirmed
    (booking,) = live.loop.run_until_complete(live.store.bookings_by_reference([reference]))
    assert booking.status.value == "confirmed"
    assert booking.person.medicare == "2123456701"
    assert live.loop.run_until_complete(live.store.outbox_pending()) == 1
    # the reference was spoken, slowly, twice
    spoken = [line.text for line in booked.lines if line.text == f"[reference {reference}]"]
    assert len(spoken) == 2
    # a repeat call from the same number is greeted with it, and cancels it
    again = live.run(flow, "repeat_cancel")
    assert ("", "welcome_back") in again.path
    assert again.result == "cancelled", again.transcript()
    assert dict(again.headers)["X-Hotline-Reference"] == reference
    (booking,) = live.loop.run_until_complete(live.store.bookings_by_reference([reference]))
    assert booking.status.value == "cancelled"


def test_book_then_cancel_by_reference_keys(flow: Flow, live: Live, tmp_path: Path) -> None:
    booked = live.run(flow, "book")
    reference = dict(booked.headers)["X-Hotline-Reference"]
    keys = reference.translate(str.maketrans("FKMRW", "35679"))
    data = yaml.safe_load((SCRIPTS / "by_reference.script.yaml").read_text())
    data["steps"][2] = {"keys": keys}
    script = tmp_path / "ref.script.yaml"
    script.write_text(yaml.safe_dump(data))
    run = live.run(flow, script, caller="0298765432")
    assert ("", "manage") in run.path
    assert run.result == "cancelled", run.transcript()


@pytest.mark.parametrize(("name", "result"), [
    ("too_young", "not_eligible"),
    ("fumbles", "no_agent"),
    ("holiday", "closed_holiday"),
])
def test_edge_paths(flow: Flow, live: Live, name: str, result: str) -> None:
    run = live.run(flow, name, caller="0298765432")
    assert run.result == result, run.transcript()


def test_the_trace_of_a_booking_call_holds_no_medicare_digits(flow: Flow, live: Live) -> None:
    booked = live.run(flow, "book")
    text = yaml.safe_dump(booked.trace)
    assert "2123456701" not in text and "21234567" not in text
    assert all(r.args.get("medicare") in (None, "2123456701") for r in booked.requests)
    hold = next(r for r in booked.requests if r.name == "hold")
    assert "medicare" in hold.sensitive
