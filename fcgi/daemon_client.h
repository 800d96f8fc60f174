/*
 * daemon_client: a responder thread's connection to qvld (the wire protocol of inference/wire.h
 * and docs/protocol.md), and the model information the daemon announces.
 *
 *   dclient_connect: connect(2) to the daemon's Unix socket, HELLO, read MODEL_INFO into a
 *                    dclient_model (the daemon's configuration is the single source of truth:
 *                    served names, model directory, limits, eos ids, generation defaults)
 *   dclient_submit / dclient_cancel / dclient_stats: one frame each
 *   dclient_next:    the next TOKENS / FINISH / ERROR frame for any request on this connection,
 *                    waiting at most timeout_ms (so the caller can send SSE heartbeats and notice
 *                    its client going away between frames)
 *
 * A connection that fails (EOF, I/O error, a malformed frame from the daemon) is dead: every
 * call on it fails with QERR_IO and the caller drops it and connects again later (the
 * responder answers 503 with Retry-After meanwhile). Nothing here retries by itself.
 *
 * Threads: a dclient belongs to one thread at a time. A dclient_model is plain data.
 */
#ifndef QVL_DAEMON_CLIENT_H
#define QVL_DAEMON_CLIENT_H

#include <stdbool.h>
#include <stdint.h>

#include <json.h>

#include "qerr.h"
#include "sampler.h"
#include "wire.h"

#define DCLIENT_MAX_NAMES 8

typedef struct dclient_model {
	char *model;                   /* owned: the first served name */
	char *names[DCLIENT_MAX_NAMES];  /* owned: every served name */
	int n_names;
	char *model_dir;               /* owned */
	int64_t max_model_len;
	int n_eos;
	int32_t eos_ids[SAMPLER_MAX_EOS];
	int vocab_size;
	int image_token_id;            /* -1 without vision */
	bool vision;
	int limit_images;              /* images per prompt */
	int64_t min_pixels, max_pixels;  /* mm_processor_kwargs defaults; 0 when not set */
	/* generation defaults (generation_config.json, or vLLM's with --generation-config vllm) */
	bool do_sample;
	double temperature, top_p, min_p, repetition_penalty;
	int top_k;
	int64_t max_tokens;            /* -1 when not set */
	char *api_key;                 /* owned; NULL when the daemon has none */
	char *allowed_local_media_path;  /* owned; NULL when none */
} dclient_model;

void dclient_model_deinit(dclient_model *m);

typedef struct dclient dclient;

/* Connect to the daemon at socket_path and read its MODEL_INFO into *model. QERR_IO naming the
 * path ("qvld at /run/qvl/qvld.sock: connection refused") when the daemon is not there;
 * QERR_FORMAT when it answers with something that is not a valid MODEL_INFO (the message names
 * the key). timeout_ms (< 0: none) bounds the connect, the HELLO and the wait for MODEL_INFO
 * together. On failure *out is NULL and *model is zeroed (nothing to deinit). */
int dclient_connect(const char *socket_path, int timeout_ms, dclient **out, dclient_model *model,
		    qerr *e);
void dclient_free(dclient *c);

/* Whether the connection has failed (then every call fails; drop it). */
bool dclient_dead(const dclient *c);

/* Send a SUBMIT for request id (nonzero, unique among this connection's open requests). A
 * SUBMIT that could not be sent as a valid frame (id 0: QERR_INVALID; more ids or images than
 * the wire allows, a payload over WIRE_MAX_PAYLOAD: QERR_LIMIT) is refused without sending,
 * and the connection stays usable. */
int dclient_submit(dclient *c, uint64_t id, const wire_submit *s, qerr *e);
/* Send CANCEL for id. */
int dclient_cancel(dclient *c, uint64_t id, qerr *e);
/* STATS → the STATS_REPLY object (*out owned by the caller). Must not be called while requests
 * are open on this connection (frames would interleave); use a connection of its own. */
int dclient_stats(dclient *c, int timeout_ms, json_object **out, qerr *e);

typedef enum dclient_event_type {
	DCLIENT_TOKENS = WIRE_T_TOKENS,
	DCLIENT_FINISH = WIRE_T_FINISH,
	DCLIENT_ERROR = WIRE_T_ERROR,
} dclient_event_type;

typedef struct dclient_event {
	dclient_event_type type;
	uint64_t id;
	/* TOKENS */
	uint32_t index;
	uint32_t n;
	const int32_t *ids;            /* (n) borrowed: valid until the next dclient_next */
	const sampler_logprobs *lp;    /* (n) or NULL; borrowed likewise */
	/* FINISH */
	wire_finish finish;
	/* ERROR (id 0: about the connection, which is then dead) */
	wire_error error;
} dclient_event;

/* Wait up to timeout_ms (< 0: forever) for the next frame. Returns 1 with *ev filled, 0 on
 * timeout, or a negative code (the connection is dead: QERR_IO for EOF or an I/O error,
 * QERR_FORMAT for a malformed or unexpected frame; QERR_IO on every call after that). An ERROR
 * with id 0 is returned as an event (1) and leaves the connection dead. */
int dclient_next(dclient *c, int timeout_ms, dclient_event *ev, qerr *e);

#endif
