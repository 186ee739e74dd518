"""hotline.yamlpos: positions of every node, YAML strictness (duplicates, aliases, tags,
syntax), the diagnostic format, and pydantic errors turned into positioned messages."""

from __future__ import annotations

import datetime
import time
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import pytest
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic.types import Strict

from hotline.yamlpos import (
    SECRET,
    Diagnostic,
    DiagnosticsError,
    Expect,
    LoadedDocument,
    Located,
    Position,
    Severity,
    describe_found,
    diagnostics_from_validation_error,
    format_path,
    load_yaml,
    load_yaml_file,
    located_errors,
    problem,
    validate_document,
)


def lines(exc: DiagnosticsError) -> list[str]:
    return str(exc).splitlines()


def load_problems(text: str) -> list[str]:
    return [d.format() for d in load_yaml(text, "t.yaml").problems]


def syntax_error(text: str) -> str:
    with pytest.raises(DiagnosticsError) as info:
        load_yaml(text, "t.yaml")
    assert len(info.value.diagnostics) == 1
    return str(info.value)


# -- positions ---------------------------------------------------------------------------------

DOC = """\
name: demo
server:
  listen:
    - { host: a, port: 1 }
    - host: b
      port: 2
  flags: [x, y]
empty:
"""


def test_positions_of_keys_values_and_items() -> None:
    doc = load_yaml(DOC, "d.yaml")
    p = doc.positions
    assert doc.data == {
        "name": "demo",
        "server": {"listen": [{"host": "a", "port": 1}, {"host": "b", "port": 2}],
                   "flags": ["x", "y"]},
        "empty": None,
    }
    assert p.get(("name",)) == Located(Position(1, 1), Position(1, 7), Position(1, 11))
    assert p.get(("server",)) is not None
    assert p.get(("server",)).key == Position(2, 1)  # type: ignore[union-attr]
    assert p.get(("server", "listen", 0)) == Located(None, Position(4, 7), Position(4, 27))
    assert p.get(("server", "listen", 0, "port")) == Located(
        Position(4, 18), Position(4, 24), Position(4, 25))
    assert p.get(("server", "listen", 1, "host")).value == Position(5, 13)  # type: ignore[union-attr]
    assert p.get(("server", "listen", 1, "port")).key == Position(6, 7)  # type: ignore[union-attr]
    assert p.get(("server", "flags", 1)).value == Position(7, 14)  # type: ignore[union-attr]
    # an empty value sits right after its colon
    assert p.get(("empty",)).value == Position(8, 7)  # type: ignore[union-attr]
    assert p.get(()) is not None and p.get(()).key is None  # type: ignore[union-attr]


def test_positions_fall_back_to_the_closest_ancestor() -> None:
    p = load_yaml(DOC, "d.yaml").positions
    # present: its value / its key
    assert p.value(("server", "listen", 1, "port")) == Position(6, 13)
    assert p.key(("server", "listen", 1, "port")) == Position(6, 7)
    # absent: where the closest ancestor is named (its key, or its value for items)
    assert p.value(("server", "listen", 1, "missing", "deeper")) == Position(5, 7)
    assert p.value(("server", "nothing")) == Position(2, 1)
    assert p.nearest(("server", "flags", 9)) == (("server", "flags"), p.get(("server", "flags")))
    assert ("name",) in p and ("nope",) not in p


def test_scalars_follow_yaml_1_1_safe_loading() -> None:
    doc = load_yaml("a: yes\nb: 0x10\nc: 1.5\nd: ~\ne: 2024-05-01\nf: '007'\ng: .inf\n", "s")
    assert doc.data["a"] is True
    assert doc.data["b"] == 16
    assert doc.data["c"] == 1.5
    assert doc.data["d"] is None
    assert doc.data["e"] == datetime.date(2024, 5, 1)
    assert doc.data["f"] == "007"
    assert doc.data["g"] == float("inf")
    assert doc.problems == ()


def test_a_leading_bom_does_not_shift_columns() -> None:
    doc = load_yaml("\ufeffkey: value\n", "b.yaml")
    assert doc.data == {"key": "value"}
    assert doc.positions.get(("key",)) == Located(Position(1, 1), Position(1, 6),
                                                  Position(1, 11))


def test_empty_document() -> None:
    doc = load_yaml("# only a comment\n", "e.yaml")
    assert doc.is_empty and doc.data is None
    null = load_yaml("~\n", "n.yaml")
    assert not null.is_empty and null.data is None


# -- structural problems ---------------------------------------------------------------------


def test_duplicate_keys_are_reported_at_the_second_naming_the_first() -> None:
    doc = load_yaml("a: 1\nb:\n  c: 1\n  d: 2\n  c: 3\na: 2\n", "t.yaml")
    assert [d.format() for d in doc.problems] == [
        "t.yaml:5:3: b: duplicate key 'c'; first defined at line 3",
        "t.yaml:6:1: duplicate key 'a'; first defined at line 1",
    ]
    assert all(d.code == "duplicate-key" for d in doc.problems)
    # the first value is kept (the second is an error anyway)
    assert doc.data == {"a": 1, "b": {"c": 1, "d": 2}}


def test_duplicate_keys_compare_values_not_spelling() -> None:
    assert load_problems("1: a\n0x1: b\n") == ["t.yaml:2:1: duplicate key 1; first defined at line 1"]


def test_aliases_are_refused_and_never_expanded() -> None:
    doc = load_yaml("base: &b {x: 1}\ncopy: *b\n", "t.yaml")
    assert [d.format() for d in doc.problems] == [
        "t.yaml:2:7: copy: aliases are not supported (*b refers to &b at line 1); "
        "write the value out in full"]
    assert doc.data == {"base": {"x": 1}, "copy": None}
    assert ("copy",) in doc.invalid_paths


def test_billion_laughs_is_refused_quickly() -> None:
    levels = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 12):
        prev = chr(ord("a") + i - 1)
        cur = chr(ord("a") + i)
        levels.append(f"{cur}: &{cur} [{', '.join([f'*{prev}'] * 10)}]")
    start = time.perf_counter()
    doc = load_yaml("\n".join(levels) + "\n", "bomb.yaml")
    assert time.perf_counter() - start < 2.0
    assert len(doc.problems) == 110
    assert {d.code for d in doc.problems} == {"yaml-alias"}


def test_anchors_without_aliases_are_fine() -> None:
    doc = load_yaml("a: &anchor 5\n", "t.yaml")
    assert doc.data == {"a": 5} and doc.problems == ()


def test_merge_keys_odd_keys_and_tags_are_refused() -> None:
    assert load_problems("<<: {a: 1}\nb: 2\n") == [
        "t.yaml:1:1: merge keys (<<) are not supported; write the keys out in full"]
    assert load_problems("? [1, 2]\n: x\n") == ["t.yaml:1:3: expected a plain key, found a list"]
    assert load_problems("a: !custom 1\n") == [
        "t.yaml:1:4: a: unsupported YAML tag '!custom'; only the standard tags are allowed"]
    assert load_problems("a: !!python/object:os.system {}\n") == [
        "t.yaml:1:4: a: unsupported YAML tag 'tag:yaml.org,2002:python/object:os.system'; "
        "only the standard tags are allowed"]
    assert load_problems("a: !!set {x, y}\n") == [
        "t.yaml:1:4: a: unsupported YAML tag 'tag:yaml.org,2002:set'; only the standard tags "
        "are allowed"]
    assert load_problems("a: !!int xyz\n") == [
        "t.yaml:1:4: a: invalid int value 'xyz': invalid literal for int() with base 10: 'xyz'"]


def test_explicit_standard_tags_work() -> None:
    doc = load_yaml("a: !!str 123\nb: !!float 1\n", "t.yaml")
    assert doc.data == {"a": "123", "b": 1.0}


# -- fatal syntax errors -------------------------------------------------------------------------


def test_tab_indentation_is_positioned() -> None:
    assert syntax_error("a:\n  b: 1\n\tc: 2\n") == (
        "t.yaml:3:1: found a tab character; YAML indents and separates with spaces only")


def test_syntax_errors_name_the_place_and_the_opening() -> None:
    assert syntax_error("a: [1, 2\nb: 3\n") == (
        "t.yaml:2:2: invalid YAML: expected ',' or ']', but got ':' "
        "(while parsing a flow sequence started at line 1)")
    assert syntax_error("a: b: c\n") == (
        "t.yaml:1:5: invalid YAML: mapping values are not allowed here "
        "(quote a value that contains ': ')")
    assert syntax_error("a:\n  b: 1\n c: 2\n") == (
        "t.yaml:3:2: invalid YAML: expected the end of an indented block, but found a new "
        "indented mapping (while parsing a block mapping started at line 1)")
    assert syntax_error("a: 'x\n") == (
        "t.yaml:2:1: invalid YAML: found unexpected end of the file "
        "(while scanning a quoted scalar started at line 1)")


def test_one_document_only_and_aliases_must_exist() -> None:
    assert syntax_error("a: 1\n---\nb: 2\n") == (
        "t.yaml:2:1: expected a single YAML document, found another one (---)")
    assert syntax_error("a: *nowhere\n") == "t.yaml:1:4: invalid YAML: found undefined alias 'nowhere'"


def test_control_characters_are_positioned() -> None:
    assert syntax_error("a: 1\nb: x\x07y\n") == (
        "t.yaml:2:5: character U+0007 is not allowed in YAML (control characters must be "
        "escaped in a double-quoted string)")


# -- files -------------------------------------------------------------------------------------


def test_load_yaml_file_reads_utf8_and_names_the_file(tmp_path: Path) -> None:
    f = tmp_path / "x.yaml"
    f.write_bytes("\ufeffname: Zoë\n".encode())
    doc = load_yaml_file(f, display_name="x.yaml")
    assert doc.file == "x.yaml" and doc.data == {"name": "Zoë"}
    assert load_yaml_file(f).file == str(f)


def test_load_yaml_file_problems(tmp_path: Path) -> None:
    def err(path: Path, **kw: Any) -> str:
        with pytest.raises(DiagnosticsError) as info:
            load_yaml_file(path, display_name="f.yaml", **kw)
        return str(info.value)

    assert err(tmp_path / "nope.yaml") == "f.yaml:1:1: cannot read the file: it does not exist"
    assert err(tmp_path) == "f.yaml:1:1: cannot read the file: it is a directory"
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"a: 1\nb: caf\xe9\n")
    assert err(bad) == "f.yaml:2:7: the file is not valid UTF-8 (byte 0xe9)"
    big = tmp_path / "big.yaml"
    big.write_text("a: " + "x" * 100 + "\n")
    assert err(big, max_bytes=50) == "f.yaml:1:1: the file is larger than 50 bytes"


# -- the diagnostic format -----------------------------------------------------------------------


def test_diagnostic_format() -> None:
    d = Diagnostic("config.yaml", 12, 11, ("sip", "listen", 0, "port"),
                   "expected an integer from 1 to 65535, found 'abc'")
    assert str(d) == ("config.yaml:12:11: sip.listen[0].port: expected an integer from 1 to "
                      "65535, found 'abc'")
    assert d.severity is Severity.ERROR
    assert Diagnostic("f", 1, 2, (), "top").format() == "f:1:2: top"
    assert Diagnostic("f", 3, 4, ("a",), "odd", Severity.WARNING).format() == "f:3:4: warning: a: odd"
    assert Diagnostic("--sip-listen", None, None, (), "expected HOST:PORT").format() == (
        "--sip-listen: expected HOST:PORT")


def test_format_path() -> None:
    assert format_path(("sip", "listen", 0, "port")) == "sip.listen[0].port"
    assert format_path(("logging", "levels", "hotline.sip")) == 'logging.levels["hotline.sip"]'
    assert format_path(("menu", 1, "go-to")) == "menu[1].go-to"
    assert format_path((True, None)) == "[true][null]"
    assert format_path(()) == ""


def test_describe_found() -> None:
    assert describe_found("abc") == "'abc'"
    assert describe_found("it's") == '"it\'s"'
    assert describe_found("") == "an empty string"
    assert describe_found(70000) == "70000"
    assert describe_found(True) == "true"
    assert describe_found(None) == "null"
    assert describe_found(float("-inf")) == "-.inf"
    assert describe_found(1.5) == "1.5"
    assert describe_found([]) == "an empty list" and describe_found([1]) == "a list"
    assert describe_found({"a": 1}) == "a mapping"
    assert describe_found(datetime.date(2024, 1, 2)) == "a date 2024-01-02"
    assert describe_found("x" * 100) == f"{'x' * 60!r}… (100 characters)"
    # secrets show their kind only
    assert describe_found("hunter2", secret=True) == "a string"
    assert describe_found(1234, secret=True) == "an integer"
    assert describe_found(SecretStr("hunter2")) == "a secret"


def test_diagnostics_error_sorts_and_deduplicates() -> None:
    a = Diagnostic("f", 9, 1, (), "late")
    b = Diagnostic("f", 2, 5, (), "early")
    exc = DiagnosticsError([a, b, a])
    assert lines(exc) == ["f:2:5: early", "f:9:1: late"]
    assert exc.diagnostics == (b, a)


# -- pydantic errors → diagnostics ---------------------------------------------------------------


class Leaf(BaseModel):
    model_config = ConfigDict(extra="forbid")

    port: Annotated[int, Strict(), Field(ge=1, le=65535)]
    name: Annotated[str, Strict(), Expect("a short name")] = "x"
    token: Annotated[str, Strict(), SECRET] = "t"
    choice: Literal["a", "b"] = "a"
    ratio: Annotated[float, Strict(), Field(gt=0)] = 1.0


class PlayStep(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["play"]
    prompt: str


class HangupStep(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["hangup"]
    reason: str


class Root(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[Leaf] = Field(min_length=1)
    tags: dict[Annotated[str, Field(pattern=r"^[a-z]+$"), Expect("a lowercase tag")],
               int] = Field(default_factory=dict)
    either: int | str = 0
    step: Annotated[PlayStep | HangupStep, Field(discriminator="kind")] | None = None
    limit: Annotated[int, Strict()] = 10

    @model_validator(mode="after")
    def _cross(self) -> Self:
        if self.items and self.items[0].port > self.limit:
            raise located_errors("Root", [problem(
                ("items", 0, "port"), f"expected at most limit ({self.limit}), found "
                f"{self.items[0].port}")])
        return self


def check(text: str, model: type[BaseModel] = Root) -> list[str]:
    doc = load_yaml(text, "m.yaml")
    with pytest.raises(DiagnosticsError) as info:
        validate_document(model, doc)
    return lines(info.value)


def test_type_and_range_errors_say_expected_and_found() -> None:
    assert check("items:\n  - port: abc\n  - port: 70000\n    choice: c\n    ratio: 0\n") == [
        "m.yaml:2:11: items[0].port: expected an integer from 1 to 65535, found 'abc'",
        "m.yaml:3:11: items[1].port: expected an integer from 1 to 65535, found 70000",
        "m.yaml:4:13: items[1].choice: expected one of 'a', 'b', found 'c'",
        "m.yaml:5:12: items[1].ratio: expected a number greater than 0, found 0",
    ]


def test_expect_metadata_and_secrets() -> None:
    assert check("items:\n  - {port: 1, name: 5, token: 12345}\n") == [
        "m.yaml:2:21: items[0].name: expected a short name, found 5",
        "m.yaml:2:31: items[0].token: expected a string, found an integer",
    ]


def test_unknown_keys_list_the_allowed_ones_with_a_suggestion() -> None:
    assert check("items:\n  - {port: 1, nmae: x}\nitemz: 1\nzzzzzz: 2\n") == [
        "m.yaml:2:15: items[0]: unknown key 'nmae' (did you mean 'name'?); expected one of: "
        "port, name, token, choice, ratio",
        "m.yaml:3:1: unknown key 'itemz' (did you mean 'items'?); expected one of: items, "
        "tags, either, step, limit",
        "m.yaml:4:1: unknown key 'zzzzzz'; expected one of: items, tags, either, step, limit",
    ]


def test_missing_keys_are_reported_at_the_parent() -> None:
    assert check("items:\n  - name: x\n") == [
        "m.yaml:2:5: items[0]: missing required key 'port'"]
    assert check("limit: 3\n") == ["m.yaml:1:1: missing required key 'items'"]
    assert check("items: []\n") == ["m.yaml:1:8: items: expected a non-empty list, found an empty list"]


def test_mapping_key_errors_point_at_the_key() -> None:
    assert check("items: [{port: 1}]\ntags: {good: 1, Bad: 2, ok: x}\n") == [
        "m.yaml:2:17: tags: invalid key 'Bad': expected a lowercase tag",
        "m.yaml:2:29: tags.ok: expected an integer, found 'x'",
    ]


def test_union_members_give_one_line_without_their_tags() -> None:
    assert check("items: [{port: 1}]\neither: [1]\n") == [
        "m.yaml:2:9: either: expected an integer or a string, found a list"]


def test_discriminated_unions_report_against_the_chosen_member() -> None:
    assert check("items: [{port: 1}]\nstep: {kind: hangup, reason: 1, prompt: x}\n") == [
        "m.yaml:2:30: step.reason: expected a string, found 1",
        "m.yaml:2:33: step: unknown key 'prompt'; expected one of: kind, reason",
    ]
    assert check("items: [{port: 1}]\nstep: {kind: sing}\n") == [
        "m.yaml:2:14: step.kind: expected one of 'play', 'hangup', found 'sing'"]
    assert check("items: [{port: 1}]\nstep: {prompt: x}\n") == [
        "m.yaml:2:1: step: missing required key 'kind'"]
    assert check("items: [{port: 1}]\nstep: 5\n") == [
        "m.yaml:2:7: step: expected a mapping, found 5"]


def test_validator_problems_land_on_their_key() -> None:
    assert check("limit: 5\nitems:\n  - port: 8\n") == [
        "m.yaml:3:11: items[0].port: expected at most limit (5), found 8"]


def test_every_error_at_once_sorted_with_structural_problems() -> None:
    text = "items:\n  - port: 0\n    port: 1\nlimit: x\nalias: &a 1\nitems: *a\n"
    assert check(text) == [
        "m.yaml:2:11: items[0].port: expected an integer from 1 to 65535, found 0",
        "m.yaml:3:5: items[0]: duplicate key 'port'; first defined at line 2",
        "m.yaml:4:8: limit: expected an integer, found 'x'",
        "m.yaml:5:1: unknown key 'alias'; expected one of: items, tags, either, step, limit",
        "m.yaml:6:1: duplicate key 'items'; first defined at line 1",
    ]


def test_errors_under_refused_aliases_are_not_repeated() -> None:
    assert check("base: &b 1\n") == [
        "m.yaml:1:1: missing required key 'items'",
        "m.yaml:1:1: unknown key 'base'; expected one of: items, tags, either, step, limit",
    ]
    out = check("items:\n  - &p {port: 1}\n  - *p\n")
    assert out == ["m.yaml:3:5: items[1]: aliases are not supported (*p refers to &p at line 2);"
                   " write the value out in full"]


def test_a_document_that_is_not_a_mapping() -> None:
    assert check("- 1\n- 2\n") == [
        "m.yaml:1:1: expected a mapping at the top level, found a list"]


def test_validate_a_subtree_with_prefix() -> None:
    doc = load_yaml("meta: 1\nleaf:\n  port: 99999\n", "m.yaml")
    with pytest.raises(DiagnosticsError) as info:
        validate_document(Leaf, doc, path=("leaf",))
    assert lines(info.value) == [
        "m.yaml:3:9: leaf.port: expected an integer from 1 to 65535, found 99999"]
    ok = validate_document(Leaf, load_yaml("leaf: {port: 5}\n", "m.yaml"), path=("leaf",))
    assert ok.port == 5


def test_structural_problems_fail_even_when_the_schema_passes() -> None:
    doc = load_yaml("port: 1\nport: 2\n", "m.yaml")
    with pytest.raises(DiagnosticsError) as info:
        validate_document(Leaf, doc)
    assert lines(info.value) == ["m.yaml:2:1: duplicate key 'port'; first defined at line 1"]


def test_located_errors_keep_prior_errors() -> None:
    class Inner(BaseModel):
        a: int

    try:
        Inner.model_validate({"a": "x"})
    except Exception as exc:  # pydantic.ValidationError
        from pydantic import ValidationError

        assert isinstance(exc, ValidationError)
        combined = located_errors("Inner", [problem(("b",), "custom words")], exc)
    errs = combined.errors()
    assert [e["loc"] for e in errs] == [("a",), ("b",)]
    assert errs[1]["msg"] == "custom words"


def test_diagnostics_from_validation_error_directly() -> None:
    from pydantic import ValidationError

    doc: LoadedDocument = load_yaml("port: nope\n", "direct.yaml")
    with pytest.raises(ValidationError) as info:
        Leaf.model_validate(doc.data)
    diags = diagnostics_from_validation_error(info.value, doc, Leaf)
    assert [d.format() for d in diags] == [
        "direct.yaml:1:7: port: expected an integer from 1 to 65535, found 'nope'"]
    assert diags[0].code == "type" and diags[0].path == ("port",)
    # without a model the message falls back to pydantic's words, still positioned
    bare = diagnostics_from_validation_error(info.value, doc)
    assert bare[0].format() == "direct.yaml:1:7: port: expected a valid integer, found 'nope'"
