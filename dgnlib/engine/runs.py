"""Run specifications, their hash, and the run store that lets a sweep resume.

A `RunSpec` says everything that decides a training run's numbers: the model (`ModelSpec`), the data (`DataSpec`),
the optimiser, batch size, epochs, loss, the run's master seed, and for `flnpf` the `GateSource` (the relu run and the
epoch whose feature weights it copies). `spec.key()` is the SHA-256 of its canonical JSON, so two figures asking for
the same run share it. What to keep (`keep_weights`) is a storage request, not part of the computation: it is left
out of the key.

Every random stream of a run comes from `seeding.derive_seed(spec.seed, <what>)`: "init" (the model's weights; "init",
"flnpf" for flnpf's fresh value network, so that it is not relu's initialisation), "val_split", "minibatch".

`RunStore(root)` keeps one JSON file per finished run (per-epoch rows, final metrics, gate statistics, timings) and,
when a figure needs them, the run's value-network weights at given epochs (one .npz per epoch). Every file is written
to a temporary name in the same folder and renamed into place (`os.replace`), and the JSON, written last, is the
entry: a crash or SIGKILL leaves either the whole entry or no entry, and concurrent writers of the same key each
rename a complete file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dgnlib.atomic import write_atomic as atomic_write
from dgnlib.core.models import DGN, FEATURE_ACTS, ConvDGN, GatedNet
from dgnlib.engine import runcheck
from dgnlib.names import LOSSES, OPTIMIZERS, VARIANTS
from dgnlib.seeding import derive_seed

SCHEMA = 2  # bump when a change of the training code changes the numbers of an unchanged spec
STATUSES = ("ok", "invalid")
UNLESS_DEFAULT = "unless-default"  # field metadata: in the key only when not at its default (old keys stay valid)
OPTIMIZER_CONSTANTS = {"adam": ("opt_eps",), "rmsprop": ("opt_alpha", "opt_eps"), "sgd": ()}  # None: torch's default
METRICS = ("epoch", "train_loss", "train_acc", "val_acc", "test_acc", "gates_changed")


def _canonical(obj: Any) -> Any:
    """JSON-ready form of a spec: dataclasses as dicts of their key fields (metadata key=False left out, and
    key=UNLESS_DEFAULT at its default: a field added later leaves the keys of older specs as they were)."""
    if dataclasses.is_dataclass(obj):
        out = {}
        for f in dataclasses.fields(obj):
            value, rule = getattr(obj, f.name), f.metadata.get("key", True)
            if rule is True or (rule == UNLESS_DEFAULT and value != f.default):
                out[f.name] = _canonical(value)
        return out
    if isinstance(obj, (tuple, list)):
        return [_canonical(v) for v in obj]
    return obj


def canonical_json(obj: Any) -> str:
    """Sorted-key, whitespace-free JSON of a spec (the text that is hashed)."""
    return json.dumps(_canonical(obj), sort_keys=True, separators=(",", ":"), allow_nan=False)


@dataclass(frozen=True)
class DataSpec:
    """Which data a run sees; `dgnlib.engine.tensors.materialise` turns it into tensors, deterministically.

    name: mnist | fashion-mnist | cifar10 (verified loaders), synthetic (Gaussian classes of `shape`, `n_classes`),
    or inline (tensors given in memory: `digest` is their SHA-256, `arrays` holds them and is not hashed).
    n_train / n_test: class-balanced subsets (None: whole split); val_fraction: the part of the training pool each
    run holds out for validation (split seeded by the run's seed); subset_seed: the seed of the subsets;
    binary_pair: (neg, pos) classes relabelled −1 / +1; standardize: "none" or "channels".
    """

    name: str
    n_train: int | None = None
    n_test: int | None = None
    val_fraction: float = 0.1
    subset_seed: int = 0
    flatten: bool = True
    binary_pair: tuple[int, int] | None = None
    standardize: str = "none"
    shape: tuple[int, ...] = ()
    n_classes: int = 10
    digest: str | None = None
    arrays: Any = field(default=None, compare=False, repr=False, metadata={"key": False})

    def __post_init__(self) -> None:
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction must lie in [0, 1), got {self.val_fraction!r}")
        if self.standardize not in ("none", "channels"):
            raise ValueError(f"standardize must be 'none' or 'channels', got {self.standardize!r}")
        if self.name == "inline" and (self.digest is None or self.arrays is None):
            raise ValueError("inline data needs its arrays and their digest: build it with "
                             "dgnlib.engine.tensors.inline(...)")


@dataclass(frozen=True)
class ModelSpec:
    """A DGN's shape and variant: arch "fc" (d_in, width, depth, d_out) or "conv" (ConvDGN's arguments)."""

    arch: str
    variant: str = "relu"
    beta: float = 4.0
    eps: float = 0.1
    bias: bool = True
    init: str = "default"
    sigma: float | None = None
    d_in: int = 0
    width: int = 0
    depth: int = 0
    d_out: int = 1
    in_channels: int = 0
    image_size: int = 0
    channels: tuple[int, ...] = ()
    dense: tuple[int, ...] = ()
    pooling: str = "flatten"
    feature_act: str = field(default="gated", metadata={"key": UNLESS_DEFAULT})  # dnpfl only (models.FEATURE_ACTS)

    def __post_init__(self) -> None:
        if self.feature_act not in FEATURE_ACTS or (self.feature_act != "gated" and self.variant != "dnpfl"):
            raise ValueError(f"feature_act must be one of {', '.join(FEATURE_ACTS)}, and other than 'gated' only for "
                             f"dnpfl; got {self.feature_act!r} for {self.variant!r}")
        if self.arch not in ("fc", "conv"):
            raise ValueError(f"arch must be 'fc' or 'conv', got {self.arch!r}")
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown variant {self.variant!r}: expected one of {', '.join(VARIANTS)}")

    def build(self, seed: int) -> GatedNet:
        """The model, initialised by the models' own code from `seed`."""
        common = dict(variant=self.variant, beta=self.beta, eps=self.eps, bias=self.bias, init=self.init,
                      sigma=self.sigma, seed=seed, feature_act=self.feature_act)
        if self.arch == "fc":
            return DGN(self.d_in, self.width, self.depth, self.d_out, **common)
        return ConvDGN(self.in_channels, self.image_size, self.channels, self.dense, self.d_out,
                       pooling=self.pooling, **common)

    def replace(self, **changes: Any) -> ModelSpec:
        """A copy with some fields changed (e.g. variant, beta)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_model(cls, model: GatedNet) -> ModelSpec:
        """The spec of an existing DGN / ConvDGN (its shape, variant and initialisation options)."""
        common = dict(variant=model.variant, beta=model.beta, eps=model.eps, init=model.init, sigma=model.sigma,
                      feature_act=model.feature_act)
        if isinstance(model, DGN):
            return cls("fc", bias=model.bias, d_in=model.d_in, width=model.width, depth=model.depth,
                       d_out=model.d_out, **common)
        if isinstance(model, ConvDGN):
            convs = [m for m in model.value if m.__class__.__name__ == "Conv2d"]
            dense = [m.out_features for m in model.value[len(convs) : -1]]
            return cls("conv", bias=model.value[0].bias is not None, in_channels=model.in_channels,
                       image_size=model.image_size, channels=tuple(m.out_channels for m in convs),
                       dense=tuple(dense), d_out=model.value[-1].out_features, pooling=model.pooling, **common)
        raise TypeError(f"expected a DGN or ConvDGN, got {type(model).__name__}")


GATE_SELECTS = ("epoch", "best")


@dataclass(frozen=True)
class GateSource:
    """Where flnpf's frozen feature network comes from: the value network of run `spec` (a relu run) after `epoch`
    (select "epoch"), or after its epoch of best test accuracy among 1..epoch (select "best", epoch = the relu run's
    last: the checkpoint the follow-up paper's reference copies; `selection.best_test_epoch`)."""

    spec: RunSpec
    epoch: int
    select: str = field(default="epoch", metadata={"key": UNLESS_DEFAULT})

    def __post_init__(self) -> None:
        if self.select not in GATE_SELECTS:
            raise ValueError(f"gate source select must be one of {', '.join(GATE_SELECTS)}, got {self.select!r}")
        if self.select == "best" and self.epoch != self.spec.epochs:
            raise ValueError(f"a 'best' gate source searches the whole relu run: epoch must be {self.spec.epochs}")


@dataclass(frozen=True)
class RunSpec:
    """Everything that decides one training run's numbers (see the module docstring); `key()` hashes it."""

    model: ModelSpec
    data: DataSpec
    seed: int
    optimizer: str = "adam"
    lr: float = 1e-4
    batch_size: int = 32
    epochs: int = 1
    loss: str = "ce"
    gate_source: GateSource | None = None
    probe_per_class: int = 0
    keep_weights: tuple[int, ...] = field(default=(), metadata={"key": False})
    keep_best: bool = field(default=False, metadata={"key": False})  # also keep the weights of best_test_epoch
    opt_alpha: float | None = field(default=None, metadata={"key": UNLESS_DEFAULT})
    opt_eps: float | None = field(default=None, metadata={"key": UNLESS_DEFAULT})

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}: expected one of {', '.join(OPTIMIZERS)}")
        for name, value, high in (("opt_alpha", self.opt_alpha, 1.0), ("opt_eps", self.opt_eps, math.inf)):
            if value is not None and name not in OPTIMIZER_CONSTANTS[self.optimizer]:
                raise ValueError(f"{name} does not apply to optimizer {self.optimizer!r}: leave it None")
            if value is not None and not (type(value) in (int, float) and 0 < value < high):
                raise ValueError(f"{name} must be a number in (0, {high:g}), got {value!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}: expected one of {', '.join(LOSSES)}")
        for name, value, least in (("batch_size", self.batch_size, 1), ("epochs", self.epochs, 0),
                                   ("seed", self.seed, 0), ("probe_per_class", self.probe_per_class, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        bad = [e for e in self.keep_weights if not 0 <= e <= self.epochs]
        if bad:
            raise ValueError(f"keep_weights must be epochs in [0, {self.epochs}], got {bad}")
        src = self.gate_source
        if (self.model.variant == "flnpf") != (src is not None):
            raise ValueError("a flnpf run needs a gate_source (the relu run it copies), and only flnpf takes one")
        if src is not None:
            if src.spec.model.variant != "relu" or src.spec.model.replace(variant="flnpf") != self.model.replace(
                beta=src.spec.model.beta, eps=src.spec.model.eps
            ):
                raise ValueError("gate_source must be a relu run of the same architecture as the flnpf run")
            if not 0 <= src.epoch <= src.spec.epochs:
                raise ValueError(f"gate_source epoch must lie in [0, {src.spec.epochs}], got {src.epoch}")

    def key(self) -> str:
        """SHA-256 (hex) of the spec's canonical JSON, keep_weights left out."""
        return hashlib.sha256(f'{{"schema":{SCHEMA},"spec":{canonical_json(self)}}}'.encode()).hexdigest()

    def group_key(self) -> str:
        """Runs with the same group key can train as one ensemble: all but seed, variant, β, ε and gate source."""
        shared = self.model.replace(variant="relu", beta=1.0, eps=0.0, feature_act="gated")
        parts = [shared, self.data, self.optimizer, self.lr, self.batch_size, self.epochs, self.loss,
                 self.probe_per_class]
        if (self.opt_alpha, self.opt_eps) != (None, None):  # appended only when set: old group keys unchanged
            parts.append({"opt_alpha": self.opt_alpha, "opt_eps": self.opt_eps})
        return hashlib.sha256(canonical_json(parts).encode()).hexdigest()

    def init_seed(self) -> int:
        """The seed the model is built with (flnpf: its own stream, so its value network is not relu's init)."""
        return derive_seed(self.seed, "init", "flnpf") if self.model.variant == "flnpf" else derive_seed(
            self.seed, "init")

    def replace(self, **changes: Any) -> RunSpec:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def describe(self) -> dict:
        """The canonical dict of the spec (what `key()` hashes), for the store's JSON."""
        return _canonical(self)


def gate_weight_id(source: GateSource) -> str:
    """Name of a dependency's weights in a group task: '<relu key>@<epoch>', or '<relu key>@best'."""
    return f"{source.spec.key()}@{'best' if source.select == 'best' else source.epoch}"


@dataclass
class RunResult:
    """A finished run: per-epoch rows (`METRICS`, plus nu with a probe), status ok | invalid, gate stats, timings.

    `weights` maps an epoch to the value network's state dict (numpy arrays) when the spec asked to keep it.
    """

    key: str
    spec: dict
    status: str
    rows: list[dict]
    gate_stats: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    reason: str = ""
    weights: dict[int, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {self.status!r}")

    def history(self) -> pd.DataFrame:
        """The per-epoch rows as a DataFrame (fit's columns)."""
        return pd.DataFrame(self.rows)

    @property
    def final(self) -> dict:
        """The last row (final metrics)."""
        return dict(self.rows[-1]) if self.rows else {}

    def to_json(self) -> dict:
        """JSON-ready dict; non-finite numbers become null (JSON has no NaN), weights are stored apart."""
        def clean(v: Any) -> Any:
            if isinstance(v, float) and not math.isfinite(v):
                return None
            return v

        rows = [{k: clean(v) for k, v in row.items()} for row in self.rows]
        return {"key": self.key, "spec": self.spec, "status": self.status, "reason": self.reason, "rows": rows,
                "gate_stats": self.gate_stats, "timings": self.timings}

    @classmethod
    def from_json(cls, obj: dict) -> RunResult:
        """Inverse of `to_json` (null metrics read back as NaN)."""
        rows = [{k: (float("nan") if v is None else v) for k, v in row.items()} for row in obj["rows"]]
        return cls(obj["key"], obj["spec"], obj["status"], rows, obj.get("gate_stats", {}), obj.get("timings", {}),
                   obj.get("reason", ""))


class RunStore:
    """Runs under a folder: `<root>/<key[:2]>/<key>.json`, weights in `<key>.e<epoch>.npz` beside it; what it reads
    is checked (`dgnlib.engine.runcheck`); `read_only` (default: DGN_RUN_STORE_READ_ONLY) refuses writes."""

    def __init__(self, root: str | os.PathLike, read_only: bool | None = None) -> None:
        self.root = Path(root).expanduser()
        self.read_only = runcheck.read_only_from_env() if read_only is None else read_only

    def __repr__(self) -> str:
        return f"RunStore({str(self.root)!r}{', read-only' if self.read_only else ''})"

    def _path(self, key: str, suffix: str = ".json") -> Path:
        if not (isinstance(key, str) and runcheck.is_key(key)):
            raise ValueError(f"a run key is 64 lowercase hex digits (RunSpec.key()), got {key!r}")
        return self.root / key[:2] / f"{key}{suffix}"

    def _entry(self, key: str) -> dict | None:
        """The checked JSON object of entry `key` (logged as read), or None when there is none."""
        path = self._path(key)
        obj = runcheck.parse_entry(path, path.read_bytes(), key, SCHEMA) if path.is_file() else None
        if obj is not None:
            runcheck.log_read(path, key)
        return obj

    def get(self, key: str) -> RunResult | None:
        """The stored result of run `key`, or None; CorruptEntry when the entry is not that run's."""
        obj = self._entry(key)
        return None if obj is None else RunResult.from_json(obj)

    def __contains__(self, key: str) -> bool:
        return self._path(key).is_file()

    def _writable(self) -> None:
        if self.read_only:
            raise runcheck.StoreError(f"the run store {self.root} is read-only ({runcheck.READ_ONLY_ENV}): no writes")

    def put(self, key: str, result: RunResult) -> None:
        """Store a finished run atomically: kept weights first, then the JSON entry with their SHA-256s (the commit)."""
        self._writable()
        if key != result.key:
            raise ValueError(f"put: key {key[:12]}… differs from the result's key {result.key[:12]}…")
        digests = {str(epoch): self.put_weights(key, epoch, state) for epoch, state in result.weights.items()}
        obj = {**result.to_json(), **({"weights_sha256": digests} if digests else {})}
        atomic_write(self._path(key), json.dumps(obj, sort_keys=True).encode())

    def put_weights(self, key: str, epoch: int, state: dict[str, np.ndarray]) -> str:
        """Store one epoch's value-network weights of run `key` (an .npz written atomically); returns its SHA-256."""
        self._writable()
        buf = io.BytesIO()
        np.savez(buf, **{name: np.asarray(a) for name, a in state.items()})
        atomic_write(self._path(key, f".e{int(epoch)}.npz"), buf.getvalue())
        return hashlib.sha256(buf.getvalue()).hexdigest()

    def weights(self, key: str, epoch: int) -> dict[str, np.ndarray] | None:
        """Run `key`'s value-network weights after `epoch`, or None when they (or the run's entry) were not kept."""
        path = self._path(key, f".e{int(epoch)}.npz")
        entry = self._entry(key) if path.is_file() else None  # weights without an entry: a run never fully stored
        if entry is None:
            return None
        arrays = runcheck.load_weights(path, path.read_bytes(), entry.get("weights_sha256", {}).get(str(int(epoch))))
        runcheck.log_read(path, key)
        return arrays

    def has_weights(self, key: str, epoch: int) -> bool:
        """True when run `key`'s weights after `epoch` are stored."""
        return self._path(key, f".e{int(epoch)}.npz").is_file()

    def keys(self) -> list[str]:
        """Keys of every stored run (a hidden file is a write in flight, not an entry)."""
        return sorted(p.stem for p in self.root.glob("??/*.json") if not p.name.startswith("."))


def default_store(profile: str) -> RunStore:
    """The store a notebook uses: DGN_RUN_STORE (set by the runner) if set, else build/runs/<profile>/ in the repo."""
    env = os.environ.get("DGN_RUN_STORE", "").strip()
    if env:
        return RunStore(env)
    from dgnlib.names import repo_root

    if not profile or "/" in profile or profile.startswith("."):
        raise ValueError(f"profile must be a plain name such as smoke, quick or paper, got {profile!r}")
    return RunStore(repo_root() / "build" / "runs" / profile)
