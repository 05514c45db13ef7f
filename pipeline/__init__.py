"""pipeline: orchestration around the numerical core: the CLI, trials, result tables (and sweeps)."""
