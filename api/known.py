"""What the system knows — symbols, model versions, scopes, providers, job kinds — so a typo
gets a 4xx that names what is known instead of an empty 200 or a silent stream.

A symbol is known when the store holds a candle, a sentiment bar, a tick or a prediction of it, or when
the live bus has carried an event about it since the process started (a symbol whose
first records are still on their way to the store is streaming already). A model version
is known when the registry has it, it is `baseline`, or some prediction names it.
"""

from __future__ import annotations

from collections.abc import Iterable

from api.context import AppContext, blocking
from api.errors import ApiError
from tickcast.bus import STREAMS

BASELINE = "baseline"
_SHOWN = 20  # known values listed in a message


def _listing(values: Iterable[str], what: str) -> str:
    values = list(dict.fromkeys(values))  # in the order given, once each
    if not values:
        return f"no {what} known yet"
    more = f" and {len(values) - _SHOWN} more" if len(values) > _SHOWN else ""
    return f"known {what}: {', '.join(values[:_SHOWN])}{more}"


def live_symbols(ctx: AppContext) -> set[str]:
    return {s for stream in STREAMS for s in ctx.bus.symbols(stream)}


def _stored_symbol(ctx: AppContext, symbol: str) -> bool:
    args = {"symbol": symbol}
    return bool(
        ctx.store.named("market_symbol_known", args)
        or ctx.store.named("sentiment_symbol_known", args)
        or ctx.store.named("prediction_symbol_known", args)
    )


async def some_symbols(ctx: AppContext) -> list[str]:
    found = live_symbols(ctx)
    for query in ("market_symbols", "sentiment_symbols"):
        found.update(r["symbol"] for r in await blocking(ctx.store.named, query, {"limit": 200}))
    return sorted(found)


async def check_symbols(ctx: AppContext, symbols: Iterable[str], *, param: str = "symbol") -> None:
    """404 naming the known symbols when one of `symbols` is neither live nor stored."""
    live = live_symbols(ctx)
    unknown = []
    for symbol in symbols:
        if symbol not in live and not await blocking(_stored_symbol, ctx, symbol):
            unknown.append(symbol)
    if unknown:
        known = await some_symbols(ctx)
        raise ApiError(
            404,
            f"unknown {param} {', '.join(repr(s) for s in unknown[:5])}: nothing stored or streaming for it; "
            f"{_listing(known, 'symbols')}",
            unknown=unknown[:100],
            known=known[:100],
        )


async def check_scope(ctx: AppContext, scope: str) -> None:
    if scope == "overall":
        return
    try:
        await check_symbols(ctx, [scope], param="scope")
    except ApiError as exc:
        known = ["overall", *exc.extra.get("known", [])]
        raise ApiError(
            404,
            f"unknown scope {scope!r}: a scope is 'overall' or a symbol; {_listing(known, 'scopes')}",
            known=known,
        ) from None


def _registry_versions(ctx: AppContext) -> list[str]:
    try:
        return [m["version"] for m in ctx.registry().list()]
    except Exception:  # noqa: BLE001 - an unreadable registry only shortens the hint
        return []


def _version_known(ctx: AppContext, version: str) -> bool:
    if version == BASELINE or version in _registry_versions(ctx):
        return True
    return bool(ctx.store.named("model_version_known", {"model_version": version}))


async def check_model_version(ctx: AppContext, version: str | None) -> None:
    """404 naming the known versions when `version` is not in the registry nor in any prediction."""
    if version is None or await blocking(_version_known, ctx, version):
        return
    known = set(await blocking(_registry_versions, ctx)) | {BASELINE}
    known.update(r["model_version"] for r in await blocking(ctx.store.named, "model_versions", {"limit": 200}))
    raise ApiError(
        404,
        f"unknown model_version {version!r}; {_listing(sorted(known), 'versions')} (GET /api/models)",
        known=sorted(known)[:100],
    )


async def known_providers(ctx: AppContext) -> list[str]:
    rows = await blocking(ctx.store.named, "providers_known", {"limit": 1000})
    return sorted({r["provider"] for r in rows} | set(ctx.settings.SENTIMENT_PROVIDER_TRUST_JSON))


async def check_provider(ctx: AppContext, provider: str) -> None:
    known = await known_providers(ctx)
    if provider not in known:
        raise ApiError(
            404,
            f"unknown provider {provider!r}: no tick from it was ever stored or rejected and "
            f"SENTIMENT_PROVIDER_TRUST_JSON does not name it; {_listing(known, 'providers')}",
            known=known[:100],
        )


async def check_job_kind(ctx: AppContext, kind: str | None) -> None:
    if kind is None:
        return
    known = set(ctx.jobs.kinds()) | {r["kind"] for r in await blocking(ctx.store.named, "job_kinds", {})}
    if kind not in known:
        raise ApiError(400, f"unknown job kind {kind!r}; {_listing(sorted(known), 'kinds')}", known=sorted(known))
