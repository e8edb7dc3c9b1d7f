"""Registry on disk: register, promote (gates, cooldown), rollback, backup/restore, cleanup, sha256."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from scipy.special import expit

from models.registry import (
    CorruptModel,
    ModelRegistry,
    NoModel,
    PromotionRefused,
    RegistryError,
)
from models.training import Gates, TrainResult, recalibrate_model, train_model
from tests.models.test_training import FEATURES, MINUTE, make_frame, onnx_up

DAY = 86400.0
START = 1_763_683_200.0  # 2025-11-21T00:00:00Z


class FakeClock:
    def __init__(self, t: float = START) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def good() -> TrainResult:
    return train_model(make_frame(4000, seed=11), feature_names=FEATURES, gates=Gates(), ablation=False)


@pytest.fixture(scope="module")
def good2() -> TrainResult:
    return train_model(make_frame(4000, seed=12), feature_names=FEATURES, gates=Gates(), ablation=False)


@pytest.fixture(scope="module")
def bad() -> TrainResult:
    return train_model(
        make_frame(2000, seed=13, noise=True),
        feature_names=FEATURES,
        gates=Gates(),
        ablation=False,
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def mirrored() -> list[dict]:
    return []


@pytest.fixture
def reg(tmp_path: Path, clock: FakeClock, mirrored: list[dict]) -> ModelRegistry:
    return ModelRegistry(tmp_path / "store", mirror=mirrored.append, clock=clock)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_register_writes_seed_layout_and_metadata(reg: ModelRegistry, good: TrainResult, mirrored: list[dict]) -> None:
    v = reg.register(good)
    assert v.startswith("m20251121T000000Z-") and len(v.split("-")[1]) == 6
    root = reg.root
    assert {p.name for p in root.iterdir()} >= {"trained", "metadata", "backups"}
    onnx, meta_path = root / "trained" / f"{v}.onnx", root / "metadata" / f"{v}.json"
    assert onnx.read_bytes() == good.onnx_bytes and (root / "trained" / f"{v}.joblib").exists()
    meta = json.loads(meta_path.read_text())
    assert meta["status"] == "candidate" and meta["version"] == v
    assert meta["sha256"] == sha(onnx) and v.endswith(meta["sha256"][:6])
    assert meta["created_at"].startswith("2025-11-21T00:00:00")
    assert meta["feature_names"] == FEATURES
    assert meta["temperature"] == pytest.approx(good.temperature)
    assert meta["ece_prod"] == pytest.approx(good.ece_prod) and meta["gates"]["passed"] is True
    assert set(meta["train_mean"]) == set(FEATURES) and meta["counts"]["validation"] > 0
    assert mirrored[-1]["version"] == v and mirrored[-1]["status"] == "candidate"
    listed = reg.list()
    assert [m["version"] for m in listed] == [v]
    assert {"version", "status", "sha256", "created_at", "metrics"} <= set(listed[0])


def test_versions_sort_by_creation(reg: ModelRegistry, clock: FakeClock, good: TrainResult, good2: TrainResult) -> None:
    a = reg.register(good2)
    clock.t += 61
    b = reg.register(good)
    clock.t += 1
    c = reg.register(good)  # same bytes, later second -> distinct id
    assert a < b < c and len({a, b, c}) == 3
    assert [m["version"] for m in reg.list()] == [a, b, c]


def test_rejected_is_registered_but_never_promoted(
    reg: ModelRegistry, clock: FakeClock, good: TrainResult, bad: TrainResult
) -> None:
    v_good = reg.register(good)
    reg.promote(v_good, cooldown_s=0)
    clock.t += 10
    v_bad = reg.register(bad)
    assert reg.metadata(v_bad)["status"] == "rejected"
    assert reg.metadata(v_bad)["gates"]["failures"] == bad.gate_failures
    with pytest.raises(PromotionRefused, match="failed its gates") as info:
        reg.promote(v_bad, cooldown_s=0, force=True)
    assert info.value.reason == "rejected"
    assert reg.production()["version"] == v_good


def test_promote_cooldown_force_and_rollback(
    reg: ModelRegistry,
    clock: FakeClock,
    good: TrainResult,
    good2: TrainResult,
    mirrored: list[dict],
) -> None:
    a = reg.register(good)
    clock.t += 5
    b = reg.register(good2)
    assert reg.production() is None
    reg.promote(a, cooldown_s=3600)
    t_a = clock.t
    clock.t += 600
    with pytest.raises(PromotionRefused, match="cooldown") as info:
        reg.promote(b, cooldown_s=3600)
    assert info.value.reason == "cooldown" and info.value.next_allowed_at == t_a + 3600
    status = reg.promotion_status()
    assert status["production"] == a and status["cooldown_s"] == 3600
    assert status["last_promoted_at"] == t_a and status["next_allowed_at"] == t_a + 3600
    assert status["in_cooldown"] is True
    clock.t = t_a + 3600  # cooldown over
    assert reg.promotion_status()["in_cooldown"] is False
    reg.promote(b, cooldown_s=3600)
    assert reg.production()["version"] == b and reg.metadata(a)["status"] == "archived"
    assert [m["status"] for m in mirrored[-2:]] == ["archived", "production"]
    state = json.loads((reg.root / "metadata" / "registry.json").read_text())
    assert state["production"] == b and state["previous"] == a

    clock.t += 10  # inside the new cooldown, but rollback is an emergency action
    reg.rollback()
    assert reg.production()["version"] == a and reg.metadata(b)["status"] == "archived"
    with pytest.raises(RegistryError, match="nothing to roll back"):
        reg.rollback()
    reg.promote(b, cooldown_s=3600, force=True)  # operator override of the cooldown
    assert reg.production()["version"] == b


def test_auto_promote_disabled_needs_force(reg: ModelRegistry, good: TrainResult) -> None:
    v = reg.register(good)
    with pytest.raises(PromotionRefused) as info:
        reg.promote(v, auto_promote_enabled=False, cooldown_s=0)
    assert info.value.reason == "auto_promote_disabled" and reg.production() is None
    reg.promote(v, auto_promote_enabled=False, cooldown_s=0, force=True)
    assert reg.production()["version"] == v


def test_load_production_verifies_sha256(reg: ModelRegistry, good: TrainResult) -> None:
    with pytest.raises(NoModel):
        reg.load_production()
    v = reg.register(good)
    reg.promote(v, cooldown_s=0)
    loaded = reg.load_production()
    X = make_frame(300, seed=3)[FEATURES].to_numpy()
    np.testing.assert_allclose(loaded.scorer.predict_proba_up(X), onnx_up(good.onnx_bytes, X), atol=1e-12)
    path = reg.onnx_path(v)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # one flipped byte
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptModel, match="sha256") as info:
        reg.load_production()
    assert info.value.kind == "sha256"


def test_load_error_is_corrupt_model(reg: ModelRegistry, good: TrainResult) -> None:
    v = reg.register(good)
    reg.promote(v, cooldown_s=0)
    # bytes that match their recorded checksum but are not an ONNX model (a truncated export)
    junk = good.onnx_bytes[:100]
    reg.onnx_path(v).write_bytes(junk)
    meta_path = reg.root / "metadata" / f"{v}.json"
    meta = json.loads(meta_path.read_text())
    meta["sha256"] = hashlib.sha256(junk).hexdigest()
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CorruptModel) as info:
        reg.load_production()
    assert info.value.kind == "load_error"


def test_backup_and_restore_repair_a_corrupt_production_file(reg: ModelRegistry, good: TrainResult) -> None:
    v = reg.register(good)
    reg.promote(v, cooldown_s=0)
    copies = reg.backup()
    assert {p.name for p in copies} == {f"{v}.onnx", f"{v}.joblib", f"{v}.json"}
    assert sha(reg.root / "backups" / f"{v}.onnx") == reg.metadata(v)["sha256"]
    reg.onnx_path(v).write_bytes(b"garbage")
    with pytest.raises(CorruptModel):
        reg.load_production()
    reg.restore(v)
    assert sha(reg.onnx_path(v)) == reg.metadata(v)["sha256"]
    assert reg.load_production().version == v
    assert reg.metadata(v)["status"] == "production"


def test_restore_refuses_a_corrupt_backup(reg: ModelRegistry, good: TrainResult) -> None:
    v = reg.register(good)
    reg.backup(v)
    (reg.root / "backups" / f"{v}.onnx").write_bytes(b"not the model")
    before = reg.onnx_path(v).read_bytes()
    with pytest.raises(CorruptModel, match="backup"):
        reg.restore(v)
    assert reg.onnx_path(v).read_bytes() == before
    with pytest.raises(RegistryError, match="no backup"):
        reg.restore("m20000101T000000Z-000000")


def test_cleanup_removes_old_versions_but_never_production(
    reg: ModelRegistry,
    clock: FakeClock,
    good: TrainResult,
    good2: TrainResult,
    mirrored: list[dict],
) -> None:
    oldest = reg.register(good)  # day 0, will be production
    clock.t += 1 * DAY
    prev = reg.register(good2)  # day 1, previous production (rollback target)
    clock.t += 1 * DAY
    stale = reg.register(good)  # day 2, never promoted
    clock.t += 30 * DAY
    fresh = reg.register(good2)  # day 32
    reg.promote(prev, cooldown_s=0)
    reg.promote(oldest, cooldown_s=0)
    clock.t += 3 * DAY  # now day 35
    removed = reg.cleanup(older_than_days=30)
    assert removed == [stale]
    assert not reg.onnx_path(stale).exists() and not (reg.root / "metadata" / f"{stale}.json").exists()
    assert mirrored[-1]["version"] == stale and mirrored[-1]["status"] == "deleted"
    assert {m["version"] for m in reg.list()} == {oldest, prev, fresh}
    assert reg.production()["version"] == oldest
    assert reg.cleanup(older_than_days=0) == [fresh]  # production and rollback target still kept


def test_recalibration_refits_only_the_temperature(reg: ModelRegistry, clock: FakeClock, good: TrainResult) -> None:
    v = reg.register(good)
    art = reg.load_version(v)
    # Recent regime: the same features carry half the signal, so the model is over-confident
    # and the refit temperature must rise above the original one.
    recent = make_frame(2000, seed=21)
    recent["close_time"] += 400 * MINUTE * 60
    rng = np.random.default_rng(0)
    x1, x2 = recent["ret_1"].to_numpy(), recent["sent_score"].to_numpy()
    recent["label"] = (rng.random(len(recent)) < expit(0.5 * (1.2 * x1 - 0.8 * x2))).astype(int)
    res = recalibrate_model(art, recent, gates=Gates(min_auc=0.6, max_ece=0.1))
    assert res.kind == "recalibrate" and res.parent_version == v
    assert res.temperature > 1.5 * good.temperature
    X = recent[FEATURES].to_numpy().astype(np.float32)
    logits = good.pipeline.decision_function(X.astype(np.float64))  # same uncalibrated pipeline
    np.testing.assert_allclose(onnx_up(res.onnx_bytes, X), expit(logits / res.temperature), atol=1e-5)
    assert res.train_mean == good.train_mean
    clock.t += 60
    v2 = reg.register(res)
    meta = reg.metadata(v2)
    assert meta["kind"] == "recalibrate" and meta["parent_version"] == v
    assert meta["metrics"]["previous_temperature"] == pytest.approx(good.temperature)


def test_unknown_version_is_a_clear_error(reg: ModelRegistry) -> None:
    with pytest.raises(RegistryError, match="unknown model version 'nope'"):
        reg.promote("nope", cooldown_s=0)
