"""Everything a request handler may touch, built once by the process that starts the API."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from api.ratelimit import JobStartLimiter
from tickcast.bus import EventBus, IdClock
from tickcast.jobs import JobCenter
from tickcast.settings import Settings
from tickcast.store import Store

if TYPE_CHECKING:
    from tickcast.scheduler import RetrainScheduler


@dataclass
class AppContext:
    """The API's view of the process.

    `ingest(records)` hands accepted records to the dataflow (embedded: an in-process
    queue the flow reads; distributed: produce to Kafka). Records are input payloads
    in the DESIGN §3 shape — the JSON objects the client sent, each stamped with the
    `ingest_ts` the API gave it — so the flow's own decoder sees the same record a
    file or Kafka replay would. Control records (`{"_control": ...}`) use the same path.
    It may return a `tickcast.acks.Receipt` (embedded, TICKCAST_INGEST_ACK=stored: the
    request waits for its rows, then `forget_receipt` if it gave up) and may raise
    `tickcast.inbox.IngestRefused` (answered 503 with Retry-After).

    `problems()` names the parts failing now beyond what `store`/`flow`/`broker` probe
    (`store_writes`: inserts failing; `flow`: the dataflow died), for /healthz.
    """

    settings: Settings
    store: Store
    bus: EventBus
    ingest: Callable[[list[dict[str, Any]]], Any]
    jobs: JobCenter
    registry_root: Path
    flow_alive: Callable[[], bool] = lambda: True
    broker_ok: Callable[[], bool] | None = None
    id_clock: IdClock = field(default_factory=IdClock)
    scheduler: RetrainScheduler | None = None
    registry_mirror: Callable[[dict[str, Any]], None] | None = None
    problems: Callable[[], dict[str, str]] | None = None
    forget_receipt: Callable[[Any], None] = lambda receipt: None
    job_limiter: JobStartLimiter = field(init=False)

    def __post_init__(self) -> None:
        self.job_limiter = JobStartLimiter(
            per_hour=self.settings.API_JOB_RATE_PER_HOUR, burst=self.settings.API_JOB_RATE_BURST
        )

    def registry(self) -> Any:
        """A `models.registry.ModelRegistry` on `registry_root` (cheap: it keeps no open handles)."""
        from models.registry import ModelRegistry

        return ModelRegistry(self.registry_root, mirror=self.registry_mirror)


def get_ctx(request: Any) -> AppContext:
    return request.app.state.ctx


async def blocking(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a blocking call (ClickHouse, registry files) off the event loop."""
    import functools

    import anyio.to_thread

    return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))
