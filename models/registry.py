"""On-disk model registry with the seed 004 layout (DESIGN §7).

::

    <root>/trained/<version>.onnx      calibrated model served by ONNX Runtime
    <root>/trained/<version>.joblib    uncalibrated sklearn pipeline (for recalibration)
    <root>/metadata/<version>.json     metadata incl. status and sha256 of both files
    <root>/metadata/registry.json      {production, history, last_promoted_at, cooldown_s}
    <root>/metadata/retrain_metadata.json  seed 004's retrain status: last/next run, status, trigger, versions
    <root>/backups/<version>.*         copies made by ``backup``

Version ids sort by creation time: ``m20251121T101500Z-ab12cd`` (UTC second + onnx sha256[:6]).
Status: ``candidate`` -> ``production`` -> ``archived``; a result that failed its gates is
``rejected`` and can never be promoted. Every write goes to a temp file then ``os.replace``,
so a reader (the Predictor in another thread or process) never sees half a file.
"""

from __future__ import annotations

import builtins
import hashlib
import io
import json
import logging
import math
import os
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import joblib
import numpy as np

from models.onnx_export import OnnxScorer

if TYPE_CHECKING:  # the serving path (flow, API) loads models without importing training (sklearn, pandas)
    from models.training import TrainResult

log = logging.getLogger(__name__)

STATE_FILE = "registry.json"
RETRAIN_FILE = "retrain_metadata.json"
_NOT_VERSIONS = frozenset({STATE_FILE, RETRAIN_FILE})
_RETRAIN_LOCK = threading.Lock()
STATUSES = ("candidate", "production", "archived", "rejected")


class RegistryError(RuntimeError):
    """A registry operation cannot be done as asked (unknown version, nothing to roll back to...)."""


class PromotionRefused(RegistryError):
    """``promote`` declined; ``reason`` is machine-readable, ``next_allowed_at`` set for cooldowns."""

    def __init__(self, message: str, *, reason: str, next_allowed_at: float | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.next_allowed_at = next_allowed_at


class NoModel(RegistryError):
    """No production model (seed 004 "모델 파일 없음")."""


class CorruptModel(RegistryError):
    """The production file fails its sha256 check or ONNX Runtime cannot load it."""

    def __init__(self, message: str, *, kind: str) -> None:
        super().__init__(message)
        self.kind = kind  # "sha256" | "load_error"


@dataclass(frozen=True)
class LoadedModel:
    """A verified production model, ready to score."""

    version: str
    metadata: dict[str, Any]
    scorer: OnnxScorer
    sha256: str
    feature_names: tuple[str, ...]


@dataclass(frozen=True)
class ModelArtifact:
    """A registered version with its uncalibrated pipeline (input of ``recalibrate_model``)."""

    version: str
    metadata: dict[str, Any]
    pipeline: Any


# ---------------------------------------------------------------- small pure helpers


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def iso_utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def make_version(ts: float, sha256: str) -> str:
    """``m<UTC yyyymmddThhmmssZ>-<sha256[:6]>``; lexical order = creation order (per second)."""
    return "m" + datetime.fromtimestamp(ts, tz=UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + sha256[:6]


def to_jsonable(value: Any) -> Any:
    """Numpy scalars/arrays -> Python, non-finite floats -> None (JSON has no NaN)."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _atomic_copy(src: Path, dst: Path) -> None:
    _atomic_write(dst, src.read_bytes())


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(to_jsonable(obj), indent=2, sort_keys=True, allow_nan=False).encode()


# ---------------------------------------------------------------- registry


class ModelRegistry:
    """Versions, statuses and the production pointer of the models under ``root``."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        mirror: Callable[[dict[str, Any]], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.root = Path(root)
        self.trained = self.root / "trained"
        self.meta_dir = self.root / "metadata"
        self.backups = self.root / "backups"
        for d in (self.trained, self.meta_dir, self.backups):
            d.mkdir(parents=True, exist_ok=True)
        self.state_path = self.meta_dir / STATE_FILE
        self._mirror = mirror
        self._clock = clock
        self._token_cache: tuple[Any, str | None] | None = None

    # -- paths and raw state

    def onnx_path(self, version: str) -> Path:
        return self.trained / f"{version}.onnx"

    def joblib_path(self, version: str) -> Path:
        return self.trained / f"{version}.joblib"

    def _meta_path(self, version: str) -> Path:
        return self.meta_dir / f"{version}.json"

    def state(self) -> dict[str, Any]:
        """``{production, previous, history, last_promoted_at, cooldown_s}`` (defaults when absent)."""
        try:
            state = json.loads(self.state_path.read_text())
        except FileNotFoundError:
            state = {}
        history = list(state.get("history", []))
        return {
            "production": state.get("production"),
            "previous": history[-1] if history else None,
            "history": history,
            "last_promoted_at": state.get("last_promoted_at"),
            "cooldown_s": state.get("cooldown_s", 0),
        }

    def _write_state(self, state: Mapping[str, Any]) -> None:
        keep = {k: state[k] for k in ("production", "history", "last_promoted_at", "cooldown_s")}
        keep["previous"] = keep["history"][-1] if keep["history"] else None
        _atomic_write(self.state_path, _json_bytes(keep))

    def metadata(self, version: str) -> dict[str, Any]:
        try:
            return json.loads(self._meta_path(version).read_text())
        except FileNotFoundError:
            raise RegistryError(f"unknown model version {version!r}: no {self._meta_path(version)}") from None

    def _save_metadata(self, meta: dict[str, Any]) -> None:
        _atomic_write(self._meta_path(meta["version"]), _json_bytes(meta))
        self._notify(meta)

    def _set_status(self, version: str, status: str) -> dict[str, Any]:
        meta = self.metadata(version)
        meta["status"] = status
        meta["status_changed_at"] = iso_utc(self._clock())
        self._save_metadata(meta)
        return meta

    def _notify(self, meta: dict[str, Any]) -> None:
        if self._mirror is None:
            return
        try:
            self._mirror(to_jsonable(meta))
        except Exception:  # the files are the source of truth; a mirror outage must not undo them
            log.exception(
                "model registry mirror failed for %s (status %s)",
                meta.get("version"),
                meta.get("status"),
            )

    # -- register / list

    def register(self, result: TrainResult) -> str:
        """Store a trained result; status ``candidate`` if it passed its gates, else ``rejected``."""
        now = self._clock()
        onnx_sha = sha256_bytes(result.onnx_bytes)
        buf = io.BytesIO()
        joblib.dump(result.pipeline, buf)
        pipe_bytes = buf.getvalue()
        version = make_version(now, onnx_sha)
        n = 1
        while self._meta_path(version).exists():  # same second and same bytes: keep ids unique
            n += 1
            version = f"{make_version(now, onnx_sha)}-{n}"
        _atomic_write(self.onnx_path(version), result.onnx_bytes)
        _atomic_write(self.joblib_path(version), pipe_bytes)
        meta = {
            **result.metadata(),
            "version": version,
            "status": "candidate" if result.passed else "rejected",
            "created_at": iso_utc(now),
            "created_ts": now,
            "status_changed_at": iso_utc(now),
            "sha256": onnx_sha,
            "joblib_sha256": sha256_bytes(pipe_bytes),
            "onnx_file": f"trained/{version}.onnx",
            "joblib_file": f"trained/{version}.joblib",
        }
        self._save_metadata(meta)
        log.info(
            "registered model %s status=%s auc=%.4f ece=%.4f",
            version,
            meta["status"],
            result.roc_auc,
            result.ece_prod,
        )
        return version

    def list(self) -> list[dict[str, Any]]:
        """All versions' metadata, oldest first."""
        out = []
        for path in self.meta_dir.glob("*.json"):
            if path.name not in _NOT_VERSIONS:
                out.append(json.loads(path.read_text()))
        return sorted(out, key=lambda m: (m.get("created_ts", 0.0), m["version"]))

    def production(self) -> dict[str, Any] | None:
        version = self.state()["production"]
        return None if version is None else self.metadata(version)

    # -- promotion

    def promotion_status(self, *, cooldown_s: int | None = None) -> dict[str, Any]:
        """``{production, last_promoted_at, cooldown_s, next_allowed_at, in_cooldown}`` (epoch s + ISO)."""
        state = self.state()
        cd = state["cooldown_s"] if cooldown_s is None else cooldown_s
        last = state["last_promoted_at"]
        nxt = None if last is None else last + cd
        return {
            "production": state["production"],
            "last_promoted_at": last,
            "last_promoted_at_iso": None if last is None else iso_utc(last),
            "cooldown_s": cd,
            "next_allowed_at": nxt,
            "next_allowed_at_iso": None if nxt is None else iso_utc(nxt),
            "in_cooldown": nxt is not None and self._clock() < nxt,
        }

    def promote(
        self,
        version: str,
        *,
        auto_promote_enabled: bool = True,
        cooldown_s: int,
        force: bool = False,
    ) -> dict[str, Any]:
        """Make ``version`` production; the old production becomes ``archived`` (kept for rollback).

        Refused (``PromotionRefused``): rejected versions always; with ``auto_promote_enabled``
        False or inside ``cooldown_s`` of the last promotion, unless ``force`` (operator action).
        """
        meta = self.metadata(version)
        if meta["status"] == "rejected":
            raise PromotionRefused(
                f"model {version} failed its gates ({'; '.join(meta['gates']['failures'])}) and cannot be promoted",
                reason="rejected",
            )
        state = self.state()
        if state["production"] == version:
            return meta
        if not force and not auto_promote_enabled:
            raise PromotionRefused(
                f"auto-promotion is disabled (AUTO_PROMOTE_ENABLED=false); {version} needs an explicit, forced promotion",
                reason="auto_promote_disabled",
            )
        now = self._clock()
        last = state["last_promoted_at"]
        if not force and last is not None and now < last + cooldown_s:
            nxt = last + cooldown_s
            raise PromotionRefused(
                f"promotion cooldown: last promotion at {iso_utc(last)}, next allowed at {iso_utc(nxt)} "
                f"({nxt - now:.0f}s left)",
                reason="cooldown",
                next_allowed_at=nxt,
            )
        old = state["production"]
        history = [v for v in state["history"] if v != version]
        if old is not None:
            history.append(old)
        self._write_state(
            {
                "production": version,
                "history": history,
                "last_promoted_at": now,
                "cooldown_s": cooldown_s,
            }
        )
        if old is not None:
            self._set_status(old, "archived")
        log.info("promoted model %s (previous production %s)", version, old)
        self._note_versions()
        return self._set_status(version, "production")

    def rollback(self) -> dict[str, Any]:
        """Restore the previous production; the current one becomes ``archived``. Ignores the cooldown."""
        state = self.state()
        history = list(state["history"])
        while history and not self._meta_path(history[-1]).exists():
            history.pop()  # a cleaned-up entry cannot be rolled back to
        if not history:
            raise RegistryError("nothing to roll back to: no previous production model is recorded")
        target = history.pop()
        current = state["production"]
        self._write_state({**state, "production": target, "history": history})
        if current is not None:
            self._set_status(current, "archived")
        log.warning("rolled back production model %s -> %s", current, target)
        self._note_versions()
        return self._set_status(target, "production")

    # -- backup / restore / cleanup

    def backup(self, version: str | None = None) -> builtins.list[Path]:
        """Copy a version's files (default: production) into ``backups/``; returns the copies."""
        version = version or self.state()["production"]
        if version is None:
            raise RegistryError("no production model to back up; name a version explicitly")
        meta = self.metadata(version)
        data = self.onnx_path(version).read_bytes()
        if sha256_bytes(data) != meta["sha256"]:
            raise CorruptModel(
                f"refusing to back up {version}: its .onnx fails the sha256 check",
                kind="sha256",
            )
        copies = []
        for src in (
            self.onnx_path(version),
            self.joblib_path(version),
            self._meta_path(version),
        ):
            dst = self.backups / src.name
            _atomic_copy(src, dst)
            copies.append(dst)
        log.info("backed up model %s to %s", version, self.backups)
        return copies

    def has_backup(self, version: str) -> bool:
        """A copy of ``version`` exists in ``backups/`` (what ``restore`` needs)."""
        return (self.backups / f"{version}.json").exists() and (self.backups / f"{version}.onnx").exists()

    def restore(self, version: str) -> dict[str, Any]:
        """Copy ``version`` back from ``backups/`` into ``trained/`` after checking its sha256."""
        src_meta = self.backups / f"{version}.json"
        if not src_meta.exists():
            raise RegistryError(f"no backup of {version} in {self.backups}")
        meta = json.loads(src_meta.read_text())
        live = self._meta_path(version).exists()
        if live and self.metadata(version)["sha256"] != meta["sha256"]:
            raise CorruptModel(
                f"backup of {version} does not match the registered sha256; not restored",
                kind="sha256",
            )
        onnx = (self.backups / f"{version}.onnx").read_bytes()
        if sha256_bytes(onnx) != meta["sha256"]:
            raise CorruptModel(
                f"backup of {version} fails its sha256 check; not restored",
                kind="sha256",
            )
        pipe = self.backups / f"{version}.joblib"
        if pipe.exists() and sha256_bytes(pipe.read_bytes()) != meta.get("joblib_sha256"):
            raise CorruptModel(
                f"backup pipeline of {version} fails its sha256 check; not restored",
                kind="sha256",
            )
        _atomic_write(self.onnx_path(version), onnx)
        if pipe.exists():
            _atomic_copy(pipe, self.joblib_path(version))
        if live:
            meta = self.metadata(version)  # keep the live status
        elif meta.get("status") == "production" and self.state()["production"] != version:
            meta["status"] = "archived"
        meta["restored_at"] = iso_utc(self._clock())
        self._save_metadata(meta)
        log.warning("restored model %s from backup", version)
        return meta

    def cleanup(self, older_than_days: float) -> builtins.list[str]:
        """Delete versions created more than N days ago from trained/ and metadata/.

        Never the production model, nor the rollback target (the most recent previous
        production). Backups are left alone. Returns the removed version ids.
        """
        state = self.state()
        keep = {state["production"], state["previous"]}
        cutoff = self._clock() - older_than_days * 86400.0
        removed = []
        for meta in self.list():
            version = meta["version"]
            if version in keep or meta.get("created_ts", math.inf) >= cutoff:
                continue
            self.onnx_path(version).unlink(missing_ok=True)
            self.joblib_path(version).unlink(missing_ok=True)
            self._meta_path(version).unlink(missing_ok=True)
            removed.append(version)
            self._notify(
                {
                    **meta,
                    "status": "deleted",
                    "status_changed_at": iso_utc(self._clock()),
                }
            )
        if removed:
            log.info(
                "cleaned up %d model versions older than %s days: %s",
                len(removed),
                older_than_days,
                removed,
            )
        return removed

    # -- retrain metadata (seed 004: `cat .../metadata/retrain_metadata.json`)

    @property
    def retrain_metadata_path(self) -> Path:
        return self.meta_dir / RETRAIN_FILE

    def retrain_metadata(self) -> dict[str, Any]:
        """The retrain status file's content (``{}`` before anything wrote it)."""
        try:
            return dict(json.loads(self.retrain_metadata_path.read_text()))
        except FileNotFoundError:
            return {}

    def update_retrain_metadata(self, patch: Mapping[str, Any]) -> dict[str, Any]:
        """Merge ``patch`` into ``retrain_metadata.json`` (atomic replace; one writer at a time,
        across processes too: an flock on a lock file next to it)."""
        import fcntl

        with _RETRAIN_LOCK, (self.meta_dir / f".{RETRAIN_FILE}.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                data = {**self.retrain_metadata(), **patch, "updated_at": iso_utc(self._clock())}
                _atomic_write(self.retrain_metadata_path, _json_bytes(data))
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        return data

    def _note_versions(self) -> None:
        """Keep `versions` of retrain_metadata.json current after a promotion or rollback."""
        state = self.state()
        try:
            versions = dict(self.retrain_metadata().get("versions") or {})
            versions.update(production=state["production"], previous=state["previous"])
            self.update_retrain_metadata({"versions": versions})
        except Exception:  # noqa: BLE001 - the file is for operators; the promotion stands
            log.exception("could not update %s", RETRAIN_FILE)

    # -- loading

    def load_production(self) -> LoadedModel:
        """Verify and load the production ONNX model.

        Raises ``NoModel`` (none promoted, or its file is gone) or ``CorruptModel``
        (``kind='sha256'`` on a checksum mismatch, ``kind='load_error'`` if ONNX Runtime fails).
        """
        version = self.state()["production"]
        if version is None:
            raise NoModel(f"no production model in {self.root}; train and promote one")
        meta = self.metadata(version)
        try:
            data = self.onnx_path(version).read_bytes()
        except FileNotFoundError:
            raise NoModel(
                f"production model file {self.onnx_path(version)} is missing; restore it from backups/"
            ) from None
        actual = sha256_bytes(data)
        if actual != meta["sha256"]:
            raise CorruptModel(
                f"model {version} is corrupt: sha256 of {self.onnx_path(version).name} is {actual[:12]}…, "
                f"metadata says {meta['sha256'][:12]}…; restore it from backups/ or roll back",
                kind="sha256",
            )
        try:
            scorer = OnnxScorer(data)  # the verified bytes, not a second read of the file
        except Exception as exc:
            raise CorruptModel(
                f"model {version} cannot be loaded by ONNX Runtime: {exc}",
                kind="load_error",
            ) from exc
        return LoadedModel(version, meta, scorer, actual, tuple(meta.get("feature_names", ())))

    def load_version(self, version: str) -> ModelArtifact:
        """The uncalibrated pipeline of ``version`` (sha256-checked before unpickling)."""
        meta = self.metadata(version)
        data = self.joblib_path(version).read_bytes()
        if sha256_bytes(data) != meta.get("joblib_sha256"):
            raise CorruptModel(f"pipeline file of {version} fails its sha256 check", kind="sha256")
        return ModelArtifact(version, meta, joblib.load(io.BytesIO(data)))

    def production_token(self) -> tuple[Any, ...]:
        """Cheap change detector for hot reload: stats of the state file and the production ONNX file.

        The state file is parsed only when its stat changed, so polling costs two ``stat`` calls.
        """
        state_stat = _stat(self.state_path)
        cached = self._token_cache
        if cached is not None and cached[0] == state_stat:
            version = cached[1]
        else:
            version = self.state()["production"] if state_stat is not None else None
            self._token_cache = (state_stat, version)
        return (
            state_stat,
            version,
            None if version is None else _stat(self.onnx_path(version)),
        )


def _stat(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)
