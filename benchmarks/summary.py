"""One line per row of what `drmfm bench --json` or `benchmarks/mixed_packs.py` wrote, with each
row's fraction of the matmul peak measured in the same run: what cpu_check.sh and gpu_check.sh
print, so that a machine's figures can be read off the log without opening the JSON.

    python benchmarks/summary.py FILE.json [FILE.json ...]
"""

from __future__ import annotations

import json
import sys


def bench_lines(d: dict) -> list[str]:
    peak = d["matmul_peak_gflops"]
    lines = [f"{d['device']}, torch {d['torch']}, {d['threads']} threads, {d['dtype']}: matmul peak {peak:,.0f} GFLOP/s"]
    for r in d["results"]:
        tuning = r.get("tuning") or {}
        lines.append(
            f"{r['case']} {r['method']:<9} K = {r['K']:<3} {'graphed ' if r['graphed'] else ''}{r['trial_steps_per_s']:>9,.0f} trial-steps/s  "
            f"{r['gflops'] / peak:6.1%} of peak  {r['ratio_to_reference']:7.2f}x ref  "
            f"chunk {tuning.get('members_per_chunk', '-')}, threads {tuning.get('threads', '-')}, {r.get('passes') or ''}"
        )
    return lines


def mixed_lines(d: dict) -> list[str]:
    return [
        f"{r['spec']} K = {r['K']:<3} {'graphed ' if r.get('graphed') else ''}{r['trial_steps_per_s']:>9,.0f} trial-steps/s  "
        f"{r['of_peak']:6.1%} of peak  time a step {r['mixed_time_over_one_config']:.3f}x one configuration's"
        for r in d["results"]
    ]


def main(paths: list[str]) -> int:
    for path in paths:
        try:
            with open(path) as f:
                d = json.load(f)
        except (OSError, ValueError) as e:  # a step cut short by its time limit leaves no JSON, or half of one
            print(f"{path}: no figures ({type(e).__name__}: {e})")
            continue
        mixed = any("spec" in r for r in d["results"])  # mixed_packs.py's rows name their spec; the bench's, their case
        print("\n".join(mixed_lines(d) if mixed else bench_lines(d)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
