"""One line per row of what `drmfm bench --json` or `benchmarks/mixed_packs.py` wrote, with each
row's fraction of the matmul peak measured in the same run: what cpu_check.sh and gpu_check.sh
print, so that a machine's figures can be read off the log without opening the JSON.

    python benchmarks/summary.py FILE.json [FILE.json ...]
"""

from __future__ import annotations

import json
import sys


def _or_dash(value: object) -> object:
    return "-" if value is None else value


def bench_lines(d: dict) -> list[str]:
    peak = d["matmul_peak_gflops"]
    lines = [f"{d['device']}, torch {d['torch']}, {d['threads']} threads, {d['dtype']}: matmul peak {peak:,.0f} GFLOP/s"]
    for r in d["results"]:
        tuning, ran = r.get("tuning") or {}, "graphed" if r["graphed"] else "eager"
        lines.append(
            f"{r['case']} {r['method']:<9} K = {r['K']:<3} {ran:<7} {r['trial_steps_per_s']:>9,.0f} trial-steps/s  "
            f"{r['gflops'] / peak:6.1%} of peak  {r['ratio_to_reference']:7.2f}x ref  "
            f"chunk {_or_dash(tuning.get('members_per_chunk'))}, threads {_or_dash(tuning.get('threads'))}, {r.get('passes') or ''}"
        )
    return lines


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


def summary(d: object) -> list[str]:
    """The lines of one file's JSON; ValueError where it is neither the bench's nor the mixed packs'."""
    rows = d.get("results") if isinstance(d, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ValueError("not the JSON of drmfm bench or benchmarks/mixed_packs.py (no list of results)")
    mixed = isinstance(d.get("matmul_peak_gflops"), dict)  # mixed_packs.py keeps a peak per dtype; the bench, one
    return mixed_lines(d) if mixed else bench_lines(d)


def main(paths: list[str]) -> int:
    for path in paths:
        try:
            with open(path) as f:
                print("\n".join(summary(json.load(f))))
        except (OSError, ValueError, KeyError, TypeError) as e:  # a step cut short leaves no JSON, or half of one
            print(f"{path}: no figures ({type(e).__name__}: {e})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
