"""What this companion could not do: figures off their paper protocol, inconclusive claim parts, protocol deviations.

Everything that a figure's record holds (its profile, the data set it fell back to, each claim part's verdict and
interval, its parameters) is read from `<id>.json`, so the section follows the published run. The deviations that no
record names (they are choices of the code, the same under every profile) are stated once here, in prose.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dgnlib.companion.fsio import read_json

MNIST_TRAIN = 60_000  # images in MNIST's training set; n_train 0 means all of them
HEADING = "What this companion could not do"
ANCHOR = "what-this-companion-could-not-do"

# Deviations of the code from the follow-up paper's protocol that no figure's record states (same under every
# profile): figure ids they concern, then the sentence.
FIXED_DEVIATIONS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("07",), "Figure 07's RMSprop (PyTorch's) adds ε outside the square root of its step, g/(√v + ε), where the "
     "reference's framework adds it inside, g/√(v + ε); the two differ only for weights whose mean square gradient v "
     "is below about ε = 1e-7."),
)
REFERENCE_EPS = 1e-7  # the reference framework's ε of Adam and RMSprop (PyTorch's default is 1e-8)
REFERENCE_RHO = 0.9  # the reference framework's RMSprop smoothing constant (PyTorch's default α is 0.99)
TORCH_EPS, TORCH_RHO = 1e-8, 0.99  # PyTorch's defaults, which a record without the parameter trained with


@dataclass(frozen=True)
class Limit:
    """One thing not done as the paper did it: the figure it concerns, a kind, and a sentence."""

    fig_id: str
    kind: str  # "protocol" (not on the paper's protocol), "inconclusive" (a claim part), "deviation"
    text: str


def _records(figures: Path) -> dict[str, dict]:
    """The figures' JSON records in `figures`, by id (unreadable ones skipped)."""
    out = {}
    for path in sorted(Path(figures).glob("[0-9][0-9].json")):
        record = read_json(path)
        if isinstance(record, dict):
            out[path.stem] = record
    return out


def _num(x: Any) -> str:
    """A number as a reader wants it: 3 significant digits, sign shown."""
    return f"{x:+.3g}" if isinstance(x, (int, float)) else "—"


def fallback_note(record: dict) -> str | None:
    """'MNIST 7×7 fallback' when the figure ran on a fallback data set (from its record), else None."""
    numbers = record.get("numbers") or {}
    if not numbers.get("fallback"):
        return None
    size = numbers.get("image_size")
    shape = f" {size}×{size}" if isinstance(size, int) else ""
    return f"{str(numbers.get('dataset_used', '?')).upper()}{shape} fallback"


def protocol_limits(fig_id: str, record: dict) -> list[Limit]:
    """The figure ran off its paper protocol: a non-paper profile, or a fallback data set."""
    out = []
    numbers, profile = record.get("numbers") or {}, record.get("profile")
    note = fallback_note(record)
    if note:
        n_train = numbers.get("n_train")
        size = f" on {_thousands(n_train)} training images" if isinstance(n_train, int) else ""
        out.append(Limit(fig_id, "protocol", (
            f"Figure {fig_id} did not run on its paper protocol: it needs CIFAR-10 and a GPU (hours of training of "
            f"convolutional networks), neither of which the published run had. What ran instead is the {note}"
            f"{size}, under the `{profile}` profile; its verdict ({record.get('verdict', '?')}) says nothing about "
            "CIFAR-10.")))
    elif profile and profile != "paper":
        out.append(Limit(fig_id, "protocol", f"Figure {fig_id} was published from the `{profile}` profile, not the "
                                             "paper protocol."))
    return out


MAX_PARTS_LISTED = 3  # a figure with more undecided parts gets one summary line, so that the section stays short


def _part_text(part: dict) -> str:
    interval = part.get("interval") or [None, None]
    level = part.get("level")
    level_text = f"{100 * level:.4g} % " if isinstance(level, (int, float)) else ""
    return (f"\"{part.get('name', '?')}\": {part.get('verdict', '?')}; estimate {_num(part.get('estimate'))}, "
            f"{level_text}interval [{_num(interval[0])}, {_num(interval[1])}] over {part.get('n', '?')} seeds")


def inconclusive_limits(fig_id: str, record: dict) -> list[Limit]:
    """Each claim part that is not held, with its estimate and interval (one summary line when there are many)."""
    all_parts = [p for p in record.get("parts") or [] if isinstance(p, dict)]
    parts = [p for p in all_parts if p.get("verdict") != "held"]
    if len(parts) > MAX_PARTS_LISTED:
        estimates = [p["estimate"] for p in parts if isinstance(p.get("estimate"), (int, float))]
        span = f" (estimates from {_num(min(estimates))} to {_num(max(estimates))})" if estimates else ""
        verdicts = sorted({str(p.get("verdict")) for p in parts})
        return [Limit(fig_id, "inconclusive", f"Figure {fig_id}: {len(parts)} of {len(all_parts)} claim parts "
                                              f"{' or '.join(verdicts)}{span}; its notebook lists each.")]
    return [Limit(fig_id, "inconclusive", f"Figure {fig_id}, {_part_text(p)}.") for p in parts]


def _thousands(n: int) -> str:
    return f"{n:,}".replace(",", "\u202f")  # a narrow no-break space groups digits without a comma or a wrap


def _figures(ids: list[str]) -> str:
    """'figure 06' or 'figures 06, 08 and 09'."""
    return f"figure {ids[0]}" if len(ids) == 1 else f"figures {', '.join(ids[:-1])} and {ids[-1]}"


def held_out(record: dict) -> int | None:
    """MNIST training images a figure held out for validation (from its parameters), None when it holds none."""
    params = record.get("parameters") or {}
    frac = params.get("val_fraction")
    if not isinstance(frac, (int, float)) or frac <= 0 or params.get("n_train") != 0:
        return None
    if params.get("dataset", "mnist") != "mnist":
        return None
    return round(MNIST_TRAIN * frac)


def _optimizers(params: dict) -> list[str]:
    """The optimisers a figure's parameters train with (`optimizers`, else `optimizer`)."""
    many = params.get("optimizers")
    return list(many) if isinstance(many, list) else [params["optimizer"]] if "optimizer" in params else []


def _sci(x: float) -> str:
    """1e-07 as 1e-7."""
    return f"{x:g}".replace("e-0", "e-")


def _trains(ids: list[str]) -> str:
    """'Figure 06 trains' or 'Figures 06 and 08 train'."""
    return f"{_figures(ids).capitalize()} {'trains' if len(ids) == 1 else 'train'}"


def deviation_limits(records: dict[str, dict]) -> list[Limit]:
    """Deviations readable from the records' parameters: images held out for validation, an optimiser column not
    run, dnpfl's feature pass, flnpf's checkpoint and optimiser constants other than the reference's."""
    out = []
    by_count: dict[int, list[str]] = {}
    for fig_id, record in records.items():
        held = held_out(record)
        if held:
            by_count.setdefault(held, []).append(fig_id)
    for held, ids in sorted(by_count.items()):
        out.append(Limit(ids[0], "deviation", (
            f"{_trains(ids)} on {_thousands(MNIST_TRAIN - held)} MNIST images and "
            f"{'holds' if len(ids) == 1 else 'hold'} "
            f"{_thousands(held)} out for validation (to choose the epoch), where the follow-up paper trains on all "
            f"{_thousands(MNIST_TRAIN)}.")))
    params = {i: r.get("parameters") or {} for i, r in records.items()}
    if "06" in params and _optimizers(params["06"]) == ["adam"]:
        out.append(Limit("06", "deviation", "Figure 06 runs the Adam column of the follow-up paper's FC-MNIST table "
                                            "only: its SGD column (lr 1e-2, 300 epochs) is not run."))
    gated = [i for i, p in params.items()
             if p.get("dnpfl_feature", "gated") == "gated" and "dnpfl" in p.get("variants", ["dnpfl"])
             and i in ("06", "09", "10")]
    if gated:
        out.append(Limit(gated[0], "deviation", (
            f"In {_figures(gated)}, `dnpfl`'s feature network passes q·gate forward to its next layer, where the "
            "follow-up paper's reference implementation passes relu(q).")))
    last = [i for i, p in params.items() if p.get("flnpf_gates") == "epoch"]
    if last:
        out.append(Limit(last[0], "deviation", (
            f"In {_figures(last)}, `flnpf` copies the gates of the relu run after its last epoch, where the reference "
            "copies its checkpoint of best test accuracy.")))
    eps_off: dict[tuple[str, float], list[str]] = {}
    rho_off: dict[float, list[str]] = {}
    for fig_id, p in params.items():
        opts = [o for o in _optimizers(p) if o in ("adam", "rmsprop")]
        eps = p.get("opt_eps") or TORCH_EPS  # an old record without the parameter trained with PyTorch's default
        if opts and eps != REFERENCE_EPS:
            names = " and ".join("Adam" if o == "adam" else "RMSprop" for o in opts)
            eps_off.setdefault((names, eps), []).append(fig_id)
        rho = p.get("rmsprop_rho", TORCH_RHO)
        if "rmsprop" in opts and rho != REFERENCE_RHO:
            rho_off.setdefault(rho, []).append(fig_id)
    for (opts, eps), ids in eps_off.items():
        default = " (PyTorch's default)" if eps == TORCH_EPS else ""
        out.append(Limit(ids[0], "deviation", f"{_trains(ids)} {opts} with ε = {_sci(eps)}{default}, not the "
                                              f"reference framework's ε = {_sci(REFERENCE_EPS)}."))
    for rho, ids in rho_off.items():
        default = " (PyTorch's default α)" if rho == TORCH_RHO else ""
        out.append(Limit(ids[0], "deviation", f"{_trains(ids)} RMSprop with the smoothing constant ρ = {rho:g}"
                                              f"{default}, not the reference framework's ρ = {REFERENCE_RHO:g}."))
    return out


def limitations(figures: Path) -> list[Limit]:
    """Every limit of the run whose records are in `figures`: protocol, inconclusive parts, deviations."""
    records = _records(figures)
    out: list[Limit] = []
    for fig_id, record in records.items():
        out += protocol_limits(fig_id, record) + inconclusive_limits(fig_id, record)
    out += deviation_limits(records)
    for ids, text in FIXED_DEVIATIONS:
        present = [i for i in ids if i in records]
        if present:
            out.append(Limit(present[0], "deviation", text))
    return out


def markdown(limits: list[Limit], heading_level: int = 0) -> str:
    """The limits as Markdown: three short lists; with `heading_level`, under a heading of that level."""
    titles = {"protocol": "Not on the paper's protocol", "inconclusive": "Claim parts not held",
              "deviation": "Deviations from the follow-up paper's protocol"}
    blocks = [f"{'#' * heading_level} {HEADING}"] if heading_level else []
    for kind, title in titles.items():
        items = [f"- {lim.text}" for lim in limits if lim.kind == kind]
        if items:
            blocks.append(f"**{title}.**\n\n" + "\n".join(items))
    if not limits:
        blocks.append("No figure record was found, so nothing can be said here yet.")
    return "\n\n".join(blocks)
