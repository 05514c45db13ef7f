"""What `drmfm bench --json` or `benchmarks/mixed_packs.py` wrote, with each row's fraction of the
matmul peak measured in the same run: the bench's table (as `drmfm bench` prints it) or a line per
mixed pack. cpu_check.sh and gpu_check.sh print it, so that a machine's figures can be read off the
log without opening the JSON.

    python benchmarks/summary.py FILE.json [FILE.json ...]
"""

from __future__ import annotations

import json
import sys

from pipeline.train_command import print_bench


def mixed_lines(d: dict) -> list[str]:
    peaks = ", ".join(f"{dtype} {gflops:,.0f}" for dtype, gflops in d["matmul_peak_gflops"].items())
    lines = [f"{d['device']}, torch {d['torch']}, {d['threads']} threads: matmul peak {peaks} GFLOP/s"]
    for r in d["results"]:
        ran = r["step_mode"].split(" ", 1)[0]  # "graphed", or "eager" (asked for, or where the capture failed)
        lines.append(
            f"{r['spec']} K = {r['K']:<3} {ran:<7} {r['trial_steps_per_s']:>9,.0f} trial-steps/s  {r['of_peak']:6.1%} of peak  "
            f"time a step {r['mixed_time_over_one_config']:.3f}x one configuration's"
        )
    return lines


def summarise(d: object) -> None:
    """Print one file's JSON; ValueError where it is neither the bench's nor the mixed packs'."""
    rows = d.get("results") if isinstance(d, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ValueError("not the JSON of drmfm bench or benchmarks/mixed_packs.py (no list of results)")
    if isinstance(d.get("matmul_peak_gflops"), dict):  # mixed_packs.py keeps a peak per dtype; the bench, one
        print("\n".join(mixed_lines(d)))
    else:
        print_bench(d)


def main(paths: list[str]) -> int:
    for path in paths:
        try:
            with open(path) as f:
                summarise(json.load(f))
        except (OSError, ValueError, KeyError, TypeError) as e:  # a step cut short leaves no JSON, or half of one
            print(f"{path}: no figures ({type(e).__name__}: {e})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
