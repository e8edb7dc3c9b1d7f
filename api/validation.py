"""Request parameters and bodies declared once — type, range, default, description — and used
twice: to parse and check each request (4xx with a message naming the parameter, what it
expects and what arrived) and to write the OpenAPI document (`api.app.openapi_document`).

`@spec` wraps every handler with the checks that come before its own code, in this order:
a JSON content type for bodies (415), the API key (401/403; the `api_key` query parameter
only on event streams), then the query string — a parameter the endpoint does not declare,
or one given twice, is a 400 that lists the accepted ones (a typo never passes silently).

>>> p = Param("limit", "integer", minimum=1, maximum=100, default=10)
>>> p.parse("20"), p.parse(None)
(20, 10)
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal

import orjson
from starlette.requests import Request
from starlette.responses import Response

from api.errors import ApiError
from api.schemas import Schema
from tickcast.records import MAX_TS_MS, MIN_TS_MS, PROVIDER_RE, SYMBOL_RE

Kind = Literal["string", "integer", "number", "boolean", "timestamp", "symbol", "csv"]
Location = Literal["query", "path", "header"]
NAME_RE = PROVIDER_RE  # providers, accounts and other names: the record contract's provider rule
MAX_STRING = 256  # characters of a free-text query value
_INT_RE = re.compile(r"-?[0-9]{1,19}")
_NUM_RE = re.compile(r"-?(?:0|[1-9][0-9]{0,30})(?:\.[0-9]{1,30})?(?:[eE][+-]?[0-9]{1,3})?")
# A date or an RFC 3339 date-time; the zone is optional (UTC), and a '+' sent unencoded in a
# URL arrives as ' ' (so "…T09:00:00 09:00" is +09:00).
_ISO_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})"
    r"(?:[Tt ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]{1,9}))?)?)?"
    r"([Zz]|[+ -][0-9]{2}:?[0-9]{2})?"
)
# Years 2001-2099 in the document: with any zone offset the instant stays inside [2000, 2100].
_ISO_DOC_PATTERN = "^20(0[1-9]|[1-9][0-9])-"
_TRUE, _FALSE = "true", "false"


def parse_timestamp(text: str, name: str) -> int:
    """Epoch milliseconds, or ISO-8601 / RFC 3339 (a time without zone is UTC) -> epoch ms.

    >>> parse_timestamp("2025-11-21T09:00:00 09:00", "start")  # '+' sent unencoded arrives as ' '
    1763683200000
    >>> parse_timestamp("1763683200000", "start")
    1763683200000
    """
    text = text.strip()
    if _INT_RE.fullmatch(text):
        value = int(text)
    else:
        value = _iso_ms(text, name)
    if not MIN_TS_MS <= value <= MAX_TS_MS:
        raise ApiError(400, f"'{name}'={value} is not epoch milliseconds between years 2000 and 2100")
    return value


def _iso_ms(text: str, name: str) -> int:
    match = _ISO_RE.fullmatch(text)
    if match is None:
        raise ApiError(
            400,
            f"'{name}' must be epoch milliseconds (e.g. 1763683200000) or ISO-8601 "
            f"(e.g. 2025-11-21T00:00:00Z), got {text[:60]!r}",
        )
    year, month, day, hour, minute, second, frac, zone = match.groups()
    tz: timezone = UTC
    if zone and zone not in "Zz":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        tz = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
    sec = int(second or 0)
    micro = int((frac or "0").ljust(6, "0")[:6])
    if sec == 60:  # an RFC 3339 leap second: the last instant of the minute
        sec, micro = 59, 999_999
    try:
        stamp = datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), sec, micro, tzinfo=tz)
    except ValueError as exc:
        raise ApiError(400, f"'{name}' is not a valid date-time ({exc}), got {text[:60]!r}") from None
    return math.floor(stamp.timestamp() * 1000)


def csv_pattern(item: str, max_items: int) -> str:
    """The pattern of a comma-separated list of 1..max_items items, each matching `item`."""
    return f"{item}(,{item}){{0,{max_items - 1}}}"


@dataclass(frozen=True)
class Param:
    """One query, path or header parameter."""

    name: str
    kind: Kind = "string"
    required: bool = False
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    enum: tuple[str, ...] | None = None
    description: str = ""
    location: Location = "query"
    pattern: str | None = None  # the whole value must match (ASCII classes: \d is 0-9 only)
    example: Any = None
    max_length: int = MAX_STRING

    def parse(self, raw: str | None) -> Any:
        if raw is None:
            if self.required:
                raise ApiError(400, f"missing required {self._where()} '{self.name}'" + self._hint())
            return self.default
        if raw == "":
            raise ApiError(400, f"'{self.name}' is empty: give it a value or leave it out" + self._hint())
        value = self._convert(raw)
        if self.enum is not None and value not in self.enum:
            raise ApiError(400, f"'{self.name}' must be one of {', '.join(self.enum)}, got {raw[:80]!r}")
        if self.minimum is not None and value < self.minimum or self.maximum is not None and value > self.maximum:
            raise ApiError(
                400, f"'{self.name}' must be in [{_fmt(self.minimum)}, {_fmt(self.maximum)}], got {raw[:80]!r}"
            )
        return value

    def _where(self) -> str:
        return {"query": "query parameter", "path": "path parameter", "header": "header"}[self.location]

    def _hint(self) -> str:
        return f" ({self.description})" if self.description else ""

    def _convert(self, raw: str) -> Any:
        if self.kind == "integer":
            if not _INT_RE.fullmatch(raw):
                raise ApiError(400, f"'{self.name}' must be an integer, got {raw[:80]!r}")
            return int(raw)
        if self.kind == "number":
            value = float(raw) if _NUM_RE.fullmatch(raw) else math.nan
            if not math.isfinite(value):
                raise ApiError(400, f"'{self.name}' must be a finite number like 2.5, got {raw[:80]!r}")
            return value
        if self.kind == "boolean":
            if raw in (_TRUE, _FALSE):
                return raw == _TRUE
            raise ApiError(400, f"'{self.name}' must be true or false, got {raw[:80]!r}")
        if self.kind == "timestamp":
            return parse_timestamp(raw, self.name)
        if self.kind == "symbol":
            if not SYMBOL_RE.fullmatch(raw):
                raise ApiError(
                    400, f"'{self.name}' must be a symbol like XRPUSDT (letters, digits, ._:/-), got {raw[:80]!r}"
                )
            return raw
        if len(raw) > self.max_length:
            raise ApiError(400, f"'{self.name}' is too long ({len(raw)} characters, at most {self.max_length})")
        if self.pattern is not None and not re.fullmatch(self.pattern, raw, re.ASCII):
            raise ApiError(400, f"'{self.name}' has an unexpected format{self._hint()}, got {raw[:80]!r}")
        if self.kind == "csv":
            return tuple(raw.split(","))
        return raw

    def openapi(self) -> dict[str, Any]:
        schema: dict[str, Any]
        if self.kind in ("integer", "number", "boolean"):
            schema = {"type": self.kind}
        elif self.kind == "timestamp":
            schema = {
                "oneOf": [
                    {"type": "integer", "minimum": MIN_TS_MS, "maximum": MAX_TS_MS, "description": "epoch ms"},
                    {"type": "string", "format": "date-time", "pattern": _ISO_DOC_PATTERN},
                ]
            }
        elif self.kind == "symbol":
            schema = {"type": "string", "pattern": SYMBOL_RE.pattern}
        else:
            schema = {"type": "string", "minLength": 1, "maxLength": self.max_length}
            if self.pattern:
                schema["pattern"] = f"^{self.pattern}$"
        if self.enum is not None:
            schema["enum"] = list(self.enum)
        if self.minimum is not None:
            schema["minimum"] = self.minimum
        if self.maximum is not None:
            schema["maximum"] = self.maximum
        if self.default is not None and not isinstance(self.default, tuple):
            schema["default"] = self.default
        out = {
            "name": self.name,
            "in": self.location,
            "required": self.required or self.location == "path",
            "description": self.description,
            "schema": schema,
        }
        if self.example is not None:
            out["example"] = self.example
        return out


def _fmt(value: float | None) -> str:
    if value is None:
        return "inf"
    return str(int(value)) if float(value).is_integer() else str(value)


def parse_query(request: Request, params: Sequence[Param]) -> dict[str, Any]:
    """Parse every declared parameter (query, path or header)."""
    out = {}
    for p in params:
        if p.location == "path":
            raw = request.path_params.get(p.name)
        elif p.location == "header":
            raw = request.headers.get(p.name)
        else:
            raw = request.query_params.get(p.name)
        out[p.name] = p.parse(None if raw is None else str(raw))
    return out


def check_query_names(request: Request, accepted: Sequence[str]) -> None:
    """400 for a query parameter the endpoint does not take, or one given more than once."""
    seen: dict[str, int] = {}
    for name, _ in request.query_params.multi_items():
        seen[name] = seen.get(name, 0) + 1
    unknown = [name for name in seen if name not in accepted]
    path = request.url.path
    if unknown:
        takes = f"it accepts {', '.join(accepted)}" if accepted else "it takes no query parameters"
        raise ApiError(
            400,
            f"unknown query parameter(s) {', '.join(repr(u[:40]) for u in unknown[:5])} for {path}: {takes} "
            "(see GET /openapi.json)",
            accepted=list(accepted),
        )
    repeated = [name for name, n in seen.items() if n > 1]
    if repeated:
        raise ApiError(
            400,
            f"query parameter '{repeated[0]}' is given {seen[repeated[0]]} times; give it once "
            "(lists go in one value, comma-separated: symbol=AAA,BBB)",
        )


# --- bodies -------------------------------------------------------------------------------
def require_json(request: Request) -> None:
    """415 unless a body is declared `application/json` (or `+json`, UTF-8).

    A cross-site page can send text/plain, form or multipart bodies without a CORS preflight
    ("simple" requests); refusing every other type keeps those away from the handlers."""
    declared = request.headers.get("content-type")
    has_body = (request.headers.get("content-length") or "0") != "0" or "transfer-encoding" in request.headers
    if declared is None and not has_body:
        return
    media, _, rest = (declared or "").partition(";")
    media = media.strip().lower()
    charset = re.search(r"charset\s*=\s*\"?([A-Za-z0-9_-]+)", rest)
    json_type = media == "application/json" or (media.startswith("application/") and media.endswith("+json"))
    if json_type and (charset is None or charset.group(1).lower() in ("utf-8", "utf8")):
        return
    raise ApiError(
        415,
        f"send the body as JSON with header 'Content-Type: application/json' (UTF-8); got "
        f"{(declared or 'no Content-Type')[:80]!r}",
    )


async def read_json(request: Request, max_bytes: int) -> Any:
    """The JSON body: 413 above `max_bytes` (checked on Content-Length and while reading), 400 if not JSON."""
    return parse_json(await read_body(request, max_bytes))


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The raw body, non-empty: 413 above `max_bytes` (checked on Content-Length and while reading), 400 if empty."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > max_bytes:
        raise ApiError(
            413,
            f"request body is {declared[:20]} bytes; the limit is {max_bytes} (API_MAX_BODY_BYTES): "
            "split the batch into smaller requests",
        )
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise ApiError(
                413,
                f"request body exceeds {max_bytes} bytes (API_MAX_BODY_BYTES): split the batch into smaller requests",
            )
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body.strip():
        raise ApiError(400, "request body is empty; send a JSON object with Content-Type: application/json")
    return body


def parse_json(body: bytes) -> Any:
    """`body` as JSON, or 400."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"request body is not valid JSON: {exc}") from None


@dataclass(frozen=True)
class Field:
    """One field of a small JSON object body (admin commands)."""

    name: str
    kind: Literal["string", "integer", "boolean", "array"]
    required: bool = False
    default: Any = None
    minimum: int | None = None
    maximum: int | None = None
    description: str = ""
    pattern: str | None = None
    max_length: int = 1000  # characters of a string, or items of an array
    example: Any = None
    min_items: int = 0

    def check(self, body: dict[str, Any]) -> Any:
        if body.get(self.name) is None:
            if self.name in body:
                raise ApiError(422, f"'{self.name}' is null: give it a value or leave it out")
            if self.required:
                raise ApiError(
                    422, f"missing field '{self.name}'" + (f" ({self.description})" if self.description else "")
                )
            return self.default
        value: Any = body[self.name]
        if self.kind == "integer" and isinstance(value, float) and value.is_integer():
            value = int(value)  # 5.0 is the integer 5 in JSON Schema
        expected: Any = {"string": str, "integer": int, "boolean": bool, "array": list}[self.kind]
        if not isinstance(value, expected) or (self.kind == "integer" and isinstance(value, bool)):
            raise ApiError(
                422,
                f"'{self.name}' must be {'an' if self.kind[0] in 'ai' else 'a'} {self.kind}, "
                f"got {orjson.dumps(value).decode()[:80]}",
            )
        if self.kind == "integer":
            lo = -math.inf if self.minimum is None else self.minimum
            hi = math.inf if self.maximum is None else self.maximum
            if not lo <= value <= hi:
                raise ApiError(
                    422, f"'{self.name}' must be in [{_fmt(self.minimum)}, {_fmt(self.maximum)}], got {value}"
                )
        if self.kind in ("string", "array") and len(value) > self.max_length:
            unit = "characters" if self.kind == "string" else "items"
            raise ApiError(422, f"'{self.name}' is too long ({len(value)} {unit}, at most {self.max_length})")
        if self.kind == "array" and len(value) < self.min_items:
            raise ApiError(422, f"'{self.name}' needs at least {self.min_items} item(s), got {len(value)}")
        if self.kind == "array" and not all(isinstance(x, str) and x for x in value):
            raise ApiError(422, f"'{self.name}' must be an array of non-empty strings, got {value[:5]!r}"[:300])
        if self.kind == "string" and self.pattern and not re.fullmatch(self.pattern, value, re.ASCII):
            raise ApiError(422, f"'{self.name}' has an unexpected format ({self.description}), got {value[:80]!r}")
        return value

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.kind, "description": self.description}
        if self.kind == "array":
            out["items"] = {"type": "string", "minLength": 1}
            out["maxItems"] = self.max_length
            if self.min_items:
                out["minItems"] = self.min_items
        if self.kind == "string":
            out["maxLength"] = self.max_length
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        if self.pattern:
            out["pattern"] = f"^{self.pattern}$"
        if self.example is not None:
            out["example"] = self.example
        return out


def object_schema(fields: Sequence[Field]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": "object",
        "properties": {f.name: f.schema() for f in fields},
        "additionalProperties": False,
    }
    required = [f.name for f in fields if f.required]
    if required:
        out["required"] = required
    return out


async def read_command(request: Request, fields: Sequence[Field], max_bytes: int) -> dict[str, Any]:
    """A small JSON object body checked field by field (an empty body counts as `{}`); a field
    the command does not take is a 422 naming the ones it does."""
    body: Any = {}
    if (request.headers.get("content-length") or "0") != "0" or "transfer-encoding" in request.headers:
        try:
            body = await read_json(request, max_bytes)
        except ApiError as exc:
            if exc.status != 400 or "empty" not in exc.message:
                raise
            body = {}
    if not isinstance(body, dict):
        raise ApiError(422, f"request body must be a JSON object, got {type(body).__name__}")
    names = [f.name for f in fields]
    unknown = [k for k in body if k not in names]
    if unknown:
        takes = f"it takes {', '.join(names)}" if names else "it takes no fields (send {})"
        raise ApiError(
            422,
            f"unknown field(s) {', '.join(repr(u[:40]) for u in unknown[:5])}: {takes}",
            accepted=names,
        )
    return {f.name: f.check(body) for f in fields}


# --- the OpenAPI side ---------------------------------------------------------------------
@dataclass(frozen=True)
class Spec:
    """What the OpenAPI document says about one endpoint, and the checks `@spec` runs for it."""

    summary: str
    params: tuple[Param, ...] = ()
    body: dict[str, Any] | None = None
    auth: bool = False
    responses: dict[int, str] = field(default_factory=dict)
    stream: bool = False
    tag: str = "api"
    returns: Schema | None = None  # JSON schema of the 2xx body (JSON endpoints)
    body_required: bool = True
    rate_limited: bool = False  # starts jobs: 429 with Retry-After (api/ratelimit.py)

    @property
    def query_names(self) -> tuple[str, ...]:
        names = tuple(p.name for p in self.params if p.location == "query")
        return (*names, "api_key") if self.auth and self.stream else names


def spec(
    summary: str,
    *,
    params: Sequence[Param] = (),
    body: dict[str, Any] | None = None,
    auth: bool = False,
    responses: dict[int, str] | None = None,
    stream: bool = False,
    tag: str = "api",
    returns: Schema | None = None,
    rate_limited: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Attach an OpenAPI description to a handler (read by `api.app.openapi_document`) and run
    the checks it declares before the handler: JSON content type, API key, query names."""
    body_required = bool(body and body.get("required")) or bool(body and "oneOf" in body)
    s = Spec(
        summary,
        tuple(params),
        body,
        auth,
        dict(responses or {}),
        stream,
        tag,
        returns,
        body_required,
        rate_limited,
    )

    def wrap(fn: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        from api.auth import check_key

        @functools.wraps(fn)
        async def checked(request: Request) -> Response:
            if s.body is not None:
                require_json(request)
            if s.auth:
                check_key(request, request.app.state.api_keys, allow_query=s.stream)
            check_query_names(request, s.query_names)
            return await fn(request)

        checked.__spec__ = s  # type: ignore[attr-defined]
        return checked

    return wrap
