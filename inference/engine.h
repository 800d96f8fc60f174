/*
 * engine: continuous batching of every request over one backend — the heart of qvld, and of
 * `qvl generate` in-process.
 *
 *   engine_submit (any thread) ─► inbox ─┐
 *   engine_cancel (any thread) ─► inbox ─┤
 *                                        ▼
 *   engine thread:  engine_wait ─► engine_step: drain inbox ─► sched_schedule ─► backend_encode
 *                   (images not in the encoder cache) ─► backend_step (one ragged batch) ─►
 *                   sched_step_done ─► sampler_sample per sequence that reached its end ─►
 *                   stop checks ─► emit(engine_output) per sequence that made a token or ended
 *
 * Async scheduling (the default; engine_opts.sync_scheduling turns it off): the step is launched
 * (backend_step_sample_launch) and engine_step returns only after taking the answers of the
 * step launched before it — so the host streams step N's tokens, checks its stops and plans
 * step N+2 while the device runs step N+1. Each sequence that goes on gets a placeholder token
 * (BACKEND_CHAINED_ID) for the id in flight; the next launch passes it, the backend fills it in
 * on the device, and the answer replaces it. A sequence that stopped in step N still computes
 * one dropped token in N+1. Steps whose sampling needs the host's view of the latest token
 * (penalties, min_tokens still masking, guided rows) first take the answers in flight.
 *
 * A request is validated completely in engine_submit, on the caller's thread: token ids in the
 * vocabulary, image runs consistent with their grids (MRoPE positions are computed there too),
 * the prompt plus max_tokens within max_model_len and within the KV pool, each image within the
 * encoder budget, sampling parameters in range. After that the engine thread never fails a
 * request for its input; only a backend failure does (every request of that step gets an
 * error output).
 *
 * Guided decoding (sampling_params.guided = SAMPLER_GUIDED_JSON, response_format json_object):
 * each choice keeps a json_guide over its output bytes; before sampling, every token whose bytes
 * would leave the output no prefix of a JSON object is masked (special tokens always; eos only
 * once the object is complete), and when the tokens left are no more than the bytes needed to
 * close it, the next closing byte is forced — so the output is one JSON object, also when
 * max_tokens ends it.
 *
 * Stopping at the token level, as vLLM does: an eos id of generation_config (unless
 * ignore_eos), a stop_token_id, max_tokens, or max_model_len. Stop strings need text and are
 * the caller's (it cancels the request when one matches).
 *
 * Ownership: engine_submit takes the request's arrays (ids, images and their pixel_values) on
 * success; the backend and the configs are borrowed and must outlive the engine.
 * Threads: engine_submit, engine_cancel, engine_cancel_all, engine_wake and engine_stats_json
 * may be called from any thread; engine_step and engine_wait from one engine thread only.
 */
#ifndef QVL_ENGINE_H
#define QVL_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include <json.h>

#include "backend.h"
#include "model_config.h"
#include "qerr.h"
#include "sampler.h"
#include "scheduler.h"
#include "tokenizer.h"

typedef struct engine_opts {
	int max_num_seqs;              /* 256 */
	int max_num_batched_tokens;    /* 8192 */
	int64_t max_model_len;         /* ≤ the model's max_position_embeddings */
	int block_size;                /* as the backend's */
	int n_blocks;                  /* as the backend's KV pool */
	bool enable_prefix_caching;
	int64_t encoder_cache_tokens;  /* image tokens the encoder cache holds (raised to the largest
					* image the limits allow) */
	int max_waiting;               /* requests queued beyond this get ENGINE_BUSY (0: no bound) */
	const tokenizer *tok;          /* borrowed, optional: the token bytes guided decoding
					* (sampling_params.guided) needs; without it such requests are
					* refused */
	bool sync_scheduling;          /* wait for every step before planning the next, instead of
					* planning and launching step N+1 while step N runs (async
					* scheduling, the default: engine.c) */
} engine_opts;

typedef struct engine_request {
	uint64_t id;                   /* unique among live requests */
	void *owner;                   /* borrowed: handed back in outputs */
	int32_t *ids;                  /* taken on success: the prompt */
	int64_t n_ids;
	sched_image *images;           /* taken on success (with their pixel_values), sorted */
	int n_images;
	sampling_params sp;            /* n_eos/eos_ids are filled from generation_config */
	int32_t max_tokens;            /* ≥ 1 */
	uint32_t n;                    /* choices ≥ 1 */
	double arrival;                /* CLOCK_REALTIME seconds; 0: now */
} engine_request;

enum {
	ENGINE_FINISH_STOP = 1,        /* eos or stop_token_id (stop_id says which) */
	ENGINE_FINISH_LENGTH = 2,      /* max_tokens or max_model_len */
	ENGINE_FINISH_ABORT = 3,       /* cancelled */
};

/* What one sequence produced in one step. */
typedef struct engine_output {
	uint64_t id;
	void *owner;
	uint32_t index;                /* choice */
	int n;                         /* new tokens (0 or 1 today) */
	const int32_t *ids;            /* (n) valid during the callback */
	const sampler_logprobs *lp;    /* (n) or NULL when not asked for */
	bool finished;
	int reason;                    /* ENGINE_FINISH_* when finished */
	int32_t stop_id;               /* -1 unless stopped by an id */
	int error;                     /* nonzero (a QERR_* code): the request failed; message set */
	const char *message;
	/* usage and timings, when finished */
	int64_t prompt_tokens, completion_tokens, cached_tokens;
	double queue_s, ttft_s, e2e_s;
} engine_output;

typedef void (*engine_emit_fn)(void *ctx, const engine_output *o);

typedef struct engine engine;

/* b, mc and gc are borrowed. Fails (QERR_INVALID) on options that make no sense. */
int engine_new(backend *b, const model_config *mc, const generation_config *gc,
	       const engine_opts *o, engine **out, qerr *e);
void engine_free(engine *en);

#define ENGINE_BUSY 1

/* Validate r and queue it. Returns 0 (r's arrays now belong to the engine and are NULLed in
 * *r), ENGINE_BUSY when max_waiting requests are queued already (r untouched), or a negative
 * code with e naming what was wrong: QERR_LIMIT for a prompt (with max_tokens) that cannot fit
 * max_model_len or the KV pool, or an image over the encoder budget; QERR_INVALID for ids, images
 * or parameters that are wrong; QERR_UNSUPPORTED for images given to a text-only model. */
int engine_submit(engine *en, engine_request *r, qerr *e);

/* Cancel a live request (every choice): its blocks are freed at the start of the next step, and
 * each unfinished choice gets an output with reason ENGINE_FINISH_ABORT. Unknown ids are ignored. */
void engine_cancel(engine *en, uint64_t id);
/* Cancel every live and queued request (shutdown). */
void engine_cancel_all(engine *en);

/* Block until there is work, engine_wake is called, or timeout_ms passes (< 0: no timeout). */
void engine_wait(engine *en, int timeout_ms);
void engine_wake(engine *en);

/* One step: take the inbox, schedule, run, sample, emit. Returns 0 (also when there was
 * nothing to run), or the backend's error after failing every request of that step. */
int engine_step(engine *en, engine_emit_fn emit, void *ctx, qerr *e);

/* Requests live (queued, waiting or running). */
int engine_num_live(engine *en);

/* The STATS_REPLY object (metrics.h, docs/protocol.md): counters, histograms and gauges as of
 * the last step. */
json_object *engine_stats_json(engine *en);

#endif
