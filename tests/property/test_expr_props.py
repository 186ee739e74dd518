"""Hypothesis: expression trees print and parse back equal; any text fails to parse with
nothing but ExprError (its offset inside the text); evaluation of any tree with any
variables yields a value within the limits or an EvalError; templates escape and render."""

from __future__ import annotations

from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from hotline.ivr.expr import (
    INT_LIMIT,
    KEYWORDS,
    MAX_SOURCE_LENGTH,
    MAX_STRING_LENGTH,
    Call,
    Compare,
    Constant,
    EvalError,
    ExprError,
    ListOf,
    Logic,
    Membership,
    Name,
    Negate,
    Node,
    Not,
    Product,
    Sum,
    Value,
    parse,
    parse_template,
    unparse,
)

TREES = settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings(max_examples=500)

# the documented functions and their arities
ARITY = {
    "len": 1,
    "lower": 1,
    "upper": 1,
    "digits": 1,
    "substr": 3,
    "int": 1,
    "str": 1,
    "empty": 1,
    "startswith": 2,
    "age": 2,
    "default": 2,
}

segment = st.from_regex(r"[a-z_][a-z0-9_]{0,5}", fullmatch=True).filter(lambda s: s not in KEYWORDS)
names = st.lists(segment, min_size=1, max_size=3).map(".".join)
texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
values: st.SearchStrategy[Value] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-1000, 1000),
    st.integers(-(INT_LIMIT - 1), INT_LIMIT - 1),
    texts,
    st.sampled_from(["1980-05-17", "2025-06-15", "0412345678", "42", ""]),
)
constants = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(0, INT_LIMIT - 1),
    texts,
).map(Constant)
atoms: st.SearchStrategy[Node] = st.one_of(constants, names.map(Name))


def _compound(children: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    return st.one_of(
        children.map(Negate),
        children.map(Not),
        st.builds(
            Sum,
            children,
            st.lists(st.tuples(st.sampled_from(["+", "-"]), children), min_size=1, max_size=3).map(
                tuple
            ),
        ),
        st.builds(
            Product,
            children,
            st.lists(
                st.tuples(st.sampled_from(["*", "//", "%"]), children), min_size=1, max_size=3
            ).map(tuple),
        ),
        st.builds(
            Logic,
            st.sampled_from(["and", "or"]),
            st.lists(children, min_size=2, max_size=3).map(tuple),
        ),
        st.builds(Compare, st.sampled_from(["==", "!=", "<", "<=", ">", ">="]), children, children),
        st.builds(
            Membership,
            children,
            st.one_of(children, st.lists(children, max_size=3).map(lambda xs: ListOf(tuple(xs)))),
            st.booleans(),
        ),
        st.sampled_from(sorted(ARITY)).flatmap(
            lambda f: st.lists(children, min_size=ARITY[f], max_size=ARITY[f]).map(
                lambda args: Call(f, tuple(args))
            )
        ),
    )


trees: st.SearchStrategy[Node] = st.recursive(atoms, _compound, max_leaves=10)


def _names_in(node: Node) -> set[str]:
    found: set[str] = set()
    stack: list[Node] = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, Name):
            found.add(n.name)
        elif isinstance(n, Negate | Not):
            stack.append(n.operand)
        elif isinstance(n, Sum | Product):
            stack.append(n.first)
            stack.extend(o for _, o in n.rest)
        elif isinstance(n, Logic):
            stack.extend(n.operands)
        elif isinstance(n, Compare):
            stack.extend((n.left, n.right))
        elif isinstance(n, Membership):
            stack.extend((n.item, n.container))
        elif isinstance(n, ListOf):
            stack.extend(n.items)
        elif isinstance(n, Call):
            stack.extend(n.args)
    return found


def _parse_printed(node: Node) -> tuple[str, Node]:
    printed = unparse(node)
    assume(len(printed) <= MAX_SOURCE_LENGTH)
    try:
        parsed = parse(printed)
    except ExprError as error:
        assume("nests more than" not in error.message)  # a deep tree: over the limit
        raise
    return printed, parsed.node


@TREES
@given(trees)
def test_printed_trees_parse_back_equal(node: Node) -> None:
    printed, again = _parse_printed(node)
    assert again == node
    assert unparse(again) == printed
    assert parse(printed).names == frozenset(_names_in(node))


@TREES
@given(trees, st.data())
def test_evaluation_yields_a_bounded_value_or_eval_error(node: Node, data: st.DataObject) -> None:
    printed, _ = _parse_printed(node)
    compiled = parse(printed)
    known = sorted(compiled.names)
    variables = {n: data.draw(values, label=n) for n in known if data.draw(st.booleans())}
    try:
        result = compiled.evaluate(variables)
    except EvalError as error:
        assert error.message
        event("EvalError")
        return
    event(f"evaluated to {type(result).__name__}")
    assert result is None or isinstance(result, str | int)
    if type(result) is int:
        # a bare variable or constant passes through unchanged; computed numbers are bounded
        assert -INT_LIMIT < result < INT_LIMIT
    if isinstance(result, str) and not isinstance(node, Name | Constant):
        texts_given = [v for v in variables.values() if isinstance(v, str)]
        assert len(result) <= max([MAX_STRING_LENGTH, *map(len, texts_given)])


EXPRESSION_ALPHABET = "abcxyz_.0123456789 ()[],'\"\\=!<>+-*/%&|{}\n" + "éß"
keywordy = st.lists(
    st.one_of(
        st.sampled_from(
            [
                "and",
                "or",
                "not",
                "in",
                "true",
                "false",
                "null",
                "len(",
                "substr(",
                "age(",
                "==",
                "//",
            ]
        ),
        st.text(EXPRESSION_ALPHABET, max_size=4),
    ),
    max_size=12,
).map(" ".join)


@FUZZ
@given(st.one_of(st.text(max_size=60), st.text(EXPRESSION_ALPHABET, max_size=60), keywordy))
def test_any_text_parses_or_raises_expr_error_inside_it(source: str) -> None:
    try:
        compiled = parse(source)
    except ExprError as error:
        assert 0 <= error.offset <= len(source)
        assert error.length >= 0 and error.offset + error.length <= len(source)
        assert error.message
        event("ExprError")
        return
    event("parsed")
    assert compiled.source == source
    # whatever parses prints to something that parses to the same tree
    assert parse(unparse(compiled.node)).node == compiled.node


@FUZZ
@given(st.one_of(st.text(max_size=60), st.text(EXPRESSION_ALPHABET + "{}{}", max_size=60)))
def test_any_template_parses_or_raises_expr_error_inside_it(text: str) -> None:
    try:
        template = parse_template(text)
    except ExprError as error:
        assert 0 <= error.offset <= len(text)
        assert error.offset + error.length <= len(text)
        return
    try:
        rendered = template.render({})
    except EvalError:
        return
    assert len(rendered) <= MAX_STRING_LENGTH


@FUZZ
@given(st.text(max_size=80))
def test_escaped_text_renders_to_itself(text: str) -> None:
    escaped = text.replace("{", "{{").replace("}", "}}")
    template = parse_template(escaped)
    assert template.names == frozenset()
    assert template.render({}) == text


literal_pieces = st.text(max_size=10).map(lambda s: ("text", s))
placeholder_pieces = names.map(lambda n: ("name", n))


@TREES
@given(st.lists(st.one_of(literal_pieces, placeholder_pieces), max_size=8), st.data())
def test_templates_substitute_each_placeholder(
    pieces: list[tuple[str, str]], data: st.DataObject
) -> None:
    text = "".join(
        "{" + piece + "}" if kind == "name" else piece.replace("{", "{{").replace("}", "}}")
        for kind, piece in pieces
    )
    template = parse_template(text)
    assert template.names == frozenset(piece for kind, piece in pieces if kind == "name")
    variables = {n: data.draw(values, label=n) for n in sorted(template.names)}
    expected = "".join(
        _to_text(variables[piece]) if kind == "name" else piece for kind, piece in pieces
    )
    assert template.render(variables) == expected


def _to_text(value: Value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# -- differential: well-typed trees agree with Python's own integers and booleans ----------

INT_VARS = ["a", "b", "c.d"]
int_atoms: st.SearchStrategy[Node] = st.one_of(
    st.integers(0, 10**6).map(Constant), st.sampled_from(INT_VARS).map(Name)
)


def _int_compound(children: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    return st.one_of(
        children.map(Negate),
        st.builds(
            Sum,
            children,
            st.lists(st.tuples(st.sampled_from(["+", "-"]), children), min_size=1, max_size=3).map(
                tuple
            ),
        ),
        st.builds(
            Product,
            children,
            st.lists(
                st.tuples(st.sampled_from(["*", "//", "%"]), children), min_size=1, max_size=3
            ).map(tuple),
        ),
    )


int_trees = st.recursive(int_atoms, _int_compound, max_leaves=8)


class _Refused(Exception):
    pass


def _reference_int(node: Node, env: dict[str, int]) -> int:
    def bounded(n: int) -> int:
        if not -INT_LIMIT < n < INT_LIMIT:
            raise _Refused
        return n

    if isinstance(node, Constant):
        assert type(node.value) is int
        return node.value
    if isinstance(node, Name):
        return env[node.name]
    if isinstance(node, Negate):
        return bounded(-_reference_int(node.operand, env))
    assert isinstance(node, Sum | Product)
    acc = _reference_int(node.first, env)
    for op, operand in node.rest:
        right = _reference_int(operand, env)
        if op in ("//", "%") and right == 0:
            raise _Refused
        acc = bounded(
            {
                "+": lambda x, y: x + y,
                "-": lambda x, y: x - y,
                "*": lambda x, y: x * y,
                "//": lambda x, y: x // y,
                "%": lambda x, y: x % y,
            }[op](acc, right)
        )
    return acc


int_env = st.fixed_dictionaries(
    {name: st.one_of(st.integers(-50, 50), st.integers(-(10**12), 10**12)) for name in INT_VARS}
)


@TREES
@given(int_trees, int_env)
def test_integer_arithmetic_agrees_with_python(node: Node, env: dict[str, int]) -> None:
    printed, _ = _parse_printed(node)
    compiled = parse(printed)
    try:
        expected = _reference_int(node, env)
    except _Refused:
        event("refused: division by zero or too large")
        try:
            compiled.evaluate(env)
        except EvalError:
            return
        raise AssertionError(f"{printed} should fail with {env}") from None
    event("computed")
    assert compiled.evaluate(env) == expected


def _bool_compound(children: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    return st.one_of(
        children.map(Not),
        st.builds(
            Logic,
            st.sampled_from(["and", "or"]),
            st.lists(children, min_size=2, max_size=3).map(tuple),
        ),
    )


comparisons = st.builds(
    Compare, st.sampled_from(["==", "!=", "<", "<=", ">", ">="]), int_atoms, int_atoms
)
bool_trees = st.recursive(
    st.one_of(comparisons, st.booleans().map(Constant)), _bool_compound, max_leaves=8
)


def _reference_bool(node: Node, env: dict[str, int]) -> bool:
    if isinstance(node, Constant):
        assert isinstance(node.value, bool)
        return node.value
    if isinstance(node, Not):
        return not _reference_bool(node.operand, env)
    if isinstance(node, Logic):
        results = (_reference_bool(o, env) for o in node.operands)
        return all(results) if node.op == "and" else any(results)
    assert isinstance(node, Compare)
    left, right = _reference_int(node.left, env), _reference_int(node.right, env)
    return {
        "==": left == right,
        "!=": left != right,
        "<": left < right,
        "<=": left <= right,
        ">": left > right,
        ">=": left >= right,
    }[node.op]


@TREES
@given(bool_trees, int_env)
def test_conditions_agree_with_python(node: Node, env: dict[str, int]) -> None:
    printed, _ = _parse_printed(node)
    assert parse(printed).evaluate_bool(env) is _reference_bool(node, env)
