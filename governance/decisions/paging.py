"""Pages of alerts and proposals as a subject may see them: the policy's filter runs BEFORE the page is cut, so a
page holds `first` visible items whatever the hidden ones in between, and its cursor is the position (created time,
id) of its last item — keyset paging, stable while new items arrive at the head."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from governance.errors import GovernanceError

T = TypeVar("T")
MAX_PAGE = 1000
BATCH = 200
MAX_SCANNED = 20_000  # stored items one page request looks at before it returns what it found (with a cursor)
_PREFIX = "decisions:"


class PageError(GovernanceError):
    """A page request the API cannot answer: a cursor it did not issue, a page size out of range."""


@dataclass(frozen=True)
class Page(Generic[T]):
    """Items a subject may see, in order, and where the next page starts."""

    items: list[T]
    end_cursor: str | None
    has_next: bool


def encode_position(created_at: datetime, item_id: str) -> str:
    """The opaque cursor of an item's position."""
    return base64.urlsafe_b64encode(f"{_PREFIX}{created_at.isoformat()}|{item_id}".encode()).decode("ascii")


def decode_position(cursor: str) -> tuple[datetime, str]:
    """The position a cursor stands for; PageError when it is not one of ours."""
    try:
        text = base64.urlsafe_b64decode(cursor.encode("ascii")).decode("utf-8")
        if not text.startswith(_PREFIX):
            raise ValueError(text)
        moment, item_id = text[len(_PREFIX) :].split("|", 1)
        return datetime.fromisoformat(moment), item_id
    except (ValueError, UnicodeError, binascii.Error):
        raise PageError(f"`after` cursor {cursor[:60]!r} is not a cursor this API issued") from None


def visible_page(
    fetch: Callable[[tuple[datetime, str] | None, int], Sequence[T]],
    visible: Callable[[Sequence[T]], list[T]],
    position: Callable[[T], tuple[datetime, str]],
    first: int,
    after: str | None,
) -> Page[T]:
    """`first` items `visible` keeps (as it returns them: masked), fetched in batches from `fetch(before, limit)`
    after the cursor `after`."""
    if not 1 <= first <= MAX_PAGE:
        raise PageError(f"`first` must be between 1 and {MAX_PAGE}, got {first}")
    before = decode_position(after) if after else None
    kept: list[T] = []
    scanned = 0
    while True:
        batch = list(fetch(before, BATCH))
        scanned += len(batch)
        if not batch:
            return Page(kept, encode_position(*position(kept[-1])) if kept else after, False)
        shown = {position(item): item for item in visible(batch)}  # masked copies, by their position
        for item in batch:
            seen = shown.get(position(item))
            if seen is None:
                continue
            if len(kept) == first:  # one more visible item exists: the page is full and has a next one
                return Page(kept, encode_position(*position(kept[-1])), True)
            kept.append(seen)
        before = position(batch[-1])
        if len(batch) < BATCH:
            return Page(kept, encode_position(*position(kept[-1])) if kept else after, False)
        if scanned >= MAX_SCANNED:  # a long stretch of hidden items: stop here, the next page goes on after it
            return Page(kept, encode_position(*before), True)
