"""Keyset pages filtered by the policy before the cut: every visible item once, in order, pages full whatever the
hidden items between them; cursors this API did not issue are refused."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from governance.decisions.paging import BATCH, PageError, visible_page


@dataclass(frozen=True)
class Item:
    id: str
    created_at: datetime
    shown: bool


BASE = datetime(2026, 1, 1, tzinfo=UTC)
ITEMS = [Item(f"i{n:04d}", BASE - timedelta(seconds=n // 2), n % 7 == 3) for n in range(3 * BATCH + 17)]


def _fetch(before: tuple[datetime, str] | None, limit: int) -> list[Item]:
    ordered = sorted(ITEMS, key=lambda i: (-i.created_at.timestamp(), i.id))
    if before is not None:
        ordered = [i for i in ordered if i.created_at < before[0] or (i.created_at == before[0] and i.id > before[1])]
    return ordered[:limit]


def _visible(batch: Sequence[Item]) -> list[Item]:
    return [i for i in batch if i.shown]


@pytest.mark.parametrize("first", [1, 5, 40, 1000])
def test_pages_hold_every_visible_item_once_in_order(first: int) -> None:
    expected = [i.id for i in _fetch(None, 10**6) if i.shown]
    seen: list[str] = []
    after = None
    while True:
        page = visible_page(_fetch, _visible, lambda i: (i.created_at, i.id), first, after)
        assert len(page.items) == first or not page.has_next
        seen += [i.id for i in page.items]
        if not page.has_next:
            break
        after = page.end_cursor
    assert seen == expected


def test_bad_cursor_and_page_size_are_refused() -> None:
    with pytest.raises(PageError, match="not a cursor this API issued"):
        visible_page(_fetch, _visible, lambda i: (i.created_at, i.id), 5, "bm90LW91cnM=")
    with pytest.raises(PageError, match="between 1 and 1000"):
        visible_page(_fetch, _visible, lambda i: (i.created_at, i.id), 0, None)
