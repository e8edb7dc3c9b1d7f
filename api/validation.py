"""Request parameters declared once — type, range, default, description — and used twice:
to parse and check each request (400 with a message naming the parameter, what it
expects and what arrived) and to write the OpenAPI document.

>>> p = Param("limit", "integer", minimum=1, maximum=100, default=10)
>>> p.parse("20"), p.parse(None)
(20, 10)
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from starlette.requests import Request

from api.errors import ApiError

Kind = Literal["string", "integer", "number", "boolean", "timestamp", "symbol", "csv"]
SYMBOL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,31}$")  # same rule as tickcast.records
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MIN_TS_MS = 946_684_800_000  # 2000-01-01, as tickcast.records
MAX_TS_MS = 4_102_444_800_000  # 2100-01-01
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def parse_timestamp(text: str, name: str) -> int:
    """Epoch milliseconds, or ISO-8601 (a time without zone is UTC) -> epoch ms.

    >>> parse_timestamp("2025-11-21T09:00:00 09:00", "start")  # '+' sent unencoded arrives as ' '
    1763683200000
    """
    text = text.strip()
    if re.fullmatch(r"-?\d{1,19}", text):
        value = int(text)
    else:
        try:
            stamp = datetime.fromisoformat(re.sub(r"(T[\d:.]+) (\d\d:?\d\d)$", r"\1+\2", text))
            if stamp.tzinfo is None:
                stamp = stamp.replace(tzinfo=UTC)
            value = round(stamp.timestamp() * 1000)
        except (ValueError, OverflowError):
            raise ApiError(
                400,
                f"'{name}' must be epoch milliseconds (e.g. 1763683200000) or ISO-8601 "
                f"(e.g. 2025-11-21T00:00:00Z), got {text[:60]!r}",
            ) from None
    if not MIN_TS_MS <= value <= MAX_TS_MS:
        raise ApiError(400, f"'{name}'={value} is not epoch milliseconds between years 2000 and 2100")
    return value


@dataclass(frozen=True)
class Param:
    """One query or path parameter."""

    name: str
    kind: Kind = "string"
    required: bool = False
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    enum: tuple[str, ...] | None = None
    description: str = ""
    location: Literal["query", "path"] = "query"
    pattern: str | None = None

    def parse(self, raw: str | None) -> Any:
        if raw is None or raw == "":
            if self.required:
                raise ApiError(400, f"missing required query parameter '{self.name}'" + self._hint())
            return self.default
        value = self._convert(raw)
        if self.enum is not None and value not in self.enum:
            raise ApiError(400, f"'{self.name}' must be one of {', '.join(self.enum)}, got {raw!r}")
        if self.minimum is not None and value < self.minimum or self.maximum is not None and value > self.maximum:
            raise ApiError(400, f"'{self.name}' must be in [{_fmt(self.minimum)}, {_fmt(self.maximum)}], got {raw!r}")
        return value

    def _hint(self) -> str:
        return f" ({self.description})" if self.description else ""

    def _convert(self, raw: str) -> Any:
        if self.kind == "integer":
            try:
                return int(raw)
            except ValueError:
                raise ApiError(400, f"'{self.name}' must be an integer, got {raw!r}") from None
        if self.kind == "number":
            try:
                value = float(raw)
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                raise ApiError(400, f"'{self.name}' must be a finite number, got {raw!r}")
            return value
        if self.kind == "boolean":
            if raw.lower() in _TRUE | _FALSE:
                return raw.lower() in _TRUE
            raise ApiError(400, f"'{self.name}' must be true or false, got {raw!r}")
        if self.kind == "timestamp":
            return parse_timestamp(raw, self.name)
        if self.kind == "symbol":
            if not SYMBOL_RE.match(raw):
                raise ApiError(
                    400, f"'{self.name}' must be a symbol like XRPUSDT (letters, digits, ._:/-), got {raw!r}"
                )
            return raw
        if self.kind == "csv":
            return tuple(item.strip() for item in raw.split(",") if item.strip())
        if self.pattern is not None and not re.fullmatch(self.pattern, raw):
            raise ApiError(400, f"'{self.name}' has an unexpected format{self._hint()}, got {raw!r}")
        if len(raw) > 256:
            raise ApiError(400, f"'{self.name}' is too long ({len(raw)} characters, at most 256)")
        return raw

    def openapi(self) -> dict[str, Any]:
        schema: dict[str, Any]
        if self.kind == "integer":
            schema = {"type": "integer"}
        elif self.kind == "number":
            schema = {"type": "number"}
        elif self.kind == "boolean":
            schema = {"type": "boolean"}
        elif self.kind == "timestamp":
            schema = {
                "oneOf": [
                    {"type": "integer", "minimum": MIN_TS_MS, "maximum": MAX_TS_MS, "description": "epoch ms"},
                    {"type": "string", "format": "date-time"},
                ]
            }
        elif self.kind == "symbol":
            schema = {"type": "string", "pattern": SYMBOL_RE.pattern}
        else:
            schema = {"type": "string"}
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
        return {
            "name": self.name,
            "in": self.location,
            "required": self.required or self.location == "path",
            "description": self.description,
            "schema": schema,
        }


def _fmt(value: float | None) -> str:
    if value is None:
        return "inf"
    return str(int(value)) if float(value).is_integer() else str(value)


def parse_query(request: Request, params: Sequence[Param]) -> dict[str, Any]:
    """Parse every declared parameter; unknown query parameters are ignored (cache busters, api_key)."""
    out = {}
    for p in params:
        raw = request.path_params.get(p.name) if p.location == "path" else request.query_params.get(p.name)
        out[p.name] = p.parse(None if raw is None else str(raw))
    return out


# --- bodies -------------------------------------------------------------------------------
async def read_json(request: Request, max_bytes: int) -> Any:
    """The JSON body: 413 above `max_bytes` (checked on Content-Length and while reading), 400 if not JSON."""
    return parse_json(await read_body(request, max_bytes))


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The raw body, non-empty: 413 above `max_bytes` (checked on Content-Length and while reading), 400 if empty."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > max_bytes:
        raise ApiError(
            413,
            f"request body is {declared} bytes; the limit is {max_bytes} (API_MAX_BODY_BYTES): "
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

    def check(self, body: dict[str, Any]) -> Any:
        if body.get(self.name) is None:
            if self.required:
                raise ApiError(
                    422, f"missing field '{self.name}'" + (f" ({self.description})" if self.description else "")
                )
            return self.default
        value: Any = body[self.name]
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
        if self.kind == "string" and self.pattern and not re.fullmatch(self.pattern, value):
            raise ApiError(422, f"'{self.name}' has an unexpected format ({self.description}), got {value[:80]!r}")
        return value

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.kind, "description": self.description}
        if self.kind == "array":
            out["items"] = {"type": "string"}
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        if self.pattern:
            out["pattern"] = f"^{self.pattern}$"
        return out


def object_schema(fields: Sequence[Field]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {f.name: f.schema() for f in fields},
        "required": [f.name for f in fields if f.required],
    }


async def read_command(request: Request, fields: Sequence[Field], max_bytes: int) -> dict[str, Any]:
    """A small JSON object body checked field by field (an empty body counts as `{}`)."""
    body: Any = {}
    if int(request.headers.get("content-length") or 0) > 0 or "chunked" in request.headers.get("transfer-encoding", ""):
        try:
            body = await read_json(request, max_bytes)
        except ApiError as exc:
            if exc.status != 400 or "empty" not in exc.message:
                raise
            body = {}
    if not isinstance(body, dict):
        raise ApiError(422, f"request body must be a JSON object, got {type(body).__name__}")
    return {f.name: f.check(body) for f in fields}


# --- the OpenAPI side ---------------------------------------------------------------------
@dataclass(frozen=True)
class Spec:
    """What the OpenAPI document says about one endpoint."""

    summary: str
    params: tuple[Param, ...] = ()
    body: dict[str, Any] | None = None
    auth: bool = False
    responses: dict[int, str] = field(default_factory=dict)
    stream: bool = False
    tag: str = "api"


def spec(
    summary: str,
    *,
    params: Sequence[Param] = (),
    body: dict[str, Any] | None = None,
    auth: bool = False,
    responses: dict[int, str] | None = None,
    stream: bool = False,
    tag: str = "api",
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Attach an OpenAPI description to a handler (read by `api.app.openapi_document`);
    `auth=True` also wraps it in `api.auth.requires_key`, so the document and the check agree."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        if auth:
            from api.auth import requires_key

            fn = requires_key(fn)
        fn.__spec__ = Spec(summary, tuple(params), body, auth, dict(responses or {}), stream, tag)  # type: ignore[attr-defined]
        return fn

    return wrap
