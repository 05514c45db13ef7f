"""The variational problems: the one interface (`Problem`), the domains, the paper's problems and
the registry (`PROBLEMS`, `get_problem`, `register_problem`; packages plug in through the entry
point group `drmfm.problems`). No code outside this package branches on a problem's name."""

from drm.problems.base import Problem
from drm.problems.domains import Grid, Interval, UnitSquare
from drm.problems.paper import DoubleWell, DoubleWellU2, TwinBranching
from drm.problems.registry import PROBLEMS, get_problem, register_problem

__all__ = [
    "PROBLEMS",
    "DoubleWell",
    "DoubleWellU2",
    "Grid",
    "Interval",
    "Problem",
    "TwinBranching",
    "UnitSquare",
    "get_problem",
    "register_problem",
]
