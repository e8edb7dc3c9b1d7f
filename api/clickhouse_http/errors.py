"""ClickHouse-style errors: `Code: N. DB::Exception: message. (NAME)`, an HTTP status and the
`X-ClickHouse-Exception-Code` header that clients read.

HTTP statuses follow ClickHouse's own table (`exceptionCodeToHTTPStatus`: 401 for a missing
password, 403 for authentication and access, 404 for unknown tables/functions/settings, 408
for a timeout) with one departure: ClickHouse answers 500 for every code it does not list,
including a refused write (READONLY) or a query over a limit. Here a request the server
refuses because of what it asks is a 4xx (403 for the readonly refusals, 400 otherwise);
5xx is left to faults of the server itself (docs/decisions.md, "SQL interface").
"""

from __future__ import annotations

import re

# Codes this module raises or treats specially (from ClickHouse's ErrorCodes; checked against
# the engine's errorCodeToName()).
BAD_ARGUMENTS = 36
NOT_IMPLEMENTED = 48
SYNTAX_ERROR = 62
UNKNOWN_DATABASE = 81
UNKNOWN_SETTING = 115
TOO_MANY_ROWS = 158
TIMEOUT_EXCEEDED = 159
TOO_SLOW = 160
READONLY = 164
REQUIRED_PASSWORD = 194
TOO_MANY_SIMULTANEOUS_QUERIES = 202
QUERY_IS_TOO_LARGE = 229
MEMORY_LIMIT_EXCEEDED = 241
UNKNOWN_COMPRESSION_METHOD = 89
CANNOT_DECOMPRESS = 271
TOO_MANY_BYTES = 307
INTO_OUTFILE_NOT_ALLOWED = 358
TOO_MANY_ROWS_OR_BYTES = 396
FUNCTION_NOT_ALLOWED = 446
AUTHENTICATION_FAILED = 516

NAMES = {
    BAD_ARGUMENTS: "BAD_ARGUMENTS",
    NOT_IMPLEMENTED: "NOT_IMPLEMENTED",
    SYNTAX_ERROR: "SYNTAX_ERROR",
    UNKNOWN_DATABASE: "UNKNOWN_DATABASE",
    UNKNOWN_SETTING: "UNKNOWN_SETTING",
    UNKNOWN_COMPRESSION_METHOD: "UNKNOWN_COMPRESSION_METHOD",
    READONLY: "READONLY",
    REQUIRED_PASSWORD: "REQUIRED_PASSWORD",
    TOO_MANY_SIMULTANEOUS_QUERIES: "TOO_MANY_SIMULTANEOUS_QUERIES",
    QUERY_IS_TOO_LARGE: "QUERY_IS_TOO_LARGE",
    CANNOT_DECOMPRESS: "CANNOT_DECOMPRESS",
    INTO_OUTFILE_NOT_ALLOWED: "INTO_OUTFILE_NOT_ALLOWED",
    FUNCTION_NOT_ALLOWED: "FUNCTION_NOT_ALLOWED",
    AUTHENTICATION_FAILED: "AUTHENTICATION_FAILED",
}

# A query cancelled for going over one of the TICKCAST_SQL_* limits.
LIMIT_CODES = frozenset(
    {TOO_MANY_ROWS, TIMEOUT_EXCEEDED, TOO_SLOW, MEMORY_LIMIT_EXCEEDED, TOO_MANY_BYTES, TOO_MANY_ROWS_OR_BYTES}
)
# The refusals of a read-only interface: writes, settings, files, KILL.
REFUSAL_CODES = frozenset({READONLY, INTO_OUTFILE_NOT_ALLOWED, FUNCTION_NOT_ALLOWED, 497})  # 497 ACCESS_DENIED
AUTH_CODES = frozenset({REQUIRED_PASSWORD, AUTHENTICATION_FAILED, 192, 193})  # + UNKNOWN_USER, WRONG_PASSWORD

_STATUS = {
    REQUIRED_PASSWORD: 401,
    **dict.fromkeys((AUTHENTICATION_FAILED, 192, 193, 497, 512, READONLY, INTO_OUTFILE_NOT_ALLOWED), 403),
    FUNCTION_NOT_ALLOWED: 403,
    # UNKNOWN_FUNCTION, UNKNOWN_IDENTIFIER, UNKNOWN_TYPE, UNKNOWN_STORAGE, UNKNOWN_TABLE,
    # UNKNOWN_AGGREGATE_FUNCTION, UNKNOWN_FORMAT, UNKNOWN_TYPE_OF_QUERY, UNKNOWN_DATABASE,
    # UNKNOWN_SETTING, UNKNOWN_DIRECTION_OF_SORTING, UNKNOWN_DATABASE_ENGINE, UNKNOWN_ROLE
    **dict.fromkeys((46, 47, 50, 56, 60, 63, 73, 78, 81, 115, 152, 336, 511), 404),
    TIMEOUT_EXCEEDED: 408,
    QUERY_IS_TOO_LARGE: 413,
    # faults of the server, not of the request: LOGICAL_ERROR, CANNOT_ALLOCATE_MEMORY, ABORTED,
    # NOT_ENOUGH_SPACE, POCO/STD/UNKNOWN_EXCEPTION; busy: CANNOT_OPEN_FILE, CANNOT_SCHEDULE_TASK,
    # TOO_MANY_SIMULTANEOUS_QUERIES
    **dict.fromkeys((49, 173, 236, 243, 1000, 1001, 1002), 500),
    **dict.fromkeys((76, 439, TOO_MANY_SIMULTANEOUS_QUERIES), 503),
}

_CODE_RE = re.compile(r"Code: (\d+)\.")
_NAME_RE = re.compile(r"\(([A-Z][A-Z0-9_]+)\)\s*$")
_VERSION_RE = re.compile(r"\s*\(version [^)]*\)")


def http_status(code: int, message: str = "") -> int:
    """The HTTP status for an error code (see the module docstring)."""
    if code == MEMORY_LIMIT_EXCEEDED and "(total)" in message:
        return 503  # the whole engine is out of memory: not this query's fault
    return _STATUS.get(code, 400)


class ClickHouseError(Exception):
    """An error in ClickHouse's shape. `message` is the text after `DB::Exception: `."""

    def __init__(self, code: int, message: str, name: str = "") -> None:
        super().__init__(code, message, name)
        self.code = code
        self.message = message
        self.name = name

    @property
    def status(self) -> int:
        return http_status(self.code, self.message)

    @property
    def body(self) -> str:
        name = self.name or NAMES.get(self.code, "")
        suffix = f" ({name})" if name and not self.message.endswith(f"({name})") else ""
        return f"Code: {self.code}. DB::Exception: {self.message.rstrip('.')}.{suffix}\n"

    def __str__(self) -> str:
        return self.body.strip()

    @staticmethod
    def from_engine(text: str) -> ClickHouseError:
        """An engine error message (`Code: 60. DB::Exception: ... (UNKNOWN_TABLE)`) as an error.

        The engine nests messages (`Code: 164. DB::Exception: Code: 164. DB::Exception: ...`)
        and may append a version: the innermost text is kept, without the version.
        """
        match = _CODE_RE.search(text)
        code = int(match.group(1)) if match else 1001  # STD_EXCEPTION: not one of the engine's
        message = text[match.end() :] if match else text
        while True:
            inner = message.split("DB::Exception: ", 1)
            message = inner[1] if len(inner) == 2 else inner[0]
            nested = _CODE_RE.match(message.strip())
            if not nested:
                break
            message = message.strip()[nested.end() :]
        message = _VERSION_RE.sub("", message).strip().rstrip(".")
        name = ""
        while name_match := _NAME_RE.search(message):  # "... (READONLY). (READONLY)": every copy
            name = name or name_match.group(1)
            message = message[: name_match.start()].rstrip().rstrip(".")
        return ClickHouseError(code, message or "query failed", name)


def readonly(what: str) -> ClickHouseError:
    return ClickHouseError(READONLY, what, "READONLY")


def setting_readonly(name: str) -> ClickHouseError:
    return readonly(f"Cannot modify '{name}' setting in readonly mode")
