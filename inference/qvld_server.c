/*
 * qvld_server: connections, frames and the engine thread (see qvld_server.h for the threads
 * and the shutdown sequence).
 *
 * Per connection:
 *
 *   in   [ header (24) | payload … ]  read until the frame is whole, then dispatched
 *   out  [ already sent | queued frames ]   out_off marks what was sent; written on POLLOUT
 *   reqs open requests: wire id ─► engine id, choices finished so far
 *
 * The mutex mu guards every connection's out, reqs, refs and flags. The engine thread only
 * appends to out and updates reqs (emit); only the I/O thread reads sockets, closes them and
 * frees connections (when closed and no request of theirs is left in the engine).
 */
#define _GNU_SOURCE 1  /* accept4 */
#include "qvld_server.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "img.h"
#include "img_preprocess.h"
#include "log.h"
#include "sd_notify.h"
#include "strbuf.h"
#include "wire.h"

#define READ_CHUNK 65536
/* The largest frame whose whole size is reserved when its header arrives (conn_read). */
#define READ_RESERVE_MAX ((size_t)32 << 20)
/* Queued output a connection may hold: a responder that stops reading (stuck, or a bug) must
 * not grow the daemon without bound; past this its connection is closed and its requests
 * cancelled. Generous: a step writes a few dozen bytes per sequence. */
#define MAX_QUEUED_OUTPUT ((size_t)64 << 20)

typedef struct conn conn;

typedef struct qreq {
	conn *c;                       /* borrowed */
	uint64_t wire_id, eng_id;
	uint32_t n, n_done;
	bool errored;
	struct qreq *next;
} qreq;

struct conn {
	int fd;                        /* -1 once closed */
	uint8_t *in;                   /* owned */
	size_t in_len, in_cap;
	strbuf out;                    /* owned (mu) */
	size_t out_off;                /* (mu) */
	bool closing;                  /* (mu) protocol error: write what is queued, then close */
	bool overflow;                 /* (mu) the peer does not read: close at once */
	int refs;                      /* (mu) requests still in the engine */
	qreq *reqs;                    /* (mu) owned list */
	uint64_t serial;
	struct conn *next;
};

struct qvld_server {
	qvld_server_opts o;
	char *socket_path;             /* owned */
	int lfd, efd, sfd;             /* listening socket, eventfd, signal pipe (read end) */
	pthread_mutex_t mu;
	conn *conns;                   /* (mu) owned list */
	uint64_t next_eng_id, next_serial;
	int n_conns;

	pthread_t engine_thread;
	atomic_bool stop_engine;
	atomic_llong heartbeat_ms;     /* last engine loop turn, CLOCK_MONOTONIC ms */
	int engine_rc;
	qerr engine_err;
	bool draining;
};

/* The write end of the signal pipe. A signal may land on any thread (OpenBLAS starts its own
 * before main), so a process-wide handler turns it into a byte on this pipe for the I/O loop:
 * the one piece of file-level state, as a signal handler cannot be given a context. */
static volatile int signal_pipe_w = -1;

static void on_signal(int signo)
{
	int saved = errno;
	unsigned char b = (unsigned char)signo;
	if (signal_pipe_w >= 0 && write(signal_pipe_w, &b, 1) < 0) {
		/* the pipe is full: a signal is pending already */
	}
	errno = saved;
}

static long long mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static long long mono_ms(void)
{
	return mono_us() / 1000;
}

static void wake_io(qvld_server *s)
{
	uint64_t one = 1;
	ssize_t w = write(s->efd, &one, sizeof(one));
	(void)w;                       /* a full counter still wakes the poll */
}

/* ---- the engine thread and its outputs ---- */

static uint32_t finish_reason(int r)
{
	return r == ENGINE_FINISH_STOP ? WIRE_FINISH_STOP
	     : r == ENGINE_FINISH_LENGTH ? WIRE_FINISH_LENGTH : WIRE_FINISH_ABORT;
}

static void conn_drop_req(conn *c, qreq *q)
{
	for (qreq **pp = &c->reqs; *pp; pp = &(*pp)->next)
		if (*pp == q) {
			*pp = q->next;
			break;
		}
	free(q);
	c->refs--;
}

/* engine_emit_fn: frames for one sequence's step. */
static void emit(void *ctx, const engine_output *o)
{
	qvld_server *s = ctx;
	qreq *q = o->owner;
	pthread_mutex_lock(&s->mu);
	conn *c = q->c;
	bool was_empty = c->out.len == c->out_off, live = c->fd >= 0 && !c->closing;
	if (live && o->error) {
		if (!q->errored)
			wire_error_put(&c->out, q->wire_id, WIRE_E_INTERNAL, o->message ? o->message
										: "backend failure");
		q->errored = true;
	} else if (live && !q->errored) {
		if (o->n > 0) {
			wire_tokens t = { .index = o->index, .n = (uint32_t)o->n, .ids = o->ids,
					  .has_logprobs = o->lp != NULL, .lp = o->lp };
			wire_tokens_put(&c->out, q->wire_id, &t);
		}
		if (o->finished) {
			wire_finish f = { .index = o->index, .reason = finish_reason(o->reason),
					  .stop_id = o->stop_id,
					  .prompt_tokens = (uint32_t)o->prompt_tokens,
					  .completion_tokens = (uint32_t)o->completion_tokens,
					  .cached_tokens = (uint32_t)o->cached_tokens,
					  .queue_s = o->queue_s, .ttft_s = o->ttft_s, .e2e_s = o->e2e_s };
			wire_finish_put(&c->out, q->wire_id, &f);
		}
	}
	if (o->finished && ++q->n_done == q->n)
		conn_drop_req(c, q);
	if (live && c->out.len - c->out_off > MAX_QUEUED_OUTPUT) {
		c->overflow = true;            /* the I/O thread closes it: it owns the fd */
		c->closing = true;
	}
	bool wake = (live && was_empty && c->out.len > c->out_off) || c->overflow;
	pthread_mutex_unlock(&s->mu);
	if (wake)
		wake_io(s);
}

static void *engine_main(void *arg)
{
	qvld_server *s = arg;
	while (!atomic_load(&s->stop_engine)) {
		atomic_store(&s->heartbeat_ms, mono_ms());
		engine_wait(s->o.en, 100);
		qerr e = { 0 };
		int rc = engine_step(s->o.en, emit, s, &e);
		if (rc) {
			/* a failed backend is not trusted again: stop, and let systemd restart us */
			log_msg(LOG_LEVEL_CRIT, "qvld", "engine: %s", e.msg);
			s->engine_rc = rc;
			s->engine_err = e;
			atomic_store(&s->stop_engine, true);
			wake_io(s);
		}
	}
	return NULL;
}

/* ---- connections ---- */

static void conn_queue_error(conn *c, uint64_t id, uint32_t code, const char *msg)
{
	wire_error_put(&c->out, id, code, msg);
}

/* Cancel every open request of c (its peer is gone or broke the protocol). mu held. */
static void conn_cancel_all(qvld_server *s, conn *c)
{
	for (qreq *q = c->reqs; q; q = q->next)
		engine_cancel(s->o.en, q->eng_id);
}

/* Close the socket (mu held); the struct is freed by reap once no request refers to it. */
static void conn_close(qvld_server *s, conn *c, const char *why)
{
	if (c->fd < 0)
		return;
	log_msg(LOG_LEVEL_DEBUG, "qvld", "connection %llu closed: %s", (unsigned long long)c->serial, why);
	close(c->fd);
	c->fd = -1;
	conn_cancel_all(s, c);
}

/* A protocol error: queue ERROR id 0 and close after it is written. mu held. */
static void conn_protocol_error(qvld_server *s, conn *c, const char *msg)
{
	log_msg(LOG_LEVEL_WARN, "qvld", "connection %llu: protocol error: %s",
		(unsigned long long)c->serial, msg);
	conn_queue_error(c, 0, WIRE_E_PROTOCOL, msg);
	c->closing = true;
	conn_cancel_all(s, c);
}

static void reap(qvld_server *s)
{
	for (conn **pp = &s->conns; *pp;) {
		conn *c = *pp;
		if (c->fd < 0 && c->refs == 0) {
			*pp = c->next;
			free(c->in);
			strbuf_deinit(&c->out);
			free(c);
			s->n_conns--;
		} else {
			pp = &c->next;
		}
	}
}

/* ---- frames ---- */

static qreq *find_req(conn *c, uint64_t id)
{
	for (qreq *q = c->reqs; q; q = q->next)
		if (q->wire_id == id)
			return q;
	return NULL;
}

static void free_images(sched_image *im, int n)
{
	for (int i = 0; i < n; i++)
		free(im[i].pixel_values);
	free(im);
}

/* SUBMIT's images: resized RGB → patches, checking that the pixels hash to the hash sent (it
 * keys the encoder and prefix caches) and that the grid is theirs. */
static int submit_images(qvld_server *s, const wire_submit *w, sched_image **out, qerr *e)
{
	*out = NULL;
	if ((int)w->n_images > s->o.limit_images)
		return qerr_set(e, QERR_INVALID, "request: %u images, at most %d per prompt "
				"(--limit-mm-per-prompt)", w->n_images, s->o.limit_images);
	if (!w->n_images)
		return 0;
	sched_image *im = xcalloc(w->n_images, sizeof(*im));
	for (uint32_t i = 0; i < w->n_images; i++) {
		const wire_image *wi = &w->images[i];
		img_rgb rs = { .w = wi->width, .h = wi->height, .px = (uint8_t *)wi->rgb };
		img_patches p = { 0 };
		int rc = img_preprocess_patches(&rs, s->o.pc, &p, e);
		if (!rc && (p.grid_t != wi->grid_t || p.grid_h != wi->grid_h || p.grid_w != wi->grid_w))
			rc = qerr_set(e, QERR_INVALID, "images[%u]: grid (%d, %d, %d) sent, the pixels "
				      "make (%d, %d, %d)", i, wi->grid_t, wi->grid_h, wi->grid_w,
				      p.grid_t, p.grid_h, p.grid_w);
		if (!rc && memcmp(p.hash, wi->hash, 32))
			rc = qerr_set(e, QERR_INVALID, "images[%u]: the hash sent is not the pixels' hash", i);
		if (rc) {
			img_patches_deinit(&p);
			free_images(im, (int)i);
			return qerr_prefix(e, "request");
		}
		im[i] = (sched_image){ .start = wi->start, .n_tokens = p.n_tokens, .grid_t = p.grid_t,
				       .grid_h = p.grid_h, .grid_w = p.grid_w,
				       .pixel_values = p.pixel_values };
		memcpy(im[i].hash, p.hash, 32);
		p.pixel_values = NULL;
		img_patches_deinit(&p);
	}
	*out = im;
	return 0;
}

static void on_submit(qvld_server *s, conn *c, uint64_t id, const uint8_t *p, size_t len)
{
	qerr e = { 0 };
	wire_submit w;
	memset(&w, 0, sizeof(w));
	int rc = wire_submit_decode(p, len, s->o.mc->text.vocab_size, &w, &e);
	pthread_mutex_lock(&s->mu);
	if (rc == -QERR_FORMAT) {
		conn_protocol_error(s, c, e.msg);
		pthread_mutex_unlock(&s->mu);
		wire_submit_deinit(&w);
		return;
	}
	if (find_req(c, id)) {
		char msg[128];
		snprintf(msg, sizeof(msg), "SUBMIT: request id %llu is already open on this connection",
			 (unsigned long long)id);
		conn_protocol_error(s, c, msg);
		pthread_mutex_unlock(&s->mu);
		wire_submit_deinit(&w);
		return;
	}
	if (rc || s->draining) {
		conn_queue_error(c, id, rc ? WIRE_E_BAD_REQUEST : WIRE_E_SHUTTING_DOWN,
				 rc ? e.msg : "the daemon is shutting down");
		pthread_mutex_unlock(&s->mu);
		wire_submit_deinit(&w);
		return;
	}
	qreq *q = xcalloc(1, sizeof(*q));
	*q = (qreq){ .c = c, .wire_id = id, .eng_id = ++s->next_eng_id, .n = w.n, .next = c->reqs };
	c->reqs = q;
	c->refs++;
	pthread_mutex_unlock(&s->mu);

	engine_request r = { .id = q->eng_id, .owner = q, .n_ids = w.n_ids, .sp = w.sp,
			     .max_tokens = w.max_tokens, .n = w.n, .arrival = w.arrival };
	sched_image *im = NULL;
	long long t0 = mono_us();
	rc = submit_images(s, &w, &im, &e);
	if (w.n_images && log_get_level() >= LOG_LEVEL_DEBUG) {
		struct timespec now;
		clock_gettime(CLOCK_REALTIME, &now);
		log_msg(LOG_LEVEL_DEBUG, "qvld", "SUBMIT %llu: %u images to patches in %.2f ms, %.2f ms "
			"after its arrival at the responder", (unsigned long long)q->eng_id, w.n_images,
			(double)(mono_us() - t0) * 1e-3,
			((double)now.tv_sec + (double)now.tv_nsec * 1e-9 - w.arrival) * 1e3);
	}
	if (!rc) {
		r.ids = w.ids_buf;
		w.ids_buf = NULL;
		r.images = im;
		r.n_images = (int)w.n_images;
		rc = engine_submit(s->o.en, &r, &e);
		/* on failure the arrays are still ours */
		if (rc) {
			free(r.ids);
			free_images(r.images, r.n_images);
		}
	}
	wire_submit_deinit(&w);
	if (!rc)
		return;
	pthread_mutex_lock(&s->mu);
	conn_drop_req(c, q);
	if (rc == ENGINE_BUSY)
		conn_queue_error(c, id, WIRE_E_BUSY, "the waiting queue is full (--max-waiting-requests)");
	else
		conn_queue_error(c, id, rc == -QERR_LIMIT ? WIRE_E_TOO_LONG : WIRE_E_BAD_REQUEST, e.msg);
	pthread_mutex_unlock(&s->mu);
}

static void on_frame(qvld_server *s, conn *c, const wire_header *h, const uint8_t *p)
{
	switch (h->type) {
	case WIRE_T_HELLO:
		pthread_mutex_lock(&s->mu);
		wire_put_frame(&c->out, WIRE_T_MODEL_INFO, 0, s->o.model_info, strlen(s->o.model_info));
		pthread_mutex_unlock(&s->mu);
		return;
	case WIRE_T_SUBMIT:
		on_submit(s, c, h->id, p, h->length);
		return;
	case WIRE_T_CANCEL: {
		pthread_mutex_lock(&s->mu);
		qreq *q = h->length ? NULL : find_req(c, h->id);
		if (h->length)
			conn_protocol_error(s, c, "CANCEL: the payload must be empty");
		else if (q)
			engine_cancel(s->o.en, q->eng_id);
		pthread_mutex_unlock(&s->mu);
		return;
	}
	case WIRE_T_STATS: {
		json_object *j = engine_stats_json(s->o.en);
		pthread_mutex_lock(&s->mu);
		json_object_object_add(j, "connections", json_object_new_int(s->n_conns));
		json_object_object_add(j, "draining", json_object_new_boolean(s->draining));
		size_t n = 0;
		const char *txt = json_object_to_json_string_length(j, JSON_C_TO_STRING_PLAIN, &n);
		wire_put_frame(&c->out, WIRE_T_STATS_REPLY, h->id, txt, n);
		pthread_mutex_unlock(&s->mu);
		json_object_put(j);
		return;
	}
	default: {
		char msg[128];
		snprintf(msg, sizeof(msg), "a %s frame is not something a responder sends",
			 wire_type_name(h->type));
		pthread_mutex_lock(&s->mu);
		conn_protocol_error(s, c, msg);
		pthread_mutex_unlock(&s->mu);
		return;
	}
	}
}

/* Read what the socket has and dispatch every whole frame. */
static void conn_read(qvld_server *s, conn *c)
{
	for (;;) {
		if (c->in_cap - c->in_len < READ_CHUNK) {
			c->in_cap = c->in_len + READ_CHUNK * 2;
			c->in = xrealloc(c->in, c->in_cap);
		}
		ssize_t r = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (r <= 0) {
			pthread_mutex_lock(&s->mu);
			conn_close(s, c, r == 0 ? "peer closed" : strerror(errno));
			pthread_mutex_unlock(&s->mu);
			return;
		}
		c->in_len += (size_t)r;
		/* whole frames */
		size_t off = 0;
		while (c->in_len - off >= WIRE_HEADER_SIZE) {
			wire_header h;
			qerr e = { 0 };
			if (wire_header_parse(c->in + off, &h, &e)) {
				pthread_mutex_lock(&s->mu);
				conn_protocol_error(s, c, e.msg);
				pthread_mutex_unlock(&s->mu);
				return;
			}
			if (c->in_len - off - WIRE_HEADER_SIZE < h.length)
				break;
			on_frame(s, c, &h, c->in + off + WIRE_HEADER_SIZE);
			off += WIRE_HEADER_SIZE + h.length;
			pthread_mutex_lock(&s->mu);
			bool stop = c->closing;
			pthread_mutex_unlock(&s->mu);
			if (stop)
				return;
		}
		if (off) {
			memmove(c->in, c->in + off, c->in_len - off);
			c->in_len -= off;
		}
		/* A frame begun: room for all of it at once (a SUBMIT with a 448x448 image is
		 * 600 KB), so that each recv can take all the socket holds rather than a chunk, and
		 * the buffer is not regrown on the way. Up to READ_RESERVE_MAX only: a header alone
		 * must not reserve WIRE_MAX_PAYLOAD; a larger frame grows as it arrives. */
		size_t want = 0;
		if (c->in_len >= WIRE_HEADER_SIZE) {
			wire_header h;
			if (!wire_header_parse(c->in, &h, NULL) && h.length <= READ_RESERVE_MAX)
				want = WIRE_HEADER_SIZE + (size_t)h.length + READ_CHUNK;
		}
		if (want > c->in_cap) {
			c->in_cap = want;
			c->in = xrealloc(c->in, c->in_cap);
		} else if (c->in_cap > 4 * READ_CHUNK && c->in_len < READ_CHUNK && want <= 2 * READ_CHUNK) {
			c->in_cap = 2 * READ_CHUNK;
			c->in = xrealloc(c->in, c->in_cap);
		}
	}
}

/* Write queued frames (mu held). */
static void conn_flush(qvld_server *s, conn *c)
{
	while (c->fd >= 0 && c->out_off < c->out.len) {
		ssize_t w = send(c->fd, c->out.s + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (w < 0) {
			conn_close(s, c, strerror(errno));
			return;
		}
		c->out_off += (size_t)w;
	}
	if (c->out_off == c->out.len) {
		strbuf_truncate(&c->out, 0);
		c->out_off = 0;
		if (c->closing)
			conn_close(s, c, "protocol error reported");
	}
}

static void on_accept(qvld_server *s)
{
	for (;;) {
		int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				log_msg(LOG_LEVEL_WARN, "qvld", "accept: %s", strerror(errno));
			if (errno == EINTR)
				continue;
			return;
		}
		conn *c = xcalloc(1, sizeof(*c));
		c->fd = fd;
		pthread_mutex_lock(&s->mu);
		c->serial = ++s->next_serial;
		c->next = s->conns;
		s->conns = c;
		s->n_conns++;
		pthread_mutex_unlock(&s->mu);
	}
}

/* ---- set-up ---- */

static int bind_socket(qvld_server *s, qerr *e)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	if (strlen(s->socket_path) >= sizeof(a.sun_path))
		return qerr_set(e, QERR_INVALID, "--socket %s: the path is longer than %zu bytes",
				s->socket_path, sizeof(a.sun_path) - 1);
	strcpy(a.sun_path, s->socket_path);
	struct stat st;
	if (lstat(s->socket_path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return qerr_set(e, QERR_IO, "--socket %s exists and is not a socket", s->socket_path);
		int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (probe >= 0 && connect(probe, (struct sockaddr *)&a, sizeof(a)) == 0) {
			close(probe);
			return qerr_set(e, QERR_IO, "--socket %s: another daemon is listening there",
					s->socket_path);
		}
		if (probe >= 0)
			close(probe);
		unlink(s->socket_path);
	}
	s->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->lfd < 0)
		return qerr_set(e, QERR_IO, "socket: %s", strerror(errno));
	mode_t old = umask(0177);
	int rc = bind(s->lfd, (struct sockaddr *)&a, sizeof(a));
	umask(old);
	if (rc)
		return qerr_set(e, QERR_IO, "--socket %s: bind: %s", s->socket_path, strerror(errno));
	if (s->o.socket_group) {
		struct group *g = getgrnam(s->o.socket_group);
		if (!g)
			return qerr_set(e, QERR_INVALID, "--socket-group %s: no such group", s->o.socket_group);
		if (chown(s->socket_path, (uid_t)-1, g->gr_gid))
			return qerr_set(e, QERR_IO, "--socket-group %s: chown %s: %s", s->o.socket_group,
					s->socket_path, strerror(errno));
	}
	if (chmod(s->socket_path, (mode_t)s->o.socket_mode))
		return qerr_set(e, QERR_IO, "chmod %s: %s", s->socket_path, strerror(errno));
	if (listen(s->lfd, 128))
		return qerr_set(e, QERR_IO, "listen %s: %s", s->socket_path, strerror(errno));
	return 0;
}

int qvld_server_new(const qvld_server_opts *o, qvld_server **out, qerr *e)
{
	*out = NULL;
	qvld_server *s = xcalloc(1, sizeof(*s));
	s->o = *o;
	s->socket_path = xstrdup(o->socket_path);
	s->lfd = s->efd = s->sfd = -1;
	pthread_mutex_init(&s->mu, NULL);
	signal(SIGPIPE, SIG_IGN);
	int rc = bind_socket(s, e);
	int sp[2] = { -1, -1 };
	if (!rc) {
		s->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (s->efd < 0 || pipe2(sp, O_NONBLOCK | O_CLOEXEC))
			rc = qerr_set(e, QERR_IO, "eventfd/pipe: %s", strerror(errno));
	}
	if (!rc) {
		s->sfd = sp[0];
		signal_pipe_w = sp[1];
		struct sigaction sa = { .sa_handler = on_signal, .sa_flags = SA_RESTART };
		sigemptyset(&sa.sa_mask);
		sigaction(SIGTERM, &sa, NULL);
		sigaction(SIGINT, &sa, NULL);
	}
	if (rc) {
		qvld_server_free(s);
		return rc;
	}
	*out = s;
	return 0;
}

void qvld_server_free(qvld_server *s)
{
	if (!s)
		return;
	if (s->lfd >= 0) {
		close(s->lfd);
		unlink(s->socket_path);
	}
	if (s->efd >= 0)
		close(s->efd);
	if (s->sfd >= 0) {
		signal(SIGTERM, SIG_DFL);
		signal(SIGINT, SIG_DFL);
		close(s->sfd);
		close(signal_pipe_w);
		signal_pipe_w = -1;
	}
	for (conn *c = s->conns, *nx; c; c = nx) {
		nx = c->next;
		if (c->fd >= 0)
			close(c->fd);
		for (qreq *q = c->reqs, *qn; q; q = qn) {
			qn = q->next;
			free(q);
		}
		free(c->in);
		strbuf_deinit(&c->out);
		free(c);
	}
	pthread_mutex_destroy(&s->mu);
	free(s->socket_path);
	free(s);
}

/* ---- the loop ---- */

static void start_draining(qvld_server *s)
{
	s->draining = true;
	if (s->lfd >= 0) {
		close(s->lfd);
		s->lfd = -1;
		unlink(s->socket_path);
	}
	int live = engine_num_live(s->o.en);
	log_msg(LOG_LEVEL_NOTICE, "qvld", "shutting down: %d request(s) in flight, %.0f s to finish",
		live, s->o.shutdown_timeout);
	sd_notify_sendf(NULL, "STOPPING=1\nSTATUS=draining %d request(s)", live);
}

static bool all_flushed(qvld_server *s)
{
	bool done = true;
	pthread_mutex_lock(&s->mu);
	for (conn *c = s->conns; c && done; c = c->next)
		done = c->fd < 0 || c->out_off == c->out.len;
	pthread_mutex_unlock(&s->mu);
	return done;
}

int qvld_server_run(qvld_server *s, qerr *e)
{
	atomic_store(&s->heartbeat_ms, mono_ms());
	if (pthread_create(&s->engine_thread, NULL, engine_main, s))
		return qerr_set(e, QERR_IO, "cannot start the engine thread");
	uint64_t wd_usec = sd_notify_watchdog_usec();
	long long wd_ms = (long long)(wd_usec / 1000), last_wd = 0, last_status = 0;
	long long deadline = 0, flush_deadline = 0;
	bool cancelled = false;
	struct pollfd *pf = NULL;
	conn **pc = NULL;
	size_t cap = 0;
	int rc = 0;
	for (;;) {
		long long now = mono_ms();
		if (atomic_load(&s->stop_engine) && s->engine_rc) {
			rc = s->engine_rc;
			if (e)
				*e = s->engine_err;
			break;
		}
		if (s->draining) {
			if (!cancelled && now >= deadline) {
				log_msg(LOG_LEVEL_WARN, "qvld", "shutdown timeout: cancelling %d request(s)",
					engine_num_live(s->o.en));
				engine_cancel_all(s->o.en);
				cancelled = true;
			}
			if (engine_num_live(s->o.en) == 0) {
				pthread_mutex_lock(&s->mu);
				bool open_reqs = false;
				for (conn *c = s->conns; c; c = c->next)
					open_reqs |= c->refs > 0;
				pthread_mutex_unlock(&s->mu);
				/* every request has ended: write what is queued (2 s at most) */
				if (!open_reqs && !flush_deadline)
					flush_deadline = now + 2000;
				if (!open_reqs && (all_flushed(s) || now >= flush_deadline))
					break;
			}
		}
		if (wd_ms > 0 && now - last_wd >= wd_ms / 2) {
			/* only while the engine thread turns: a stuck step must trip the watchdog */
			if (now - atomic_load(&s->heartbeat_ms) < wd_ms)
				sd_notify_send("WATCHDOG=1", NULL);
			last_wd = now;
		}
		if (!s->draining && now - last_status >= 5000) {
			json_object *j = engine_stats_json(s->o.en);
			json_object *r = NULL, *w = NULL;
			json_object_object_get_ex(j, "num_requests_running", &r);
			json_object_object_get_ex(j, "num_requests_waiting", &w);
			sd_notify_sendf(NULL, "STATUS=serving: %d running, %d waiting",
					json_object_get_int(r), json_object_get_int(w));
			json_object_put(j);
			last_status = now;
		}

		pthread_mutex_lock(&s->mu);
		reap(s);
		size_t need = (size_t)s->n_conns + 3;
		if (need > cap) {
			cap = need * 2;
			pf = xrealloc(pf, cap * sizeof(*pf));
			pc = xrealloc(pc, cap * sizeof(*pc));
		}
		size_t n = 0;
		pf[n++] = (struct pollfd){ .fd = s->efd, .events = POLLIN };
		pf[n++] = (struct pollfd){ .fd = s->sfd, .events = POLLIN };
		pf[n++] = (struct pollfd){ .fd = s->lfd, .events = POLLIN };   /* -1 when draining */
		for (conn *c = s->conns; c; c = c->next) {
			if (c->fd >= 0 && c->overflow) {
				log_msg(LOG_LEVEL_WARN, "qvld", "connection %llu: over %zu bytes of output "
					"unread: closing it", (unsigned long long)c->serial, MAX_QUEUED_OUTPUT);
				conn_close(s, c, "output not read");
			}
			if (c->fd < 0)
				continue;
			conn_flush(s, c);
			if (c->fd < 0)
				continue;
			short ev = c->closing ? 0 : POLLIN;
			if (c->out_off < c->out.len)
				ev |= POLLOUT;
			pc[n] = c;
			pf[n++] = (struct pollfd){ .fd = c->fd, .events = ev };
		}
		pthread_mutex_unlock(&s->mu);

		int timeout = 1000;
		if (wd_ms > 0 && wd_ms / 4 < timeout)
			timeout = (int)(wd_ms / 4);
		if (s->draining)
			timeout = 50;
		int k = poll(pf, n, timeout);
		if (k < 0 && errno != EINTR) {
			rc = qerr_set(e, QERR_IO, "poll: %s", strerror(errno));
			break;
		}
		if (k <= 0)
			continue;
		if (pf[0].revents & POLLIN) {
			uint64_t v;
			ssize_t r = read(s->efd, &v, sizeof(v));
			(void)r;
		}
		if (pf[1].revents & POLLIN) {
			unsigned char si;
			while (read(s->sfd, &si, 1) == 1) {
				if (!s->draining) {
					start_draining(s);
					deadline = mono_ms() + (long long)(s->o.shutdown_timeout * 1000);
				} else if (!cancelled) {
					log_msg(LOG_LEVEL_WARN, "qvld", "second signal: cancelling everything");
					engine_cancel_all(s->o.en);
					cancelled = true;
				}
			}
		}
		if (s->lfd >= 0 && (pf[2].revents & POLLIN))
			on_accept(s);
		for (size_t i = 3; i < n; i++) {
			conn *c = pc[i];
			if (pf[i].revents & (POLLIN | POLLHUP | POLLERR))
				conn_read(s, c);
			if (c->fd >= 0 && (pf[i].revents & POLLOUT)) {
				pthread_mutex_lock(&s->mu);
				conn_flush(s, c);
				pthread_mutex_unlock(&s->mu);
			}
		}
	}
	atomic_store(&s->stop_engine, true);
	engine_wake(s->o.en);
	pthread_join(s->engine_thread, NULL);
	free(pf);
	free(pc);
	return rc;
}
