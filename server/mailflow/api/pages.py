"""Cursor connections (Relay's pagination): a page of ``first`` items after a cursor.

A cursor is opaque to clients: base64 of "<connection>:<JSON sort key>" of the item it marks.
The next page holds the items whose sort key follows it, so a page stays in place when items
before it are added or removed.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Generic, TypeVar

import strawberry

from mailflow.errors import MailflowError

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 100
LONGEST_SHOWN_CURSOR = 60

Item = TypeVar("Item")
SortKey = tuple[str | int, ...]


class InvalidPageSizeError(MailflowError):
    """``first`` is not a page size the server hands out."""

    code = "INVALID_PAGE_SIZE"


class BadCursorError(MailflowError):
    """A cursor that this connection did not hand out."""

    code = "BAD_CURSOR"


FirstArgument = Annotated[
    int,
    strawberry.argument(
        description=f"How many items the page holds at most, 1 to {MAX_PAGE_SIZE}."
    ),
]
AfterArgument = Annotated[
    str | None,
    strawberry.argument(
        description="The endCursor of the previous page; the first page when omitted."
    ),
]


@strawberry.type(description="Where a page of a connection stands (Relay's PageInfo).")
class PageInfo:
    has_next_page: bool = strawberry.field(
        description="Whether items follow this page: ask for them with after: endCursor."
    )
    has_previous_page: bool = strawberry.field(
        description="Whether items come before this page, that is whether `after` was given."
    )
    start_cursor: str | None = strawberry.field(
        description="The cursor of the page's first item; null when the page is empty."
    )
    end_cursor: str | None = strawberry.field(
        description="The cursor of the page's last item; null when the page is empty."
    )


@dataclass(frozen=True, slots=True)
class Page(Generic[Item]):
    """The items of one page with their cursors, and whether more follow."""

    items: list[tuple[str, Item]]
    has_next_page: bool
    has_previous_page: bool

    def page_info(self) -> PageInfo:
        return PageInfo(
            has_next_page=self.has_next_page,
            has_previous_page=self.has_previous_page,
            start_cursor=self.items[0][0] if self.items else None,
            end_cursor=self.items[-1][0] if self.items else None,
        )


def check_page_size(first: int) -> int:
    """``first``, or InvalidPageSizeError when it is outside 1 to MAX_PAGE_SIZE."""
    if not 1 <= first <= MAX_PAGE_SIZE:
        raise InvalidPageSizeError(
            f"first is {first}: a page holds 1 to {MAX_PAGE_SIZE} items; ask for the next "
            "page with after: pageInfo.endCursor"
        )
    return first


def encode_cursor(connection: str, key: SortKey) -> str:
    """The cursor of the item with sort ``key`` in ``connection``."""
    text = f"{connection}:{json.dumps(list(key), separators=(',', ':'))}"
    return base64.b64encode(text.encode()).decode("ascii")


def decode_cursor(connection: str, cursor: str, shape: tuple[type, ...]) -> SortKey:
    """The sort key inside ``cursor``; BadCursorError unless ``connection`` handed it out."""
    try:
        text = base64.b64decode(cursor.encode("ascii"), validate=True).decode("utf-8")
        prefix, _, key_json = text.partition(":")
        key = json.loads(key_json) if prefix == connection else None
    except (UnicodeError, binascii.Error, ValueError, RecursionError):
        key = None
    if (not isinstance(key, list) or len(key) != len(shape)
            or not all(type(part) is kind for part, kind in zip(key, shape, strict=True))):
        raise bad_cursor(connection, cursor)
    return tuple(key)


def bad_cursor(connection: str, cursor: str) -> BadCursorError:
    """The error for a ``cursor`` that ``connection`` did not hand out."""
    return BadCursorError(
        f"{_shown(cursor)} is not a cursor of {connection}: pass after the endCursor "
        f"or a cursor of an edge of {connection}, exactly as this API returned it"
    )


def following(
    items: Sequence[Item], key: Callable[[Item], SortKey], after: SortKey | None
) -> list[Item]:
    """The items of ``items`` whose sort key follows ``after``; all when it is None."""
    return [item for item in items if after is None or key(item) > after]


def page_of(
    following: Sequence[Item],
    key: Callable[[Item], SortKey],
    connection: str,
    first: int,
    *,
    after_given: bool,
) -> Page[Item]:
    """The page of the first ``first`` items of ``following``, the items after the cursor.

    ``following`` may hold more items than the page: they only say that more follow.
    """
    return Page(
        items=[(encode_cursor(connection, key(item)), item) for item in following[:first]],
        has_next_page=len(following) > first,
        has_previous_page=after_given,
    )


def _shown(cursor: str) -> str:
    if len(cursor) <= LONGEST_SHOWN_CURSOR:
        return repr(cursor)
    return repr(cursor[:LONGEST_SHOWN_CURSOR] + "…")
