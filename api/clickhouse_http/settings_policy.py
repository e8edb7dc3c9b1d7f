"""Which settings a client may send with a query (URL parameters other than the protocol's own).

Every query runs with `readonly=1`. In ClickHouse a readonly user may not change any setting,
which breaks ordinary clients (Grafana's data source sets `max_execution_time` on every query;
ClickHouse's advice is a settings profile that lets that one setting change). The policy here:

- transport and session parameters (`session_id`, `wait_end_of_query`, progress headers, ...)
  are accepted and have no effect: every request is its own session, answered whole;
- the limits (`max_execution_time`, `max_memory_usage`, `max_result_rows`, `max_result_bytes`,
  `max_threads`) may be lowered; a higher value (or 0, "unlimited") is capped at the server's;
- output and formatting settings that cannot change the store or read files are applied;
- `readonly=1` is accepted (it is already so); any other setting is refused as ClickHouse
  refuses it (code 164), unless its value is the current one (ClickHouse allows that too).

Settings inside the query (`SELECT ... SETTINGS x = 1`, `SET x = 1`) are the engine's to refuse.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from api.clickhouse_http import errors
from api.clickhouse_http.errors import ClickHouseError

IGNORED = frozenset(
    {
        "session_id",
        "session_timeout",
        "session_check",
        "quota_key",
        "buffer_size",
        "wait_end_of_query",
        "http_wait_end_of_query",
        "client_protocol_version",
        "role",
        "default_role",
        "stacktrace",
        "send_progress_in_http_headers",
        "http_headers_progress_interval_ms",
        "cancel_http_readonly_queries_on_client_close",
        "add_http_cors_header",
        "http_native_compression_disable_checksumming_on_decompress",
        "http_response_buffer_size",
        "enable_http_compression",  # read by the server (response compression)
        "http_zlib_compression_level",
        "log_comment",
        "log_queries",
    }
)

# Output, formatting and read-behaviour settings: none writes, reads a file or lifts a limit.
# (Not `format_template_*` or `format_schema`, which name files of the server.)
SAFE = frozenset(
    {
        "date_time_output_format",
        "date_time_input_format",
        "date_time_overflow_behavior",
        "session_timezone",
        "extremes",
        "final",
        "join_use_nulls",
        "max_block_size",
        "prefer_column_name_to_alias",
        "aggregate_functions_null_for_empty",
        "cast_string_to_dynamic_use_inference",
        "result_overflow_mode",
        "timeout_overflow_mode",
        "format_csv_delimiter",
        "format_csv_null_representation",
        "format_tsv_null_representation",
        "output_format_json_quote_64bit_integers",
        "output_format_json_quote_64bit_floats",
        "output_format_json_quote_denormals",
        "output_format_json_quote_decimals",
        "output_format_json_named_tuples_as_objects",
        "output_format_json_validate_utf8",
        "output_format_json_escape_forward_slashes",
        "output_format_decimal_trailing_zeros",
        "output_format_arrow_string_as_string",
        "output_format_arrow_low_cardinality_as_dictionary",
        "output_format_arrow_fixed_string_as_fixed_byte_array",
        "output_format_parquet_string_as_string",
        "output_format_pretty_max_rows",
        "output_format_pretty_max_column_pad_width",
        "output_format_pretty_max_value_width",
        "output_format_pretty_color",
        "output_format_pretty_grid_charset",
        "output_format_pretty_row_numbers",
        "output_format_write_statistics",
        "output_format_csv_crlf_end_of_line",
        "output_format_tsv_crlf_end_of_line",
        "output_format_native_encode_types_in_binary_format",
    }
)
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_NUMBER_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)(?:[eE]\+?(\d+))?\s*$")


@dataclass(frozen=True)
class Limits:
    """The server's bounds on every query (TICKCAST_SQL_*)."""

    max_execution_time: float
    max_memory_usage: int
    max_result_rows: int
    max_result_bytes: int
    max_threads: int

    def as_settings(self) -> dict[str, str]:
        return {
            "max_execution_time": _number(self.max_execution_time),
            "max_memory_usage": str(self.max_memory_usage),
            "max_result_rows": str(self.max_result_rows),
            "max_result_bytes": str(self.max_result_bytes),
            "max_threads": str(self.max_threads),
        }


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _parse_number(name: str, text: str) -> float:
    match = _NUMBER_RE.match(text)
    if not match:
        raise ClickHouseError(
            errors.BAD_ARGUMENTS, f"Cannot parse {text!r} as a number for setting {name}", "CANNOT_PARSE_NUMBER"
        )
    value = float(match.group(1))
    return value * 10 ** int(match.group(2)) if match.group(2) else value


@dataclass(frozen=True)
class SettingsPolicy:
    limits: Limits
    current: Mapping[str, str]  # every setting the engine knows, with its value in a query session

    def resolve(self, requested: Mapping[str, str]) -> dict[str, str]:
        """The settings to apply for `requested` (see the module docstring); raises on a refused one."""
        out: dict[str, str] = {}
        caps = self.limits.as_settings()
        for name, value in requested.items():
            if not _NAME_RE.match(name):
                raise ClickHouseError(errors.UNKNOWN_SETTING, f"Setting {name!r} is not a setting name")
            if name in IGNORED:
                continue
            if name in caps:
                cap = float(caps[name])
                wanted = _parse_number(name, value)
                if 0 < wanted < cap:
                    out[name] = _number(wanted)
                continue
            if name == "readonly":
                if value.strip() != "1":
                    raise errors.setting_readonly(name)
                continue
            if name in SAFE:
                out[name] = value
                continue
            if name not in self.current:
                raise ClickHouseError(
                    errors.UNKNOWN_SETTING,
                    f"Setting {name} is neither a builtin setting nor started with the prefix 'SQL_' registered "
                    "for user-defined settings",
                    "UNKNOWN_SETTING",
                )
            if self.current[name] != value:
                raise errors.setting_readonly(name)
        return out
