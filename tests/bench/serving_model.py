#!/usr/bin/env python3
"""serving_model: what gpu_bench's concurrency rows would measure, from the backend's step costs.

A what-if calculator for planning performance work, not a benchmark: it replays qvld's
scheduler (inference/scheduler.c: running sequences first, each a decode or the rest of its
prompt, then waiting ones FCFS, all within --max-num-batched-tokens) against `qvl bench`'s
closed loop (C requests in flight; each one that finishes is replaced by the next one step
later), and charges every step

    decode_ms(number of decodes in it)  +  Σ over them (context − ctx_ref) x ms_per_position
                                        +  prompt tokens x us_per_prompt_token

with decode_ms interpolated from bench_decode_cuda's table 1 (graph steps at context ctx_ref),
ms_per_position what one more cached position of one sequence adds to a step (the attention;
qvld's step log: the 128-decode steps grow 4.04 → 4.2 ms as the context goes 512 → 640) and
us_per_prompt_token from the same log (mixed steps of 8192 tokens, --log-level debug). It
prints output tok/s (total output tokens / duration, as `vllm bench serve` and gpu_bench count
it) for the measured costs and for faster decode steps or prompt tokens. A prompt token costs
the same in every step here, which holds for chunks of 512 tokens and more; smaller chunks cost
more (PERF.md, session 8), so budgets under ~1024 come out too well.

    tests/bench/serving_model.py [--decode-ms 1:1.775,8:2.214,...] [--us-per-prompt-token 5.12]
                                 [--ctx-ref 541] [--ms-per-position 1e-5]
                                 [--budget 8192] [--max-num-seqs 256] [--requests 1024]
                                 [--concurrency 128]
                                 [--input-len 512] [--output-len 128]

The defaults are the H100 fp8-KV numbers of PERF.md's session 8. The model leaves out what
qvld does that it does not (host time, a step's cost depending on context), so compare its
what-ifs with each other, not with gpu_bench's absolute numbers (it reads ~3.5% high).
"""
import argparse
import bisect


def parse_costs(s):
    try:
        pts = sorted((int(b), float(ms)) for b, ms in (kv.split(":") for kv in s.split(",")))
    except ValueError:
        raise SystemExit(f"serving_model: --decode-ms {s!r}: want B:ms pairs, e.g. 1:1.8,128:4.0")
    if any(b < 1 or ms <= 0 for b, ms in pts) or len({b for b, _ in pts}) != len(pts):
        raise SystemExit(f"serving_model: --decode-ms {s!r}: B ≥ 1, ms > 0, each B once")
    if any(m1 < m0 for (_, m0), (_, m1) in zip(pts, pts[1:])):
        raise SystemExit(f"serving_model: --decode-ms {s!r}: a bigger batch cannot cost less")
    return pts


def decode_ms(pts, b, scale):
    if b <= 0:
        return 0.0
    bs = [p[0] for p in pts]
    i = bisect.bisect_left(bs, b)
    if i == 0 or len(pts) == 1:
        return scale * pts[min(i, len(pts) - 1)][1]
    if i == len(pts):
        (b0, m0), (b1, m1) = pts[-2], pts[-1]
    else:
        (b0, m0), (b1, m1) = pts[i - 1], pts[i]
    return scale * (m0 + (m1 - m0) * (b - b0) / (b1 - b0))


def simulate(a, pts, dscale=1.0, pscale=1.0):
    """Output tok/s, seconds and steps of one row."""
    # sequences are [prompt tokens done, tokens out]; lists hold them by identity
    running, waiting, arrivals = [], [], []
    for _ in range(min(a.concurrency, a.requests)):
        waiting.append([0, 0])
    submitted, done, out_tokens, t_ms, step = len(waiting), 0, 0, 0.0, 0
    while done < a.requests:
        while arrivals and arrivals[0] <= step:
            arrivals.pop(0)
            waiting.append([0, 0])
        budget, n_dec, n_prompt, ctx_extra, items = a.budget, 0, 0, 0, []
        for q in running:
            if budget <= 0:
                break
            n = min(a.input_len - q[0], budget) if q[0] < a.input_len else 1
            items.append((q, n))
            budget -= n
            if q[0] < a.input_len:
                n_prompt += n
            else:
                n_dec += 1
                ctx_extra += a.input_len + q[1] - a.ctx_ref
        while waiting and budget > 0 and len(running) < a.max_num_seqs:
            q = waiting.pop(0)
            running.append(q)
            n = min(a.input_len, budget)
            items.append((q, n))
            budget -= n
            n_prompt += n
        t_ms += (decode_ms(pts, n_dec, dscale) + ctx_extra * a.ms_per_position * dscale +
                 n_prompt * a.us_per_prompt_token * pscale * 1e-3)
        finished = []
        for q, n in items:
            if q[0] < a.input_len:
                q[0] += n
                if q[0] == a.input_len:   # the prompt's last chunk samples the first token
                    q[1] = 1
                    out_tokens += 1
            else:
                q[1] += 1
                out_tokens += 1
            if q[0] == a.input_len and q[1] >= a.output_len:
                finished.append(q)
        if finished:
            gone = {id(q) for q in finished}
            running = [r for r in running if id(r) not in gone]
        for _ in finished:
            done += 1
            if submitted < a.requests:
                submitted += 1
                arrivals.append(step + 1)
        step += 1
    return out_tokens / (t_ms * 1e-3), t_ms * 1e-3, step


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--decode-ms", default="1:1.775,8:2.214,32:2.632,64:2.976,128:4.023,256:6.120",
                   help="B:ms pairs, a decode step of B sequences")
    p.add_argument("--ctx-ref", type=int, default=541, help="the context of --decode-ms")
    p.add_argument("--ms-per-position", type=float, default=1e-5,
                   help="ms one cached position of one decoding sequence adds to a step")
    p.add_argument("--us-per-prompt-token", type=float, default=5.12)
    p.add_argument("--budget", type=int, default=8192, help="--max-num-batched-tokens")
    p.add_argument("--max-num-seqs", type=int, default=256, help="qvld's --max-num-seqs")
    p.add_argument("--requests", type=int, default=1024)
    p.add_argument("--concurrency", type=int, default=128)
    p.add_argument("--input-len", type=int, default=512)
    p.add_argument("--output-len", type=int, default=128)
    a = p.parse_args()
    if min(a.budget, a.max_num_seqs, a.requests, a.concurrency, a.input_len, a.output_len) < 1:
        raise SystemExit("serving_model: every count must be at least 1")
    if a.ms_per_position < 0 or a.us_per_prompt_token <= 0:
        raise SystemExit("serving_model: --ms-per-position ≥ 0 and --us-per-prompt-token > 0")
    pts = parse_costs(a.decode_ms)
    print(f"{'decode steps':>14} {'prompt tokens':>14} {'output tok/s':>13} {'s':>7} {'steps':>6}")
    for d, q in ((1.0, 1.0), (0.95, 1.0), (0.9, 1.0), (0.85, 1.0), (1.0, 0.9), (1.0, 0.8),
                 (0.9, 0.9)):
        tps, s, steps = simulate(a, pts, d, q)
        print(f"{d:>13.0%} {q:>13.0%}  {tps:>13,.0f} {s:>7.2f} {steps:>6}")
    print("(cost of a decode step and of a prompt token, relative to the measured ones)")


if __name__ == "__main__":
    main()
