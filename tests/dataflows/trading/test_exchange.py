"""The safety gate (all eight combinations of the three switches) and the ccxt Binance adapter.

No exchange is reachable from these machines: the adapter talks to a local HTTP server on
loopback that answers the few REST calls it makes (Binance's documented shapes), a stand-in
for the exchange. The test checks what ccxt sends (paths, the API key header, a signature).
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from dataflows.trading.exchange import LIVE, PAPER, TESTNET, BinanceAdapter, announce, resolve_gate
from tickcast.settings import Settings, SettingsError

KEYS = {"BINANCE_API_KEY": "k" * 64, "BINANCE_API_SECRET": "s" * 64}


def settings(**kw: Any) -> Settings:
    return Settings(_env_file=None, **kw)  # type: ignore[call-arg]


@pytest.mark.parametrize("enabled, testnet, allow", list(itertools.product([False, True], repeat=3)))
def test_the_gate_for_all_eight_switch_combinations(enabled: bool, testnet: bool, allow: bool) -> None:
    gate = resolve_gate(
        settings(EXCHANGE_TRADING_ENABLED=enabled, BINANCE_TESTNET=testnet, SAFETY_ALLOW_REAL_TRADING=allow, **KEYS)
    )
    expected = PAPER if not enabled else (LIVE if (not testnet and allow) else TESTNET)
    assert gate.mode == expected
    assert gate.sends_orders == enabled
    # real money needs all three switches, whatever else is set
    assert (gate.mode == LIVE) == (enabled and not testnet and allow)


def test_defaults_are_paper_spot_testnet() -> None:
    s = settings()
    assert (s.EXCHANGE_TRADING_ENABLED, s.BINANCE_TESTNET, s.BINANCE_ACCOUNT_TYPE, s.SAFETY_ALLOW_REAL_TRADING) == (
        False,
        True,
        "spot",
        False,
    )
    assert resolve_gate(s).mode == PAPER  # no keys needed for paper


@pytest.mark.parametrize(
    "missing", [("BINANCE_API_KEY",), ("BINANCE_API_SECRET",), ("BINANCE_API_KEY", "BINANCE_API_SECRET")]
)
def test_exchange_modes_refuse_to_start_without_keys_and_name_them(missing: tuple[str, ...]) -> None:
    keys = {k: v for k, v in KEYS.items() if k not in missing}
    with pytest.raises(SettingsError) as err:
        resolve_gate(settings(EXCHANGE_TRADING_ENABLED=True, **keys))
    assert all(name in str(err.value) for name in missing)


def test_env_values_reach_the_gate(monkeypatch: pytest.MonkeyPatch) -> None:
    from tickcast.settings import load_settings

    for name, value in {"EXCHANGE_TRADING_ENABLED": "true", "BINANCE_TESTNET": "false", **KEYS}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SAFETY_ALLOW_REAL_TRADING", "0")
    assert resolve_gate(load_settings()).mode == TESTNET
    monkeypatch.setenv("SAFETY_ALLOW_REAL_TRADING", "1")
    assert resolve_gate(load_settings()).mode == LIVE


def test_startup_says_which_mode_is_active(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    announce(resolve_gate(settings()))
    announce(resolve_gate(settings(EXCHANGE_TRADING_ENABLED=True, BINANCE_TESTNET=False, **KEYS)))
    announce(
        resolve_gate(
            settings(EXCHANGE_TRADING_ENABLED=True, BINANCE_TESTNET=False, SAFETY_ALLOW_REAL_TRADING=True, **KEYS)
        )
    )
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if "TRADING MODE" in r.getMessage()]
    assert lines[0][0] == "INFO" and "PAPER" in lines[0][1]
    assert lines[1][0] == "WARNING" and "TESTNET" in lines[1][1] and "SAFETY_ALLOW_REAL_TRADING" in lines[1][1]
    assert lines[2][0] == "CRITICAL" and "LIVE" in lines[2][1] and "REAL MONEY" in lines[2][1]


# --- the adapter against a loopback stand-in for Binance --------------------------------------------
MARKET = {
    "symbol": "BTCUSDT",
    "status": "TRADING",
    "baseAsset": "BTC",
    "quoteAsset": "USDT",
    "baseAssetPrecision": 8,
    "quotePrecision": 8,
    "quoteAssetPrecision": 8,
    "orderTypes": ["LIMIT", "MARKET"],
    "isSpotTradingAllowed": True,
    "isMarginTradingAllowed": False,
    "permissions": ["SPOT"],
    "permissionSets": [["SPOT"]],
    "filters": [
        {"filterType": "PRICE_FILTER", "minPrice": "0.01", "maxPrice": "1000000.00", "tickSize": "0.01"},
        {"filterType": "LOT_SIZE", "minQty": "0.00001", "maxQty": "9000.00", "stepSize": "0.00001"},
    ],
}
FUTURES_MARKET = {
    **MARKET,
    "contractType": "PERPETUAL",
    "marginAsset": "USDT",
    "pricePrecision": 2,
    "quantityPrecision": 3,
    "underlyingType": "COIN",
    "deliveryDate": 4133404800000,
    "onboardDate": 1569398400000,
    "triggerProtect": "0.0500",
    "liquidationFee": "0.012500",
    "marketTakeBound": "0.05",
}


class FakeBinance(BaseHTTPRequestHandler):
    calls: list[dict[str, Any]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        params = {k: v[0] for k, v in parse_qs(url.query + "&" + body).items()}
        self.calls.append(
            {"method": self.command, "path": url.path, "params": params, "key": self.headers.get("X-MBX-APIKEY")}
        )
        path = url.path
        if path.endswith("/exchangeInfo"):
            futures = path.startswith("/fapi")
            data: Any = {"timezone": "UTC", "serverTime": 1, "symbols": [FUTURES_MARKET if futures else MARKET]}
        elif path in ("/api/v3/account",):
            data = {"balances": [{"asset": "USDT", "free": "1000.5", "locked": "0"}], "canTrade": True}
        elif path.startswith("/fapi/") and path.endswith("/account"):
            data = {
                "assets": [
                    {"asset": "USDT", "walletBalance": "1000.5", "availableBalance": "1000.5", "crossUnPnl": "0"}
                ],
                "positions": [],
                "availableBalance": "1000.5",
            }
        elif path.endswith("/order") and self.command == "POST":
            data = {
                "symbol": params.get("symbol"),
                "orderId": 4242,
                "clientOrderId": "t1",
                "transactTime": 1763683200000,
                "updateTime": 1763683200000,
                "price": "0",
                "avgPrice": "91000.00",
                "origQty": params.get("quantity"),
                "executedQty": params.get("quantity"),
                "cummulativeQuoteQty": "91.0",
                "cumQuote": "91.0",
                "status": "FILLED",
                "type": "MARKET",
                "side": params.get("side"),
                "fills": [],
            }
        else:
            self.send_response(404)
            self.end_headers()
            self.wfile.write(b'{"code": -1, "msg": "not served by the test server"}')
            return
        raw = json.dumps(data).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    do_GET = do_POST = do_DELETE = _answer


@pytest.fixture()
def fake_binance() -> Iterator[str]:
    FakeBinance.calls = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeBinance)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


@pytest.mark.parametrize("account_type", ["spot", "futures"])
def test_adapter_checks_the_account_and_sends_a_signed_market_order(fake_binance: str, account_type: str) -> None:
    s = settings(
        EXCHANGE_TRADING_ENABLED=True, BINANCE_ACCOUNT_TYPE=account_type, BINANCE_REST_URL=fake_binance, **KEYS
    )
    gate = resolve_gate(s)
    adapter = BinanceAdapter(gate, KEYS["BINANCE_API_KEY"], KEYS["BINANCE_API_SECRET"], rest_url=s.BINANCE_REST_URL)
    urls = adapter.api_urls()
    assert all(u.startswith(fake_binance) for u in urls.values() if isinstance(u, str) and u.startswith("http"))
    state = adapter.check()
    assert state["markets"] >= 1 and state["free"].get("USDT") == pytest.approx(1000.5)
    answer = adapter.submit("BTCUSDT", "buy", 0.0012345)
    assert answer["id"] == "4242" and answer["status"] == "closed"
    order = next(c for c in FakeBinance.calls if c["method"] == "POST")
    prefix = "/fapi/" if account_type == "futures" else "/api/v3/"
    assert order["path"].startswith(prefix) and order["path"].endswith("/order")
    assert order["params"]["symbol"] == "BTCUSDT" and order["params"]["side"] == "BUY"
    assert order["params"]["type"] == "MARKET" and float(order["params"]["quantity"]) == pytest.approx(
        0.00123, abs=1e-3
    )
    assert order["key"] == KEYS["BINANCE_API_KEY"] and "signature" in order["params"]
    private = [c for c in FakeBinance.calls if "signature" in c["params"]]
    assert private and all(c["key"] == KEYS["BINANCE_API_KEY"] for c in private)


def test_testnet_urls_are_binances_testnet_and_demo_hosts() -> None:
    spot = BinanceAdapter(resolve_gate(settings(EXCHANGE_TRADING_ENABLED=True, **KEYS)), "k", "s")
    assert "testnet.binance.vision" in spot.api_urls()["private"]
    futures = BinanceAdapter(
        resolve_gate(settings(EXCHANGE_TRADING_ENABLED=True, BINANCE_ACCOUNT_TYPE="futures", **KEYS)), "k", "s"
    )
    assert "demo-fapi.binance.com" in futures.api_urls()["fapiPrivate"]
    live = BinanceAdapter(
        resolve_gate(
            settings(EXCHANGE_TRADING_ENABLED=True, BINANCE_TESTNET=False, SAFETY_ALLOW_REAL_TRADING=True, **KEYS)
        ),
        "k",
        "s",
    )
    assert live.api_urls()["private"].startswith("https://api.binance.com")
    with pytest.raises(ValueError):
        BinanceAdapter(resolve_gate(settings()), "k", "s")
