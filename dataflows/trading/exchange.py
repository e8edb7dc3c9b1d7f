"""The Binance adapter (ccxt), off by default, behind the safety gate (`tickcast.trading_gate`).

The gate's table (paper, testnet, live) is in `tickcast/trading_gate.py`.

Testnet means Binance's spot testnet (testnet.binance.vision, ccxt `set_sandbox_mode`) for
BINANCE_ACCOUNT_TYPE=spot, and Binance's demo trading (demo-fapi.binance.com, ccxt
`enable_demo_trading`) for futures: ccxt refuses the old futures sandbox (Binance retired
it). BINANCE_REST_URL replaces the scheme and host of every REST URL (a proxy; the tests'
loopback server).

In testnet/live mode the paper book stays the system of record of decisions and guards
(deterministic, replayable); each order the stage decides is also sent to the exchange as
a market order by `ExchangeSink`, and the answer is logged and counted
(`trading_exchange_orders_total{mode,status}`).
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any
from urllib.parse import urlsplit

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from tickcast.settings import Settings
from tickcast.trading_gate import LIVE, PAPER, TESTNET, Gate, announce, resolve_gate, secret

__all__ = [
    "LIVE",
    "PAPER",
    "TESTNET",
    "BinanceAdapter",
    "ExchangeSink",
    "Gate",
    "adapter_from_settings",
    "announce",
    "resolve_gate",
]

log = logging.getLogger(__name__)


class BinanceAdapter:
    """The few REST calls the system makes, through ccxt: markets, balance, market orders."""

    def __init__(
        self,
        gate: Gate,
        api_key: str,
        secret: str,
        *,
        rest_url: str | None = None,
        timeout_ms: int = 10_000,
    ) -> None:
        import ccxt

        if not gate.sends_orders:
            raise ValueError("paper trading has no exchange adapter")
        futures = gate.account_type == "futures"
        cls = ccxt.binanceusdm if futures else ccxt.binance
        self.exchange = cls(
            {
                "apiKey": api_key,
                "secret": secret,
                "enableRateLimit": True,
                "timeout": timeout_ms,
                "options": {
                    "defaultType": "future" if futures else "spot",
                    "fetchCurrencies": False,  # no wallet/config calls: markets come from exchangeInfo
                    "adjustForTimeDifference": False,
                    "fetchMarkets": {"types": ["linear"] if futures else ["spot"]},
                },
            }
        )
        if gate.mode == TESTNET:
            if futures:
                self.exchange.enable_demo_trading(True)
            else:
                self.exchange.set_sandbox_mode(True)
        if rest_url:
            self.exchange.urls["api"] = _rebase(self.exchange.urls["api"], rest_url)
        self.gate = gate

    def api_urls(self) -> dict[str, Any]:
        return dict(self.exchange.urls["api"])

    def check(self) -> dict[str, Any]:
        """Load the markets and read the balance: keys and connectivity work."""
        self.exchange.load_markets()
        balance = self.exchange.fetch_balance()
        free = {k: v for k, v in (balance.get("free") or {}).items() if v}
        return {"markets": len(self.exchange.markets), "free": free}

    def market_symbol(self, symbol: str) -> str:
        """Our symbol (the exchange's id, e.g. BTCUSDT) as ccxt's unified one (BTC/USDT)."""
        self.exchange.load_markets()
        found = self.exchange.markets_by_id.get(symbol)
        if not found:
            raise KeyError(f"{symbol} is not a market of binance {self.gate.account_type}")
        return str(found[0]["symbol"])

    def submit(self, symbol: str, side: str, amount: float) -> dict[str, Any]:
        """A market order of `amount` base units; the exchange's answer (id, status, filled, average)."""
        unified = self.market_symbol(symbol)
        qty = float(self.exchange.amount_to_precision(unified, amount))
        order = self.exchange.create_order(unified, "market", side, qty)
        return {k: order.get(k) for k in ("id", "status", "filled", "average", "amount", "side", "symbol")}


def _rebase(urls: Any, base: str) -> Any:
    """Every URL of ccxt's `urls['api']` with its scheme and host replaced by `base`'s."""
    target = urlsplit(base)
    if isinstance(urls, dict):
        return {k: _rebase(v, base) for k, v in urls.items()}
    if isinstance(urls, str) and urls.startswith("http"):
        parts = urlsplit(urls)
        return parts._replace(scheme=target.scheme, netloc=target.netloc).geturl()
    return urls


def adapter_from_settings(s: Settings, gate: Gate) -> BinanceAdapter:
    return BinanceAdapter(gate, secret(s.BINANCE_API_KEY), secret(s.BINANCE_API_SECRET), rest_url=s.BINANCE_REST_URL)


class _ExchangePartition(StatelessSinkPartition[Any]):
    """Orders go out on a thread of their own: a slow exchange never stalls the flow."""

    def __init__(self, adapter: BinanceAdapter) -> None:
        from tickcast import metrics

        self.adapter = adapter
        self.metric = metrics.TRADING_EXCHANGE_ORDERS
        self.queue: queue.Queue[Any] = queue.Queue(10_000)
        threading.Thread(target=self._run, name="exchange-orders", daemon=True).start()

    def write_batch(self, items: list[Any]) -> None:
        for item in items:  # ExchangeOrders
            for order in item.orders:
                try:
                    self.queue.put_nowait(order)
                except queue.Full:
                    self.metric.labels(self.adapter.gate.mode, "dropped").inc()
                    log.error("exchange order queue full: %s %s not sent", order.side, order.symbol)

    def _run(self) -> None:
        while True:
            order = self.queue.get()
            amount = order.qty if order.intent == "exit" else order.notional / order.reference_price
            try:
                answer = self.adapter.submit(order.symbol, order.side, amount)
            except Exception as exc:  # noqa: BLE001 - an exchange error is logged and counted, never fatal
                self.metric.labels(self.adapter.gate.mode, "error").inc()
                log.error(
                    "exchange %s order %s %s %.8g failed: %s", order.intent, order.side, order.symbol, amount, exc
                )
                continue
            self.metric.labels(self.adapter.gate.mode, str(answer.get("status") or "sent")).inc()
            log.info("exchange %s order %s %s %.8g -> %s", order.intent, order.side, order.symbol, amount, answer)


class ExchangeSink(DynamicSink[Any]):
    """Input: ExchangeOrders([OrderRecord, ...]) — the orders the trading stage decided (pending)."""

    def __init__(self, adapter: BinanceAdapter) -> None:
        self.adapter = adapter

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _ExchangePartition:
        return _ExchangePartition(self.adapter)
