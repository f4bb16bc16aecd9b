"""calr: camera-aware label refinement (CALR) for unsupervised person re-identification."""
