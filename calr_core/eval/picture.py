"""Picture of ranked lists: for a few queries, the query image and its top-k gallery images after
the same-identity-same-camera removal of the evaluation protocol (docs/method.md "Evaluation protocol"),
true matches framed green, false ones red, each labelled "#rank distance".

Layout: one row per query; columns = the query, a gap of ``GAP`` pixels, then top_k cells.
A cell is ``cell = (height, width)`` pixels of image (frame drawn inside it) above a ``LABEL``
pixel text strip. Image size: (width, height) =
((1 + top_k) * (cell_w + PAD) + GAP + PAD, n_rows * (cell_h + LABEL + PAD) + PAD).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from calr_core.io.atomic import atomic_path

PAD, GAP, LABEL, FRAME = 4, 12, 14, 3
GREEN, RED, BLUE, GREY = (0, 170, 0), (220, 0, 0), (40, 90, 220), (150, 150, 150)


def cell_origin(row: int, col: int, cell: tuple[int, int]) -> tuple[int, int]:
    """(x, y) of the top-left pixel of a cell; col 0 is the query, 1..top_k the ranked list."""
    h, w = cell
    x = PAD + col * (w + PAD) + (GAP if col > 0 else 0)
    return x, PAD + row * (h + LABEL + PAD)


def _tile(path: Path, cell: tuple[int, int], colour: tuple[int, int, int]) -> Image.Image:
    h, w = cell
    with Image.open(path) as im:
        tile = im.convert("RGB").resize((w, h), Image.BILINEAR)
    ImageDraw.Draw(tile).rectangle([0, 0, w - 1, h - 1], outline=colour, width=FRAME)
    return tile


def ranked_list_picture(query_paths: Sequence[str], gallery_paths: Sequence[str], dist,
                        q_pids, g_pids, q_camids, g_camids, root: str | os.PathLike,
                        out_png: str | os.PathLike, n_queries: int = 5, top_k: int = 10,
                        cell: tuple[int, int] = (128, 64),
                        query_indices: Sequence[int] | None = None) -> tuple[int, int]:
    """Write the PNG grid to ``out_png`` (atomically) and return its (width, height).

    dist: (Q, G) distances; paths are relative to ``root``. Queries shown: ``query_indices``, or
    by default the first ``n_queries`` queries that have a true match. Ranking ties follow
    gallery index (stable sort), as in ``rank_metrics``. Query frames are blue. A query of
    unknown identity (pid < 0, e.g. `calr-stage search`) keeps its whole ranked list, framed grey.
    """
    dist = np.asarray(dist)
    q_pids, g_pids = np.asarray(q_pids), np.asarray(g_pids)
    q_camids, g_camids = np.asarray(q_camids), np.asarray(g_camids)
    Q, G = len(query_paths), len(gallery_paths)
    if dist.shape != (Q, G):
        raise ValueError(f"dist: expected shape ({Q}, {G}) from the path lists, got {dist.shape}")
    if top_k < 1 or n_queries < 1:
        raise ValueError(f"top_k/n_queries: expected >= 1, got {top_k}/{n_queries}")
    if query_indices is None:
        has_match = [((g_pids == q_pids[i]) & (g_camids != q_camids[i])).any() for i in range(Q)]
        query_indices = [i for i in range(Q) if has_match[i]][:n_queries]
    if not query_indices:
        raise ValueError("query_indices: no query to show (none has a true match in the gallery)")
    root = Path(root)
    h, w = cell
    size = ((1 + top_k) * (w + PAD) + GAP + PAD, len(query_indices) * (h + LABEL + PAD) + PAD)
    canvas = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for row, qi in enumerate(query_indices):
        x, y = cell_origin(row, 0, cell)
        canvas.paste(_tile(root / query_paths[qi], cell, BLUE), (x, y))
        draw.text((x + 2, y + h + 1), f"q{qi}", fill=(0, 0, 0))
        order = np.argsort(dist[qi], kind="stable")
        known = q_pids[qi] >= 0
        if known:
            order = order[~((g_pids[order] == q_pids[qi]) & (g_camids[order] == q_camids[qi]))]
        for rank, gi in enumerate(order[:top_k], start=1):
            x, y = cell_origin(row, rank, cell)
            colour = GREY if not known else GREEN if g_pids[gi] == q_pids[qi] else RED
            canvas.paste(_tile(root / gallery_paths[gi], cell, colour), (x, y))
            draw.text((x + 2, y + h + 1), f"#{rank} {dist[qi, gi]:.2f}", fill=(0, 0, 0))
    with atomic_path(out_png) as tmp:
        canvas.save(tmp, format="PNG")
    return size
