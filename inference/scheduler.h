/*
 * sched: the continuous-batching scheduler, as vLLM V1's (notes/serving-anchors.md §6).
 * (The file is scheduler.h, not sched.h, which would shadow the system <sched.h> on the include
 * path; the prefix stays sched_.)
 *
 * There is no prefill or decode phase. Every sequence has tokens (prompt + output so far) and
 * n_computed (positions whose K/V are in its blocks); a step gives it n_new more:
 *
 *   tokens      [ p p p p p p p p p p | o o o ]      n_tokens = 13
 *   KV          [ x x x x x x x       ]              n_computed = 7
 *   this step                  [ - - - ]             n_new ≤ n_tokens - n_computed
 *   logits only when the chunk reaches n_tokens (the next token is then sampled)
 *
 * One step:
 *   1. RUNNING first, in order: n_new = min(left, budget); images that the chunk overlaps must
 *      have their encoder output cached or be encoded this step within the encoder budget and
 *      the encoder cache, else the chunk stops before that image. KV blocks for the chunk are
 *      allocated; when they do not fit, the last running sequence is preempted (blocks freed,
 *      n_computed = 0, back to the front of WAITING: recompute) until they fit or the sequence
 *      itself was the one preempted.
 *   2. WAITING, FCFS, only if nothing was preempted this step, while the budget, max_num_seqs
 *      and the blocks allow: the prefix cache is asked for the longest cached run of full
 *      blocks (at most n_tokens - 1 tokens, so a position is left to compute), then the chunk
 *      is scheduled like a running one. A head that does not fit blocks the queue (FCFS).
 *   Invariants: Σ n_new ≤ max_num_batched_tokens; running ≤ max_num_seqs; every scheduled
 *   sequence has blocks for n_computed + n_new positions.
 *
 * Sequences are one per choice (a request with n = 3 has three); they share the request's
 * prompt, images and parameters (sched_req). The scheduler owns neither: the engine does, and
 * tells the scheduler when a sequence joins (sched_add) or leaves (sched_remove).
 *
 * Threads: the engine thread only.
 */
#ifndef QVL_SCHEDULER_H
#define QVL_SCHEDULER_H

#include <stdbool.h>
#include <stdint.h>

#include "encoder_cache.h"
#include "kv_blocks.h"
#include "sampler.h"

/* One image of a request: its placeholder run and what the encoder needs. */
typedef struct sched_image {
	int64_t start, n_tokens;       /* run of image pads [start, start + n_tokens) */
	int32_t grid_t, grid_h, grid_w;
	uint8_t hash[32];
	float *pixel_values;           /* owned: (grid_t·grid_h·grid_w, 3·Tp·P²) */
} sched_image;

typedef struct sched_req {
	uint64_t id;                   /* the caller's request id */
	int32_t *ids;                  /* owned: prompt (n_prompt) */
	int64_t n_prompt;
	int32_t *pos;                  /* owned: (3, n_prompt) MRoPE positions */
	int64_t rope_delta;
	sched_image *images;           /* owned: n_images, sorted by start */
	kv_image *kv_images;           /* owned: the same runs with their hashes, for block keys */
	int n_images;
	sampling_params sp;
	int32_t max_tokens;
	uint32_t n;                    /* choices */
	uint32_t n_live;               /* choices not finished */
	double arrival;                /* CLOCK_REALTIME seconds (the responder's arrival) */
	double t_added;                /* CLOCK_REALTIME when the engine took it */
	void *owner;                   /* borrowed: the caller's handle (unused by sched) */
} sched_req;

typedef enum sched_state {
	SCHED_WAITING = 0,
	SCHED_RUNNING = 1,
	SCHED_DONE = 2,
} sched_state;

typedef struct sched_seq {
	sched_req *req;                /* borrowed */
	uint32_t index;                /* choice */
	int32_t *tokens;               /* owned: prompt then output, capacity cap */
	int64_t n_tokens, cap;
	int64_t n_computed;
	kv_seq_blocks blocks;          /* owned (block ids in the pool) */
	sampler_state ss;
	sched_state state;
	int64_t n_cached;              /* prompt tokens served by the prefix cache at first admission */
	bool admitted_once;
	int n_preempted;
	/* timing (CLOCK_REALTIME seconds; 0 until it happens) */
	double t_scheduled, t_first_token, t_last_token;
	/* scheduler links (intrusive lists) */
	struct sched_seq *prev, *next;
} sched_seq;

/* An image whose encoder output a step's chunks read. */
typedef struct sched_enc {
	sched_req *req;                /* borrowed */
	int image;                     /* index into req->images */
	float *rows;                   /* borrowed from the encoder cache: (n_tokens, row_floats) */
	bool encode;                   /* not cached: the engine runs the encoder into rows first */
} sched_enc;

typedef struct sched_item {
	sched_seq *seq;
	int64_t n_new;                 /* positions n_computed .. n_computed + n_new - 1 */
	bool logits;                   /* the chunk reaches n_tokens: sample after it */
} sched_item;

typedef struct sched_plan {
	sched_item *items;             /* owned by the scheduler, valid until the next schedule */
	int n_items;
	sched_enc *encs;               /* owned likewise */
	int n_encs;
	int64_t n_tokens;              /* Σ n_new */
	int n_preempted;               /* this step */
} sched_plan;

typedef struct sched_opts {
	int max_num_seqs;
	int max_num_batched_tokens;
	int64_t encoder_budget;        /* image tokens the encoder may run per step */
	int64_t row_floats;            /* floats of one image token's encoder output (1+n_ds)·D */
} sched_opts;

typedef struct sched sched;

/* kb and ec are borrowed (ec may be NULL for a model without vision). */
sched *sched_new(const sched_opts *o, kv_blocks *kb, encoder_cache *ec);
void sched_free(sched *s);

/* Queue a sequence at the tail of WAITING (n_computed 0, no blocks). */
void sched_add(sched *s, sched_seq *q);
/* Take a sequence out (finished or cancelled): its blocks are released at once. */
void sched_remove(sched *s, sched_seq *q);

/* Plan one step into *plan (which the scheduler owns). An empty plan means nothing can run.
 * The encoder-cache references taken for plan->encs are held until sched_step_done. */
void sched_schedule(sched *s, sched_plan *plan);

/* The step of plan ran: advance n_computed of each item, commit full blocks to the prefix
 * cache and drop the encoder-cache references. Call before appending sampled tokens. */
void sched_step_done(sched *s, sched_plan *plan);

int sched_num_running(const sched *s);
int sched_num_waiting(const sched *s);
uint64_t sched_num_preemptions(const sched *s);

/* Grow q->tokens and append id. */
void sched_seq_append(sched_seq *q, int32_t id);

/* The kv_tokens view of a sequence (for block hashing). */
kv_tokens sched_seq_kv_tokens(const sched_seq *q);

#endif
