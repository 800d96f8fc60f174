/*
 * wire: the qvl wire protocol between the responders (qvl-fcgi) and the daemon (qvld), version 1.
 * docs/protocol.md describes it field by field; this header is its C form.
 *
 * Transport: a SOCK_STREAM Unix socket. Every message is one frame:
 *
 *   offset  size  field
 *        0     4  magic        "QVLW" (0x51 0x56 0x4c 0x57 on the wire: u32 0x574c5651 LE)
 *        4     2  version      WIRE_VERSION
 *        6     2  type         WIRE_T_*
 *        8     8  request id   chosen by the responder, unique among its open requests on this
 *                              connection (0 for HELLO, STATS and connection-level ERROR)
 *       16     4  length       payload bytes that follow, ≤ WIRE_MAX_PAYLOAD
 *       20     4  reserved     0
 *       24     …  payload
 *
 * All integers little-endian, floats IEEE-754 binary32/64 little-endian; payloads are packed
 * sequences of fixed-size fields and counted arrays (u32 count, then the elements); strings are
 * u32 length + bytes (no NUL). A payload must be consumed exactly: trailing bytes are an error.
 *
 *   responder ─► daemon                      daemon ─► responder
 *   HELLO        (empty)                     MODEL_INFO   JSON text (wire_model_info)
 *   SUBMIT       wire_submit                 TOKENS       wire_tokens (one per choice per step)
 *                                            FINISH       wire_finish (one per choice)
 *   CANCEL       (empty)                     ERROR        wire_error (the whole request, or with
 *                                                         id 0 the connection, which then closes)
 *   STATS        (empty)                     STATS_REPLY  JSON text (counters and histograms)
 *
 * A request ends after all of its n FINISH frames, or one ERROR frame. Anything malformed (bad
 * magic, unknown version or type, a payload over the limit or that does not parse, a request id
 * reused while open) makes the daemon send ERROR (id 0, WIRE_E_PROTOCOL, naming what was wrong)
 * and close that connection; its requests are cancelled; every other connection goes on.
 *
 * Threads: pure functions over caller buffers.
 */
#ifndef QVL_WIRE_H
#define QVL_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qerr.h"
#include "sampler.h"
#include "strbuf.h"

#define WIRE_MAGIC 0x574c5651u
#define WIRE_VERSION 1
#define WIRE_HEADER_SIZE 24
/* The largest payload: a SUBMIT with its images' resized pixels (uint8 RGB). */
#define WIRE_MAX_PAYLOAD (256u << 20)
#define WIRE_MAX_TOKENS (1u << 22)         /* token ids in one SUBMIT */
#define WIRE_MAX_IMAGES 64
#define WIRE_MAX_MESSAGE 1024              /* bytes of an ERROR message */
#define WIRE_MAX_N 128                     /* choices per request */

enum wire_type {
	WIRE_T_HELLO = 1,
	WIRE_T_MODEL_INFO = 2,
	WIRE_T_SUBMIT = 3,
	WIRE_T_TOKENS = 4,
	WIRE_T_FINISH = 5,
	WIRE_T_ERROR = 6,
	WIRE_T_CANCEL = 7,
	WIRE_T_STATS = 8,
	WIRE_T_STATS_REPLY = 9,
};

/* ERROR codes, each with the HTTP status a responder maps it to. */
enum wire_error_code {
	WIRE_E_BAD_REQUEST = 1,    /* 400: the request cannot be served as given (message says why) */
	WIRE_E_TOO_LONG = 2,       /* 400: prompt (+ images) over max_model_len */
	WIRE_E_BUSY = 3,           /* 503: the waiting queue is full; retry later */
	WIRE_E_SHUTTING_DOWN = 4,  /* 503: the daemon is stopping */
	WIRE_E_INTERNAL = 5,       /* 500: the backend failed */
	WIRE_E_PROTOCOL = 6,       /* the frame was malformed; the connection is closed */
	WIRE_E_CANCELLED = 7,      /* the request was cancelled (SIGTERM grace period over) */
};

typedef struct wire_header {
	uint16_t version;
	uint16_t type;
	uint64_t id;
	uint32_t length;
} wire_header;

/* Parse the first WIRE_HEADER_SIZE bytes of buf. QERR_FORMAT for a bad magic, nonzero reserved
 * field, unknown type, a length over WIRE_MAX_PAYLOAD or a nonzero length on a frame without
 * payload (HELLO, CANCEL, STATS); QERR_UNSUPPORTED for another version. The message names the
 * field and value. */
int wire_header_parse(const uint8_t *buf, wire_header *h, qerr *e);
/* Append a frame header to out. */
void wire_header_put(strbuf *out, uint16_t type, uint64_t id, uint32_t length);

/* A frame with an empty or text payload (HELLO, CANCEL, STATS, MODEL_INFO, STATS_REPLY).
 * The *_put functions append to out; given a payload over WIRE_MAX_PAYLOAD (the caller's bug,
 * never the peer's) they log and abort rather than send a frame the peer must refuse. */
void wire_put_frame(strbuf *out, uint16_t type, uint64_t id, const void *payload, size_t len);

/* ---- SUBMIT ---- */

typedef struct wire_image {
	int64_t start;             /* index in ids of its first image pad token */
	int32_t grid_t, grid_h, grid_w;  /* image_grid_thw (patches) */
	int32_t width, height;     /* resized size: width = grid_w·patch, height = grid_h·patch */
	uint8_t hash[32];          /* img_patches.hash of these pixels (img_preprocess_hash) */
	const uint8_t *rgb;        /* borrowed (points into the payload on decode): height·width·3 */
} wire_image;

typedef struct wire_submit {
	uint32_t n_ids;
	const int32_t *ids;        /* borrowed; on decode points into the payload (may be unaligned:
				    * read with memcpy) — wire_submit_decode copies into ids_buf */
	int32_t *ids_buf;          /* owned by decode: aligned copy of ids (free with _deinit) */
	uint32_t n_images;
	wire_image images[WIRE_MAX_IMAGES];
	sampling_params sp;        /* n_eos/eos_ids are not sent: the daemon fills them */
	int32_t max_tokens;        /* ≥ 1 */
	uint32_t n;                /* choices, 1..WIRE_MAX_N */
	double arrival;            /* CLOCK_REALTIME seconds when the responder got the request */
} wire_submit;

/* The payload bytes wire_submit_put writes for s. The responder checks it against
 * WIRE_MAX_PAYLOAD (and answers 400 itself) before putting: *_put abort on a payload over the
 * limit, which the peer could only refuse. */
uint64_t wire_submit_size(const wire_submit *s);
/* Append a SUBMIT frame. s must be what wire_submit_decode accepts (counts within the limits,
 * image rgb of width*height*3 bytes). */
void wire_submit_put(strbuf *out, uint64_t id, const wire_submit *s);
/* Decode a SUBMIT payload. QERR_FORMAT naming the field for truncation, trailing bytes, counts
 * over the limits above, booleans other than 0/1, doubles that are not finite, image fields
 * (sizes, grid, placeholder positions, pixel bytes that do not match the size); QERR_INVALID
 * for values a user may have chosen: ids outside [0, V), max_tokens, n, logprobs, and sampling
 * values out of range (sampling_params_check with vocab size V; sp.n_eos is 0). On failure
 * *out is zeroed (deinit is still safe). */
int wire_submit_decode(const uint8_t *p, size_t len, int V, wire_submit *out, qerr *e);
void wire_submit_deinit(wire_submit *s);

/* ---- TOKENS ---- */

typedef struct wire_tokens {
	uint32_t index;            /* choice */
	uint32_t n;                /* tokens in this frame */
	const int32_t *ids;        /* (n) */
	bool has_logprobs;
	const sampler_logprobs *lp;  /* (n) when has_logprobs */
} wire_tokens;

/* Append a TOKENS frame (lp[i].id is not sent: ids[i] is; lp[i].n_top ≤ 20). */
void wire_tokens_put(strbuf *out, uint64_t id, const wire_tokens *t);
/* Decode into caller arrays of capacity cap (ids and lp); QERR_FORMAT when malformed or over cap.
 * lp may be NULL: logprobs are then checked and dropped; else lp[i].id = ids[i]. */
int wire_tokens_decode(const uint8_t *p, size_t len, uint32_t *index, int32_t *ids,
		       sampler_logprobs *lp, bool *has_logprobs, uint32_t cap, uint32_t *n, qerr *e);

/* ---- FINISH ---- */

enum wire_finish_reason {
	WIRE_FINISH_STOP = 1,      /* an eos id or a stop_token_id (stop_id says which) */
	WIRE_FINISH_LENGTH = 2,    /* max_tokens or the end of the context */
	WIRE_FINISH_ABORT = 3,     /* cancelled */
};

typedef struct wire_finish {
	uint32_t index;
	uint32_t reason;           /* WIRE_FINISH_* */
	int32_t stop_id;           /* the id that stopped, or -1 */
	uint32_t prompt_tokens;
	uint32_t completion_tokens;
	uint32_t cached_tokens;    /* prompt tokens served from the prefix cache */
	double queue_s;            /* arrival in the daemon → first scheduled */
	double ttft_s;             /* arrival (responder's) → first token */
	double e2e_s;              /* arrival (responder's) → finish */
} wire_finish;

void wire_finish_put(strbuf *out, uint64_t id, const wire_finish *f);
int wire_finish_decode(const uint8_t *p, size_t len, wire_finish *out, qerr *e);

/* ---- ERROR ---- */

typedef struct wire_error {
	uint32_t code;             /* WIRE_E_* */
	char message[WIRE_MAX_MESSAGE + 1];
} wire_error;

void wire_error_put(strbuf *out, uint64_t id, uint32_t code, const char *message);
int wire_error_decode(const uint8_t *p, size_t len, wire_error *out, qerr *e);

const char *wire_type_name(uint16_t type);

#endif
