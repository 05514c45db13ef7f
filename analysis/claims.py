"""What the fitted effects allow the report to say, and no more.

Each sentence quotes the row of `effects.csv` it rests on: the rate ratio with its 95% interval and
the Holm-adjusted p-value of the same family. An interval that includes no effect is said as the
largest effect the data leave open ("at most ×1.1 per layer"), not as evidence of none; a slope of
the count over two or three values of ε is a contrast, not a scaling law; with the periodic map the
factor 2 per step of i is the map's own, and the sentence says what the network adds beyond it.
"""

from __future__ import annotations

import math

import pandas as pd

from analysis.effects import trivial_state

# Interfaces along the centre line against ε: branching (Kohn–Müller) and a laminate.
THEORY = {"branching (Kohn–Müller)": -1 / 3, "a laminate": -1 / 2}
SIGNIFICANT = 0.05


def _times(log_ratio: float) -> str:
    return f"×{math.exp(log_ratio):.3g}" if log_ratio < 700 else "×∞"


def ratio(row: pd.Series) -> str:
    return f"{_times(row['estimate'])} (95% CI {_times(row['ci_low'])}–{_times(row['ci_high'])})"


def holm_p(row: pd.Series) -> str:
    return "p not defined" if pd.isna(row["p_holm"]) else f"Holm-adjusted p = {row['p_holm']:.2g}"


def _covers(row: pd.Series, value: float = 0.0) -> bool:
    return bool(row["ci_low"] <= value <= row["ci_high"])


def _verdict(row: pd.Series) -> str:
    """How an interval that excludes no effect reads with its Holm-adjusted p."""
    if not pd.isna(row["p_holm"]) and row["p_holm"] <= SIGNIFICANT:
        return f"the interval excludes ×1 and the effect holds after Holm's adjustment ({holm_p(row)})"
    return f"the 95% interval excludes ×1, but not after Holm's adjustment for the other tests ({holm_p(row)})"


class Effects:
    """The rows of one problem's effects, looked up by response, term and subset."""

    def __init__(self, effects: pd.DataFrame, problem: str):
        self.rows = effects[effects["problem"] == problem].fillna({"within": ""})

    def get(self, response: str, term: str, within: str = "", require_interval: bool = True) -> pd.Series | None:
        hit = self.rows[(self.rows["response"] == response) & (self.rows["term"] == term) & (self.rows["within"] == within)]
        if require_interval:
            hit = hit[hit["estimate"].notna() & hit["ci_low"].notna()]
        return hit.iloc[0] if len(hit) else None


def frequency(fx: Effects, within: str, kind: str | None, periodic: bool) -> str | None:
    r = fx.get("transitions", "fourier_i", within)
    if r is None:
        return None
    label = f"**Frequency{f' ({kind} map)' if kind else ''}.**"
    text = f"{label} Each step of i (doubling the map's frequency) multiplies the expected number of transitions by {ratio(r)}; {holm_p(r)}."
    m = fx.get("transitions_per_period", "fourier_i", f"map={kind}") if periodic else None
    if periodic and m is not None:
        beyond = ("its interval includes ×1: beyond the map's own doubling, these runs show no extra structure per period"
                  if _covers(m) else _verdict(m))
        return (f"{text} With the periodic map a factor 2 per step is imposed by the map itself (u repeats 2^(i−1) times on "
                f"[0, 1]); what the network adds beyond it, its transitions per period, changes by {ratio(m)} per step of i "
                f"({holm_p(m)}, a permutation test): {beyond}.")
    return (f"{text} A factor of 2 would mean transitions proportional to the frequency: the interval "
            f"{'includes' if _covers(r, math.log(2)) else 'excludes'} 2.")


def map_on(fx: Effects, within: str) -> str | None:
    r = fx.get("transitions", "fourier_on", within, require_interval=False)
    if r is None:
        return None
    kind = within.rsplit(" or ", 1)[1] if " or " in within else ""
    if pd.isna(r["estimate"]):
        return (f"**Map on{f' ({kind})' if kind else ''}.** One side counted no transition in any run, so no finite ratio "
                f"exists between the map and plain DRM: {holm_p(r)}, a permutation test.")
    return f"**Map on{f' ({kind})' if kind else ''}.** The map at the lowest i, against plain DRM, multiplies the count by {ratio(r)}; {holm_p(r)}."


def depth(fx: Effects, within: str, where: str) -> str | None:
    r = fx.get("transitions", "depth", within)
    if r is None:
        return None
    head = f"**Depth{where}.** Each extra hidden layer multiplies the expected count by {ratio(r)}; {holm_p(r)}"
    if _covers(r):
        return (f"{head}. The interval includes ×1: the data leave open an effect of at most ×{math.exp(r['ci_high']):.3g} per "
                f"layer (and at least ×{math.exp(r['ci_low']):.3g}); they neither show that depth adds bands nor rule out an "
                "effect up to that size.")
    return f"{head}: {_verdict(r)}."


def epsilon(fx: Effects, within: str, values: int) -> str | None:
    r = fx.get("transitions", "log_epsilon", within)
    if r is None:
        return None
    beside = "; ".join(f"{name}, ε^({b:+.2f}): {'inside' if _covers(r, b) else 'outside'} the interval" for name, b in THEORY.items())
    kind = (f"over {values} values of ε this is a contrast between them, not a scaling law" if values <= 3
            else f"a log-log slope over {values} values of ε")
    return (f"**ε.** Among ε > 0 the fitted exponent of the count is {r['estimate']:.2f} (95% CI {r['ci_low']:.2f} to "
            f"{r['ci_high']:.2f}; {holm_p(r)}): {kind}. Beside the theory of interfaces along the centre line: {beside}.")


def epochs(fx: Effects, within: str) -> str | None:
    r = fx.get("transitions", "log_epochs", within)
    if r is None:
        return None
    return f"**Training length.** Each e-fold of epochs multiplies the count by {ratio(r)}; {holm_p(r)}."


def energy(fx: Effects) -> str | None:
    parts = []
    for term, what in (("fourier_i", "each step of i"), ("fourier_on", "the map (against none)"), ("depth", "each extra layer")):
        r = fx.get("log_energy", term)
        if r is not None:
            parts.append(f"{what} multiplies it by {ratio(r)} ({holm_p(r)})")
    if not parts:
        return None
    return "**Energy.** On the log scale of I(u): " + "; ".join(parts) + "."


def trivial(fx: Effects, stuck: int, runs: int) -> str | None:
    if not stuck:
        return None
    text = (f"**Stuck at u ≡ 0.** {stuck} of {runs} runs ({stuck / runs:.0%}) ended at the trivial solution (no band, "
            "energy ≈ 1); the counts above are those of the other runs (`within` trivial=no).")
    for term, what in (("fourier_on", "the map"), ("fourier_i", "each step of i"), ("depth", "each extra layer")):
        r = fx.get("trivial", term, require_interval=False)
        if r is None:
            continue
        if pd.isna(r["estimate"]):
            text += (f" Its share depends on {what} so sharply that no odds ratio exists (some configurations all stuck or none): "
                     f"{holm_p(r)}, a permutation test.")
        else:
            text += f" The odds of it change by {ratio(r)} with {what}; {holm_p(r)}."
        break
    return text


def sentences(effects: pd.DataFrame, ok: pd.DataFrame, problem: str) -> list[str]:
    """What the fitted effects say about the paper's open questions (frequency, depth, ε), for one problem."""
    fx = Effects(effects, problem)
    rows = ok[(ok["problem"] == problem) & ok["transitions"].notna()]
    stuck = int((rows["transitions"].astype("float64") == 0).sum()) if trivial_state(problem) else 0
    prefix = "trivial=no" if stuck else ""

    def at(*parts: str) -> str:
        return ", ".join(p for p in (prefix, *parts) if p)

    mapped = rows[rows["fourier"].notna()]
    kinds = sorted(mapped["fourier_map"].dropna().unique())
    periodic = set(mapped.loc[mapped["transitions_per_period"].notna(), "fourier_map"].dropna())
    out: list[str] = []
    for kind in kinds or [None]:
        context = at() if len(kinds) <= 1 else at(f"map={kind}")
        out.append(frequency(fx, context, kind if len(kinds) > 1 or kind in periodic else None, kind in periodic))
        out.append(map_on(fx, at() if len(kinds) <= 1 else at(f"map=none or {kind}")))
    plain = rows["fourier"].isna()
    if plain.any() and not plain.all():
        out.append(depth(fx, at("map=none"), " without the map (the depth hypothesis)"))
    if plain.all():
        out.append(depth(fx, at(), ""))
    elif len(kinds) == 1 and not plain.any():
        out.append(depth(fx, at(), f" with the {kinds[0]} map"))
    else:
        out += [depth(fx, at(f"map={kind}"), f" with the {kind} map") for kind in kinds]
    positive = rows.loc[rows["epsilon"] > 0, "epsilon"].nunique()
    out.append(epsilon(fx, at(), positive))
    out.append(epochs(fx, at()))
    out.append(energy(fx))
    out.append(trivial(fx, stuck, len(rows)))
    return [s for s in out if s]
