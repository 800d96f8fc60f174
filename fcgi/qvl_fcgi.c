/*
 * qvl-fcgi: the FastCGI responder — a pool of threads, each accepting FastCGI requests from the
 * web server and serving them with the API (api.h) through its own connection to qvld.
 *
 *   qvl-fcgi [--listen PATH|HOST:PORT] [--threads N] [--daemon-socket PATH] [--api-key KEY]
 *            [--max-request-bytes N] [--allowed-local-media-path DIR]
 *            [--allowed-media-domains D1,D2] [--log-level LEVEL]
 *
 * The listening socket (notes/fastcgi-systemd-debian.md §2):
 *   - fd 0 when it is a socket (lighttpd bin-path, Apache mod_fcgid, spawn-fcgi, systemd with
 *     StandardInput=socket);
 *   - else fd 3 when systemd passes one (LISTEN_FDS=1, LISTEN_PID = us);
 *   - else --listen (a path, or HOST:PORT / :PORT), opened here.
 * A socket systemd owns is never unlinked or shut down.
 *
 * Signals: libfcgi's own SIGTERM handler does not stop threads blocked in accept(), so SIGTERM
 * and SIGINT are blocked in every thread and taken by sigwait in main, which then sets libfcgi's
 * shutdown flag and interrupts each worker with SIGUSR1 (handled by libfcgi) until they leave
 * FCGX_Accept_r; requests in progress finish first.
 *
 * Exit status: 0 after SIGTERM, 1 when the socket cannot be had, 2 for bad usage.
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <fcgiapp.h>

#include "alloc.h"
#include "api.h"
#include "log.h"
#include "media_fetch.h"

#define MAX_THREADS 1024
#define MAX_DOMAINS 64

typedef struct worker {
	pthread_t th;
	int sock;
	api_ctx *api;                  /* borrowed */
	volatile int done;
} worker;

/* ---- the FastCGI side of api_io ---- */

static const char *fcgi_param(void *ctx, const char *name)
{
	FCGX_Request *r = ctx;
	return FCGX_GetParam(name, r->envp);
}

static long fcgi_read(void *ctx, char *buf, size_t n)
{
	FCGX_Request *r = ctx;
	if (n > (1u << 30))
		n = 1u << 30;
	int got = FCGX_GetStr(buf, (int)n, r->in);
	if (got < 0 || FCGX_GetError(r->in))
		return -1;
	return got;
}

static int fcgi_write(void *ctx, const char *buf, size_t n)
{
	FCGX_Request *r = ctx;
	while (n) {
		int chunk = n > (1u << 30) ? 1 << 30 : (int)n;
		if (FCGX_PutStr(buf, chunk, r->out) != chunk || FCGX_GetError(r->out))
			return -1;
		buf += chunk;
		n -= (size_t)chunk;
	}
	return 0;
}

static int fcgi_flush(void *ctx)
{
	FCGX_Request *r = ctx;
	/* FCGX_FFlush reports a broken connection once; the stream's error stays set */
	FCGX_FFlush(r->out);
	return FCGX_GetError(r->out) ? -1 : 0;
}

/* A peer that closed the FastCGI connection while we are silent (nginx does when its client
 * leaves): POLLRDHUP on the request's socket. */
static bool fcgi_gone(void *ctx)
{
	FCGX_Request *r = ctx;
	if (r->ipcFd < 0)
		return true;
	struct pollfd pf = { .fd = r->ipcFd, .events = POLLRDHUP };
	return poll(&pf, 1, 0) > 0 && (pf.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

static void *worker_main(void *arg)
{
	worker *w = arg;
	FCGX_Request req;
	if (FCGX_InitRequest(&req, w->sock, FCGI_FAIL_ACCEPT_ON_INTR)) {
		log_msg(LOG_LEVEL_ERR, "fcgi", "FCGX_InitRequest failed");
		w->done = 1;
		return NULL;
	}
	api_thread *t = api_thread_new(w->api);
	for (;;) {
		int rc = FCGX_Accept_r(&req);
		if (rc < 0)
			break;
		api_io io = { .ctx = &req, .param = fcgi_param, .read = fcgi_read, .write = fcgi_write,
			      .flush = fcgi_flush, .gone = fcgi_gone };
		api_handle(t, &io);
		FCGX_Finish_r(&req);
	}
	api_thread_free(t);
	FCGX_Free(&req, 0);
	w->done = 1;
	return NULL;
}

static void on_usr1(int sig)
{
	(void)sig;                     /* only to interrupt accept(2) */
}

/* ---- start-up ---- */

static void usage(FILE *f)
{
	fputs("usage: qvl-fcgi [OPTIONS]\n"
	      "  --listen PATH|HOST:PORT      listen here (default: the socket on fd 0, or systemd's)\n"
	      "  --threads N                  worker threads (8)\n"
	      "  --daemon-socket PATH         qvld's socket (/run/qvl/qvld.sock)\n"
	      "  --api-key KEY                require 'Authorization: Bearer KEY' (or $QVL_API_KEY)\n"
	      "  --max-request-bytes N        largest request body (67108864)\n"
	      "  --allowed-local-media-path DIR   file:// images under DIR\n"
	      "  --allowed-media-domains D1,D2    http(s) images from these domains only\n"
	      "  --allow-private-media        fetch images from loopback/private addresses too\n"
	      "  --log-level LEVEL            crit|err|warn|notice|info|debug (info)\n"
	      "  --help, --version\n", f);
}

/* The socket systemd passed (fd 3), or -1. */
static int systemd_socket(void)
{
	const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
	if (!pid || !fds || atol(pid) != (long)getpid() || atoi(fds) < 1)
		return -1;
	return 3;
}

static bool is_socket(int fd)
{
	struct stat st;
	return fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
}

int main(int argc, char **argv)
{
	const char *listen_at = NULL, *daemon_socket = "/run/qvl/qvld.sock", *api_key = NULL;
	const char *local_media = NULL;
	char *domains_arg = NULL;
	int threads = 8;
	long long max_bytes = 64ll << 20;
	bool allow_private = false;
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "threads", required_argument, NULL, 't' },
		{ "daemon-socket", required_argument, NULL, 'd' },
		{ "api-key", required_argument, NULL, 'k' },
		{ "max-request-bytes", required_argument, NULL, 'm' },
		{ "allowed-local-media-path", required_argument, NULL, 'p' },
		{ "allowed-media-domains", required_argument, NULL, 'D' },
		{ "allow-private-media", no_argument, NULL, 'P' },
		{ "log-level", required_argument, NULL, 'L' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		char *end = NULL;
		switch (c) {
		case 'l': listen_at = optarg; break;
		case 't':
			threads = (int)strtol(optarg, &end, 10);
			if (!*optarg || *end || threads < 1 || threads > MAX_THREADS) {
				fprintf(stderr, "qvl-fcgi: --threads %s: expected 1..%d\n", optarg, MAX_THREADS);
				return 2;
			}
			break;
		case 'd': daemon_socket = optarg; break;
		case 'k': api_key = optarg; break;
		case 'm':
			max_bytes = strtoll(optarg, &end, 10);
			if (!*optarg || *end || max_bytes < 1) {
				fprintf(stderr, "qvl-fcgi: --max-request-bytes %s: expected a positive "
					"number\n", optarg);
				return 2;
			}
			break;
		case 'p': local_media = optarg; break;
		case 'D': domains_arg = optarg; break;
		case 'P': allow_private = true; break;
		case 'L': {
			int lv = log_parse_level(optarg);
			if (lv < 0) {
				fprintf(stderr, "qvl-fcgi: --log-level %s: unknown level\n", optarg);
				return 2;
			}
			log_set_level(lv);
			break;
		}
		case 'h': usage(stdout); return 0;
		case 'V': printf("qvl-fcgi %s\n", PACKAGE_VERSION); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "qvl-fcgi: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (!api_key && getenv("QVL_API_KEY") && *getenv("QVL_API_KEY"))
		api_key = getenv("QVL_API_KEY");
	const char *domains[MAX_DOMAINS + 1];
	int n_domains = 0;
	for (char *save = NULL, *d = domains_arg ? strtok_r(domains_arg, ",", &save) : NULL; d;
	     d = strtok_r(NULL, ",", &save)) {
		if (n_domains == MAX_DOMAINS) {
			fprintf(stderr, "qvl-fcgi: --allowed-media-domains: more than %d\n", MAX_DOMAINS);
			return 2;
		}
		domains[n_domains++] = d;
	}
	domains[n_domains] = NULL;

	/* every thread inherits this mask: SIGTERM/SIGINT only through sigwait below */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	if (FCGX_Init()) {
		fprintf(stderr, "qvl-fcgi: FCGX_Init failed\n");
		return 1;
	}
	struct sigaction sa = { .sa_handler = on_usr1 };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR2, &sa, NULL);

	int sock = -1;
	if (listen_at) {
		sock = FCGX_OpenSocket(listen_at, 128);
		if (sock < 0) {
			fprintf(stderr, "qvl-fcgi: --listen %s: cannot listen there\n", listen_at);
			return 1;
		}
	} else if (!FCGX_IsCGI() && is_socket(0)) {
		sock = 0;
	} else if ((sock = systemd_socket()) < 0 || !is_socket(sock)) {
		fprintf(stderr, "qvl-fcgi: no listening socket: run it from a web server (lighttpd "
			"bin-path, mod_fcgid, spawn-fcgi), from systemd socket activation, or with "
			"--listen PATH|HOST:PORT\n");
		return 1;
	}
	qerr me = { 0 };
	if (media_global_init(&me)) {
		fprintf(stderr, "qvl-fcgi: %s\n", me.msg);
		return 1;
	}
	api_opts ao = { .daemon_socket = daemon_socket, .api_key = api_key,
			.max_request_bytes = (size_t)max_bytes, .allowed_local_media_path = local_media,
			.allowed_media_domains = n_domains ? domains : NULL,
			.n_allowed_media_domains = n_domains, .allow_private_media = allow_private,
			.heartbeat_ms = 1000 };
	api_ctx *api = api_ctx_new(&ao);
	worker *w = xcalloc((size_t)threads, sizeof(*w));
	for (int i = 0; i < threads; i++) {
		w[i].sock = sock;
		w[i].api = api;
		if (pthread_create(&w[i].th, NULL, worker_main, &w[i])) {
			fprintf(stderr, "qvl-fcgi: cannot start thread %d\n", i);
			return 1;
		}
	}
	log_msg(LOG_LEVEL_NOTICE, "fcgi", "serving with %d thread(s); qvld at %s", threads, daemon_socket);
	int sig = 0;
	sigwait(&set, &sig);
	log_msg(LOG_LEVEL_NOTICE, "fcgi", "signal %d: finishing requests in progress", sig);
	FCGX_ShutdownPending();
	/* interrupt accept(2) in every worker; re-send until each has left (libfcgi's window) */
	for (int round = 0; round < 600; round++) {
		int left = 0;
		for (int i = 0; i < threads; i++)
			if (!w[i].done) {
				pthread_kill(w[i].th, SIGUSR2);
				left++;
			}
		if (!left)
			break;
		struct timespec ts = { 0, 100 * 1000000L };
		nanosleep(&ts, NULL);
	}
	for (int i = 0; i < threads; i++)
		if (w[i].done)
			pthread_join(w[i].th, NULL);
	api_ctx_free(api);
	media_global_cleanup();
	free(w);
	return 0;
}
