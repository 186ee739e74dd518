"""The flow expression language: values, operators, functions, strict types, error offsets,
limits, templates and printing back."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from hotline.ivr import expr
from hotline.ivr.expr import (
    INT_LIMIT,
    MAX_DEPTH,
    MAX_SOURCE_LENGTH,
    MAX_STRING_LENGTH,
    MAX_TEMPLATE_LENGTH,
    Constant,
    EvalError,
    ExprError,
    ListOf,
    Membership,
    Name,
    Sum,
    Value,
    parse,
    parse_template,
    to_text,
    unparse,
)

VARS: dict[str, Value] = {
    "caller.number": "0412345678",
    "booking.reference": "AB12",
    "attempts": 2,
    "consent": True,
    "declined": False,
    "nothing": None,
    "empty_text": "",
    "dob": "1980-05-17",
    "today": "2025-06-15",
    "choice": "2",
}


def ev(source: str, variables: Mapping[str, Value] = VARS) -> Value:
    return parse(source).evaluate(variables)


def eval_error(source: str, variables: Mapping[str, Value] = VARS) -> str:
    with pytest.raises(EvalError) as info:
        parse(source).evaluate(variables)
    return info.value.message


def parse_error(source: str) -> ExprError:
    with pytest.raises(ExprError) as info:
        parse(source)
    return info.value


# -- values and operators ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("42", 42),
        ("0", 0),
        ("'single'", "single"),
        ('"double"', "double"),
        (r"'it\'s'", "it's"),
        (r'"say \"hi\""', 'say "hi"'),
        (r"'a\\b'", "a\\b"),
        (r"'line\nbreak\ttab\rcr'", "line\nbreak\ttab\rcr"),
        ("true", True),
        ("false", False),
        ("null", None),
        ("''", ""),
        ("caller.number", "0412345678"),
        ("attempts", 2),
        ("nothing", None),
    ],
)
def test_literals_and_names(source: str, expected: Value) -> None:
    result = ev(source)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("10 - 4 - 3", 3),
        ("10 - (4 - 3)", 9),
        ("7 // 2", 3),
        ("-7 // 2", -4),  # floor division, as documented
        ("7 % 3", 1),
        ("-7 % 3", 2),
        ("-attempts", -2),
        ("--3", 3),
        ("2 * -3", -6),
        ("attempts * 10 + 1", 21),
        ("'ab' + 'cd'", "abcd"),
        ("booking.reference + '-' + caller.number", "AB12-0412345678"),
    ],
)
def test_arithmetic_and_concatenation(source: str, expected: Value) -> None:
    assert ev(source) == expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("attempts == 2", True),
        ("attempts != 2", False),
        ("attempts < 3", True),
        ("attempts <= 2", True),
        ("attempts > 2", False),
        ("attempts >= 3", False),
        ("'abc' < 'abd'", True),
        ("dob < today", True),  # ISO dates compare as text
        ("nothing == null", True),
        ("attempts == null", False),
        ("null != caller.number", True),
        ("consent == true", True),
        ("'a' == 'a'", True),
    ],
)
def test_comparisons(source: str, expected: bool) -> None:
    assert ev(source) is expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("consent and not declined", True),
        ("declined or consent", True),
        ("declined or declined", False),
        ("not consent", False),
        ("not not consent", True),
        ("not attempts == 3", True),  # not binds looser than ==
        ("consent and attempts > 1 and choice == '2'", True),
        ("declined and attempts > 1 or consent", True),  # and binds tighter than or
        ("declined and (attempts > 1 or consent)", False),
    ],
)
def test_logic(source: str, expected: bool) -> None:
    assert ev(source) is expected


def test_logic_short_circuits() -> None:
    # the right side would fail: it is never evaluated
    assert ev("declined and 1 // 0 == 0") is False
    assert ev("consent or missing.variable") is True
    assert ev("attempts == 2 or 'x' + 1 == 'y'") is True


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("choice in ['1', '2', '3']", True),
        ("choice not in ['1', '3']", True),
        ("attempts in [1, 2]", True),
        ("attempts in []", False),
        ("nothing in [null, 1]", True),
        ("attempts in [null, 3]", False),
        ("'123' in caller.number", True),
        ("'999' not in caller.number", True),
        ("'' in 'abc'", True),
        ("attempts + 1 in [3]", True),
    ],
)
def test_membership(source: str, expected: bool) -> None:
    assert ev(source) is expected


# -- functions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("len(caller.number)", 10),
        ("len('')", 0),
        ("lower('ABC x')", "abc x"),
        ("upper(booking.reference + 'z')", "AB12Z"),
        ("digits('(02) 6123-4567 ext. 9')", "0261234567" + "9"),
        ("digits('١٢٣')", ""),  # only ASCII digits
        ("substr('hello', 1, 3)", "ell"),
        ("substr('hello', 3, 10)", "lo"),
        ("substr('hello', 9, 2)", ""),
        ("int('0042')", 42),
        ("int('-7')", -7),
        ("int('+7')", 7),
        ("int(attempts)", 2),
        ("str(42)", "42"),
        ("str(true)", "true"),
        ("str(null)", ""),
        ("str('x')", "x"),
        ("empty(nothing)", True),
        ("empty(empty_text)", True),
        ("empty(' ')", False),
        ("empty(0)", False),
        ("startswith(caller.number, '04')", True),
        ("startswith(caller.number, '02')", False),
        ("age(dob, today)", 45),
        ("age('1980-06-16', '2025-06-15')", 44),
        ("age('1980-06-15', '2025-06-15')", 45),
        ("age('2000-02-29', '2025-02-28')", 24),  # a leap-day birthday comes on 1 March
        ("age('2000-02-29', '2025-03-01')", 25),
        ("default(nothing, 'none')", "none"),
        ("default(attempts, 0)", 2),
        ("default(declined, true)", False),  # false is a value, not null
    ],
)
def test_functions(source: str, expected: Value) -> None:
    result = ev(source)
    assert result == expected
    assert type(result) is type(expected)


def test_default_and_empty_accept_an_unset_variable() -> None:
    assert ev("default(booking.slot, 'later')") == "later"
    assert ev("empty(booking.slot)") is True
    # but only a bare name: anything else must evaluate
    assert "unknown variable 'booking.slot'" in eval_error("default(upper(booking.slot), 'x')")
    assert "unknown variable 'booking.slot'" in eval_error("default('x', booking.slot)")


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("len(attempts)", "len() needs text as its first argument, found the number 2"),
        ("lower(nothing)", "lower() needs text as its first argument, found null"),
        ("digits(42)", "digits() needs text"),
        ("substr('abc', -1, 2)", "substr() needs a start and a length of 0 or more"),
        ("substr('abc', 'x', 2)", "needs a number as its second argument"),
        ("int('12a')", 'int() cannot read the text "12a" as a whole number'),
        ("int('')", "int() cannot read"),
        ("int(' 1')", "int() cannot read"),
        ("int(true)", "int() needs text or a number, found true"),
        ("int('1' + '0000000000000000000')", "too large"),
        ("int('99999999999999999999999999')", "too large"),
        ("startswith(attempts, '1')", "startswith() needs text as its first argument"),
        ("age('17/05/1980', today)", 'age() cannot read the text "17/05/1980"'),
        ("age('1980-02-30', today)", "expected YYYY-MM-DD"),
        ("age(today, dob)", "age(): the date 2025-06-15 is after 1980-05-17"),
        ("age('20240101', today)", "expected YYYY-MM-DD"),
    ],
)
def test_function_errors(source: str, fragment: str) -> None:
    assert fragment in eval_error(source)


# -- strict types at evaluation ------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("attempts == '2'", "cannot compare the number 2 with the text \"2\" using '=='"),
        ("choice == 2", 'cannot compare the text "2" with the number 2'),
        ("consent == 1", "cannot compare true with the number 1"),
        ("attempts < '3'", "'<' compares two numbers or two texts"),
        ("consent < declined", "'<' compares two numbers or two texts"),
        ("nothing < 1", "'<' compares two numbers or two texts, found null"),
        ("choice + 1", "'+' adds two numbers or joins two texts"),
        ("choice + 1", "str(...)"),
        ("consent + 1", "'+' adds two numbers"),
        ("'a' - 'b'", "'-' needs two numbers"),
        ("'ab' * 2", "'*' needs two numbers"),
        ("-choice", "'-' needs a number"),
        ("attempts // 0", "division by zero"),
        ("attempts % (attempts - 2)", "division by zero"),
        ("attempts and consent", "'and' needs true or false, found the number 2"),
        ("declined or nothing", "'or' needs true or false, found null"),
        ("not choice", "'not' needs true or false"),
        ("attempts in [1, '2']", "cannot compare the number 2 with the text \"2\" using 'in'"),
        ("attempts in caller.number", "'in' with text on its right needs text on its left"),
        ("'1' in attempts", "'in' needs a list [...] or text on its right"),
        ("missing", "unknown variable 'missing'"),
        ("caller.numbr == '1'", "unknown variable 'caller.numbr'"),
    ],
)
def test_type_errors(source: str, fragment: str) -> None:
    assert fragment in eval_error(source)


def test_eval_error_names_the_failing_part_of_a_longer_expression() -> None:
    message = eval_error("consent and attempts + choice == 3")
    assert message.endswith("(in `attempts + choice`)")


def test_variables_of_unusable_types_are_refused() -> None:
    assert "holds a float" in eval_error("x + 1", {"x": 1.5})  # type: ignore[dict-item]
    assert "holds a list" in eval_error("x", {"x": [1]})  # type: ignore[dict-item]


def test_evaluate_bool_requires_a_boolean() -> None:
    assert parse("attempts > 1").evaluate_bool(VARS) is True
    with pytest.raises(EvalError, match="a condition must be true or false, found the number 2"):
        parse("attempts").evaluate_bool(VARS)


# -- names and source ----------------------------------------------------------------------


def test_names_lists_every_variable_read() -> None:
    e = parse("default(booking.slot, 'x') == caller.number and attempts in [1, limit]")
    assert e.names == frozenset({"booking.slot", "caller.number", "attempts", "limit"})
    assert e.source == "default(booking.slot, 'x') == caller.number and attempts in [1, limit]"
    assert parse("1 + len('abc')").names == frozenset()


def test_function_names_are_free_as_variable_names() -> None:
    assert ev("len + 1", {"len": 2}) == 3
    assert parse("len").names == frozenset({"len"})


# -- parse errors with offsets -------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "offset", "length", "fragment"),
    [
        ("", 0, 0, "empty expression"),
        ("   ", 0, 3, "empty expression"),
        ("1 +", 3, 0, "expected a value"),
        ("1 + )", 4, 1, "expected a value (a number, 'text', true, false, null, a name"),
        (
            "attempts 2",
            9,
            1,
            "expected an operator or the end of the expression, found the number 2",
        ),
        ("(1 + 2", 0, 1, "'(' is never closed"),
        ("len(1", 3, 1, "'(' is never closed"),
        ("1 + 2)", 5, 1, "unmatched ')'"),
        ("a == b == c", 7, 2, "comparisons cannot be chained"),
        ("(a < b < c)", 7, 1, "comparisons cannot be chained"),
        ("a in [1] in [2]", 9, 2, "comparisons cannot be chained"),
        ("a not b", 6, 1, "expected 'in' after 'not'"),
        ("lenght(x)", 0, 6, "unknown function 'lenght'; did you mean len()?"),
        ("caller.len(x)", 0, 10, "unknown function 'caller.len'"),
        ("len(x, y)", 0, 9, "len(text) takes 1 argument, found 2"),
        ("substr(x)", 0, 9, "substr(text, start, length) takes 3 arguments, found 1"),
        ("default()", 0, 9, "takes 2 arguments, found 0"),
        ("len(x,)", 6, 1, "expected a value after ','"),
        ("'abc", 0, 4, "unterminated text"),
        ('x == "abc', 5, 4, "unterminated text"),
        ("'ab\ncd'", 0, 3, "not closed before the end of the line"),
        (r"'a\qb'", 2, 2, r"unknown escape \q"),
        ("a = 1", 2, 1, "use '==' to compare"),
        ("a && b", 2, 2, "use 'and' instead of '&&'"),
        ("a || b", 2, 2, "use 'or' instead of '||'"),
        ("!a", 0, 1, "use 'not' instead of '!'"),
        ("a / 2", 2, 1, "use '//' to divide"),
        ("2 ** 3", 2, 2, "no power operator"),
        ("1.5 + 1", 0, 3, "decimal numbers are not supported"),
        ("x == 0412", 5, 4, "starts with 0; write it as text ('0412')"),
        ("2abc", 0, 4, "a number cannot run into letters: '2abc'"),
        ("x == 1000000000000000000", 5, 19, "too large"),
        ("True", 0, 4, "write 'true' in lower case"),
        ("x == None", 5, 4, "write 'null' in lower case"),
        ("a AND b", 2, 3, "write 'and' in lower case"),
        ("booking.in", 8, 2, "'in' is a reserved word"),
        ("not.x", 0, 3, "'not' is a reserved word"),
        ("caller.", 7, 0, "expected a name after '.'"),
        ("caller..x", 7, 1, "expected a name after '.'"),
        (".x", 0, 1, "a name cannot start with a dot"),
        ("x @ y", 2, 1, "unexpected character '@'"),
        ("café", 3, 1, "names use ASCII letters"),
        ("x == {a}", 5, 1, "unexpected character '{'"),
        ("[1, 2]", 0, 1, "a list [...] can only follow 'in' or 'not in'"),
        ("x in [[1]]", 6, 1, "a list [...] can only follow"),
        ("x in [1, 2", 5, 1, "'[' is never closed"),
        ("+1", 0, 1, "a value cannot start with '+'"),
        ("x in", 4, 0, "expected a value"),
        ("in x", 0, 2, "expected a value"),
    ],
)
def test_parse_errors_point_at_the_fault(
    source: str, offset: int, length: int, fragment: str
) -> None:
    error = parse_error(source)
    assert fragment in error.message
    assert (error.offset, error.length) == (offset, length)
    assert str(error) == f"{error.message} (at character {offset + 1})"


def test_reserved_words_cannot_be_names() -> None:
    for word in ("and", "or", "not", "in"):
        error = parse_error(f"x == {word}")
        assert error.offset == 5


# -- limits --------------------------------------------------------------------------------


def test_expression_length_limit() -> None:
    longest = "1" + " + 1" * ((MAX_SOURCE_LENGTH - 1) // 4)
    assert len(longest) <= MAX_SOURCE_LENGTH
    assert parse(longest).evaluate({}) == (MAX_SOURCE_LENGTH - 1) // 4 + 1
    too_long = longest + " " * (MAX_SOURCE_LENGTH - len(longest) + 1)
    error = parse_error(too_long)
    assert error.offset == MAX_SOURCE_LENGTH
    assert f"the limit is {MAX_SOURCE_LENGTH}" in error.message


def test_nesting_depth_limit() -> None:
    assert parse("(" * MAX_DEPTH + "1" + ")" * MAX_DEPTH).evaluate({}) == 1
    error = parse_error("(" * (MAX_DEPTH + 1) + "1" + ")" * (MAX_DEPTH + 1))
    assert error.offset == MAX_DEPTH
    assert "nests more than" in error.message
    assert parse_error("not " * (MAX_DEPTH + 1) + "true").offset == 4 * MAX_DEPTH
    assert parse_error("-" * (MAX_DEPTH + 1) + "1").offset == MAX_DEPTH
    nested_calls = "len(" * (MAX_DEPTH + 1) + "'x'" + ")" * (MAX_DEPTH + 1)
    assert "nests more than" in parse_error(nested_calls).message


def test_long_flat_chains_are_not_nesting() -> None:
    chain = " and ".join(["true"] * 100)
    assert len(chain) <= MAX_SOURCE_LENGTH
    assert parse(chain).evaluate({}) is True


def test_integer_results_are_bounded() -> None:
    biggest = INT_LIMIT - 1
    assert ev(f"{biggest} + 0") == biggest
    assert "too large" in eval_error(f"{biggest} + 1")
    assert "too large" in eval_error(f"-{biggest} - 1")
    assert "too large" in eval_error("1000000000 * 1000000000")
    assert "too large" in eval_error("-x", {"x": INT_LIMIT})


def test_text_results_are_bounded() -> None:
    half = "x" * (MAX_STRING_LENGTH // 2)
    assert len(str(ev("a + a", {"a": half}))) == MAX_STRING_LENGTH
    assert "texts are limited to" in eval_error("a + a + 'y'", {"a": half})
    # upper() can lengthen text (ß → SS)
    assert "texts are limited to" in eval_error(
        "upper(a)", {"a": "ß" * (MAX_STRING_LENGTH // 2 + 1)}
    )


# -- printing back -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "1 + 2 * 3",
        "(1 + 2) * 3",
        "a - (b - c)",
        "(a - b) - c",
        "not (a and b) or c",
        "not a == b",
        "(not a) == b",
        "-(-x)",
        "-(a + b) * c",
        "x in [1, 'two', null, true] and y not in \"abc\"",
        "default(a.b, 'x \"quoted\" \\\\ \\n')",
        "(a == b) == c",
        "(a or b) and (c or d)",
        "x in (y + 'z')",
    ],
)
def test_unparse_round_trips(source: str) -> None:
    first = parse(source)
    printed = unparse(first.node)
    again = parse(printed)
    assert again.node == first.node
    assert unparse(again.node) == printed


def test_unparse_uses_the_fewest_parentheses() -> None:
    assert unparse(parse("((a)) + ((b * c))").node) == "a + b * c"
    assert unparse(parse("-(-5)").node) == "--5"
    assert unparse(parse("x in ['a']").node) == 'x in ["a"]'


def test_constants_compare_by_type_too() -> None:
    assert Constant(True) != Constant(1)
    assert Constant(0) != Constant(False)
    assert Constant("1") == Constant("1", 5, 3)  # the source span is not part of equality
    tree = parse("x in [1]").node
    assert tree == Membership(Name("x"), ListOf((Constant(1),)), negated=False)
    assert parse("a + 1").node == Sum(Name("a"), (("+", Constant(1)),))


def test_to_text() -> None:
    assert [to_text(v) for v in (None, True, False, 0, -5, "x")] == [
        "",
        "true",
        "false",
        "0",
        "-5",
        "x",
    ]


# -- templates -----------------------------------------------------------------------------


def test_template_substitutes_names_and_expressions() -> None:
    t = parse_template("Your reference is {booking.reference}; you tried {attempts + 1} times.")
    assert t.render(VARS) == "Your reference is AB12; you tried 3 times."
    assert t.names == frozenset({"booking.reference", "attempts"})
    assert t.text == "Your reference is {booking.reference}; you tried {attempts + 1} times."


def test_template_braces_and_conversions() -> None:
    assert parse_template("{{literal}} and }} {{").render({}) == "{literal} and } {"
    assert parse_template("[{nothing}] [{consent}] [{attempts}]").render(VARS) == "[] [true] [2]"
    assert parse_template("no placeholders").render({}) == "no placeholders"
    assert parse_template("").render({}) == ""
    # a `}` inside quotes does not close the placeholder
    assert parse_template("{'}' + choice + '{'}").render(VARS) == "}2{"
    assert parse_template("{ attempts }").render(VARS) == "2"


def test_template_parts() -> None:
    t = parse_template("a{x}b{{")
    assert [p if isinstance(p, str) else p.source for p in t.parts] == ["a", "x", "b{"]


def test_template_expression_offsets_are_relative_to_the_placeholder() -> None:
    t = parse_template("Hi {attempts + choice}!")
    placeholder = t.parts[1]
    assert isinstance(placeholder, expr.Expression)
    assert placeholder.source == "attempts + choice"
    assert placeholder.node.offset == 0 and placeholder.node.length == len("attempts + choice")
    with pytest.raises(EvalError, match=r"'\+' adds two numbers"):
        t.render(VARS)


@pytest.mark.parametrize(
    ("text", "offset", "fragment"),
    [
        ("Hello {name", 6, "'{' is never closed"),
        ("Hello {name. Bye", 6, "'{' is never closed"),
        ("Hello {}", 6, "empty placeholder"),
        ("Hello {  }", 6, "empty placeholder"),
        ("Hello } there", 6, "a single '}' must be written '}}'"),
        ("Hi {name, welcome}", 8, "expected an operator or '}' (the end of the placeholder)"),
        ("Hi {a + }", 8, "expected a value"),
        ("Hi {a {b}}", 6, "'{' cannot appear inside a placeholder"),
        ("Hi {lenght(x)}", 4, "unknown function 'lenght'"),
        ("Hi {'abc}", 4, "unterminated text"),
        ("ok {a} then {b ==}", 17, "expected a value"),
        ("{x} {y.}", 7, "expected a name after '.'"),
    ],
)
def test_template_errors_point_into_the_text(text: str, offset: int, fragment: str) -> None:
    with pytest.raises(ExprError) as info:
        parse_template(text)
    assert fragment in info.value.message
    assert info.value.offset == offset


def test_template_limits() -> None:
    with pytest.raises(ExprError) as info:
        parse_template("x" * (MAX_TEMPLATE_LENGTH + 1))
    assert info.value.offset == MAX_TEMPLATE_LENGTH
    long_placeholder = "{" + "1" + " + 1" * (MAX_SOURCE_LENGTH // 4) + "}"
    with pytest.raises(ExprError, match="the placeholder is"):
        parse_template("x " + long_placeholder)
    t = parse_template("{a}{a}{a}")
    with pytest.raises(EvalError, match="rendered text is longer"):
        t.render({"a": "y" * (MAX_STRING_LENGTH // 2)})
