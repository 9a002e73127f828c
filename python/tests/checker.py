"""Checks an event log (helpers/events.py): nobody held beside a writer,
and the grants came in the expected order."""

from __future__ import annotations

from collections.abc import Sequence


def violations(log: Sequence[tuple[str, str, str]]) -> list[str]:
    """Every moment the log shows a writer beside another holder, a release
    without a grant, a holder never released, or readers that waited in
    vain for each other."""
    found: list[str] = []
    holding: dict[str, str] = {}
    for i, (event, tag, mode) in enumerate(log):
        if event == "grant":
            if tag in holding:
                found.append(f"line {i + 1}: {tag} granted twice")
            others = dict(holding)
            if mode == "write" and others:
                found.append(f"line {i + 1}: writer {tag} granted while {sorted(others)} held")
            writers = [t for t, m in others.items() if m == "write"]
            if mode == "read" and writers:
                found.append(f"line {i + 1}: reader {tag} granted while writer {writers} held")
            holding[tag] = mode
        elif event == "release":
            if holding.pop(tag, None) is None:
                found.append(f"line {i + 1}: {tag} released without a grant")
        elif event == "stranded":
            found.append(f"line {i + 1}: {tag} held alone: the readers granted with it never came")
    if holding:
        found.append(f"never released: {sorted(holding)}")
    return found


def grant_order(log: Sequence[tuple[str, str, str]]) -> list[str]:
    return [tag for event, tag, _ in log if event == "grant"]


def matches(order: Sequence[str], groups: Sequence[Sequence[str]]) -> bool:
    """Whether `order` is `groups` in sequence, any order within a group
    (readers granted together)."""
    at = 0
    for group in groups:
        if sorted(order[at : at + len(group)]) != sorted(group):
            return False
        at += len(group)
    return at == len(order)
