"""Paper trading on the calibrated signals (docs/design.md §11), one concept per module:

items       typed inputs (TradeBar, TradeControl) and records (one per table)
config      TradingConfig from the settings
strategy    entry / exit / stop / target / timeout rules
sizing      fixed quote notional or fractional Kelly
broker      paper fill prices and fees
portfolio   cash, positions, marks, equity
guards      risk guards' state, trading day
engine      all of the above, one candle time at a time (pure, deterministic)
ordering    event-time order across symbols (what makes replays equal live runs)
stage       the Bytewax step around engine + ordering
report      backtest metrics from the records
exchange    the safety gate and the ccxt Binance adapter (off by default)
"""
