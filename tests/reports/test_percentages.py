from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailflow.reports.percentages import largest_remainder, one_decimal_percents

counts_with_mail = st.lists(
    st.integers(min_value=0, max_value=10**15), min_size=1, max_size=8
).filter(lambda counts: sum(counts) > 0)


@given(counts_with_mail)
def test_shares_always_add_up_to_the_units(counts: list[int]) -> None:
    assert sum(largest_remainder(counts, 1000)) == 1000


@given(counts_with_mail)
def test_each_share_is_its_exact_quota_rounded_down_or_up(counts: list[int]) -> None:
    total = sum(counts)
    for count, share in zip(counts, largest_remainder(counts, 1000), strict=True):
        exact = Fraction(count * 1000, total)
        assert exact - 1 < share < exact + 1


@given(counts_with_mail)
def test_a_larger_count_never_gets_a_smaller_share(counts: list[int]) -> None:
    shares = largest_remainder(counts, 1000)
    for first, first_share in zip(counts, shares, strict=True):
        for second, second_share in zip(counts, shares, strict=True):
            if first > second:
                assert first_share >= second_share


@given(counts_with_mail)
def test_one_decimal_percents_add_up_to_exactly_a_hundred(counts: list[int]) -> None:
    percents = one_decimal_percents(counts)
    tenths = [round(percent * 10) for percent in percents if percent is not None]
    assert len(tenths) == len(counts)
    assert sum(tenths) == 1000
    assert all(percent == round(percent, 1) for percent in percents if percent is not None)


def test_three_equal_counts_give_the_left_over_tenth_to_the_first() -> None:
    assert one_decimal_percents([1, 1, 1]) == [33.4, 33.3, 33.3]


def test_the_largest_remainders_get_the_left_over_tenths() -> None:
    # Exact tenths: 166.67, 333.33, 500.0 → floors 166, 333, 500, one tenth left for 166.67.
    assert largest_remainder([1, 2, 3], 1000) == [167, 333, 500]


def test_percents_are_null_when_there_is_no_mail() -> None:
    assert one_decimal_percents([0, 0, 0]) == [None, None, None]


def test_negative_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        largest_remainder([3, -1], 1000)
