"""A long job on a thread of its own, with a tqdm bar in the caller's (replays, backtests)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from tqdm import tqdm


def run_with_bar(
    job: Callable[[], None], count: Callable[[], int], *, name: str, unit: str, total: int | None, progress: bool
) -> None:
    """Run `job` on a thread named `name` while a bar (hidden unless `progress`) follows
    `count()` against `total`; re-raise the job's failure as `RuntimeError("<name> failed: …")`."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            job()
        except BaseException as exc:  # noqa: BLE001 - re-raised on the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    with tqdm(total=total, desc=name, unit=unit, disable=not progress, mininterval=0.5) as bar:
        while thread.is_alive():
            thread.join(0.25)
            bar.update(count() - bar.n)
        bar.update(count() - bar.n)
    if errors:
        raise RuntimeError(f"{name} failed: {errors[0]}") from errors[0]
