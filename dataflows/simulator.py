"""Deterministic market + sentiment simulator (DESIGN §3 payloads).

A hidden per-symbol *mood* m(t) — an Ornstein-Uhlenbeck process, unit stationary
variance, time constant `MOOD_TAU_S` — drives both streams:

- sentiment ticks (Poisson times, ms resolution) report
  ``score = clip(tanh(SCORE_GAIN·m(ts) + noise_provider·ε), -1, 1)``;
- the 1m candle opening at T has log return
  ``r = σ_T·(k·m(T) + drift + ε)``, k = `signal` (−`signal` and drift =
  `REGIME_DRIFT` after `regime_shift_ms`), σ_T the per-minute volatility (a
  log-OU around `base_vol`).

So the sentiment seen *before* T carries information about the candle after T, and
P(up | m) = Φ(k·m + drift) does not depend on σ.

Generation runs in one-hour chunks with carried per-symbol state, so an unbounded
run (``hours=inf``) is possible and a short run is a prefix (in event time) of a
longer one. Each symbol draws from its own random streams — one for the market
and mood, one for faults (late, duplicate, malformed) — so changing a fault knob
or the symbol count leaves every other symbol's market untouched.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "MALFORMED_KINDS",
    "SimConfig",
    "generate",
    "generate_labeled",
    "live_records",
    "symbol_names",
    "write_files",
]

MINUTE_MS = 60_000
CHUNK_MS = 3_600_000  # generation step; fixed so results never depend on `hours`
MOOD_TAU_S = 30 * 60.0
SCORE_GAIN = 1.0
REGIME_DRIFT = -0.3  # after the shift, P(up) at m = 0 falls to Φ(-0.3) ≈ 0.38
VOL_TAU_MIN = 120.0
VOL_LOG_SD = 0.35  # σ mostly within base_vol·[0.5, 2]
LATE_MIN_MS, LATE_MAX_MS = 600_001, 1_200_000
DUP_DELAY_MS = (200, 60_000)  # inside SENTIMENT_DEDUP_WINDOW_SEC (120 s)

# name, start price, base per-minute vol, mean volume per minute (base asset)
_REAL = (
    ("BTCUSDT", 91_000.0, 0.0008, 40.0),
    ("ETHUSDT", 3_000.0, 0.0010, 700.0),
    ("XRPUSDT", 2.1, 0.0012, 400_000.0),
    ("SOLUSDT", 140.0, 0.0013, 6_000.0),
    ("ADAUSDT", 0.45, 0.0013, 500_000.0),
)
PROVIDER_NOISE = {"newsapi": 0.35, "cryptopanic": 0.5, "twitter": 0.8, "reddit": 1.0}
PROVIDER_SHARE = {"newsapi": 0.2, "cryptopanic": 0.2, "twitter": 0.35, "reddit": 0.25}
_DEFAULT_NOISE, _DEFAULT_SHARE = 0.6, 0.25

TICK_MALFORMED = ("missing_field", "score_out_of_range", "nan_score", "string_number")
CANDLE_MALFORMED = ("missing_field", "string_number", "high_below_low", "unknown_interval")
MALFORMED_KINDS = tuple(dict.fromkeys(TICK_MALFORMED + CANDLE_MALFORMED))


@dataclass(frozen=True)
class SimConfig:
    """Simulation knobs; every rate is a share in [0, 1]."""

    symbols: int = 5
    hours: float = 24.0
    seed: int = 0
    start_ms: int = 1_763_683_200_000
    interval: str = "1m"
    providers: tuple[str, ...] = ("newsapi", "twitter", "reddit", "cryptopanic")
    ticks_per_minute: float = 4.0
    signal: float = 0.75  # oracle EWM feature: ROC-AUC ≈ 0.70–0.74 over 20 symbols × 24 h
    duplicate_rate: float = 0.0
    late_rate: float = 0.0
    malformed_rate: float = 0.0
    outage: tuple[str, int, int] | None = None
    regime_shift_ms: int | None = None

    def __post_init__(self) -> None:
        _check(self.symbols >= 1, "symbols", "an int >= 1", self.symbols)
        _check(self.hours > 0, "hours", "a float > 0 (inf runs forever)", self.hours)
        _check(self.start_ms % MINUTE_MS == 0, "start_ms", "a multiple of 60000", self.start_ms)
        _check(self.interval == "1m", "interval", "'1m'", self.interval)
        _check(len(self.providers) > 0, "providers", "a non-empty tuple", self.providers)
        _check(self.ticks_per_minute >= 0, "ticks_per_minute", "a float >= 0", self.ticks_per_minute)
        for name in ("duplicate_rate", "late_rate", "malformed_rate"):
            rate = getattr(self, name)
            _check(0.0 <= rate <= 1.0, name, "a float in [0, 1]", rate)
        if self.outage is not None:
            provider, lo, hi = self.outage
            _check(
                provider in self.providers and lo < hi,
                "outage",
                f"(provider in {self.providers}, start_ms, end_ms > start_ms)",
                self.outage,
            )


def _check(ok: bool, name: str, expected: str, got: object) -> None:
    if not ok:
        raise ValueError(f"SimConfig.{name} must be {expected}. Got {got!r} instead.")


def symbol_names(n: int) -> list[str]:
    """BTCUSDT, ETHUSDT, XRPUSDT, SOLUSDT, ADAUSDT, then SYM005USDT, SYM006USDT, …"""
    return [_REAL[i][0] if i < len(_REAL) else f"SYM{i:03d}USDT" for i in range(n)]


def flat_candle(symbol: str, close_time: int, price: float = 100.0, **extra: object) -> dict[str, object]:
    """A 1-minute candle record at `price` (high and low 0.1 % off), ingested 100 ms after its
    close, plus `extra` members: for benchmarks and tests whose prices do not matter."""
    return {
        "symbol": symbol,
        "interval": "1m",
        "open_time": close_time - 60_000,
        "close_time": close_time,
        "open": price,
        "high": price * 1.001,
        "low": price * 0.999,
        "close": price,
        "volume": 10.0,
        "ingest_ts": close_time + 100,
        **extra,
    }


def _symbol_params(i: int) -> tuple[str, float, float, float]:
    if i < len(_REAL):
        return _REAL[i]
    rng = np.random.default_rng([7919, i])  # fixed look for SYMnnn, independent of seed
    price = float(np.exp(rng.uniform(np.log(0.01), np.log(500.0))))
    return f"SYM{i:03d}USDT", price, float(rng.uniform(0.0008, 0.0015)), 2e5 / price


# ---------------------------------------------------------------------------
# per-symbol chunk generation (pure numpy)


@dataclass
class _SymbolState:
    index: int
    name: str
    base_vol: float
    mean_volume: float
    market: np.random.Generator
    faults: np.random.Generator
    price: float
    mood: float
    log_vol: float  # log(σ / base_vol)


def _init_state(cfg: SimConfig, i: int) -> _SymbolState:
    name, price, base_vol, mean_volume = _symbol_params(i)
    market = np.random.default_rng([cfg.seed, i, 0])
    faults = np.random.default_rng([cfg.seed, i, 1])
    return _SymbolState(
        i,
        name,
        base_vol,
        mean_volume,
        market,
        faults,
        price,
        mood=float(market.standard_normal()),
        log_vol=float(market.normal(0.0, VOL_LOG_SD)),
    )


def _ou(prev: float, eps: np.ndarray, tau: float, sd: float) -> np.ndarray:
    """Exact unit-step OU x_k = φ·x_{k−1} + sd·√(1−φ²)·ε_k, φ = e^{−1/τ}; returns x_1..x_n.

    Closed form x_k = φ^k·(prev + c·Σ_{j≤k} φ^{−j}·ε_j): a cumsum instead of a loop.
    φ^{−n} = e^{n/τ} stays small because chunks are never much longer than τ.
    """
    k = np.arange(1, len(eps) + 1)
    c = sd * math.sqrt(-math.expm1(-2.0 / tau))
    return np.exp(-k / tau) * (prev + c * np.cumsum(np.exp(k / tau) * eps))


def _round_sig(x: np.ndarray, digits: int) -> np.ndarray:
    """Round to `digits` significant digits; dividing by an exact power of ten keeps repr short."""
    e = digits - 1 - np.floor(np.log10(x)).astype(np.int64)
    scale = 10.0 ** np.abs(e)
    return np.where(e >= 0, np.round(x * scale) / scale, np.round(x / scale) * scale)


def _candles(cfg: SimConfig, st: _SymbolState, c0: int, mood: np.ndarray) -> dict[str, np.ndarray]:
    rng, n = st.market, CHUNK_MS // MINUTE_MS
    log_vol = _ou(st.log_vol, rng.standard_normal(n), VOL_TAU_MIN, VOL_LOG_SD)
    eps, wick, volume_noise = rng.standard_normal(n), np.abs(rng.standard_normal((2, n))), rng.standard_normal(n)
    delay = rng.integers(100, 1501, n)
    st.log_vol = float(log_vol[-1])
    open_time = c0 + MINUTE_MS * np.arange(n, dtype=np.int64)
    shifted = np.zeros(n, bool) if cfg.regime_shift_ms is None else open_time >= cfg.regime_shift_ms
    k = np.where(shifted, -cfg.signal, cfg.signal)
    drift = np.where(shifted, REGIME_DRIFT, 0.0)
    sigma = st.base_vol * np.exp(log_vol)
    z = k * mood[:: MINUTE_MS // 1000] + drift + eps  # mood at each candle's open
    close = st.price * np.exp(np.cumsum(sigma * z))
    open_ = np.concatenate([[st.price], close[:-1]])
    st.price = float(close[-1])
    high = np.maximum(open_, close) * np.exp(0.6 * sigma * wick[0])
    low = np.minimum(open_, close) * np.exp(-0.6 * sigma * wick[1])
    volume = st.mean_volume * np.exp(0.45 * np.abs(eps) + 0.5 * log_vol + 0.4 * volume_noise - 0.4)
    o, h, lo, c = (_round_sig(a, 7) for a in (open_, high, low, close))
    return {
        "open_time": open_time,
        "open": o,
        "high": np.maximum(h, np.maximum(o, c)),
        "low": np.minimum(lo, np.minimum(o, c)),
        "close": c,
        "volume": _round_sig(volume, 6),
        "ingest_ts": open_time + MINUTE_MS + delay,
    }


def _ticks(cfg: SimConfig, st: _SymbolState, c0: int, mood: np.ndarray) -> dict[str, np.ndarray]:
    rng = st.market
    n = int(rng.poisson(cfg.ticks_per_minute * CHUNK_MS / MINUTE_MS))
    ts = np.sort(rng.integers(c0, c0 + CHUNK_MS, n))
    share = np.array([PROVIDER_SHARE.get(p, _DEFAULT_SHARE) for p in cfg.providers])
    provider = rng.choice(len(cfg.providers), n, p=share / share.sum())
    noise = np.array([PROVIDER_NOISE.get(p, _DEFAULT_NOISE) for p in cfg.providers])[provider]
    raw = np.tanh(SCORE_GAIN * mood[(ts - c0) // 1000] + noise * rng.standard_normal(n))
    delay = np.clip(np.round(np.exp(rng.uniform(math.log(50), math.log(3000), n))), 50, 3000).astype(np.int64)
    return {
        "ts": ts,
        "provider": provider,
        "score": np.round(np.clip(raw, -1.0, 1.0), 4),
        "ingest_ts": ts + delay,
        "k": np.arange(n),
    }


def _tick_faults(cfg: SimConfig, st: _SymbolState, t: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Late re-stamping, outage removal and duplicates, drawn from the symbol's fault stream."""
    rng, n = st.faults, len(t["ts"])
    late = rng.random(n) < cfg.late_rate
    t["ingest_ts"] = np.where(late, t["ts"] + rng.integers(LATE_MIN_MS, LATE_MAX_MS + 1, n), t["ingest_ts"])
    dup = rng.random(n) < cfg.duplicate_rate
    dup_delay = rng.integers(*DUP_DELAY_MS, n)
    if cfg.outage is not None:
        p, lo, hi = cfg.outage
        keep = ~((t["provider"] == cfg.providers.index(p)) & (t["ts"] >= lo) & (t["ts"] < hi))
        t, dup, dup_delay = {k: v[keep] for k, v in t.items()}, dup[keep], dup_delay[keep]
    copies = {k: v[dup] for k, v in t.items()}
    copies["ingest_ts"] = copies["ingest_ts"] + dup_delay[dup]
    return {k: np.concatenate([t[k], copies[k]]) for k in t}


# ---------------------------------------------------------------------------
# records


def _tick_records(cfg: SimConfig, st: _SymbolState, t: dict[str, np.ndarray]) -> list[dict]:
    names = [cfg.providers[i] for i in t["provider"].tolist()]
    return [
        {
            "symbol": st.name,
            "ts": ts,
            "score": s,
            "polarity": (s > 0) - (s < 0),
            "provider": p,
            "meta": {"lang": "en", "source": "sim"},
            "id": f"{p}-{st.name}-{ts}-{k}",
            "ingest_ts": ing,
        }
        for ts, s, p, k, ing in zip(
            t["ts"].tolist(), t["score"].tolist(), names, t["k"].tolist(), t["ingest_ts"].tolist()
        )
    ]


def _candle_records(st: _SymbolState, c: dict[str, np.ndarray]) -> list[dict]:
    cols = (c[k].tolist() for k in ("open_time", "open", "high", "low", "close", "volume", "ingest_ts"))
    return [
        {
            "symbol": st.name,
            "interval": "1m",
            "open_time": ot,
            "close_time": ot + MINUTE_MS,
            "open": o,
            "high": h,
            "low": lo,
            "close": cl,
            "volume": v,
            "ingest_ts": ing,
        }
        for ot, o, h, lo, cl, v, ing in zip(*cols)
    ]


def _malform(rec: dict, kind: str, pick: float) -> dict:
    """A copy of `rec` broken in the way `kind` names; `pick` ∈ [0,1) chooses the variant."""
    bad, is_candle = dict(rec), "open_time" in rec
    if kind == "missing_field":
        fields = ("close", "volume", "symbol") if is_candle else ("symbol", "score", "ts")
        del bad[fields[int(pick * len(fields))]]
    elif kind == "score_out_of_range":
        bad["score"] = 1.7 if pick < 0.5 else -1.3
    elif kind == "nan_score":
        bad["score"] = None if pick < 0.5 else "NaN"  # JSON has no NaN token
    elif kind == "string_number":
        bad["close" if is_candle else "score"] = "n/a" if pick < 0.5 else "high"
    elif kind == "high_below_low":
        bad["high"], bad["low"] = rec["low"], rec["high"] * 1.001
    elif kind == "unknown_interval":
        bad["interval"] = "7m"
    return bad


def _apply_malformed(cfg: SimConfig, st: _SymbolState, recs: list[dict], kinds: tuple[str, ...]) -> list[str | None]:
    rng, n = st.faults, len(recs)
    hit, which, pick = rng.random(n) < cfg.malformed_rate, rng.integers(0, len(kinds), n), rng.random(n)
    labels: list[str | None] = [None] * n
    for j in np.flatnonzero(hit).tolist():
        labels[j] = kinds[which[j]]
        recs[j] = _malform(recs[j], kinds[which[j]], float(pick[j]))
    return labels


# ---------------------------------------------------------------------------
# merged stream


@dataclass
class _Batch:
    """Records plus their global sort key (ingest_ts, kind, symbol, event time, sequence)."""

    records: list[dict] = field(default_factory=list)
    labels: list[str | None] = field(default_factory=list)
    keys: list[np.ndarray] = field(default_factory=lambda: [np.empty(0, np.int64)] * 5)

    def add(self, recs: list[dict], labels: list[str | None], cols: list[np.ndarray]) -> None:
        self.records += recs
        self.labels += labels
        self.keys = [np.concatenate([a, b.astype(np.int64)]) for a, b in zip(self.keys, cols)]

    def extend(self, other: _Batch) -> None:
        self.add(other.records, other.labels, other.keys)

    def take(self, keep: np.ndarray) -> _Batch:
        idx = keep.tolist()
        return _Batch([self.records[i] for i in idx], [self.labels[i] for i in idx], [k[keep] for k in self.keys])


def _chunk(cfg: SimConfig, states: list[_SymbolState], c0: int, end_ms: float) -> _Batch:
    batch = _Batch()
    for st in states:
        ahead = _ou(st.mood, st.market.standard_normal(CHUNK_MS // 1000), MOOD_TAU_S, 1.0)
        mood = np.concatenate([[st.mood], ahead[:-1]])  # mood[j] = m(c0 + j seconds)
        st.mood = float(ahead[-1])
        c = _candles(cfg, st, c0, mood)
        t = _tick_faults(cfg, st, _ticks(cfg, st, c0, mood))
        c = {k: v[c["open_time"] + MINUTE_MS <= end_ms] for k, v in c.items()}
        t = {k: v[t["ts"] < end_ms] for k, v in t.items()}
        crecs, trecs = _candle_records(st, c), _tick_records(cfg, st, t)
        clab = _apply_malformed(cfg, st, crecs, CANDLE_MALFORMED)
        tlab = _apply_malformed(cfg, st, trecs, TICK_MALFORMED)
        nc, nt = len(crecs), len(trecs)
        batch.add(crecs, clab, [c["ingest_ts"], np.zeros(nc), np.full(nc, st.index), c["open_time"], np.arange(nc)])
        batch.add(trecs, tlab, [t["ingest_ts"], np.ones(nt), np.full(nt, st.index), t["ts"], np.arange(nt)])
    return batch


def generate_labeled(cfg: SimConfig) -> Iterator[tuple[dict, str | None]]:
    """(record, malformed kind or None), merged over symbols and ordered by ingest_ts.

    Ties break on (candle before tick, symbol index, event time, sequence), so the
    order is a pure function of the config.
    """
    states = [_init_state(cfg, i) for i in range(cfg.symbols)]
    end_ms = cfg.start_ms + cfg.hours * 3_600_000.0
    pending, c0 = _Batch(), cfg.start_ms
    while c0 < end_ms:
        pending.extend(_chunk(cfg, states, c0, end_ms))
        c0 += CHUNK_MS
        # every later record has ingest_ts > c0: ticks have ts ≥ c0, candles close after c0
        cut = np.inf if c0 >= end_ms else c0
        order = np.lexsort(pending.keys[::-1])
        n_ready = int(np.searchsorted(pending.keys[0][order], cut, "left"))
        ready = pending.take(order[:n_ready])
        yield from zip(ready.records, ready.labels)
        pending = pending.take(order[n_ready:])


def generate(cfg: SimConfig) -> Iterator[dict]:
    """All records (ticks and candles, malformed ones included) ordered by ingest_ts."""
    return (rec for rec, _ in generate_labeled(cfg))


def write_files(cfg: SimConfig, out_dir: Path) -> dict[str, int]:
    """Write ``ticks.jsonl`` and ``candles.jsonl`` (each in ingest order) under `out_dir`.

    A malformed record goes to the file of the kind it pretends to be; counts
    ``ticks``/``candles`` are the lines of each file, ``malformed`` how many of
    those lines are broken.
    """
    import json

    if not math.isfinite(cfg.hours):
        raise ValueError(f"write_files needs a finite SimConfig.hours. Got {cfg.hours!r}; use generate() to stream.")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {"ticks": 0, "candles": 0, "malformed": 0}
    with open(out_dir / "ticks.jsonl", "w") as ft, open(out_dir / "candles.jsonl", "w") as fc:
        for rec, kind in generate_labeled(cfg):
            candle = "open_time" in rec or "interval" in rec
            (fc if candle else ft).write(json.dumps(rec, allow_nan=False, separators=(",", ":")) + "\n")
            counts["candles" if candle else "ticks"] += 1
            counts["malformed"] += kind is not None
    return counts


_TIME_FIELDS = ("ts", "open_time", "close_time", "ingest_ts")


def live_records(
    cfg: SimConfig,
    speed: float,
    clock: Callable[[], float] = time.time,
    *,
    sleep: Callable[[float], None] = time.sleep,
    max_sleep_s: float = 0.25,
) -> Iterator[dict]:
    """Pace `generate(cfg)` against the wall clock.

    Event times are shifted by a whole number of minutes so the simulated start is
    the current minute (candles stay epoch-aligned 1m bars); they are *not* scaled.
    The simulated clock runs `speed` times faster than the wall clock from the
    moment of the first call: a record with shifted ingest time I is yielded once
    ``clock() ≥ now0 + (I − now0)/speed`` (now0 = clock() at start, in ms). So
    speed 1 is real time and speed 60 replays one simulated minute per second.
    Sleeps at most `max_sleep_s` at a time so a consumer's cancellation is prompt.
    """
    if not speed > 0:
        raise ValueError(f"live_records speed must be > 0 (1.0 = real time). Got {speed!r}.")
    now0 = clock() * 1000.0
    offset = int(now0 // MINUTE_MS) * MINUTE_MS - cfg.start_ms
    for rec in generate(cfg):
        out = dict(rec)
        for f in _TIME_FIELDS:
            if type(out.get(f)) is int:
                out[f] += offset
        due_s = (now0 + (out["ingest_ts"] - now0) / speed) / 1000.0
        while (wait := due_s - clock()) > 0:
            sleep(min(wait, max_sleep_s))
        yield out
