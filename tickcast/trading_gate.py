"""The trading safety gate: which exchange mode the three switches allow.

| EXCHANGE_TRADING_ENABLED | BINANCE_TESTNET | SAFETY_ALLOW_REAL_TRADING | mode    |
|--------------------------|-----------------|---------------------------|---------|
| false (default)          | any             | any                       | paper   |
| true                     | true (default)  | any                       | testnet |
| true                     | false           | unset / 0                 | testnet (and a loud warning) |
| true                     | false           | 1                         | live    |

Seed 000: real trading "strongly discouraged". Paper places no exchange order. Testnet and
live need BINANCE_API_KEY and BINANCE_API_SECRET: start-up refuses, naming them, when they
are missing. The mode is logged loudly at start (`announce`).

Core (not dataflows): the flow refuses to start on it and the API reports it
(`GET /api/trading/risk`), so both import it from here. The adapter that sends orders is
`dataflows.trading.exchange`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from tickcast.settings import Settings, SettingsError

log = logging.getLogger("dataflows.trading.exchange")  # the logger operators grep for `TRADING MODE:`
PAPER, TESTNET, LIVE = "paper", "testnet", "live"


@dataclass(frozen=True)
class Gate:
    mode: str  # paper | testnet | live
    account_type: str  # spot | futures
    why: str

    @property
    def sends_orders(self) -> bool:
        return self.mode != PAPER


def resolve_gate(s: Settings) -> Gate:
    """The trading mode the three switches allow (see the table above); SettingsError when keys are missing."""
    if not s.EXCHANGE_TRADING_ENABLED:
        return Gate(PAPER, s.BINANCE_ACCOUNT_TYPE, "EXCHANGE_TRADING_ENABLED=false: paper trading only")
    if s.BINANCE_TESTNET:
        gate = Gate(TESTNET, s.BINANCE_ACCOUNT_TYPE, "EXCHANGE_TRADING_ENABLED=true, BINANCE_TESTNET=true")
    elif not s.SAFETY_ALLOW_REAL_TRADING:
        gate = Gate(
            TESTNET,
            s.BINANCE_ACCOUNT_TYPE,
            "BINANCE_TESTNET=false but SAFETY_ALLOW_REAL_TRADING is not 1: real trading refused, staying on the testnet",
        )
    else:
        gate = Gate(
            LIVE,
            s.BINANCE_ACCOUNT_TYPE,
            "EXCHANGE_TRADING_ENABLED=true, BINANCE_TESTNET=false and SAFETY_ALLOW_REAL_TRADING=1: REAL MONEY",
        )
    missing = [n for n in ("BINANCE_API_KEY", "BINANCE_API_SECRET") if not secret(getattr(s, n))]
    if missing:
        raise SettingsError(
            f"{gate.mode} trading (EXCHANGE_TRADING_ENABLED=true) needs {' and '.join(missing)}; set "
            f"{'them' if len(missing) > 1 else 'it'} or set EXCHANGE_TRADING_ENABLED=false for paper trading"
        )
    return gate


def announce(gate: Gate) -> None:
    """The loud start-up line operators grep for: `TRADING MODE:`."""
    line = f"TRADING MODE: {gate.mode.upper()} ({gate.account_type}) - {gate.why}"
    if gate.mode == LIVE:
        log.critical("%s", line)
    elif gate.mode == TESTNET or "refused" in gate.why:
        log.warning("%s", line)
    else:
        log.info("%s", line)


def secret(value: Any) -> str:
    if value is None:
        return ""
    return value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)
