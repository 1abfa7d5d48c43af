"""The exact backend's array operations on torch tensors (CPU or GPU), mirroring ``ops.NumpyOps``.

float64 by default, so the torch backend reproduces the numpy one to ~1e-12 and gaps reach 1e-10;
float32 on request (faster, gaps bottom out near 1e-6). Nothing here is specific to a device: the
same calls run on "cpu" or "cuda".
"""
from __future__ import annotations

import warnings

import numpy as np
import torch

_DTYPES = {
    "float64": torch.float64, "double": torch.float64, "f8": torch.float64,
    "float32": torch.float32, "float": torch.float32, "f4": torch.float32,
    "float16": torch.float16, "half": torch.float16, "bfloat16": torch.bfloat16,
}


def torch_dtype(dtype) -> torch.dtype:
    """A torch floating dtype from None (float64), a torch dtype, a numpy dtype or a name."""
    from .validation import WrongType, fail

    if dtype is None:
        return torch.float64
    rule = "it must be a floating dtype such as 'float64' (default), 'float32' or torch.float32"
    if isinstance(dtype, torch.dtype):
        out = dtype
    else:
        try:
            key = str(np.dtype(dtype)) if not isinstance(dtype, str) else dtype.replace("torch.", "").lower()
        except (TypeError, ValueError, SyntaxError):  # numpy parses comma strings such as ',' as Python
            fail("dtype", dtype, rule, cls=WrongType)
        if key not in _DTYPES:
            fail("dtype", dtype, rule)
        out = _DTYPES[key]
    if not out.is_floating_point:
        fail("dtype", dtype, rule + " (policies are log-probabilities: an integer dtype cannot hold them)")
    return out


class TorchOps:
    """torch tensors on ``device`` (default "cpu") with floating ``dtype`` (default float64)."""

    name = "torch"

    def __init__(self, device=None, dtype=None):
        from .validation import WrongType, fail

        try:
            self.device = torch.device("cpu" if device is None else device)
        except (RuntimeError, TypeError) as e:
            fail("device", device, f"it must be a torch device such as 'cpu' or 'cuda' ({e})", cls=WrongType)
        self.dtype = torch_dtype(dtype)
        # Per-game coefficient arrays (numpy, recomputed by the algorithms each step) converted once
        # off the CPU, where every conversion is a host-to-device copy. Keyed by value: always exact.
        # (On the CPU a float64 conversion shares memory and costs nothing; hashing would cost more.)
        self._coefs: dict | None = None if self.device.type == "cpu" else {}

    def asarray(self, x):
        if isinstance(x, torch.Tensor):
            return x.to(device=self.device, dtype=self.dtype)
        if isinstance(x, np.ndarray) and not x.flags.writeable:
            # Games freeze their matrices; sharing the memory (no copy of a large P) is safe because
            # the backend never writes into its inputs. torch only warns that it could.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                return torch.as_tensor(x, dtype=self.dtype, device=self.device)
        return torch.as_tensor(x, dtype=self.dtype, device=self.device)

    def coef(self, c):
        """A per-game coefficient array as a tensor (converted once per distinct value)."""
        if self._coefs is not None and isinstance(c, np.ndarray) and c.ndim:
            key = (c.shape, c.dtype.str, c.tobytes())
            t = self._coefs.get(key)
            if t is None:
                if len(self._coefs) >= 64:  # a schedule makes a new value every step: stay bounded
                    self._coefs.clear()
                t = self._coefs[key] = self.asarray(c)
            return t
        return self.asarray(c)

    def to_numpy(self, x):
        if isinstance(x, torch.Tensor):
            return x.detach().cpu().numpy()
        return np.asarray(x)

    def logsumexp(self, x):
        return torch.logsumexp(x, dim=-1)

    def exp(self, x):
        return torch.exp(x)

    def log(self, x):
        return torch.log(x)

    def max(self, x):
        return torch.amax(x, dim=-1)

    def sum(self, x):
        return torch.sum(x, dim=-1)

    def matvec(self, M, v):
        """(..., m, n) @ (..., n) -> (..., m)."""
        if M.ndim == 2:  # one matrix for every policy: one pass over it (gemv or gemm)
            return torch.mv(M, v) if v.ndim == 1 else v @ M.T
        return torch.matmul(M, v.unsqueeze(-1)).squeeze(-1)

    def vecmat(self, v, M):
        """(..., m) @ (..., m, n) -> (..., n)."""
        if M.ndim == 2:
            return torch.mv(M.T, v) if v.ndim == 1 else v @ M
        return torch.matmul(v.unsqueeze(-2), M).squeeze(-2)

    def where(self, mask, a, b):
        if not isinstance(mask, torch.Tensor):
            mask = torch.as_tensor(np.asarray(mask), device=self.device)
        return torch.where(mask, a, b)

    def is_array(self, x):
        return isinstance(x, torch.Tensor)
