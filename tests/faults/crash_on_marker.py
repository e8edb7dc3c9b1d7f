"""`tickcast up` with a decode step that raises on a marker record (provider `crash-marker`).

A stand-in for a bug that kills the dataflow's worker: only the cause is injected; what
follows — /healthz, the refused requests, the exit status — is the real code path.
Run as `python -m tests.faults.crash_on_marker up …` (the `tickcast` arguments).
"""

from __future__ import annotations

from typing import Any

from dataflows import decode
from dataflows.items import ConsumerError
from dataflows.progress import PartitionMark

MARKER = "crash-marker"
_real_on_batch = decode.DecodeLogic.on_batch


def _on_batch(self: Any, values: list[Any]) -> Any:
    for batch in values:
        if isinstance(batch, PartitionMark | ConsumerError):  # not records
            continue
        for _source, payload, _hint in batch:
            if isinstance(payload, dict) and payload.get("provider") == MARKER:
                raise RuntimeError("injected failure in the decode step (tests/faults/crash_on_marker.py)")
    return _real_on_batch(self, values)


if __name__ == "__main__":
    # Patched only in the process started as this module: a test that imports MARKER from here
    # must not get a patched decode step for the rest of its pytest process.
    from tickcast.app.cli import main

    decode.DecodeLogic.on_batch = _on_batch  # type: ignore[method-assign]
    main()
