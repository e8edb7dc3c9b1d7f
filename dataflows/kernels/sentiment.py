"""Numba kernels for the per-symbol sentiment engine (DESIGN §4, §5).

EMA state, one entry per window W, is a pair `(mean, log_w)`: the weighted mean
of every folded tick and the log of their total weight, both referenced to one
time `ref_t`. Moving the reference from `ref_t` to `t` subtracts `(t - ref_t)/W`
from `log_w` and leaves `mean` alone (a common rescaling of all weights does not
change a weighted mean). Folding ticks rebases on the largest exponent, so no
`exp` ever sees a positive argument and a week-long silence cannot underflow the
sums into 0/0.

Bars: a pending tick i moves into the committed state at the first bar end b
(a multiple of `step`) with `ts_i < b` and `ingest_i <= b + grace`, or at the
next bar to close if that bar has already gone (`entry_bars`). `close_bars`
walks a run of consecutive bar ends and folds each bar's movers.

Gaps: after `max_empty` consecutive bars without a mover the bar state is a fixed point
(every further empty bar has the same row: the imputed score, zero deltas, the same
volatility and EMA means), so further empty bars are *implied*: not computed one by one
and not returned, only written into the ring for the as-of lookup of the last `ring`
bar ends. The EMA decay over the gap is folded at the next mover bar in one step
(exact: a weighted mean does not change with a common rescaling). Two ticks years apart
cost `max_empty` rows, not one row per minute in between.

Admission after a watermark: `admit` can take the watermark each tick arrives after
(the symbol's newest accepted ingest time before it, candles included). A tick that
arrives at or below that watermark cannot enter a bar the watermark has already closed:
its admission time becomes watermark + 1 (`p_ingest` holds that time). This is what
closing the bars after every record does, so a batch of records gives the bars that one
record per batch gives.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# add_ticks status codes.
ACCEPTED = 0
DUPLICATE = 1
LATE = 2

# Imputation policy codes for empty bars.
IMPUTE_FFILL = 0
IMPUTE_ZERO = 1
IMPUTE_NONE = 2

# close_bars output columns; the K EMA columns follow C_VOL, then composite, then imputed.
C_SCORE, C_CNT, C_POS, C_D1, C_D5, C_VOL = 0, 1, 2, 3, 4, 5
C_EMA = 6


@njit(cache=True)
def dedup(mem_hash, mem_t, hashes, ingest, late, window_ms, cutoff):  # pragma: no cover - compiled
    """Classify a batch in array order against the accepted-id memory; return (status, mem_hash', mem_t').

    `mem_hash` is sorted and unique, `mem_t[j]` the ingest time at which it was last
    accepted. Tick k is LATE if `late[k]`, else DUPLICATE if its id was accepted at
    t0 with `ingest[k] - t0 <= window_ms` (earlier in this batch counts), else
    ACCEPTED and the id's t0 becomes `ingest[k]`. The returned memory keeps the
    entries with `t0 >= cutoff` only. (`dedup_into` on new arrays.)
    """
    m = mem_hash.size
    out_h = np.empty(m + hashes.size, np.int64)
    out_t = np.empty(m + hashes.size, np.int64)
    out_h[:m] = mem_hash
    out_t[:m] = mem_t
    status, kept = dedup_into(out_h, out_t, m, hashes, ingest, late, window_ms, cutoff)
    return status, out_h[:kept].copy(), out_t[:kept].copy()


@njit(cache=True)
def dedup_into(mem_hash, mem_t, mem_n, hashes, ingest, late, window_ms, cutoff):  # pragma: no cover - compiled
    """`dedup` in place: the memory is the first `mem_n` entries of arrays with room for
    `mem_n + hashes.size`; it is rewritten there. Returns (status, entries kept). The live
    path calls it once per symbol and batch: new memory arrays cost an allocation and, handed
    back to Python, ~1 µs each."""
    n = hashes.size
    status = np.zeros(n, np.int8)
    order = np.argsort(hashes, kind="mergesort") if n > 1 else np.zeros(n, np.int64)  # stable
    add_h = np.empty(n, np.int64)
    add_t = np.empty(n, np.int64)
    n_add = 0
    i = 0
    while i < n:
        h = hashes[order[i]]
        j = i
        while j < n and hashes[order[j]] == h:
            j += 1
        pos = np.searchsorted(mem_hash[:mem_n], h)
        found = pos < mem_n and mem_hash[pos] == h
        have = found
        last = mem_t[pos] if found else 0
        for q in range(i, j):
            k = order[q]
            if late[k]:
                status[k] = LATE
            elif have and ingest[k] - last <= window_ms:
                status[k] = DUPLICATE
            else:
                last = ingest[k]
                have = True
        if found:
            mem_t[pos] = last  # its own slot: no other id reads it
        elif have:
            add_h[n_add] = h
            add_t[n_add] = last
            n_add += 1
        i = j
    # Merge the new ids in (two sorted, disjoint lists) from the back, where there is room,
    # then drop the entries that fell out of the window, in order.
    a = mem_n - 1
    b = n_add - 1
    w = mem_n + n_add - 1
    while b >= 0:
        if a >= 0 and mem_hash[a] > add_h[b]:
            mem_hash[w] = mem_hash[a]
            mem_t[w] = mem_t[a]
            a -= 1
        else:
            mem_hash[w] = add_h[b]
            mem_t[w] = add_t[b]
            b -= 1
        w -= 1
    kept = 0
    for q in range(mem_n + n_add):
        if mem_t[q] >= cutoff:
            mem_hash[kept] = mem_hash[q]
            mem_t[kept] = mem_t[q]
            kept += 1
    return status, kept


@njit(cache=True)
def entry_bars(ts, ingest, step, grace, floor_bar):  # pragma: no cover - compiled
    """Bar end at which each tick enters the committed state.

    m_i = max(step·(⌊ts_i/step⌋ + 1), step·⌈(ingest_i − grace)/step⌉, floor_bar):
    the smallest multiple b of step with ts_i < b and ingest_i <= b + grace,
    clamped to the next bar still open (`floor_bar`).
    """
    out = np.empty(ts.size, np.int64)
    for i in range(ts.size):
        by_ts = (ts[i] // step + 1) * step
        by_ingest = -((grace - ingest[i]) // step) * step
        m = max(by_ingest, by_ts)
        out[i] = max(floor_bar, m)
    return out


@njit(cache=True)
def ema_fold(mean, log_w, ref_t, t, ts, score, weight, windows_ms):  # pragma: no cover - compiled
    """Move the EMA state from ref_t to t, then fold ticks in place (float64 ms times).

    Afterwards, for each window k, mean[k] = Σ wᵢ·sᵢ / Σ wᵢ and log_w[k] = ln Σ wᵢ
    over every tick folded so far, wᵢ = weightᵢ·exp(−(t − tsᵢ)/W_k). Ticks with
    weight 0 are ignored; mean is NaN while no positive weight was folded.
    """
    for k in range(windows_ms.size):
        w = windows_ms[k]
        lw = log_w[k] - (t - ref_t) / w
        shift = lw
        for i in range(ts.size):
            if weight[i] > 0.0:
                e = -(t - ts[i]) / w
                shift = max(shift, e)
        if shift == -np.inf:  # nothing folded yet, nothing to fold
            log_w[k] = lw
            continue
        den = 0.0
        num = 0.0
        if lw > -np.inf:
            den = math.exp(lw - shift)
            num = mean[k] * den
        for i in range(ts.size):
            if weight[i] > 0.0:
                c = weight[i] * math.exp(-(t - ts[i]) / w - shift)
                den += c
                num += c * score[i]
        mean[k] = num / den
        log_w[k] = shift + math.log(den)


@njit(cache=True)
def _bar_row(b, step, lo, j, ts, score, pol, weight, ema_mean, agg_w, hist, prev_ratio, impute, vol_window, row):
    # pragma: no cover - compiled
    """Bar b's row from its movers ts[lo:j] (already folded into the EMAs) into `row`;
    `hist` and `prev_ratio` move on by one bar."""
    n_win = ema_mean.size
    h = hist.size
    cnt = 0
    n_pos = 0
    sw = 0.0
    sws = 0.0
    for i in range(lo, j):
        if ts[i] >= b - step:
            cnt += 1
            sw += weight[i]
            sws += weight[i] * score[i]
            if pol[i] == 1:
                n_pos += 1
    if cnt > 0:
        s = sws / sw if sw > 0.0 else np.nan
        ratio = n_pos / cnt
    elif impute == IMPUTE_FFILL:
        s = hist[h - 1]
        ratio = prev_ratio[0]
    elif impute == IMPUTE_ZERO:
        s = 0.0
        ratio = 0.0
    else:
        s = np.nan
        ratio = np.nan
    row[:] = np.nan
    row[C_SCORE] = s
    row[C_CNT] = cnt
    row[C_POS] = ratio
    row[C_D1] = s - hist[h - 1]
    row[C_D5] = s - hist[h - 5]
    for q in range(h - 1):
        hist[q] = hist[q + 1]
    hist[h - 1] = s
    prev_ratio[0] = ratio
    n_ok = 0
    acc = 0.0
    for q in range(h - vol_window, h):
        if not math.isnan(hist[q]):
            n_ok += 1
            acc += hist[q]
    if n_ok >= 2:
        mu = acc / n_ok
        acc = 0.0
        for q in range(h - vol_window, h):
            if not math.isnan(hist[q]):
                acc += (hist[q] - mu) ** 2
        row[C_VOL] = math.sqrt(acc / n_ok)
    comp = 0.0
    for k in range(n_win):
        row[C_EMA + k] = ema_mean[k]
        comp += agg_w[k] * ema_mean[k]
    row[C_EMA + n_win] = comp
    row[C_EMA + n_win + 1] = 1.0 if cnt == 0 else 0.0


@njit(cache=True)
def close_bars(
    first_bar,
    last_bar,
    step,
    move_bar,
    ts,
    score,
    pol,
    weight,
    windows_ms,
    agg_w,
    ema_mean,
    ema_logw,
    ref_t,
    hist,
    prev_ratio,
    impute,
    vol_window,
    empty_run,
    max_empty,
    ring_end,
    ring_val,
):  # pragma: no cover - compiled
    """Close bars first_bar, first_bar + step, …, last_bar; return (bar_ends, rows, ref_t').

    The movers arrive sorted by `move_bar`; those of bar b are folded into the EMA
    state (ticks with ts < b only, decayed to b). The bar's own fields use the movers
    with ts in [b − step, b): cnt, score = Σw·s/Σw, pos_ratio = #(pol = 1)/cnt;
    an empty bar is imputed (ffill of the previous row, 0, or NaN). d1/d5 subtract
    the score 1/5 rows back; vol = population std of the last `vol_window` scores
    (NaN ignored, NaN below two values). `ema_mean`, `ema_logw`, `hist` (previous
    scores, oldest first), `prev_ratio[0]` and `empty_run[0]` (bars without a mover
    since the last bar with one) are updated in place.

    A bar without movers once `empty_run[0] >= max_empty` is implied (module doc): not
    returned, no EMA fold (ref_t' is the last returned bar), written to the ring when it
    is one of the last `ring_end.size` bar ends. Every returned bar in that window is
    written to the ring too (slot = (bar_end // step) % ring size).
    """
    n_win = windows_ms.size
    ncol = C_EMA + n_win + 2
    n_total = (last_bar - first_bar) // step + 1
    distinct = 0
    for i in range(move_bar.size):
        if i == 0 or move_bar[i] != move_bar[i - 1]:
            distinct += 1
    cap = min(n_total, (distinct + 1) * (max_empty + 1))
    out = np.empty((max(cap, 0), ncol))
    ends = np.empty(max(cap, 0), np.int64)
    h_ring = ring_end.size
    ring_lo = last_bar - (h_ring - 1) * step  # bar ends from here on are in the ring afterwards
    scratch = np.empty(0)  # the row of implied bars, made when one is needed
    j = 0
    r = 0
    b = first_bar
    while b <= last_bar:
        lo = j
        while j < move_bar.size and move_bar[j] == b:
            j += 1
        if j == lo and empty_run[0] >= max_empty:
            nxt = move_bar[j] if j < move_bar.size else last_bar + step
            stop = min(nxt, last_bar + step)
            start = max(b, ring_lo)
            if start < stop:
                # the fixed-point row (computing it leaves hist and prev_ratio as they are)
                if scratch.size == 0:
                    scratch = np.empty(ncol)
                _bar_row(
                    start,
                    step,
                    lo,
                    lo,
                    ts,
                    score,
                    pol,
                    weight,
                    ema_mean,
                    agg_w,
                    hist,
                    prev_ratio,
                    impute,
                    vol_window,
                    scratch,
                )
                for bb in range(start, stop, step):
                    slot = (bb // step) % h_ring
                    ring_end[slot] = bb
                    ring_val[slot, :] = scratch
            b = stop
            continue
        ema_fold(ema_mean, ema_logw, float(ref_t), float(b), ts[lo:j], score[lo:j], weight[lo:j], windows_ms)
        ref_t = b
        _bar_row(b, step, lo, j, ts, score, pol, weight, ema_mean, agg_w, hist, prev_ratio, impute, vol_window, out[r])
        ends[r] = b
        if b >= ring_lo:
            slot = (b // step) % h_ring
            ring_end[slot] = b
            ring_val[slot, :] = out[r]
        empty_run[0] = 0 if j > lo else empty_run[0] + 1
        r += 1
        b += step
    return ends[:r], out[:r], ref_t


@njit(cache=True)
def open_bar(ts, score, weight, start, end):  # pragma: no cover - compiled
    """(count, Σw·s/Σw) of the ticks with start <= ts < end; score NaN when none."""
    cnt = 0
    sw = 0.0
    sws = 0.0
    for i in range(ts.size):
        if start <= ts[i] < end:
            cnt += 1
            sw += weight[i]
            sws += weight[i] * score[i]
    return cnt, (sws / sw if sw > 0.0 else np.nan)


@njit(cache=True)
def park_into(p_ts, p_ingest, p_score, p_pol, p_weight, n_pending, ts, ingest, score, pol, weight, status):
    # pragma: no cover - compiled
    """Write the ACCEPTED rows of a batch after the first `n_pending` rows of the pending
    arrays (the caller made room), in batch order; return the counts (accepted, duplicate,
    late). In place: returning new arrays costs ~0.4 µs each on the live hot path."""
    n_ok = 0
    n_dup = 0
    n_late = 0
    j = n_pending
    for i in range(status.size):
        if status[i] == ACCEPTED:
            p_ts[j] = ts[i]
            p_ingest[j] = ingest[i]
            p_score[j] = score[i]
            p_pol[j] = pol[i]
            p_weight[j] = weight[i]
            j += 1
            n_ok += 1
        elif status[i] == DUPLICATE:
            n_dup += 1
        else:
            n_late += 1
    return n_ok, n_dup, n_late


@njit(cache=True)
def close_through(
    next_bar,
    last,
    step,
    grace,
    p_ts,
    p_ingest,
    p_score,
    p_pol,
    p_weight,
    n_pending,
    windows_ms,
    agg_w,
    ema_mean,
    ema_logw,
    ref_t,
    hist,
    prev_ratio,
    impute,
    vol_window,
    empty_run,
    max_empty,
    ring_end,
    ring_val,
):  # pragma: no cover - compiled
    """Close bars next_bar..last (multiples of step; `next_bar` the int64 minimum before the
    first bar: then the first bar is the smallest entry bar of a pending tick): fold the
    pending ticks whose entry bar (`entry_bars`) is <= last in the canonical order (entry bar,
    ts, ingest, score, weight, polarity — so arrival order cannot change a sum), write the
    ring, and return (closed, bar_ends, rows, ref_t', pending rows left); closed is False when
    there was nothing to close. The pending arrays hold `n_pending` rows; the rows left are
    moved to their front, in order. EMA/history state is updated in place."""
    p_ts_all, p_ingest_all, p_score_all, p_pol_all, p_weight_all = p_ts, p_ingest, p_score, p_pol, p_weight
    p_ts = p_ts[:n_pending]
    p_ingest = p_ingest[:n_pending]
    p_score = p_score[:n_pending]
    p_pol = p_pol[:n_pending]
    p_weight = p_weight[:n_pending]
    m = entry_bars(p_ts, p_ingest, step, grace, next_bar)
    first = next_bar
    if first == np.iinfo(np.int64).min:
        first = m.min() if m.size else last + step
    if last < first:
        ncol = C_EMA + windows_ms.size + 2
        return (False, np.empty(0, np.int64), np.empty((0, ncol)), ref_t, n_pending)
    k = 0
    for i in range(m.size):
        if m[i] <= last:
            k += 1
    idx = np.empty(k, np.int64)
    kept = np.empty(m.size - k, np.int64)
    a = 0
    b = 0
    for i in range(m.size):
        if m[i] <= last:
            idx[a] = i
            a += 1
        else:
            kept[b] = i
            b += 1
    idx = canonical_order(idx, m, p_ts, p_ingest, p_score, p_weight, p_pol)
    bar_ends, out, ref_t = close_bars(
        first,
        last,
        step,
        m[idx],
        p_ts[idx],
        p_score[idx],
        p_pol[idx],
        p_weight[idx],
        windows_ms,
        agg_w,
        ema_mean,
        ema_logw,
        ref_t,
        hist,
        prev_ratio,
        impute,
        vol_window,
        empty_run,
        max_empty,
        ring_end,
        ring_val,
    )
    for q in range(kept.size):  # kept is ascending: moving rows forward never overwrites one still to move
        i = kept[q]
        p_ts_all[q] = p_ts_all[i]
        p_ingest_all[q] = p_ingest_all[i]
        p_score_all[q] = p_score_all[i]
        p_pol_all[q] = p_pol_all[i]
        p_weight_all[q] = p_weight_all[i]
    return (True, bar_ends, out, ref_t, kept.size)


@njit(cache=True)
def admit(
    mem_hash,
    mem_t,
    mem_n,
    p_ts,
    p_ingest,
    p_score,
    p_pol,
    p_weight,
    n_pending,
    ts,
    ingest,
    score,
    pol,
    weight,
    id_hash,
    max_latency_ms,
    window_ms,
    max_ingest,
    track,
    w0,
    cand_cut,
    cand_ingest,
):  # pragma: no cover - compiled
    """`add_ticks` in one call: late flags, the new max ingest time, `dedup_into` (the memory:
    the first `mem_n` entries, cut at that max − window; the caller made room for the batch's
    ids) and `park_into` (after the first `n_pending` rows; the caller made room). Returns
    (status, mem_n', n_ok, n_dup, n_late, max_ingest', after).

    With `track`, tick i is admitted after the watermark W_i = max(w0, the accepted ticks
    before it, the candles before it — candle c comes after the first `cand_cut[c]` ticks,
    `cand_ingest[c]` is its ingest time, or the int64 minimum if it was refused): its
    parked admission time is ingest_i if that is above W_i, else W_i + 1. `after[i]` is the
    watermark after tick i. Without `track`, the ingest times are parked as they are."""
    n = ts.size
    late = np.empty(n, np.bool_)
    for i in range(n):
        late[i] = ingest[i] - ts[i] > max_latency_ms
        if ingest[i] > max_ingest:
            max_ingest = ingest[i]
    status, mem_n = dedup_into(mem_hash, mem_t, mem_n, id_hash, ingest, late, window_ms, max_ingest - window_ms)
    admitted = ingest
    after = np.empty(n, np.int64)
    if track:
        admitted = np.empty(n, np.int64)
        w = w0
        c = 0
        for i in range(n):
            while c < cand_cut.size and cand_cut[c] <= i:
                if cand_ingest[c] > w:
                    w = cand_ingest[c]
                c += 1
            admitted[i] = ingest[i] if ingest[i] > w else w + 1
            if status[i] == ACCEPTED and ingest[i] > w:
                w = ingest[i]
            after[i] = w
    n_ok, n_dup, n_late = park_into(
        p_ts, p_ingest, p_score, p_pol, p_weight, n_pending, ts, admitted, score, pol, weight, status
    )
    return status, mem_n, n_ok, n_dup, n_late, max_ingest, after


@njit(cache=True)
def live_view(ema_mean, ema_logw, ref_t, now, p_ts, p_score, p_weight, windows_ms, agg_w, step):  # pragma: no cover
    """`SentimentState.latest` as one array: the EMAs at `now` over the committed state and
    the pending ticks with ts < now, then composite, open-bar count, open-bar score."""
    n_win = windows_ms.size
    mean = ema_mean.copy()
    logw = ema_logw.copy()
    k = 0
    for i in range(p_ts.size):
        if p_ts[i] < now:
            k += 1
    ts = np.empty(k, np.int64)
    sc = np.empty(k, np.float64)
    wt = np.empty(k, np.float64)
    j = 0
    for i in range(p_ts.size):
        if p_ts[i] < now:
            ts[j] = p_ts[i]
            sc[j] = p_score[i]
            wt[j] = p_weight[i]
            j += 1
    ema_fold(mean, logw, float(ref_t), float(now), ts, sc, wt, windows_ms)
    start = now // step * step
    cnt, open_score = open_bar(p_ts, p_score, p_weight, start, now)
    out = np.empty(n_win + 3)
    comp = 0.0
    for q in range(n_win):
        out[q] = mean[q]
        comp += agg_w[q] * mean[q]
    out[n_win] = comp
    out[n_win + 1] = cnt
    out[n_win + 2] = open_score
    return out


@njit(cache=True)
def _lex_before(a, b, m, ts, ingest, score, weight, pol):  # pragma: no cover - compiled
    """Row a sorts before row b in the canonical fold order (ties: not before)."""
    if m[a] != m[b]:
        return m[a] < m[b]
    if ts[a] != ts[b]:
        return ts[a] < ts[b]
    if ingest[a] != ingest[b]:
        return ingest[a] < ingest[b]
    if score[a] != score[b]:
        return score[a] < score[b]
    if weight[a] != weight[b]:
        return weight[a] < weight[b]
    return pol[a] < pol[b]


@njit(cache=True)
def canonical_order(idx, m, ts, ingest, score, weight, pol):  # pragma: no cover - compiled
    """`idx` sorted stably by (m, ts, ingest, score, weight, polarity): an insertion sort for
    the few ticks of a live batch, successive stable argsorts for a backfill's many."""
    if idx.size <= 32:
        out = idx.copy()
        for i in range(1, out.size):
            cur = out[i]
            j = i - 1
            while j >= 0 and _lex_before(cur, out[j], m, ts, ingest, score, weight, pol):
                out[j + 1] = out[j]
                j -= 1
            out[j + 1] = cur
        return out
    # By (m, ts) with two stable sorts (least significant first); rows equal in both (rare:
    # ticks of one millisecond) are then put in (ingest, score, weight, polarity) order by an
    # insertion sort of their run, which is stable: the order the six stable sorts gave.
    idx = idx[np.argsort(ts[idx], kind="mergesort")]
    idx = idx[np.argsort(m[idx], kind="mergesort")]
    lo = 0
    while lo < idx.size:
        hi = lo + 1
        while hi < idx.size and m[idx[hi]] == m[idx[lo]] and ts[idx[hi]] == ts[idx[lo]]:
            hi += 1
        for i in range(lo + 1, hi):
            cur = idx[i]
            j = i - 1
            while j >= lo and _lex_before(cur, idx[j], m, ts, ingest, score, weight, pol):
                idx[j + 1] = idx[j]
                j -= 1
            idx[j + 1] = cur
        lo = hi
    return idx
