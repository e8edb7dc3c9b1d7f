"""Test helper: what a source partition emits until it ends."""

from __future__ import annotations

from typing import Any


def drain(part: Any) -> list[Any]:
    """The batches (without their partition keys) of every `next_batch` until StopIteration."""
    batches: list[Any] = []
    while True:
        try:
            batches += [batch for _, batch in part.next_batch()]
        except StopIteration:
            return batches
