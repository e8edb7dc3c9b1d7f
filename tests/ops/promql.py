"""Metric names in PromQL expressions and in the running Prometheus registry (test helpers)."""

from __future__ import annotations

import re
from typing import Any

# Words of PromQL that are not metric names: functions are recognised by the "(" after them.
_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
    "offset", "inf", "nan", "le",
}  # fmt: skip
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"(?<![\w.$])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()")
_NUMBER = re.compile(r"^\d")


def metric_names(expr: str) -> set[str]:
    """The metric names an expression reads.

    >>> sorted(metric_names('sum by (le) (rate(x_bucket{a="b"}[5m])) / clamp_min(y_total, 1e-09) > 0.5'))
    ['x_bucket', 'y_total']
    """
    text = _STRINGS.sub('""', expr)
    text = _MATCHERS.sub("", text)
    text = _RANGES.sub("", text)
    text = _GROUPING.sub("", text)
    names = set()
    for match in _IDENT.finditer(text):
        word = match.group(1)
        if word.lower() in _KEYWORDS or _NUMBER.match(word):
            continue
        names.add(word)
    return names


def exported_names(registry: Any = None) -> set[str]:
    """Every sample name the registry exposes or will expose once a labeled child exists."""
    from prometheus_client import REGISTRY

    names: set[str] = set()
    for family in (registry or REGISTRY).collect():
        base = family.name
        suffixes = {
            "counter": ("_total", "_created"),
            "histogram": ("_bucket", "_count", "_sum", "_created"),
            "summary": ("", "_count", "_sum", "_created"),
        }.get(family.type, ("",))
        names.update(base + s for s in suffixes)
        names.update(sample.name for sample in family.samples)
    return names
