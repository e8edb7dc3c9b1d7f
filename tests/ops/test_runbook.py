"""The runbooks' commands work when pasted (issue 17): every fenced `bash` block marked
`<!-- runnable -->` in docs/runbook.md and docs/ko/runbook.md runs against the session's live
`tickcast up`, from a working directory laid out like the repository after `make up` (`.venv`,
`docker/`, `var/clickhouse`, `var/models`, and `var/tickcast.log` — the `tee` of runbook §1).

Only reads and harmless writes are marked (smoke-test ticks, a manual/emergency retrain, a
backup); promote, rollback, restore, cleanup and replays are not run."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.browser.live_server import KEY, TickcastServer

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
RUNBOOKS = (ROOT / "docs" / "runbook.md", ROOT / "docs" / "ko" / "runbook.md")
_BLOCK = re.compile(r"<!-- runnable -->\n```bash\n(.*?)\n```", re.S)
_BROKEN = ("Traceback", "DB::Exception", "command not found", "No such file", "Usage:", "Error:")


def runnable_blocks(path: Path) -> list[str]:
    return _BLOCK.findall(path.read_text())


def test_both_runbooks_mark_the_same_commands() -> None:
    def commands(block: str) -> list[str]:
        return [re.sub(r"\s+#.*$", "", line).rstrip() for line in block.splitlines() if not line.startswith("#")]

    en, ko = (runnable_blocks(p) for p in RUNBOOKS)
    assert len(en) >= 15
    assert [commands(b) for b in en] == [commands(b) for b in ko]


@pytest.fixture(scope="module")
def workdir(tickcast_up: TickcastServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("runbook")
    (root / "var").mkdir()
    for link, target in (
        (root / ".venv", ROOT / ".venv"),
        (root / "docker", ROOT / "docker"),
        (root / "var" / "clickhouse", tickcast_up.workdir / "ch"),
        (root / "var" / "models", tickcast_up.workdir / "models"),
        (root / "var" / "tickcast.log", tickcast_up.log_path),
    ):
        link.symlink_to(target)
    return root


@pytest.mark.parametrize(
    ("book", "index"), [(book, i) for book in RUNBOOKS for i in range(len(runnable_blocks(book)))], ids=str
)
def test_runnable_block_works_when_pasted(book: Path, index: int, workdir: Path, tickcast_up: TickcastServer) -> None:
    block = runnable_blocks(book)[index]
    env = {
        **os.environ,
        "PATH": f"{workdir / '.venv' / 'bin'}:{os.environ['PATH']}",  # `source .venv/bin/activate`
        "TC": tickcast_up.url,
        "KEY": KEY,
        "TICKCAST_API_PORT": str(tickcast_up.port),  # the runbook's system listens on 8000; this one elsewhere
    }
    for name in ("TICKCAST_CLICKHOUSE_URL", "MODEL_STORE_DIR", "TICKCAST_LOG_LEVEL"):
        env.pop(name, None)  # the defaults, as after `make up`: ./var/clickhouse, ./var/models
    done = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", block],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, (
        f"{book.name} block {index} failed ({done.returncode}):\n{block}\n---\n{output[-3000:]}"
    )
    broken = [word for word in _BROKEN if word in output]
    assert not broken, f"{book.name} block {index} printed {broken}:\n{block}\n---\n{output[-3000:]}"
    if "emergency-retrain" not in block:  # 409 while a train job runs is that command's documented answer
        assert '{"error"' not in done.stdout, f"{book.name} block {index}: an API call failed:\n{output[-3000:]}"
