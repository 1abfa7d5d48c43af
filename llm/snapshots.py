"""Frozen policies over ONE shared module: LoRA adapter snapshots or full state-dict snapshots.

The algorithms hold several policies at once — the anchor π_t, the magnet ρ, the reference μ, a
half step, previous iterates (DESIGN §6.2). None of them is a copy of the model here:

* ``prepare(policy, lora_r=8)`` turns a policy into the *live* policy the realisers train: with
  LoRA a peft model over ONE frozen base (only the adapter trains); without, full fine-tuning.
* ``snapshot(live)`` is a frozen value: the live module's trainable tensors, cloned — the adapter
  (a few MB: 2·r·(d_in + d_out) numbers per adapted layer) with LoRA, every parameter with full
  fine-tuning (one model's worth of memory each; ``snapshot_device="cpu"`` keeps them in host
  memory, which on a GPU costs one host→device copy of the model per forward outside
  :func:`active`, once per block inside it, and nothing on a CPU-only machine).
* A snapshot is a :class:`llm.Policy`: ``sequence_logprobs``, ``token_logprobs`` and
  ``llm.sampling.sample`` work on it unchanged. Its ``model`` is a stand-in whose every call runs
  the shared module with the snapshot's tensors substituted (``torch.func.functional_call``: no
  copy, nothing written into the module, the live weights untouched — even two snapshots decoded
  side by side, as a token-level mixture does, never see each other's weights). Frozen calls run
  in eval mode and without grad.
* ``reference(live)`` is the policy before any training: the base with adapters disabled (LoRA),
  or a snapshot of the initial weights (full fine-tuning).
* ``load_into(live, snap)`` copies a snapshot's tensors into the live module (the realiser's
  starting point); ``merged_model(policy)`` gives a plain ``PreTrainedModel`` (adapters merged)
  for ``save_pretrained``.

Checkpoints: a pickled snapshot carries its tensors and the id of its shared module only (never
the module). After unpickling in a new process it binds lazily, at its first use, to the module
registered under that id: the backend restores this link with ``adopt(live, saved_base_id)``
(``base_id(live)`` is what to save). ``snapshot.state_dict()`` / ``restore(live, d)`` do the same
explicitly.
"""
from __future__ import annotations

import contextlib
import copy
import uuid
import weakref
from dataclasses import dataclass
from typing import Iterator

import torch

from games import validation as V

from .policy import Policy

__all__ = [
    "SnapshotPolicy",
    "active",
    "adopt",
    "base_id",
    "is_lora",
    "load_into",
    "merged_model",
    "nbytes",
    "prepare",
    "reference",
    "restore",
    "snapshot",
    "trainable_parameters",
]

# id ↔ shared module. Weak both ways: a registry must not keep a dead model alive.
_MODULES: "weakref.WeakValueDictionary[str, torch.nn.Module]" = weakref.WeakValueDictionary()
_IDS: "weakref.WeakKeyDictionary[torch.nn.Module, str]" = weakref.WeakKeyDictionary()
_INFO: "weakref.WeakKeyDictionary[torch.nn.Module, _Shared]" = weakref.WeakKeyDictionary()


@dataclass
class _Shared:
    """What the snapshots of one live module share: the reference's frozen tensors and kind, and where
    snapshots live. It holds no reference to the module: a value of the weak-keyed registry that did
    would keep its key, the whole model, alive for the rest of the process."""

    ref_tensors: dict
    ref_kind: str
    snapshot_device: torch.device | None


# -- the shared module ----------------------------------------------------------------------------
def _module(policy_or_model) -> torch.nn.Module:
    if isinstance(policy_or_model, SnapshotPolicy):
        return policy_or_model.model.base
    module = policy_or_model.model if isinstance(policy_or_model, Policy) else policy_or_model
    from .distributed import plain

    return plain(module)  # during a data-parallel fit the live model calls through DDP (llm.distributed)


def base_id(policy_or_model) -> str:
    """The id of a live policy's module (save it with a checkpoint; see :func:`adopt`)."""
    module = _module(policy_or_model)
    if module not in _IDS:
        key = uuid.uuid4().hex
        _IDS[module] = key
        _MODULES[key] = module
    return _IDS[module]


def adopt(live, saved_base_id: str) -> None:
    """Bind snapshots saved under ``saved_base_id`` (an earlier process's module) to ``live``.

    Call it when resuming a checkpoint, before or after unpickling the snapshots: they bind at
    their first use. The live module must have the same structure (same ``prepare`` options).
    """
    module = _module(live)
    base_id(module)
    _MODULES[str(saved_base_id)] = module


def is_lora(policy) -> bool:
    """True when the (live or frozen) policy's module is a peft model."""
    module = _module(policy)
    try:
        from peft import PeftModel
    except ImportError:  # peft is an optional extra; without it nothing is LoRA
        return False
    return isinstance(module, PeftModel)


def trainable_parameters(live: Policy) -> list[torch.nn.Parameter]:
    """The live policy's parameters that a realiser trains (the adapter with LoRA)."""
    return [p for p in live.model.parameters() if p.requires_grad]


def _snapshot_names(module: torch.nn.Module) -> list[str]:
    """Which tensors a snapshot holds: the trainable ones with LoRA (the base is frozen by
    ``prepare``), every parameter and floating buffer otherwise (nothing is assumed frozen)."""
    if is_lora(module):
        return [n for n, p in module.named_parameters() if p.requires_grad]
    names = [n for n, _ in module.named_parameters()]
    names += [n for n, b in module.named_buffers() if b.is_floating_point()]
    return names


# -- the stand-in model of a frozen policy ----------------------------------------------------------
class SnapshotModel:
    """Looks like the shared model to ``Policy`` and ``llm.sampling``; runs it with frozen tensors.

    kind: "tensors" (the shared module with ``tensors`` substituted) or "adapters_off" (the peft
    module with its adapters disabled: the LoRA reference). Calls are no-grad and in eval mode.
    """

    def __init__(self, base: torch.nn.Module | None, tensors: dict[str, torch.Tensor], kind: str, key: str):
        self._base = base
        self.tensors = tensors
        self.kind = kind
        self.key = key
        self._staged: dict[str, torch.Tensor] | None = None
        self._depth = 0

    @property
    def base(self) -> torch.nn.Module:
        """The shared module (bound lazily after unpickling; see :func:`adopt`)."""
        module = _MODULES.get(self.key)  # the registry first: adopt() may have rebound the id
        if module is not None:
            self._base = module
        elif self._base is None:
            raise RuntimeError(
                f"this snapshot belongs to model {self.key}, which is not loaded in this process; "
                "call llm.snapshots.adopt(live, saved_base_id) with the live policy that replaces it")
        return self._base

    # what Policy and the sampler read from a model
    @property
    def config(self):
        return self.base.config

    @property
    def generation_config(self):
        return getattr(self.base, "generation_config", None)

    @property
    def device(self) -> torch.device:
        return next(self.base.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.base.parameters()).dtype

    def named_parameters(self) -> Iterator[tuple[str, torch.Tensor]]:
        """The snapshot's view: the shared module's parameters with this snapshot's substituted."""
        for name, p in self.base.named_parameters():
            yield name, self.tensors.get(name, p.detach())

    def parameters(self) -> Iterator[torch.Tensor]:
        for _, p in self.named_parameters():
            yield p

    training = False  # a frozen value is always evaluated in eval mode

    def get_base_model(self) -> torch.nn.Module:
        """The transformers model inside (what keyword sniffing such as ``forward_names`` inspects);
        never call it directly: it holds the live weights, not this snapshot's."""
        base = self.base
        return base.get_base_model() if hasattr(base, "get_base_model") else base

    def eval(self):
        return self

    def train(self, mode: bool = True):
        if mode:
            raise RuntimeError("a snapshot is frozen; train the live policy (llm.snapshots.prepare)")
        return self

    def requires_grad_(self, requires_grad: bool = True):
        if requires_grad:
            raise RuntimeError("a snapshot is frozen; train the live policy (llm.snapshots.prepare)")
        return self

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The shared module's ``state_dict()`` with this snapshot's tensors in place (detached)."""
        out = {k: v.detach() for k, v in self.base.state_dict().items()}
        out.update((k, v) for k, v in self.tensors.items() if k in out)
        return out

    @contextlib.contextmanager
    def staged(self):
        """Keep a copy of the tensors on the module's device for the block (CPU-stored snapshots)."""
        if self._depth == 0:
            device = self.device
            if any(t.device != device for t in self.tensors.values()):
                self._staged = {k: t.to(device, non_blocking=True) for k, t in self.tensors.items()}
        self._depth += 1
        try:
            yield self
        finally:
            self._depth -= 1
            if self._depth == 0:
                self._staged = None

    def _on_device(self) -> dict[str, torch.Tensor]:
        if self._staged is not None:
            return self._staged
        device = self.device
        return {k: t.to(device, non_blocking=True) for k, t in self.tensors.items()}

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        """The shared module's forward with this snapshot's tensors (no grad, eval mode)."""
        base = self.base
        was_training = base.training
        if was_training:  # frozen values are evaluated as policies: no dropout
            base.eval()
        try:
            with torch.no_grad():
                if self.kind == "adapters_off":
                    with base.disable_adapter():
                        return base(*args, **kwargs)
                return torch.func.functional_call(base, self._on_device(), args, kwargs, tie_weights=True,
                                                  strict=False)
        finally:
            if was_training:
                base.train()

    def __repr__(self):
        return f"SnapshotModel({type(self._base).__name__ if self._base is not None else 'unbound'}, {self.kind})"


class SnapshotPolicy(Policy):
    """A frozen policy: a set of tensors over the shared module of the live policy it came from."""

    def __init__(self, model: SnapshotModel, tokenizer, *, allowed_token_ids=None):
        super().__init__(model, tokenizer, allowed_token_ids=allowed_token_ids, frozen=True)

    @property
    def device(self) -> torch.device:  # where inputs go: the shared module's device, not the storage's
        return self.model.device

    @property
    def kind(self) -> str:
        """"lora", "full" or "reference" (the LoRA base with adapters off)."""
        if self.model.kind == "adapters_off":
            return "reference"
        return "lora" if is_lora(self) else "full"

    def snapshot(self) -> "SnapshotPolicy":
        return self  # already a value

    @contextlib.contextmanager
    def active(self):
        """Context: keep the tensors on the module's device for a block of calls (e.g. sampling);
        yields the policy."""
        with self.model.staged():
            yield self

    def state_dict(self) -> dict:
        """{"format", "kind", "base_id", "tensors"}: what a checkpoint needs (see :func:`restore`)."""
        return {"format": 1, "kind": self.model.kind, "base_id": self.model.key, "tensors": dict(self.model.tensors)}

    def nbytes(self) -> int:
        return nbytes(self)

    def __reduce__(self):
        # never pickle the shared module: tensors + its id, bound again at first use (see adopt)
        state = self.state_dict()
        return (_unpickle, (state, self.tokenizer, self.allowed_token_ids))

    def __repr__(self):
        return f"SnapshotPolicy({self.kind}, {nbytes(self) / 2**20:.1f} MiB)"


def _unpickle(state, tokenizer, allowed_token_ids):
    # bound lazily, at first use: a resuming process calls adopt() after unpickling, and a module
    # still registered under this id in the same process (an earlier run's) must not be taken
    model = SnapshotModel(None, dict(state["tensors"]), state["kind"], state["base_id"])
    return SnapshotPolicy(model, tokenizer, allowed_token_ids=allowed_token_ids)


# -- the public functions -------------------------------------------------------------------------
def prepare(policy: Policy, *, lora_r: int | None = None, lora_alpha: float | None = None,
            target_modules=None, snapshot_device=None, gradient_checkpointing: bool = False) -> Policy:
    """The trainable live policy for the realisers (takes ownership of ``policy.model``).

    lora_r: None = full fine-tuning (every parameter trains); an int r ≥ 1 = LoRA of rank r (peft,
    the ``lora`` extra): the base is frozen and wrapped once, in place. lora_alpha: LoRA scale
    numerator (default 2·r, so the adapter's output scale alpha/r = 2 whatever r; the rule of thumb
    from the LoRA literature). target_modules: peft's ``target_modules`` (default "all-linear":
    every linear layer but the output head — adapting all of them is what makes low ranks work).
    LoRA dropout is 0: a realisation regresses exact log-probabilities, and the frozen snapshots are
    evaluated without dropout. snapshot_device: where snapshot tensors are stored (None = the
    model's device; "cpu" to keep full fine-tuning snapshots out of accelerator memory).
    gradient_checkpointing: recompute activations in the backward pass (one more forward per
    micro-batch; activation memory per layer instead of per network).

    Errors: ValueError (bad options, or a policy that is already a snapshot or prepared).
    """
    if isinstance(policy, SnapshotPolicy):
        raise ValueError("policy = a snapshot is not allowed; prepare the live policy (a snapshot is frozen)")
    if lora_r is not None:
        lora_r = V.integer(lora_r, "lora_r", low=1)
    if lora_alpha is not None:
        lora_alpha = V.number(lora_alpha, "lora_alpha", low=0.0, low_open=True)
        if lora_r is None:
            raise ValueError(f"lora_alpha = {lora_alpha} is not allowed; it needs lora_r (LoRA)")
    if target_modules is not None and lora_r is None:
        raise ValueError(f"target_modules = {target_modules!r} is not allowed; it needs lora_r (LoRA)")
    gradient_checkpointing = V.boolean(gradient_checkpointing, "gradient_checkpointing")
    device = None if snapshot_device is None else torch.device(snapshot_device)
    model = policy.model
    if model in _INFO or is_lora(policy):
        raise ValueError("policy = an already prepared policy is not allowed; prepare a policy once")
    if lora_r is not None:
        try:
            import peft
        except ImportError as e:  # pragma: no cover - peft ships with the lora extra
            raise ImportError("LoRA needs peft: pip install 'nashlab[lora]'") from e
        config = peft.LoraConfig(r=lora_r, lora_alpha=2.0 * lora_r if lora_alpha is None else lora_alpha,
                                 target_modules="all-linear" if target_modules is None else target_modules,
                                 lora_dropout=0.0, bias="none")
        model = peft.get_peft_model(model, config)
    else:
        model.requires_grad_(True)
    if gradient_checkpointing:
        inner = model.get_base_model() if lora_r is not None else model
        if not getattr(inner, "supports_gradient_checkpointing", False):
            raise ValueError(f"gradient_checkpointing = True is not allowed for {type(inner).__name__}: it does not "
                             "support gradient checkpointing (a transformers model with supports_gradient_checkpointing)")
        if hasattr(inner, "activation_checkpointing_enable"):  # transformers ≥ 5.x's name
            inner.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            inner.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.eval()  # the realisers switch to train mode for their fit only
    live = Policy(model, policy.tokenizer, allowed_token_ids=policy.allowed_token_ids)
    _INFO[model] = _Shared(_clone(model, device), "adapters_off" if lora_r is not None else "tensors", device)
    return live


def _clone(module: torch.nn.Module, device) -> dict[str, torch.Tensor]:
    state = dict(module.named_parameters())
    state.update(module.named_buffers())
    with torch.no_grad():
        return {n: state[n].detach().to(device=device or state[n].device, copy=True) for n in _snapshot_names(module)}


def _shared(policy) -> _Shared:
    """The shared facts of a live module; an unprepared policy is registered as full fine-tuning
    (its reference = its weights now)."""
    module = _module(policy)
    if module not in _INFO:
        _INFO[module] = _Shared(_clone(module, None), "tensors", None)
    return _INFO[module]


def snapshot(policy: Policy) -> SnapshotPolicy:
    """A frozen value of the live policy's current weights (a snapshot is returned as is)."""
    if isinstance(policy, SnapshotPolicy):
        return policy
    module = policy.model
    info = _shared(policy)
    model = SnapshotModel(module, _clone(module, info.snapshot_device), "tensors", base_id(module))
    # the tokenizer is copied: it is mutable (pad token, chat template) and a value must not change
    return SnapshotPolicy(model, copy.deepcopy(policy.tokenizer), allowed_token_ids=policy.allowed_token_ids)


def reference(policy: Policy) -> SnapshotPolicy:
    """The policy before training: the base with adapters off (LoRA) or the initial weights. Each call
    gives a new view of the same frozen tensors (no copy)."""
    info = _shared(policy)
    module = _module(policy)
    model = SnapshotModel(module, info.ref_tensors, info.ref_kind, base_id(module))
    return SnapshotPolicy(model, policy.tokenizer, allowed_token_ids=policy.allowed_token_ids)


def restore(live: Policy, state: dict) -> SnapshotPolicy:
    """A snapshot of ``live``'s module from ``SnapshotPolicy.state_dict()`` (a checkpoint)."""
    if not isinstance(state, dict) or state.get("format") != 1:
        raise ValueError("state = not a snapshot state_dict (format 1) is not allowed")
    module = live.model
    names = set(_snapshot_names(module)) if state["kind"] == "tensors" else None
    if names is not None and names != set(state["tensors"]):
        missing, extra = sorted(names - set(state["tensors"]))[:3], sorted(set(state["tensors"]) - names)[:3]
        raise ValueError(f"state = a snapshot of another model is not allowed; missing {missing}, unexpected {extra}")
    model = SnapshotModel(module, dict(state["tensors"]), state["kind"], base_id(module))
    return SnapshotPolicy(model, live.tokenizer, allowed_token_ids=live.allowed_token_ids)


def load_into(live: Policy, snap: Policy) -> None:
    """Copy a snapshot's weights into the live policy in place (the start of a realisation).

    The LoRA reference loads the initial adapter (B = 0: exactly the base, with the adapter's
    random A kept so that training can leave the origin). Errors: ValueError if ``snap`` is a
    snapshot of another model.
    """
    if snap is live:
        return
    if not isinstance(snap, SnapshotPolicy):
        raise ValueError("snap = a policy that is not a snapshot is not allowed; load a llm.snapshots.snapshot")
    module = live.model
    if snap.model.base is not module:
        raise ValueError("snap = a snapshot of another model is not allowed; it must come from this live policy")
    params = dict(module.named_parameters())
    params.update(module.named_buffers())
    with torch.no_grad():
        for name, t in snap.model.tensors.items():
            params[name].copy_(t)


def active(policy):
    """Context for a block of calls on a policy (keeps CPU-stored snapshot tensors on the device)."""
    return policy.active() if isinstance(policy, SnapshotPolicy) else contextlib.nullcontext(policy)


def nbytes(policy) -> int:
    """Bytes a snapshot holds (its own tensors; the shared module not counted)."""
    if isinstance(policy, SnapshotPolicy):
        return sum(t.numel() * t.element_size() for t in policy.model.tensors.values())
    return sum(t.numel() * t.element_size() for t in policy.model.parameters())


def merged_model(policy: Policy):
    """A plain ``PreTrainedModel`` of the policy, adapters merged, for ``save_pretrained``.

    A live full-fine-tuning policy gives its own module (no copy); every other case builds a copy
    (the live module stays as it is).
    """
    if isinstance(policy, SnapshotPolicy):
        module = copy.deepcopy(policy.model.base)
        live = Policy(module, policy.tokenizer)
        if policy.model.kind == "adapters_off":
            return module.unload()
        params = dict(module.named_parameters())
        params.update(module.named_buffers())
        with torch.no_grad():
            for name, t in policy.model.tensors.items():
                params[name].copy_(t)
        del live
        return module.merge_and_unload() if is_lora(policy) else module
    if is_lora(policy):
        return copy.deepcopy(policy.model).merge_and_unload()
    return policy.model
