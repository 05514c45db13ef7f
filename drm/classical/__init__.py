"""Classical reference minimisers: each problem's energy per count of transitions, found by finite
differences and Newton on one mirrored cell (drm.classical.cell), refined until it settles
(drm.classical.solve), tabulated and cached per (problem, ε) (drm.classical.table). Needs scipy."""

from drm.classical.table import Reference, reference, trivial_energy

__all__ = ["Reference", "reference", "trivial_energy"]
