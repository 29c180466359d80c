"""Deep gated networks: a feature (gating) network whose pre-activations set the gates of a value network.

Layer l of the value network computes q(l) = Θ(l)ᵀ z(l−1) and z(l) = q(l) ⊙ G(l); the output is the last layer's
pre-activation. The gates G(l) come from the feature network (the variants of the follow-up paper, named as there):

    relu      G = 1{q > 0} of the value network's own pre-activations (the feature network is the value network)
    frnpf-ii  hard gates of a frozen, independently initialised feature network
    frnpf-di  hard gates of a frozen copy of the value network's initial weights
    flnpf     hard gates of a frozen feature network copied from a trained relu network (`DGN.from_relu`)
    dnpfl     soft gates (1 + ε)·sigmoid(β q) of a trained feature network
    linear    all gates 1 (a deep linear network)

The feature network is itself gated by its own gates (ReLU for the hard variants), so that for `relu` the two
networks coincide. dnpfl's feature network (`feature_act`) either passes q·(1 + ε)·sigmoid(β q) forward ("gated", the
first protocol of this companion, kept so that its stored runs stay valid) or relu(q) ("relu": a ReLU network whose
pre-activations set the value network's soft gates, as in the follow-up paper's reference implementation).
Frozen parts have requires_grad=False and are left out of `trainable_parameters()`.
"""

from __future__ import annotations

import copy
import math
import numbers

import torch
from torch import nn

from dgnlib.names import VARIANTS

INITS = ("default", "glorot", "he", "bernoulli")
HARD = ("relu", "frnpf-ii", "frnpf-di", "flnpf")
SEPARATE_FEATURES = ("frnpf-ii", "frnpf-di", "flnpf", "dnpfl")
FEATURE_ACTS = ("gated", "relu")  # what dnpfl's feature network passes forward: q·gate (legacy) or relu(q)


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}: expected one of {', '.join(allowed)}")


def _check_positive_int(name: str, value: int, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_seed(seed: int | None) -> int:
    """The model's seed; required, so that no model ever draws its weights from a global generator."""
    if seed is None:
        raise ValueError(
            "seed is required: pass an integer seed (e.g. seeding.derive_seed(master, 'init', run)); models do not "
            "draw weights from torch's global generator"
        )
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    return int(seed)


def fans(weight: torch.Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) as Keras counts them: in·k·k and out·k·k for a convolution, in and out for a dense layer."""
    receptive = weight[0, 0].numel() if weight.dim() > 2 else 1
    return weight.shape[1] * receptive, weight.shape[0] * receptive


@torch.no_grad()
def init_layer(layer: nn.Module, init: str, sigma: float | None, generator: torch.Generator) -> None:
    """Initialise a Linear/Conv2d layer in place from `generator`.

    "glorot": Glorot/Xavier-uniform weights U(±√(6/(fan_in + fan_out))), zero biases (Keras's default, the reference
    protocol of the experiments); "he": He/Kaiming-normal weights N(0, 2/fan_in), zero biases (an ablation);
    "default": PyTorch's default distribution, U(−1/√fan_in, 1/√fan_in) for weights and biases (an ablation);
    "bernoulli": every weight ±sigma with probability ½ each, biases zero (the theory's setting).
    """
    _check_choice("init", init, INITS)
    weight = layer.weight
    fan_in, fan_out = fans(weight)

    def uniform(shape: torch.Size, bound: float) -> torch.Tensor:
        return torch.rand(shape, generator=generator, dtype=weight.dtype) * 2 * bound - bound

    if init == "default":
        bound = 1.0 / math.sqrt(fan_in)
        weight.copy_(uniform(weight.shape, bound))
        if layer.bias is not None:
            layer.bias.copy_(uniform(layer.bias.shape, bound))
        return
    if init == "glorot":
        weight.copy_(uniform(weight.shape, math.sqrt(6.0 / (fan_in + fan_out))))
    elif init == "he":
        weight.copy_(torch.randn(weight.shape, generator=generator, dtype=weight.dtype) * math.sqrt(2.0 / fan_in))
    else:
        if sigma is None:
            raise ValueError("init 'bernoulli' needs sigma (the weights are ±sigma)")
        signs = torch.randint(0, 2, weight.shape, generator=generator, dtype=torch.int64) * 2 - 1
        weight.copy_(signs.to(weight.dtype) * sigma)
    if layer.bias is not None:
        layer.bias.zero_()


class GatedNet(nn.Module):
    """Shared machinery of `DGN` and `ConvDGN`: a stack of gated layers, a reshape point, and an output layer."""

    def __init__(
        self,
        layers: list[nn.Module],
        variant: str,
        beta: float,
        eps: float,
        init: str,
        sigma: float | None,
        seed: int | None,
        flatten_at: int | None = None,
        pooling: str = "flatten",
        feature_act: str = "gated",
    ) -> None:
        super().__init__()
        _check_choice("variant", variant, VARIANTS)
        _check_choice("feature_act", feature_act, FEATURE_ACTS)
        if feature_act != "gated" and variant != "dnpfl":
            raise ValueError(f"feature_act applies to dnpfl only (a {variant} network's feature pass is fixed): "
                             "leave it 'gated'")
        self.feature_act = feature_act
        _check_choice("init", init, INITS)
        if not (isinstance(beta, (int, float)) and beta > 0):
            raise ValueError(f"beta must be a positive number (gate softness), got {beta!r}")
        if not (isinstance(eps, (int, float)) and eps >= 0):
            raise ValueError(f"eps must be a number >= 0, got {eps!r}")
        if sigma is not None and not sigma > 0:
            raise ValueError(f"sigma must be positive, got {sigma!r}")
        self.variant, self.beta, self.eps, self.init, self.sigma = variant, float(beta), float(eps), init, sigma
        self.seed = _check_seed(seed)
        self.flatten_at, self.pooling = flatten_at, pooling

        generator = torch.Generator().manual_seed(self.seed)
        self.value = nn.ModuleList(layers)
        for layer in self.value:
            init_layer(layer, init, sigma, generator)
        self.feature: nn.ModuleList | None = None
        if variant in SEPARATE_FEATURES:
            self.feature = nn.ModuleList(copy.deepcopy(layer) for layer in self.value[:-1])
            if variant != "frnpf-di":  # di: a frozen copy of the value network's initial weights
                for layer in self.feature:
                    init_layer(layer, init, sigma, generator)
            if variant in HARD:
                self.feature.requires_grad_(False)

    # -- parameters -------------------------------------------------------------------------------------------
    def value_parameters(self) -> list[nn.Parameter]:
        """The value network's parameters (trained in every variant)."""
        return list(self.value.parameters())

    def feature_parameters(self) -> list[nn.Parameter]:
        """The separate feature network's parameters; empty for `relu` (it is the value network) and `linear`."""
        return [] if self.feature is None else list(self.feature.parameters())

    def trainable_parameters(self) -> list[nn.Parameter]:
        """What an optimiser gets: value parameters, plus feature parameters for `dnpfl`."""
        return [p for p in self.parameters() if p.requires_grad]

    @property
    def depth(self) -> int:
        """Number of weight layers d (d − 1 gated layers)."""
        return len(self.value)

    # -- forward ----------------------------------------------------------------------------------------------
    def _reshape(self, z: torch.Tensor) -> torch.Tensor:
        """From convolutional to dense layers: flatten, or global average pooling."""
        return z.mean(dim=(2, 3)) if self.pooling == "gap" else z.flatten(1)

    def _gate(self, q: torch.Tensor) -> torch.Tensor:
        """Gating value from a feature pre-activation: hard 1{q > 0} or soft (1 + ε)·sigmoid(β q)."""
        if self.variant == "dnpfl":
            return (1.0 + self.eps) * torch.sigmoid(self.beta * q)
        return (q > 0).to(q.dtype)

    def _feature_pass(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The separate feature network, gated by its own gates: (gates, pre-activations), one per gated layer."""
        gates, pres, zf = [], [], x
        for l, layer in enumerate(self.feature):
            if l == self.flatten_at:
                zf = self._reshape(zf)
            qf = layer(zf)
            g = self._gate(qf)
            zf = torch.relu(qf) if self.variant in HARD or self.feature_act == "relu" else qf * g
            gates.append(g)
            pres.append(qf)
        return gates, pres

    def _run(self, x: torch.Tensor, keep: str | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Forward pass; returns (output, per-layer list) where keep is None, "gates" or "pre" (gating q)."""
        x = self._check_input(x)
        if self.feature is not None:
            if self.variant in HARD:
                with torch.no_grad():  # hard gates carry no gradient: skip the autograd bookkeeping
                    gates, pres = self._feature_pass(x)
            else:
                gates, pres = self._feature_pass(x)
        z, kept = x, []
        for l, layer in enumerate(self.value[:-1]):
            if l == self.flatten_at:
                z = self._reshape(z)
            q = layer(z)
            if self.feature is not None:
                g, pre = gates[l], pres[l]
                z = q * g
            elif self.variant == "linear":  # no gating network: every gate is on
                g, pre = None, torch.ones_like(q)
                z = q
            else:  # relu: the value network gates itself; q·1{q>0} is relu(q), in value and in gradient
                g, pre = None, q
                z = torch.relu(q)
            if keep == "gates":
                kept.append(self._gate(pre) if g is None else g)
            elif keep == "pre":
                kept.append(pre)
        if self.flatten_at == len(self.value) - 1:
            z = self._reshape(z)
        return self.value[-1](z), kept

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Outputs of shape (n, d_out)."""
        return self._run(x)[0]

    def gates(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Gating values, one tensor per gated layer, each shaped like that layer's pre-activation.

        Hard gates are 0/1; `dnpfl` gates lie in (0, 1 + ε); `linear` gates are all 1.
        """
        return self._run(x, keep="gates")[1]

    def gate_pattern(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Boolean on/off pattern of the gates, 1{q > 0} of the gating pre-activations (soft gates: g > (1+ε)/2)."""
        with torch.no_grad():
            return [q > 0 for q in self._run(x, keep="pre")[1]]

    @torch.no_grad()
    def copy_gates_from(self, trained: GatedNet) -> None:
        """Copy the gated layers of a trained relu network of the same shape into the frozen feature network."""
        if not isinstance(trained, GatedNet) or trained.variant != "relu":
            raise ValueError("copy_gates_from needs a trained network of variant 'relu' and the same shape")
        if self.feature is None or self.variant not in HARD:
            raise ValueError("copy_gates_from needs a model with a frozen feature network (frnpf-*, flnpf)")
        for mine, theirs in zip(self.feature, trained.value[:-1]):
            mine.load_state_dict(theirs.state_dict())


class DGN(GatedNet):
    """A fully connected DGN: `depth` weight layers, `depth − 1` gated hidden layers of `width` units."""

    def __init__(
        self,
        d_in: int,
        width: int,
        depth: int,
        d_out: int = 1,
        variant: str = "relu",
        beta: float = 4.0,
        eps: float = 0.1,
        bias: bool = True,
        init: str = "default",
        sigma: float | None = None,
        seed: int | None = None,
        feature_act: str = "gated",
    ) -> None:
        _check_positive_int("d_in", d_in)
        _check_positive_int("width", width)
        _check_positive_int("depth", depth, minimum=2)
        _check_positive_int("d_out", d_out)
        _check_choice("init", init, INITS)
        if init == "bernoulli" and sigma is None:
            sigma = math.sqrt(2.0 / width)
        sizes = [d_in] + [width] * (depth - 1) + [d_out]
        layers = [nn.Linear(a, b, bias=bias) for a, b in zip(sizes[:-1], sizes[1:])]
        super().__init__(layers, variant, beta, eps, init, sigma, seed, feature_act=feature_act)
        self.d_in, self.width, self.d_out, self.bias = d_in, width, d_out, bias

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"input must be a torch.Tensor of shape (n, {self.d_in}), got {type(x).__name__}")
        x = x.reshape(x.shape[0], -1) if x.dim() > 2 else x
        if x.dim() != 2 or x.shape[1] != self.d_in:
            raise ValueError(f"input has shape {tuple(x.shape)}: expected (n, {self.d_in}) (d_in={self.d_in})")
        return x.to(self.value[0].weight.dtype)

    @classmethod
    def from_relu(cls, trained: DGN, variant: str = "flnpf", seed: int | None = None) -> DGN:
        """Fixed learnt gates: a frozen feature network copied from a trained `relu` DGN, a fresh value network."""
        if not isinstance(trained, DGN) or trained.variant != "relu":
            raise ValueError("from_relu needs a DGN with variant 'relu' whose gates are to be copied")
        if variant != "flnpf":
            raise ValueError(f"from_relu builds variant 'flnpf' only, got {variant!r}")
        model = cls(
            trained.d_in,
            trained.width,
            trained.depth,
            trained.d_out,
            variant="flnpf",
            bias=trained.bias,
            init=trained.init,
            sigma=trained.sigma,
            seed=seed,
        )
        model.copy_gates_from(trained)
        return model.to(trained.value[0].weight.dtype)

class ConvDGN(GatedNet):
    """The convolutional DGNs of figure 10: VCONV (flatten) and GCONV (global average pooling).

    3×3 'same' convolutions with `channels` filters, then dense layers of `dense` units, then `n_classes` outputs;
    every convolutional and dense hidden layer is gated (gates per channel and position).
    """

    def __init__(
        self,
        in_channels: int = 3,
        image_size: int = 32,
        channels: tuple[int, ...] = (64, 64, 128, 128),
        dense: tuple[int, ...] = (256, 256),
        n_classes: int = 10,
        pooling: str = "flatten",
        variant: str = "relu",
        beta: float = 4.0,
        eps: float = 0.1,
        bias: bool = True,
        init: str = "default",
        sigma: float | None = None,
        seed: int | None = None,
        feature_act: str = "gated",
    ) -> None:
        _check_positive_int("in_channels", in_channels)
        _check_positive_int("image_size", image_size)
        _check_choice("pooling", pooling, ("flatten", "gap"))
        if not channels:
            raise ValueError("channels must list at least one convolutional layer width")
        for c in (*channels, *dense, n_classes):
            _check_positive_int("layer width", c)
        if init == "bernoulli" and sigma is None:
            sigma = math.sqrt(2.0 / channels[0])
        layers: list[nn.Module] = []
        c_prev = in_channels
        for c in channels:
            layers.append(nn.Conv2d(c_prev, c, kernel_size=3, padding=1, bias=bias))
            c_prev = c
        flat = c_prev if pooling == "gap" else c_prev * image_size * image_size
        sizes = [flat, *dense, n_classes]
        layers += [nn.Linear(a, b, bias=bias) for a, b in zip(sizes[:-1], sizes[1:])]
        super().__init__(layers, variant, beta, eps, init, sigma, seed, flatten_at=len(channels), pooling=pooling,
                         feature_act=feature_act)
        self.in_channels, self.image_size = in_channels, image_size

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        expected = (self.in_channels, self.image_size, self.image_size)
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"input must be a torch.Tensor of shape (n, {', '.join(map(str, expected))})")
        if x.dim() == 2 and x.shape[1] == math.prod(expected):
            x = x.reshape(x.shape[0], *expected)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"input has shape {tuple(x.shape)}: expected (n, {', '.join(map(str, expected))})")
        return x.to(self.value[0].weight.dtype)


def plain_relu_mlp(model: DGN) -> nn.Sequential:
    """A plain torch.nn ReLU MLP with the same weights as a DGN (for checking that `relu` is a ReLU network)."""
    modules: list[nn.Module] = []
    for layer in model.value[:-1]:
        modules += [copy.deepcopy(layer), nn.ReLU()]
    modules.append(copy.deepcopy(model.value[-1]))
    return nn.Sequential(nn.Flatten(), *modules)
