"""A general (non-Bradley–Terry) preference model: a skew-symmetric head on a frozen sentence embedder.

GPM (Zhang et al., "Beyond Bradley-Terry Models: A General Preference Model for Language Model
Alignment", arXiv 2410.02197, eq. for the skew-symmetric preference score): each (prompt, response)
is embedded into v ∈ R^{2k}, read as k two-dimensional blocks v^(1..k), and

    P(a ≻ b | x) = σ( Σ_k ⟨R v_a^(k), v_b^(k)⟩ ),   R = [[0, −1], [1, 0]] (a 90° rotation),

i.e. σ(v_aᵀ J v_b) with J block-diagonal and skew-symmetric (Jᵀ = −J). Skew symmetry makes the
score antisymmetric, s(a, b) = −s(b, a), so P(a ≻ b) + P(b ≻ a) = 1 by construction, and lets the
model represent cycles (three vectors at 120° in one block give a ≻ b ≻ c ≻ a with equal margins),
which no reward (a 1-D score) can: a Bradley–Terry model is the special case where every v lies on
one line through a fixed direction pair. Here v = W·e(x, y) + c with e the frozen embedder's unit
vector of ``prompt + "\\n" + response`` (``hidden > 0`` puts one tanh layer before W); only the head
is trained (``python -m llm.preference_model train``), so training takes seconds on a CPU.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch

from games.validation import fail, integer

from .base import CountingOracle
from .embedder import TextEmbedder

HEAD_FILE, CONFIG_FILE, FORMAT = "head.safetensors", "config.json", 1


def pair_text(prompt: str, response: str) -> str:
    """What the embedder sees for one (prompt, response)."""
    return f"{prompt}\n{response}"


class SkewHead(torch.nn.Module):
    """e (…, d) → v (…, 2k); ``score(v_a, v_b)`` = Σ_k ⟨R v_a^(k), v_b^(k)⟩ (skew-symmetric in a, b)."""

    def __init__(self, dim: int, k: int = 8, hidden: int = 0):
        super().__init__()
        self.dim = integer(dim, "dim", low=1, where="SkewHead")
        self.k = integer(k, "k", low=1, where="SkewHead")
        self.hidden = integer(hidden, "hidden", low=0, where="SkewHead")
        width = hidden or dim
        self.inner = torch.nn.Sequential(torch.nn.Linear(dim, hidden), torch.nn.Tanh()) if hidden else torch.nn.Identity()
        self.out = torch.nn.Linear(width, 2 * k)

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        return self.out(self.inner(e))

    @staticmethod
    def score(va: torch.Tensor, vb: torch.Tensor) -> torch.Tensor:
        """Σ_k (a₁b₂ − a₂b₁) per block: ⟨R a, b⟩ with R a = (−a₂, a₁). Exactly antisymmetric in float."""
        a1, a2 = va[..., 0::2], va[..., 1::2]
        b1, b2 = vb[..., 0::2], vb[..., 1::2]
        return (a1 * b2 - a2 * b1).sum(-1)


class PreferenceModelOracle(CountingOracle):
    """P(a ≻ b | x) = σ(v(x, a)ᵀ J v(x, b)) with a trained :class:`SkewHead` on a frozen embedder.

    Build with ``PreferenceModelOracle(embedder, head)``, train with :func:`llm.preference_model.fit`
    (or the CLI), save with ``save(DIR)`` and reload with ``PreferenceModelOracle.load(DIR)``.
    The head runs in float64 on cached float32 embeddings.
    """

    dtype = torch.float32

    def __init__(self, embedder: TextEmbedder, head: SkewHead, *, info: dict | None = None):
        super().__init__()
        if not isinstance(head, SkewHead):
            fail("head", head, "it must be a SkewHead", "PreferenceModelOracle", TypeError)
        if head.dim != embedder.dim:
            raise ValueError(f"PreferenceModelOracle: the head expects {head.dim}-d embeddings, "
                             f"the embedder gives {embedder.dim}-d")
        self.embedder, self.head = embedder, head.double().eval()
        self.info = dict(info or {})

    def vectors(self, prompts: Sequence[str], responses: Sequence[str]) -> torch.Tensor:
        """(B, 2k) float64 preference vectors v(x, y)."""
        e = self.embedder([pair_text(x, y) for x, y in zip(prompts, responses)]).double()
        with torch.no_grad():
            return self.head(e)

    def _prob(self, prompts, a, b):
        v = self.vectors(list(prompts) + list(prompts), list(a) + list(b))
        return torch.sigmoid(SkewHead.score(v[: len(a)], v[len(a):]))

    # -- persistence --------------------------------------------------------------------------
    def save(self, path) -> Path:
        """Write ``config.json`` (embedder, k, hidden, training info) and ``head.safetensors``."""
        from safetensors.torch import save_file

        from games.validation import writable_dir

        p = writable_dir(path, "preference model directory")
        h = self.head
        config = {"format": FORMAT, "kind": "gpm-skew", "embedder": self.embedder.name,
                  "max_length": self.embedder.max_length, "dim": h.dim, "k": h.k, "hidden": h.hidden,
                  "info": self.info}
        save_file({k: v.detach().float().contiguous() for k, v in h.state_dict().items()}, str(p / HEAD_FILE))
        (p / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True))
        return p

    @classmethod
    def load(cls, path, *, device=None, embedder: TextEmbedder | None = None) -> "PreferenceModelOracle":
        """Reload a saved model (FileNotFoundError / ValueError naming the file when missing or malformed)."""
        from safetensors.torch import load_file

        p = Path(path)
        if not p.is_dir():
            raise FileNotFoundError(f"preference model = {str(p)!r}: no such directory "
                                    "(train one with python -m llm.preference_model train --data FILE --out DIR)")
        for name in (CONFIG_FILE, HEAD_FILE):
            if not (p / name).is_file():
                raise FileNotFoundError(f"preference model = {str(p)!r}: {name} is missing (not a saved preference model)")
        try:
            config = json.loads((p / CONFIG_FILE).read_text())
            if config.get("format") != FORMAT or config.get("kind") != "gpm-skew":
                raise ValueError(f"unknown format {config.get('format')!r}/{config.get('kind')!r}")
            head = SkewHead(config["dim"], config["k"], config["hidden"])
            head.load_state_dict(load_file(str(p / HEAD_FILE)))
        except (ValueError, KeyError, TypeError, RuntimeError, OSError) as e:
            raise ValueError(f"preference model = {str(p)!r} is malformed ({type(e).__name__}: {e})") from None
        if embedder is None:
            embedder = TextEmbedder(config["embedder"], device=device, max_length=config.get("max_length", 256))
        return cls(embedder, head, info=config.get("info"))

    def __repr__(self):
        return (f"PreferenceModelOracle(embedder={self.embedder.name!r}, k={self.head.k}, "
                f"hidden={self.head.hidden}, queries={self.queries})")
