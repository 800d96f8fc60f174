/*
 * api: the OpenAI-compatible HTTP API of qvl-fcgi, over an abstract request transport so that
 * the whole API runs in tests without a web server (check_api drives it with memory buffers
 * against a real qvld) and behind libfcgi in production (qvl_fcgi.c).
 *
 *   GET  /v1/models            served names (id, object, created, owned_by, max_model_len)
 *   POST /v1/chat/completions  chat, images, tools, n, logprobs, response_format json_object,
 *                              streaming (SSE)
 *   POST /v1/completions       a prompt as text or token ids
 *   GET  /health               200 when qvld answers, 503 otherwise
 *   GET  /version              {"version": …}
 *   GET  /metrics              Prometheus text (vLLM's names) from qvld's STATS
 *   POST /tokenize, /detokenize
 *
 * Errors are OpenAI/vLLM error objects with their status, mapped in one place (api.c,
 * api_fail): 400 bad request or image or a prompt too long, 401 API key, 404 model or route,
 * 405 method, 413 body over --max-request-bytes, 415 not JSON, 503 qvld down or busy (with
 * Retry-After), 500 only for bugs.
 *
 * Threads: one api_ctx is shared by every worker thread (its model state is loaded once under
 * a lock); each thread has its own api_thread (its connection to qvld).
 */
#ifndef QVL_API_H
#define QVL_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qerr.h"

/* One HTTP request as the web server hands it over (CGI/FastCGI params, body, response). */
typedef struct api_io {
	void *ctx;
	/* a CGI parameter (REQUEST_METHOD, REQUEST_URI, CONTENT_TYPE, CONTENT_LENGTH,
	 * HTTP_AUTHORIZATION, …) or NULL */
	const char *(*param)(void *ctx, const char *name);
	/* read up to n body bytes: > 0 bytes read, 0 at the end, < 0 on error */
	long (*read)(void *ctx, char *buf, size_t n);
	/* write n bytes of the response (headers first, CGI style: "Status: 200 OK\r\n…\r\n\r\n");
	 * 0, or < 0 once the client is gone */
	int (*write)(void *ctx, const char *buf, size_t n);
	/* push what was written to the client; 0, or < 0 once the client is gone */
	int (*flush)(void *ctx);
	/* whether the client is known to be gone without writing (may always say false) */
	bool (*gone)(void *ctx);
} api_io;

typedef struct api_opts {
	const char *daemon_socket;     /* qvld's socket */
	const char *api_key;           /* NULL: no key required (the daemon's --api-key also counts) */
	size_t max_request_bytes;      /* 413 beyond */
	const char *allowed_local_media_path;  /* file:// images under here; NULL: refused */
	const char *const *allowed_media_domains;  /* NULL-terminated; NULL: any public host */
	int n_allowed_media_domains;
	bool allow_private_media;      /* fetch from loopback/private addresses (tests) */
	int heartbeat_ms;              /* SSE comment heartbeat while no token comes (1000) */
} api_opts;

typedef struct api_ctx api_ctx;
typedef struct api_thread api_thread;

/* o's strings are borrowed and must outlive the context. */
api_ctx *api_ctx_new(const api_opts *o);
void api_ctx_free(api_ctx *a);

api_thread *api_thread_new(api_ctx *a);
void api_thread_free(api_thread *t);

/* Serve one request. Never fails: every problem becomes an HTTP error response (or, once a
 * stream has started, an error event). */
void api_handle(api_thread *t, const api_io *io);

#endif
