"""The items that travel between the steps of the signals flow, one type per kind.

Each kind is a `NamedTuple`: it costs what a tuple costs (built by `tuple.__new__`, fields
read by index in C), pickles by reference to its class (Bytewax moves items between
workers), and says what it holds. Steps are routed by type (`is_a`), never by a string in
the first field. The pipeline, with the item types on its edges, is drawn in
docs/architecture.md ("Items between steps").

Inside an activation a step appends to its `dataflows.outputs.Out`:

    TableRow(table, row)                       a row for a ClickHouse table
    LiveEvent(stream, data, symbol, ts)        a live event (bus + live_events)
    Features(row, known) | Label(row, known)   model inputs (`known`: the ingest_ts that produced it)

and `Out.done()` hands Bytewax a few items per activation:

    Rows(table, rows | Pieces)                 → batched per table → ClickHouse
    Events([LiveEvent, ...])                   → live bus + live_events
    ModelInputs([Features | Label | Progress]) → the model stage

plus the items a step hands on as they are:

    ShardWork(shard, [(symbol, SymbolInput)] | Progress)   decode → symbol shards
    TradingControl(record)                     decode → trading stage (admin commands)
    TradeBars([TradeBar, ...])                 model stage → trading stage
    ExchangeOrders([OrderRecord, ...])         trading stage → exchange sink (testnet/live)
    ConsumerError(topic, partition, offset, error)   Kafka source → decode (a rejected_records row)

The symbol shards keep their deferred side work (`symbol_logic`, part of the snapshot) as

    StoreTicks(symbol, ticks, status) | StoreBars(symbol, ends, bar_values) | PublishView(symbol)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

# How late (ms of ingest time) a prediction may still enter its calibration window: the model
# stage's default (`ModelConfig.eval_slack_ms`) and decode's progress offset. Here, not in
# dataflows/model_stage.py, so that a flow without the model need not import that stage.
EVAL_SLACK_MS = 120_000


def is_a(cls: type) -> Callable[[Any], bool]:
    """A filter/branch predicate: the item is exactly a `cls` (one C-level type check)."""
    return lambda item: item.__class__ is cls


# --- appended to Out inside an activation --------------------------------------------------------
class TableRow(NamedTuple):
    table: str
    row: dict[str, Any]


class LiveEvent(NamedTuple):
    stream: str
    data: dict[str, Any]
    symbol: str | None
    ts: int  # ms


class Features(NamedTuple):
    row: dict[str, Any]
    known: int | None = None  # ingest_ts of the record that produced it (None: its event time)


class Label(NamedTuple):
    row: dict[str, Any]
    known: int | None = None


# --- handed on between steps ---------------------------------------------------------------------
class Rows(NamedTuple):
    table: str
    rows: Any  # list of dict rows, or `outputs.Pieces` (columnar pieces)


class Events(NamedTuple):
    events: list[LiveEvent]


class ModelInputs(NamedTuple):
    items: list[Any]  # Features | Label | progress.Progress, in the order appended


class ShardWork(NamedTuple):
    shard: str
    work: Any  # [(symbol, decode.SymbolInput), ...] or a progress.Progress (replays)


class TradingControl(NamedTuple):
    record: dict[str, Any]  # {action: "trading", command, id, at, by, reason}


class TradeBars(NamedTuple):
    bars: list[Any]  # [trading.TradeBar, ...]


class ExchangeOrders(NamedTuple):
    orders: list[Any]  # [trading.OrderRecord, ...] (pending)


class ConsumerError(NamedTuple):
    """A Kafka consumer error, handed on instead of raised (the flow records it as a
    `rejected_records` row and goes on), as Bytewax's own KafkaSource does with its
    `KafkaError` items when `raise_on_errors=False`."""

    topic: str
    partition: int
    offset: int
    error: str

    def text(self) -> str:
        return f"{self.error} (topic={self.topic}, partition={self.partition}, offset={self.offset})"


# --- the symbol shards' deferred side work (symbol_logic.ShardLogic) -----------------------------
class StoreTicks(NamedTuple):
    symbol: str
    ticks: Any  # tick_batches.SymbolTicks
    status: Any  # np.ndarray: 0 accepted, else the refusal


class StoreBars(NamedTuple):
    symbol: str
    ends: Any  # np.ndarray of bar ends
    bar_values: Any  # np.ndarray of bar values


class PublishView(NamedTuple):
    symbol: str


SideWork = StoreTicks | StoreBars | PublishView
