/*
 * fcgi_client: FastCGI records from the web server's side (see fcgi_client.h). The record
 * header is
 *
 *   0 version (1)  1 type  2-3 request id (BE)  4-5 content length (BE)  6 padding  7 reserved
 *
 * The parser is a small state machine over (header, content, padding) so that a record may
 * arrive split across any number of reads.
 */
#include "fcgi_client.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"

void fcgi_put_record(strbuf *out, uint8_t type, uint16_t id, const void *content, size_t len)
{
	if (len > FCGI_MAX_CONTENT) {
		log_msg(LOG_LEVEL_ERR, "fcgi", "fcgi_put_record: %zu bytes of content", len);
		abort();
	}
	uint8_t pad = (uint8_t)((8 - len % 8) % 8);
	uint8_t h[FCGI_HEADER_LEN] = { FCGI_VERSION_1, type, (uint8_t)(id >> 8), (uint8_t)id,
				       (uint8_t)(len >> 8), (uint8_t)len, pad, 0 };
	static const uint8_t zeros[8];
	strbuf_add(out, h, sizeof(h));
	if (len)
		strbuf_add(out, content, len);
	strbuf_add(out, zeros, pad);
}

static void put_len(strbuf *out, size_t n)
{
	if (n < 128) {
		strbuf_addc(out, (char)n);
	} else {
		uint8_t b[4] = { (uint8_t)(0x80 | (n >> 24)), (uint8_t)(n >> 16), (uint8_t)(n >> 8),
				 (uint8_t)n };
		strbuf_add(out, b, 4);
	}
}

void fcgi_put_pair(strbuf *out, const char *name, const char *value)
{
	size_t nl = strlen(name), vl = strlen(value);
	put_len(out, nl);
	put_len(out, vl);
	strbuf_add(out, name, nl);
	strbuf_add(out, value, vl);
}

/* Append data as records of type, each at most FCGI_MAX_CONTENT bytes, then an empty one. */
static void put_stream(strbuf *out, uint8_t type, uint16_t id, const uint8_t *p, size_t n)
{
	while (n) {
		size_t k = n < FCGI_MAX_CONTENT ? n : FCGI_MAX_CONTENT;
		fcgi_put_record(out, type, id, p, k);
		p += k;
		n -= k;
	}
	fcgi_put_record(out, type, id, NULL, 0);
}

void fcgi_put_request(strbuf *out, uint16_t id, const fcgi_param *params, size_t n_params,
		      const void *body, size_t body_len)
{
	uint8_t begin[8] = { 0, FCGI_RESPONDER, 0 /* flags: no keep-conn */, 0, 0, 0, 0, 0 };
	fcgi_put_record(out, FCGI_BEGIN_REQUEST, id, begin, sizeof(begin));
	strbuf pairs = { 0 };
	for (size_t i = 0; i < n_params; i++)
		fcgi_put_pair(&pairs, params[i].name, params[i].value);
	put_stream(out, FCGI_PARAMS, id, (const uint8_t *)pairs.s, pairs.len);
	strbuf_deinit(&pairs);
	put_stream(out, FCGI_STDIN, id, body, body_len);
}

void fcgi_parser_init(fcgi_parser *p, uint16_t id)
{
	memset(p, 0, sizeof(*p));
	p->id = id;
}

int fcgi_parser_feed(fcgi_parser *p, const uint8_t *buf, size_t n, fcgi_stdout_fn out, void *ctx,
		     qerr *e)
{
	while (n && !p->done) {
		if (p->hdr_have < FCGI_HEADER_LEN) {
			size_t k = FCGI_HEADER_LEN - p->hdr_have;
			if (k > n)
				k = n;
			memcpy(p->hdr + p->hdr_have, buf, k);
			p->hdr_have += k;
			buf += k;
			n -= k;
			if (p->hdr_have < FCGI_HEADER_LEN)
				break;
			uint16_t id = (uint16_t)(p->hdr[2] << 8 | p->hdr[3]);
			p->type = p->hdr[1];
			p->content_left = (size_t)(p->hdr[4] << 8 | p->hdr[5]);
			p->padding_left = p->hdr[6];
			if (p->hdr[0] != FCGI_VERSION_1)
				return qerr_set(e, QERR_FORMAT, "fastcgi: record version %u",
						p->hdr[0]);
			if (p->type < FCGI_END_REQUEST || p->type > FCGI_STDERR ||
			    p->type == FCGI_PARAMS || p->type == FCGI_STDIN)
				return qerr_set(e, QERR_FORMAT, "fastcgi: unexpected record type %u",
						p->type);
			if (id != p->id)
				return qerr_set(e, QERR_FORMAT, "fastcgi: record for request %u, not %u",
						id, p->id);
			if (p->type == FCGI_END_REQUEST && p->content_left != 8)
				return qerr_set(e, QERR_FORMAT, "fastcgi: END_REQUEST of %zu bytes",
						p->content_left);
			p->end_have = 0;
			continue;
		}
		if (p->content_left) {
			size_t k = p->content_left < n ? p->content_left : n;
			if (p->type == FCGI_STDOUT && out)
				out(ctx, buf, k);
			else if (p->type == FCGI_END_REQUEST) {
				memcpy(p->end + p->end_have, buf, k);
				p->end_have += k;
			}
			p->content_left -= k;
			buf += k;
			n -= k;
		} else if (p->padding_left) {
			size_t k = p->padding_left < n ? p->padding_left : n;
			p->padding_left -= k;
			buf += k;
			n -= k;
		}
		if (!p->content_left && !p->padding_left) {
			if (p->type == FCGI_END_REQUEST) {
				p->app_status = (uint32_t)p->end[0] << 24 | (uint32_t)p->end[1] << 16 |
						(uint32_t)p->end[2] << 8 | p->end[3];
				p->protocol_status = p->end[4];
				p->done = 1;
			}
			p->hdr_have = 0;
		}
	}
	/* a record with no content and no padding completes with its header */
	if (!p->done && p->hdr_have == FCGI_HEADER_LEN && !p->content_left && !p->padding_left) {
		if (p->type == FCGI_END_REQUEST)
			p->done = 1;
		p->hdr_have = 0;
	}
	return p->done;
}

int fcgi_dial(const char *target, qerr *e)
{
	const char *colon = strrchr(target, ':');
	if (strchr(target, '/') || !colon) {
		struct sockaddr_un a = { .sun_family = AF_UNIX };
		if (strlen(target) >= sizeof(a.sun_path))
			return qerr_set(e, QERR_IO, "fastcgi at %s: socket path too long", target);
		memcpy(a.sun_path, target, strlen(target) + 1);
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a))) {
			int err = errno;
			if (fd >= 0)
				close(fd);
			return qerr_set(e, QERR_IO, "fastcgi at %s: %s", target, strerror(err));
		}
		return fd;
	}
	char host[256];
	size_t hl = (size_t)(colon - target);
	if (hl == 0 || hl >= sizeof(host))
		return qerr_set(e, QERR_IO, "fastcgi at %s: not HOST:PORT", target);
	memcpy(host, target, hl);
	host[hl] = 0;
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *ai = NULL;
	int rc = getaddrinfo(host, colon + 1, &hints, &ai);
	if (rc)
		return qerr_set(e, QERR_IO, "fastcgi at %s: %s", target, gai_strerror(rc));
	int fd = -1, err = 0;
	for (struct addrinfo *a = ai; a; a = a->ai_next) {
		fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
		if (fd >= 0 && !connect(fd, a->ai_addr, a->ai_addrlen))
			break;
		err = errno;
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	freeaddrinfo(ai);
	if (fd < 0)
		return qerr_set(e, QERR_IO, "fastcgi at %s: %s", target, strerror(err));
	return fd;
}

int fcgi_request(const char *target, const fcgi_param *params, size_t n_params, const void *body,
		 size_t body_len, fcgi_stdout_fn out, void *ctx, qerr *e)
{
	int fd = fcgi_dial(target, e);
	if (fd < 0)
		return fd;
	strbuf req = { 0 };
	fcgi_put_request(&req, 1, params, n_params, body, body_len);
	int rc = 0;
	for (size_t off = 0; off < req.len;) {
		ssize_t w = send(fd, req.s + off, req.len - off, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			rc = qerr_set(e, QERR_IO, "fastcgi at %s: send: %s", target, strerror(errno));
			break;
		}
		off += (size_t)w;
	}
	strbuf_deinit(&req);
	fcgi_parser p;
	fcgi_parser_init(&p, 1);
	uint8_t buf[16384];
	while (!rc) {
		ssize_t r = recv(fd, buf, sizeof(buf), 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			rc = qerr_set(e, QERR_IO, "fastcgi at %s: connection closed before END_REQUEST",
				      target);
			break;
		}
		rc = fcgi_parser_feed(&p, buf, (size_t)r, out, ctx, e);
		if (rc == 1) {
			rc = 0;
			break;
		}
	}
	close(fd);
	return rc;
}
