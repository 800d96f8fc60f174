/*
 * daemon_client: one responder thread's connection to qvld (see daemon_client.h for the API and
 * docs/protocol.md for the protocol).
 *
 * The socket is blocking; every wait for the daemon goes through poll() with the time left
 * until a deadline (CLOCK_MONOTONIC), so a read never blocks past the caller's timeout. Sends
 * are whole frames written with MSG_NOSIGNAL (a daemon gone away is an EPIPE, not a SIGPIPE),
 * looping over partial writes and EINTR. The connect itself is bounded by SO_SNDTIMEO, which
 * Linux applies to a Unix-socket connect(2) that waits on a full listen backlog.
 *
 * Incoming bytes accumulate in one buffer until a whole frame is there:
 *
 *   in  [ consumed | header (24) | payload … | next frame … | free ]
 *       0         off                                     len    cap
 *
 * The header is checked (wire_header_parse) as soon as its 24 bytes are in, so a bad magic is
 * noticed without waiting for a payload that will never come; the frame is taken once all of
 * its payload is in. Decoding copies what the caller gets out of the buffer (token ids and
 * logprobs into arrays owned by the dclient, FINISH and ERROR by value), so the buffer may be
 * compacted before the next read and an event stays valid until the next dclient_next.
 *
 * Death: EOF, an I/O error, a header or payload that does not decode, a frame the daemon never
 * sends (HELLO, SUBMIT, CANCEL, STATS), a frame out of turn, or an ERROR with id 0 mark the
 * connection dead. The socket is closed at once (so the daemon cancels the requests still open
 * on it) and the reason is kept: the call that noticed returns its own code (QERR_IO, or
 * QERR_FORMAT for a malformed frame); every later call fails with QERR_IO repeating it.
 *
 * Ownership: a dclient owns its socket, its buffers and its copy of the socket path. A
 * dclient_model owns its strings. Threads: a dclient belongs to one thread at a time.
 */
#include "daemon_client.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "jsonx.h"
#include "strbuf.h"

#define READ_CHUNK 65536
/* A send buffer grown past this (a SUBMIT with images) is given back after the frame is sent. */
#define OUT_KEEP ((size_t)1 << 20)

struct dclient {
	int fd;                        /* -1 once dead */
	bool dead;
	char *path;                    /* owned: the socket path, for messages */
	char why[QERR_MSG_MAX];        /* the reason it died, without the "qvld at …" prefix */
	uint8_t *in;                   /* owned: see the diagram above */
	size_t off, len, cap;
	strbuf out;                    /* owned: the frame being sent */
	int32_t *ids;                  /* owned: (tok_cap) token ids of the last TOKENS */
	uint32_t tok_cap;
	sampler_logprobs *lp;          /* owned: (lp_cap) their logprobs */
	uint32_t lp_cap;
};

/* ---- time ---- */

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The deadline timeout_ms from now; -1 (none) for a negative timeout. */
static int64_t deadline_of(int timeout_ms)
{
	return timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
}

/* Milliseconds left until deadline for poll(): -1 for none, 0 once passed. Rounds up, so a
 * wait never ends a fraction of a millisecond early and then finds the deadline not reached. */
static int left_ms(int64_t deadline)
{
	if (deadline < 0)
		return -1;
	int64_t left = deadline - now_ms();
	if (left <= 0)
		return 0;
	return left > INT32_MAX ? INT32_MAX : (int)left;
}

/* ---- death ---- */

/* strerror(err) starting in lower case, as in the messages around it ("connection refused"). */
static void errno_text(int err, char *buf, size_t n)
{
	snprintf(buf, n, "%s", strerror(err));
	if (buf[0] >= 'A' && buf[0] <= 'Z' && !(buf[1] >= 'A' && buf[1] <= 'Z'))
		buf[0] = (char)(buf[0] - 'A' + 'a');
}

/* Mark c dead for the reason given, close its socket, and fail with code. */
static int die(dclient *c, qerr *e, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int die(dclient *c, qerr *e, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->why, sizeof(c->why), fmt, ap);
	va_end(ap);
	c->dead = true;
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
	return qerr_set(e, code, "qvld at %s: %s", c->path, c->why);
}

/* The failure of any call on a dead connection. */
static int dead_fail(const dclient *c, qerr *e)
{
	return qerr_set(e, QERR_IO, "qvld at %s: the connection failed earlier: %s", c->path, c->why);
}

/* ---- sending ---- */

/* Send all of c->out (then empty it). */
static int send_out(dclient *c, qerr *e)
{
	const uint8_t *p = (const uint8_t *)c->out.s;
	size_t n = c->out.len;
	int rc = 0;
	while (n) {
		ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			char t[128];
			errno_text(w < 0 ? errno : EPIPE, t, sizeof(t));
			rc = die(c, e, QERR_IO, "send: %s", t);
			break;
		}
		p += w;
		n -= (size_t)w;
	}
	if (c->out.cap > OUT_KEEP)
		strbuf_deinit(&c->out);
	else
		strbuf_truncate(&c->out, 0);
	return rc;
}

/* ---- receiving ---- */

/* Read what the socket has, waiting until deadline. 1: bytes were read; 0: the deadline
 * passed; negative: dead (EOF or an error). */
static int fill(dclient *c, int64_t deadline, qerr *e)
{
	if (c->off) {
		memmove(c->in, c->in + c->off, c->len - c->off);
		c->len -= c->off;
		c->off = 0;
	}
	if (c->cap - c->len < READ_CHUNK) {
		size_t cap = c->cap * 2;
		if (cap < c->len + READ_CHUNK)
			cap = c->len + READ_CHUNK;
		c->in = xrealloc(c->in, cap);
		c->cap = cap;
	}
	for (;;) {
		struct pollfd pf = { .fd = c->fd, .events = POLLIN };
		int r = poll(&pf, 1, left_ms(deadline));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			char t[128];
			errno_text(errno, t, sizeof(t));
			return die(c, e, QERR_IO, "poll: %s", t);
		}
		if (r == 0)
			return 0;
		/* POLLHUP / POLLERR: recv says which (EOF, or the error) */
		ssize_t got = recv(c->fd, c->in + c->len, c->cap - c->len, 0);
		if (got < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (got < 0) {
			char t[128];
			errno_text(errno, t, sizeof(t));
			return die(c, e, QERR_IO, "recv: %s", t);
		}
		if (got == 0)
			return die(c, e, QERR_IO, "the daemon closed the connection%s",
				   c->len ? " in the middle of a frame" : "");
		c->len += (size_t)got;
		return 1;
	}
}

/* The next whole frame, waiting until deadline: 1 with *h and *payload (borrowed from c->in,
 * valid until the next read), 0 when the deadline passed first (a partial frame stays
 * buffered), negative when the connection died (a bad header is QERR_FORMAT). */
static int read_frame(dclient *c, int64_t deadline, wire_header *h, const uint8_t **payload,
		      qerr *e)
{
	for (;;) {
		size_t avail = c->len - c->off;
		if (avail >= WIRE_HEADER_SIZE) {
			qerr le = { 0 };
			if (wire_header_parse(c->in + c->off, h, &le))
				return die(c, e, QERR_FORMAT, "%s", le.msg);
			if (avail - WIRE_HEADER_SIZE >= h->length) {
				*payload = c->in + c->off + WIRE_HEADER_SIZE;
				c->off += WIRE_HEADER_SIZE + (size_t)h->length;
				return 1;
			}
		}
		int rc = fill(c, deadline, e);
		if (rc <= 0)
			return rc;
	}
}

/* TOKENS frames carry n tokens at offset 4 of the payload and has_logprobs at 8: make room for
 * them before decoding. Counts the payload cannot hold are left to the decoder to refuse. */
static void reserve_tokens(dclient *c, const uint8_t *p, uint32_t len)
{
	if (len < 9)
		return;
	uint32_t n = (uint32_t)p[4] | (uint32_t)p[5] << 8 | (uint32_t)p[6] << 16 |
		     (uint32_t)p[7] << 24;
	bool has_lp = p[8] == 1;
	/* each token takes ≥ 4 bytes (its id), ≥ 12 with logprobs (id, logprob, n_top) */
	if (n > WIRE_MAX_TOKENS || (uint64_t)n * (has_lp ? 12 : 4) > len)
		return;
	if (n > c->tok_cap) {
		uint32_t cap = c->tok_cap ? c->tok_cap : 16;
		while (cap < n)
			cap *= 2;
		free(c->ids);
		c->ids = xmalloc(sizeof(*c->ids) * cap);
		c->tok_cap = cap;
	}
	if (has_lp && n > c->lp_cap) {
		uint32_t cap = c->lp_cap ? c->lp_cap : 16;
		while (cap < n)
			cap *= 2;
		free(c->lp);
		c->lp = xmalloc(sizeof(*c->lp) * cap);
		c->lp_cap = cap;
	}
}

/* Decode a frame of a request (TOKENS, FINISH, ERROR) into *ev. 1 on success (an ERROR with
 * id 0 also marks c dead, its event still returned); negative when the frame is not one the
 * daemon may send here or does not decode (c is then dead). */
static int decode_event(dclient *c, const wire_header *h, const uint8_t *p, dclient_event *ev,
			qerr *e)
{
	memset(ev, 0, sizeof(*ev));
	ev->id = h->id;
	qerr le = { 0 };
	switch (h->type) {
	case WIRE_T_TOKENS: {
		if (h->id == 0)
			return die(c, e, QERR_FORMAT, "TOKENS with request id 0");
		reserve_tokens(c, p, h->length);
		bool has_lp = false;
		uint32_t n = 0;
		if (wire_tokens_decode(p, h->length, &ev->index, c->ids, c->lp, &has_lp, c->tok_cap,
				       &n, &le))
			return die(c, e, QERR_FORMAT, "request %llu: %s", (unsigned long long)h->id,
				   le.msg);
		ev->type = DCLIENT_TOKENS;
		ev->n = n;
		ev->ids = c->ids;
		ev->lp = has_lp ? c->lp : NULL;
		return 1;
	}
	case WIRE_T_FINISH:
		if (h->id == 0)
			return die(c, e, QERR_FORMAT, "FINISH with request id 0");
		if (wire_finish_decode(p, h->length, &ev->finish, &le))
			return die(c, e, QERR_FORMAT, "request %llu: %s", (unsigned long long)h->id,
				   le.msg);
		ev->type = DCLIENT_FINISH;
		return 1;
	case WIRE_T_ERROR:
		if (wire_error_decode(p, h->length, &ev->error, &le))
			return die(c, e, QERR_FORMAT, "request %llu: %s", (unsigned long long)h->id,
				   le.msg);
		ev->type = DCLIENT_ERROR;
		if (h->id == 0)
			die(c, NULL, QERR_IO, "the daemon closed the connection: ERROR %u: %s",
			    ev->error.code, ev->error.message);
		return 1;
	default:
		return die(c, e, QERR_FORMAT, "unexpected %s frame (request id %llu)",
			   wire_type_name(h->type), (unsigned long long)h->id);
	}
}

/* ---- MODEL_INFO ---- */

#define MI "MODEL_INFO"

/* A getter's result for a required key: missing is an error; every error is QERR_FORMAT (the
 * daemon sent something that is not a valid MODEL_INFO, whatever the getter calls it). */
static int required(int rc, const char *where, const char *key, qerr *e)
{
	if (rc == 1)
		return qerr_set(e, QERR_FORMAT, "%s: %s: missing", where, key);
	if (rc < 0) {
		e->code = QERR_FORMAT;
		return -QERR_FORMAT;
	}
	return 0;
}

/* An optional key: absent is fine (1 becomes 0); errors are QERR_FORMAT. */
static int optional(int rc, qerr *e)
{
	if (rc < 0) {
		e->code = QERR_FORMAT;
		return -QERR_FORMAT;
	}
	return 0;
}

static int get_int_req(json_object *o, const char *key, int64_t lo, int64_t hi, int64_t *out,
		       const char *where, qerr *e)
{
	return required(jsonx_get_int(o, key, lo, hi, out, where, e), where, key, e);
}

static int get_double_req(json_object *o, const char *key, double lo, double hi, bool open_lo,
			  double *out, const char *where, qerr *e)
{
	int rc = required(jsonx_get_double(o, key, out, where, e), where, key, e);
	if (rc)
		return rc;
	if (*out < lo || *out > hi || (open_lo && *out == lo))
		return qerr_set(e, QERR_FORMAT, "%s: %s: %g is not in %c%g, %g]", where, key, *out,
				open_lo ? '(' : '[', lo, hi);
	return 0;
}

/* A non-empty string (*out owned by the caller). */
static int get_string_req(json_object *o, const char *key, char **out, const char *where, qerr *e)
{
	const char *s = NULL;
	int rc = required(jsonx_get_string(o, key, &s, where, e), where, key, e);
	if (rc)
		return rc;
	if (!*s)
		return qerr_set(e, QERR_FORMAT, "%s: %s: empty", where, key);
	*out = xstrdup(s);
	return 0;
}

static int parse_names(json_object *o, dclient_model *m, qerr *e)
{
	json_object *a = NULL;
	int rc = required(jsonx_get_array(o, "served_model_names", &a, MI, e), MI,
			  "served_model_names", e);
	if (rc)
		return rc;
	size_t n = json_object_array_length(a);
	if (n < 1 || n > DCLIENT_MAX_NAMES)
		return qerr_set(e, QERR_FORMAT, MI ": served_model_names: %zu names, expected 1..%d",
				n, DCLIENT_MAX_NAMES);
	for (size_t i = 0; i < n; i++) {
		json_object *v = json_object_array_get_idx(a, i);
		if (!json_object_is_type(v, json_type_string) || !json_object_get_string_len(v))
			return qerr_set(e, QERR_FORMAT, MI ": served_model_names[%zu]: expected a "
					"non-empty string", i);
		m->names[m->n_names++] = xstrdup(json_object_get_string(v));
	}
	if ((rc = get_string_req(o, "model", &m->model, MI, e)))
		return rc;
	if (strcmp(m->model, m->names[0]))
		return qerr_set(e, QERR_FORMAT, MI ": model: \"%s\" is not the first of "
				"served_model_names (\"%s\")", m->model, m->names[0]);
	return 0;
}

static int parse_eos(json_object *o, dclient_model *m, qerr *e)
{
	json_object *a = NULL;
	int rc = required(jsonx_get_array(o, "eos_token_ids", &a, MI, e), MI, "eos_token_ids", e);
	if (rc)
		return rc;
	size_t n = json_object_array_length(a);
	if (n > SAMPLER_MAX_EOS)
		return qerr_set(e, QERR_FORMAT, MI ": eos_token_ids: %zu ids, at most %d", n,
				SAMPLER_MAX_EOS);
	for (size_t i = 0; i < n; i++) {
		int64_t id;
		if (!jsonx_as_int(json_object_array_get_idx(a, i), 0, m->vocab_size - 1, &id))
			return qerr_set(e, QERR_FORMAT, MI ": eos_token_ids[%zu]: not a token id "
					"(vocab_size %d)", i, m->vocab_size);
		m->eos_ids[m->n_eos++] = (int32_t)id;
	}
	return 0;
}

static int parse_mm(json_object *o, dclient_model *m, qerr *e)
{
	json_object *lim = NULL, *kw = NULL;
	int64_t v;
	int rc = required(jsonx_get_object(o, "limit_mm_per_prompt", &lim, MI, e), MI,
			  "limit_mm_per_prompt", e);
	if (rc)
		return rc;
	rc = get_int_req(lim, "image", 0, WIRE_MAX_IMAGES, &v, MI ": limit_mm_per_prompt", e);
	if (rc)
		return rc;
	m->limit_images = (int)v;
	/* optional: {} or absent when the daemon has no overrides; unknown keys are ignored */
	if ((rc = optional(jsonx_get_object(o, "mm_processor_kwargs", &kw, MI, e), e)))
		return rc;
	if (kw) {
		const char *w = MI ": mm_processor_kwargs";
		rc = optional(jsonx_get_int(kw, "min_pixels", 1, INT32_MAX, &m->min_pixels, w, e), e);
		if (rc)
			return rc;
		rc = optional(jsonx_get_int(kw, "max_pixels", 1, INT32_MAX, &m->max_pixels, w, e), e);
		if (rc)
			return rc;
		if (m->min_pixels && m->max_pixels && m->min_pixels > m->max_pixels)
			return qerr_set(e, QERR_FORMAT, "%s: min_pixels %lld is larger than "
					"max_pixels %lld", w, (long long)m->min_pixels,
					(long long)m->max_pixels);
	}
	return 0;
}

/* generation_defaults: every key the daemon sends must be there (max_tokens may be null). */
static int parse_defaults(json_object *o, dclient_model *m, qerr *e)
{
	const char *w = MI ": generation_defaults";
	json_object *g = NULL;
	int64_t v;
	int rc = required(jsonx_get_object(o, "generation_defaults", &g, MI, e), MI,
			  "generation_defaults", e);
	if (rc)
		return rc;
	if ((rc = required(jsonx_get_bool(g, "do_sample", &m->do_sample, w, e), w, "do_sample",
			   e)) ||
	    (rc = get_double_req(g, "temperature", 0, 1e300, false, &m->temperature, w, e)) ||
	    (rc = get_double_req(g, "top_p", 0, 1, true, &m->top_p, w, e)) ||
	    (rc = get_double_req(g, "min_p", 0, 1, false, &m->min_p, w, e)) ||
	    (rc = get_double_req(g, "repetition_penalty", 0, 1e300, true, &m->repetition_penalty, w,
				 e)) ||
	    (rc = get_int_req(g, "top_k", INT32_MIN, INT32_MAX, &v, w, e)))
		return rc;
	m->top_k = (int)v;
	if (!json_object_object_get_ex(g, "max_tokens", NULL))
		return qerr_set(e, QERR_FORMAT, "%s: max_tokens: missing (null when not set)", w);
	m->max_tokens = -1;
	return optional(jsonx_get_int(g, "max_tokens", 1, INT64_MAX, &m->max_tokens, w, e), e);
}

/* Parse a MODEL_INFO payload into *m, which must be zeroed (on failure it holds what was read
 * so far, for dclient_model_deinit). QERR_FORMAT naming the key. e must not be NULL (here and
 * in the getters above, which rewrite its code). */
static int parse_model_info(const uint8_t *p, size_t len, dclient_model *m, qerr *e)
{
	json_object *o = NULL;
	int64_t v;
	int rc = jsonx_parse((const char *)p, len, MI, &o, e);
	if (rc) {
		e->code = QERR_FORMAT;
		return -QERR_FORMAT;
	}
	if (!json_object_is_type(o, json_type_object)) {
		rc = qerr_set(e, QERR_FORMAT, MI ": not a JSON object");
		goto out;
	}
	if ((rc = get_int_req(o, "version", INT64_MIN, INT64_MAX, &v, MI, e)))
		goto out;
	if (v != WIRE_VERSION) {
		rc = qerr_set(e, QERR_FORMAT, MI ": version: %lld, this responder speaks %d",
			      (long long)v, WIRE_VERSION);
		goto out;
	}
	if ((rc = parse_names(o, m, e)) ||
	    (rc = get_string_req(o, "model_dir", &m->model_dir, MI, e)) ||
	    (rc = get_int_req(o, "max_model_len", 1, INT32_MAX, &m->max_model_len, MI, e)) ||
	    (rc = get_int_req(o, "vocab_size", 1, INT32_MAX, &v, MI, e)))
		goto out;
	m->vocab_size = (int)v;
	if ((rc = parse_eos(o, m, e)) ||
	    (rc = required(jsonx_get_bool(o, "vision", &m->vision, MI, e), MI, "vision", e)) ||
	    (rc = get_int_req(o, "image_token_id", m->vision ? 0 : -1, m->vocab_size - 1, &v, MI,
			      e)))
		goto out;
	/* a checkpoint without vision may still name an image token: the responder must not use it */
	m->image_token_id = m->vision ? (int)v : -1;
	if ((rc = parse_mm(o, m, e)) || (rc = parse_defaults(o, m, e)))
		goto out;
	const char *s = NULL;
	if ((rc = optional(jsonx_get_string(o, "api_key", &s, MI, e), e)))
		goto out;
	m->api_key = s ? xstrdup(s) : NULL;
	s = NULL;
	if ((rc = optional(jsonx_get_string(o, "allowed_local_media_path", &s, MI, e), e)))
		goto out;
	m->allowed_local_media_path = s ? xstrdup(s) : NULL;
out:
	json_object_put(o);
	return rc;
}

#undef MI

void dclient_model_deinit(dclient_model *m)
{
	if (!m)
		return;
	free(m->model);
	for (int i = 0; i < m->n_names; i++)
		free(m->names[i]);
	free(m->model_dir);
	free(m->api_key);
	free(m->allowed_local_media_path);
	memset(m, 0, sizeof(*m));
}

/* ---- the connection ---- */

/* connect(2) to path within timeout_ms (SO_SNDTIMEO bounds a wait on a full backlog). */
static int connect_socket(dclient *c, int timeout_ms, qerr *e)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	size_t n = strlen(c->path);
	if (n == 0 || n >= sizeof(a.sun_path))
		return die(c, e, QERR_INVALID, "the socket path must be 1..%zu bytes",
			   sizeof(a.sun_path) - 1);
	memcpy(a.sun_path, c->path, n);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	char t[128];
	if (c->fd < 0) {
		errno_text(errno, t, sizeof(t));
		return die(c, e, QERR_IO, "socket: %s", t);
	}
	struct timeval tv = { 0, 0 };
	if (timeout_ms >= 0) {
		tv.tv_sec = timeout_ms / 1000;
		tv.tv_usec = (timeout_ms % 1000) * 1000;
		if (timeout_ms == 0)
			tv.tv_usec = 1000;   /* 0 would mean "no timeout" */
	}
	if (setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv))) {
		errno_text(errno, t, sizeof(t));
		return die(c, e, QERR_IO, "setsockopt SO_SNDTIMEO: %s", t);
	}
	/* an interrupted connect on a Unix socket has not changed its state: try again */
	int rc;
	while ((rc = connect(c->fd, (struct sockaddr *)&a, sizeof(a))) && errno == EINTR)
		;
	if (rc) {
		if (errno == EAGAIN)
			return die(c, e, QERR_IO, "connect: timed out after %d ms (the daemon's "
				   "listen backlog is full)", timeout_ms);
		errno_text(errno, t, sizeof(t));
		return die(c, e, QERR_IO, "%s", t);
	}
	/* sends of later frames are not bounded (the daemon reads all the time) */
	struct timeval zero = { 0, 0 };
	if (setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &zero, sizeof(zero))) {
		errno_text(errno, t, sizeof(t));
		return die(c, e, QERR_IO, "setsockopt SO_SNDTIMEO: %s", t);
	}
	return 0;
}

/* HELLO, then the MODEL_INFO answering it, before deadline. */
static int hello(dclient *c, int64_t deadline, int timeout_ms, dclient_model *model, qerr *e)
{
	wire_put_frame(&c->out, WIRE_T_HELLO, 0, NULL, 0);
	int rc = send_out(c, e);
	if (rc)
		return rc;
	wire_header h;
	const uint8_t *p = NULL;
	rc = read_frame(c, deadline, &h, &p, e);
	if (rc == 0)
		return die(c, e, QERR_IO, "no MODEL_INFO within %d ms", timeout_ms);
	if (rc < 0)
		return rc;
	if (h.type == WIRE_T_ERROR) {
		wire_error er;
		qerr le = { 0 };
		if (wire_error_decode(p, h.length, &er, &le))
			return die(c, e, QERR_FORMAT, "%s", le.msg);
		return die(c, e, QERR_IO, "ERROR %u instead of MODEL_INFO: %s", er.code, er.message);
	}
	if (h.type != WIRE_T_MODEL_INFO || h.id != 0)
		return die(c, e, QERR_FORMAT, "%s (request id %llu) instead of MODEL_INFO",
			   wire_type_name(h.type), (unsigned long long)h.id);
	qerr le = { 0 };
	if (parse_model_info(p, h.length, model, &le))
		return die(c, e, QERR_FORMAT, "%s", le.msg);
	return 0;
}

int dclient_connect(const char *socket_path, int timeout_ms, dclient **out, dclient_model *model,
		    qerr *e)
{
	*out = NULL;
	memset(model, 0, sizeof(*model));
	const int64_t deadline = deadline_of(timeout_ms);
	dclient *c = xcalloc(1, sizeof(*c));
	c->fd = -1;
	c->path = xstrdup(socket_path);
	int rc = connect_socket(c, timeout_ms, e);
	if (!rc)
		rc = hello(c, deadline, timeout_ms, model, e);
	if (rc) {
		dclient_model_deinit(model);
		dclient_free(c);
		return rc;
	}
	*out = c;
	return 0;
}

void dclient_free(dclient *c)
{
	if (!c)
		return;
	if (c->fd >= 0)
		close(c->fd);
	free(c->path);
	free(c->in);
	strbuf_deinit(&c->out);
	free(c->ids);
	free(c->lp);
	free(c);
}

bool dclient_dead(const dclient *c)
{
	return c->dead;
}

int dclient_submit(dclient *c, uint64_t id, const wire_submit *s, qerr *e)
{
	if (c->dead)
		return dead_fail(c, e);
	/* what wire_submit_put would abort on, or the daemon answer by closing the connection:
	 * the caller's mistakes, refused here and the connection kept */
	if (id == 0)
		return qerr_set(e, QERR_INVALID, "SUBMIT: request id 0 is reserved");
	if (s->n_ids > WIRE_MAX_TOKENS)
		return qerr_set(e, QERR_LIMIT, "SUBMIT: %u prompt tokens, at most %u", s->n_ids,
				WIRE_MAX_TOKENS);
	if (s->n_images > WIRE_MAX_IMAGES)
		return qerr_set(e, QERR_LIMIT, "SUBMIT: %u images, at most %d", s->n_images,
				WIRE_MAX_IMAGES);
	if (s->sp.n_stop_ids < 0 || s->sp.n_stop_ids > SAMPLER_MAX_STOP_IDS)
		return qerr_set(e, QERR_INVALID, "SUBMIT: n_stop_ids %d is not in [0, %d]",
				s->sp.n_stop_ids, SAMPLER_MAX_STOP_IDS);
	const uint64_t size = wire_submit_size(s);
	if (size > WIRE_MAX_PAYLOAD)
		return qerr_set(e, QERR_LIMIT, "SUBMIT: %llu bytes, over WIRE_MAX_PAYLOAD (%u)",
				(unsigned long long)size, WIRE_MAX_PAYLOAD);
	wire_submit_put(&c->out, id, s);
	return send_out(c, e);
}

int dclient_cancel(dclient *c, uint64_t id, qerr *e)
{
	if (c->dead)
		return dead_fail(c, e);
	wire_put_frame(&c->out, WIRE_T_CANCEL, id, NULL, 0);
	return send_out(c, e);
}

int dclient_stats(dclient *c, int timeout_ms, json_object **out, qerr *e)
{
	*out = NULL;
	if (c->dead)
		return dead_fail(c, e);
	wire_put_frame(&c->out, WIRE_T_STATS, 0, NULL, 0);
	int rc = send_out(c, e);
	if (rc)
		return rc;
	wire_header h;
	const uint8_t *p = NULL;
	rc = read_frame(c, deadline_of(timeout_ms), &h, &p, e);
	/* a reply that comes later would be out of turn: the connection is no longer usable */
	if (rc == 0)
		return die(c, e, QERR_IO, "no STATS_REPLY within %d ms", timeout_ms);
	if (rc < 0)
		return rc;
	if (h.type == WIRE_T_ERROR && h.id == 0) {
		dclient_event ev;
		if ((rc = decode_event(c, &h, p, &ev, e)) < 0)
			return rc;
		return qerr_set(e, QERR_IO, "qvld at %s: %s", c->path, c->why);
	}
	if (h.type != WIRE_T_STATS_REPLY || h.id != 0)
		return die(c, e, QERR_FORMAT, "%s (request id %llu) while waiting for STATS_REPLY",
			   wire_type_name(h.type), (unsigned long long)h.id);
	qerr le = { 0 };
	json_object *o = NULL;
	if (jsonx_parse((const char *)p, h.length, "STATS_REPLY", &o, &le))
		return die(c, e, QERR_FORMAT, "%s", le.msg);
	if (!json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		return die(c, e, QERR_FORMAT, "STATS_REPLY: not a JSON object");
	}
	*out = o;
	return 0;
}

int dclient_next(dclient *c, int timeout_ms, dclient_event *ev, qerr *e)
{
	memset(ev, 0, sizeof(*ev));
	if (c->dead)
		return dead_fail(c, e);
	wire_header h;
	const uint8_t *p = NULL;
	int rc = read_frame(c, deadline_of(timeout_ms), &h, &p, e);
	if (rc <= 0)
		return rc;
	return decode_event(c, &h, p, ev, e);
}
