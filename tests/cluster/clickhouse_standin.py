"""A stand-in for a ClickHouse server, for the tests only: ClickHouse's HTTP interface over a
chdb engine in this process, reads and writes, as much of it as clickhouse-connect uses.

No ClickHouse server can run on this machine (the packaged one is too old for
clickhouse-connect), yet the distributed deployment needs one store shared by every flow
process and every API replica. The engine is the real one (chdb is ClickHouse); only the
HTTP layer is ours: the query from the `query` parameter and/or the body, `param_*` query
parameters, `database`, the client's settings applied when the engine knows them, and
inserts (`INSERT … FORMAT Native|Arrow…` with the data in the body, possibly lz4/zstd/gzip
compressed) loaded through a temporary file. Queries run one at a time.

    python -m tests.cluster.clickhouse_standin --path DIR --port PORT
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import tempfile
import threading
import time
import uuid
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

_INSERT = re.compile(r"^\s*INSERT\s+INTO\s+(.+?)\s+FORMAT\s+(\w+)\s*$", re.I | re.S)
_FORMAT = re.compile(r"\bFORMAT\s+(\w+)\s*;?\s*$", re.I)
# Parameters of the HTTP interface itself, not settings.
_NOT_SETTINGS = {"query", "database", "default_format", "query_id", "session_id", "session_timeout", "user", "password"}
_CODE = re.compile(r"Code:\s*(\d+)")


def _decompress(body: bytes, encoding: str) -> bytes:
    encoding = encoding.strip().lower()
    if not encoding or encoding == "identity":
        return body
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    if encoding == "lz4":
        import lz4.frame

        return bytes(lz4.frame.decompress(body))
    if encoding == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj().decompress(body)
    raise ValueError(f"unsupported Content-Encoding {encoding!r}")


class Engine:
    def __init__(self, path: str) -> None:
        import chdb

        self.conn = chdb.connect(path)
        self.lock = threading.Lock()
        self.spool = Path(tempfile.mkdtemp(prefix="ch-standin-"))
        self.settings = {
            row[0]
            for row in (
                json.loads(line)
                for line in self._raw("SELECT name FROM system.settings", "JSONCompactEachRow").splitlines()
                if line
            )
        }

    def _raw(self, sql: str, fmt: str) -> str:
        return self.conn.query(sql, fmt).bytes().decode()

    def run(self, params: dict[str, str], body: bytes) -> tuple[bytes, str]:
        query = params.get("query", "")
        data = b""
        if query and body:
            if _INSERT.match(query):
                data = body
            else:
                query = f"{query}\n{body.decode()}"
        elif body:
            query = body.decode()
        query = query.strip()
        with self.lock:
            self.conn.query(f"USE `{params.get('database') or 'default'}`")
            for name, value in params.items():
                if name in self.settings and name not in _NOT_SETTINGS:
                    quoted = value.replace("\\", "\\\\").replace("'", "\\'")
                    self.conn.query(f"SET {name} = '{quoted}'")
            insert = _INSERT.match(query)
            if insert:
                target, fmt = insert.groups()
                spool = self.spool / f"{uuid.uuid4().hex}.{fmt.lower()}"
                spool.write_bytes(data)
                try:
                    self.conn.query(f"INSERT INTO {target} SELECT * FROM file('{spool}', '{fmt}')")
                finally:
                    spool.unlink()
                return b"", "TabSeparated"
            match = _FORMAT.search(query)
            fmt = match.group(1) if match else params.get("default_format") or "TabSeparated"
            if match:
                query = query[: match.start()].rstrip()
            qparams = {k[len("param_") :]: v for k, v in params.items() if k.startswith("param_")}
            result = self.conn.query(query, fmt, params=qparams) if qparams else self.conn.query(query, fmt)
            return result.bytes(), fmt


def serve(path: str, port: int) -> None:
    engine = Engine(path)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self._handle()

        def do_POST(self) -> None:
            self._handle()

        def _handle(self) -> None:
            url = urlsplit(self.path)
            params = dict(parse_qsl(url.query, keep_blank_values=True))
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if url.path == "/ping" or (not params.get("query") and not body):
                return self._send(200, b"Ok.\n", {})
            started = time.perf_counter()
            try:
                payload, fmt = engine.run(params, _decompress(body, self.headers.get("Content-Encoding", "")))
            except Exception as exc:  # noqa: BLE001 - the engine's error goes back as ClickHouse's
                text = str(exc)
                code = _CODE.search(text)
                message = text if text.startswith("Code:") else f"Code: 1001. DB::Exception: {text}"
                return self._send(
                    500, message.encode(), {"X-ClickHouse-Exception-Code": code.group(1) if code else "1001"}
                )
            summary = {
                "read_rows": "0",
                "read_bytes": "0",
                "written_rows": "0",
                "written_bytes": "0",
                "elapsed_ns": str(int((time.perf_counter() - started) * 1e9)),
            }
            self._send(200, payload, {"X-ClickHouse-Format": fmt, "X-ClickHouse-Summary": json.dumps(summary)})

        def _send(self, status: int, payload: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            headers = {
                "Content-Type": "text/plain; charset=UTF-8",
                "Content-Length": str(len(payload)),
                "X-ClickHouse-Server-Display-Name": "tickcast-standin",
                "X-ClickHouse-Timezone": "UTC",
                "X-ClickHouse-Query-Id": str(uuid.uuid4()),
                **headers,
            }
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--path", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    serve(args.path, args.port)
