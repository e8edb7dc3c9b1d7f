"""The sentences jobs write (progress messages, known errors) as codes + parameters.

Jobs keep writing plain English (the `jobs` table, logs and the CLI stay readable); the API
adds `message_code`/`message_params` (and `error_code`/`error_params`) by matching the text
against this catalogue, so the dashboard can say it in the reader's language
(`api/static/i18n_*.js`, keys `jobmsg.<code>`). A sentence not in the catalogue keeps its
English text. Matching the text (instead of storing codes) needs no schema change and also
works for rows written by other processes.

>>> parse("refitting the temperature on 1200 recent labeled rows")
('recalibrate.refitting', {'rows': '1200'})
>>> parse("something new") is None
True
"""

from __future__ import annotations

import re

__all__ = ["CATALOGUE", "parse"]

# code -> English template; {name} is a parameter (any text without a newline).
CATALOGUE: dict[str, str] = {
    "train.reading": "reading features ⋈ labels from ClickHouse",
    "train.registered_promoted": "registered {version} (promoted)",
    "train.registered": "registered {version}",
    "recalibrate.refitting": "refitting the temperature on {rows} recent labeled rows",
    "labeler.writing": "{count} labels to write",
    "backfill.replaying": "replaying {count} input(s)",
    "backtest.replaying": "replaying the stored candles and predictions through the trading stage",
    # the stages models/training.py reports
    "stage.prepare_data": "prepare data",
    "stage.time_split": "time split",
    "stage.fit_estimator": "fit estimator",
    "stage.temperature_scaling": "temperature scaling",
    "stage.export_onnx": "export onnx",
    "stage.parity_check": "parity check",
    "stage.validation_metrics": "validation metrics",
    "stage.ablation": "ablation",
    "stage.done": "done",
    # errors (JobCenter prefixes the exception type, e.g. "RuntimeError: ")
    "job.interrupted": "interrupted: the process running it stopped",
    "data.not_enough": "not enough data (데이터 부족): {rows} labeled rows, need at least MIN_TRAIN_SAMPLES={minimum}",
    "data.split_short": "not enough data (데이터 부족): the {split} split has {rows} rows and {classes} label "
    "class(es) after the time split; both classes are needed",
    "recalibrate.no_production": "no production model to recalibrate; train one first (tickcast train)",
}


def _pattern(template: str) -> re.Pattern[str]:
    parts = re.split(r"\{(\w+)\}", template)
    regex = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>.+?)" for i, p in enumerate(parts))
    return re.compile(rf"^(?:[A-Za-z_][A-Za-z0-9_]*: )?{regex}$")


_PATTERNS = [(code, _pattern(template)) for code, template in CATALOGUE.items()]


def parse(text: str | None) -> tuple[str, dict[str, str]] | None:
    """``(code, params)`` of a sentence of the catalogue, or None."""
    if not text:
        return None
    for code, pattern in _PATTERNS:
        match = pattern.match(text)
        if match:
            return code, match.groupdict()
    return None
