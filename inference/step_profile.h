/*
 * step_profile: where the GPU time of the decoder's eager steps goes, phase by phase
 * (QVL_PROFILE=1 in qvld's or a benchmark's environment).
 *
 * text_cuda records a CUDA event on its stream after each phase of a step it runs eagerly
 * (embedding, norm + qkv, q/k norm + rope, decode attention, prefill attention — or both
 * together when they run side by side — o, post norm, gate/up, SiLU·mul, down, deepstack adds,
 * final norm, LM head); at the end of the step it waits
 * for the last event and adds the time between consecutive events to the step's class, the pair
 * (rows T, leading decodes n_dec). step_profile_report logs, per class, the mean milliseconds
 * of each phase and its share of the step. Captured decode graphs are not profiled: run with
 * --enforce-eager to see decode steps too.
 *
 * The events cost each step its overlaps: a kernel launched with PDL no longer starts under the
 * tail of the one before, and the host waits for every step (no asynchronous scheduling). The
 * phases' sum is therefore a little above a normal step's time; the split is what it is for.
 * Off (the default) it costs text_cuda one pointer test per phase.
 *
 * Which kernels a phase holds depends on the step: "norm+qkv" is the input RMSNorm and the
 * q/k/v projection together (one fused GEMV up to 4 rows, two kernels above); "post norm" is a
 * phase of its own only where gate/up writes fp16 (above 4 rows), else it is inside "gate_up".
 * One thread (the backend's) calls all of these.
 */
#ifndef QVL_STEP_PROFILE_H
#define QVL_STEP_PROFILE_H

#include <stdbool.h>

#include <cuda_runtime_api.h>

enum step_profile_phase {
	STEP_PROFILE_EMBED, STEP_PROFILE_NORM_QKV, STEP_PROFILE_QK_ROPE, STEP_PROFILE_ATTN_DECODE,
	STEP_PROFILE_ATTN_PREFILL, STEP_PROFILE_ATTN_BOTH, STEP_PROFILE_O, STEP_PROFILE_NORM_POST,
	STEP_PROFILE_GATE_UP, STEP_PROFILE_SILU, STEP_PROFILE_DOWN, STEP_PROFILE_DEEPSTACK,
	STEP_PROFILE_FINAL_NORM, STEP_PROFILE_LM_HEAD, STEP_PROFILE_N_PHASES
};

typedef struct step_profile step_profile;

/* NULL unless QVL_PROFILE=1 in the environment. stream is borrowed: the one every step runs on.
 * Out of memory or a failed CUDA call aborts (cuda_check.h). step_profile_free(NULL) does
 * nothing. */
step_profile *step_profile_new(cudaStream_t stream);
void step_profile_free(step_profile *p);

/* A step of T rows, the first n_dec of them decodes, starts on the stream. Between begin and
 * end, mark(ph) records that everything enqueued since the last mark was phase ph; outside, it
 * does nothing (so a graph capture of the same code records nothing). */
void step_profile_begin(step_profile *p, int T, int n_dec);
void step_profile_mark(step_profile *p, enum step_profile_phase ph);
/* Waits for the step's last event and adds its phases to its class. */
void step_profile_end(step_profile *p);

/* Logs every class (LOG_LEVEL_NOTICE, area "profile"). */
void step_profile_report(const step_profile *p);

#endif
