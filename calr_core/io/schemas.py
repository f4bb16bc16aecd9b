"""Every artifact's Arrow schema, declared once; checked on write and on read.

Ground-truth identities (``pid``) appear only in the manifest: what clustering and training
read never carries them.
"""
from __future__ import annotations

import pyarrow as pa

MANIFEST = pa.schema([
    ("image_id", pa.string()),   # stable id: the path relative to the dataset root
    ("path", pa.string()),       # relative to the dataset root, POSIX separators
    ("camid", pa.int32()),       # 0-based
    ("split", pa.string()),      # train / query / gallery
    ("pid", pa.int32()),         # ground truth, -1 unknown
])

# features: (image_id, camid, feature[D]); the feature column's list size is checked on read
FEATURES = pa.schema([
    ("image_id", pa.string()),
    ("camid", pa.int32()),
    ("feature", pa.list_(pa.float32())),  # stored as fixed_size_list<float32>[D]
])

LOCAL_LABELS = pa.schema([
    ("image_id", pa.string()),
    ("camid", pa.int32()),
    ("local_label", pa.int32()),  # phase-1 cluster inside the camera
    ("round", pa.int32()),        # intra round whose labels these are
    ("silhouette", pa.float32()), # that round's silhouette on the Jaccard distance
])

PSEUDO_LABELS = pa.schema([
    ("image_id", pa.string()),
    ("camid", pa.int32()),
    ("global_label", pa.int32()),  # raw global clustering, -1 outlier
    ("label", pa.int32()),         # after refinement, -1 outlier (what training uses)
    ("is_pivot", pa.bool_()),
    ("density", pa.float32()),     # Infomap density score (0 for DBSCAN)
    ("weight", pa.float32()),      # camera-entropy weight of the image's cluster (0 for outliers)
    ("refined", pa.bool_()),       # turned into an outlier by label refinement
])

SCHEMAS: dict[str, pa.Schema] = {
    "manifest": MANIFEST,
    "features": FEATURES,
    "local_labels": LOCAL_LABELS,
    "pseudo_labels": PSEUDO_LABELS,
}
