/*
 * check_daemon_client: the responder's connection to qvld, against a real daemon and against
 * fake ones.
 *
 * Real: tests that need the protocol's behaviour start their own qvld ($QVL_BUILDDIR/qvld) on
 * the tiny checkpoint (made once by the unchecked fixture), as check_qvld does, with
 * --batch-invariant and QVL_CONFIG="" (no /etc file). Checked: MODEL_INFO as the daemon sends
 * it (served names, limits, defaults, optional keys), TOKENS then FINISH (logprobs included),
 * two requests interleaved on one connection, CANCEL, STATS, a request-level ERROR that keeps
 * the connection, a missing socket, and a daemon killed mid-request.
 *
 * Fake: a forked child listening on a socket in a temporary directory reads the HELLO and
 * answers with scripted bytes, which reaches what a real daemon never sends: a garbage header,
 * MODEL_INFO with a key missing or of the wrong type, frames out of turn, a connection-level
 * ERROR, a frame split across a pause (dclient_next's timeout), a TOKENS frame larger than the
 * client's arrays.
 */
#include <check.h>
#include <errno.h>
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

#include "daemon_client.h"
#include "mkmodel.h"
#include "model_config.h"
#include "strbuf.h"
#include "testutil.h"
#include "wire.h"

static char *model_dir;

static void setup_model(void)
{
	model_dir = tu_mkdtemp("dclient-model");
	mkmodel_opts o = { .preset = "tiny", .out_dir = model_dir, .seed = 11 };
	qerr e = { 0 };
	ck_assert_msg(mkmodel_run(&o, &e) == 0, "%s", e.msg);
}

static void teardown_model(void)
{
	tu_rmdir(model_dir);
	free(model_dir);
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The address of a Unix socket at path (which must fit). */
static struct sockaddr_un sock_addr(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	size_t n = strlen(path);
	ck_assert_msg(n < sizeof(a.sun_path), "socket path too long: %s", path);
	memcpy(a.sun_path, path, n);
	return a;
}

/* ---- a real daemon ---- */

typedef struct qvld_proc {
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
	struct sockaddr_un a = sock_addr(path);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a))) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Start qvld with extra flags (NULL-terminated) and wait until its socket answers. */
static void daemon_start(qvld_proc *d, const char *const *extra)
{
	memset(d, 0, sizeof(*d));
	d->dir = tu_mkdtemp("dclient");
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
		unsetenv("NOTIFY_SOCKET");
		unsetenv("WATCHDOG_USEC");
		unsetenv("WATCHDOG_PID");
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
		ck_assert_msg(waitpid(d->pid, &st, WNOHANG) == 0, "qvld (%s) exited during start-up",
			      qvld_path());
		usleep(10000);
	}
	ck_abort_msg("qvld did not start listening on %s", d->sock);
}

/* SIGTERM, wait, remove the directory; the exit status (0 for a clean stop). */
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

static dclient *connect_ok(const char *sock, dclient_model *m)
{
	dclient *c = NULL;
	qerr e = { 0 };
	int rc = dclient_connect(sock, 10000, &c, m, &e);
	ck_assert_msg(rc == 0, "dclient_connect: %s", e.msg);
	ck_assert_ptr_nonnull(c);
	ck_assert(!dclient_dead(c));
	return c;
}

static sampling_params greedy(void)
{
	sampling_params sp = { .temperature = 0, .top_p = 1, .repetition_penalty = 1, .logprobs = -1 };
	return sp;
}

static void prompt(int k, int n, int32_t *out)
{
	for (int i = 0; i < n; i++)
		out[i] = (int32_t)((k * 7907 + i * 131 + (i * i) % 97) % 150000);
}

static void submit_ok(dclient *c, uint64_t id, const int32_t *ids, uint32_t n, sampling_params sp,
		      int32_t max_tokens)
{
	wire_submit s;
	memset(&s, 0, sizeof(s));
	s.n_ids = n;
	s.ids = ids;
	s.sp = sp;
	s.max_tokens = max_tokens;
	s.n = 1;
	s.arrival = (double)time(NULL);
	qerr e = { 0 };
	ck_assert_msg(dclient_submit(c, id, &s, &e) == 0, "submit %llu: %s", (unsigned long long)id,
		      e.msg);
}

/* What the client saw of one single-choice request. */
typedef struct outcome {
	int32_t ids[2048];
	int n;
	bool finished, errored;
	wire_finish fin;
	wire_error err;
} outcome;

/* One event for requests with ids in [1, n_out]: tokens accumulate, FINISH and ERROR end. */
static void assert_record(const dclient_event *ev, outcome *out, int n_out)
{
	ck_assert_msg(ev->id >= 1 && ev->id <= (uint64_t)n_out, "event for request %llu",
		      (unsigned long long)ev->id);
	outcome *o = &out[ev->id - 1];
	ck_assert_msg(!o->finished && !o->errored, "request %llu: an event after its end",
		      (unsigned long long)ev->id);
	switch (ev->type) {
	case DCLIENT_TOKENS:
		ck_assert_uint_eq(ev->index, 0);
		ck_assert_uint_ge(ev->n, 1);
		ck_assert_int_le(o->n + (int)ev->n, 2048);
		memcpy(o->ids + o->n, ev->ids, sizeof(int32_t) * ev->n);
		o->n += (int)ev->n;
		break;
	case DCLIENT_FINISH:
		o->fin = ev->finish;
		o->finished = true;
		ck_assert_uint_eq(ev->finish.completion_tokens, (uint32_t)o->n);
		break;
	case DCLIENT_ERROR:
		o->err = ev->error;
		o->errored = true;
		break;
	default:
		ck_abort_msg("event type %d", (int)ev->type);
	}
}

/* Read events until `count` requests have ended. */
static void assert_collect(dclient *c, outcome *out, int n_out, int count)
{
	while (count) {
		dclient_event ev;
		qerr e = { 0 };
		int rc = dclient_next(c, 60000, &ev, &e);
		ck_assert_msg(rc == 1, "dclient_next: %d %s", rc, e.msg);
		assert_record(&ev, out, n_out);
		if (ev.type != DCLIENT_TOKENS)
			count--;
	}
}

/* ---- a fake daemon ---- */

typedef struct fake_daemon {
	pid_t pid;
	char *dir;
	char sock[256];
} fake_daemon;

static void write_all(int fd, const void *p, size_t n)
{
	const char *b = p;
	while (n) {
		ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			_exit(3);
		b += w;
		n -= (size_t)w;
	}
}

/* Listen on a fresh socket; a child accepts one connection, reads the HELLO, writes `first`,
 * waits delay_ms, writes `later` (either may be empty), then hangs up (hang_up) or reads until
 * the client does. */
static void fake_start(fake_daemon *f, const strbuf *first, const strbuf *later, int delay_ms,
		       bool hang_up)
{
	memset(f, 0, sizeof(*f));
	f->dir = tu_mkdtemp("dclient-fake");
	snprintf(f->sock, sizeof(f->sock), "%s/fake.sock", f->dir);
	int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(lfd, 0);
	struct sockaddr_un a = sock_addr(f->sock);
	ck_assert_int_eq(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(listen(lfd, 4), 0);
	f->pid = fork();
	ck_assert_int_ge(f->pid, 0);
	if (f->pid == 0) {
		int fd = accept(lfd, NULL, NULL);
		if (fd < 0)
			_exit(2);
		uint8_t hello[WIRE_HEADER_SIZE];
		size_t got = 0;
		while (got < sizeof(hello)) {
			ssize_t r = recv(fd, hello + got, sizeof(hello) - got, 0);
			if (r <= 0)
				_exit(4);
			got += (size_t)r;
		}
		wire_header h;
		if (wire_header_parse(hello, &h, NULL) || h.type != WIRE_T_HELLO)
			_exit(5);
		if (first->len)
			write_all(fd, first->s, first->len);
		if (delay_ms)
			usleep((useconds_t)delay_ms * 1000);
		if (later->len)
			write_all(fd, later->s, later->len);
		if (hang_up)
			_exit(0);
		char sink[4096];
		for (;;) {
			struct pollfd pf = { .fd = fd, .events = POLLIN };
			if (poll(&pf, 1, 20000) <= 0)
				break;
			ssize_t r = recv(fd, sink, sizeof(sink), 0);
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0)
				break;
		}
		_exit(0);
	}
	close(lfd);
}

static void fake_stop(fake_daemon *f)
{
	if (f->pid > 0) {
		kill(f->pid, SIGKILL);
		waitpid(f->pid, NULL, 0);
		f->pid = 0;
	}
	tu_rmdir(f->dir);
	free(f->dir);
}

/* A MODEL_INFO as qvld sends it (all keys, optional ones included). */
static json_object *info_json(void)
{
	const char *text =
		"{\"version\":1,\"model\":\"m\",\"served_model_names\":[\"m\",\"org/M\"],"
		"\"model_dir\":\"/models/M\",\"max_model_len\":4096,\"eos_token_ids\":[7,8],"
		"\"vocab_size\":1000,\"image_token_id\":99,\"vision\":true,"
		"\"limit_mm_per_prompt\":{\"image\":4},"
		"\"mm_processor_kwargs\":{\"min_pixels\":1024,\"max_pixels\":65536},"
		"\"generation_defaults\":{\"do_sample\":true,\"temperature\":0.7,\"top_p\":0.8,"
		"\"top_k\":20,\"min_p\":0.0,\"repetition_penalty\":1.05,\"max_tokens\":null},"
		"\"allowed_local_media_path\":\"/srv/media\",\"api_key\":\"k\"}";
	json_object *o = json_tokener_parse(text);
	ck_assert_ptr_nonnull(o);
	return o;
}

static void put_info(strbuf *b, json_object *o)
{
	const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	wire_put_frame(b, WIRE_T_MODEL_INFO, 0, s, strlen(s));
}

/* Connect to a fake answering `reply` to the HELLO; expect failure with code, the message
 * containing want. */
static void assert_connect_fails(const strbuf *reply, int code, const char *want)
{
	fake_daemon f;
	strbuf none = { 0 };
	fake_start(&f, reply, &none, 0, true);
	dclient *c = (dclient *)&f;   /* poisoned: connect must set it to NULL */
	dclient_model m;
	qerr e = { 0 };
	int rc = dclient_connect(f.sock, 5000, &c, &m, &e);
	ck_assert_msg(rc == -code, "want %s (%s), got %d: %s", qerr_name(code), want, rc, e.msg);
	ck_assert_int_eq(e.code, code);
	ck_assert_ptr_null(c);
	ck_assert_ptr_null(m.model);
	ck_assert_msg(strstr(e.msg, want), "\"%s\" does not name %s", e.msg, want);
	ck_assert_msg(strstr(e.msg, f.sock), "\"%s\" does not name the socket", e.msg);
	dclient_model_deinit(&m);
	fake_stop(&f);
}

/* ---- tests: a real daemon ---- */

START_TEST(test_daemon_client_model_info)
{
	qvld_proc d;
	const char *extra[] = { "--served-model-name", "alpha", "--served-model-name", "beta",
				"--api-key", "sekrit", "--mm-processor-kwargs",
				"{\"min_pixels\": 3136, \"max_pixels\": 200704}",
				"--allowed-local-media-path", "/tmp", NULL };
	daemon_start(&d, extra);
	model_config mc;
	generation_config gc;
	qerr e = { 0 };
	ck_assert_msg(model_config_load_dir(model_dir, &mc, &gc, NULL, &e) == 0, "%s", e.msg);
	dclient_model m;
	dclient *c = connect_ok(d.sock, &m);
	ck_assert_str_eq(m.model, "alpha");
	ck_assert_int_eq(m.n_names, 2);
	ck_assert_str_eq(m.names[0], "alpha");
	ck_assert_str_eq(m.names[1], "beta");
	ck_assert_str_eq(m.model_dir, model_dir);
	ck_assert_int_eq(m.max_model_len, 2048);
	ck_assert_int_eq(m.vocab_size, mc.text.vocab_size);
	ck_assert_int_eq(m.vision, mc.has_vision);
	ck_assert_int_eq(m.image_token_id, mc.has_vision ? mc.image_token_id : -1);
	if (m.vision)
		ck_assert_int_ge(m.limit_images, 1);
	ck_assert_int_eq(m.n_eos, gc.n_eos);
	for (int i = 0; i < gc.n_eos; i++)
		ck_assert_int_eq(m.eos_ids[i], gc.eos_token_ids[i]);
	ck_assert_int_eq(m.min_pixels, 3136);
	ck_assert_int_eq(m.max_pixels, 200704);
	ck_assert_int_eq(m.do_sample, gc.do_sample);
	ck_assert_double_eq_tol(m.temperature, gc.temperature, 1e-12);
	ck_assert_double_eq_tol(m.top_p, gc.top_p, 1e-12);
	ck_assert_double_eq_tol(m.min_p, gc.min_p, 1e-12);
	ck_assert_double_eq_tol(m.repetition_penalty, gc.repetition_penalty, 1e-12);
	ck_assert_int_eq(m.top_k, gc.top_k);
	ck_assert_int_eq(m.max_tokens, gc.max_new_tokens > 0 ? gc.max_new_tokens : -1);
	ck_assert_str_eq(m.api_key, "sekrit");
	ck_assert_str_eq(m.allowed_local_media_path, "/tmp");
	dclient_model_deinit(&m);
	ck_assert_ptr_null(m.model);
	dclient_free(c);
	ck_assert_int_eq(daemon_stop(&d), 0);
}
END_TEST

START_TEST(test_daemon_client_submit_tokens_finish)
{
	qvld_proc d;
	daemon_start(&d, NULL);
	dclient_model m;
	dclient *c = connect_ok(d.sock, &m);
	ck_assert_ptr_null(m.api_key);
	ck_assert_ptr_null(m.allowed_local_media_path);
	ck_assert_int_eq(m.min_pixels, 0);
	ck_assert_int_eq(m.max_pixels, 0);
	int32_t ids[40];
	prompt(3, 40, ids);
	sampling_params sp = greedy();
	sp.logprobs = 2;
	submit_ok(c, 9, ids, 40, sp, 12);
	int got = 0;
	for (;;) {
		dclient_event ev;
		qerr e = { 0 };
		int rc = dclient_next(c, 60000, &ev, &e);
		ck_assert_msg(rc == 1, "dclient_next: %d %s", rc, e.msg);
		ck_assert_uint_eq(ev.id, 9);
		if (ev.type == DCLIENT_TOKENS) {
			ck_assert_uint_eq(ev.index, 0);
			ck_assert_ptr_nonnull(ev.lp);
			for (uint32_t i = 0; i < ev.n; i++) {
				ck_assert_int_ge(ev.ids[i], 0);
				ck_assert_int_lt(ev.ids[i], m.vocab_size);
				ck_assert_int_eq(ev.lp[i].id, ev.ids[i]);
				ck_assert_int_eq(ev.lp[i].n_top, 2);
				ck_assert(ev.lp[i].logprob <= 0);
			}
			got += (int)ev.n;
			continue;
		}
		ck_assert_int_eq(ev.type, DCLIENT_FINISH);
		ck_assert_uint_eq(ev.finish.completion_tokens, (uint32_t)got);
		ck_assert_uint_eq(ev.finish.prompt_tokens, 40);
		ck_assert(ev.finish.reason == WIRE_FINISH_LENGTH || ev.finish.reason == WIRE_FINISH_STOP);
		if (ev.finish.reason == WIRE_FINISH_LENGTH)
			ck_assert_int_eq(got, 12);
		break;
	}
	ck_assert_int_ge(got, 1);
	/* nothing more comes for it */
	dclient_event ev;
	ck_assert_int_eq(dclient_next(c, 100, &ev, NULL), 0);
	ck_assert(!dclient_dead(c));
	dclient_free(c);
	dclient_model_deinit(&m);
	ck_assert_int_eq(daemon_stop(&d), 0);
}
END_TEST

START_TEST(test_daemon_client_interleaved)
{
	qvld_proc d;
	daemon_start(&d, NULL);
	dclient_model m;
	dclient *c = connect_ok(d.sock, &m);
	int32_t a[40], b[30];
	prompt(5, 40, a);
	prompt(6, 30, b);
	/* the short request alone first: what it must produce whatever runs beside it */
	static outcome solo[2], both[2];
	submit_ok(c, 2, b, 30, greedy(), 10);
	assert_collect(c, solo, 2, 1);
	ck_assert(solo[1].finished);

	/* a long request (1), and once it runs, the short one (2) beside it */
	submit_ok(c, 1, a, 40, greedy(), 1500);
	dclient_event ev;
	qerr e = { 0 };
	ck_assert_msg(dclient_next(c, 60000, &ev, &e) == 1, "%s", e.msg);
	assert_record(&ev, both, 2);
	ck_assert_int_eq(ev.type, DCLIENT_TOKENS);
	ck_assert_uint_eq(ev.id, 1);
	submit_ok(c, 2, b, 30, greedy(), 10);
	int long_tokens_meanwhile = 0;
	while (!both[1].finished) {
		ck_assert_msg(dclient_next(c, 60000, &ev, &e) == 1, "%s", e.msg);
		assert_record(&ev, both, 2);
		if (ev.id == 1) {
			ck_assert_int_eq(ev.type, DCLIENT_TOKENS);
			long_tokens_meanwhile++;
		}
	}
	ck_assert_int_ge(long_tokens_meanwhile, 1);
	ck_assert_int_eq(both[1].n, solo[1].n);
	ck_assert(!memcmp(both[1].ids, solo[1].ids, sizeof(int32_t) * (size_t)solo[1].n));
	/* the long one is still going: stop it */
	ck_assert(!both[0].finished);
	ck_assert_int_eq(dclient_cancel(c, 1, &e), 0);
	assert_collect(c, both, 2, 1);
	ck_assert(both[0].finished);
	ck_assert_uint_eq(both[0].fin.reason, WIRE_FINISH_ABORT);
	dclient_free(c);
	dclient_model_deinit(&m);
	ck_assert_int_eq(daemon_stop(&d), 0);
}
END_TEST

START_TEST(test_daemon_client_cancel_aborts)
{
	qvld_proc d;
	daemon_start(&d, NULL);
	dclient_model m;
	dclient *c = connect_ok(d.sock, &m);
	int32_t ids[40];
	prompt(9, 40, ids);
	static outcome o[1];
	submit_ok(c, 1, ids, 40, greedy(), 1500);
	dclient_event ev;
	qerr e = { 0 };
	ck_assert_msg(dclient_next(c, 60000, &ev, &e) == 1, "%s", e.msg);
	assert_record(&ev, o, 1);
	ck_assert_int_eq(dclient_cancel(c, 1, &e), 0);
	assert_collect(c, o, 1, 1);
	ck_assert(o[0].finished);
	ck_assert_uint_eq(o[0].fin.reason, WIRE_FINISH_ABORT);
	ck_assert_int_lt(o[0].n, 1500);
	/* a CANCEL for a request that has ended is ignored; the connection goes on */
	ck_assert_int_eq(dclient_cancel(c, 1, &e), 0);
	ck_assert_int_eq(dclient_next(c, 100, &ev, &e), 0);
	ck_assert(!dclient_dead(c));
	dclient_free(c);
	dclient_model_deinit(&m);
	ck_assert_int_eq(daemon_stop(&d), 0);
}
END_TEST

START_TEST(test_daemon_client_stats)
{
	qvld_proc d;
	daemon_start(&d, NULL);
	dclient_model m;
	dclient *c = connect_ok(d.sock, &m);
	json_object *j = NULL, *v = NULL;
	qerr e = { 0 };
	ck_assert_msg(dclient_stats(c, 10000, &j, &e) == 0, "%s", e.msg);
	ck_assert(json_object_is_type(j, json_type_object));
	ck_assert(json_object_object_get_ex(j, "kv_blocks_total", &v));
	ck_assert_int_gt(json_object_get_int64(v), 0);
	json_object_put(j);
	/* again on the same connection: replies come in order */
	ck_assert_msg(dclient_stats(c, 10000, &j, &e) == 0, "%s", e.msg);
	ck_assert(json_object_object_get_ex(j, "num_requests_running", &v));
	ck_assert_int_eq(json_object_get_int64(v), 0);
	json_object_put(j);
	dclient_free(c);
	dclient_model_deinit(&m);
	ck_assert_int_eq(daemon_stop(&d), 0);
}
END_TEST

START_TEST(test_daemon_client_request_error_keeps_connection)
{
	qvld_proc d;
	daemon_start(&d, NULL);
	dclient_model m;
	dclient *c = connect_ok(d.sock, &m);
	int32_t ids[40];
	prompt(11, 40, ids);
	sampling_params sp = greedy();
	sp.top_p = 1.5;
	submit_ok(c, 4, ids, 40, sp, 5);
	dclient_event ev;
	qerr e = { 0 };
	ck_assert_msg(dclient_next(c, 60000, &ev, &e) == 1, "%s", e.msg);
	ck_assert_int_eq(ev.type, DCLIENT_ERROR);
	ck_assert_uint_eq(ev.id, 4);
	ck_assert_uint_eq(ev.error.code, WIRE_E_BAD_REQUEST);
	ck_assert_msg(strstr(ev.error.message, "top_p"), "%s", ev.error.message);
	ck_assert(!dclient_dead(c));
	/* refused here, not sent: id 0 is the connection's */
	wire_submit s;
	memset(&s, 0, sizeof(s));
	s.n_ids = 40;
	s.ids = ids;
	s.sp = greedy();
	s.max_tokens = 5;
	s.n = 1;
	ck_assert_int_eq(dclient_submit(c, 0, &s, &e), -QERR_INVALID);
	ck_assert(!dclient_dead(c));
	/* the same id again, now valid */
	static outcome o[4];
	submit_ok(c, 4, ids, 40, greedy(), 5);
	assert_collect(c, o, 4, 1);
	ck_assert(o[3].finished);
	ck_assert_int_eq(o[3].n, (int)o[3].fin.completion_tokens);
	dclient_free(c);
	dclient_model_deinit(&m);
	ck_assert_int_eq(daemon_stop(&d), 0);
}
END_TEST

START_TEST(test_daemon_client_missing_socket)
{
	char *dir = tu_mkdtemp("dclient-missing");
	char path[512];
	snprintf(path, sizeof(path), "%s/nobody.sock", dir);
	dclient *c = NULL;
	dclient_model m;
	qerr e = { 0 };
	ck_assert_int_eq(dclient_connect(path, 1000, &c, &m, &e), -QERR_IO);
	ck_assert_int_eq(e.code, QERR_IO);
	ck_assert_ptr_null(c);
	ck_assert_msg(strstr(e.msg, path), "%s", e.msg);
	ck_assert_msg(strstr(e.msg, "qvld at "), "%s", e.msg);
	/* a socket file nobody listens on: refused */
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un a = sock_addr(path);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	close(fd);
	ck_assert_int_eq(dclient_connect(path, 1000, &c, &m, &e), -QERR_IO);
	ck_assert_msg(strstr(e.msg, "refused"), "%s", e.msg);
	/* a NULL qerr is allowed */
	ck_assert_int_eq(dclient_connect(path, 1000, &c, &m, NULL), -QERR_IO);
	tu_rmdir(dir);
	free(dir);
}
END_TEST

START_TEST(test_daemon_client_daemon_killed)
{
	qvld_proc d;
	daemon_start(&d, NULL);
	dclient_model m;
	dclient *c = connect_ok(d.sock, &m);
	int32_t ids[40];
	prompt(13, 40, ids);
	submit_ok(c, 1, ids, 40, greedy(), 1500);
	dclient_event ev;
	qerr e = { 0 };
	ck_assert_msg(dclient_next(c, 60000, &ev, &e) == 1, "%s", e.msg);
	ck_assert_int_eq(ev.type, DCLIENT_TOKENS);
	kill(d.pid, SIGKILL);
	waitpid(d.pid, NULL, 0);
	d.pid = 0;
	/* what was already sent may still be read; then the end of the stream */
	int rc, events = 0;
	while ((rc = dclient_next(c, 10000, &ev, &e)) == 1) {
		ck_assert_int_eq(ev.type, DCLIENT_TOKENS);
		ck_assert_int_lt(++events, 1500);
	}
	ck_assert_int_lt(rc, 0);
	ck_assert_int_eq(e.code, QERR_IO);
	ck_assert_msg(strstr(e.msg, d.sock), "%s", e.msg);
	ck_assert(dclient_dead(c));
	/* every later call fails at once */
	ck_assert_int_eq(dclient_next(c, 10000, &ev, &e), -QERR_IO);
	ck_assert_int_eq(dclient_cancel(c, 1, &e), -QERR_IO);
	wire_submit s;
	memset(&s, 0, sizeof(s));
	s.n_ids = 40;
	s.ids = ids;
	s.sp = greedy();
	s.max_tokens = 5;
	s.n = 1;
	ck_assert_int_eq(dclient_submit(c, 2, &s, &e), -QERR_IO);
	json_object *j = NULL;
	ck_assert_int_eq(dclient_stats(c, 1000, &j, &e), -QERR_IO);
	ck_assert_ptr_null(j);
	ck_assert_msg(strstr(e.msg, "failed earlier") && strstr(e.msg, d.sock), "%s", e.msg);
	dclient_free(c);
	dclient_model_deinit(&m);
	daemon_stop(&d);
}
END_TEST

/* ---- tests: fake daemons ---- */

START_TEST(test_daemon_client_fake_garbage_header)
{
	strbuf b = { 0 };
	for (int i = 0; i < 64; i++)
		strbuf_addc(&b, (char)(i * 73 + 11));
	assert_connect_fails(&b, QERR_FORMAT, "magic");
	/* a header of another version */
	strbuf_truncate(&b, 0);
	json_object *o = info_json();
	put_info(&b, o);
	b.s[4] = 2;
	assert_connect_fails(&b, QERR_FORMAT, "version 2");
	json_object_put(o);
	strbuf_deinit(&b);
}
END_TEST

START_TEST(test_daemon_client_fake_model_info_missing_key)
{
	static const char *const keys[] = { "version", "model", "served_model_names", "model_dir",
					    "max_model_len", "eos_token_ids", "vocab_size",
					    "image_token_id", "vision", "limit_mm_per_prompt",
					    "generation_defaults" };
	static const char *const defaults[] = { "do_sample", "temperature", "top_p", "top_k",
						"min_p", "repetition_penalty", "max_tokens" };
	strbuf b = { 0 };
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		json_object *o = info_json();
		json_object_object_del(o, keys[i]);
		put_info(&b, o);
		char want[128];
		snprintf(want, sizeof(want), "%s: missing", keys[i]);
		assert_connect_fails(&b, QERR_FORMAT, want);
		strbuf_truncate(&b, 0);
		json_object_put(o);
	}
	for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++) {
		json_object *o = info_json(), *g = NULL;
		ck_assert(json_object_object_get_ex(o, "generation_defaults", &g));
		json_object_object_del(g, defaults[i]);
		put_info(&b, o);
		char want[128];
		snprintf(want, sizeof(want), "generation_defaults: %s: missing", defaults[i]);
		assert_connect_fails(&b, QERR_FORMAT, want);
		strbuf_truncate(&b, 0);
		json_object_put(o);
	}
	json_object *o = info_json(), *lim = NULL;
	ck_assert(json_object_object_get_ex(o, "limit_mm_per_prompt", &lim));
	json_object_object_del(lim, "image");
	put_info(&b, o);
	assert_connect_fails(&b, QERR_FORMAT, "limit_mm_per_prompt: image: missing");
	json_object_put(o);
	strbuf_deinit(&b);
}
END_TEST

/* MODEL_INFO o with key set to the JSON text value: connect fails naming want. */
static void assert_bad_value(const char *key, const char *value, const char *want)
{
	json_object *o = info_json(), *v = json_tokener_parse(value);
	ck_assert_msg(v || !strcmp(value, "null"), "bad test value %s", value);
	json_object_object_add(o, key, v);
	strbuf b = { 0 };
	put_info(&b, o);
	assert_connect_fails(&b, QERR_FORMAT, want);
	strbuf_deinit(&b);
	json_object_put(o);
}

START_TEST(test_daemon_client_fake_model_info_invalid)
{
	assert_bad_value("version", "2", "version: 2");
	assert_bad_value("version", "\"1\"", "version");
	assert_bad_value("model", "\"x\"", "model");
	assert_bad_value("model", "null", "model: missing");
	assert_bad_value("served_model_names", "[]", "served_model_names");
	assert_bad_value("served_model_names", "[\"m\", 3]", "served_model_names[1]");
	assert_bad_value("served_model_names", "[\"m\",\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\"]",
			 "served_model_names");
	assert_bad_value("model_dir", "\"\"", "model_dir");
	assert_bad_value("max_model_len", "0", "max_model_len");
	assert_bad_value("max_model_len", "\"4096\"", "max_model_len");
	assert_bad_value("eos_token_ids", "[1000]", "eos_token_ids[0]");
	assert_bad_value("eos_token_ids", "7", "eos_token_ids");
	assert_bad_value("vocab_size", "-5", "vocab_size");
	assert_bad_value("image_token_id", "1000", "image_token_id");
	assert_bad_value("image_token_id", "-1", "image_token_id");   /* with vision */
	assert_bad_value("vision", "1", "vision");
	assert_bad_value("limit_mm_per_prompt", "{\"image\": 65}", "limit_mm_per_prompt: image");
	assert_bad_value("mm_processor_kwargs", "{\"max_pixels\": \"big\"}",
			 "mm_processor_kwargs: max_pixels");
	assert_bad_value("mm_processor_kwargs", "{\"min_pixels\": 100, \"max_pixels\": 10}",
			 "min_pixels");
	assert_bad_value("generation_defaults",
			 "{\"do_sample\":false,\"temperature\":1,\"top_p\":0,\"top_k\":0,"
			 "\"min_p\":0,\"repetition_penalty\":1,\"max_tokens\":null}",
			 "generation_defaults: top_p");
	assert_bad_value("generation_defaults",
			 "{\"do_sample\":false,\"temperature\":1,\"top_p\":1,\"top_k\":0,"
			 "\"min_p\":0,\"repetition_penalty\":1,\"max_tokens\":0}",
			 "generation_defaults: max_tokens");
	assert_bad_value("api_key", "5", "api_key");

	/* not JSON; JSON but not an object; another frame; ERROR; nothing at all */
	strbuf b = { 0 };
	wire_put_frame(&b, WIRE_T_MODEL_INFO, 0, "{\"version\":1,", 13);
	assert_connect_fails(&b, QERR_FORMAT, "MODEL_INFO");
	strbuf_truncate(&b, 0);
	wire_put_frame(&b, WIRE_T_MODEL_INFO, 0, "[1]", 3);
	assert_connect_fails(&b, QERR_FORMAT, "not a JSON object");
	strbuf_truncate(&b, 0);
	wire_put_frame(&b, WIRE_T_STATS_REPLY, 0, "{}", 2);
	assert_connect_fails(&b, QERR_FORMAT, "STATS_REPLY");
	strbuf_truncate(&b, 0);
	wire_error_put(&b, 0, WIRE_E_SHUTTING_DOWN, "stopping");
	assert_connect_fails(&b, QERR_IO, "stopping");
	strbuf_truncate(&b, 0);
	assert_connect_fails(&b, QERR_IO, "closed");
	/* a frame cut short by the daemon going away */
	json_object *o = info_json();
	put_info(&b, o);
	strbuf_truncate(&b, b.len - 5);
	assert_connect_fails(&b, QERR_IO, "closed");
	json_object_put(o);
	strbuf_deinit(&b);
}
END_TEST

START_TEST(test_daemon_client_fake_model_info_optional)
{
	/* without the optional keys, max_tokens set, no vision, unknown keys */
	json_object *o = info_json(), *g = NULL;
	json_object_object_del(o, "mm_processor_kwargs");
	json_object_object_del(o, "api_key");
	json_object_object_del(o, "allowed_local_media_path");
	json_object_object_add(o, "vision", json_object_new_boolean(false));
	json_object_object_add(o, "image_token_id", json_object_new_int(-1));
	json_object_object_add(o, "future_key", json_object_new_string("ignored"));
	ck_assert(json_object_object_get_ex(o, "generation_defaults", &g));
	json_object_object_add(g, "max_tokens", json_object_new_int(256));
	strbuf b = { 0 }, none = { 0 };
	put_info(&b, o);
	fake_daemon f;
	fake_start(&f, &b, &none, 0, false);
	dclient_model m;
	dclient *c = connect_ok(f.sock, &m);
	ck_assert_str_eq(m.model, "m");
	ck_assert_int_eq(m.n_names, 2);
	ck_assert_str_eq(m.names[1], "org/M");
	ck_assert_str_eq(m.model_dir, "/models/M");
	ck_assert_int_eq(m.max_model_len, 4096);
	ck_assert_int_eq(m.n_eos, 2);
	ck_assert_int_eq(m.eos_ids[1], 8);
	ck_assert(!m.vision);
	ck_assert_int_eq(m.image_token_id, -1);
	ck_assert_int_eq(m.limit_images, 4);
	ck_assert_int_eq(m.min_pixels, 0);
	ck_assert_int_eq(m.max_pixels, 0);
	ck_assert(m.do_sample);
	ck_assert_double_eq_tol(m.temperature, 0.7, 1e-12);
	ck_assert_double_eq_tol(m.top_p, 0.8, 1e-12);
	ck_assert_int_eq(m.top_k, 20);
	ck_assert_double_eq_tol(m.repetition_penalty, 1.05, 1e-12);
	ck_assert_int_eq(m.max_tokens, 256);
	ck_assert_ptr_null(m.api_key);
	ck_assert_ptr_null(m.allowed_local_media_path);
	dclient_free(c);
	dclient_model_deinit(&m);
	fake_stop(&f);
	json_object_put(o);

	/* the full one: optional keys read, max_tokens null is -1 */
	o = info_json();
	strbuf_truncate(&b, 0);
	put_info(&b, o);
	fake_start(&f, &b, &none, 0, false);
	c = connect_ok(f.sock, &m);
	ck_assert(m.vision);
	ck_assert_int_eq(m.image_token_id, 99);
	ck_assert_int_eq(m.min_pixels, 1024);
	ck_assert_int_eq(m.max_pixels, 65536);
	ck_assert_int_eq(m.max_tokens, -1);
	ck_assert_str_eq(m.api_key, "k");
	ck_assert_str_eq(m.allowed_local_media_path, "/srv/media");
	dclient_free(c);
	dclient_model_deinit(&m);
	fake_stop(&f);
	json_object_put(o);
	strbuf_deinit(&b);
}
END_TEST

/* MODEL_INFO, then `after`: the first dclient_next fails with code naming want, then the
 * connection is dead. */
static void assert_next_kills(const strbuf *after, int code, const char *want)
{
	json_object *o = info_json();
	strbuf b = { 0 }, none = { 0 };
	put_info(&b, o);
	strbuf_add(&b, after->s, after->len);
	fake_daemon f;
	fake_start(&f, &b, &none, 0, true);
	dclient_model m;
	dclient *c = connect_ok(f.sock, &m);
	dclient_event ev;
	qerr e = { 0 };
	int rc = dclient_next(c, 5000, &ev, &e);
	ck_assert_msg(rc == -code, "want %s (%s), got %d: %s", qerr_name(code), want, rc, e.msg);
	ck_assert_msg(strstr(e.msg, want), "\"%s\" does not name %s", e.msg, want);
	ck_assert(dclient_dead(c));
	ck_assert_int_eq(dclient_next(c, 0, &ev, &e), -QERR_IO);
	ck_assert_msg(strstr(e.msg, want), "\"%s\" does not repeat %s", e.msg, want);
	ck_assert_int_eq(dclient_cancel(c, 1, &e), -QERR_IO);
	dclient_free(c);
	dclient_model_deinit(&m);
	fake_stop(&f);
	strbuf_deinit(&b);
	json_object_put(o);
}

START_TEST(test_daemon_client_fake_malformed_frames)
{
	strbuf b = { 0 };
	/* TOKENS with n = 0 */
	const uint8_t zero_tokens[9] = { 0 };
	wire_put_frame(&b, WIRE_T_TOKENS, 5, zero_tokens, sizeof(zero_tokens));
	assert_next_kills(&b, QERR_FORMAT, "TOKENS");
	/* TOKENS for request id 0 */
	strbuf_truncate(&b, 0);
	int32_t one = 3;
	wire_tokens t = { .index = 0, .n = 1, .ids = &one };
	wire_tokens_put(&b, 0, &t);
	assert_next_kills(&b, QERR_FORMAT, "id 0");
	/* FINISH cut short (its header says 40 bytes) */
	strbuf_truncate(&b, 0);
	wire_finish fi = { .index = 0, .reason = WIRE_FINISH_STOP, .stop_id = -1 };
	wire_finish_put(&b, 3, &fi);
	b.s[16] = 40;
	strbuf_truncate(&b, b.len - 8);
	assert_next_kills(&b, QERR_FORMAT, "FINISH");
	/* frames the daemon never sends, and a second MODEL_INFO nobody asked for */
	strbuf_truncate(&b, 0);
	wire_put_frame(&b, WIRE_T_HELLO, 0, NULL, 0);
	assert_next_kills(&b, QERR_FORMAT, "HELLO");
	strbuf_truncate(&b, 0);
	wire_put_frame(&b, WIRE_T_CANCEL, 2, NULL, 0);
	assert_next_kills(&b, QERR_FORMAT, "CANCEL");
	strbuf_truncate(&b, 0);
	wire_put_frame(&b, WIRE_T_MODEL_INFO, 0, "{}", 2);
	assert_next_kills(&b, QERR_FORMAT, "MODEL_INFO");
	/* a bad magic after a good frame */
	strbuf_truncate(&b, 0);
	wire_tokens_put(&b, 1, &t);
	size_t at = b.len;
	wire_tokens_put(&b, 1, &t);
	b.s[at] = 'X';
	{
		json_object *o = info_json();
		strbuf all = { 0 }, none = { 0 };
		put_info(&all, o);
		strbuf_add(&all, b.s, b.len);
		fake_daemon f;
		fake_start(&f, &all, &none, 0, false);
		dclient_model m;
		dclient *c = connect_ok(f.sock, &m);
		dclient_event ev;
		qerr e = { 0 };
		ck_assert_int_eq(dclient_next(c, 5000, &ev, &e), 1);
		ck_assert_int_eq(ev.type, DCLIENT_TOKENS);
		ck_assert_int_eq(ev.ids[0], 3);
		ck_assert_int_eq(dclient_next(c, 5000, &ev, &e), -QERR_FORMAT);
		ck_assert_msg(strstr(e.msg, "magic"), "%s", e.msg);
		ck_assert(dclient_dead(c));
		dclient_free(c);
		dclient_model_deinit(&m);
		fake_stop(&f);
		strbuf_deinit(&all);
		json_object_put(o);
	}
	/* the end of the stream */
	strbuf_truncate(&b, 0);
	assert_next_kills(&b, QERR_IO, "closed");
	strbuf_deinit(&b);
}
END_TEST

START_TEST(test_daemon_client_fake_connection_error)
{
	json_object *o = info_json();
	strbuf b = { 0 }, none = { 0 };
	put_info(&b, o);
	wire_error_put(&b, 0, WIRE_E_PROTOCOL, "SUBMIT: images[2].rgb: 1000 bytes, 1200 expected");
	fake_daemon f;
	fake_start(&f, &b, &none, 0, false);
	dclient_model m;
	dclient *c = connect_ok(f.sock, &m);
	dclient_event ev;
	qerr e = { 0 };
	ck_assert_int_eq(dclient_next(c, 5000, &ev, &e), 1);
	ck_assert_int_eq(ev.type, DCLIENT_ERROR);
	ck_assert_uint_eq(ev.id, 0);
	ck_assert_uint_eq(ev.error.code, WIRE_E_PROTOCOL);
	ck_assert_str_eq(ev.error.message, "SUBMIT: images[2].rgb: 1000 bytes, 1200 expected");
	ck_assert(dclient_dead(c));
	ck_assert_int_eq(dclient_next(c, 5000, &ev, &e), -QERR_IO);
	ck_assert_msg(strstr(e.msg, "images[2].rgb"), "%s", e.msg);
	json_object *j = NULL;
	ck_assert_int_eq(dclient_stats(c, 1000, &j, &e), -QERR_IO);
	dclient_free(c);
	dclient_model_deinit(&m);
	fake_stop(&f);
	strbuf_deinit(&b);
	json_object_put(o);
}
END_TEST

START_TEST(test_daemon_client_next_timeout)
{
	/* MODEL_INFO and the first 10 bytes of a TOKENS frame of 1000 ids with logprobs (more than
	 * the client's arrays hold at first); the rest 300 ms later; then an ERROR for request 5 */
	enum { N = 1000 };
	static int32_t ids[N];
	static sampler_logprobs lp[N];
	for (int i = 0; i < N; i++) {
		ids[i] = (i * 37) % 1000;
		lp[i] = (sampler_logprobs){ .id = ids[i], .logprob = -0.5f - (float)i, .n_top = 1,
					    .top_ids = { ids[i] }, .top_logprobs = { -0.5f } };
	}
	wire_tokens t = { .index = 2, .n = N, .ids = ids, .has_logprobs = true, .lp = lp };
	json_object *o = info_json();
	strbuf first = { 0 }, tok = { 0 }, later = { 0 };
	put_info(&first, o);
	wire_tokens_put(&tok, 7, &t);
	strbuf_add(&first, tok.s, 10);
	strbuf_add(&later, tok.s + 10, tok.len - 10);
	wire_error_put(&later, 5, WIRE_E_TOO_LONG, "too long");
	fake_daemon f;
	fake_start(&f, &first, &later, 300, false);
	dclient_model m;
	dclient *c = connect_ok(f.sock, &m);
	dclient_event ev;
	qerr e = { 0 };
	int64_t t0 = now_ms();
	ck_assert_int_eq(dclient_next(c, 50, &ev, &e), 0);
	int64_t waited = now_ms() - t0;
	ck_assert_msg(waited >= 49 && waited < 5000, "waited %lld ms for a 50 ms timeout",
		      (long long)waited);
	ck_assert_int_eq(dclient_next(c, 0, &ev, &e), 0);
	ck_assert(!dclient_dead(c));
	ck_assert_int_eq(dclient_next(c, 10000, &ev, &e), 1);
	ck_assert_int_eq(ev.type, DCLIENT_TOKENS);
	ck_assert_uint_eq(ev.id, 7);
	ck_assert_uint_eq(ev.index, 2);
	ck_assert_uint_eq(ev.n, N);
	ck_assert_ptr_nonnull(ev.lp);
	for (int i = 0; i < N; i++) {
		ck_assert_int_eq(ev.ids[i], ids[i]);
		ck_assert_int_eq(ev.lp[i].id, ids[i]);
		ck_assert(ev.lp[i].logprob == lp[i].logprob);
		ck_assert_int_eq(ev.lp[i].n_top, 1);
		ck_assert_int_eq(ev.lp[i].top_ids[0], ids[i]);
	}
	/* the ERROR right behind it */
	ck_assert_int_eq(dclient_next(c, 5000, &ev, &e), 1);
	ck_assert_int_eq(ev.type, DCLIENT_ERROR);
	ck_assert_uint_eq(ev.id, 5);
	ck_assert_uint_eq(ev.error.code, WIRE_E_TOO_LONG);
	ck_assert_str_eq(ev.error.message, "too long");
	ck_assert_ptr_null(ev.ids);
	ck_assert(!dclient_dead(c));
	/* nothing more: a timeout again, the connection still fine */
	ck_assert_int_eq(dclient_next(c, 20, &ev, &e), 0);
	ck_assert(!dclient_dead(c));
	dclient_free(c);
	dclient_model_deinit(&m);
	fake_stop(&f);
	strbuf_deinit(&first);
	strbuf_deinit(&tok);
	strbuf_deinit(&later);
	json_object_put(o);
}
END_TEST

START_TEST(test_daemon_client_connect_timeout)
{
	/* a socket that listens but never answers: the connect itself succeeds (the backlog) */
	char *dir = tu_mkdtemp("dclient-silent");
	char path[512];
	snprintf(path, sizeof(path), "%s/silent.sock", dir);
	int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un a = sock_addr(path);
	ck_assert_int_eq(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(listen(lfd, 4), 0);
	dclient *c = NULL;
	dclient_model m;
	qerr e = { 0 };
	int64_t t0 = now_ms();
	ck_assert_int_eq(dclient_connect(path, 100, &c, &m, &e), -QERR_IO);
	int64_t waited = now_ms() - t0;
	ck_assert_msg(waited >= 99 && waited < 5000, "waited %lld ms", (long long)waited);
	ck_assert_msg(strstr(e.msg, "MODEL_INFO") && strstr(e.msg, path), "%s", e.msg);
	ck_assert_ptr_null(c);
	close(lfd);
	tu_rmdir(dir);
	free(dir);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("daemon_client");
	TCase *tc = tcase_create("daemon");
	tcase_add_unchecked_fixture(tc, setup_model, teardown_model);
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, test_daemon_client_model_info);
	tcase_add_test(tc, test_daemon_client_submit_tokens_finish);
	tcase_add_test(tc, test_daemon_client_interleaved);
	tcase_add_test(tc, test_daemon_client_cancel_aborts);
	tcase_add_test(tc, test_daemon_client_stats);
	tcase_add_test(tc, test_daemon_client_request_error_keeps_connection);
	tcase_add_test(tc, test_daemon_client_missing_socket);
	tcase_add_test(tc, test_daemon_client_daemon_killed);
	suite_add_tcase(s, tc);
	TCase *fk = tcase_create("fake");
	tcase_set_timeout(fk, 120);
	tcase_add_test(fk, test_daemon_client_fake_garbage_header);
	tcase_add_test(fk, test_daemon_client_fake_model_info_missing_key);
	tcase_add_test(fk, test_daemon_client_fake_model_info_invalid);
	tcase_add_test(fk, test_daemon_client_fake_model_info_optional);
	tcase_add_test(fk, test_daemon_client_fake_malformed_frames);
	tcase_add_test(fk, test_daemon_client_fake_connection_error);
	tcase_add_test(fk, test_daemon_client_next_timeout);
	tcase_add_test(fk, test_daemon_client_connect_timeout);
	suite_add_tcase(s, fk);
	return s;
}

int main(void)
{
	return tu_run_suite(suite());
}
