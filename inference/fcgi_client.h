/*
 * fcgi_client: a minimal FastCGI client (the web server's side of the protocol), enough to
 * drive qvl-fcgi directly without a web server in front: `qvl bench --fcgi` and tests.
 *
 * One request per connection, as a web server without keep-alive sends it:
 *
 *   BEGIN_REQUEST (role RESPONDER, flags 0: the application closes the connection)
 *   PARAMS …  PARAMS (empty)           name-value pairs, split over records of ≤ 65535 bytes
 *   STDIN  …  STDIN  (empty)           the body
 *   ◄─ STDOUT … (CGI headers, a blank line, then the body), STDERR …, END_REQUEST
 *
 * Every record is padded to a multiple of 8 bytes. The reply is parsed incrementally by
 * fcgi_parser: STDOUT content is handed to the caller piece by piece as it arrives (a
 * streaming response's SSE events can be timed when they reach the client), even when a
 * record is split across reads.
 *
 * Threads: the encoders and the parser work on caller storage; fcgi_request uses its own
 * connection, so any number of threads may run requests at once.
 */
#ifndef QVL_FCGI_CLIENT_H
#define QVL_FCGI_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "qerr.h"
#include "strbuf.h"

#define FCGI_VERSION_1 1
#define FCGI_HEADER_LEN 8
#define FCGI_MAX_CONTENT 65535

enum fcgi_record_type {
	FCGI_BEGIN_REQUEST = 1,
	FCGI_ABORT_REQUEST = 2,
	FCGI_END_REQUEST = 3,
	FCGI_PARAMS = 4,
	FCGI_STDIN = 5,
	FCGI_STDOUT = 6,
	FCGI_STDERR = 7,
};

#define FCGI_RESPONDER 1

typedef struct fcgi_param {
	const char *name;              /* borrowed */
	const char *value;             /* borrowed */
} fcgi_param;

/* Append one record (header, content, padding to a multiple of 8) to out. len ≤
 * FCGI_MAX_CONTENT (larger is the caller's bug: it aborts). */
void fcgi_put_record(strbuf *out, uint8_t type, uint16_t id, const void *content, size_t len);

/* Append one name-value pair in FastCGI's encoding (lengths < 128 in one byte, else four bytes
 * big-endian with the top bit set). */
void fcgi_put_pair(strbuf *out, const char *name, const char *value);

/* Append a whole request for id: BEGIN_REQUEST (responder, no keep-conn), the params over as
 * many PARAMS records as needed then an empty one, the body over STDIN records then an empty
 * one. */
void fcgi_put_request(strbuf *out, uint16_t id, const fcgi_param *params, size_t n_params,
		      const void *body, size_t body_len);

/* Called with each piece of STDOUT content as it is parsed (pieces may split anywhere). */
typedef void (*fcgi_stdout_fn)(void *ctx, const uint8_t *p, size_t n);

typedef struct fcgi_parser {
	uint16_t id;                   /* the request id expected */
	uint8_t hdr[FCGI_HEADER_LEN];
	size_t hdr_have;               /* header bytes read (< 8: reading a header) */
	uint8_t type;
	size_t content_left, padding_left;
	uint8_t end[8];                /* END_REQUEST body */
	size_t end_have;
	uint32_t app_status;           /* from END_REQUEST */
	uint8_t protocol_status;
	int done;
} fcgi_parser;

void fcgi_parser_init(fcgi_parser *p, uint16_t id);

/* Parse n more bytes of the reply. STDOUT content goes to out(ctx, …); STDERR content is
 * dropped. Returns 0 when more is expected, 1 once END_REQUEST was parsed (bytes after it are
 * ignored), or -QERR_FORMAT for a record of another version or request id, or an unknown
 * type. */
int fcgi_parser_feed(fcgi_parser *p, const uint8_t *buf, size_t n, fcgi_stdout_fn out, void *ctx,
		     qerr *e);

/* Connect to target: a Unix socket path (contains '/', or no ':'), else HOST:PORT over TCP.
 * Returns the descriptor, or -QERR_IO naming the target and errno. */
int fcgi_dial(const char *target, qerr *e);

/* Run one request (id 1) on a fresh connection to target and parse the reply until
 * END_REQUEST, handing STDOUT to out as it arrives. QERR_IO when the target cannot be
 * reached or the connection ends before END_REQUEST; QERR_FORMAT for a malformed reply. */
int fcgi_request(const char *target, const fcgi_param *params, size_t n_params, const void *body,
		 size_t body_len, fcgi_stdout_fn out, void *ctx, qerr *e);

#endif
