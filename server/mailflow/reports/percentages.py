"""Percentages that add up: largest-remainder rounding."""

from __future__ import annotations

from collections.abc import Sequence

TENTHS_OF_A_HUNDRED = 1000


def largest_remainder(counts: Sequence[int], units: int) -> list[int]:
    """Split ``units`` into whole shares in proportion to ``counts``, adding up to ``units``.

    Each share starts as the whole part of its exact quota; the units left over go one each
    to the largest remainders, ties to the earlier count, so the answer is deterministic and
    a larger count never gets a smaller share.

    >>> largest_remainder([1, 1, 1], 1000)
    [334, 333, 333]
    """
    if any(count < 0 for count in counts):
        raise ValueError(f"counts must not be negative, got {list(counts)}")
    total = sum(counts)
    if total == 0:
        raise ValueError("there is nothing to split: every count is 0")

    quotas = [divmod(count * units, total) for count in counts]
    shares = [whole for whole, _ in quotas]
    left_over = units - sum(shares)
    by_remainder = sorted(range(len(counts)), key=lambda index: (-quotas[index][1], index))
    for index in by_remainder[:left_over]:
        shares[index] += 1
    return shares


def one_decimal_percents(counts: Sequence[int]) -> list[float | None]:
    """Each count's percent of their sum with one decimal place, adding up to exactly 100.0.

    Every percent is None when the counts sum to 0: a share of nothing is unknown, not 0.
    """
    if sum(counts) == 0:
        return [None] * len(counts)
    return [tenths / 10 for tenths in largest_remainder(counts, TENTHS_OF_A_HUNDRED)]
