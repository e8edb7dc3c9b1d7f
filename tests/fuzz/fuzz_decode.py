"""atheris (coverage-guided, libFuzzer) harness for the decoders; no input may make them raise.

One input is a small header and up to 16 payloads separated by the byte 0xFE (never part of
UTF-8 text, so mutations work on the JSON itself). For the batch it checks:

- `tickcast.records.decode_record` returns a Rejection or a record for every payload;
- `dataflows.tick_decode.decode_ticks` never raises, and every row it accepts is what
  `decode_record` makes of that payload (values and types);
- `dataflows.decode.DecodeLogic.on_batch` never raises and never has to catch a decoder
  fault (no `decoder_error` rejection).

A failed check raises, which atheris reports as a crash (and writes the input to
`-artifact_prefix`). CI runs it through tests/fuzz/test_fuzz_decode.py for a bounded number
of runs; by hand:

    python tests/fuzz/fuzz_decode.py -runs=200000 -max_len=4096 /tmp/corpus
"""

from __future__ import annotations

import sys

import atheris

# Coverage feedback from the pure-Python decoders. Numba compiles its kernels from their
# bytecode, which instrumentation would break: tick_decode is imported uninstrumented.
with atheris.instrument_imports(include=["tickcast.records"]):
    from tickcast.records import Rejection, decode_record
import numpy as np  # noqa: E402

from dataflows.items import Rows  # noqa: E402
from dataflows.tick_decode import decode_ticks  # noqa: E402

with atheris.instrument_imports(include=["dataflows.decode", "dataflows.sources"]):
    from dataflows.decode import DecodeConfig, DecodeLogic
    from dataflows.sources import RawBlock

SEPARATOR = b"\xfe"
HEADER = 4
NOW = 1_763_683_300_000
KEYS = (None, b"BTCUSDT", b"XRPUSDT", b"")


def envelope(header: bytes, n: int) -> tuple[np.ndarray, list[bytes | None] | None, int | None, int]:
    """(hints, keys, wall_ms, max_record_bytes) from the header bytes."""
    h = header.ljust(HEADER, b"\0")
    hints = np.array([-1 if (h[0] >> (i % 8)) & 1 else NOW - 1_000 * i for i in range(n)], np.int64)
    keys = None if h[1] & 1 else [KEYS[(h[1] >> 1) + i & 3] for i in range(n)]
    wall_ms = None if h[2] & 1 else NOW + (h[2] - 128) * 60_000
    max_record_bytes = 256 if h[3] & 1 else 65_536
    return hints, keys, wall_ms, max_record_bytes


def check(data: bytes) -> None:
    header, body = data[:HEADER], data[HEADER:]
    values = body.split(SEPARATOR)[:16]
    hints, keys, wall_ms, max_record_bytes = envelope(header, len(values))
    kw = {"max_record_bytes": max_record_bytes, "wall_ms": wall_ms}
    refs = []
    for i, value in enumerate(values):
        hint = int(hints[i])
        ref = decode_record(
            value,
            source="fuzz",
            now_ms=hint if hint >= 0 else NOW,
            default_ingest="now" if hint >= 0 else "event",
            key=None if keys is None else keys[i],
            **kw,
        )
        if not isinstance(ref, Rejection | tuple) or (isinstance(ref, Rejection) and not ref.reason):
            raise AssertionError(f"decode_record gave {ref!r} for {value!r}")
        refs.append(ref)
    fast = decode_ticks(values, hints, now_ms=NOW, keys=keys, **kw)
    rows = iter(fast.table.to_pylist())
    for i in np.flatnonzero(fast.ok).tolist():
        row, ref = next(rows), refs[i]
        if not (isinstance(ref, tuple) and ref[0] == "tick" and ref[1] == row):
            raise AssertionError(f"decode_ticks accepted {values[i]!r} as {row!r}; decode_record: {ref!r}")
        if {k: type(v) for k, v in row.items()} != {k: type(v) for k, v in ref[1].items()}:
            raise AssertionError(f"types differ for {values[i]!r}: {row!r} vs {ref[1]!r}")
    config = DecodeConfig(max_record_bytes=max_record_bytes, wall_clock=wall_ms is not None)
    block = RawBlock(["kafka:fuzz"], values, hints, keys=keys)
    out, _ = DecodeLogic(config, None).on_batch([block])
    for item in out:
        if isinstance(item, Rows) and item.table == "rejected_records":
            for row in item.rows:
                if row["reason"].startswith("decoder_error"):
                    raise AssertionError(f"the decode step caught a decoder fault: {row['reason']}")


def main() -> None:
    atheris.Setup(sys.argv, check)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
