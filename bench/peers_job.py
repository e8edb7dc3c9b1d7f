"""The sentiment job every peer in `bench/peers.py` computes, as plain Python a user would write.

The job (docs/design.md §4 and §5, docs/decisions.md "Bars follow the join rule"), per symbol:

- a tick is *late* when ingest_ts − ts > max_latency_ms, and a *duplicate* when its id was
  accepted at ingest time t0 with ingest_ts − t0 ≤ dedup_window_ms (ticks in ingest order);
- an accepted tick enters the committed state at its *entry bar*
  m = the smallest multiple b of step with ts < b and ingest_ts ≤ b + grace;
- the symbol's watermark is the largest ingest_ts it accepted; bar b closes once
  b + grace ≤ watermark. Bars run from the smallest entry bar to the last closed one,
  one per step, empty ones included;
- bar b: sent_cnt, sent_score (trust-weighted mean), sent_pos_ratio over the ticks with
  ts ∈ [b − step, b) that entered at b; an empty bar carries the previous score and ratio
  forward (TRAINING_IMPUTE_SENTIMENT=ffill); sent_d1/sent_d5 = score minus the score 1/5
  bars back; sent_vol_30 = population std of the last 30 scores;
- EMA of window W at b: Σ wᵢ·e^{−(b − tsᵢ)/W}·scoreᵢ / Σ wᵢ·e^{−(b − tsᵢ)/W} over every tick
  that entered at or before b.

The per-message peers (naive Bytewax, Quix Streams) call `on_tick` with a JSON-friendly
dict as the symbol's state; Pathway aggregates each bar's ticks itself and calls
`scan_bars` once per symbol. Both end in `close_bar`, the bar arithmetic. Nothing here
imports tickcast: the peers must not borrow tickcast's code, only its settings' defaults.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

NAN = float("nan")
FIELDS = (
    "sent_score",
    "sent_cnt",
    "sent_pos_ratio",
    "sent_d1",
    "sent_d5",
    "sent_vol_30",
    "sent_ema_5m",
    "sent_ema_15m",
    "sent_ema_60m",
)
# The provider trust every implementation uses in the bench (SENTIMENT_PROVIDER_TRUST_JSON for
# tickcast): unequal weights, so a peer that forgot the weighting would not agree.
BENCH_TRUST = {"newsapi": 1.0, "cryptopanic": 0.8, "twitter": 0.5, "reddit": 0.3}


@dataclass(frozen=True)
class JobParams:
    """tickcast's defaults (tickcast/settings.py) for the settings the job reads."""

    step_ms: int = 60_000  # SENTIMENT_STEP_DEFAULT=1m
    windows_ms: tuple[float, ...] = (300_000.0, 900_000.0, 3_600_000.0)  # SENTIMENT_EMA_WINDOWS=5m,15m,60m
    dedup_window_ms: int = 120_000  # SENTIMENT_DEDUP_WINDOW_SEC=120
    max_latency_ms: int = 600_000  # SENTIMENT_MAX_LATENCY_MS
    grace_ms: int = 2_000  # FEATURE_JOIN_GRACE_MS
    vol_window: int = 30
    trust: Mapping[str, float] = field(default_factory=lambda: dict(BENCH_TRUST))

    def weight(self, provider: str) -> float:
        return self.trust.get(provider, 1.0)

    def to_json(self) -> str:
        return json.dumps({**self.__dict__, "trust": dict(self.trust)})

    @classmethod
    def from_json(cls, text: str) -> JobParams:
        raw = json.loads(text)
        raw["windows_ms"] = tuple(raw["windows_ms"])
        return cls(**raw)


def entry_bar(ts: int, ingest_ts: int, p: JobParams) -> int:
    """Smallest multiple b of step with ts < b and ingest_ts ≤ b + grace."""
    by_ts = (ts // p.step_ms + 1) * p.step_ms
    by_ingest = -((p.grace_ms - ingest_ts) // p.step_ms) * p.step_ms
    return max(by_ts, by_ingest)


def last_closed_bar(watermark: int, p: JobParams) -> int:
    return (watermark - p.grace_ms) // p.step_ms * p.step_ms


# --- the bar arithmetic --------------------------------------------------------------------


def new_series(p: JobParams) -> dict[str, Any]:
    """Carried state of the bar series: EMA sums referenced to `ref`, last scores, last ratio.

    JSON-friendly (a missing value is None), so Quix Streams can keep it in its state store.
    """
    n = len(p.windows_ms)
    return {"ref": None, "num": [0.0] * n, "den": [0.0] * n, "hist": [], "ratio": None}


def _nan(x: float | None) -> float:
    return NAN if x is None else x


def close_bar(
    series: dict[str, Any],
    bar_end: int,
    cnt: int,
    sw: float,
    sws: float,
    npos: int,
    num: Sequence[float],
    den: Sequence[float],
    p: JobParams,
) -> dict[str, Any]:
    """Close bar `bar_end` given its own ticks' sums and the EMA contributions of the ticks that
    entered at it (Σ w·e^{−(b−ts)/W}·score and Σ w·e^{−(b−ts)/W} per window); return the row."""
    ref = series["ref"]
    e_num, e_den = series["num"], series["den"]
    for k, w in enumerate(p.windows_ms):
        decay = 1.0 if ref is None else math.exp(-(bar_end - ref) / w)
        e_num[k] = e_num[k] * decay + num[k]
        e_den[k] = e_den[k] * decay + den[k]
    series["ref"] = bar_end
    hist: list[float | None] = series["hist"]
    prev = _nan(hist[-1]) if hist else NAN
    if cnt > 0:
        score = sws / sw if sw > 0.0 else NAN
        ratio = npos / cnt
    else:  # TRAINING_IMPUTE_SENTIMENT=ffill
        score, ratio = prev, _nan(series["ratio"])
    d5 = score - _nan(hist[-5]) if len(hist) >= 5 else NAN
    hist.append(None if math.isnan(score) else score)
    if len(hist) > p.vol_window:
        del hist[0]
    series["ratio"] = None if math.isnan(ratio) else ratio
    known = [h for h in hist if h is not None]
    if len(known) >= 2:
        mu = sum(known) / len(known)
        vol = math.sqrt(sum((h - mu) ** 2 for h in known) / len(known))
    else:
        vol = NAN
    row = {
        "bar_end": bar_end,
        "sent_score": score,
        "sent_cnt": cnt,
        "sent_pos_ratio": ratio,
        "sent_d1": score - prev,
        "sent_d5": d5,
    }
    row["sent_vol_30"] = vol
    for k, name in enumerate(("sent_ema_5m", "sent_ema_15m", "sent_ema_60m")):
        row[name] = e_num[k] / e_den[k] if e_den[k] > 0.0 else NAN
    return row


# --- per message (naive Bytewax, Quix Streams) ----------------------------------------------


def new_state(p: JobParams) -> dict[str, Any]:
    """One symbol's state: the dedup memory (id -> ingest time accepted), pending ticks
    [ts, ingest_ts, score, polarity, weight], the watermark, the next bar to close, the series."""
    return {"seen": {}, "pending": [], "wm": None, "next": None, "series": new_series(p)}


def on_tick(state: dict[str, Any], tick: Mapping[str, Any], p: JobParams) -> list[dict[str, Any]]:
    """Fold one tick (in ingest order) into the symbol's state; return the bars it closed."""
    ts, ingest = tick["ts"], tick["ingest_ts"]
    if ingest - ts > p.max_latency_ms:
        return []  # late
    seen = state["seen"]
    tick_id = tick["id"]
    accepted_at = seen.get(tick_id)
    if accepted_at is not None and ingest - accepted_at <= p.dedup_window_ms:
        return []  # duplicate
    seen[tick_id] = ingest
    wm = state["wm"] = ingest if state["wm"] is None else max(state["wm"], ingest)
    if len(seen) > 256:  # bounded: ids older than the window can no longer match
        state["seen"] = {k: t for k, t in seen.items() if t >= wm - p.dedup_window_ms}
    state["pending"].append([ts, ingest, tick["score"], tick["polarity"], p.weight(tick["provider"])])
    return close_through(state, last_closed_bar(wm, p), p)


def close_through(state: dict[str, Any], last: int, p: JobParams) -> list[dict[str, Any]]:
    """Close every bar up to `last`; each pending tick goes to its entry bar (or the next open bar)."""
    pending = state["pending"]
    floor = state["next"]
    if floor is None:
        if not pending:
            return []
        floor = min(entry_bar(t[0], t[1], p) for t in pending)
    if last < floor:
        return []
    movers: dict[int, list[list[Any]]] = {}
    keep = []
    for t in pending:
        m = max(entry_bar(t[0], t[1], p), floor)
        if m <= last:
            movers.setdefault(m, []).append(t)
        else:
            keep.append(t)
    state["pending"] = keep
    rows = []
    n = len(p.windows_ms)
    for bar_end in range(floor, last + p.step_ms, p.step_ms):
        cnt = npos = 0
        sw = sws = 0.0
        num, den = [0.0] * n, [0.0] * n
        for ts, _ingest, score, pol, w in movers.get(bar_end, ()):
            if ts >= bar_end - p.step_ms:
                cnt += 1
                sw += w
                sws += w * score
                npos += pol == 1
            for k, win in enumerate(p.windows_ms):
                c = w * math.exp(-(bar_end - ts) / win)
                num[k] += c * score
                den[k] += c
        rows.append(close_bar(state["series"], bar_end, cnt, sw, sws, npos, num, den, p))
    state["next"] = last + p.step_ms
    return rows


# --- per symbol, from bar aggregates (Pathway) ----------------------------------------------


def scan_bars(bars: Iterable[Sequence[Any]], p: JobParams) -> list[dict[str, Any]]:
    """One symbol's rows from its per-entry-bar aggregates
    (bar_end, cnt, sw, sws, npos, max_ingest, num_1..num_K, den_1..den_K), in any order:
    bars from the smallest entry bar to the last one the watermark closed, empty ones filled."""
    by_end = {int(b[0]): b for b in bars}
    if not by_end:
        return []
    n = len(p.windows_ms)
    first = min(by_end)
    last = last_closed_bar(max(int(b[5]) for b in by_end.values()), p)
    series = new_series(p)
    rows = []
    zeros = [0.0] * n
    for bar_end in range(first, last + p.step_ms, p.step_ms):
        b = by_end.get(bar_end)
        if b is None:
            rows.append(close_bar(series, bar_end, 0, 0.0, 0.0, 0, zeros, zeros, p))
        else:
            num, den = b[6 : 6 + n], b[6 + n : 6 + 2 * n]
            rows.append(close_bar(series, bar_end, int(b[1]), b[2], b[3], int(b[4]), num, den, p))
    return rows


def json_row(symbol: str, row: Mapping[str, Any]) -> dict[str, Any]:
    """A bar row as JSON: NaN as null (JSON has no NaN)."""
    out: dict[str, Any] = {"symbol": symbol}
    for key, value in row.items():
        out[key] = None if isinstance(value, float) and math.isnan(value) else value
    return out
