"""Ranking metrics of person re-identification: mAP, CMC and mINP (docs/method.md "Evaluation protocol").

Market-1501 protocol, used for every dataset: for each query the gallery images with the same
identity AND the same camera are dropped ("junk"); a query with no remaining true match is
skipped. With the gallery ranked by increasing distance:
- AP   = mean over the true matches of the precision at that match's rank (step AP);
- CMC(k) = share of queries with a true match among the top k;
- INP  = number of true matches / rank of the last true match.

Tie rule: gallery entries at equal distance are ranked by gallery index (a stable sort), so the
metrics are a deterministic function of the distance matrix.

How it is fast: no argsort, and on the CPU no sort at all. Everything above only needs the rank
of each true match: 1 + the number of kept gallery entries before it. The few same-identity
gallery entries of each query come from a by-identity index of the gallery (no (Q, G) masks).
- CPU: one compiled pass over each query row (numba, parallel over queries). The row's true
  matches are sorted by (distance, index); an entry ranked after the last of them (most of the
  row) is skipped after one comparison, any other finds the first match it precedes by binary
  search, and a cumulative histogram gives every match's rank. O(G) per query, not O(G log G).
- GPU: each row's distances sorted by value (torch.sort); one batched ``searchsorted`` of the
  true-match distances gives the counts, from which the few junk entries are subtracted. Exact
  ties with a true match are then counted by gallery index for the (query, match) pairs that
  have them.
"""
from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
import torch

_BLOCK = 256  # queries per stats block: bounds the (block, G) temporaries


def _as_ids(x, n: int, name: str, device: torch.device) -> torch.Tensor:
    a = x if isinstance(x, torch.Tensor) else np.asarray(x)
    is_int = (not a.dtype.is_floating_point and not a.is_complex() and a.dtype != torch.bool
              if isinstance(a, torch.Tensor) else np.issubdtype(a.dtype, np.integer))
    if not is_int:
        raise ValueError(f"{name}: expected integer ids, got dtype {a.dtype}")
    if a.ndim != 1 or a.shape[0] != n:
        raise ValueError(f"{name}: expected a 1-d array of length {n}, got shape {tuple(a.shape)}")
    if isinstance(a, np.ndarray):  # ids from Arrow-backed pandas columns are read-only views
        a = a.astype(np.int64, copy=not a.flags.writeable)
    return torch.as_tensor(a).to(device=device, dtype=torch.int64)


class GalleryIndex(NamedTuple):
    """Gallery ids on one device, grouped by identity so each query finds its own in O(1)."""
    pids: torch.Tensor  # (G,)
    camids: torch.Tensor  # (G,)
    order: torch.Tensor  # (G,) gallery indices sorted by pid (stable)
    uniq: torch.Tensor  # (U,) distinct pids, ascending
    starts: torch.Tensor  # (U,) first position of each pid in order
    counts: torch.Tensor  # (U,)

    @classmethod
    def build(cls, pids: torch.Tensor, camids: torch.Tensor) -> "GalleryIndex":
        order = torch.argsort(pids, stable=True)  # (G,)
        uniq, counts = torch.unique_consecutive(pids[order], return_counts=True)
        return cls(pids, camids, order, uniq, counts.cumsum(0) - counts, counts)

    def same_pid_pairs(self, q_pids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(row, gallery index) of every gallery entry sharing the identity of query row."""
        pos = torch.searchsorted(self.uniq, q_pids).clamp(max=max(len(self.uniq) - 1, 0))  # (B,)
        found = self.uniq[pos] == q_pids  # (B,)
        c = torch.where(found, self.counts[pos], 0)  # (B,)
        rows = torch.repeat_interleave(torch.arange(len(q_pids), device=q_pids.device), c)  # (P,)
        offs = torch.arange(len(rows), device=q_pids.device) - (c.cumsum(0) - c)[rows]  # (P,)
        return rows, self.order[self.starts[pos][rows] + offs]


def _count_per_threshold(rows: torch.Tensor, vals: torch.Tensor, thr: torch.Tensor,
                         right: bool) -> torch.Tensor:
    """c[b, t] = #{p : rows[p] == b and vals[p] < thr[b, t]} (<= when right)."""
    hit = (vals[:, None] <= thr[rows]) if right else (vals[:, None] < thr[rows])  # (P, T)
    return torch.zeros(thr.shape, dtype=torch.int64, device=thr.device).index_add_(
        0, rows, hit.to(torch.int64))


def query_stats(dist: torch.Tensor, q_pids: torch.Tensor, q_camids: torch.Tensor,
                gal: GalleryIndex) -> tuple[torch.Tensor, ...]:
    """Per-query (n_true, AP, INP, rank of first true match) for a block of query rows.

    dist: (B, G) distances (not modified); q ids: (B,) int64 on dist's device. Ranks are 1-based
    among the kept (non-junk) gallery entries; AP/INP are float64 and 0 where n_true == 0.
    CPU: a compiled pass per row (``_rank_stats``); GPU: sorted rows and ``searchsorted``.
    """
    if dist.device.type == "cpu":
        return _query_stats_cpu(dist, q_pids, q_camids, gal)
    return _query_stats(dist, q_pids, q_camids, gal)


def _query_stats_cpu(dist, q_pids, q_camids, gal):
    qp = q_pids.numpy()
    pos = np.searchsorted(gal.uniq.numpy(), qp).clip(max=max(len(gal.uniq) - 1, 0))  # (B,)
    found = gal.uniq.numpy()[pos] == qp if len(gal.uniq) else np.zeros(len(qp), bool)
    first_pos = np.where(found, gal.starts.numpy()[pos], 0)
    count = np.where(found, gal.counts.numpy()[pos], 0)
    n, ap, inp, first, nan = _rank_stats(np.ascontiguousarray(dist.numpy()), qp, q_camids.numpy(),
                                         gal.pids.numpy(), gal.camids.numpy(), gal.order.numpy(),
                                         first_pos, count)
    if nan.any():
        raise ValueError("dist: expected distances, found NaN")
    return tuple(torch.from_numpy(a) for a in (n, ap, inp, first))


@numba.njit(inline="always")
def _before(d, g, td, ti):
    """(d, g) ranks before (td, ti): smaller distance, or equal distance and lower index."""
    return d < td or (d == td and g < ti)


@numba.njit(parallel=True, nogil=True, cache=True)
def _rank_stats(dist, q_pids, q_camids, g_pids, g_camids, order, first_pos, count):
    """CPU: one pass over each query row, no sort. The true matches (same id, other camera; from
    ``order[first_pos[q]:first_pos[q] + count[q]]``) are sorted by (distance, index); each kept
    gallery entry ranked before the last of them finds, by binary search, the first match it
    precedes, and a cumulative histogram gives every match's rank. Returns n, AP, INP, first
    rank, and a per-query NaN flag."""
    Q, G = dist.shape
    n = np.zeros(Q, np.int64)
    ap = np.zeros(Q, np.float64)
    inp = np.zeros(Q, np.float64)
    first = np.zeros(Q, np.int64)
    bad = np.zeros(Q, np.bool_)
    for q in numba.prange(Q):
        p, c, row = q_pids[q], q_camids[q], dist[q]
        m = count[q]
        td = np.empty(m, dist.dtype)
        ti = np.empty(m, np.int64)
        T = 0
        for s in range(first_pos[q], first_pos[q] + m):  # true matches: same id, other camera
            g = order[s]
            if g_camids[g] == c:
                continue
            d, j = row[g], T  # insertion sort by (distance, index): T is small
            while j > 0 and _before(d, g, td[j - 1], ti[j - 1]):
                td[j], ti[j] = td[j - 1], ti[j - 1]
                j -= 1
            td[j], ti[j] = d, g
            T += 1
        n[q] = T
        if T == 0:
            continue
        hist = np.zeros(T + 1, np.int64)  # hist[t]: kept entries ranked before match t but not t-1
        last_d, last_i = td[T - 1], ti[T - 1]
        for g in range(G):
            d = row[g]
            if d != d:
                bad[q] = True
            if d > last_d or (d == last_d and g >= last_i):
                continue  # after every true match (the common case)
            if g_pids[g] == p and g_camids[g] == c:
                continue  # junk: same identity, same camera
            lo, hi = 0, T - 1  # first t with (d, g) before match t
            while lo < hi:
                mid = (lo + hi) // 2
                if _before(d, g, td[mid], ti[mid]):
                    hi = mid
                else:
                    lo = mid + 1
            hist[lo] += 1
        before, total = 0, 0.0
        for t in range(T):
            before += hist[t]  # kept entries ranked before match t (earlier matches included)
            total += (t + 1) / (before + 1)
            if t == 0:
                first[q] = before + 1
            if t == T - 1:
                inp[q] = T / (before + 1)
        ap[q] = total / T
    return n, ap, inp, first, bad


def _query_stats(dist: torch.Tensor, q_pids: torch.Tensor, q_camids: torch.Tensor,
                 gal: GalleryIndex) -> tuple[torch.Tensor, ...]:
    """The GPU path: sorted rows, batched searchsorted (see the module docstring)."""
    B, G = dist.shape
    dev = dist.device
    rows, cols = gal.same_pid_pairs(q_pids)  # (P,) pairs sorted by row, then gallery index
    junk = gal.camids[cols] == q_camids[rows]  # (P,)
    j_rows, j_vals = rows[junk], dist[rows[junk], cols[junk]]  # (Pj,)
    rows, cols = rows[~junk], cols[~junk]  # true matches
    n = torch.bincount(rows, minlength=B)  # (B,)
    T = max(int(n.max()), 1) if B else 1
    pos = torch.arange(rows.numel(), device=dev) - (n.cumsum(0) - n)[rows]
    thr = torch.full((B, T), float("inf"), dtype=dist.dtype, device=dev)  # (B, T)
    idx = torch.full((B, T), G, dtype=torch.int64, device=dev)  # (B, T)
    thr[rows, pos] = dist[rows, cols]
    idx[rows, pos] = cols
    thr, order = thr.sort(dim=1, stable=True)  # ties keep gallery-index order
    thr, idx = thr.contiguous(), idx.gather(1, order)
    srt = torch.sort(dist, dim=1).values  # (B, G) NaN sorts last
    if bool(torch.isnan(srt[:, -1]).any()):
        raise ValueError("dist: expected distances, found NaN")
    # entries strictly closer / at equal distance, junk taken back out
    less = torch.searchsorted(srt, thr) - _count_per_threshold(j_rows, j_vals, thr, False)
    eq = torch.searchsorted(srt, thr, right=True) - less - _count_per_threshold(
        j_rows, j_vals, thr, True)  # (B, T) >= 1
    real = torch.arange(T, device=dev)[None, :] < n[:, None]  # (B, T)
    rank = less + 1  # (B, T)
    tied_r, tied_t = (real & (eq > 1)).nonzero(as_tuple=True)
    gidx = torch.arange(G, device=dev)
    for s in range(0, tied_r.numel(), 64):  # exact ties: count equal kept entries with lower index
        r, t = tied_r[s:s + 64], tied_t[s:s + 64]
        kept = (gal.pids[None, :] != q_pids[r, None]) | (gal.camids[None, :] != q_camids[r, None])
        before = kept & (dist[r] == thr[r, t, None]) & (gidx[None, :] < idx[r, t, None])  # (P, G)
        rank[r, t] += before.sum(1)
    k = torch.arange(1, T + 1, device=dev, dtype=torch.float64)[None, :]  # (1, T)
    nf = n.to(torch.float64)
    ap = torch.where(real, k / rank, 0.0).sum(1) / nf.clamp(min=1)  # (B,)
    last = rank.gather(1, (n - 1).clamp(min=0)[:, None])[:, 0]  # (B,)
    inp = torch.where(n > 0, nf / last, 0.0)  # (B,)
    return n, ap, inp, rank[:, 0]


class _Accumulator:
    """Collects per-query stats block by block; the means are taken once at the end, so the
    result does not depend on how queries were chunked."""

    def __init__(self, max_rank: int):
        self.max_rank = max_rank
        self.parts: list[tuple[np.ndarray, ...]] = []

    def add(self, stats: tuple[torch.Tensor, ...]) -> None:
        self.parts.append(tuple(s.cpu().numpy() for s in stats))

    def result(self) -> dict:
        n, ap, inp, first = (np.concatenate(c) for c in zip(*self.parts))
        valid = n > 0
        if not valid.any():
            raise ValueError("queries: no query has a true match in the gallery "
                             "(same identity in another camera); nothing to evaluate")
        hits = np.bincount(np.minimum(first[valid], self.max_rank + 1), minlength=self.max_rank + 2)
        cmc = np.cumsum(hits[1:self.max_rank + 1]) / valid.sum()
        return {"mAP": float(ap[valid].mean()), "mINP": float(inp[valid].mean()),
                "cmc": cmc.astype(np.float64), "n_queries": int(valid.sum()),
                "n_skipped": int((~valid).sum())}


def rank_metrics(dist, q_pids, g_pids, q_camids, g_camids, max_rank: int = 50) -> dict:
    """mAP, mINP and CMC of a (Q, G) query-gallery distance matrix (smaller = more similar).

    Returns {"mAP": float, "mINP": float, "cmc": (max_rank,) float64, "n_queries": evaluated
    queries, "n_skipped": queries without a true match}. Metrics are fractions in [0, 1]. CMC has
    length max_rank even when the gallery is shorter (it then stays at its last value, 1.0).
    dist may be a numpy array or torch tensor, on any device. Ties: see module docstring.
    """
    dist = torch.as_tensor(dist)
    if dist.ndim != 2 or not dist.dtype.is_floating_point:
        raise ValueError(f"dist: expected a 2-d float (Q, G) matrix, got shape {tuple(dist.shape)} "
                         f"dtype {dist.dtype}")
    if max_rank < 1:
        raise ValueError(f"max_rank: expected >= 1, got {max_rank}")
    Q, G = dist.shape
    if Q == 0 or G == 0:
        raise ValueError(f"dist: expected at least one query and one gallery column, got ({Q}, {G})")
    if dist.dtype not in (torch.float32, torch.float64):
        dist = dist.float()
    dev = dist.device
    qp, qc = _as_ids(q_pids, Q, "q_pids", dev), _as_ids(q_camids, Q, "q_camids", dev)
    gp, gc = _as_ids(g_pids, G, "g_pids", dev), _as_ids(g_camids, G, "g_camids", dev)
    gal = GalleryIndex.build(gp, gc)
    acc = _Accumulator(max_rank)
    for s in range(0, Q, _BLOCK):
        acc.add(query_stats(dist[s:s + _BLOCK], qp[s:s + _BLOCK], qc[s:s + _BLOCK], gal))
    return acc.result()


def cmc_table(result: dict) -> dict[str, float]:
    """Report row of a metrics dict: mAP, Rank-1/5/10 (where the CMC is that long) and mINP."""
    cmc = np.asarray(result["cmc"])
    row = {"mAP": float(result["mAP"])}
    row.update({f"Rank-{k}": float(cmc[k - 1]) for k in (1, 5, 10) if k <= len(cmc)})
    row["mINP"] = float(result["mINP"])
    return row
