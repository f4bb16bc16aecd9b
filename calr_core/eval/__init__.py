"""Evaluation: ranking metrics (mAP, CMC, mINP), bounded-memory feature evaluation, k-reciprocal
re-ranking, pseudo-label quality and ranked-list pictures (METHOD.md "Evaluation protocol")."""
from calr_core.eval.evaluate import evaluate_features, pairwise_distance
from calr_core.eval.metrics import cmc_table, rank_metrics
from calr_core.eval.picture import ranked_list_picture
from calr_core.eval.quality import label_quality
from calr_core.eval.rerank import rerank_distance, rerank_evaluate

__all__ = ["cmc_table", "evaluate_features", "label_quality", "pairwise_distance", "rank_metrics",
           "ranked_list_picture", "rerank_distance", "rerank_evaluate"]
