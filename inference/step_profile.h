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
 */
#ifndef QVL_STEP_PROFILE_H
#define QVL_STEP_PROFILE_H

#include <stdbool.h>

#include <cuda_runtime_api.h>

enum step_phase {
	PH_EMBED, PH_NORM_QKV, PH_QK_ROPE, PH_ATTN_DECODE, PH_ATTN_PREFILL, PH_ATTN_BOTH, PH_O,
	PH_NORM_POST,
	PH_GATE_UP, PH_SILU, PH_DOWN, PH_DEEPSTACK, PH_FINAL_NORM, PH_LM_HEAD, PH_N
};

typedef struct step_profile step_profile;

/* NULL unless QVL_PROFILE=1 in the environment (or on allocation failure, logged). */
step_profile *step_profile_from_env(cudaStream_t stream);
void step_profile_free(step_profile *p);

/* A step of T rows, the first n_dec of them decodes, starts on the stream. Between begin and
 * end, mark(ph) records that everything enqueued since the last mark was phase ph; outside, it
 * does nothing (so a graph capture of the same code records nothing). */
void step_profile_begin(step_profile *p, int T, int n_dec);
void step_profile_mark(step_profile *p, enum step_phase ph);
/* Waits for the step's last event and adds its phases to its class. */
void step_profile_end(step_profile *p);

/* Logs every class (LOG_LEVEL_INFO, area "profile"). */
void step_profile_report(const step_profile *p);

#endif
