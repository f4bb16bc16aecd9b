"""Evaluation: ranking metrics (mAP, CMC, mINP), bounded-memory feature evaluation, k-reciprocal
re-ranking, pseudo-label quality and ranked-list pictures (docs/method.md "Evaluation protocol").

Names load on first use (PEP 562), so a clustering stage that only needs ``label_quality``
does not import torch.
"""
from importlib import import_module

_WHERE = {"evaluate_features": "evaluate", "pairwise_distance": "evaluate", "cmc_table": "metrics",
          "rank_metrics": "metrics", "ranked_list_picture": "picture", "label_quality": "quality",
          "rerank_distance": "rerank", "rerank_evaluate": "rerank"}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'calr_core.eval' has no attribute {name!r}")
    return getattr(import_module(f"calr_core.eval.{_WHERE[name]}"), name)
