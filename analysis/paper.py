"""The paper's single-run counts (Mema, Wang, Knap; section 4), as stated in its text.

Each entry is one run of one setting, counted by eye: the reproduction asks whether it lies
within the observed range of our per-seed counts for the same setting.
"""

from __future__ import annotations

from dataclasses import dataclass

PAPER_WIDTH, PAPER_LR, PAPER_PENALTY, PAPER_RHO = 128, 1.0e-4, 500.0, 0.1  # every run of section 4


@dataclass(frozen=True)
class PaperCount:
    figure: str
    problem: str
    depth: int
    fourier: int | None
    epsilon: float
    epochs: int
    transitions: int


def _fig(figure, problem, epochs, counts, epsilon=0.0):
    return [PaperCount(figure, problem, depth, fourier, epsilon, epochs, t) for depth, fourier, t in counts]


PAPER: list[PaperCount] = [
    # Fig. 3: plain DRM on (15): one transition at depths 5, 7 and 9.
    *_fig("3", "double_well", 100_000, [(5, None, 1), (7, None, 1), (9, None, 1)]),
    # Fig. 4: with the map, i = 2: 4 and i = 3: 8 at every depth; i = 4: 32 at depths 5 and 7, 16 at 9.
    *_fig("4", "double_well", 100_000, [(d, 2, 4) for d in (5, 7, 9)] + [(d, 3, 8) for d in (5, 7, 9)] + [(5, 4, 32), (7, 4, 32), (9, 4, 16)]),
    # Fig. 5: plain DRM on (17), depth 7 (Figs. 5(c) and 5(f)): 11 transitions at 200,000 epochs,
    # 16 at 500,000 ("Note the solution approximation consists of 11 transitions for 200,000 epochs
    # and 16 transitions for 500,000 epochs", said of the depth-7 runs in the text of Fig. 6).
    *_fig("5", "double_well_u2", 200_000, [(7, None, 11)]),
    *_fig("5", "double_well_u2", 500_000, [(7, None, 16)]),
    # Fig. 6: depth 3, frequency 2π (i = 1), Figs. 6(a) and 6(d): 12 transitions at 200,000 and at 500,000 epochs.
    *_fig("6", "double_well_u2", 200_000, [(3, 1, 12)]),
    *_fig("6", "double_well_u2", 500_000, [(3, 1, 12)]),
    # Fig. 7: plain DRM on (18), depth 7 stays at u = 0: no transition.
    *_fig("7", "twin_branching", 300_000, [(7, None, 0)]),
    # Fig. 8: depth 3 with the map: i = 1: 4, i = 2: 8, i = 3: 15, i = 4: 32.
    *_fig("8", "twin_branching", 300_000, [(3, 1, 4), (3, 2, 8), (3, 3, 15), (3, 4, 32)]),
    # Fig. 9: ε = 0.1/16: i = 3: 8, i = 4: 32.
    *_fig("9", "twin_branching", 300_000, [(3, 3, 8), (3, 4, 32)], epsilon=0.1 / 16),
    # Fig. 10: ε = 0.1/4: i = 2 and i = 3: 8, i = 4: 16.
    *_fig("10", "twin_branching", 300_000, [(3, 2, 8), (3, 3, 8), (3, 4, 16)], epsilon=0.1 / 4),
]
