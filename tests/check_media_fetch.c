/*
 * Tests of media_fetch: http fetches against a scripted HTTP/1.1 server on 127.0.0.1 (a thread
 * in each test process; it counts the connections it accepts, so a test can tell that a refused
 * URL was refused before any connection), the SSRF guards (address classes, allowed domains,
 * checks repeated on every redirect hop), the size and time limits, messages without userinfo
 * or query strings, and file:// confinement to one directory. Needs no network beyond loopback.
 *
 * The server is on loopback, so positive http cases pass allow_private = true; the same URLs
 * with allow_private = false must be refused with no connection made.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "media_fetch.h"
#include "testutil.h"

#define IMG_LEN 3000           /* the body of /img, /chunked, /chain/0 */
#define BIG_LEN 5000           /* the body of /big-* */
#define SMALL_MAX 4096         /* max_bytes for the /big-* tests */

/* ---- the scripted server ---- */

static struct {
	int fd;
	int port;
	pthread_t th;
	atomic_int conns;              /* connections accepted so far */
	atomic_bool stop;
} S;

static void pattern(char *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		b[i] = (char)(i * 7 + 3);      /* every byte value, zeros included */
}

static void send_all(int c, const void *p, size_t n)
{
	const char *b = p;
	while (n) {
		ssize_t k = send(c, b, n, MSG_NOSIGNAL);
		if (k <= 0)
			return;                    /* the client gave up; fine */
		b += k;
		n -= (size_t)k;
	}
}

static void send_str(int c, const char *s)
{
	send_all(c, s, strlen(s));
}

/* Status line, "Connection: close", extra (each ending in \r\n), blank line. */
static void send_head(int c, const char *status, const char *extra)
{
	char h[1024];
	snprintf(h, sizeof(h), "HTTP/1.1 %s\r\nConnection: close\r\n%s\r\n", status, extra);
	send_str(c, h);
}

static void send_pattern(int c, size_t n)
{
	char *b = malloc(n);
	pattern(b, n);
	send_all(c, b, n);
	free(b);
}

static void send_chunked(int c, size_t n)
{
	send_head(c, "200 OK", "Transfer-Encoding: chunked\r\nContent-Type: image/png\r\n");
	char *b = malloc(n);
	pattern(b, n);
	for (size_t o = 0; o < n; o += 1000) {
		size_t k = n - o < 1000 ? n - o : 1000;
		char sz[32];
		snprintf(sz, sizeof(sz), "%zx\r\n", k);
		send_str(c, sz);
		send_all(c, b + o, k);
		send_str(c, "\r\n");
	}
	send_str(c, "0\r\n\r\n");
	free(b);
}

static void send_redirect(int c, const char *location)
{
	char extra[512];
	snprintf(extra, sizeof(extra), "Location: %s\r\nContent-Length: 5\r\n", location);
	send_head(c, "302 Found", extra);
	send_str(c, "moved");
}

/* Wait until the client closes (or 5 s pass). */
static void wait_for_close(int c)
{
	char b[256];
	struct pollfd p = { .fd = c, .events = POLLIN };
	long long end = time(NULL) + 5;
	while (time(NULL) < end && poll(&p, 1, 100) >= 0) {
		if ((p.revents & POLLIN) && recv(c, b, sizeof(b), 0) <= 0)
			return;
		if (p.revents & (POLLHUP | POLLERR))
			return;
	}
}

static void serve(int c)
{
	struct timeval tv = { .tv_sec = 3 };
	setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	char req[4096];
	size_t n = 0;
	while (n < sizeof(req) - 1) {
		ssize_t k = recv(c, req + n, sizeof(req) - 1 - n, 0);
		if (k <= 0)
			return;
		n += (size_t)k;
		req[n] = 0;
		if (strstr(req, "\r\n\r\n"))
			break;
	}
	char path[1024];
	if (sscanf(req, "GET %1023s HTTP/1.1", path) != 1)
		return;
	path[strcspn(path, "?")] = 0;
	char loc[512], extra[256];
	int k;
	if (!strcmp(path, "/img") || !strcmp(path, "/chain/0")) {
		snprintf(extra, sizeof(extra), "Content-Length: %d\r\nContent-Type: image/png\r\n",
			 IMG_LEN);
		send_head(c, "200 OK", extra);
		send_pattern(c, IMG_LEN);
	} else if (!strcmp(path, "/chunked")) {
		send_chunked(c, IMG_LEN);
	} else if (!strcmp(path, "/empty")) {
		send_head(c, "200 OK", "Content-Length: 0\r\n");
	} else if (!strcmp(path, "/missing")) {
		send_head(c, "404 Not Found", "Content-Length: 9\r\n");
		send_str(c, "not found");
	} else if (sscanf(path, "/chain/%d", &k) == 1 && k > 0) {
		/* odd hops redirect by absolute URL, even ones by a relative reference */
		if (k % 2)
			snprintf(loc, sizeof(loc), "http://127.0.0.1:%d/chain/%d", S.port, k - 1);
		else
			snprintf(loc, sizeof(loc), "/chain/%d", k - 1);
		send_redirect(c, loc);
	} else if (!strcmp(path, "/to-file")) {
		send_redirect(c, "file:///etc/passwd");
	} else if (!strcmp(path, "/to-gopher")) {
		snprintf(loc, sizeof(loc), "gopher://127.0.0.1:%d/_GET%%20/img", S.port);
		send_redirect(c, loc);
	} else if (!strcmp(path, "/to-localhost")) {
		snprintf(loc, sizeof(loc), "http://localhost:%d/img", S.port);
		send_redirect(c, loc);
	} else if (!strcmp(path, "/to-secret")) {
		send_redirect(c, "/missing?sig=SECRET2");
	} else if (!strcmp(path, "/no-location")) {
		send_head(c, "302 Found", "Content-Length: 0\r\n");
	} else if (!strcmp(path, "/big-cl")) {
		snprintf(extra, sizeof(extra), "Content-Length: %d\r\n", BIG_LEN);
		send_head(c, "200 OK", extra);
		send_pattern(c, BIG_LEN);
	} else if (!strcmp(path, "/big-close")) {
		send_head(c, "200 OK", "");
		send_pattern(c, BIG_LEN);
	} else if (!strcmp(path, "/big-chunked")) {
		send_chunked(c, BIG_LEN);
	} else if (!strcmp(path, "/slow")) {
		snprintf(extra, sizeof(extra), "Content-Length: %d\r\n", IMG_LEN);
		send_head(c, "200 OK", extra);
		send_pattern(c, 10);
		wait_for_close(c);
	} else {
		send_head(c, "500 Internal Server Error", "Content-Length: 0\r\n");
	}
}

static void *srv_main(void *arg)
{
	(void)arg;
	while (!atomic_load(&S.stop)) {
		struct pollfd p = { .fd = S.fd, .events = POLLIN };
		if (poll(&p, 1, 50) <= 0)
			continue;
		int c = accept(S.fd, NULL, NULL);
		if (c < 0)
			continue;
		atomic_fetch_add(&S.conns, 1);
		serve(c);
		close(c);
	}
	return NULL;
}

static void setup(void)
{
	qerr e = { 0 };
	ck_assert_msg(media_global_init(&e) == 0, "%s", e.msg);
	S.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(S.fd, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	ck_assert_int_eq(bind(S.fd, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(listen(S.fd, 16), 0);
	socklen_t al = sizeof(a);
	ck_assert_int_eq(getsockname(S.fd, (struct sockaddr *)&a, &al), 0);
	S.port = ntohs(a.sin_port);
	atomic_store(&S.conns, 0);
	atomic_store(&S.stop, false);
	ck_assert_int_eq(pthread_create(&S.th, NULL, srv_main, NULL), 0);
}

static void teardown(void)
{
	atomic_store(&S.stop, true);
	pthread_join(S.th, NULL);
	close(S.fd);
	media_global_cleanup();
}

/* ---- helpers ---- */

/* "http://127.0.0.1:<port>" + path (a printf format taking the port where it has %d, else
 * appended); rotating buffers so that a few can be live at once. */
static const char *url(const char *fmt)
{
	static char bufs[8][512];
	static int next;
	char *b = bufs[next++ % 8];
	if (strstr(fmt, "%d"))
		snprintf(b, 512, fmt, S.port);
	else
		snprintf(b, 512, "http://127.0.0.1:%d%s", S.port, fmt);
	return b;
}

static media_opts loopback_opts(void)
{
	media_opts o;
	media_opts_init(&o);
	o.allow_private = true;
	return o;
}

static void assert_pattern(const char *b, size_t n, size_t want)
{
	ck_assert_uint_eq(n, want);
	char *p = malloc(want);
	pattern(p, want);
	ck_assert_msg(!memcmp(b, p, want), "body differs from the pattern");
	ck_assert_int_eq(b[n], 0);
	free(p);
}

/* media_fetch(u) succeeds with the IMG_LEN pattern. */
static void assert_fetches_image(const char *u, const media_opts *o, size_t want)
{
	char *b = NULL;
	size_t n = 0;
	qerr e = { 0 };
	int rc = media_fetch(u, o, &b, &n, &e);
	ck_assert_msg(rc == 0, "%s: %s", u, e.msg);
	assert_pattern(b, n, want);
	free(b);
}

/* media_fetch(u) fails with code and a message holding want; the message comes back in *e. */
static void assert_fails(const char *u, const media_opts *o, int code, const char *want, qerr *e)
{
	char *b = (char *)"poison";
	size_t n = 99;
	memset(e, 0, sizeof(*e));
	int rc = media_fetch(u, o, &b, &n, e);
	ck_assert_msg(rc == -code, "%s: rc %d, want %d (%s)", u, rc, -code, e->msg);
	ck_assert_int_eq(e->code, code);
	ck_assert_ptr_null(b);
	ck_assert_uint_eq(n, 0);
	ck_assert_msg(strstr(e->msg, want), "%s: message \"%s\" lacks \"%s\"", u, e->msg, want);
}

static void assert_lacks(const qerr *e, const char *secret)
{
	ck_assert_msg(!strstr(e->msg, secret), "message \"%s\" shows \"%s\"", e->msg, secret);
}

/* The server accepted exactly n connections (after letting a late one land). */
static void assert_connections(int n)
{
	usleep(100 * 1000);
	ck_assert_int_eq(atomic_load(&S.conns), n);
}

/* media_addr_reason(text) is NULL (want NULL) or contains want. */
static void assert_addr(const char *text, const char *want)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	if (strchr(text, ':')) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		s6->sin6_family = AF_INET6;
		ck_assert_int_eq(inet_pton(AF_INET6, text, &s6->sin6_addr), 1);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		s4->sin_family = AF_INET;
		ck_assert_int_eq(inet_pton(AF_INET, text, &s4->sin_addr), 1);
	}
	const char *why = media_addr_reason((struct sockaddr *)&ss);
	if (!want)
		ck_assert_msg(why == NULL, "%s refused as %s", text, why);
	else
		ck_assert_msg(why && strstr(why, want), "%s: got %s, want %s", text,
			      why ? why : "public", want);
}

/* ---- tests ---- */

START_TEST(test_media_fetch_classifies_addresses)
{
	static const struct { const char *addr, *why; } table[] = {
		/* IPv4 refused */
		{ "0.0.0.0", "this network" }, { "0.1.2.3", "this network" },
		{ "10.0.0.1", "private" }, { "10.255.255.255", "private" },
		{ "100.64.0.1", "CGNAT" }, { "100.127.255.255", "CGNAT" },
		{ "127.0.0.1", "loopback" }, { "127.255.255.254", "loopback" },
		{ "169.254.169.254", "link-local" },
		{ "172.16.0.1", "private" }, { "172.31.255.255", "private" },
		{ "192.0.0.8", "IETF" }, { "192.0.2.1", "documentation" },
		{ "192.88.99.1", "6to4" },
		{ "192.168.1.1", "private" },
		{ "198.18.0.1", "benchmarking" }, { "198.19.255.255", "benchmarking" },
		{ "198.51.100.7", "documentation" }, { "203.0.113.9", "documentation" },
		{ "224.0.0.1", "multicast" }, { "239.255.255.250", "multicast" },
		{ "240.0.0.1", "reserved" }, { "255.255.255.255", "reserved" },
		/* IPv4 public, including the neighbours of refused ranges */
		{ "1.1.1.1", NULL }, { "8.8.8.8", NULL }, { "9.255.255.255", NULL },
		{ "11.0.0.0", NULL }, { "100.63.255.255", NULL }, { "100.128.0.0", NULL },
		{ "126.255.255.255", NULL }, { "128.0.0.0", NULL }, { "169.253.255.255", NULL },
		{ "169.255.0.0", NULL }, { "172.15.255.255", NULL }, { "172.32.0.0", NULL },
		{ "192.0.1.0", NULL }, { "192.167.255.255", NULL }, { "192.169.0.0", NULL },
		{ "198.17.255.255", NULL }, { "198.20.0.0", NULL }, { "223.255.255.255", NULL },
		/* IPv6 refused */
		{ "::", "unspecified" }, { "::1", "loopback" },
		{ "::ffff:127.0.0.1", "loopback" }, { "::ffff:10.1.2.3", "private" },
		{ "::ffff:169.254.169.254", "link-local" }, { "::ffff:0.0.0.0", "this network" },
		{ "::127.0.0.1", "IPv4-compatible" },
		{ "64:ff9b::7f00:1", "loopback" }, { "64:ff9b::a00:1", "private" },
		{ "64:ff9b:1::1", "not global" },
		{ "::ffff:0:7f00:1", "not global" },
		{ "100::1", "not global" },
		{ "fe80::1", "link-local" }, { "febf::1", "link-local" },
		{ "fec0::1", "site-local" },
		{ "fc00::1", "unique local" }, { "fd12:3456::1", "unique local" },
		{ "ff02::1", "multicast" }, { "ff0e::1", "multicast" },
		{ "2001::1", "Teredo" }, { "2001:10::1", "IETF" },
		{ "2001:db8::1", "documentation" }, { "3fff::1", "documentation" },
		{ "2002:7f00:1::1", "loopback" }, { "2002:c0a8:101::1", "private" },
		{ "4000::1", "not global" }, { "1fff:ffff::1", "not global" },
		/* IPv6 public */
		{ "2606:4700:4700::1111", NULL }, { "2001:4860:4860::8888", NULL },
		{ "2a00:1450:4001::1", NULL }, { "2001:200::1", NULL },
		{ "::ffff:8.8.8.8", NULL }, { "64:ff9b::808:808", NULL },
		{ "2002:808:808::1", NULL }, { "3fff:1000::1", NULL },
	};
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
		assert_addr(table[i].addr, table[i].why);
	struct sockaddr other = { .sa_family = AF_UNIX };
	ck_assert_str_eq(media_addr_reason(&other), "not IP");
}
END_TEST

START_TEST(test_media_fetch_matches_allowed_domains)
{
	const char *const list[] = { "example.com", ".cdn.example.net", "images.example.org.",
				     "192.0.2.7", NULL };
	const char *const empty[] = { NULL };
	ck_assert(media_host_allowed("anything.test", NULL));
	ck_assert(!media_host_allowed("example.com", empty));

	ck_assert(media_host_allowed("example.com", list));
	ck_assert(media_host_allowed("EXAMPLE.com", list));
	ck_assert(media_host_allowed("example.com.", list));
	ck_assert(media_host_allowed("a.example.com", list));
	ck_assert(media_host_allowed("a.b.example.com", list));
	ck_assert(media_host_allowed("cdn.example.net", list));
	ck_assert(media_host_allowed("x.cdn.example.net", list));
	ck_assert(media_host_allowed("images.example.org", list));
	ck_assert(media_host_allowed("192.0.2.7", list));

	ck_assert(!media_host_allowed("evilexample.com", list));
	ck_assert(!media_host_allowed("example.com.evil.test", list));
	ck_assert(!media_host_allowed("xexample.com", list));
	ck_assert(!media_host_allowed("com", list));
	ck_assert(!media_host_allowed("example.net", list));
	ck_assert(!media_host_allowed("evilcdn.example.net", list));
	ck_assert(!media_host_allowed("example.org", list));
	ck_assert(!media_host_allowed("192.0.2.70", list));
	ck_assert(!media_host_allowed("", list));
}
END_TEST

START_TEST(test_media_fetch_gets_a_body)
{
	media_opts o = loopback_opts();
	assert_fetches_image(url("/img"), &o, IMG_LEN);
	assert_fetches_image(url("/chunked"), &o, IMG_LEN);
	assert_fetches_image(url("HTTP://127.0.0.1:%d/img"), &o, IMG_LEN);
	assert_fetches_image(url("http://localhost:%d/img"), &o, IMG_LEN);
	/* spellings of 127.0.0.1 reach the address that was resolved and checked */
	assert_fetches_image(url("http://127.1:%d/img"), &o, IMG_LEN);
	assert_fetches_image(url("http://2130706433:%d/img"), &o, IMG_LEN);
	assert_connections(6);
}
END_TEST

START_TEST(test_media_fetch_accepts_exactly_max_bytes)
{
	media_opts o = loopback_opts();
	o.max_bytes = IMG_LEN;
	assert_fetches_image(url("/img"), &o, IMG_LEN);
	assert_fetches_image(url("/chunked"), &o, IMG_LEN);
	qerr e;
	o.max_bytes = IMG_LEN - 1;
	assert_fails(url("/img"), &o, QERR_LIMIT, "more than 2999 bytes", &e);
	assert_fails(url("/chunked"), &o, QERR_LIMIT, "more than 2999 bytes", &e);
}
END_TEST

START_TEST(test_media_fetch_reports_http_status)
{
	media_opts o = loopback_opts();
	qerr e;
	char want[256];
	snprintf(want, sizeof(want), "image URL http://127.0.0.1:%d/missing: HTTP 404", S.port);
	assert_fails(url("/missing"), &o, QERR_IO, want, &e);
	assert_fails(url("/nothing-here"), &o, QERR_IO, ": HTTP 500", &e);
	assert_fails(url("/empty"), &o, QERR_FORMAT, "empty body", &e);
}
END_TEST

START_TEST(test_media_fetch_follows_redirect_chain)
{
	media_opts o = loopback_opts();
	assert_fetches_image(url("/chain/5"), &o, IMG_LEN);
	assert_connections(6);
	qerr e;
	o.max_redirects = 2;
	assert_fails(url("/chain/3"), &o, QERR_LIMIT, "too many redirects", &e);
	assert_connections(6 + 3);
	ck_assert_ptr_nonnull(strstr(e.msg, "(redirected to "));
	o.max_redirects = 0;
	assert_fails(url("/chain/1"), &o, QERR_LIMIT, "too many redirects (more than 0)", &e);
	o.max_redirects = 1;
	assert_fetches_image(url("/chain/1"), &o, IMG_LEN);
}
END_TEST

START_TEST(test_media_fetch_refuses_redirect_to_other_schemes)
{
	media_opts o = loopback_opts();
	o.allowed_local_media_path = "/";   /* even where file:// itself would be allowed */
	qerr e;
	assert_fails(url("/to-file"), &o, QERR_UNSUPPORTED, "redirect to unsupported scheme file", &e);
	assert_fails(url("/to-gopher"), &o, QERR_UNSUPPORTED, "unsupported scheme gopher", &e);
	assert_connections(2);
	assert_fails(url("/no-location"), &o, QERR_INVALID, "without a Location", &e);
}
END_TEST

START_TEST(test_media_fetch_rechecks_host_on_redirect)
{
	media_opts o = loopback_opts();
	const char *const only_ip[] = { "127.0.0.1", NULL };
	o.allowed_domains = only_ip;
	qerr e;
	assert_fetches_image(url("/img"), &o, IMG_LEN);
	assert_fails(url("/to-localhost"), &o, QERR_INVALID, "host localhost is not in the allowed domains",
		     &e);
	ck_assert_ptr_nonnull(strstr(e.msg, "(redirected to http://localhost:"));
	assert_connections(2);              /* the second hop never connected */
}
END_TEST

START_TEST(test_media_fetch_caps_size_from_content_length)
{
	media_opts o = loopback_opts();
	o.max_bytes = SMALL_MAX;
	qerr e;
	assert_fails(url("/big-cl"), &o, QERR_LIMIT, ": more than 4 KiB", &e);
	o.max_bytes = BIG_LEN;
	assert_fetches_image(url("/big-cl"), &o, BIG_LEN);
}
END_TEST

START_TEST(test_media_fetch_caps_size_while_receiving)
{
	media_opts o = loopback_opts();
	o.max_bytes = SMALL_MAX;
	qerr e;
	assert_fails(url("/big-close"), &o, QERR_LIMIT, ": more than 4 KiB", &e);
	assert_fails(url("/big-chunked"), &o, QERR_LIMIT, ": more than 4 KiB", &e);
	o.max_bytes = BIG_LEN;
	assert_fetches_image(url("/big-close"), &o, BIG_LEN);
	assert_fetches_image(url("/big-chunked"), &o, BIG_LEN);
}
END_TEST

START_TEST(test_media_fetch_times_out)
{
	media_opts o = loopback_opts();
	o.timeout_s = 1;
	qerr e;
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_fails(url("/slow"), &o, QERR_IO, ": timed out after 1 s", &e);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
	ck_assert_msg(s >= 0.9 && s < 4.0, "took %.2f s", s);
}
END_TEST

START_TEST(test_media_fetch_refuses_private_addresses_before_connecting)
{
	media_opts o;
	media_opts_init(&o);
	qerr e;
	assert_fails(url("/img"), &o, QERR_INVALID, ": address 127.0.0.1 is not allowed (loopback)", &e);
	assert_fails(url("/img"), NULL, QERR_INVALID, "address 127.0.0.1 is not allowed", &e);
	assert_fails(url("http://localhost:%d/img"), &o, QERR_INVALID, "is not allowed (loopback)", &e);
	assert_fails(url("http://2130706433:%d/img"), &o, QERR_INVALID, "address 127.0.0.1 ", &e);
	assert_fails(url("http://0x7f000001:%d/img"), &o, QERR_INVALID, "address 127.0.0.1 ", &e);
	assert_fails(url("http://0177.0.0.1:%d/img"), &o, QERR_INVALID, "address 127.0.0.1 ", &e);
	assert_fails(url("http://127.1:%d/img"), &o, QERR_INVALID, "address 127.0.0.1 ", &e);
	assert_fails(url("http://0:%d/img"), &o, QERR_INVALID, "address 0.0.0.0 ", &e);
	assert_fails(url("http://[::1]:%d/img"), &o, QERR_INVALID, "address ::1 is not allowed", &e);
	assert_fails(url("http://[::ffff:127.0.0.1]:%d/img"), &o, QERR_INVALID, "(loopback)", &e);
	assert_fails(url("http://[::ffff:7f00:1]:%d/img"), &o, QERR_INVALID, "(loopback)", &e);
	assert_fails("http://169.254.169.254/latest/meta-data/", &o, QERR_INVALID,
		     "address 169.254.169.254 is not allowed (link-local)", &e);
	assert_fails(url("http://10.0.0.1:%d/img"), &o, QERR_INVALID, "(private)", &e);
	assert_fails(url("http://[fe80::1%%25eth0]:%d/img"), &o, QERR_INVALID, "zone", &e);
	assert_connections(0);
}
END_TEST

START_TEST(test_media_fetch_refuses_hosts_outside_allowed_domains_before_connecting)
{
	media_opts o = loopback_opts();
	const char *const list[] = { "example.com", NULL };
	o.allowed_domains = list;
	qerr e;
	assert_fails(url("/img"), &o, QERR_INVALID, "host 127.0.0.1 is not in the allowed domains", &e);
	assert_fails(url("http://localhost:%d/img"), &o, QERR_INVALID, "host localhost is not", &e);
	assert_connections(0);
}
END_TEST

START_TEST(test_media_fetch_refuses_userinfo)
{
	media_opts o = loopback_opts();
	qerr e;
	assert_fails(url("http://user:hunter2@127.0.0.1:%d/img"), &o, QERR_INVALID, "credentials", &e);
	assert_lacks(&e, "hunter2");
	assert_lacks(&e, "user:");
	ck_assert_ptr_nonnull(strstr(e.msg, "http://127.0.0.1:"));
	/* "trusted@other": the host is other, and it is refused for the userinfo alone */
	assert_fails(url("http://example.com@127.0.0.1:%d/img"), &o, QERR_INVALID, "credentials", &e);
	assert_fails(url("http://t0ken@127.0.0.1:%d/img"), &o, QERR_INVALID, "credentials", &e);
	assert_lacks(&e, "t0ken");
	assert_connections(0);
}
END_TEST

START_TEST(test_media_fetch_hides_query_strings)
{
	media_opts o = loopback_opts();
	qerr e;
	assert_fails(url("/missing?token=SECRET1&x=1"), &o, QERR_IO, "/missing: HTTP 404", &e);
	assert_lacks(&e, "SECRET1");
	assert_lacks(&e, "token");
	assert_fails(url("/missing#frag-SECRET3"), &o, QERR_IO, "HTTP 404", &e);
	assert_lacks(&e, "SECRET3");
	/* a redirect's query string is hidden too */
	assert_fails(url("/to-secret"), &o, QERR_IO, "/to-secret (redirected to http://127.0.0.1:", &e);
	assert_lacks(&e, "SECRET2");
	ck_assert_ptr_nonnull(strstr(e.msg, "/missing): HTTP 404"));
	/* and a refused one */
	media_opts strict;
	media_opts_init(&strict);
	assert_fails(url("/img?key=SECRET4"), &strict, QERR_INVALID, "/img: address", &e);
	assert_lacks(&e, "SECRET4");
}
END_TEST

START_TEST(test_media_fetch_refuses_unsupported_schemes)
{
	media_opts o = loopback_opts();
	o.allowed_local_media_path = "/";
	qerr e;
	assert_fails("ftp://127.0.0.1/a.png", &o, QERR_UNSUPPORTED, "unsupported scheme ftp", &e);
	assert_fails("gopher://127.0.0.1/_x", &o, QERR_UNSUPPORTED, "unsupported scheme gopher", &e);
	assert_fails("data:image/png;base64,AAAA", &o, QERR_UNSUPPORTED, "unsupported scheme data",
		     &e);
	assert_fails("javascript:alert(1)", &o, QERR_UNSUPPORTED, "unsupported scheme javascript",
		     &e);
	assert_fails("dict://127.0.0.1:11211/stat", &o, QERR_UNSUPPORTED, "scheme dict", &e);
	assert_fails("relative/a.png", &o, QERR_INVALID, "not an absolute URL", &e);
	assert_fails("", &o, QERR_INVALID, "not an absolute URL", &e);
	assert_fails("https://", &o, QERR_INVALID, "malformed URL", &e);
	assert_fails("http://exa mple.com/a.png", &o, QERR_INVALID, "malformed URL", &e);
	assert_fails("file:/etc/passwd", &o, QERR_INVALID, "file:///absolute/path", &e);
	assert_fails("file://otherhost/etc/passwd", &o, QERR_INVALID, "file:///absolute/path", &e);
	assert_connections(0);
}
END_TEST

START_TEST(test_media_fetch_rejects_bad_options)
{
	media_opts o = loopback_opts();
	qerr e;
	o.max_bytes = 0;
	assert_fails(url("/img"), &o, QERR_INVALID, "max_bytes", &e);
	o = loopback_opts();
	o.timeout_s = 0;
	assert_fails(url("/img"), &o, QERR_INVALID, "timeouts", &e);
	o = loopback_opts();
	o.connect_timeout_s = -1;
	assert_fails(url("/img"), &o, QERR_INVALID, "timeouts", &e);
	o = loopback_opts();
	o.max_redirects = -1;
	assert_fails(url("/img"), &o, QERR_INVALID, "max_redirects", &e);
	assert_connections(0);
	media_opts d;
	media_opts_init(&d);
	ck_assert_uint_eq(d.max_bytes, 64u << 20);
	ck_assert_int_eq(d.connect_timeout_s, 10);
	ck_assert_int_eq(d.timeout_s, 30);
	ck_assert_int_eq(d.max_redirects, 5);
	ck_assert(!d.allow_private);
	ck_assert_ptr_null(d.allowed_domains);
	ck_assert_ptr_null(d.allowed_local_media_path);
}
END_TEST

/* ---- local files ---- */

static char *media_dir, *outside_dir;

static void files_setup(void)
{
	media_dir = tu_mkdtemp("media");
	outside_dir = tu_mkdtemp("outside");
	char p[1024], q[1024], b[IMG_LEN];
	pattern(b, sizeof(b));
	snprintf(p, sizeof(p), "%s/a.png", media_dir);
	tu_write(p, b, sizeof(b));
	snprintf(p, sizeof(p), "%s/with space.png", media_dir);
	tu_write(p, b, sizeof(b));
	snprintf(p, sizeof(p), "%s/empty.png", media_dir);
	tu_write(p, b, 0);
	snprintf(p, sizeof(p), "%s/secret.png", outside_dir);
	tu_write(p, b, sizeof(b));
	snprintf(p, sizeof(p), "%s/sub", media_dir);
	ck_assert_int_eq(mkdir(p, 0700), 0);
	snprintf(p, sizeof(p), "%s/link-in.png", media_dir);
	ck_assert_int_eq(symlink("a.png", p), 0);
	snprintf(p, sizeof(p), "%s/link-out.png", media_dir);
	snprintf(q, sizeof(q), "%s/secret.png", outside_dir);
	ck_assert_int_eq(symlink(q, p), 0);
	snprintf(p, sizeof(p), "%s/media-link", outside_dir);
	ck_assert_int_eq(symlink(media_dir, p), 0);
}

static void files_teardown(void)
{
	char p[1024];
	snprintf(p, sizeof(p), "%s/sub", media_dir);
	rmdir(p);
	tu_rmdir(media_dir);
	tu_rmdir(outside_dir);
	free(media_dir);
	free(outside_dir);
}

/* "file://" + dir + rest, in rotating buffers. */
static const char *file_url(const char *dir, const char *rest)
{
	static char bufs[4][2048];
	static int next;
	char *b = bufs[next++ % 4];
	snprintf(b, 2048, "file://%s%s", dir, rest);
	return b;
}

static media_opts file_opts(void)
{
	media_opts o;
	media_opts_init(&o);
	o.allowed_local_media_path = media_dir;
	return o;
}

START_TEST(test_media_fetch_reads_files_inside_allowed_dir)
{
	media_opts o = file_opts();
	assert_fetches_image(file_url(media_dir, "/a.png"), &o, IMG_LEN);
	char u[1024];
	snprintf(u, sizeof(u), "file://localhost%s/a.png", media_dir);
	assert_fetches_image(u, &o, IMG_LEN);
	snprintf(u, sizeof(u), "%s/a.png", media_dir);           /* a plain absolute path */
	assert_fetches_image(u, &o, IMG_LEN);
	assert_fetches_image(file_url(media_dir, "/with%20space.png"), &o, IMG_LEN);
	assert_fetches_image(file_url(media_dir, "/link-in.png"), &o, IMG_LEN);
	assert_fetches_image(file_url(media_dir, "/sub/../a.png"), &o, IMG_LEN);
	/* the allowed directory given with a trailing slash, or through a symlink */
	char d[1024];
	snprintf(d, sizeof(d), "%s/", media_dir);
	o.allowed_local_media_path = d;
	assert_fetches_image(file_url(media_dir, "/a.png"), &o, IMG_LEN);
	snprintf(d, sizeof(d), "%s/media-link", outside_dir);
	o.allowed_local_media_path = d;
	assert_fetches_image(file_url(d, "/a.png"), &o, IMG_LEN);
	assert_fetches_image(file_url(media_dir, "/a.png"), &o, IMG_LEN);
}
END_TEST

START_TEST(test_media_fetch_refuses_files_outside_allowed_dir)
{
	media_opts o = file_opts();
	qerr e;
	assert_fails(file_url(outside_dir, "/secret.png"), &o, QERR_INVALID,
		     ": not under the allowed media directory", &e);
	assert_fails(file_url(media_dir, "/link-out.png"), &o, QERR_INVALID, "not under", &e);
	assert_fails(file_url(media_dir, "/../"), &o, QERR_INVALID, "not under", &e);
	assert_fails(file_url(media_dir, ""), &o, QERR_INVALID, "not under", &e);
	assert_fails("file:///etc/passwd", &o, QERR_INVALID, "not under", &e);
	/* a missing file outside says "not under", not "missing": no oracle for other paths */
	assert_fails(file_url(outside_dir, "/nope.png"), &o, QERR_INVALID, "not under", &e);
	assert_fails(file_url(media_dir, "/../nope.png"), &o, QERR_INVALID, "not under", &e);
	/* a sibling whose name starts with the directory's */
	char u[1024];
	snprintf(u, sizeof(u), "%sx/a.png", media_dir);
	assert_fails(u, &o, QERR_INVALID, "not under", &e);
}
END_TEST

START_TEST(test_media_fetch_refuses_directories_and_missing_files)
{
	media_opts o = file_opts();
	qerr e;
	assert_fails(file_url(media_dir, "/sub"), &o, QERR_INVALID, "not a regular file", &e);
	assert_fails(file_url(media_dir, "/nope.png"), &o, QERR_MISSING, "no such file", &e);
	assert_fails(file_url(media_dir, "/sub/nope/x.png"), &o, QERR_MISSING, "no such file", &e);
	assert_fails(file_url(media_dir, "/empty.png"), &o, QERR_FORMAT, "empty file", &e);
	assert_fails(file_url(media_dir, "/a%00.png"), &o, QERR_INVALID, "percent-escape", &e);
	assert_fails(file_url(media_dir, "/a%zz.png"), &o, QERR_INVALID, "percent-escape", &e);
	assert_fails(file_url(media_dir, "/a.png?x=1"), &o, QERR_UNSUPPORTED, "query", &e);
	o.max_bytes = IMG_LEN - 1;
	assert_fails(file_url(media_dir, "/a.png"), &o, QERR_LIMIT, ": more than 2999 bytes", &e);
	o.max_bytes = IMG_LEN;
	assert_fetches_image(file_url(media_dir, "/a.png"), &o, IMG_LEN);
}
END_TEST

START_TEST(test_media_fetch_refuses_files_without_a_media_dir)
{
	media_opts o;
	media_opts_init(&o);
	qerr e;
	assert_fails(file_url(media_dir, "/a.png"), &o, QERR_UNSUPPORTED, "local files are not allowed",
		     &e);
	char u[1024];
	snprintf(u, sizeof(u), "%s/a.png", media_dir);
	assert_fails(u, &o, QERR_UNSUPPORTED, "image path ", &e);
	assert_fails(u, NULL, QERR_UNSUPPORTED, "local files are not allowed", &e);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("media_fetch");
	TCase *tc = tcase_create("http");
	tcase_set_timeout(tc, 30);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_media_fetch_classifies_addresses);
	tcase_add_test(tc, test_media_fetch_matches_allowed_domains);
	tcase_add_test(tc, test_media_fetch_gets_a_body);
	tcase_add_test(tc, test_media_fetch_accepts_exactly_max_bytes);
	tcase_add_test(tc, test_media_fetch_reports_http_status);
	tcase_add_test(tc, test_media_fetch_follows_redirect_chain);
	tcase_add_test(tc, test_media_fetch_refuses_redirect_to_other_schemes);
	tcase_add_test(tc, test_media_fetch_rechecks_host_on_redirect);
	tcase_add_test(tc, test_media_fetch_caps_size_from_content_length);
	tcase_add_test(tc, test_media_fetch_caps_size_while_receiving);
	tcase_add_test(tc, test_media_fetch_times_out);
	tcase_add_test(tc, test_media_fetch_refuses_private_addresses_before_connecting);
	tcase_add_test(tc, test_media_fetch_refuses_hosts_outside_allowed_domains_before_connecting);
	tcase_add_test(tc, test_media_fetch_refuses_userinfo);
	tcase_add_test(tc, test_media_fetch_hides_query_strings);
	tcase_add_test(tc, test_media_fetch_refuses_unsupported_schemes);
	tcase_add_test(tc, test_media_fetch_rejects_bad_options);
	suite_add_tcase(s, tc);
	TCase *tf = tcase_create("files");
	tcase_add_checked_fixture(tf, files_setup, files_teardown);
	tcase_add_test(tf, test_media_fetch_reads_files_inside_allowed_dir);
	tcase_add_test(tf, test_media_fetch_refuses_files_outside_allowed_dir);
	tcase_add_test(tf, test_media_fetch_refuses_directories_and_missing_files);
	tcase_add_test(tf, test_media_fetch_refuses_files_without_a_media_dir);
	suite_add_tcase(s, tf);
	return tu_run_suite(s);
}
