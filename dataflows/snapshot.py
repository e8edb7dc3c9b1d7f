"""State snapshots for Bytewax recovery.

Bytewax asks every touched key for a snapshot at each epoch end and pickles it. A
pickle of the state is already an immutable copy (cheaper than `copy.deepcopy`),
and without a recovery store the snapshot is thrown away, so it is skipped.
"""

from __future__ import annotations

import pickle
from typing import Any


def freeze(state: Any, *, enabled: bool) -> bytes | None:
    return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL) if enabled else None


def thaw(snapshot: Any) -> Any:
    return pickle.loads(snapshot) if isinstance(snapshot, bytes) else snapshot
