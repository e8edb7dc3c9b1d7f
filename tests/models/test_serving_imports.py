"""The serving path (the flow and the API load and score models) does not import the
training stack: scikit-learn and pandas stay out of the flow process until a job trains."""

from __future__ import annotations

import subprocess
import sys


def test_the_flow_and_the_model_runtime_do_not_import_training() -> None:
    code = (
        "import sys, dataflows.signals, models.runtime, models.registry; "
        "print(','.join(m for m in ('sklearn', 'pandas', 'models.training') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""
