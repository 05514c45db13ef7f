"""The problems drmfm knows: the paper's, those of installed packages (entry point group
`drmfm.problems`, each naming a Problem subclass or instance), and those a notebook registers.

Packages are looked up on first use, not on import: `import drm` reads no environment, and a
plugin may itself import drm. A package whose problem cannot be loaded is named on stderr once
and left out; the others stay usable.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from importlib.metadata import entry_points

from drm.problems.base import Problem
from drm.problems.paper import DoubleWell, DoubleWellU2, TwinBranching

GROUP = "drmfm.problems"
_REQUIRED = ("name", "label", "equation", "domain", "oscillation_axis", "default_activation", "default_fourier_map", "default_epochs",
             "default_batch")


class _Problems(Mapping[str, Problem]):
    """name -> Problem, in the order they were registered (the paper's first)."""

    def __init__(self, *builtin: Problem):
        self._by_name: dict[str, Problem] = {p.name: p for p in builtin}
        self._plugins_loaded = False

    def add(self, problem: Problem, origin: str) -> None:
        if not isinstance(problem, Problem):
            raise TypeError(f"{origin}: {problem!r} is not a drm.Problem")
        missing = [a for a in _REQUIRED if not hasattr(problem, a)]
        if missing:
            raise TypeError(f"{origin}: problem {type(problem).__name__} lacks {', '.join(missing)} (see drm.problems.Problem)")
        if not (isinstance(problem.name, str) and problem.name.isidentifier()):
            raise ValueError(f"{origin}: problem name {problem.name!r}; allowed: an identifier (it is a spec's and a flag's value)")
        if not 0 <= problem.oscillation_axis < problem.dim:
            raise ValueError(f"{origin}: problem {problem.name!r}: oscillation_axis {problem.oscillation_axis} is not an axis of its "
                             f"{problem.dim}D domain")
        known = self._by_name.get(problem.name)
        if known is not None and type(known) is not type(problem):
            raise ValueError(f"{origin}: problem {problem.name!r} is already registered (by {type(known).__module__})")
        self._by_name[problem.name] = problem

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for point in entry_points(group=GROUP):
            origin = f"entry point {point.name} = {point.value}"
            try:
                loaded = point.load()
                self.add(loaded() if isinstance(loaded, type) else loaded, origin)
            except Exception as e:  # noqa: BLE001 - one broken package must not hide the other problems
                print(f"drmfm: warning: {origin} ({GROUP}) was not loaded: {type(e).__name__}: {e}", file=sys.stderr)

    def __getitem__(self, name: str) -> Problem:
        if name not in self._by_name:  # a known name is found without looking at the installed packages
            self._load_plugins()
        return self._by_name[name]

    def __iter__(self) -> Iterator[str]:
        self._load_plugins()
        return iter(dict(self._by_name))

    def __len__(self) -> int:
        self._load_plugins()
        return len(self._by_name)


PROBLEMS: Mapping[str, Problem] = _Problems(DoubleWell(), DoubleWellU2(), TwinBranching())


def register_problem(problem: Problem | type[Problem]) -> Problem:
    """Make `problem` (an instance, or a class with no arguments) known by its name; returns the instance.

    For a notebook or a script. A package registers through the entry point group `drmfm.problems`,
    so that every process of a sweep (Ray's workers too) knows it.
    """
    instance = problem() if isinstance(problem, type) else problem
    PROBLEMS.add(instance, "register_problem")  # type: ignore[attr-defined]
    return instance


def get_problem(name: str) -> Problem:
    """The problem called `name` (KeyError names the allowed ones)."""
    try:
        return PROBLEMS[name]
    except KeyError:
        raise KeyError(f"unknown problem {name!r}; allowed: {', '.join(PROBLEMS)}") from None
