"""The `tickcast` command line.

Every command reads the same settings (environment / `.env`), validated at start;
`--store` and `--model-dir` override `TICKCAST_CLICKHOUSE_URL` and `MODEL_STORE_DIR`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import click

from tickcast.settings import Settings, SettingsError, load_settings

log = logging.getLogger("tickcast")


class Ctx:
    def __init__(self, store: str | None, model_dir: str | None) -> None:
        overrides: dict[str, Any] = {}
        if store:
            overrides["TICKCAST_CLICKHOUSE_URL"] = store
        if model_dir:
            overrides["MODEL_STORE_DIR"] = model_dir
        try:
            self.settings: Settings = load_settings(**overrides)
        except SettingsError as exc:
            raise click.ClickException(f"{exc}\nFix the environment variable (or .env) and start again.") from None
        logging.basicConfig(
            level=self.settings.TICKCAST_LOG_LEVEL,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )

    def store(self, migrate: bool = True) -> Any:
        from tickcast.store import Store, StoreError

        try:
            store = Store(self.settings.TICKCAST_CLICKHOUSE_URL)
            if migrate:
                store.migrate()
            return store
        except StoreError as exc:
            raise click.ClickException(str(exc)) from None


store_option = click.option(
    "--store",
    "store_url",
    metavar="URL",
    help="chdb:///dir or http(s)://host:8123 [env TICKCAST_CLICKHOUSE_URL, default chdb:///./var/clickhouse]",
)
model_option = click.option(
    "--model-dir", metavar="DIR", help="model registry root [env MODEL_STORE_DIR, default ./var/models]"
)


class _Tickcast(click.Group):
    """The command group. Run as the process's command (`args` None: its own argv, as the
    `tickcast` script and `python -m tickcast.app.cli` run it; never a caller that passes
    arguments, like click's CliRunner or a test), a command that finished and called
    `_end_process_when_done` ends the process as soon as it succeeds: stdout, stderr and the
    logs flushed, then `os._exit(0)`, rather than an interpreter shutdown that tears down
    every module and frees a replay's ~1 GB heap object by object (~0.1 s)."""

    def main(self, args: Any = None, *more: Any, **kwargs: Any) -> Any:
        _ending[0] = False
        try:
            return super().main(args, *more, **kwargs)
        except SystemExit as exc:
            if args is None and exc.code in (0, None) and _ending[0]:
                _end_process()
            raise


_ending = [False]


def _end_process_when_done() -> None:
    """Called by a command whose work is done and safe (its store closed, its output written):
    the process may end without the interpreter's shutdown (see `_Tickcast`)."""
    _ending[0] = True


def _end_process() -> None:
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed or broken stream: the interpreter's exit reports it
        return
    logging.shutdown()
    os._exit(0)


@click.group(cls=_Tickcast, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def main() -> None:
    """tickcast: sentiment ticks + candles -> calibrated up-move probabilities, with drift monitoring.

    Quick start: `tickcast up` runs everything in one process (simulator, dataflow,
    ClickHouse engine under ./var, API on http://127.0.0.1:8000, read-only SQL on :8123).
    """


# --- up -------------------------------------------------------------------------------------
@main.command()
@store_option
@model_option
@click.option("--port", type=int, help="API port [env TICKCAST_API_PORT, default 8000]")
@click.option("--host", help="API host [env TICKCAST_API_HOST, default 127.0.0.1]")
@click.option(
    "--sql-port",
    type=click.IntRange(0, 65535),
    help="read-only SQL (ClickHouse HTTP) port, 0 = off [env TICKCAST_SQL_PORT, default 8123]",
)
@click.option("--no-simulator", is_flag=True, help="do not start the built-in simulator (HTTP/Kafka input only)")
@click.option("--symbols", type=int, help="simulated symbols [env TICKCAST_SIM_SYMBOLS, default 5]")
@click.option("--speed", type=float, help="simulator speed factor, 1 = real time [env TICKCAST_SIM_SPEED]")
@click.option(
    "--backfill-hours", type=float, help="simulated history replayed at start [env TICKCAST_SIM_BACKFILL_HOURS]"
)
def up(
    store_url: str | None,
    model_dir: str | None,
    port: int | None,
    host: str | None,
    sql_port: int | None,
    no_simulator: bool,
    symbols: int | None,
    speed: float | None,
    backfill_hours: float | None,
) -> None:
    """Run the embedded system: simulator -> dataflow -> ClickHouse + API, in one process."""
    from tickcast.app.embedded import exit_now, run_embedded

    ctx = Ctx(store_url, model_dir)
    overrides = {
        k: v
        for k, v in {
            "TICKCAST_API_PORT": port,
            "TICKCAST_API_HOST": host,
            "TICKCAST_SQL_PORT": sql_port,
            "TICKCAST_SIM_SYMBOLS": symbols,
            "TICKCAST_SIM_SPEED": speed,
            "TICKCAST_SIM_BACKFILL_HOURS": backfill_hours,
        }.items()
        if v is not None
    }
    settings = ctx.settings.model_copy(update=overrides) if overrides else ctx.settings
    from tickcast.store import StoreError

    try:
        status = run_embedded(settings, simulator=not no_simulator)
    except StoreError as exc:  # the store cannot be opened at start: say which and why, no traceback
        raise click.ClickException(str(exc)) from None
    exit_now(status)


# --- db ---------------------------------------------------------------------------------------
@main.group()
def db() -> None:
    """ClickHouse schema."""


@db.command("migrate")
@store_option
def db_migrate(store_url: str | None) -> None:
    """Apply the numbered sql/migrations files not yet applied (idempotent)."""
    ctx = Ctx(store_url, None)
    store = ctx.store(migrate=False)
    applied = store.migrate()
    click.echo(
        f"{store.url} database {store.database}: " + (f"applied {', '.join(applied)}" if applied else "up to date")
    )


# --- simulate ---------------------------------------------------------------------------------
@main.command()
@click.option("--symbols", type=int, default=5, show_default=True)
@click.option("--hours", type=float, default=24.0, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--start-ms", type=int, help="first candle open time (epoch ms, minute-aligned)")
@click.option("--duplicate-rate", type=float, default=0.0, show_default=True)
@click.option("--late-rate", type=float, default=0.0, show_default=True)
@click.option("--malformed-rate", type=float, default=0.0, show_default=True)
@click.option("--outage", metavar="PROVIDER:START_MS:END_MS", help="a provider sends nothing in this span")
@click.option("--regime-shift-ms", type=int, help="after this time the sentiment->return link flips")
@click.option("--signal", type=float, help="strength of the sentiment->next-return link")
def simulate(
    symbols: int,
    hours: float,
    seed: int,
    out_dir: Path,
    start_ms: int | None,
    duplicate_rate: float,
    late_rate: float,
    malformed_rate: float,
    outage: str | None,
    regime_shift_ms: int | None,
    signal: float | None,
) -> None:
    """Write DIR/ticks.jsonl and DIR/candles.jsonl from the deterministic simulator."""
    from dataflows.simulator import SimConfig, write_files

    kwargs: dict[str, Any] = dict(
        symbols=symbols,
        hours=hours,
        seed=seed,
        duplicate_rate=duplicate_rate,
        late_rate=late_rate,
        malformed_rate=malformed_rate,
        regime_shift_ms=regime_shift_ms,
    )
    if start_ms is not None:
        kwargs["start_ms"] = start_ms
    if signal is not None:
        kwargs["signal"] = signal
    if outage:
        try:
            provider, start, end = outage.split(":")
            kwargs["outage"] = (provider, int(start), int(end))
        except ValueError:
            raise click.BadParameter("expected PROVIDER:START_MS:END_MS", param_hint="--outage") from None
    try:
        cfg = SimConfig(**kwargs)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    counts = write_files(cfg, out_dir)
    click.echo(
        f"wrote {counts['ticks']} ticks and {counts['candles']} candles ({counts['malformed']} malformed) to {out_dir}"
    )


# --- replay -----------------------------------------------------------------------------------
@main.command()
@store_option
@model_option
@click.option(
    "--input",
    "inputs",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="JSONL/Parquet file or folder (repeatable)",
)
@click.option(
    "--kafka", "kafka", is_flag=True, help="replay the Kafka topics from their beginning to their current end"
)
@click.option("--from-store", is_flag=True, help="replay ticks and candles already stored in ClickHouse")
@click.option("--recovery-dir", type=click.Path(path_type=Path), help="Bytewax recovery dir (resume after a crash)")
@click.option("--no-model", is_flag=True, help="skip inference and calibration (ingest, bars, features, labels only)")
@click.option(
    "--account",
    default="replay",
    show_default=True,
    help="paper account the replay's trading rows are written under (never the live TRADING_ACCOUNT)",
)
@click.option("--no-progress", is_flag=True)
def replay(
    store_url: str | None,
    model_dir: str | None,
    inputs: tuple[Path, ...],
    kafka: bool,
    from_store: bool,
    recovery_dir: Path | None,
    no_model: bool,
    account: str,
    no_progress: bool,
) -> None:
    """Backfill: run the dataflow over recorded input to its end, then exit.

    Ticks and candles are told apart by their fields. Records are replayed in ingest
    order with their stored ingest_ts, so the rows equal those of the live run, and a
    second replay adds nothing.
    """
    from tickcast.app.backfill import ReplayAccountError, replay_account, run_replay

    sources = sum([bool(inputs), kafka, from_store])
    if sources != 1:
        raise click.UsageError("give exactly one of --input PATH..., --kafka or --from-store")
    ctx = Ctx(store_url, model_dir)
    try:
        replay_account(ctx.settings, account)
    except ReplayAccountError as exc:
        raise click.ClickException(str(exc)) from None
    store = ctx.store(migrate=False)  # opened and migrated by run_replay, beside its imports
    summary = run_replay(
        ctx.settings,
        inputs=list(inputs),
        kafka=kafka,
        from_store=from_store,
        recovery_dir=recovery_dir,
        with_model=not no_model,
        progress=not no_progress,
        store=store,
        tune=True,
        account=account,
    )
    store.close()  # every row is in the store: chdb closes its engine here, not at exit
    click.echo(summary)
    _end_process_when_done()


# --- flow / api (distributed mode) -----------------------------------------------------------
@main.command()
@store_option
@model_option
@click.option(
    "-r", "--recovery-dir", type=click.Path(path_type=Path), help="Bytewax recovery dir [env TICKCAST_RECOVERY_DIR]"
)
@click.option(
    "-w",
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="worker threads in this process (prefer more processes: Bytewax threads share the GIL)",
)
@click.option("-i", "--process-id", type=click.IntRange(0), help="this process's index in the cluster")
@click.option("-a", "--addresses", help="all cluster processes as 'host1:port;host2:port' (with -i)")
def flow(
    store_url: str | None,
    model_dir: str | None,
    recovery_dir: Path | None,
    workers: int,
    process_id: int | None,
    addresses: str | None,
) -> None:
    """Distributed mode: run the dataflow on the Kafka topics (tails them) with recovery.

    One process: `tickcast flow -r DIR`. A cluster of N processes (process i reads topic
    partitions i, i+N, …, i.e. a share of the symbols): `tickcast flow -i 0 -a "h1:2101;h2:2101" -r DIR`
    on the first host, `-i 1` with the same -a and -r on the second (DIR shared by all). With a
    chdb store (one host) only process 0 opens it; a ClickHouse server is written by every process.
    """
    from tickcast.app.embedded import FlowStartError, run_distributed_flow

    ctx = Ctx(store_url, model_dir)
    if not ctx.settings.kafka_enabled:
        raise click.ClickException("TICKCAST_KAFKA_BOOTSTRAP is not set; `tickcast flow` reads Kafka topics")
    if (process_id is None) != (addresses is None):
        raise click.UsageError("-i/--process-id and -a/--addresses go together")
    cluster = addresses.split(";") if addresses else None
    if cluster and process_id is not None and process_id >= len(cluster):
        raise click.BadParameter(f"process id {process_id} but only {len(cluster)} addresses", param_hint="-i")
    if cluster and any(not _host_port(a) for a in cluster):
        raise click.BadParameter(f"expected 'host:port;host:port;…', got {addresses!r}", param_hint="-a")
    from dataflows.signals import RecoveryMismatch

    try:
        run_distributed_flow(
            ctx.settings,
            recovery_dir=recovery_dir or ctx.settings.TICKCAST_RECOVERY_DIR,
            workers=workers,
            process_id=process_id,
            addresses=cluster,
        )
    except (RecoveryMismatch, FlowStartError) as exc:
        raise click.ClickException(str(exc)) from None


def _host_port(address: str) -> bool:
    host, sep, port = address.strip().rpartition(":")
    return bool(sep and host and port.isdigit() and 0 < int(port) < 65536)


@main.command()
@store_option
@model_option
@click.option("--port", type=int)
@click.option("--host")
def api(store_url: str | None, model_dir: str | None, port: int | None, host: str | None) -> None:
    """Distributed mode: an API replica (ingest produces to Kafka; live events come from Kafka)."""
    from tickcast.app.embedded import run_api_replica

    ctx = Ctx(store_url, model_dir)
    overrides = {k: v for k, v in {"TICKCAST_API_PORT": port, "TICKCAST_API_HOST": host}.items() if v is not None}
    run_api_replica(ctx.settings.model_copy(update=overrides) if overrides else ctx.settings)


# --- training and models -------------------------------------------------------------------
@main.command()
@store_option
@model_option
@click.option("--promote", is_flag=True, help="promote the new version if it passes the gates")
def train(store_url: str | None, model_dir: str | None, promote: bool) -> None:
    """Train from features ⋈ labels, calibrate, export to ONNX, gate, register."""
    from tickcast.lifecycle import train_job

    ctx = Ctx(store_url, model_dir)
    store = ctx.store()
    result = _run_as_job("train", train_job(ctx.settings, store), {"promote": promote}, store, ctx.settings)
    click.echo(json.dumps(result, indent=2, default=str))
    if not result.get("passed"):
        raise click.ClickException("the model did not pass the gates: " + "; ".join(result.get("gate_failures", [])))


@main.command()
@store_option
@model_option
def recalibrate(store_url: str | None, model_dir: str | None) -> None:
    """Refit only the production model's temperature on recent labeled data."""
    from tickcast.lifecycle import recalibrate_job

    ctx = Ctx(store_url, model_dir)
    store = ctx.store()
    click.echo(
        json.dumps(
            _run_as_job("recalibrate", recalibrate_job(ctx.settings, store), {}, store, ctx.settings),
            indent=2,
            default=str,
        )
    )


def _run_as_job(kind: str, fn: Any, params: dict[str, Any], store: Any, settings: Settings) -> dict[str, Any]:
    """Run through the job center (so the run is in the `jobs` table like any other) with a progress bar."""
    from tqdm import tqdm

    from tickcast.jobs import JobCenter, RetrainRecorder

    jobs = JobCenter(store, min_interval_s=0.2, on_change=RetrainRecorder(settings.MODEL_STORE_DIR))
    with tqdm(total=100, desc=kind, unit="%", bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}") as bar:

        def progress(fraction: float, message: str) -> None:
            bar.n = round(100 * min(max(fraction, 0.0), 1.0))
            bar.set_postfix_str(message[:60])
            bar.refresh()

        def run(job_params: dict[str, Any], job_progress: Any) -> dict[str, Any]:
            def both(fraction: float, message: str = "") -> None:
                progress(fraction, message)
                job_progress(fraction, message)

            return fn(job_params, both)

        jobs.register(kind, run)
        job_id = jobs.start(kind, params, trigger="cli")
        final = jobs.wait(job_id) or {}
    jobs.close()
    if final.get("status") != "succeeded":
        raise click.ClickException(f"{kind} job {job_id} failed: {final.get('error') or 'unknown error'}")
    return dict(final.get("result") or {})


@main.group()
def models() -> None:
    """Model registry: list, promote, rollback, backup, restore, cleanup."""


def chdb_held_elsewhere(url: str) -> bool:
    """True when another process holds the chdb directory of `url` (e.g. a running `tickcast up`).

    ClickHouse keeps an exclusive flock on `<dir>/status` while it runs; probing that lock
    (and letting it go at once) tells us without opening the engine, which would print a
    `DB::Exception: Cannot lock file` of its own."""
    import fcntl

    from tickcast.store import chdb_dir, resolve_store_url

    directory = chdb_dir(resolve_store_url(url))
    if directory is None:  # a server store: nothing to hold
        return False
    status = directory / "status"
    try:
        with status.open("rb") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fh, fcntl.LOCK_UN)
    except FileNotFoundError:
        return False
    except OSError:
        return True
    return False


def _held_note(ctx: Ctx) -> str:
    s = ctx.settings
    return (
        f"the store {s.TICKCAST_CLICKHOUSE_URL} is held by the running tickcast "
        f"(`tickcast up`, API http://{s.TICKCAST_API_HOST}:{s.TICKCAST_API_PORT})"
    )


def _registry(store_url: str | None, model_dir: str | None) -> tuple[Ctx, Any]:
    from tickcast.lifecycle import registry_for

    ctx = Ctx(store_url, model_dir)
    store = None
    if chdb_held_elsewhere(ctx.settings.TICKCAST_CLICKHOUSE_URL):
        click.echo(
            f"note: {_held_note(ctx)}; the registry files are changed directly and the running system "
            "mirrors nothing for this command (its model_registry table catches up at its next registry change)",
            err=True,
        )
    else:
        try:
            store = ctx.store()
        except click.ClickException as exc:
            log.warning("model_registry table will not be mirrored: %s", exc.message)
    return ctx, registry_for(ctx.settings, store)


def _registry_call(fn: Any) -> Any:
    from models.registry import PromotionRefused, RegistryError

    try:
        return fn()
    except PromotionRefused as exc:
        hint = "; add --force to override" if exc.reason in ("cooldown", "auto_promote_disabled") else ""
        raise click.ClickException(f"{exc}{hint}") from None
    except RegistryError as exc:
        raise click.ClickException(str(exc)) from None


def _models_from_api(ctx: Ctx) -> list[dict[str, Any]] | None:
    """`GET /api/models` of the running system, or None when it does not answer."""
    import httpx

    s = ctx.settings
    try:
        r = httpx.get(f"http://{s.TICKCAST_API_HOST}:{s.TICKCAST_API_PORT}/api/models", timeout=5)
        r.raise_for_status()
        return list(r.json()["models"])
    except (httpx.HTTPError, ValueError, KeyError):
        return None


@models.command("list")
@store_option
@model_option
@click.option("--json", "as_json", is_flag=True)
def models_list(store_url: str | None, model_dir: str | None, as_json: bool) -> None:
    """Registered versions (newest last)."""
    ctx = Ctx(store_url, model_dir)
    rows = None
    if chdb_held_elsewhere(ctx.settings.TICKCAST_CLICKHOUSE_URL):
        # A read needs no store: ask the running system rather than open (and fail on) its store.
        rows = _models_from_api(ctx)
        source = "its API (GET /api/models)" if rows is not None else "the registry files (its API did not answer)"
        click.echo(f"note: {_held_note(ctx)}; the answer below comes from {source}", err=True)
    if rows is None:
        from tickcast.lifecycle import registry_for

        rows = registry_for(ctx.settings, None).list()
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        click.echo("no models registered; run `tickcast train`")
    for r in rows:
        m = r.get("metrics") or {}
        auc, ece, brier = (
            r.get(k, m.get(f)) for k, f in (("roc_auc", "roc_auc"), ("ece_prod", "ece"), ("brier_prod", "brier"))
        )
        click.echo(
            f"{r['version']:<34} {r['status']:<11} auc={_f(auc)} ece={_f(ece)} brier={_f(brier)} {r['created_at']}"
        )


def _f(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "-"


@models.command("promote")
@store_option
@model_option
@click.argument("version")
@click.option("--force", is_flag=True, help="ignore the promotion cooldown / AUTO_PROMOTE_ENABLED")
def models_promote(store_url: str | None, model_dir: str | None, version: str, force: bool) -> None:
    """Make VERSION the production model (the running flow picks it up from the next candle)."""
    ctx, registry = _registry(store_url, model_dir)
    s = ctx.settings
    # A promotion asked for by a person is explicit; AUTO_PROMOTE_ENABLED governs automatic ones.
    _registry_call(
        lambda: registry.promote(
            version, auto_promote_enabled=True, cooldown_s=s.PROMOTION_COOLDOWN_SECONDS, force=force
        )
    )
    click.echo(f"promoted {version}")


@models.command("rollback")
@store_option
@model_option
def models_rollback(store_url: str | None, model_dir: str | None) -> None:
    """Go back to the previous production model."""
    _, registry = _registry(store_url, model_dir)
    click.echo(json.dumps(_registry_call(registry.rollback), indent=2, default=str))


@models.command("backup")
@store_option
@model_option
@click.argument("version", required=False)
def models_backup(store_url: str | None, model_dir: str | None, version: str | None) -> None:
    """Copy a version's files (default: production) into backups/."""
    _, registry = _registry(store_url, model_dir)
    for path in _registry_call(lambda: registry.backup(version)):
        click.echo(str(path))


@models.command("restore")
@store_option
@model_option
@click.argument("version")
def models_restore(store_url: str | None, model_dir: str | None, version: str) -> None:
    """Copy VERSION back from backups/ (sha256 verified)."""
    _, registry = _registry(store_url, model_dir)
    click.echo(json.dumps(_registry_call(lambda: registry.restore(version)), indent=2, default=str))


@models.command("cleanup")
@store_option
@model_option
@click.option("--older-than", "days", type=float, required=True, help="days")
def models_cleanup(store_url: str | None, model_dir: str | None, days: float) -> None:
    """Remove non-production versions older than DAYS."""
    _, registry = _registry(store_url, model_dir)
    removed = _registry_call(lambda: registry.cleanup(days))
    click.echo(f"removed {len(removed)} version(s): {', '.join(removed) or '-'}")


@models.command("status")
@store_option
@model_option
def models_status(store_url: str | None, model_dir: str | None) -> None:
    """Promotion status: production, cooldown, next allowed time."""
    ctx, registry = _registry(store_url, model_dir)
    click.echo(
        json.dumps(registry.promotion_status(cooldown_s=ctx.settings.PROMOTION_COOLDOWN_SECONDS), indent=2, default=str)
    )


# --- labeler --------------------------------------------------------------------------------
@main.command()
@store_option
@click.option("--min-age", type=int, help="seconds [env LABELER_MIN_AGE_SEC, default 120]")
@click.option("--limit", type=int, help="[env LABELER_LIMIT, default 1000]")
@click.option("--force/--no-force", default=True, show_default=True)
def labeler(store_url: str | None, min_age: int | None, limit: int | None, force: bool) -> None:
    """Batch catch-up of labels the stream missed."""
    from tickcast.lifecycle import labeler_job

    ctx = Ctx(store_url, None)
    params: dict[str, Any] = {"force": force}
    if min_age is not None:
        params["min_age"] = min_age
    if limit is not None:
        params["limit"] = limit
    click.echo(json.dumps(labeler_job(ctx.settings, ctx.store())(params, lambda f, m: None)))


# --- backtest and trading ------------------------------------------------------------------------
@main.command()
@store_option
@model_option
@click.option(
    "--input", "inputs", multiple=True, type=click.Path(exists=True, path_type=Path), help="replay these files instead"
)
@click.option("--kafka", is_flag=True, help="replay the Kafka topics instead of the stored rows")
@click.option("--account", default="backtest", show_default=True, help="account the backtest's rows are written under")
@click.option("--live-account", help="account to compare with and read admin controls from [default TRADING_ACCOUNT]")
@click.option("--model-version", help="stored rows: use this model's predictions where a candle has several")
@click.option("--no-ablation", is_flag=True, help="skip the with/without-sentiment comparison")
@click.option("--start", help="stored rows: first candle close time traded, ISO 8601 (no zone: UTC)")
@click.option("--end", help="stored rows: last candle close time traded, ISO 8601 (no zone: UTC)")
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="write the JSON report here [default var/backtests/<report id>.json]",
)
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON instead of a table")
@click.option("--no-progress", is_flag=True)
def backtest(
    store_url: str | None,
    model_dir: str | None,
    inputs: tuple[Path, ...],
    kafka: bool,
    account: str,
    live_account: str | None,
    model_version: str | None,
    no_ablation: bool,
    start: str | None,
    end: str | None,
    out_path: Path | None,
    as_json: bool,
    no_progress: bool,
) -> None:
    """Replay the trading stage and report: return, Sharpe, drawdown, hit rate, fees, per symbol, ablation.

    By default over the stored rows (candles, predictions, recorded admin controls): the same
    stage as the live flow, so its rows equal the live account's (compared and printed). With
    --start/--end only the candles closing in that span are traded and compared (the history
    before --start warms the book up in memory, so the span starts where the live book was).
    With --input/--kafka the whole flow runs over recorded input, like `tickcast replay`.
    """
    from tickcast.app.backtest import render, run_backtest
    from tickcast.records import parse_time

    if inputs and kafka:
        raise click.UsageError("give at most one of --input PATH... and --kafka")
    if (start or end) and (inputs or kafka):
        raise click.UsageError("--start/--end apply to a backtest of the stored rows, not to --input/--kafka")
    try:
        start_ms = parse_time(start) if start else None
        end_ms = parse_time(end) if end else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--start/--end") from None
    ctx = Ctx(store_url, model_dir)
    try:
        doc = run_backtest(
            ctx.settings,
            store=ctx.store(),
            inputs=list(inputs) or None,
            kafka=kafka,
            account=account,
            live_account=live_account,
            model_version=model_version,
            with_ablation=not no_ablation,
            out_path=out_path,
            out_dir=Path("var/backtests"),
            progress=not no_progress,
            say=lambda m: click.echo(m, err=True),
            start=start_ms,
            end=end_ms,
        )
    except (RuntimeError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(doc, indent=2, default=str) if as_json else render(doc))
    click.echo(f"report written to {doc['written_to']} (and served by GET /api/trading/backtest)", err=True)


api_option = click.option("--api", "api_url", metavar="URL", help="running API [default http://TICKCAST_API_HOST:PORT]")


def _api_call(ctx: Ctx, api_url: str | None, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """(status, JSON) of a request to the running API, with the first API key."""
    import urllib.error
    import urllib.request

    s = ctx.settings
    base = api_url or f"http://{s.TICKCAST_API_HOST}:{s.TICKCAST_API_PORT}"
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    if s.API_KEYS:
        headers["X-API-Key"] = s.API_KEYS[0]
    request = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
    except urllib.error.URLError as exc:
        raise click.ClickException(
            f"cannot reach the API at {base}: {exc.reason} (is `tickcast up` running?)"
        ) from None


@main.group()
def trading() -> None:
    """Paper trading: status, and the kill switch of the running system (halt, resume, flatten, reset)."""


@trading.command("status")
@api_option
@click.option("--json", "as_json", is_flag=True)
def trading_status(api_url: str | None, as_json: bool) -> None:
    """Equity, PnL, open positions and every guard's state."""
    ctx = Ctx(None, None)
    _, summary = _api_call(ctx, api_url, "GET", "/api/trading/summary")
    _, risk = _api_call(ctx, api_url, "GET", "/api/trading/risk")
    if as_json:
        click.echo(json.dumps({"summary": summary, "risk": risk}, indent=2))
        return
    click.echo(
        f"account {summary.get('account')} ({risk.get('exchange', {}).get('mode')}): equity {summary.get('equity', 0):.2f} "
        f"({100 * summary.get('total_return', 0):+.2f} %), cash {summary.get('cash', 0):.2f}, "
        f"open positions {summary.get('open_positions')}, fees {summary.get('fees', 0):.2f}, "
        f"drawdown {100 * summary.get('drawdown', 0):.2f} %"
    )
    for g in risk.get("guards", []):
        last = g.get("last_trip") or g.get("last_refusal") or g.get("last_change")
        click.echo(
            f"  {g['guard']:<16} {g['state']:<8} value={g['value']} limit={g['limit']}"
            + (f"  last: {last['reason']}" if last else "")
        )


def _trading_command(path: str, help_text: str) -> Any:
    @trading.command(path.split("-")[0] if path == "reset-drawdown" else path, help=help_text)
    @api_option
    @click.option("--reason", default="", help="why (kept in risk_events)")
    @click.option("--yes", is_flag=True, help="do not ask for confirmation")
    def command(api_url: str | None, reason: str, yes: bool) -> None:
        ctx = Ctx(None, None)
        status, answer = _api_call(ctx, api_url, "POST", f"/admin/trading/{path}", {"reason": reason})
        if status != 409 or "plan" not in answer:
            raise click.ClickException(f"{status}: {answer.get('error', answer)}")
        click.echo(answer["plan"]["description"])
        if not yes:
            click.confirm("Proceed?", abort=True)
        status, answer = _api_call(ctx, api_url, "POST", f"/admin/trading/{path}", {"reason": reason, "confirm": True})
        if status != 202:
            raise click.ClickException(f"{status}: {answer.get('error', answer)}")
        click.echo(f"sent {answer['sent']} (id {answer['id']}, at {answer['at']}): {answer['applies']}")

    return command


_trading_command("halt", "Kill switch on: no new entries until `tickcast trading resume`.")
_trading_command("resume", "Kill switch off: entries allowed again.")
_trading_command("flatten", "Close every open position at its next candle's open.")
_trading_command("reset-drawdown", "Clear a tripped drawdown guard (the peak becomes the current equity).")


# --- alerts ---------------------------------------------------------------------------------
@main.group()
def alerts() -> None:
    """Prometheus alert rules and scrape config rendered from the settings (METRICS_*)."""


@alerts.command("render")
@click.option(
    "--out-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("docker/prometheus"),
    show_default=True,
    help="where alerts.yml and prometheus.yml are written",
)
@click.option("--check", is_flag=True, help="write nothing; exit 1 if the files differ from the rendering")
def alerts_render(out_dir: Path, check: bool) -> None:
    """Write alerts.yml (rules; thresholds and toggles from METRICS_ALERT_*, ACCURACY_WARNING…) and prometheus.yml."""
    from tickcast.alerts import RULES_FILE, SCRAPE_FILE, render_rules, render_scrape_config, write_files

    ctx = Ctx(None, None)
    if check:
        wanted = {RULES_FILE: render_rules(ctx.settings), SCRAPE_FILE: render_scrape_config(ctx.settings)}
        stale = [n for n, text in wanted.items() if not (out_dir / n).exists() or (out_dir / n).read_text() != text]
        if stale:
            raise click.ClickException(
                f"{', '.join(stale)} in {out_dir} differ from the settings; run `tickcast alerts render`"
            )
        click.echo(f"{out_dir}: up to date")
        return
    for name, changed in write_files(ctx.settings, out_dir).items():
        click.echo(f"{out_dir / name}: {'written' if changed else 'unchanged'}")


# --- sql ------------------------------------------------------------------------------------
@main.command("sql")
@store_option
@click.argument("query", required=False)
@click.option(
    "-f",
    "--format",
    "fmt",
    metavar="FORMAT",
    help="ClickHouse output format (PrettyCompact, TSVWithNames, CSVWithNames, JSONEachRow, Parquet, ...) "
    "[default: PrettyCompact on a terminal, TSVWithNames otherwise]",
)
@click.option("-d", "--database", help="database of unqualified table names [default: tickcast]")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE", help="value of {NAME:Type} (repeatable)")
def sql_command(
    store_url: str | None, query: str | None, fmt: str | None, database: str | None, params: tuple[str, ...]
) -> None:
    """Run a read-only SQL query on the store and print the result.

    QUERY (or stdin when it is '-' or missing) runs read-only with the TICKCAST_SQL_* limits:
    on the store directly when it is free; through the SQL port of the `tickcast up` that holds
    it otherwise (TICKCAST_SQL_PORT, with the first of API_KEYS); on the server itself for an
    http(s):// store. Example: tickcast sql "SELECT * FROM daily_accuracy ORDER BY day"
    """
    from api.clickhouse_http.errors import ClickHouseError
    from tickcast.app.sql_query import Query, SqlUnavailable, run_sql

    ctx = Ctx(store_url, None)
    text = sys.stdin.read() if query in (None, "-") else query
    if not text or not text.strip():
        raise click.UsageError('give a query: tickcast sql "SELECT 1", or pipe one in: tickcast sql < query.sql')
    values = {}
    for item in params:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"expected NAME=VALUE, got {item!r}", param_hint="--param")
        values[name] = value
    fmt = fmt or ("PrettyCompact" if sys.stdout.isatty() else "TSVWithNames")
    try:
        answer = run_sql(ctx.settings, Query(text, fmt, database, values))
    except ClickHouseError as exc:
        raise click.ClickException(str(exc)) from None
    except SqlUnavailable as exc:
        raise click.ClickException(str(exc)) from None
    sys.stdout.buffer.write(answer.body)
    sys.stdout.flush()
    log.debug("tickcast sql answered via %s", answer.via)


@main.command("settings")
def show_settings() -> None:
    """Print the effective settings (validated)."""
    ctx = Ctx(None, None)
    click.echo(json.dumps(ctx.settings.model_dump(mode="json"), indent=2))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
