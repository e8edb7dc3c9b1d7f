"""A ClickHouse HTTP request taken apart (pure functions, no I/O).

What standard clients send (clickhouse-connect, curl, Grafana's data source, JDBC):

- the query in the `query` URL parameter, in the body, or both (ClickHouse joins them with a
  line feed), or as a `multipart/form-data` field, which clickhouse-connect uses when the
  bound parameters are large (any other body is query text, whatever its Content-Type: `curl -d`
  sends `application/x-www-form-urlencoded`);
- `param_<name>=<value>` for `{name:Type}` substitution (values in ClickHouse's escaped text
  form, handed to the engine unchanged);
- `database`, `default_format`, `query_id`, session and transport parameters;
- credentials: `X-ClickHouse-User`/`X-ClickHouse-Key`, basic auth, or `user`/`password`
  parameters;
- every other parameter is a ClickHouse setting (resolved by `settings_policy.resolve`).
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import gzip
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from api.clickhouse_http import errors
from api.clickhouse_http.errors import ClickHouseError

# Parameters of the HTTP interface itself, not settings.
HANDLED = frozenset({"query", "database", "default_format", "user", "password", "query_id", "compress", "decompress"})
_IDENTIFIER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_FORMAT_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
MAX_DECOMPRESSED_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class SqlRequest:
    """One query as the client asked for it."""

    query: str
    database: str | None = None
    default_format: str | None = None
    params: dict[str, str] = field(default_factory=dict)  # {name: value} of `param_<name>`
    settings: dict[str, str] = field(default_factory=dict)  # everything else the client sent
    query_id: str = ""


@dataclass(frozen=True)
class Credentials:
    user: str
    password: str | None  # None: nothing was sent


def credentials(headers: dict[str, str], params: dict[str, str]) -> Credentials:
    """The user and password a request carries, in ClickHouse's three ways (header names lower-case)."""
    if "x-clickhouse-key" in headers or "x-clickhouse-user" in headers:
        return Credentials(headers.get("x-clickhouse-user") or "default", headers.get("x-clickhouse-key", ""))
    auth = headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "basic" and value:
        try:
            user, _, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            raise ClickHouseError(
                errors.AUTHENTICATION_FAILED,
                "Authorization: Basic <base64(user:password)> could not be decoded",
                "AUTHENTICATION_FAILED",
            ) from None
        return Credentials(user or "default", password)
    if scheme.lower() == "bearer" and value:
        return Credentials("default", value.strip())
    if "password" in params or "user" in params:
        return Credentials(params.get("user") or "default", params.get("password", ""))
    return Credentials("default", None)


def decode_body(body: bytes, content_encoding: str) -> bytes:
    """The request body without its HTTP `Content-Encoding` (gzip, deflate, lz4), size-capped."""
    encoding = content_encoding.strip().lower()
    if not encoding or encoding == "identity" or not body:
        return body
    try:
        if encoding in ("gzip", "x-gzip"):
            out = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(body, MAX_DECOMPRESSED_BYTES + 1)
        elif encoding == "deflate":
            out = zlib.decompressobj().decompress(body, MAX_DECOMPRESSED_BYTES + 1)
        elif encoding == "lz4":
            import lz4.frame

            out = lz4.frame.LZ4FrameDecompressor().decompress(body, max_length=MAX_DECOMPRESSED_BYTES + 1)
        else:
            raise ClickHouseError(
                errors.UNKNOWN_COMPRESSION_METHOD,
                f"Unknown Content-Encoding {content_encoding!r}: use gzip, deflate, lz4 or none",
            )
    except (zlib.error, gzip.BadGzipFile, RuntimeError, OSError) as exc:
        raise ClickHouseError(errors.CANNOT_DECOMPRESS, f"cannot decompress the {encoding} body: {exc}") from None
    if len(out) > MAX_DECOMPRESSED_BYTES:
        raise ClickHouseError(
            errors.QUERY_IS_TOO_LARGE, f"the decompressed body is over {MAX_DECOMPRESSED_BYTES} bytes"
        )
    return out


def form_fields(content_type: str, body: bytes) -> dict[str, str] | None:
    """Fields of a multipart form body, or None when the body is not one (then it is query text).

    A file part is an external table, which creates a temporary table: refused, as readonly
    ClickHouse does.
    """
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind != "multipart/form-data":  # `curl -d 'SELECT 1'` says x-www-form-urlencoded: the body is the query
        return None
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise ClickHouseError(errors.BAD_ARGUMENTS, "multipart/form-data body without parts (is the boundary right?)")
    fields: dict[str, str] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if part.get_filename() is not None:
            raise errors.readonly(
                f"Cannot execute query in readonly mode: external data ({part.get_filename()!r}) "
                "creates a temporary table; put the values in the query or in param_* parameters"
            )
        if name:
            payload = part.get_payload(decode=True)
            data = payload if isinstance(payload, bytes) else b""
            fields[str(name)] = data.decode(part.get_content_charset() or "utf-8", errors="replace")
    return fields


def parse_request(
    method: str, params: Iterable[tuple[str, str]], body: bytes, *, content_type: str = ""
) -> SqlRequest | None:
    """The query of a request; None for a GET without a query (ClickHouse answers "Ok.")."""
    values: dict[str, str] = {}
    for name, value in params:
        values[name] = value  # the last one wins, as in ClickHouse
    fields = form_fields(content_type, body) if method == "POST" else None
    if fields is not None:
        values.update(fields)
        body = b""
    query = values.get("query", "")
    if body:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise ClickHouseError(errors.SYNTAX_ERROR, "the query is not valid UTF-8") from None
        query = f"{query}\n{text}" if query else text
    if not query.strip():
        if method in ("GET", "HEAD"):
            return None
        raise ClickHouseError(errors.SYNTAX_ERROR, "Empty query: send it in the 'query' parameter or the body")
    for flag in ("compress", "decompress"):
        if values.get(flag, "0") not in ("", "0", "false"):
            raise ClickHouseError(
                errors.NOT_IMPLEMENTED,
                f"{flag}=1 (ClickHouse's native block compression) is not supported by this SQL interface: "
                f"set {flag}=0 (JDBC/DBeaver: compress=0 in the URL) and use HTTP compression "
                "(Accept-Encoding: gzip, deflate or lz4) instead",
                "NOT_IMPLEMENTED",
            )
    database = values.get("database") or None
    if database is not None and not _IDENTIFIER_RE.match(database):
        raise ClickHouseError(errors.UNKNOWN_DATABASE, f"Database {database!r} does not exist", "UNKNOWN_DATABASE")
    default_format = values.get("default_format") or None
    if default_format is not None and not _FORMAT_RE.match(default_format):
        raise ClickHouseError(73, f"Unknown format {default_format}", "UNKNOWN_FORMAT")
    return SqlRequest(
        query=query,
        database=database,
        default_format=default_format,
        params={k[len("param_") :]: v for k, v in values.items() if k.startswith("param_")},
        settings={k: v for k, v in values.items() if k not in HANDLED and not k.startswith("param_")},
        query_id=values.get("query_id", ""),
    )


def escape_value(text: str) -> str:
    """`text` in ClickHouse's escaped text form (how a `param_*` value of type String is read)."""
    return (
        text.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r").replace("\0", "\\0")
    )
