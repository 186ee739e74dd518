"""Booking references: alphabet, check symbol, parsing, keypad and spoken forms."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hotline.booking import reference as refs

references = st.lists(
    st.sampled_from(refs.ALPHABET), min_size=refs.LENGTH, max_size=refs.LENGTH
).map(lambda body: "".join(body) + refs.check_symbol("".join(body)))


def test_alphabet_is_a_prime_number_of_distinct_symbols() -> None:
    n = len(refs.ALPHABET)
    assert len(set(refs.ALPHABET)) == n == 13
    assert all(n % d for d in range(2, n))


def test_alphabet_leaves_out_look_alikes_and_the_ee_letters() -> None:
    for symbol in "01OILBDPTVEQUSZXYNAHJCG":
        assert symbol not in refs.ALPHABET, symbol


def test_at_most_one_symbol_of_each_confusable_class() -> None:
    for group in refs.CONFUSABLE:
        inside = group & set(refs.ALPHABET)
        assert len(inside) <= 1, sorted(inside)


def test_every_symbol_has_one_keypad_key_carrying_it() -> None:
    letters_on = {
        "2": "ABC",
        "3": "DEF",
        "4": "GHI",
        "5": "JKL",
        "6": "MNO",
        "7": "PQRS",
        "8": "TUV",
        "9": "WXYZ",
    }
    for symbol in refs.ALPHABET:
        key = refs.KEYPAD[symbol]
        assert symbol == key or symbol in letters_on[key]


@given(references)
def test_made_references_are_valid_and_parse_to_themselves(ref: str) -> None:
    assert refs.is_valid(ref)
    assert refs.parse(ref) == ref
    assert refs.parse(" ".join(ref).lower()) == ref
    assert refs.parse(f"{ref[:4]}-{ref[4:]}") == ref


@given(references, st.integers(0, refs.LENGTH), st.sampled_from(refs.ALPHABET))
def test_any_single_wrong_symbol_is_caught(ref: str, position: int, symbol: str) -> None:
    if ref[position] == symbol:
        return
    wrong = ref[:position] + symbol + ref[position + 1 :]
    assert not refs.is_valid(wrong)
    with pytest.raises(refs.InvalidReference, match="check symbol"):
        refs.parse(wrong)


@given(references, st.integers(0, refs.LENGTH), st.integers(0, refs.LENGTH))
def test_any_swap_of_two_different_symbols_is_caught(ref: str, i: int, j: int) -> None:
    if ref[i] == ref[j]:
        return
    chars = list(ref)
    chars[i], chars[j] = chars[j], chars[i]
    assert not refs.is_valid("".join(chars))


def test_new_reference_uses_the_random_source_given() -> None:
    draws = iter([0, 1, 2, 8, 9, 12])
    ref = refs.new_reference(lambda n: next(draws))
    assert ref[:6] == "234FKW"
    assert refs.is_valid(ref)
    rng = random.Random(7)
    made = {refs.new_reference(rng.randrange) for _ in range(2000)}
    assert len(made) > 1990  # 13**6 references: collisions are rare
    assert all(refs.is_valid(r) for r in made)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "it is empty"),
        ("  - ", "it is empty"),
        ("FK37M90", "'0' is never used"),
        ("FK37MOR", "'O' is never used"),
        ("FK37M9", "expected 7 symbols, found 6"),
        ("FK37M9RR", "expected 7 symbols, found 8"),
    ],
)
def test_parse_names_the_problem(text: str, reason: str) -> None:
    with pytest.raises(refs.InvalidReference) as info:
        refs.parse(text)
    assert reason in str(info.value)


def test_keypad_form_and_back() -> None:
    body = "FK37M9"
    ref = body + refs.check_symbol(body)
    keys = refs.keypad_form(ref)
    assert keys[:6] == "353769"
    assert ref in refs.from_keypad(keys)
    for candidate in refs.from_keypad(keys):
        assert refs.is_valid(candidate)
        assert refs.keypad_form(candidate) == keys


def test_from_keypad_covers_every_reference_spelled_by_the_keys() -> None:
    keys = "3579357"
    spelled = {
        "".join(p)
        for p in itertools.product(
            *[[s for s in refs.ALPHABET if refs.KEYPAD[s] == k] for k in keys]
        )
    }
    assert set(refs.from_keypad(keys)) == {r for r in spelled if refs.is_valid(r)}


@pytest.mark.parametrize(
    "keys", ["", "123456", "2345678 ", "0234567", "23456781", "234567#", "23456789"]
)
def test_from_keypad_refuses_what_no_reference_spells(keys: str) -> None:
    assert refs.from_keypad(keys) == ()


def test_spoken_form_pauses_after_the_fourth_symbol() -> None:
    assert refs.spoken("FK37M9R") == "F K 3 7, M 9 R"


def test_check_symbol_refuses_bad_bodies() -> None:
    with pytest.raises(ValueError, match="expected 6 body symbols"):
        refs.check_symbol("FK3")
    with pytest.raises(ValueError, match="found 'A'"):
        refs.check_symbol("FK37MA")
