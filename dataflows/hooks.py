"""What the flow calls out to, passed in by the composition root (`build_flow(..., hooks=...)`).

One object per running system (tickcast/app/embedded.py makes it), so nothing a flow
leaves behind is found by the next one started in the same process:

- `start_job`: the model stage's drift and accuracy rules start train/recalibrate jobs
  through it (AUTO_RETRAIN_ENABLED); None: no job is started (replays, tests).
- `predictors`: the process's predictors by model folder, shared by the model stage's
  logic instances (a resume rebuilds the logic, not the loaded model).
- `enable_requests`: an admin "enable provider" arrives through one input partition, but
  every partition's decode gate in this process must hear it: provider -> time (ns) of the
  latest request.
- `backfill_done`: set by the simulator source when its instant backfill is out and it
  starts pacing live records.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from models.runtime import Predictor

# (kind, params, trigger) -> job id
JobStarter = Callable[[str, dict[str, Any], str], str]


@dataclass(frozen=True)
class FlowHooks:
    start_job: JobStarter | None = None
    predictors: dict[str, Predictor] = field(default_factory=dict)
    enable_requests: dict[str, int] = field(default_factory=dict)
    backfill_done: threading.Event = field(default_factory=threading.Event)
