"""JSON Schema building blocks for the response bodies in the OpenAPI document.

OpenAPI 3.0 dialect: a value that may be null says `nullable: true` (3.0 has no "null"
type). Objects are closed (`additionalProperties: false`) unless said otherwise, so a
field a handler adds without describing it fails the response-schema check of
tests/api/test_fuzz.py and of every API test (tests/api/conftest.py validates each
response against this document).

>>> obj({"n": INT, "note": STR}, optional=["note"])["required"]
['n']
>>> nullable(NUM)
{'type': 'number', 'nullable': True}
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

Schema = dict[str, Any]

STR: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
NUM: Schema = {"type": "number"}
BOOL: Schema = {"type": "boolean"}
ANY: Schema = {}
MS: Schema = {"type": "integer", "description": "epoch milliseconds"}


def nullable(schema: Schema) -> Schema:
    return {**schema, "nullable": True}


def arr(items: Schema, **extra: Any) -> Schema:
    return {"type": "array", "items": items, **extra}


def obj(properties: dict[str, Schema], *, optional: Iterable[str] = (), closed: bool = True, **extra: Any) -> Schema:
    """An object with these properties, all required except `optional`; closed by default."""
    skip = set(optional)
    out: Schema = {"type": "object", "properties": properties, **extra}
    required = [name for name in properties if name not in skip]
    if required:
        out["required"] = required
    if closed:
        out["additionalProperties"] = False
    return out


def free_object(description: str = "") -> Schema:
    """A JSON object whose keys are data (per-feature maps, model metadata, job results)."""
    return {"type": "object", "description": description} if description else {"type": "object"}


def enum(*values: str) -> Schema:
    return {"type": "string", "enum": list(values)}


ERROR: Schema = obj(
    {"error": {"type": "string", "description": "what went wrong and what to do about it"}},
    closed=False,
    description="every error: a message a person can act on, sometimes with details (details, plan, known, ...)",
)

JOB: Schema = obj(
    {
        "job_id": STR,
        "kind": STR,
        "status": enum("queued", "running", "succeeded", "failed"),
        "progress": NUM,
        "message": STR,
        "params": ANY,
        "result": ANY,
        "error": STR,
        "trigger": STR,
        "created_at": nullable(MS),
        "started_at": nullable(MS),
        "finished_at": nullable(MS),
        "updated_at": nullable(MS),
        "message_code": nullable(STR),
        "message_params": ANY,
        "error_code": nullable(STR),
        "error_params": ANY,
    },
    optional=("message_code", "message_params", "error_code", "error_params"),
)
JOB_STARTED: Schema = obj(
    {
        "job_id": STR,
        "kind": STR,
        "trigger": STR,
        "already_running": {"type": "boolean", "description": "true: the job of this kind that was running (200)"},
        "status_url": STR,
        "requested_trigger": {"type": "string", "description": "the trigger asked for, when another job was running"},
        "running_job": free_object("the running job (id, kind, trigger, status, progress, started_at)"),
        "outcome": STR,
    },
    optional=("requested_trigger", "running_job", "outcome"),
)
