"""Small synthetic feature sets for the clustering tests."""
import numpy as np


def clustered(n: int, d: int = 16, n_clusters: int = 20, noise: float = 0.5, dup: int = 0, seed: int = 0) -> np.ndarray:
    """(n, d) float32 L2-normalised Gaussian clusters; the last ``dup`` rows copy the first ones."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, d))
    x = centres[rng.integers(0, n_clusters, n)] + noise * rng.standard_normal((n, d))
    if dup:
        x[-dup:] = x[:dup]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32)
