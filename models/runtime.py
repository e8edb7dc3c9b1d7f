"""Serving-side model runtime: production ONNX model with hot reload and baseline fallback.

``Predictor.predict`` never raises for a model problem. When the model cannot answer it
serves the rolling base rate (``models.baseline``) with ``model_version='baseline'`` and a
``fallback_reason`` from ``FALLBACK_REASONS`` (DESIGN §6, seed 004 "폴백 절차").
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

from models.baseline import Baseline
from models.registry import CorruptModel, LoadedModel, ModelRegistry, NoModel

log = logging.getLogger(__name__)

BASELINE_VERSION = "baseline"
FALLBACK_REASONS = (
    "no_model",
    "corrupt_model",
    "inference_error",
    "too_few_samples",
    "memory_error",
)


class Predictor:
    """Scores feature batches with the registry's production model.

    ``refresh()`` compares the registry's change token (two ``stat`` calls) with the one
    of the loaded model and reloads only on change; ``predict`` calls it first unless the
    last check is younger than ``refresh_interval_s``. A promotion, rollback or restore is
    therefore picked up by the next ``predict`` without a restart.
    """

    def __init__(
        self,
        registry_root: str | os.PathLike[str],
        *,
        min_train_samples: int = 500,
        labeled_count: Callable[[], int] | None = None,
        baseline: Baseline | None = None,
        refresh_interval_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = ModelRegistry(registry_root)
        self.min_train_samples = min_train_samples
        self.baseline = baseline if baseline is not None else Baseline()
        self.fallback_counts: Counter[str] = Counter()
        self.last_inference_s = 0.0
        # Default: the labeled rows the loaded model was trained on (its metadata counts).
        self._labeled_count = labeled_count or self._trained_rows
        self._refresh_interval_s = refresh_interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._token: tuple[object, ...] | None = None
        self._model: LoadedModel | None = None
        self._load_problem: str | None = "no_model"
        self._last_check = -float("inf")
        self._last_reason: str | None = None

    @property
    def model_version(self) -> str:
        """Version currently loaded, or ``'baseline'``."""
        return self._model.version if self._model is not None else BASELINE_VERSION

    @property
    def loaded(self) -> LoadedModel | None:
        """The production model in use (version, metadata, scorer), or None while on the baseline."""
        return self._model

    def _trained_rows(self) -> int:
        metadata = self._model.metadata if self._model is not None else {}
        return int((metadata.get("counts") or {}).get("labeled", 0))

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Column order the loaded model expects (empty when none is loaded)."""
        return self._model.feature_names if self._model is not None else ()

    def observe_label(self, symbol: str, label: int) -> None:
        """Feed a realised label to the baseline (the labeler calls this)."""
        self.baseline.update(symbol, label)

    def refresh(self) -> bool:
        """Reload when the production version or its file changed; True if a (re)load happened."""
        with self._lock:
            self._last_check = self._clock()
            try:
                token = self.registry.production_token()
            # An unreadable registry.json: try to load anyway and check again next call.
            except Exception:
                log.exception("cannot read the model registry state")
                token = None
            if token is not None and token == self._token:
                return False
            self._token = token
            old = self.model_version
            self._model, self._load_problem = self._load()
            if self.model_version != old:
                log.info("model switched %s -> %s", old, self.model_version)
            return True

    def _load(self) -> tuple[LoadedModel | None, str | None]:
        """The production model, or None and the fallback reason it implies."""
        try:
            return self.registry.load_production(), None
        except NoModel as exc:
            log.warning("no production model, serving the baseline: %s", exc)
            return None, "no_model"
        except CorruptModel as exc:
            log.error(
                "production model is corrupt (%s), serving the baseline: %s",
                exc.kind,
                exc,
            )
            return None, "corrupt_model"
        except MemoryError:
            log.error("out of memory while loading the production model, serving the baseline")
            return None, "memory_error"
        except Exception:  # unreadable metadata and the like: still a model problem
            log.exception("cannot load the production model, serving the baseline")
            return None, "corrupt_model"

    def predict(self, symbols: Sequence[str], X: np.ndarray) -> tuple[np.ndarray, str, str | None]:
        """``(probs, model_version, fallback_reason)`` for one batch; a single ONNX run.

        ``fallback_reason`` is None when the model answered. ``X`` rows follow ``symbols``
        and columns follow ``feature_names``; a length mismatch is a caller bug (ValueError).
        """
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[0] != len(symbols):
            raise ValueError(f"X must be 2-D with one row per symbol: {len(symbols)} symbols, X shape {X.shape}")
        if self._clock() - self._last_check >= self._refresh_interval_s:
            self.refresh()
        model = self._model
        if model is None:
            return self._fallback(symbols, self._load_problem or "no_model")
        if self._labeled_count() < self.min_train_samples:
            return self._fallback(symbols, "too_few_samples")
        started = time.perf_counter()
        try:
            probs = model.scorer.predict_proba_up(X)
        except MemoryError:
            return self._fallback(symbols, "memory_error")
        except Exception:
            log.exception("inference failed for model %s", model.version)
            return self._fallback(symbols, "inference_error")
        self.last_inference_s = time.perf_counter() - started
        if probs.shape != (len(symbols),) or not np.all(np.isfinite(probs)):
            log.error(
                "model %s returned non-finite or mis-shaped probabilities (shape %s)",
                model.version,
                probs.shape,
            )
            return self._fallback(symbols, "inference_error")
        self._note(None)
        return probs, model.version, None

    def _fallback(self, symbols: Sequence[str], reason: str) -> tuple[np.ndarray, str, str]:
        self.fallback_counts[reason] += 1
        self._note(reason)
        return self.baseline.probs(symbols), BASELINE_VERSION, reason

    def _note(self, reason: str | None) -> None:
        # Log transitions only: a fallback lasting hours must not write a line per candle.
        if reason != self._last_reason:
            if reason is None:
                log.info(
                    "model %s serving again (was falling back: %s)",
                    self.model_version,
                    self._last_reason,
                )
            else:
                # seed 004's phrase, which operators grep for: `grep "Falling back to statistical mode"`
                log.warning("Falling back to statistical mode (the baseline's rolling base rate): %s", reason)
            self._last_reason = reason
