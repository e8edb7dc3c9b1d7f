"""Every response an API test receives is checked against GET /openapi.json: its status is
documented for the operation, its content type is the documented one, and a JSON body
validates against the documented schema. So the document is tested on the realistic data
of every functional test, not only on what the fuzzer generates (tests/api/test_fuzz.py).
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import jsonschema_rs
import orjson

_PARAM = re.compile(r"\{[^}]+\}")


def to_json_schema(schema: Any) -> Any:
    """OpenAPI 3.0 schema -> JSON Schema: `nullable: true` becomes a union with null."""
    if isinstance(schema, list):
        return [to_json_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: to_json_schema(v) for k, v in schema.items() if k not in ("nullable", "example")}
    if schema.get("nullable"):
        if "enum" in out and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
        return {"anyOf": [out, {"type": "null"}]}
    return out


class DocumentChecker:
    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self._routes = [
            (re.compile("^" + _PARAM.sub("[^/]+", path) + "$"), path) for path in sorted(document["paths"], key=len)
        ]
        self._validators: dict[tuple[str, str, str], Any] = {}
        self.checked = 0

    def _operation(self, method: str, path: str) -> dict[str, Any] | None:
        for regex, template in self._routes:
            if regex.match(path):
                return self.document["paths"][template].get(method.lower())
        return None

    def check(self, response: httpx.Response) -> None:
        request = response.request
        method = "GET" if request.method == "HEAD" else request.method
        operation = self._operation(method, request.url.path)
        if operation is None:  # an unknown path or method: the router's JSON 404/405
            assert response.status_code in (404, 405), f"{method} {request.url.path}: {response.status_code}"
            return
        responses = operation["responses"]
        where = f"{method} {request.url.path} -> {response.status_code}"
        assert str(response.status_code) in responses, f"{where}: status not in the document ({sorted(responses)})"
        documented = responses[str(response.status_code)].get("content", {})
        media = response.headers.get("content-type", "").split(";")[0].strip()
        assert media in documented, f"{where}: content type {media!r}, documented {sorted(documented)}"
        for name, header in responses[str(response.status_code)].get("headers", {}).items():
            assert not header.get("required") or name in response.headers, f"{where}: no {name} header"
        if media != "application/json" or request.method == "HEAD":
            return
        key = (method, request.url.path, str(response.status_code))
        validator = self._validators.get(key)
        if validator is None:
            validator = jsonschema_rs.validator_for(to_json_schema(documented[media]["schema"]))
            self._validators[key] = validator
        response.read()
        body = orjson.loads(response.content)
        errors = [f"{'/'.join(map(str, e.instance_path))}: {e.message}" for e in validator.iter_errors(body)]
        assert not errors, f"{where}: body does not match the document: {errors[:5]}"
        self.checked += 1
