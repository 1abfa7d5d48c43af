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

    def coef(self, c):
        """A coefficient (number or per-game array) as an array of this namespace."""
        return np.asarray(c, dtype=self.dtype)

    def to_numpy(self, x):
        return np.asarray(x)

    def logsumexp(self, x):
        """scipy.special.logsumexp(x, axis=-1), bit for bit, at a fraction of its cost.

        scipy's algorithm (the largest term is taken out of the sum: log1p(Σ_{i≠max} e^{x_i−max}) +
        max, for accuracy) without its array-API overhead, its second full exp and numpy's slow
        per-row reductions over short rows. Rows whose maximum is not finite go to scipy itself.
        """
        x = np.asarray(x)
        if x.ndim == 0 or x.dtype.kind != "f" or x.size == 0:
            return _np_logsumexp(x, axis=-1)
        a_max = _rowmax(x)
        if not np.isfinite(a_max).all():
            return _np_logsumexp(x, axis=-1)
        a_max = a_max[..., None]
        mask = x == a_max
        # finite maximum: no warnings below (x − max ≤ 0, exp(−inf) = 0, m ≥ 1)
        e = x - a_max
        np.copyto(e, -np.inf, where=mask)  # = where(mask, −inf, x) − max: −inf − max is −inf exactly
        s = np.add.reduce(np.exp(e, out=e), axis=-1, keepdims=True)
        if np.count_nonzero(mask) == mask.size // x.shape[-1]:
            out = np.log1p(s) + a_max  # one maximum per row: scipy's s/m and log(m) are exactly s and 0
        else:
            m = np.add.reduce(mask, axis=-1, keepdims=True, dtype=x.dtype)
            out = np.log1p(np.where(s == 0, s, s / m)) + np.log(m) + a_max
        out = out[..., 0]
        return out[()] if out.ndim == 0 else out

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


def _rowmax(x):
    """max over the last axis; over short rows as a few elementwise maxima (numpy's per-row
    reduction loop costs ~100 ns a row). Exact either way: max does not round."""
    n = x.shape[-1]
    if x.ndim < 2 or n > 16 or x.size < 1024:
        return np.maximum.reduce(x, axis=-1)
    m = x[..., 0]
    for j in range(1, n):
        m = np.maximum(m, x[..., j])
    return m


def make_ops(backend: str = "numpy", device=None, dtype=None):
    """The op namespace for ``backend`` ("numpy" or "torch"); ``dtype`` a floating dtype (default float64)."""
    from .validation import WrongType, fail, float_dtype

    if not isinstance(backend, str) or backend not in ("numpy", "torch"):
        kind = {} if isinstance(backend, str) else {"cls": WrongType}
        fail("backend", backend, "unknown backend; it must be 'numpy' (default) or 'torch'", **kind)
    if backend == "numpy":
        if device not in (None, "cpu"):
            fail("device", device, "the numpy backend runs on the CPU only (device=None or 'cpu'); use backend='torch' for other devices")
        return NumpyOps(float_dtype(dtype, "dtype"))
    try:
        from .torch_ops import TorchOps
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError(
            "backend='torch' needs torch: pip install 'nashlab[llm]' (CPU: pip install torch==2.13.0)"
        ) from e
    return TorchOps(device=device, dtype=dtype)
