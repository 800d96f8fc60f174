/*
 * check_api: the responder's HTTP API end to end without a web server — api_handle driven
 * through an in-memory api_io (CGI params, a body, a response buffer) against a real qvld on the
 * tiny model. The web servers themselves are covered by tests/web_*.test.
 *
 * Checked: /v1/models; chat completions non-streaming (OpenAI's shape; the same text as
 * `qvl generate` computes in-process for the same request) and streaming (role, content,
 * finish and usage chunks, [DONE]); n > 1 and logprobs; stop strings; images as data: URLs and
 * file:// under the allowed directory only; /v1/completions with text and token ids;
 * /tokenize and /detokenize; /metrics in Prometheus text; every error status (400, 401, 404,
 * 405, 413, 415, 503) with an OpenAI error object; a client that goes away mid-stream cancels
 * its request in qvld; qvld restarted → served again without restarting the responder.
 */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <json.h>

#include "alloc.h"
#include "api.h"
#include "chat_request.h"
#include "generate.h"
#include "jsonx.h"
#include "mkmodel.h"
#include "strbuf.h"
#include "testutil.h"

static char *model_dir;

static void setup_model(void)
{
	model_dir = tu_mkdtemp("api-model");
	mkmodel_opts o = { .preset = "tiny", .out_dir = model_dir, .seed = 5, .dtype = ST_F32 };
	qerr e = { 0 };
	ck_assert_msg(mkmodel_run(&o, &e) == 0, "%s", e.msg);
}

static void teardown_model(void)
{
	tu_rmdir(model_dir);
	free(model_dir);
}

/* ---- qvld ---- */

typedef struct qvld_proc {
	pid_t pid;
	char *dir;
	char sock[256];
} qvld_proc;

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

static void qvld_start_at(qvld_proc *d)
{
	char qvld[1024];
	const char *b = getenv("QVL_BUILDDIR");
	snprintf(qvld, sizeof(qvld), "%s/qvld", b && *b ? b : ".");
	d->pid = fork();
	ck_assert_int_ge(d->pid, 0);
	if (d->pid == 0) {
		setenv("QVL_CONFIG", "", 1);
		unsetenv("NOTIFY_SOCKET");
		execl(qvld, qvld, "--model", model_dir, "--socket", d->sock, "--served-model-name",
		      "qvl-tiny", "--kv-cache-memory-bytes", "67108864", "--max-model-len", "2048",
		      "--cpu-threads", "1", "--log-level", "warn", (char *)NULL);
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
	ck_abort_msg("qvld did not start");
}

static void qvld_start(qvld_proc *d)
{
	memset(d, 0, sizeof(*d));
	d->dir = tu_mkdtemp("api-qvld");
	snprintf(d->sock, sizeof(d->sock), "%s/qvld.sock", d->dir);
	qvld_start_at(d);
}

static void qvld_kill(qvld_proc *d)
{
	if (d->pid > 0) {
		kill(d->pid, SIGKILL);
		waitpid(d->pid, NULL, 0);
		d->pid = 0;
	}
}

static void qvld_stop(qvld_proc *d)
{
	if (d->pid > 0) {
		int st;
		kill(d->pid, SIGTERM);
		waitpid(d->pid, &st, 0);
		d->pid = 0;
	}
	tu_rmdir(d->dir);
	free(d->dir);
}

/* ---- an in-memory request ---- */

typedef struct fake {
	const char *names[16], *values[16];
	int n;
	const char *body;
	size_t body_len, body_off;
	strbuf out;
	int writes_left;               /* < 0: unlimited; else writes before the client "leaves" */
} fake;

static const char *f_param(void *ctx, const char *name)
{
	fake *f = ctx;
	for (int i = 0; i < f->n; i++)
		if (!strcmp(f->names[i], name))
			return f->values[i];
	return NULL;
}

static long f_read(void *ctx, char *buf, size_t n)
{
	fake *f = ctx;
	size_t k = f->body_len - f->body_off < n ? f->body_len - f->body_off : n;
	memcpy(buf, f->body + f->body_off, k);
	f->body_off += k;
	return (long)k;
}

static int f_write(void *ctx, const char *buf, size_t n)
{
	fake *f = ctx;
	if (f->writes_left == 0)
		return -1;
	if (f->writes_left > 0)
		f->writes_left--;
	strbuf_add(&f->out, buf, n);
	return 0;
}

static int f_flush(void *ctx)
{
	fake *f = ctx;
	return f->writes_left == 0 ? -1 : 0;
}

static bool f_gone(void *ctx)
{
	(void)ctx;
	return false;
}

typedef struct resp {
	int status;
	char *headers;                 /* owned */
	char *body;                    /* owned */
	json_object *json;             /* owned: the body parsed, when JSON */
} resp;

static void resp_free(resp *r)
{
	free(r->headers);
	free(r->body);
	json_object_put(r->json);
}

static api_ctx *ctx_for(const qvld_proc *d, const char *key, const char *media_dir, size_t max_bytes)
{
	api_opts o = { .daemon_socket = d->sock, .api_key = key,
		       .max_request_bytes = max_bytes ? max_bytes : (64u << 20),
		       .allowed_local_media_path = media_dir, .heartbeat_ms = 200 };
	return api_ctx_new(&o);
}

/* Run one request through api_handle. */
static resp call(api_thread *t, const char *method, const char *uri, const char *body,
		 const char *auth, const char *ctype, int writes_left)
{
	fake f = { .body = body ? body : "", .body_len = body ? strlen(body) : 0,
		   .writes_left = writes_left };
	char cl[32];
	snprintf(cl, sizeof(cl), "%zu", f.body_len);
	f.names[f.n] = "REQUEST_METHOD", f.values[f.n++] = method;
	f.names[f.n] = "REQUEST_URI", f.values[f.n++] = uri;
	f.names[f.n] = "CONTENT_LENGTH", f.values[f.n++] = cl;
	if (ctype)
		f.names[f.n] = "CONTENT_TYPE", f.values[f.n++] = ctype;
	if (auth)
		f.names[f.n] = "HTTP_AUTHORIZATION", f.values[f.n++] = auth;
	api_io io = { .ctx = &f, .param = f_param, .read = f_read, .write = f_write,
		      .flush = f_flush, .gone = f_gone };
	api_handle(t, &io);
	resp r = { 0 };
	const char *all = f.out.s ? f.out.s : "";
	ck_assert_msg(!strncmp(all, "Status: ", 8), "no Status header: %.200s", all);
	r.status = atoi(all + 8);
	const char *sep = strstr(all, "\r\n\r\n");
	ck_assert_ptr_nonnull(sep);
	r.headers = xasprintf("%.*s", (int)(sep - all), all);
	r.body = xstrdup(sep + 4);
	r.json = json_tokener_parse(r.body);
	strbuf_deinit(&f.out);
	return r;
}

static resp post(api_thread *t, const char *uri, const char *body)
{
	return call(t, "POST", uri, body, NULL, "application/json", -1);
}

static const char *jstr(json_object *o, const char *path)
{
	json_object *cur = o;
	char buf[256];
	snprintf(buf, sizeof(buf), "%s", path);
	for (char *save = NULL, *k = strtok_r(buf, ".", &save); k; k = strtok_r(NULL, ".", &save)) {
		if (json_object_is_type(cur, json_type_array))
			cur = json_object_array_get_idx(cur, (size_t)atoi(k));
		else if (!json_object_object_get_ex(cur, k, &cur))
			return NULL;
	}
	return cur ? json_object_get_string(cur) : NULL;
}

static void assert_error(const resp *r, int status, const char *sub)
{
	ck_assert_msg(r->status == status, "status %d, want %d: %s", r->status, status, r->body);
	ck_assert_msg(r->json, "error body is not JSON: %s", r->body);
	const char *msg = jstr(r->json, "error.message");
	ck_assert_msg(msg && strstr(msg, sub), "error message '%s' lacks '%s'", msg ? msg : "(none)", sub);
	ck_assert_int_eq(atoi(jstr(r->json, "error.code")), status);
}

/* ---- tests ---- */

START_TEST(test_api_models_health_version)
{
	qvld_proc d;
	qvld_start(&d);
	api_ctx *a = ctx_for(&d, NULL, NULL, 0);
	api_thread *t = api_thread_new(a);
	resp r = call(t, "GET", "/v1/models", NULL, NULL, NULL, -1);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(jstr(r.json, "data.0.id"), "qvl-tiny");
	ck_assert_str_eq(jstr(r.json, "data.0.max_model_len"), "2048");
	resp_free(&r);
	r = call(t, "GET", "/health", NULL, NULL, NULL, -1);
	ck_assert_int_eq(r.status, 200);
	resp_free(&r);
	r = call(t, "GET", "/version", NULL, NULL, NULL, -1);
	ck_assert_int_eq(r.status, 200);
	ck_assert_ptr_nonnull(jstr(r.json, "version"));
	resp_free(&r);
	r = call(t, "GET", "/metrics", NULL, NULL, NULL, -1);
	ck_assert_int_eq(r.status, 200);
	ck_assert_msg(strstr(r.body, "vllm:num_requests_running{model_name=\"qvl-tiny\""), "%.300s", r.body);
	resp_free(&r);
	api_thread_free(t);
	api_ctx_free(a);
	qvld_stop(&d);
}
END_TEST

START_TEST(test_api_chat_matches_generate)
{
	qvld_proc d;
	qvld_start(&d);
	api_ctx *a = ctx_for(&d, NULL, NULL, 0);
	api_thread *t = api_thread_new(a);
	const char *body = "{\"model\": \"qvl-tiny\", \"messages\": [{\"role\": \"user\", \"content\": "
			   "\"Hello there\"}], \"max_tokens\": 12, \"temperature\": 0, \"ignore_eos\": true}";
	resp r = post(t, "/v1/chat/completions", body);
	ck_assert_msg(r.status == 200, "%.300s", r.body);
	ck_assert_str_eq(jstr(r.json, "object"), "chat.completion");
	ck_assert_str_eq(jstr(r.json, "model"), "qvl-tiny");
	ck_assert_str_eq(jstr(r.json, "choices.0.message.role"), "assistant");
	ck_assert_str_eq(jstr(r.json, "choices.0.finish_reason"), "length");
	ck_assert_str_eq(jstr(r.json, "usage.completion_tokens"), "12");
	/* the same request in-process */
	generate_model *gm = NULL;
	qerr e = { 0 };
	ck_assert_msg(generate_model_load(model_dir, 1, &gm, &e) == 0, "%s", e.msg);
	json_object *req = json_tokener_parse(body), *out = NULL;
	chat_request cr;
	ck_assert(chat_request_parse(req, false, &cr, &e) == 0);
	ck_assert_msg(generate_run(gm, &cr, &out, &e) == 0, "%s", e.msg);
	ck_assert_str_eq(jstr(r.json, "choices.0.message.content"), jstr(out, "choices.0.message.content"));
	ck_assert_str_eq(jstr(r.json, "usage.prompt_tokens"), jstr(out, "usage.prompt_tokens"));
	json_object_put(out);
	chat_request_deinit(&cr);
	json_object_put(req);
	generate_model_free(gm);
	resp_free(&r);
	api_thread_free(t);
	api_ctx_free(a);
	qvld_stop(&d);
}
END_TEST

START_TEST(test_api_chat_streaming)
{
	qvld_proc d;
	qvld_start(&d);
	api_ctx *a = ctx_for(&d, NULL, NULL, 0);
	api_thread *t = api_thread_new(a);
	const char *plain = "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}], \"max_tokens\": 10, "
			    "\"temperature\": 0, \"ignore_eos\": true}";
	resp whole = post(t, "/v1/chat/completions", plain);
	ck_assert_int_eq(whole.status, 200);
	const char *streamed = "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}], \"max_tokens\": 10, "
			       "\"temperature\": 0, \"ignore_eos\": true, \"stream\": true, "
			       "\"stream_options\": {\"include_usage\": true}}";
	resp r = post(t, "/v1/chat/completions", streamed);
	ck_assert_int_eq(r.status, 200);
	ck_assert_msg(strstr(r.headers, "text/event-stream"), "%s", r.headers);
	/* walk the events: role first, content deltas, finish, usage, [DONE] */
	strbuf content = { 0 };
	int events = 0;
	bool role = false, finish = false, usage = false, done = false;
	for (char *save = NULL, *ev = strtok_r(r.body, "\n", &save); ev; ev = strtok_r(NULL, "\n", &save)) {
		if (ev[0] == ':')
			continue;              /* heartbeat */
		ck_assert_msg(!strncmp(ev, "data: ", 6), "bad event line: %s", ev);
		ck_assert(!done);
		if (!strcmp(ev + 6, "[DONE]")) {
			done = true;
			continue;
		}
		json_object *c = json_tokener_parse(ev + 6);
		ck_assert_msg(c, "event is not JSON: %s", ev);
		events++;
		ck_assert_str_eq(jstr(c, "object"), "chat.completion.chunk");
		const char *rl = jstr(c, "choices.0.delta.role"), *ct = jstr(c, "choices.0.delta.content");
		const char *fr = jstr(c, "choices.0.finish_reason");
		if (rl) {
			ck_assert(!role && events == 1);
			role = true;
		}
		if (ct)
			strbuf_adds(&content, ct);
		if (fr) {
			ck_assert_str_eq(fr, "length");
			finish = true;
		}
		if (jstr(c, "usage.completion_tokens")) {
			ck_assert(finish);
			ck_assert_str_eq(jstr(c, "usage.completion_tokens"), "10");
			usage = true;
		}
		json_object_put(c);
	}
	ck_assert(role && finish && usage && done);
	ck_assert_str_eq(strbuf_str(&content), jstr(whole.json, "choices.0.message.content"));
	strbuf_deinit(&content);
	resp_free(&r);
	resp_free(&whole);
	api_thread_free(t);
	api_ctx_free(a);
	qvld_stop(&d);
}
END_TEST

START_TEST(test_api_n_logprobs_stop_and_completions)
{
	qvld_proc d;
	qvld_start(&d);
	api_ctx *a = ctx_for(&d, NULL, NULL, 0);
	api_thread *t = api_thread_new(a);
	resp r = post(t, "/v1/chat/completions",
		      "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}], \"max_tokens\": 4, "
		      "\"temperature\": 1, \"seed\": 3, \"n\": 2, \"logprobs\": true, \"top_logprobs\": 3, "
		      "\"ignore_eos\": true}");
	ck_assert_msg(r.status == 200, "%.300s", r.body);
	ck_assert_str_eq(jstr(r.json, "choices.1.index"), "1");
	ck_assert_str_eq(jstr(r.json, "usage.completion_tokens"), "8");
	ck_assert_ptr_nonnull(jstr(r.json, "choices.0.logprobs.content.3.top_logprobs.2.logprob"));
	resp_free(&r);
	/* a stop string taken from the greedy text ends it there */
	resp g = post(t, "/v1/chat/completions",
		      "{\"messages\": [{\"role\": \"user\", \"content\": \"Stop test\"}], \"max_tokens\": 16, "
		      "\"temperature\": 0, \"ignore_eos\": true}");
	const char *text = jstr(g.json, "choices.0.message.content");
	ck_assert(text && strlen(text) > 4);
	char stop[8] = { 0 }, body[512];
	size_t at = strlen(text) / 2;
	while (at > 0 && ((unsigned char)text[at] & 0xc0) == 0x80)
		at--;
	snprintf(stop, sizeof(stop), "%.1s", text + at);
	json_object *js = json_object_new_string(stop);
	snprintf(body, sizeof(body), "{\"messages\": [{\"role\": \"user\", \"content\": \"Stop test\"}], "
		 "\"max_tokens\": 16, \"temperature\": 0, \"ignore_eos\": true, \"stop\": [%s]}",
		 json_object_to_json_string(js));
	json_object_put(js);
	r = post(t, "/v1/chat/completions", body);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(jstr(r.json, "choices.0.finish_reason"), "stop");
	const char *cut = jstr(r.json, "choices.0.message.content");
	ck_assert(strlen(cut) <= at);
	ck_assert(!strncmp(cut, text, strlen(cut)));
	resp_free(&r);
	resp_free(&g);
	/* response_format json_object: the content is one JSON object, streaming or not */
	for (int streamed = 0; streamed < 2; streamed++) {
		char rb[512];
		snprintf(rb, sizeof(rb), "{\"messages\": [{\"role\": \"user\", \"content\": \"JSON please\"}], "
			 "\"max_tokens\": 24, \"temperature\": 1, \"seed\": 9, \"response_format\": "
			 "{\"type\": \"json_object\"}%s}", streamed ? ", \"stream\": true" : "");
		r = post(t, "/v1/chat/completions", rb);
		ck_assert_msg(r.status == 200, "%.300s", r.body);
		strbuf content = { 0 };
		if (!streamed) {
			strbuf_adds(&content, jstr(r.json, "choices.0.message.content"));
		} else {
			for (char *save = NULL, *ev = strtok_r(r.body, "\n", &save); ev; ev = strtok_r(NULL, "\n", &save)) {
				if (strncmp(ev, "data: {", 7))
					continue;
				json_object *c = json_tokener_parse(ev + 6);
				const char *ct = jstr(c, "choices.0.delta.content");
				if (ct)
					strbuf_adds(&content, ct);
				json_object_put(c);
			}
		}
		json_object *o = json_tokener_parse(strbuf_str(&content));
		ck_assert_msg(o && json_object_is_type(o, json_type_object), "not a JSON object: %s",
			      strbuf_str(&content));
		json_object_put(o);
		strbuf_deinit(&content);
		resp_free(&r);
	}
	r = post(t, "/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], "
		 "\"response_format\": {\"type\": \"json_schema\", \"json_schema\": {}}}");
	assert_error(&r, 400, "json_schema");
	resp_free(&r);
	/* /v1/completions: text and token ids */
	r = post(t, "/v1/completions", "{\"prompt\": \"Once upon a time\", \"max_tokens\": 5, "
		 "\"temperature\": 0, \"ignore_eos\": true}");
	ck_assert_msg(r.status == 200, "%.300s", r.body);
	ck_assert_str_eq(jstr(r.json, "object"), "text_completion");
	ck_assert_str_eq(jstr(r.json, "usage.completion_tokens"), "5");
	resp_free(&r);
	r = post(t, "/v1/completions", "{\"prompt\": [9707, 11, 1879], \"max_tokens\": 3, "
		 "\"temperature\": 0, \"ignore_eos\": true, \"logprobs\": true}");
	ck_assert_msg(r.status == 200, "%.300s", r.body);
	ck_assert_str_eq(jstr(r.json, "usage.prompt_tokens"), "3");
	resp_free(&r);
	/* /tokenize and /detokenize */
	r = post(t, "/tokenize", "{\"prompt\": \"Hello, world\"}");
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(jstr(r.json, "tokens.0"), "9707");
	resp_free(&r);
	r = post(t, "/detokenize", "{\"tokens\": [9707, 11, 1879]}");
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(jstr(r.json, "prompt"), "Hello, world");
	resp_free(&r);
	api_thread_free(t);
	api_ctx_free(a);
	qvld_stop(&d);
}
END_TEST

/* A PNG of the image test data as a data: URL (and its path). */
static char *png_data_url(char **path_out)
{
	const char *src = getenv("srcdir");
	char path[1024];
	char rel[1024];
	snprintf(rel, sizeof(rel), "%s/tests/data/images/png_rgb8.png", src && *src ? src : ".");
	ck_assert_msg(realpath(rel, path), "cannot find %s", rel);   /* file:// needs it absolute */
	size_t n = 0;
	char *png = tu_read(path, &n);
	ck_assert_msg(png, "cannot read %s", path);
	static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	strbuf s = { 0 };
	strbuf_adds(&s, "data:image/png;base64,");
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)(unsigned char)png[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)(unsigned char)png[i + 1] << 8;
		if (i + 2 < n)
			v |= (unsigned char)png[i + 2];
		strbuf_addc(&s, b64[v >> 18 & 63]);
		strbuf_addc(&s, b64[v >> 12 & 63]);
		strbuf_addc(&s, i + 1 < n ? b64[v >> 6 & 63] : '=');
		strbuf_addc(&s, i + 2 < n ? b64[v & 63] : '=');
	}
	free(png);
	if (path_out)
		*path_out = xstrdup(path);
	return strbuf_detach(&s, NULL);
}

START_TEST(test_api_images)
{
	qvld_proc d;
	qvld_start(&d);
	char *path = NULL, *url = png_data_url(&path);
	char *dir = xstrdup(path);
	*strrchr(dir, '/') = 0;
	api_ctx *a = ctx_for(&d, NULL, dir, 0);
	api_thread *t = api_thread_new(a);
	char *body = xasprintf("{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image_url\", "
			       "\"image_url\": {\"url\": \"%s\"}}, {\"type\": \"text\", \"text\": \"What?\"}]}], "
			       "\"max_tokens\": 3, \"temperature\": 0}", url);
	resp r = post(t, "/v1/chat/completions", body);
	ck_assert_msg(r.status == 200, "%.300s", r.body);
	const char *pt_data = jstr(r.json, "usage.prompt_tokens");
	ck_assert_int_gt(atoi(pt_data), 20);
	char *pt = xstrdup(pt_data);
	resp_free(&r);
	free(body);
	/* the same file by file:// under the allowed directory: the same prompt */
	body = xasprintf("{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image_url\", "
			 "\"image_url\": {\"url\": \"file://%s\"}}, {\"type\": \"text\", \"text\": \"What?\"}]}], "
			 "\"max_tokens\": 3, \"temperature\": 0}", path);
	r = post(t, "/v1/chat/completions", body);
	ck_assert_msg(r.status == 200, "%.300s", r.body);
	ck_assert_str_eq(jstr(r.json, "usage.prompt_tokens"), pt);
	resp_free(&r);
	free(body);
	/* outside it: refused, naming the part */
	body = xasprintf("{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image_url\", "
			 "\"image_url\": {\"url\": \"file:///etc/hostname\"}}]}], \"max_tokens\": 3}");
	r = post(t, "/v1/chat/completions", body);
	assert_error(&r, 400, "messages[0].content[0]");
	resp_free(&r);
	free(body);
	/* not an image */
	r = post(t, "/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": "
		 "\"image_url\", \"image_url\": {\"url\": \"data:image/png;base64,aGVsbG8=\"}}]}]}");
	assert_error(&r, 400, "messages[0].content[0]");
	resp_free(&r);
	free(pt);
	free(url);
	free(path);
	free(dir);
	api_thread_free(t);
	api_ctx_free(a);
	qvld_stop(&d);
}
END_TEST

START_TEST(test_api_errors)
{
	qvld_proc d;
	qvld_start(&d);
	api_ctx *a = ctx_for(&d, "sk-test", NULL, 4096);
	api_thread *t = api_thread_new(a);
	const char *ok = "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}], \"max_tokens\": 2}";
	resp r = call(t, "POST", "/v1/chat/completions", ok, NULL, "application/json", -1);
	assert_error(&r, 401, "API key");
	resp_free(&r);
	r = call(t, "POST", "/v1/chat/completions", ok, "Bearer sk-wrong", "application/json", -1);
	assert_error(&r, 401, "API key");
	resp_free(&r);
	r = call(t, "POST", "/v1/chat/completions", ok, "Bearer sk-test", "application/json", -1);
	ck_assert_msg(r.status == 200, "%.300s", r.body);
	resp_free(&r);
	/* /health and /metrics stay open, as in vLLM */
	r = call(t, "GET", "/health", NULL, NULL, NULL, -1);
	ck_assert_int_eq(r.status, 200);
	resp_free(&r);
	char *big = xmalloc(8192);
	memset(big, ' ', 8191);
	big[8191] = 0;
	memcpy(big, "{\"messages\": []", 15);
	big[8190] = '}';
	r = call(t, "POST", "/v1/chat/completions", big, "Bearer sk-test", "application/json", -1);
	assert_error(&r, 413, "limit");
	resp_free(&r);
	free(big);
	r = call(t, "POST", "/v1/chat/completions", "{\"messages\": [", "Bearer sk-test", "application/json", -1);
	assert_error(&r, 400, "");
	resp_free(&r);
	r = call(t, "POST", "/v1/chat/completions", ok, "Bearer sk-test", "text/plain", -1);
	assert_error(&r, 415, "JSON");
	resp_free(&r);
	r = call(t, "POST", "/v1/chat/completions",
		 "{\"model\": \"gpt-9\", \"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}]}",
		 "Bearer sk-test", "application/json", -1);
	assert_error(&r, 404, "gpt-9");
	resp_free(&r);
	r = call(t, "GET", "/v1/nothing", NULL, "Bearer sk-test", NULL, -1);
	assert_error(&r, 404, "/v1/nothing");
	resp_free(&r);
	r = call(t, "GET", "/v1/chat/completions", NULL, "Bearer sk-test", NULL, -1);
	assert_error(&r, 405, "POST");
	resp_free(&r);
	r = call(t, "POST", "/v1/chat/completions",
		 "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}], \"max_tokens\": 5000}",
		 "Bearer sk-test", "application/json", -1);
	assert_error(&r, 400, "maximum context length is 2048");
	resp_free(&r);
	r = call(t, "POST", "/v1/chat/completions",
		 "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}], \"temperature\": \"hot\"}",
		 "Bearer sk-test", "application/json", -1);
	assert_error(&r, 400, "temperature");
	resp_free(&r);
	api_thread_free(t);
	api_ctx_free(a);
	qvld_stop(&d);
}
END_TEST

START_TEST(test_api_daemon_down_then_back)
{
	qvld_proc d;
	qvld_start(&d);
	api_ctx *a = ctx_for(&d, NULL, NULL, 0);
	api_thread *t = api_thread_new(a);
	const char *ok = "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}], \"max_tokens\": 2}";
	resp r = post(t, "/v1/chat/completions", ok);
	ck_assert_int_eq(r.status, 200);
	resp_free(&r);
	qvld_kill(&d);
	r = post(t, "/v1/chat/completions", ok);
	assert_error(&r, 503, "daemon");
	ck_assert_msg(strstr(r.headers, "Retry-After"), "%s", r.headers);
	resp_free(&r);
	r = call(t, "GET", "/health", NULL, NULL, NULL, -1);
	ck_assert_int_eq(r.status, 503);
	resp_free(&r);
	/* qvld comes back on the same socket: served again after the backoff */
	qvld_start_at(&d);
	bool served = false;
	for (int i = 0; i < 100 && !served; i++) {
		r = post(t, "/v1/chat/completions", ok);
		served = r.status == 200;
		resp_free(&r);
		if (!served)
			usleep(100000);
	}
	ck_assert_msg(served, "not served after qvld came back");
	api_thread_free(t);
	api_ctx_free(a);
	qvld_stop(&d);
}
END_TEST

START_TEST(test_api_client_gone_cancels)
{
	qvld_proc d;
	qvld_start(&d);
	api_ctx *a = ctx_for(&d, NULL, NULL, 0);
	api_thread *t = api_thread_new(a);
	/* the client leaves after a few writes of a 1500-token stream */
	resp r = call(t, "POST", "/v1/chat/completions",
		      "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}], \"max_tokens\": 1500, "
		      "\"ignore_eos\": true, \"stream\": true}", NULL, "application/json", 4);
	ck_assert_int_eq(r.status, 200);
	resp_free(&r);
	/* the request ended in qvld as aborted, long before 1500 tokens (the gauges are refreshed
	 * after each step: poll) */
	bool seen = false;
	for (int i = 0; i < 300 && !seen; i++) {
		r = call(t, "GET", "/metrics", NULL, NULL, NULL, -1);
		ck_assert_int_eq(r.status, 200);
		seen = strstr(r.body, "finished_reason=\"abort\"} 1") &&
		       strstr(r.body, "vllm:num_requests_running{model_name=\"qvl-tiny\",engine=\"0\"} 0");
		resp_free(&r);
		if (!seen)
			usleep(20000);
	}
	ck_assert_msg(seen, "the request was not aborted in qvld");
	api_thread_free(t);
	api_ctx_free(a);
	qvld_stop(&d);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("api");
	TCase *tc = tcase_create("qvld");
	tcase_add_unchecked_fixture(tc, setup_model, teardown_model);
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, test_api_models_health_version);
	tcase_add_test(tc, test_api_chat_matches_generate);
	tcase_add_test(tc, test_api_chat_streaming);
	tcase_add_test(tc, test_api_n_logprobs_stop_and_completions);
	tcase_add_test(tc, test_api_images);
	tcase_add_test(tc, test_api_errors);
	tcase_add_test(tc, test_api_daemon_down_then_back);
	tcase_add_test(tc, test_api_client_gone_cancels);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run_suite(suite());
}
