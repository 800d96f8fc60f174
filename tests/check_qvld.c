/*
 * check_qvld: the daemon, end to end, with a scripted client speaking the wire protocol.
 *
 * Each test starts its own qvld ($QVL_BUILDDIR/qvld) on the tiny checkpoint (made once by the
 * unchecked fixture), on a socket in a temporary directory, with --batch-invariant so that
 * greedy outputs cannot depend on how requests were batched. Checked: 64 concurrent greedy
 * requests give exactly the outputs of the same requests sent one at a time; a connection that
 * drops mid-generation has its blocks freed (STATS); every malformed frame gets ERROR and a
 * closed connection while the daemon goes on serving the others; SIGTERM with requests in
 * flight lets them finish and exits 0 (and cancels them when the grace period is over);
 * READY/STATUS/WATCHDOG/STOPPING reach a NOTIFY_SOCKET; images cross the wire and hit the
 * encoder cache; BUSY, CANCEL, bad sampling values and prompts that cannot fit get their
 * errors.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <json.h>

#include "alloc.h"
#include "img_preprocess.h"
#include "model_config.h"
#include "mkmodel.h"
#include "strbuf.h"
#include "testutil.h"
#include "wire.h"

static char *model_dir;

static void setup_model(void)
{
	model_dir = tu_mkdtemp("qvld-model");
	mkmodel_opts o = { .preset = "tiny", .out_dir = model_dir, .seed = 11 };
	qerr e = { 0 };
	ck_assert_msg(mkmodel_run(&o, &e) == 0, "%s", e.msg);
}

static void teardown_model(void)
{
	tu_rmdir(model_dir);
	free(model_dir);
}

/* ---- the daemon ---- */

typedef struct daemon {
	pid_t pid;
	char *dir;
	char sock[256];
} qvld_proc;

static const char *qvld_path(void)
{
	static char path[1024];
	const char *b = getenv("QVL_BUILDDIR");
	snprintf(path, sizeof(path), "%s/qvld", b && *b ? b : ".");
	return path;
}

static int try_connect(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a))) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Start qvld with extra flags (NULL-terminated) and wait until its socket answers. */
static void daemon_start(qvld_proc *d, const char *const *extra, const char *notify_socket)
{
	memset(d, 0, sizeof(*d));
	d->dir = tu_mkdtemp("qvld");
	snprintf(d->sock, sizeof(d->sock), "%s/qvld.sock", d->dir);
	const char *argv[64];
	int n = 0;
	argv[n++] = qvld_path();
	argv[n++] = "--model";
	argv[n++] = model_dir;
	argv[n++] = "--socket";
	argv[n++] = d->sock;
	argv[n++] = "--kv-cache-memory-bytes";
	argv[n++] = "67108864";
	argv[n++] = "--max-model-len";
	argv[n++] = "2048";
	argv[n++] = "--cpu-threads";
	argv[n++] = "1";
	argv[n++] = "--batch-invariant";
	argv[n++] = "--log-level";
	argv[n++] = "warn";
	for (int i = 0; extra && extra[i]; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	d->pid = fork();
	ck_assert_int_ge(d->pid, 0);
	if (d->pid == 0) {
		setenv("QVL_CONFIG", "", 1);
		unsetenv("WATCHDOG_PID");
		if (notify_socket) {
			setenv("NOTIFY_SOCKET", notify_socket, 1);
			setenv("WATCHDOG_USEC", "400000", 1);
		} else {
			unsetenv("NOTIFY_SOCKET");
			unsetenv("WATCHDOG_USEC");
		}
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	for (int i = 0; i < 6000; i++) {
		int fd = try_connect(d->sock);
		if (fd >= 0) {
			close(fd);
			return;
		}
		int st;
		ck_assert_msg(waitpid(d->pid, &st, WNOHANG) == 0, "qvld exited during start-up");
		usleep(10000);
	}
	ck_abort_msg("qvld did not start listening on %s", d->sock);
}

/* SIGTERM and wait; returns the exit status. */
static int daemon_stop(qvld_proc *d)
{
	int st = 0;
	if (d->pid > 0) {
		kill(d->pid, SIGTERM);
		for (int i = 0; i < 3000 && waitpid(d->pid, &st, WNOHANG) == 0; i++)
			usleep(10000);
		if (waitpid(d->pid, &st, WNOHANG) == 0) {
			kill(d->pid, SIGKILL);
			waitpid(d->pid, &st, 0);
			ck_abort_msg("qvld did not stop within 30 s of SIGTERM");
		}
		d->pid = 0;
	}
	tu_rmdir(d->dir);
	free(d->dir);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* ---- the client ---- */

typedef struct frame {
	wire_header h;
	uint8_t *p;                    /* owned: h.length bytes */
} frame;

static int client(qvld_proc *d)
{
	int fd = try_connect(d->sock);
	ck_assert_msg(fd >= 0, "connect %s: %s", d->sock, strerror(errno));
	return fd;
}

static void send_all(int fd, const void *p, size_t n)
{
	const uint8_t *b = p;
	while (n) {
		ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		ck_assert_msg(w > 0, "send: %s", strerror(errno));
		b += w;
		n -= (size_t)w;
	}
}

static void send_buf(int fd, strbuf *b)
{
	send_all(fd, b->s, b->len);
	strbuf_truncate(b, 0);
}

/* Read exactly n bytes; false on EOF or timeout (ms). */
static bool read_exact(int fd, void *p, size_t n, int timeout_ms)
{
	uint8_t *b = p;
	while (n) {
		struct pollfd pf = { .fd = fd, .events = POLLIN };
		if (poll(&pf, 1, timeout_ms) <= 0)
			return false;
		ssize_t r = recv(fd, b, n, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return false;
		b += r;
		n -= (size_t)r;
	}
	return true;
}

/* The next frame, or false at EOF. */
static bool read_frame(int fd, frame *f)
{
	uint8_t hdr[WIRE_HEADER_SIZE];
	memset(f, 0, sizeof(*f));
	if (!read_exact(fd, hdr, sizeof(hdr), 60000))
		return false;
	qerr e = { 0 };
	ck_assert_msg(wire_header_parse(hdr, &f->h, &e) == 0, "daemon sent a bad header: %s", e.msg);
	f->p = xmalloc(f->h.length + 1);
	ck_assert(read_exact(fd, f->p, f->h.length, 60000));
	return true;
}

static sampling_params greedy(void)
{
	sampling_params sp = { .temperature = 0, .top_p = 1, .repetition_penalty = 1, .logprobs = -1 };
	return sp;
}

static void put_submit(strbuf *b, uint64_t id, const int32_t *ids, uint32_t n, sampling_params sp,
		       int32_t max_tokens, uint32_t choices)
{
	wire_submit s;
	memset(&s, 0, sizeof(s));
	s.n_ids = n;
	s.ids = ids;
	s.sp = sp;
	s.max_tokens = max_tokens;
	s.n = choices;
	s.arrival = (double)time(NULL);
	wire_submit_put(b, id, &s);
}

static void prompt(int k, int n, int32_t *out)
{
	for (int i = 0; i < n; i++)
		out[i] = (int32_t)((k * 7907 + i * 131 + (i * i) % 97) % 150000);
}

typedef struct outcome {
	int32_t ids[64];
	int n;
	int finished;
	uint32_t reason;
	uint32_t error;
	char message[256];
} outcome;

/* Read frames until `count` requests with ids in [0, n) on fd have ended (single choice). */
static void collect_some(int fd, outcome *out, int n, int count)
{
	int left = count;
	while (left) {
		frame f;
		ck_assert_msg(read_frame(fd, &f), "connection closed with %d request(s) open", left);
		qerr e = { 0 };
		ck_assert_uint_lt(f.h.id, (uint64_t)n);
		outcome *o = &out[f.h.id];
		if (f.h.type == WIRE_T_TOKENS) {
			uint32_t idx, k = 0;
			bool has_lp;
			int32_t ids[64];
			ck_assert_msg(wire_tokens_decode(f.p, f.h.length, &idx, ids, NULL, &has_lp, 64, &k, &e) == 0,
				      "%s", e.msg);
			for (uint32_t i = 0; i < k; i++) {
				ck_assert_int_lt(o->n, 64);
				o->ids[o->n++] = ids[i];
			}
		} else if (f.h.type == WIRE_T_FINISH) {
			wire_finish fi;
			ck_assert(wire_finish_decode(f.p, f.h.length, &fi, &e) == 0);
			ck_assert_uint_eq(fi.completion_tokens, (uint32_t)o->n);
			o->finished = 1;
			o->reason = fi.reason;
			left--;
		} else if (f.h.type == WIRE_T_ERROR) {
			wire_error er;
			ck_assert(wire_error_decode(f.p, f.h.length, &er, &e) == 0);
			o->error = er.code;
			snprintf(o->message, sizeof(o->message), "%s", er.message);
			left--;
		} else {
			ck_abort_msg("unexpected %s frame", wire_type_name(f.h.type));
		}
		free(f.p);
	}
}

/* Every request of ids [0, n) ends. */
static void collect(int fd, outcome *out, int n)
{
	collect_some(fd, out, n, n);
}

static json_object *stats(int fd)
{
	strbuf b = { 0 };
	wire_put_frame(&b, WIRE_T_STATS, 0, NULL, 0);
	send_buf(fd, &b);
	strbuf_deinit(&b);
	frame f;
	ck_assert(read_frame(fd, &f));
	ck_assert_int_eq(f.h.type, WIRE_T_STATS_REPLY);
	f.p[f.h.length] = 0;
	json_object *j = json_tokener_parse((char *)f.p);
	ck_assert_ptr_nonnull(j);
	free(f.p);
	return j;
}

static int64_t stat_int(json_object *j, const char *key)
{
	json_object *v = NULL;
	ck_assert_msg(json_object_object_get_ex(j, key, &v), "STATS has no %s", key);
	return json_object_get_int64(v);
}

/* ---- tests ---- */

START_TEST(test_qvld_hello_model_info)
{
	qvld_proc d;
	daemon_start(&d, NULL, NULL);
	int fd = client(&d);
	strbuf b = { 0 };
	wire_put_frame(&b, WIRE_T_HELLO, 0, NULL, 0);
	send_buf(fd, &b);
	frame f;
	ck_assert(read_frame(fd, &f));
	ck_assert_int_eq(f.h.type, WIRE_T_MODEL_INFO);
	f.p[f.h.length] = 0;
	json_object *j = json_tokener_parse((char *)f.p), *v = NULL;
	ck_assert_ptr_nonnull(j);
	ck_assert(json_object_object_get_ex(j, "max_model_len", &v));
	ck_assert_int_eq(json_object_get_int64(v), 2048);
	ck_assert(json_object_object_get_ex(j, "model_dir", &v));
	ck_assert_str_eq(json_object_get_string(v), model_dir);
	ck_assert(json_object_object_get_ex(j, "eos_token_ids", &v));
	ck_assert_int_ge(json_object_array_length(v), 1);
	json_object_put(j);
	free(f.p);
	strbuf_deinit(&b);
	close(fd);
	ck_assert_int_eq(daemon_stop(&d), 0);
}
END_TEST

START_TEST(test_qvld_concurrent_equals_sequential)
{
	enum { N = 64, CONNS = 8 };
	qvld_proc d;
	const char *extra[] = { "--max-num-batched-tokens", "256", NULL };
	daemon_start(&d, extra, NULL);
	int32_t ids[N][128];
	int len[N];
	outcome *seq = xcalloc(N, sizeof(*seq)), *conc = xcalloc(N * CONNS, sizeof(*conc));
	strbuf b = { 0 };
	/* one at a time, each on its own connection */
	for (int k = 0; k < N; k++) {
		len[k] = 8 + (k * 29) % 100;
		prompt(k, len[k], ids[k]);
		int fd = client(&d);
		put_submit(&b, 0, ids[k], (uint32_t)len[k], greedy(), 6 + k % 7, 1);
		send_buf(fd, &b);
		collect(fd, &seq[k], 1);
		ck_assert_msg(seq[k].finished, "request %d: %s", k, seq[k].message);
		close(fd);
	}
	/* all 64 at once over 8 connections, 8 requests each (ids 0..7 per connection) */
	int fds[CONNS];
	for (int c = 0; c < CONNS; c++) {
		fds[c] = client(&d);
		for (int r = 0; r < N / CONNS; r++) {
			int k = c * (N / CONNS) + r;
			put_submit(&b, (uint64_t)r, ids[k], (uint32_t)len[k], greedy(), 6 + k % 7, 1);
		}
		send_buf(fds[c], &b);
	}
	for (int c = 0; c < CONNS; c++) {
		collect(fds[c], &conc[c * (N / CONNS)], N / CONNS);
		close(fds[c]);
	}
	for (int k = 0; k < N; k++) {
		ck_assert_msg(conc[k].finished, "request %d: %s", k, conc[k].message);
		ck_assert_int_eq(conc[k].n, seq[k].n);
		ck_assert_msg(!memcmp(conc[k].ids, seq[k].ids, sizeof(int32_t) * (size_t)seq[k].n),
			      "request %d: concurrent output differs from the sequential one", k);
		ck_assert_uint_eq(conc[k].reason, seq[k].reason);
	}
	strbuf_deinit(&b);
	free(seq);
	free(conc);
	ck_assert_int_eq(daemon_stop(&d), 0);
}
END_TEST

START_TEST(test_qvld_disconnect_frees_blocks)
{
	qvld_proc d;
	daemon_start(&d, NULL, NULL);
	int watch = client(&d);
	json_object *j = stats(watch);
	int64_t total = stat_int(j, "kv_blocks_total");
	ck_assert_int_eq(stat_int(j, "kv_blocks_free"), total);
	json_object_put(j);

	int fd = client(&d);
	int32_t ids[300];
	prompt(5, 300, ids);
	strbuf b = { 0 };
	put_submit(&b, 1, ids, 300, greedy(), 1500, 1);
	send_buf(fd, &b);
	frame f;
	ck_assert(read_frame(fd, &f));           /* the first TOKENS: it is running */
	ck_assert_int_eq(f.h.type, WIRE_T_TOKENS);
	free(f.p);
	/* the gauges are refreshed after each step: the step that sent TOKENS may still be ending */
	bool running = false;
	for (int i = 0; i < 500 && !running; i++) {
		j = stats(watch);
		running = stat_int(j, "num_requests_running") == 1 && stat_int(j, "kv_blocks_free") < total;
		json_object_put(j);
		if (!running)
			usleep(10000);
	}
	ck_assert_msg(running, "STATS never showed the request running");
	close(fd);
	/* the daemon notices the hang-up, cancels, frees: within a few steps */
	bool freed = false;
	for (int i = 0; i < 500 && !freed; i++) {
		j = stats(watch);
		freed = stat_int(j, "num_requests_running") == 0 && stat_int(j, "kv_blocks_free") == total;
		json_object *rs = NULL, *ab = NULL;
		if (freed) {
			ck_assert(json_object_object_get_ex(j, "request_success", &rs));
			ck_assert(json_object_object_get_ex(rs, "abort", &ab));
			ck_assert_int_eq(json_object_get_int64(ab), 1);
		}
		json_object_put(j);
		if (!freed)
			usleep(10000);
	}
	ck_assert_msg(freed, "blocks were not freed after the client went away");
	strbuf_deinit(&b);
	close(watch);
	ck_assert_int_eq(daemon_stop(&d), 0);
}
END_TEST

/* Send raw bytes on a fresh connection; expect ERROR (id 0, PROTOCOL) then EOF. */
static void assert_protocol_error(qvld_proc *d, const void *bytes, size_t n, const char *what)
{
	int fd = client(d);
	send_all(fd, bytes, n);
	frame f;
	ck_assert_msg(read_frame(fd, &f), "%s: no reply", what);
	ck_assert_msg(f.h.type == WIRE_T_ERROR, "%s: got %s", what, wire_type_name(f.h.type));
	ck_assert_uint_eq(f.h.id, 0);
	wire_error er;
	qerr e = { 0 };
	ck_assert(wire_error_decode(f.p, f.h.length, &er, &e) == 0);
	ck_assert_uint_eq(er.code, WIRE_E_PROTOCOL);
	ck_assert_msg(er.message[0], "%s: empty message", what);
	free(f.p);
	ck_assert_msg(!read_frame(fd, &f), "%s: the connection stayed open", what);
	close(fd);
}

static void put_u32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

START_TEST(test_qvld_malformed_frames)
{
	qvld_proc d;
	daemon_start(&d, NULL, NULL);
	/* a request in flight on another connection all along */
	int keep = client(&d);
	int32_t ids[40];
	prompt(8, 40, ids);
	strbuf b = { 0 };
	put_submit(&b, 3, ids, 40, greedy(), 60, 1);
	send_buf(keep, &b);

	uint8_t h[WIRE_HEADER_SIZE + 64];
	strbuf good = { 0 };
	wire_put_frame(&good, WIRE_T_HELLO, 0, NULL, 0);

	memcpy(h, good.s, WIRE_HEADER_SIZE);
	h[0] ^= 0xff;
	assert_protocol_error(&d, h, WIRE_HEADER_SIZE, "bad magic");

	memcpy(h, good.s, WIRE_HEADER_SIZE);
	h[4] = 9;
	assert_protocol_error(&d, h, WIRE_HEADER_SIZE, "unknown version");

	memcpy(h, good.s, WIRE_HEADER_SIZE);
	h[6] = 77;
	assert_protocol_error(&d, h, WIRE_HEADER_SIZE, "unknown type");

	memcpy(h, good.s, WIRE_HEADER_SIZE);
	put_u32(h + 16, WIRE_MAX_PAYLOAD + 1);
	assert_protocol_error(&d, h, WIRE_HEADER_SIZE, "oversized frame");

	memcpy(h, good.s, WIRE_HEADER_SIZE);
	put_u32(h + 20, 5);
	assert_protocol_error(&d, h, WIRE_HEADER_SIZE, "reserved field");

	/* a SUBMIT cut short (its header says fewer bytes than the fields need) */
	put_submit(&b, 1, ids, 40, greedy(), 5, 1);
	put_u32((uint8_t *)b.s + 16, (uint32_t)(b.len - WIRE_HEADER_SIZE - 9));
	assert_protocol_error(&d, b.s, b.len - 9, "truncated SUBMIT");
	strbuf_truncate(&b, 0);

	/* a SUBMIT with trailing bytes */
	put_submit(&b, 1, ids, 40, greedy(), 5, 1);
	strbuf_add(&b, "xyz", 3);
	put_u32((uint8_t *)b.s + 16, (uint32_t)(b.len - WIRE_HEADER_SIZE));
	assert_protocol_error(&d, b.s, b.len, "SUBMIT with trailing bytes");
	strbuf_truncate(&b, 0);

	/* frames only the daemon sends */
	wire_finish fi = { .index = 0, .reason = 1, .stop_id = -1 };
	wire_finish_put(&b, 1, &fi);
	assert_protocol_error(&d, b.s, b.len, "FINISH from a client");
	strbuf_truncate(&b, 0);

	/* a request id reused while open */
	put_submit(&b, 4, ids, 40, greedy(), 200, 1);
	put_submit(&b, 4, ids, 40, greedy(), 200, 1);
	{
		int fd = client(&d);
		send_buf(fd, &b);
		bool got_error = false;
		frame f;
		while (read_frame(fd, &f)) {
			if (f.h.type == WIRE_T_ERROR && f.h.id == 0)
				got_error = true;
			free(f.p);
		}
		ck_assert_msg(got_error, "a reused request id was not a protocol error");
		close(fd);
	}

	/* CANCEL with a payload */
	wire_put_frame(&b, WIRE_T_CANCEL, 1, "x", 1);
	assert_protocol_error(&d, b.s, b.len, "CANCEL with a payload");
	strbuf_truncate(&b, 0);

	/* random garbage */
	uint8_t junk[256];
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (uint8_t)(i * 73 + 11);
	assert_protocol_error(&d, junk, sizeof(junk), "garbage");

	/* the request in flight finished normally, and a new one is served */
	outcome o[4];
	memset(o, 0, sizeof(o));
	collect_some(keep, o, 4, 1);
	ck_assert_msg(o[3].finished, "the request in flight: %s", o[3].message);
	ck_assert_int_eq(o[3].n, 60);
	int fd = client(&d);
	put_submit(&b, 0, ids, 40, greedy(), 5, 1);
	send_buf(fd, &b);
	memset(o, 0, sizeof(o));
	collect(fd, o, 1);
	ck_assert(o[0].finished);
	close(fd);
	strbuf_deinit(&good);
	strbuf_deinit(&b);
	close(keep);
	ck_assert_int_eq(daemon_stop(&d), 0);
}
END_TEST

START_TEST(test_qvld_sigterm_in_flight)
{
	qvld_proc d;
	daemon_start(&d, NULL, NULL);
	int fd = client(&d);
	strbuf b = { 0 };
	int32_t ids[4][30];
	for (int k = 0; k < 4; k++) {
		prompt(40 + k, 30, ids[k]);
		put_submit(&b, (uint64_t)k, ids[k], 30, greedy(), 40, 1);
	}
	send_buf(fd, &b);
	frame f;
	ck_assert(read_frame(fd, &f));           /* running */
	ck_assert_int_eq(f.h.type, WIRE_T_TOKENS);
	uint32_t idx, k = 0;
	bool has_lp;
	int32_t first[4];
	qerr e = { 0 };
	ck_assert(wire_tokens_decode(f.p, f.h.length, &idx, first, NULL, &has_lp, 4, &k, &e) == 0);
	uint64_t first_id = f.h.id;
	free(f.p);
	kill(d.pid, SIGTERM);
	/* the socket file goes away; requests in flight still finish (40 tokens each) */
	outcome o[4];
	memset(o, 0, sizeof(o));
	o[first_id].ids[0] = first[0];
	o[first_id].n = 1;
	collect(fd, o, 4);
	for (int i = 0; i < 4; i++) {
		ck_assert_msg(o[i].finished, "request %d: error %u %s", i, o[i].error, o[i].message);
		ck_assert_uint_eq(o[i].reason, WIRE_FINISH_LENGTH);
		ck_assert_int_eq(o[i].n, 40);
	}
	int st = 0;
	for (int i = 0; i < 3000 && waitpid(d.pid, &st, WNOHANG) == 0; i++)
		usleep(10000);
	ck_assert(WIFEXITED(st));
	ck_assert_int_eq(WEXITSTATUS(st), 0);
	ck_assert_int_lt(try_connect(d.sock), 0);
	d.pid = 0;
	close(fd);
	strbuf_deinit(&b);
	daemon_stop(&d);
}
END_TEST

START_TEST(test_qvld_sigterm_grace_cancels)
{
	/* a grace period of 0.2 s cannot hold 1500 tokens: the request ends as aborted */
	qvld_proc d;
	const char *extra[] = { "--shutdown-timeout", "0.2", NULL };
	daemon_start(&d, extra, NULL);
	int fd = client(&d);
	strbuf b = { 0 };
	int32_t ids[30];
	prompt(77, 30, ids);
	put_submit(&b, 0, ids, 30, greedy(), 1500, 1);
	send_buf(fd, &b);
	frame f;
	ck_assert(read_frame(fd, &f));
	free(f.p);
	kill(d.pid, SIGTERM);
	outcome o[1];
	memset(o, 0, sizeof(o));
	o[0].n = 1;
	collect(fd, o, 1);
	ck_assert(o[0].finished);
	ck_assert_uint_eq(o[0].reason, WIRE_FINISH_ABORT);
	int st = 0;
	ck_assert_int_eq(waitpid(d.pid, &st, 0), d.pid);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	d.pid = 0;
	close(fd);
	strbuf_deinit(&b);
	daemon_stop(&d);
}
END_TEST

START_TEST(test_qvld_notify_socket)
{
	char *dir = tu_mkdtemp("notify");
	char path[512];
	snprintf(path, sizeof(path), "%s/notify.sock", dir);
	int ns = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	ck_assert_int_eq(bind(ns, (struct sockaddr *)&a, sizeof(a)), 0);
	qvld_proc d;
	daemon_start(&d, NULL, path);
	char msg[1024];
	bool ready = false, status = false, stopping = false, watchdog = false;
	for (int i = 0; i < 40 && !(ready && watchdog); i++) {
		struct pollfd pf = { .fd = ns, .events = POLLIN };
		if (poll(&pf, 1, 1000) <= 0)
			continue;
		ssize_t r = recv(ns, msg, sizeof(msg) - 1, 0);
		ck_assert_int_gt(r, 0);
		msg[r] = 0;
		ready |= strstr(msg, "READY=1") != NULL;
		status |= strstr(msg, "STATUS=") != NULL;
		watchdog |= strstr(msg, "WATCHDOG=1") != NULL;   /* every 0.2 s with WatchdogSec 0.4 s */
	}
	ck_assert_msg(ready, "no READY=1");
	ck_assert_msg(watchdog, "no WATCHDOG=1");
	ck_assert_msg(status, "no STATUS=");
	kill(d.pid, SIGTERM);
	for (int i = 0; i < 20 && !stopping; i++) {
		struct pollfd pf = { .fd = ns, .events = POLLIN };
		if (poll(&pf, 1, 1000) <= 0)
			continue;
		ssize_t r = recv(ns, msg, sizeof(msg) - 1, 0);
		ck_assert_int_gt(r, 0);
		msg[r] = 0;
		stopping |= strstr(msg, "STOPPING=1") != NULL;
	}
	ck_assert_msg(stopping, "no STOPPING=1");
	int st = 0;
	ck_assert_int_eq(waitpid(d.pid, &st, 0), d.pid);
	ck_assert(WIFEXITED(st));
	ck_assert_int_eq(WEXITSTATUS(st), 0);
	d.pid = 0;
	daemon_stop(&d);
	close(ns);
	tu_rmdir(dir);
	free(dir);
}
END_TEST

START_TEST(test_qvld_request_errors)
{
	qvld_proc d;
	const char *extra[] = { "--max-num-seqs", "1", "--max-waiting-requests", "1", NULL };
	daemon_start(&d, extra, NULL);
	int fd = client(&d);
	strbuf b = { 0 };
	int32_t ids[40];
	prompt(9, 40, ids);
	outcome o[8];
	memset(o, 0, sizeof(o));
	/* out-of-range sampling value: BAD_REQUEST, the connection stays usable */
	sampling_params sp = greedy();
	sp.top_p = 1.5;
	put_submit(&b, 0, ids, 40, sp, 5, 1);
	send_buf(fd, &b);
	collect(fd, o, 1);
	ck_assert_uint_eq(o[0].error, WIRE_E_BAD_REQUEST);
	ck_assert_msg(strstr(o[0].message, "top_p"), "%s", o[0].message);
	/* too long for max_model_len (2048) */
	memset(o, 0, sizeof(o));
	put_submit(&b, 0, ids, 40, greedy(), 4000, 1);
	send_buf(fd, &b);
	collect(fd, o, 1);
	ck_assert_uint_eq(o[0].error, WIRE_E_TOO_LONG);
	ck_assert_msg(strstr(o[0].message, "2048"), "%s", o[0].message);
	/* CANCEL: FINISH with reason abort */
	memset(o, 0, sizeof(o));
	put_submit(&b, 0, ids, 40, greedy(), 1500, 1);
	send_buf(fd, &b);
	frame f;
	ck_assert(read_frame(fd, &f));
	free(f.p);
	o[0].n = 1;
	wire_put_frame(&b, WIRE_T_CANCEL, 0, NULL, 0);
	send_buf(fd, &b);
	collect(fd, o, 1);
	ck_assert(o[0].finished);
	ck_assert_uint_eq(o[0].reason, WIRE_FINISH_ABORT);
	/* busy: one running, one waiting, the rest refused */
	memset(o, 0, sizeof(o));
	for (int k = 0; k < 8; k++)
		put_submit(&b, (uint64_t)k, ids, 40, greedy(), 30, 1);
	send_buf(fd, &b);
	collect(fd, o, 8);
	int busy = 0, done = 0;
	for (int k = 0; k < 8; k++) {
		busy += o[k].error == WIRE_E_BUSY;
		done += o[k].finished;
	}
	ck_assert_int_ge(busy, 1);
	ck_assert_int_ge(done, 1);
	ck_assert_int_eq(busy + done, 8);
	close(fd);
	strbuf_deinit(&b);
	ck_assert_int_eq(daemon_stop(&d), 0);
}
END_TEST

START_TEST(test_qvld_bad_flags_and_model)
{
	/* a missing model directory: exit 1, naming it */
	int p[2];
	ck_assert_int_eq(pipe(p), 0);
	pid_t pid = fork();
	if (pid == 0) {
		dup2(p[1], 2);
		setenv("QVL_CONFIG", "", 1);
		execl(qvld_path(), qvld_path(), "--model", "/nonexistent/model", "--socket",
		      "/tmp/qvl-nonexistent.sock", (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	char buf[4096];
	ssize_t n = 0, r;
	while ((r = read(p[0], buf + n, sizeof(buf) - 1 - (size_t)n)) > 0)
		n += r;
	buf[n] = 0;
	close(p[0]);
	int st;
	waitpid(pid, &st, 0);
	ck_assert(WIFEXITED(st));
	ck_assert_int_eq(WEXITSTATUS(st), 1);
	ck_assert_msg(strstr(buf, "/nonexistent/model"), "%s", buf);
	/* an unknown flag: exit 2 */
	pid = fork();
	if (pid == 0) {
		int devnull = open("/dev/null", O_WRONLY);
		dup2(devnull, 2);
		setenv("QVL_CONFIG", "", 1);
		execl(qvld_path(), qvld_path(), "--model", model_dir, "--no-such-flag", (char *)NULL);
		_exit(127);
	}
	waitpid(pid, &st, 0);
	ck_assert(WIFEXITED(st));
	ck_assert_int_eq(WEXITSTATUS(st), 2);
	/* an fp8 KV cache on the cpu backend: exit 1, naming the flag */
	ck_assert_int_eq(pipe(p), 0);
	pid = fork();
	if (pid == 0) {
		dup2(p[1], 2);
		setenv("QVL_CONFIG", "", 1);
		execl(qvld_path(), qvld_path(), "--model", model_dir, "--backend", "cpu",
		      "--kv-cache-dtype", "fp8", "--socket", "/tmp/qvl-fp8-cpu.sock", (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	n = 0;
	while ((r = read(p[0], buf + n, sizeof(buf) - 1 - (size_t)n)) > 0)
		n += r;
	buf[n] = 0;
	close(p[0]);
	waitpid(pid, &st, 0);
	ck_assert(WIFEXITED(st));
	ck_assert_int_eq(WEXITSTATUS(st), 1);
	ck_assert_msg(strstr(buf, "--kv-cache-dtype fp8"), "%s", buf);
}
END_TEST

/* A SUBMIT with one 64x64 image of pattern k: "first <vs> pad×n <ve> text". bad_hash flips a
 * hash byte. */
static void put_image_submit(strbuf *b, uint64_t id, int k, int first, bool bad_hash)
{
	model_config mc;
	preprocessor_config pc;
	qerr e = { 0 };
	ck_assert_msg(model_config_load_dir(model_dir, &mc, NULL, &pc, &e) == 0, "%s", e.msg);
	img_rgb rs = { .w = 64, .h = 64 };
	rs.px = xmalloc(64 * 64 * 3);
	for (int i = 0; i < 64 * 64 * 3; i++)
		rs.px[i] = (uint8_t)(i * (k + 5) + 3 * k);
	int32_t ids[64];
	int n = 0, grid = 64 / pc.patch_size, tokens = grid * grid / (pc.merge_size * pc.merge_size);
	ids[n++] = first;
	ids[n++] = mc.vision_start_token_id;
	int start = n;
	for (int i = 0; i < tokens; i++)
		ids[n++] = mc.image_token_id;
	ids[n++] = mc.vision_end_token_id;
	ids[n++] = 300;
	wire_submit s;
	memset(&s, 0, sizeof(s));
	s.n_ids = (uint32_t)n;
	s.ids = ids;
	s.n_images = 1;
	s.images[0] = (wire_image){ .start = start, .grid_t = 1, .grid_h = grid, .grid_w = grid,
				    .width = 64, .height = 64, .rgb = rs.px };
	img_preprocess_hash(&rs, &pc, s.images[0].hash);
	if (bad_hash)
		s.images[0].hash[5] ^= 1;
	s.sp = greedy();
	s.max_tokens = 4;
	s.n = 1;
	s.arrival = (double)time(NULL);
	wire_submit_put(b, id, &s);
	free(rs.px);
}

START_TEST(test_qvld_images_and_encoder_cache)
{
	qvld_proc d;
	daemon_start(&d, NULL, NULL);
	int fd = client(&d);
	strbuf b = { 0 };
	outcome o[3];
	memset(o, 0, sizeof(o));
	put_image_submit(&b, 0, 1, 100, false);
	send_buf(fd, &b);
	collect(fd, o, 1);
	ck_assert_msg(o[0].finished, "%s", o[0].message);
	ck_assert_int_eq(o[0].n, 4);
	/* the same picture after another first token: no prefix hit, so the encoder cache serves it */
	put_image_submit(&b, 1, 1, 101, false);
	put_image_submit(&b, 2, 2, 100, true);   /* a hash that is not its pixels' */
	send_buf(fd, &b);
	collect_some(fd, o, 3, 2);
	ck_assert_msg(o[1].finished, "%s", o[1].message);
	ck_assert_uint_eq(o[2].error, WIRE_E_BAD_REQUEST);
	ck_assert_msg(strstr(o[2].message, "hash"), "%s", o[2].message);
	json_object *j = stats(fd);
	ck_assert_int_eq(stat_int(j, "mm_cache_queries"), 2);
	ck_assert_int_eq(stat_int(j, "mm_cache_hits"), 1);
	json_object_put(j);
	close(fd);
	strbuf_deinit(&b);
	ck_assert_int_eq(daemon_stop(&d), 0);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("qvld");
	TCase *tc = tcase_create("daemon");
	tcase_add_unchecked_fixture(tc, setup_model, teardown_model);
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, test_qvld_hello_model_info);
	tcase_add_test(tc, test_qvld_concurrent_equals_sequential);
	tcase_add_test(tc, test_qvld_disconnect_frees_blocks);
	tcase_add_test(tc, test_qvld_malformed_frames);
	tcase_add_test(tc, test_qvld_sigterm_in_flight);
	tcase_add_test(tc, test_qvld_sigterm_grace_cancels);
	tcase_add_test(tc, test_qvld_notify_socket);
	tcase_add_test(tc, test_qvld_request_errors);
	tcase_add_test(tc, test_qvld_bad_flags_and_model);
	tcase_add_test(tc, test_qvld_images_and_encoder_cache);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run_suite(suite());
}
