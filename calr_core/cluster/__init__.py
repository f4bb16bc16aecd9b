"""Clustering engine: exact kNN, k-reciprocal Jaccard distance, DBSCAN / agglomerative / Infomap
clustering, silhouette, and the camera-aware refinement and cluster weights
(docs/method.md "Phase 1: intra-camera training"; docs/method.md "Phase 2: inter-camera training")."""
from calr_core.cluster.clusterers import (
    InfomapResult,
    agglomerative,
    dbscan,
    densify,
    infomap_cluster,
    knn_graph,
    silhouette,
)
from calr_core.cluster.jaccard import jaccard_distance
from calr_core.cluster.knn import knn
from calr_core.cluster.refine import camera_weights, decay, refine_labels, select_pivots

__all__ = ["InfomapResult", "agglomerative", "camera_weights", "dbscan", "decay", "densify", "infomap_cluster",
           "jaccard_distance", "knn", "knn_graph", "refine_labels", "select_pivots", "silhouette"]
