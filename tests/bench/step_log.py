#!/usr/bin/env python3
"""step_log: where a served run's time went, from qvld's step lines (--log-level debug).

qvld's engine logs one line per step at debug level:

    step: 128 sequences, 128 tokens, 0 images encoded, launched; 4.08 ms: inbox and schedule
    0.01, encode 0.00, the rest 4.08; 0.02 ms since the last step

A step that is "launched" (asynchronous scheduling) is only queued on the GPU by its own line;
its answers are taken by the next line, which therefore ends when it has finished. So the time
step k occupies (its interval here) is the time between the starts of lines k + 1 and k + 2;
for a step run synchronously, between the starts of lines k and k + 1. The intervals of a busy
run add up to its wall time. This prints, for the
longest run of consecutive non-empty steps (a bench row) or for every step with --all:

  - per kind of step (decodes only; with prompt tokens, by size), the steps, their total and
    mean interval, the mean sequences and tokens;
  - the interval of full decode steps (sequences = tokens ≥ --full) by position in their run
    of consecutive decode steps (the context grows through a run), and the engine's own time
    (inbox and schedule) and gaps, which show whether the host kept the GPU fed;
  - the run as a sequence of phases: "D x121 B 111-128 530 ms" (121 decode steps, batch 111 to
    128) and "P s98 t8192 45.1 ms" (one step with prompt tokens: sequences, tokens, interval).

    tests/bench/step_log.py QVLD_LOG [--all] [--full 120] [--phases 40]

gpu_bench.sh keeps qvld's log in $QVL_BENCH_WORK/logs; pass QVL_BENCH_QVLD_ARGS="--log-level
debug" for the step lines (the logging costs about 1% of a row's throughput).
"""
import argparse
import re
import statistics
import sys

STEP = re.compile(r"step: (\d+) sequences, (\d+) tokens, \d+ images encoded(, launched)?; "
                  r"([\d.]+) ms: inbox and schedule ([\d.]+), encode [\d.]+, the rest [\d.]+; "
                  r"([\d.]+) ms since the last step")


def read_steps(path):
    """[seqs, tokens, own ms, schedule ms, gap ms before it, interval ms] per step line."""
    rows, launched = [], []
    try:
        with open(path, errors="replace") as f:
            for line in f:
                m = STEP.search(line)
                if m:
                    rows.append([int(m[1]), int(m[2]), float(m[4]), float(m[5]), float(m[6])])
                    launched.append(bool(m[3]))
    except OSError as e:
        raise SystemExit(f"step_log: {path}: {e.strerror}")
    start = [0.0]   # start[i]: when line i began, from the first line's start
    for i in range(1, len(rows) + 1):
        start.append(start[i - 1] + rows[i - 1][2] + (rows[i][4] if i < len(rows) else 0.0))
    for k, r in enumerate(rows):
        if launched[k] and k + 2 < len(start):
            r.append(start[k + 2] - start[k + 1])
        else:
            r.append(start[k + 1] - start[k])
    return rows


def longest_run(rows):
    best, cur = [], []
    for r in rows + [[0, 0, 0, 0, 0, 0]]:
        if r[0] > 0:
            cur.append(r)
        else:
            if len(cur) > len(best):
                best = cur
            cur = []
    return best


def kind(r):
    if r[0] == 0:
        return "idle"
    extra = r[1] - r[0]
    if extra == 0:
        return "decodes only"
    lo = max(extra - 1, 0) // 512 * 512
    return f"with {lo + 1}..{lo + 512} prompt tokens"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("log")
    p.add_argument("--all", action="store_true", help="every step, not the longest run")
    p.add_argument("--full", type=int, default=120, help="a full decode step's least batch")
    p.add_argument("--phases", type=int, default=40, help="phases printed (0: none)")
    a = p.parse_args()
    rows = read_steps(a.log)
    if not rows:
        raise SystemExit(f"step_log: {a.log}: no step lines (was qvld at --log-level debug?)")
    run = rows if a.all else longest_run(rows)
    if not run:
        raise SystemExit(f"step_log: {a.log}: every step is empty")
    total = sum(r[5] for r in run)
    print(f"{len(run)} steps, {total / 1e3:.3f} s ({'all steps' if a.all else 'longest busy run'})")

    kinds = {}
    for r in run:
        k = kinds.setdefault(kind(r), [0, 0.0, 0, 0])
        k[0] += 1
        k[1] += r[5]
        k[2] += r[0]
        k[3] += r[1]
    print(f"\n{'kind':32} {'steps':>6} {'ms':>9} {'share':>6} {'ms/step':>8} {'seqs':>6} {'tokens':>7}")
    for name, (n, ms, seqs, toks) in sorted(kinds.items(), key=lambda kv: -kv[1][1]):
        print(f"{name:32} {n:6d} {ms:9.1f} {100 * ms / total:5.1f}% {ms / n:8.2f} "
              f"{seqs / n:6.1f} {toks / n:7.1f}")

    full = [r for r in run if r[0] == r[1] and r[0] >= a.full]
    if full:
        iv = [r[5] for r in full]
        print(f"\nfull decode steps (≥ {a.full} sequences): {len(full)}, interval median "
              f"{statistics.median(iv):.3f} ms, mean {statistics.mean(iv):.3f}; engine's own "
              f"schedule {statistics.mean(r[3] for r in full):.3f} ms, gap before "
              f"{statistics.mean(r[4] for r in full):.3f} ms")
        by_pos, pos = {}, 0
        for i, r in enumerate(run):
            decode = r[0] == r[1]
            pos = pos + 1 if decode and i > 0 and run[i - 1][0] == run[i - 1][1] else 0
            if decode and r[0] >= a.full:
                by_pos.setdefault(pos // 10 * 10, []).append(r[5])
        print("  interval by position in the run of decode steps (ms):")
        print("  " + "  ".join(f"{k}-{k + 9}: {statistics.median(v):.3f}"
                               for k, v in sorted(by_pos.items()) if len(v) >= 3))

    if a.phases > 0:
        phases, i = [], 0
        while i < len(run):
            r = run[i]
            if r[0] == r[1] and r[0] > 0:
                j = i
                while j < len(run) and run[j][0] == run[j][1] and run[j][0] > 0:
                    j += 1
                bs = [x[0] for x in run[i:j]]
                phases.append(f"D x{j - i} B {min(bs)}-{max(bs)} {sum(x[5] for x in run[i:j]):.0f} ms")
                i = j
            else:
                phases.append(f"P s{r[0]} t{r[1]} {r[5]:.1f} ms" if r[0] else f"idle {r[5]:.1f} ms")
                i += 1
        print(f"\nphases ({len(phases)}; the first {min(a.phases, len(phases))}):")
        print("\n".join("  " + x for x in phases[:a.phases]))


if __name__ == "__main__":
    try:
        main()
    except BrokenPipeError:
        sys.stderr.close()
