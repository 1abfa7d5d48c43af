"""The few array operations the exact backend needs, for each array library it runs on.

The exact backend is written once against this namespace; numpy and torch differ only here.
"""
from __future__ import annotations

import numpy as np
from scipy.special import logsumexp as _np_logsumexp


class NumpyOps:
    """float64 numpy (the default, and the ground truth the other namespaces are tested against)."""

    name = "numpy"

    def __init__(self, dtype=np.float64):
        self.dtype = np.dtype(dtype)

    def asarray(self, x):
        return np.asarray(x, dtype=self.dtype)

    def to_numpy(self, x):
        return np.asarray(x)

    def logsumexp(self, x):
        return _np_logsumexp(x, axis=-1)

    def exp(self, x):
        return np.exp(x)

    def log(self, x):
        return np.log(x)

    def max(self, x):
        return np.max(x, axis=-1)

    def sum(self, x):
        return np.sum(x, axis=-1)

    def matvec(self, M, v):
        """(..., m, n) @ (..., n) -> (..., m)."""
        return np.matmul(M, v[..., None])[..., 0]

    def vecmat(self, v, M):
        """(..., m) @ (..., m, n) -> (..., n)."""
        return np.matmul(v[..., None, :], M)[..., 0, :]

    def where(self, mask, a, b):
        return np.where(mask, a, b)

    def is_array(self, x):
        return isinstance(x, np.ndarray)


def make_ops(backend: str = "numpy", device=None, dtype=None):
    """The op namespace for ``backend`` ("numpy" or "torch")."""
    if backend == "numpy":
        if device not in (None, "cpu"):
            raise ValueError(f"the numpy backend runs on the CPU only; for device={device!r} use backend='torch'")
        return NumpyOps(np.float64 if dtype is None else dtype)
    if backend == "torch":
        try:
            from .torch_ops import TorchOps
        except ImportError as e:  # pragma: no cover - depends on the install
            raise ImportError(
                "backend='torch' needs torch: pip install 'nashlab[llm]' (CPU: pip install torch==2.13.0)"
            ) from e
        return TorchOps(device=device, dtype=dtype)
    raise ValueError(f"unknown backend {backend!r}; choose 'numpy' (default) or 'torch'")
