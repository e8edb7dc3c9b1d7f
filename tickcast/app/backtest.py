"""`tickcast backtest`: the trading stage replayed, a report, and the sentiment ablation in money.

Sources (the same as `tickcast replay`, tickcast/app/backfill.py):

- stored rows (default): the candles, their `atr_14` and the predictions already in the
  store, and the admin controls the live stage recorded (`risk_events`, kind `control`),
  through the *same* trading stage (`dataflows.trading.stage.TradingLogic`) in a small
  Bytewax flow. The live stage's rows are reproduced exactly: the stage orders its input by
  event time, so arrival order does not matter (dataflows/trading/ordering.py).
- files / Kafka: the whole signals flow (decode → features → inference → trading), like
  `tickcast replay`, with the trading rows written under the backtest's account.

Rows are written under `--account` (default "backtest"), so they never overwrite the live
account's rows and the two can be compared row for row (`compare_accounts`).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
from bytewax.inputs import FixedPartitionedSource

from dataflows.trading import checkpoint
from dataflows.trading.config import TradingConfig
from dataflows.trading.engine import Engine, EngineState, TradingOut, candle_steps, replay_sorted
from dataflows.trading.items import TradeBar, TradeControl
from dataflows.trading.report import frames_from_records, summarize
from dataflows.trading.report import table as report_table
from tickcast.features import MARKET_FEATURES
from tickcast.records import MAX_TS_MS
from tickcast.settings import Settings
from tickcast.store import Store

log = logging.getLogger(__name__)

# table -> its natural key (ORDER BY without `account`)
TRADING_TABLES: dict[str, str] = {
    "orders": "symbol, decision_time, intent",
    "fills": "symbol, fill_time, intent",
    "positions": "symbol, opened_at",
    "equity": "symbol, ts",
    "risk_events": "ts, guard, event_id",
}
# table -> its event-time column (the version of orders and positions): what a span filters on
SPAN_COLUMN = {
    "orders": "updated_at",
    "fills": "fill_time",
    "positions": "updated_at",
    "equity": "ts",
    "risk_events": "ts",
}
_TIME_COLUMNS = {
    "orders": ("decision_time", "updated_at"),
    "fills": ("fill_time", "decision_time"),
    "positions": ("opened_at", "entry_decision_time", "closed_at", "updated_at"),
    "equity": ("ts",),
    "risk_events": ("ts",),
}


# --- inputs from stored rows --------------------------------------------------------------------
def stored_bars(
    store: Store,
    interval: str,
    *,
    model_version: str | None = None,
    start: int | None = None,
    end: int | None = None,
) -> list[TradeBar]:
    """Every stored candle of `interval` that has a prediction, with its atr_14, in (time, symbol) order.

    A candle predicted by several model versions (a backfill served by another model) uses
    `model_version` if given, else the newest version ('m<UTC time>-…' sorts after 'baseline')."""
    version_filter = "AND model_version = {v:String}" if model_version else ""
    rows = store.arrow(
        "SELECT p.symbol AS symbol, toUnixTimestamp64Milli(p.close_time) AS t, c.open AS open, c.high AS high, "
        "c.low AS low, c.close AS close, f.atr_14 AS atr, p.prob AS prob, p.top_version AS version, "
        "p.fallback_reason AS reason "
        "FROM (SELECT symbol, close_time, argMax(prob, model_version) AS prob, max(model_version) AS top_version, "
        "      argMax(fallback_reason, model_version) AS fallback_reason "
        f"     FROM {{db}}.predictions FINAL WHERE interval = {{i:String}} {version_filter} "
        "      AND close_time >= fromUnixTimestamp64Milli({s:Int64}) AND close_time <= fromUnixTimestamp64Milli({e:Int64}) "
        "      GROUP BY symbol, close_time) AS p "
        "INNER JOIN (SELECT symbol, close_time, open, high, low, close FROM {db}.candles FINAL "
        "            WHERE interval = {i:String}) AS c ON c.symbol = p.symbol AND c.close_time = p.close_time "
        "LEFT JOIN (SELECT symbol, close_time, atr_14 FROM {db}.features FINAL WHERE interval = {i:String}) AS f "
        "       ON f.symbol = p.symbol AND f.close_time = p.close_time "
        "ORDER BY t, symbol",
        {"i": interval, "v": model_version or "", "s": start or 0, "e": end or MAX_TS_MS},
    )
    cols = rows.to_pydict()
    atr = [np.nan if a is None else a for a in cols["atr"]]
    # tuple.__new__ through map: no Python frame per bar (4.3 M bars in a 30-day backtest)
    return list(
        map(
            tuple.__new__,
            repeat(TradeBar),
            zip(
                cols["symbol"],
                cols["t"],
                cols["open"],
                cols["high"],
                cols["low"],
                cols["close"],
                atr,
                cols["prob"],
                cols["version"],
                cols["reason"],
                strict=True,
            ),
        )
    )


def stored_controls(store: Store, account: str) -> list[TradeControl]:
    """The admin controls the live stage applied, at the time it applied them."""
    rows = store.rows(
        "SELECT details FROM {db}.risk_events FINAL WHERE account = {a:String} AND kind = 'control' ORDER BY ts",
        {"a": account},
    )
    out = []
    for row in rows:
        d = orjson.loads(row["details"])
        out.append(TradeControl(d["id"], d["command"], int(d["effective_at"]), d.get("by", ""), d.get("reason", "")))
    return out


def input_items(bars: list[TradeBar], controls: list[TradeControl], chunk: int = 5_000) -> list[tuple[Any, ...]]:
    """The trading stage's inputs in event-time order: TradeBars([bars]) chunks, each control
    (TradingControl) before the first bar after its time."""
    from dataflows.items import TradeBars, TradingControl

    items: list[tuple[Any, ...]] = []
    pending = sorted(controls, key=lambda c: (c.at, c.id))
    current: list[TradeBar] = []
    for b in bars:
        while pending and pending[0].at < b.close_time:
            if current:
                items.append(TradeBars(current))
                current = []
            c = pending.pop(0)
            items.append(TradingControl({**c._asdict(), "action": "trading"}))
        current.append(b)
        if len(current) >= chunk:
            items.append(TradeBars(current))
            current = []
    if current:
        items.append(TradeBars(current))
    items += [TradingControl({**c._asdict(), "action": "trading"}) for c in pending]
    return items


class _ItemsSource(FixedPartitionedSource[Any, int]):
    def __init__(self, items: list[Any], on_emit: Callable[[int], None] | None = None) -> None:
        self.items = items
        self.on_emit = on_emit

    def list_parts(self) -> list[str]:
        return ["backtest"]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> Any:
        from dataflows.sources import _IteratorPartition

        return _IteratorPartition(for_part, iter(self.items), 1, resume_state, self.on_emit)


def warm_state(
    cfg: TradingConfig, bars: list[TradeBar], controls: list[TradeControl], initial: EngineState | None = None
) -> EngineState:
    """The engine state after `bars` (stored rows before a backtest's --start, in (time, symbol)
    order) and the controls before it: the book, guards, warm-up counts and trade statistics the
    live stage had there. Engine only, in memory; the records are not kept. `initial`: the state
    to go on from (a stored checkpoint) instead of a new book."""
    engine = Engine(cfg, initial)
    for due, t, group in candle_steps(bars, controls):
        for control in due:
            engine.apply_control(control, TradingOut())
        if t is not None:
            engine.step(t, list(group), TradingOut())  # stored_bars: already sorted by symbol within a time
    return engine.state


def live_book(settings: Settings, store: Store, account: str | None = None) -> EngineState | None:
    """The live account's book as the store holds it, for a restart without a recovery store.

    Every stored candle with a prediction up to the account's newest stored equity time (what
    the stage had traded when the process stopped) and every control the account recorded, stepped
    through the engine (`warm_state`): the same book, guards, kill switch and warm-up counts the
    stage had, because a backtest of the stored rows equals the live account's rows. None when
    the account has no stored rows (a first start). Logs what it rebuilt, and the stored equity
    beside the rebuilt one when they differ."""
    account = account or settings.TRADING_ACCOUNT
    last = store.rows(
        "SELECT count() AS n, toUnixTimestamp64Milli(max(ts)) AS t, argMax(equity, ts) AS equity "
        "FROM {db}.equity FINAL WHERE account = {a:String} AND symbol = ''",
        {"a": account},
    )[0]
    if not last["n"]:
        return None
    traded_to = int(last["t"])
    cfg = TradingConfig.from_settings(settings, account=account)
    since, initial = stored_checkpoint(store, account, traded_to)
    bars = stored_bars(store, settings.TRADING_INTERVAL, start=since + 1 if initial else None, end=traded_to)
    # controls the checkpoint already holds are skipped by id (EngineState.controls_seen)
    controls = [c for c in stored_controls(store, account) if initial is None or c.at >= since]
    state = warm_state(cfg, bars, controls, initial)
    if state.clock < traded_to:  # the candles' predictions are gone (a TTL, a cleared table)
        log.warning(
            "trading: account %r has rows to %s but stored predictions only to %s; the book is rebuilt from those",
            account,
            _iso(traded_to),
            _iso(state.clock or None),
        )
    equity = state.portfolio.equity()
    log.warning(
        "trading: resumed the book of account %r from the store: %s%d candles to %s, equity %.2f, "
        "cash %.2f, %d open position(s)%s%s",
        account,
        f"the checkpoint of {_iso(since)} + " if initial else "",
        len(bars),
        _iso(state.clock or None),
        equity,
        state.portfolio.cash,
        len(state.portfolio.positions),
        "".join(
            f", {name} {g.state}"
            for name in ("kill_switch", "drawdown", "daily_loss")
            if (g := getattr(state.guards, name)).active
        ),
        ""
        if abs(equity - float(last["equity"])) <= 1e-6 * max(1.0, abs(equity))
        else f"; the stored equity there is {float(last['equity']):.2f} (the live run diverged from its replay)",
    )
    return state if state.clock > 0 else None


def stored_checkpoint(store: Store, account: str, at_most: int) -> tuple[int, EngineState | None]:
    """The newest stored engine state of `account` at or before `at_most` (epoch ms) in this
    code's format, as (its candle time, the state); (0, None) when there is none. A checkpoint
    that does not read back is skipped with a warning: the rebuild then starts from the beginning."""
    rows = store.rows(
        "SELECT toUnixTimestamp64Milli(ts) AS t, state FROM {db}.trading_checkpoints FINAL "
        "WHERE account = {a:String} AND format = {f:UInt16} AND ts <= fromUnixTimestamp64Milli({e:Int64}) "
        "ORDER BY ts DESC LIMIT 1",
        {"a": account, "f": checkpoint.FORMAT, "e": at_most},
    )
    if not rows:
        return 0, None
    try:
        return int(rows[0]["t"]), checkpoint.from_text(rows[0]["state"])
    except (KeyError, TypeError, ValueError) as exc:
        log.warning(
            "trading: the checkpoint of account %r at %s does not read back (%s); ignored",
            account,
            _iso(int(rows[0]["t"])),
            exc,
        )
        return 0, None


def trading_flow(
    settings: Settings,
    items: list[Any],
    store: Store,
    account: str,
    on_emit: Any = None,
    initial: EngineState | None = None,
) -> Any:
    """source of stage inputs -> the trading stage -> rows per table -> ClickHouse. `initial`:
    the engine state the stage starts from (a backtest span: `warm_state`)."""
    import bytewax.operators as op
    from bytewax.dataflow import Dataflow

    from dataflows.signals import store_batches
    from dataflows.sinks import StoreSink
    from dataflows.trading.stage import StageConfig, StageState, TradingLogic

    cfg = StageConfig.from_settings(settings, live=False, publish=False, recovery=False, account=account)
    flow = Dataflow("backtest")
    batches = op.input("backtest_input", flow, _ItemsSource(items, on_emit))
    values = op.flat_map("items", batches, lambda kv: kv[1])
    keyed = op.key_on("key_trading", values, lambda _: "trading")
    start = StageState(engine=initial) if initial is not None else None
    out = op.key_rm(
        "trading_out", op.stateful_batch("trading", keyed, lambda s: TradingLogic(cfg, s if s is not None else start))
    )
    table_batches = store_batches(out, settings, recovery=False)
    op.output("store", table_batches, StoreSink(lambda: store))
    return flow


# --- reading an account back ------------------------------------------------------------------
def account_rows(store: Store, table: str, account: str) -> pd.DataFrame:
    """An account's rows of a trading table (FINAL), times as epoch ms, in natural-key order."""
    times = _TIME_COLUMNS[table]
    select = ", ".join(f"toUnixTimestamp64Milli({c}) AS {c}" if c in times else c for c in _columns(store, table))
    df = store.df(
        f"SELECT {select} FROM {{db}}.{table} FINAL WHERE account = {{a:String}} ORDER BY {TRADING_TABLES[table]}",
        {"a": account},
    )
    return df.reset_index(drop=True)


def _columns(store: Store, table: str) -> list[str]:
    return [f.name for f in store.schema(table)]


def compare_accounts(
    store: Store, a: str, b: str, span: tuple[int | None, int | None] | None = None
) -> dict[str, dict[str, int]]:
    """Per table: rows of each account and how many differ (every column but `account`).

    `span` (start, end; epoch ms, None = open): only the rows the candles closing in it wrote,
    by their event time (`SPAN_COLUMN`; see `_in_span` for the edge at `end`)."""
    out = {}
    for table in TRADING_TABLES:
        x = account_rows(store, table, a).drop(columns=["account"])
        y = account_rows(store, table, b).drop(columns=["account"])
        if span is not None:
            x, y = _in_span(table, x, y, span)
        if table == "risk_events":  # event ids hash the account name; compare the content
            key = ["ts", "guard", "kind", "symbol", "reason"]
            x = x.drop(columns=["event_id"]).sort_values(key, kind="stable").reset_index(drop=True)
            y = y.drop(columns=["event_id"]).sort_values(key, kind="stable").reset_index(drop=True)
        differing = abs(len(x) - len(y))
        if len(x) == len(y) and len(x):
            differing = int((~(x.eq(y) | (x.isna() & y.isna()))).any(axis=1).sum())
        out[table] = {a: len(x), b: len(y), "differing": differing}
    return out


def _in_span(
    table: str, x: pd.DataFrame, y: pd.DataFrame, span: tuple[int | None, int | None]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows of a span that the candles closing in it wrote, in both accounts. A market order
    decided at candle T fills at the next candle's open, which is T: the candle after `end` writes
    rows timed `end` (its fills, their orders' and positions' new status, the guards they trip).
    So only equity rows are taken at `end` itself, the other tables' up to just before it, and an
    order or position whose status changed at `end` or later is left out of both."""
    lo, hi = span
    col = SPAN_COLUMN[table]
    closed = table == "equity"
    if hi is not None and table in ("orders", "positions"):
        keys = [k.strip() for k in TRADING_TABLES[table].split(",")]
        later = pd.concat([x.loc[x[col] >= hi, keys], y.loc[y[col] >= hi, keys]]).drop_duplicates()
        if len(later):
            x, y = (
                d.merge(later, on=keys, how="left", indicator=True)
                .query("_merge == 'left_only'")
                .drop(columns="_merge")
                for d in (x, y)
            )
    out = []
    for d in (x, y):
        keep = d[col] >= (lo if lo is not None else -(2**63))
        if hi is not None:
            keep &= (d[col] <= hi) if closed else (d[col] < hi)
        out.append(d[keep].reset_index(drop=True))
    return out[0], out[1]


def account_report(
    store: Store, settings: Settings, account: str, *, starting_equity: float | None = None
) -> dict[str, Any]:
    equity = account_rows(store, "equity", account)
    return summarize(
        equity[equity["symbol"] == ""],
        account_rows(store, "fills", account),
        account_rows(store, "positions", account),
        starting_equity=settings.RISK_STARTING_EQUITY if starting_equity is None else starting_equity,
        interval_ms=TradingConfig.from_settings(settings).interval_ms,
    )


# --- the sentiment ablation, in money -----------------------------------------------------------
def ablation(
    store: Store, settings: Settings, *, train_fraction: float = 0.5, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """The same strategy on two models trained alike on the first `train_fraction` of the stored
    history — with and without the sentiment features — each traded over the rest."""
    from models.training import Gates, train_model

    say = progress or (lambda _m: None)
    interval = settings.TRADING_INTERVAL
    sentiment = list(settings.TRAINING_SENTIMENT_FEATURES)
    names = list(MARKET_FEATURES) + sentiment
    cols = ", ".join(f"f.{n} AS {n}" for n in names)
    frame = store.df(
        f"SELECT f.symbol AS symbol, toUnixTimestamp64Milli(f.close_time) AS close_time, {cols}, "
        "c.open AS open, c.high AS high, c.low AS low, c.close AS close, l.label AS label "
        "FROM {db}.features AS f FINAL "
        "INNER JOIN (SELECT symbol, close_time, open, high, low, close FROM {db}.candles FINAL "
        "            WHERE interval = {i:String}) AS c ON c.symbol = f.symbol AND c.close_time = f.close_time "
        "LEFT JOIN (SELECT symbol, close_time, label FROM {db}.labels FINAL WHERE interval = {i:String} "
        "           AND horizon = {h:UInt16}) AS l ON l.symbol = f.symbol AND l.close_time = f.close_time "
        "WHERE f.interval = {i:String} ORDER BY close_time, symbol",
        {"i": interval, "h": settings.LABEL_HORIZON},
    )
    if len(frame) < 2 * settings.MIN_TRAIN_SAMPLES:
        return {
            "skipped": f"{len(frame)} stored feature rows; the ablation needs at least {2 * settings.MIN_TRAIN_SAMPLES}"
        }
    for n in names:
        frame[n] = frame[n].astype("float64")
    times = np.sort(frame["close_time"].unique())
    cut = int(times[int(len(times) * train_fraction)])
    train = frame[(frame["close_time"] < cut) & frame["label"].notna()]
    test = frame[frame["close_time"] >= cut]
    cfg = TradingConfig.from_settings(settings, account="ablation")
    result: dict[str, Any] = {"train_end": cut, "test_start": cut, "test_end": int(times[-1]), "test_rows": len(test)}
    for key, include in (("with_sentiment", True), ("without_sentiment", False)):
        say(f"ablation: training the model {key.replace('_', ' ')}")
        model = train_model(
            train,
            feature_names=names,
            horizon_candles=settings.LABEL_HORIZON,
            min_train_samples=settings.MIN_TRAIN_SAMPLES,
            gates=Gates(0.0, 1.0),
            include_sentiment=include,
            ablation=False,
        )
        X = test[list(model.feature_names)].to_numpy(dtype=np.float64).astype(np.float32).astype(np.float64)
        X[np.isinf(X)] = np.nan
        probs = model.calibrated.predict_proba(X)[:, 1]
        bars = [
            TradeBar(s, int(t), o, h, lo, c, np.nan if atr is None else float(atr), float(p), "ablation", "")
            for s, t, o, h, lo, c, atr, p in zip(
                test["symbol"],
                test["close_time"],
                test["open"],
                test["high"],
                test["low"],
                test["close"],
                test["atr_14"],
                probs,
                strict=True,
            )
        ]
        say(f"ablation: trading {len(bars)} candles {key.replace('_', ' ')}")
        equity, fills, positions = frames_from_records(replay_sorted(cfg, bars))
        result[key] = {
            "roc_auc": model.roc_auc,
            "features": len(model.feature_names),
            **summarize(equity, fills, positions, starting_equity=cfg.starting_equity, interval_ms=cfg.interval_ms),
        }
    result["delta_total_return"] = (
        result["with_sentiment"]["total_return"] - result["without_sentiment"]["total_return"]
    )
    return result


# --- the command --------------------------------------------------------------------------------
def run_backtest(
    settings: Settings,
    *,
    store: Store,
    inputs: list[Path] | None = None,
    kafka: bool = False,
    account: str = "backtest",
    live_account: str | None = None,
    model_version: str | None = None,
    with_ablation: bool = True,
    out_path: Path | None = None,
    out_dir: Path | None = None,
    progress: bool = True,
    say: Callable[[str], None] = print,
    start: int | None = None,
    end: int | None = None,
) -> dict[str, Any]:
    """Run, write the rows and the report (table `backtest_reports`, JSON file), return the report.

    `start` / `end` (epoch ms, inclusive; stored rows only): the candles closing in that span
    are traded and written. The stored history before `start` is stepped through the engine in
    memory first (`warm_state`, no rows), so the span starts from the book the live stage had
    there and its rows equal the live account's rows in the span (docs/decisions.md)."""
    live_account = live_account or settings.TRADING_ACCOUNT
    if account == live_account:
        raise ValueError(f"the backtest account must differ from the live account {live_account!r}")
    if (start is not None or end is not None) and (inputs or kafka):
        raise ValueError("--start/--end apply to a backtest of the stored rows, not to --input/--kafka")
    if start is not None and end is not None and start > end:
        raise ValueError(f"the backtest span is empty: start {start} is after end {end}")
    store.migrate()
    _clear_account(store, account)
    started = time.monotonic()
    starting_equity: float | None = None  # a span: the equity its warm-up left
    if inputs or kafka:
        from tickcast.app.backfill import run_replay

        source = "files" if inputs else "kafka"
        summary = run_replay(
            settings.model_copy(update={"TRADING_ACCOUNT": live_account, "TRADING_ENABLED": True}),
            inputs=inputs,
            kafka=kafka,
            store=store,
            progress=progress,
            account=account,
        )
        say(summary)
        n_bars = int(
            store.scalar(
                "SELECT count() FROM {db}.candles FINAL WHERE interval = {i:String} AND close_time BETWEEN "
                "(SELECT min(ts) FROM {db}.equity WHERE account = {a:String} AND symbol = '') AND "
                "(SELECT max(ts) FROM {db}.equity WHERE account = {a:String} AND symbol = '')",
                {"a": account, "i": settings.TRADING_INTERVAL},
            )
            or 0
        )
    else:
        source = "store"
        interval = settings.TRADING_INTERVAL
        bars = stored_bars(store, interval, model_version=model_version, start=start, end=end)
        controls = [c for c in stored_controls(store, live_account) if end is None or c.at <= end]
        n_bars = len(bars)
        if not bars:
            within = "" if start is None and end is None else f" between {_iso(start)} and {_iso(end)}"
            raise RuntimeError(
                f"no stored {interval} candles with predictions to backtest{within}; run the flow "
                "(`tickcast up`, `tickcast replay`) first"
            )
        initial = None
        if start is not None:
            warm = stored_bars(store, interval, model_version=model_version, end=start - 1)
            cfg = TradingConfig.from_settings(settings, account=account)
            initial = warm_state(cfg, warm, [c for c in controls if c.at < start])
            controls = [c for c in controls if c.at >= start]
            say(f"warm-up: {len(warm):,} stored candles before {_iso(start)} stepped through the engine (no rows)")
            starting_equity = initial.portfolio.equity()
        _run_stage(settings, input_items(bars, controls), store, account, len(bars), progress, initial)
    elapsed = time.monotonic() - started
    report = account_report(store, settings, account, starting_equity=starting_equity)
    doc: dict[str, Any] = {
        "report_id": uuid.uuid4().hex[:16],
        "created_at": int(time.time() * 1000),
        "account": account,
        "source": source,
        "throughput": {
            "candles": n_bars,
            "seconds": round(elapsed, 3),
            "candles_per_s": n_bars / elapsed if elapsed else None,
        },
        "settings": _trading_settings(settings),
        "report": report,
    }
    if start is not None or end is not None:
        doc["span"] = {"start": start, "end": end}
    if source == "store":
        bounds = (start, end) if start is not None or end is not None else None
        doc["compared_with"] = {
            "account": live_account,
            "tables": compare_accounts(store, account, live_account, bounds),
            **({"span": {"start": start, "end": end}} if bounds else {}),
        }
    if with_ablation:
        doc["ablation"] = ablation(store, settings, progress=say if progress else None)
    store.insert_rows(
        "backtest_reports",
        [
            {
                "report_id": doc["report_id"],
                "account": account,
                "created_at": doc["created_at"],
                "source": source,
                "start_ts": report["start"] or 0,
                "end_ts": report["end"] or 0,
                "report": orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY).decode(),
            }
        ],
    )
    if out_path is None and out_dir is not None:
        out_path = out_dir / f"{doc['report_id']}.json"
    doc["written_to"] = str(out_path) if out_path is not None else None
    if out_path is not None:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_bytes(orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_INDENT_2))
    return doc


def render(doc: dict[str, Any]) -> str:
    """The printed form: the report table, the throughput, the comparison and the ablation."""
    t = doc["throughput"]
    lines = [
        f"backtest {doc['report_id']} account={doc['account']} source={doc['source']}",
        report_table(doc["report"]),
    ]
    rate = t["candles_per_s"]
    lines.append(f"throughput: {t['candles']:,} candles in {t['seconds']:.1f} s ({rate or 0:,.0f} candles/s)")
    if "compared_with" in doc:
        cmp = doc["compared_with"]
        diffs = {k: v["differing"] for k, v in cmp["tables"].items()}
        same = all(v == 0 for v in diffs.values())
        within = ""
        if "span" in cmp:
            within = f" (rows from {_iso(cmp['span']['start'])} to {_iso(cmp['span']['end'])})"
        lines.append(
            f"vs account {cmp['account']}{within}: " + ("identical rows" if same else f"differing rows {diffs}")
        )
    abl = doc.get("ablation")
    if abl and "skipped" not in abl:
        w, wo = abl["with_sentiment"], abl["without_sentiment"]
        lines.append("sentiment ablation (trained on the first half, traded on the rest):")
        for name, r in (("with sentiment", w), ("without sentiment", wo)):
            lines.append(
                f"  {name:<18} return {100 * r['total_return']:7.2f} %  Sharpe {r['sharpe'] or 0:7.2f}  "
                f"trades {r['trades']:5}  hit {100 * (r['hit_rate'] or 0):5.1f} %  ROC-AUC {r['roc_auc']:.3f}"
            )
    elif abl:
        lines.append(f"sentiment ablation skipped: {abl['skipped']}")
    return "\n".join(lines)


def _iso(ms: int | None) -> str:
    if ms is None:
        return "-"
    return pd.Timestamp(ms, unit="ms", tz="UTC").isoformat()


def _run_stage(
    settings: Settings,
    items: list[Any],
    store: Store,
    account: str,
    total: int,
    progress: bool,
    initial: EngineState | None = None,
) -> None:
    from bytewax.testing import run_main

    from tickcast.app.progress_bar import run_with_bar

    done = [0]
    from dataflows.items import TradeBars

    sizes = [len(it.bars) if isinstance(it, TradeBars) else 0 for it in items]
    cumulative = np.cumsum(sizes).tolist() if sizes else []

    def on_emit(n: int) -> None:
        done[0] = cumulative[n - 1] if n else 0

    run_with_bar(
        lambda: run_main(trading_flow(settings, items, store, account, on_emit, initial)),
        lambda: done[0],
        name="backtest",
        unit="candle",
        total=total,
        progress=progress,
    )


def _clear_account(store: Store, account: str) -> None:
    """A backtest account starts empty (a previous backtest with other settings left other rows)."""
    for table in (*TRADING_TABLES, checkpoint.TABLE):
        store.command(f"DELETE FROM {{db}}.{table} WHERE account = {{a:String}}", {"a": account})


def _trading_settings(s: Settings) -> dict[str, Any]:
    prefixes = ("TRADING_", "RISK_", "LIVE_TRADE_")
    return {k: v for k, v in s.model_dump(mode="json").items() if k.startswith(prefixes)}
