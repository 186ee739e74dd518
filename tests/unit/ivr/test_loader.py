"""The flow loader and checker against the corpus of broken flows, the good flows, and the
`hotline flow check` / `hotline flow schema` commands.

Each file of tests/data/flows/broken/ makes one mistake (a few make several, to show that
every error is reported at once) and states, in its leading comment lines, the errors the
loader must report — exactly that set — as `# expect: LINE:COL CODE`, and warnings that
must be among the rest as `# expect-warning: LINE:COL CODE`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from hotline.cli import main
from hotline.ivr.loader import FlowError, load_flow, load_flow_text, scalar_position
from hotline.yamlpos import Diagnostic, Severity, load_yaml

ROOT = Path(__file__).resolve().parents[3]
FLOWS = ROOT / "tests" / "data" / "flows"
AUDIO = ROOT / "audio"
BROKEN = sorted((FLOWS / "broken").glob("*.yaml"))
GOOD = (sorted(FLOWS.glob("*.yaml")) + sorted(FLOWS.glob("*/flow.yaml"))
        + sorted((ROOT / "ivr_flows").glob("*.yaml")))

_EXPECT = re.compile(
    r"# expect(?P<warning>-warning)?: (?P<line>\d+):(?P<col>\d+) (?P<code>[a-z0-9-]+)"
)
_CHECK_LINE = re.compile(
    r"^(?P<file>.+?):(?P<line>\d+):(?P<col>\d+): (?P<rest>.+) \[(?P<code>[a-z0-9-]+)\]$"
)

Place = tuple[int, int, str]  # line, column, code


@dataclass(frozen=True)
class Expected:
    errors: frozenset[Place]
    warnings: frozenset[Place]


def expectations(path: Path) -> Expected:
    """The `# expect` lines of a corpus file's leading comments (the file may not be UTF-8:
    the comments are ASCII)."""
    errors: set[Place] = set()
    warnings: set[Place] = set()
    for line in path.read_bytes().decode("utf-8", errors="replace").splitlines():
        if not line.startswith("#"):
            break
        if line.startswith("# expect"):
            match = _EXPECT.fullmatch(line.rstrip())
            assert match is not None, f"{path.name}: malformed expectation {line!r}"
            place = (int(match["line"]), int(match["col"]), match["code"])
            (warnings if match["warning"] else errors).add(place)
    return Expected(frozenset(errors), frozenset(warnings))


def display(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def load_broken(path: Path) -> tuple[Diagnostic, ...]:
    """The diagnostics of a flow that must fail to load, and fail only with FlowError."""
    try:
        flow = load_flow(path, audio_dir=AUDIO, display_name=display(path))
    except FlowError as exc:
        return exc.diagnostics
    except Exception as exc:  # the point: nothing but FlowError may escape
        pytest.fail(f"{path.name}: raised {type(exc).__name__} instead of FlowError: {exc}")
    pytest.fail(f"{path.name}: loaded (version {flow.version}) but should have failed")


def places(
    diagnostics: tuple[Diagnostic, ...] | list[Diagnostic], severity: Severity
) -> set[Place]:
    out: set[Place] = set()
    for d in diagnostics:
        if d.severity is severity:
            assert d.line is not None and d.col is not None, d.format()
            out.add((d.line, d.col, d.code))
    return out


# -- the corpus ----------------------------------------------------------------------------


def test_corpus_is_large_and_every_file_states_its_errors() -> None:
    assert len(BROKEN) >= 40
    names = [p.name for p in BROKEN]
    assert all(re.fullmatch(r"\d\d-[a-z0-9-]+\.yaml", n) for n in names), names
    assert len({n[:2] for n in names}) == len(names), "two corpus files share a number"
    for path in BROKEN:
        assert expectations(path).errors, f"{path.name} states no expected error"


@pytest.mark.parametrize("path", BROKEN, ids=lambda p: p.stem)
def test_broken_flow_reports_exactly_the_expected_errors(path: Path) -> None:
    expected = expectations(path)
    diagnostics = load_broken(path)
    assert places(diagnostics, Severity.ERROR) == set(expected.errors), "\n".join(
        f"{d.format()} [{d.code}]" for d in diagnostics
    )
    missing = set(expected.warnings) - places(diagnostics, Severity.WARNING)
    assert not missing, f"pinned warnings not reported: {sorted(missing)}"


@pytest.mark.parametrize("path", BROKEN, ids=lambda p: p.stem)
def test_every_diagnostic_names_file_line_and_column(path: Path) -> None:
    diagnostics = load_broken(path)
    lines = path.read_bytes().count(b"\n") + 1
    for d in diagnostics:
        assert d.file == display(path)
        assert d.line is not None and d.col is not None
        assert 1 <= d.line <= lines, d.format()
        assert d.col >= 1, d.format()
        assert d.format().startswith(f"{display(path)}:{d.line}:{d.col}: "), d.format()
        assert d.message and d.code


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("06-unknown-top-key", "did you mean 'defaults'?"),
        ("14-undefined-next", "did you mean 'done'?"),
        ("21-undefined-subflow", "did you mean 'identify'?"),
        ("29-undefined-prompt", "did you mean 'hello'?"),
        ("38-unknown-variable", "did you mean 'attempts'?"),
        ("48-undefined-hours", "did you mean 'office'?"),
        ("58-unknown-step-key", "did you mean 'next'?"),
        ("03-duplicate-step", "first defined at line 9"),
        ("65-subflow-mutual-recursion", "calls itself (through verify)"),
    ],
)
def test_messages_say_what_was_meant(name: str, words: str) -> None:
    diagnostics = load_broken(FLOWS / "broken" / f"{name}.yaml")
    assert any(words in d.message for d in diagnostics), [d.message for d in diagnostics]


def test_a_zero_byte_file_is_reported_at_its_start(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_bytes(b"")
    with pytest.raises(FlowError) as caught:
        load_flow(path, audio_dir=AUDIO, display_name="empty.yaml")
    assert [(d.line, d.col, d.code) for d in caught.value.diagnostics] == [(1, 1, "empty")]


def test_bytes_that_are_not_utf8_are_reported_at_the_first_bad_one(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"flow: x\nlanguages: [en]\n# caf\xe9\n")
    with pytest.raises(FlowError) as caught:
        load_flow(path, display_name="latin1.yaml")
    (d,) = caught.value.diagnostics
    assert (d.line, d.col, d.code) == (3, 6, "file")
    assert "0xe9" in d.message


def test_a_missing_file_is_a_flow_error(tmp_path: Path) -> None:
    with pytest.raises(FlowError) as caught:
        load_flow(tmp_path / "absent.yaml", display_name="absent.yaml")
    (d,) = caught.value.diagnostics
    assert (d.file, d.line, d.col, d.code) == ("absent.yaml", 1, 1, "file")


# -- good flows ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", GOOD, ids=lambda p: display(p))
def test_good_flow_loads_without_errors(path: Path) -> None:
    flow = load_flow(path, audio_dir=AUDIO, display_name=display(path))
    assert all(d.severity is Severity.WARNING for d in flow.warnings)
    assert flow.scopes[""].steps, "a loaded flow has steps"


# -- fixes of the checker, each with the flow that showed it ---------------------------------

_HEAD = """\
flow: t
languages: [en]
prompts:
  ask: {en: "Press 1 to go on, 2 to stop."}
  bye: {en: "Goodbye."}
"""


def errors_of(text: str) -> list[tuple[int, int, str]]:
    try:
        load_flow_text(text, "t.yaml", audio_dir=AUDIO)
    except FlowError as exc:
        return [
            (d.line or 0, d.col or 0, d.code)
            for d in exc.diagnostics
            if d.severity is Severity.ERROR
        ]
    return []


def test_a_loop_through_a_subflow_that_waits_and_can_hang_up_is_fine() -> None:
    text = (
        _HEAD
        + """\
steps:
  again: {type: call, subflow: ask, next: again}
subflows:
  ask:
    steps:
      menu: {type: menu, prompt: ask, keys: {1: back, 2: done}, noinput: [ask],
             nomatch: [ask], failed: done}
      back: {type: return}
      done: {type: hangup, prompts: [bye]}
"""
    )
    assert errors_of(text) == []


def test_a_loop_through_a_subflow_that_never_waits_spins() -> None:
    text = (
        _HEAD
        + """\
steps:
  start: {type: play, prompts: [ask]}
  again: {type: call, subflow: count, next: again}
subflows:
  count:
    steps:
      add: {type: set, values: {n: "1"}}
      back: {type: return}
"""
    )
    assert errors_of(text) == [(8, 3, "loop-no-wait")]


def test_a_menu_key_written_as_a_number_is_located_at_its_value() -> None:
    text = (
        _HEAD
        + """\
steps:
  menu:
    type: menu
    prompt: ask
    keys:
      1: nowhere
    noinput: [ask]
    nomatch: [ask]
    failed: done
  done: {type: hangup, prompts: [bye]}
"""
    )
    assert errors_of(text) == [(11, 10, "undefined-target")]


def test_unreachable_steps_are_not_reported_when_the_start_is_undefined() -> None:
    text = (
        _HEAD
        + """\
start: nowhere
steps:
  done: {type: hangup, prompts: [bye, ask]}
"""
    )
    with pytest.raises(FlowError) as caught:
        load_flow_text(text, "t.yaml", audio_dir=AUDIO)
    assert [d.code for d in caught.value.diagnostics] == ["undefined-start"]


def test_step_warnings_point_at_the_step_name() -> None:
    text = (
        _HEAD
        + """\
steps:
  done: {type: hangup, prompts: [bye, ask]}
  lost: {type: hangup, prompts: [bye]}
"""
    )
    flow = load_flow_text(text, "t.yaml", audio_dir=AUDIO)
    assert [(d.line, d.col, d.code) for d in flow.warnings] == [(8, 3, "unreachable")]


# -- the command line ----------------------------------------------------------------------


@pytest.mark.parametrize("path", BROKEN, ids=lambda p: p.stem)
def test_flow_check_prints_file_line_col_and_code_and_fails(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(["flow", "check", str(path), "--audio", str(AUDIO)])
    out = capsys.readouterr().out
    assert rc == 1
    printed: set[Place] = set()
    for line in out.splitlines():
        match = _CHECK_LINE.match(line)
        assert match is not None, f"not FILE:LINE:COL: … [code]: {line!r}"
        assert match["file"] == str(path)
        if not match["rest"].startswith("warning: "):
            printed.add((int(match["line"]), int(match["col"]), match["code"]))
    assert printed == set(expectations(path).errors)


def test_flow_check_of_a_good_flow_succeeds(capsys: pytest.CaptureFixture[str]) -> None:
    path = FLOWS / "listen.yaml"
    rc = main(["flow", "check", str(path), "--audio", str(AUDIO)])
    assert rc == 0
    assert capsys.readouterr().out.splitlines() == [f"{path}: ok"]


def test_flow_check_json_reports_the_same_places(capsys: pytest.CaptureFixture[str]) -> None:
    path = FLOWS / "broken" / "53-several-errors.yaml"
    rc = main(["flow", "check", str(path), "--audio", str(AUDIO), "--format", "json"])
    assert rc == 1
    reported = json.loads(capsys.readouterr().out)
    errors = {(r["line"], r["col"], r["code"]) for r in reported if r["severity"] == "error"}
    assert errors == set(expectations(path).errors)


# -- the JSON Schema -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(["flow", "schema"])
    assert rc == 0
    loaded: dict[str, Any] = json.loads(out.getvalue())
    jsonschema.Draft202012Validator.check_schema(loaded)
    return loaded


def as_json(path: Path) -> Any:
    """A flow file as the JSON an editor sees (YAML's integer keys become text)."""
    return json.loads(json.dumps(yaml.safe_load(path.read_text(encoding="utf-8")), default=str))


def test_flow_schema_is_a_json_schema_of_flows(schema: dict[str, Any]) -> None:
    assert schema["$schema"].endswith("/2020-12/schema")
    assert {"flow", "languages", "steps"} <= set(schema["required"])


@pytest.mark.parametrize("path", GOOD, ids=lambda p: display(p))
def test_flow_schema_validates_the_good_flows(schema: dict[str, Any], path: Path) -> None:
    jsonschema.validate(as_json(path), schema, cls=jsonschema.Draft202012Validator)


def test_the_committed_schema_file_is_current(schema: dict[str, Any]) -> None:
    committed = json.loads((ROOT / "ivr_flows" / "flow.schema.json").read_text())
    assert committed == schema, "run: hotline flow schema > ivr_flows/flow.schema.json"


@pytest.mark.parametrize(
    "name",
    ["07-unknown-step-type", "09-max-attempts-string", "11-bad-duration", "58-unknown-step-key"],
)
def test_flow_schema_refuses_shape_mistakes(schema: dict[str, Any], name: str) -> None:
    validator = jsonschema.Draft202012Validator(schema)
    assert not validator.is_valid(as_json(FLOWS / "broken" / f"{name}.yaml"))


# -- columns inside scalars ----------------------------------------------------------------


def position_in(text: str, value: str, offset: int) -> tuple[int, int] | None:
    """Where `scalar_position` puts value[offset] of the scalar keyed `v` in `text`."""
    doc = load_yaml(text, "t.yaml")
    assert doc.data["v"] == value
    located = doc.positions.get(("v",))
    assert located is not None
    return scalar_position(text.split("\n"), located.value.line, located.value.col, value, offset)


@pytest.mark.parametrize(
    ("text", "value", "offset", "where"),
    [
        ("v: a = b\n", "a = b", 2, (1, 6)),
        ('v: "a = b"\n', "a = b", 2, (1, 7)),
        ('v: "x \\"y\\" = z"\n', 'x "y" = z', 6, (1, 13)),
        ('v: "\\x41 = \\u00e9 = z"\n', "A = é = z", 4, (1, 12)),
        ("v: 'it''s = x'\n", "it's = x", 5, (1, 11)),
        ("v: a and\n  b = c\n", "a and b = c", 8, (2, 5)),
        ('v: "a and\n  b = c"\n', "a and b = c", 8, (2, 5)),
        ('v: "a and \\\n  b = c"\n', "a and b = c", 8, (2, 5)),
        ("v: >-\n  a and\n  b = c\n", "a and b = c", 8, (3, 5)),
        ("v: |\n  a and\n    b = c\n", "a and\n  b = c\n", 10, (3, 7)),
        ("v: 'abc'\n", "abc", 3, (1, 8)),  # the end of the value: the closing quote
    ],
)
def test_scalar_position(text: str, value: str, offset: int, where: tuple[int, int]) -> None:
    assert position_in(text, value, offset) == where


def test_scalar_position_gives_up_rather_than_guess() -> None:
    assert position_in("v: |2\n    x = y\n", "  x = y\n", 4) is None  # explicit indentation
    assert scalar_position(["v: abc"], 1, 4, "xyz", 1) is None  # the text does not spell it
    assert scalar_position(["v: abc"], 1, 4, "abc", 9) is None  # past the value
    assert scalar_position(["v: abc"], 3, 1, "abc", 0) is None  # past the file


_SCALAR_TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp")),
    min_size=1,
    max_size=40,
).filter(lambda s: s.strip() == s and "\ufeff" not in s)


@settings(max_examples=300, deadline=None)
@given(
    value=_SCALAR_TEXT, style=st.sampled_from([None, '"', "'", "|", ">"]), width=st.integers(12, 60)
)
def test_scalar_position_lands_on_the_character(value: str, style: str | None, width: int) -> None:
    """Whatever style PyYAML writes a value in, the position of each character that the
    file spells literally holds that character."""
    text = yaml.dump({"v": value}, default_style=style, allow_unicode=True, width=width)
    if yaml.safe_load(text)["v"] != value:
        return  # the style cannot carry this value (block styles and edge whitespace)
    lines = text.split("\n")
    doc = load_yaml(text, "t.yaml")
    located = doc.positions.get(("v",))
    assert located is not None
    for offset, char in enumerate(value):
        where = scalar_position(lines, located.value.line, located.value.col, value, offset)
        if where is None:  # only behind an explicit indentation indicator (`|2`)
            assert style in ("|", ">") and any(c.isdigit() for c in lines[0]), (text, offset)
            continue
        line, col = where
        found = lines[line - 1][col - 1] if col - 1 < len(lines[line - 1]) else "\n"
        # the character itself, an escape (\", \\, \xNN, \U…) or a line break folded into
        # the space it stands for
        assert (
            found == char or (style == '"' and found == "\\") or (char == " " and found in " \n")
        ), (text, offset, where)
