"""One parameter schema per notebook: the single source of what each notebook's parameters may be.

Keys equal the names of the notebook's cell tagged `parameters` (a test parses the notebooks to make sure): whoever
changes a notebook's parameters changes its schema in the same commit. The runner checks profiles and `--set`
against these before anything runs; the notebook checks itself with `params.bind(stem, globals())`.

Names of variants, optimisers and the path limit are repeated here (tests assert they equal the science modules'
own) so that the runner can check a profile without importing torch.
"""

from __future__ import annotations

from dgnlib.constraints import (
    Bool,
    Choice,
    Float,
    FloatList,
    Folder,
    Int,
    IntList,
    Optional,
    Rule,
    Schema,
    Str,
    StrList,
)
from dgnlib.names import OPTIMIZERS, PROFILES, VARIANTS

MAX_PATHS = 2_000_000  # = dgnlib.core.paths.MAX_PATHS
ADAPTING = ("relu", "dnpfl", "flnpf")  # gates that adapt during training, or were learnt by a relu network
FIXED_RANDOM = ("frnpf-ii", "frnpf-di")  # gates frozen at random values
PROTOCOLS_05 = ("centred", "scaled-targets", "ntk", "standard")  # = dgnlib.experiments.depth_training.PROTOCOLS

COMMON = {
    "profile": Choice(*PROFILES),
    "out_dir": Str(empty=True),
    "seed": Int(min=0, max=2**64 - 1),  # numpy and torch take seeds below 2**64
}
POSITIVE = Float(low=0, closed="neither")
FRACTION = Float(low=0, high=1, closed="neither")
DEVICE = Choice("auto", "cpu", "cuda")
HOLDOUT = Float(low=0, high=1, closed="left")  # val_fraction: 0 (all training images train, the reference) up to 1
FEATURE_PASS = Choice("relu", "gated")  # dnpfl_feature: what dnpfl's feature network passes forward
FLNPF_GATES = Choice("best", "final")  # flnpf_gates: the relu checkpoint flnpf copies
MNIST_SIZES = {"n_train": Int(min=0, max=60_000, multiple_of=10), "n_test": Int(min=0, max=10_000, multiple_of=10)}


def _training() -> dict:
    """Parameters shared by the MNIST training notebooks (06, 09)."""
    return {
        **COMMON, **MNIST_SIZES, "val_fraction": HOLDOUT, "depth": Int(min=2), "width": Int(min=1),
    }


def _one_of_each(name: str, first: tuple[str, ...], second: tuple[str, ...]) -> Rule:
    """A rule: the list `name` holds at least one value of `first` and one of `second`."""
    return Rule((name,), f"{name} must include one of {', '.join(first)} and one of {', '.join(second)} "
                        "(the claim compares them)",
                lambda v: bool(set(v[name]) & set(first)) and bool(set(v[name]) & set(second)))


SCHEMAS: dict[str, Schema] = {
    "00_index": Schema({**COMMON, "figures_dir": Folder()}),
    "01_dgn_paths": Schema(
        {**COMMON, "d_in": Int(min=1), "width": Int(min=1), "depth": Int(min=2), "n_networks": Int(min=1),
         "n_inputs": Int(min=2), "variants": StrList(VARIANTS), "init": Choice("bernoulli", "default"),
         "tolerance": Float(low=0, high=1.0e-3, closed="neither"), "n_show": Int(min=1)},
        [Rule(("variants",), "flnpf copies its gates from the relu network: list 'relu' too",
              lambda v: "flnpf" not in v["variants"] or "relu" in v["variants"]),
         Rule(("n_show", "n_inputs"), "n_show cannot exceed n_inputs", lambda v: v["n_show"] <= v["n_inputs"]),
         Rule(("d_in", "width", "depth"), f"d_in * width^(depth-1) paths must be at most {MAX_PATHS} to enumerate "
              "them: use a tinier network", lambda v: v["d_in"] * v["width"] ** (v["depth"] - 1) <= MAX_PATHS)],
    ),
    "02_expected_ntk": Schema(
        {**COMMON, "n_inputs": Int(min=2), "d_in": Int(min=1), "depths": IntList(min=2), "widths": IntList(min=1),
         "gate_source": Choice("network", "bernoulli"), "gate_mu": Float(low=0, high=1, closed="right"),
         "sigma_gain": POSITIVE, "draws": IntList(2, increasing=True, min=2), "repeats": Int(min=1),
         "func_depth": Int(min=2), "func_width": Int(min=1), "func_draws": Int(min=2), "mc_factor": POSITIVE,
         "slope_range": FloatList(2, max_len=2, increasing=True, high=0, closed="neither")},
    ),
    "03_depth_spectrum": Schema(
        {**COMMON, "n": Int(min=2), "dim": Int(min=1), "mu": FRACTION,
         "depths": IntList(3, increasing=True, min=2), "widths": IntList(min=1), "draws": Int(min=1)},
    ),
    "04_depth_variance": Schema(
        {**COMMON, "n": Int(min=2), "dim": Int(min=1), "mu": FRACTION,
         "depths": IntList(2, increasing=True, min=2), "widths": IntList(2, increasing=True, min=1),
         "draws": Int(min=2), "gate_draws": Int(min=1)},
    ),
    "05_depth_training": Schema(
        {**COMMON, "n": Int(min=2), "dim": Int(min=1), "mu": FRACTION, "sigma2_w": POSITIVE,
         "protocol": Choice(*PROTOCOLS_05), "target_scale": Optional(POSITIVE),
         "depths": IntList(3, increasing=True, min=2), "widths": IntList(min=1), "n_seeds": Int(min=1),
         "max_steps": Int(min=1), "step_scale": Float(low=0, high=2, closed="neither"), "tol": FRACTION},
    ),
    "06_gate_adaptation_mnist": Schema(
        {**_training(), "variants": StrList(VARIANTS, distinct=True), "beta": POSITIVE,
         "init": Choice("glorot", "he", "default"),
         "fixed_gate_inits": StrList(("glorot", "he", "default"), distinct=True, min_len=0),
         "optimizers": StrList(("adam", "sgd"), distinct=True), "lr_adam": POSITIVE, "lr_sgd": POSITIVE,
         "opt_eps": POSITIVE, "batch_size": Int(min=1), "epochs": Int(min=1), "epochs_sgd": Int(min=1),
         "n_seeds": Int(min=1), "dnpfl_feature": FEATURE_PASS, "flnpf_gates": FLNPF_GATES, "device": DEVICE},
        [_one_of_each("variants", ADAPTING, FIXED_RANDOM),
         Rule(("init", "fixed_gate_inits"), "fixed_gate_inits must not repeat init (those runs are the protocol's)",
              lambda v: v["init"] not in v["fixed_gate_inits"])],
    ),
    "07_npk_alignment": Schema(
        {**COMMON, "neg_class": Int(min=0, max=9), "pos_class": Int(min=0, max=9), "n_train": Int(min=0),
         "probe_per_class": Int(min=1), "depth": Int(min=2), "width": Int(min=1), "optimizer": Choice(*OPTIMIZERS),
         "lr": POSITIVE, "rmsprop_rho": FRACTION, "opt_eps": POSITIVE, "batch_size": Int(min=1),
         "epochs": Int(min=1), "n_seeds": Int(min=1), "device": DEVICE},
        [Rule(("neg_class", "pos_class"), "neg_class and pos_class must be two different digits",
              lambda v: v["neg_class"] != v["pos_class"]),
         Rule(("n_train", "probe_per_class"), "n_train must be 0 (all) or even and at least 2 * probe_per_class",
              lambda v: v["n_train"] == 0 or (v["n_train"] % 2 == 0 and v["n_train"] >= 2 * v["probe_per_class"]))],
    ),
    "08_continuous_gate_learning": Schema(
        {**COMMON, "dataset": Choice("mnist", "fashion-mnist"), **MNIST_SIZES, "val_fraction": HOLDOUT,
         "depth": Int(min=2), "width": Int(min=1), "init": Choice("glorot", "he", "default"),
         "optimizer": Choice(*OPTIMIZERS), "lr": POSITIVE, "opt_eps": POSITIVE, "batch_size": Int(min=1),
         "epochs": Int(min=1), "stages": IntList(3, distinct=True, min=0), "n_seeds": Int(min=1),
         "near_tolerance": POSITIVE,
         "device": DEVICE},
        [Rule(("stages", "epochs"), "every stage must be an epoch of the relu run (at most epochs)",
              lambda v: max(v["stages"]) <= v["epochs"]),
         Rule(("stages",), "stages must include 0 (the untrained network's gates, the baseline of the claim)",
              lambda v: 0 in v["stages"])],
    ),
    "09_soft_gating": Schema(
        {**_training(), "betas": FloatList(3, increasing=True, low=0, closed="neither"), "eps": Float(low=0),
         "dnpfl_feature": FEATURE_PASS, "init": Choice("glorot", "he", "default"), "optimizer": Choice("adam", "sgd"),
         "lr_adam": POSITIVE, "lr_sgd": POSITIVE, "opt_eps": POSITIVE, "batch_size": Int(min=1),
         "epochs": Int(min=1), "n_seeds": Int(min=1), "tolerance": Float(low=0), "device": DEVICE},
    ),
    "10_cifar10_conv": Schema(
        {**COMMON, "dataset": Choice("cifar10", "mnist", "fashion-mnist", "auto"),
         "architectures": StrList(("vconv", "gconv"), distinct=True), "variants": StrList(VARIANTS, distinct=True),
         "channels": IntList(min=1), "dense": IntList(min=1),
         "n_train": Optional(Int(min=10, multiple_of=10)), "n_test": Optional(Int(min=10, multiple_of=10)),
         "downsample": Int(min=1), "standardize": Bool(), "init": Choice("glorot", "he", "default"),
         "n_seeds": Int(min=1), "optimizer": Choice("adam", "sgd"), "opt_eps": POSITIVE, "lr_adam": POSITIVE,
         "lr_sgd_vconv": POSITIVE,
         "lr_sgd_gconv": POSITIVE, "epochs_vconv": Int(min=1), "epochs_gconv": Int(min=1),
         "batch_size": Int(min=1), "beta": POSITIVE, "dnpfl_feature": FEATURE_PASS,
         "val_fraction": FRACTION, "fit_threshold": Float(low=0, high=1), "device": DEVICE},
        [_one_of_each("variants", ("relu", "flnpf", "dnpfl"), FIXED_RANDOM)],
    ),
}
