"""The composition root: the only package that wires dataflows, api and the core together.

The CLI (`cli`), the embedded and distributed roles (`embedded`), replay/backfill
(`backfill`), the backtest (`backtest`) and the one-shot SQL command (`sql_query`).
Nothing outside this package imports it (tests/tickcast/test_import_rules.py).
"""
