"""Synthetic identities: GB 11643-1999 check digits and internal consistency."""

from __future__ import annotations

import datetime as dt
import random
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from faceid.api.simulator.people import (
    REFERENCE_DATE,
    build_id_number,
    id_check_digit,
    is_valid_id_number,
    make_person,
    other_id_number,
    person_for_seed,
)

VALID_DATE = re.compile(r"^(\d{4})\.(\d{2})\.(\d{2})-(?:(\d{4})\.(\d{2})\.(\d{2})|长期)$")


def reference_check_digit(first17: str) -> str:
    """Independent ISO 7064 MOD 11-2: sum of d_i * 2^(17-i) mod 11, then (12 - s) mod 11."""
    total = sum(int(d) * (2 ** (17 - i) % 11) for i, d in enumerate(first17))
    value = (12 - total % 11) % 11
    return "X" if value == 10 else str(value)


@pytest.mark.parametrize("number", ["11010519491231002X", "440524188001010014"])
def test_standard_examples_are_valid(number: str) -> None:
    # Both numbers are the worked examples of GB 11643-1999.
    assert id_check_digit(number[:17]) == number[17]
    assert is_valid_id_number(number)


@given(st.text(alphabet="0123456789", min_size=17, max_size=17))
def test_check_digit_matches_reference(first17: str) -> None:
    assert id_check_digit(first17) == reference_check_digit(first17)


@given(st.text(alphabet="0123456789", min_size=17, max_size=17), st.integers(0, 16),
       st.integers(1, 9))
def test_single_digit_change_is_detected(first17: str, position: int, delta: int) -> None:
    if not is_valid_id_number(first17 + id_check_digit(first17)):
        return  # not a real date; the property is about the checksum only
    changed = list(first17)
    changed[position] = str((int(changed[position]) + delta) % 10)
    assert id_check_digit("".join(changed)) != id_check_digit(first17)


def test_invalid_numbers_rejected() -> None:
    assert not is_valid_id_number("110105194912310021")  # wrong check digit
    assert not is_valid_id_number("11010519491331002X")  # month 13
    assert not is_valid_id_number("11010519491231002")  # too short
    assert not is_valid_id_number("1101051949123100AX")


@pytest.mark.parametrize("seed", range(0, 2000, 7))
def test_person_is_consistent(seed: int) -> None:
    person = person_for_seed(seed)
    number = person.id_number
    assert is_valid_id_number(number)
    assert number[17] == reference_check_digit(number[:17])
    assert number[6:14] == person.birth.strftime("%Y%m%d")
    assert person.birthday == {"day": str(person.birth.day), "month": str(person.birth.month),
                               "year": str(person.birth.year)}
    assert person.gender == ("男" if int(number[16]) % 2 else "女")
    match = VALID_DATE.match(person.valid_date)
    assert match, person.valid_date
    start = dt.date(*(int(g) for g in match.groups()[:3]))
    assert start == person.valid_start
    assert start <= REFERENCE_DATE
    assert (start - person.birth).days >= 16 * 365  # cards are issued from age 16 here
    if person.valid_end is None:
        assert person.valid_date.endswith("长期")
    else:
        assert person.valid_end.year - start.year in (5, 10, 20)
    assert person.address.startswith(("北京市", "上海市", "广东省", "浙江省", "四川省", "湖北省",
                                      "江苏省", "陕西省", "山东省", "重庆市", "湖南省", "福建省",
                                      "河南省"))
    assert person.issued_by.endswith("局")
    assert 2 <= len(person.name) <= 4


def test_edited_number_is_still_valid_and_same_gender() -> None:
    rng = random.Random(3)
    for _ in range(200):
        person = make_person(rng)
        edited = other_id_number(rng, person)
        assert edited != person.id_number
        assert is_valid_id_number(edited)
        assert int(edited[16]) % 2 == int(person.id_number[16]) % 2


def test_build_id_number_round_trip() -> None:
    number = build_id_number("110105", dt.date(1949, 12, 31), 2)
    assert number == "11010519491231002X"


def test_deterministic() -> None:
    assert person_for_seed(42) == person_for_seed(42)
    assert person_for_seed(42) != person_for_seed(43)
