/*
 * media_fetch: fetching image URLs without becoming an SSRF proxy (see media_fetch.h for the
 * contract and the checks made on each hop).
 *
 * One hop of an http(s) fetch:
 *
 *   url ──parse (curl_url)──> scheme, userinfo, host, port ──allowed_domains──┐
 *        ┌────────────────────────────────────────────────────────────────────┘
 *        └─> getaddrinfo(host) ──every address public?──> pinned[] ──CURLOPT_RESOLVE──┐
 *        ┌─────────────────────────────────────────────────────────────────────────────┘
 *        └─> curl_easy_perform ── open-socket hook: address ∈ pinned[]? ── headers:
 *            status, Content-Length ≤ max, Location ── body (2xx only) ≤ max
 *
 * The pinning is what makes the address check mean something: without it libcurl would resolve
 * the name again and a DNS server answering 8.8.8.8 to us and 127.0.0.1 to libcurl would walk
 * past the check. CURLOPT_RESOLVE makes libcurl use our answer; the open-socket hook is the
 * backstop should the name libcurl looks up ever differ from ours (IDN, trailing dots): any
 * address we did not check is refused there. libcurl's redirect following is off so that every
 * hop goes through the same checks; proxies are off so that no third party resolves for us.
 *
 * Ownership: each hop owns its curl handle and frees it before the next; the body buffer is
 * handed to the caller on success. No state outlives a call.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1  /* configure defines it too (AC_USE_SYSTEM_EXTENSIONS) */
#endif
#include "media_fetch.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "alloc.h"
#include "chat_request.h"
#include "log.h"

#define SHOW_MAX 160           /* bytes of a URL quoted in a message */
#define MAX_PINNED 16          /* addresses of one host kept for the connection */
#define LOCATION_MAX 8192      /* longest Location header followed */

void media_opts_init(media_opts *o)
{
	*o = (media_opts){
		.max_bytes = CHAT_REQUEST_MAX_IMAGE_BYTES,
		.connect_timeout_s = MEDIA_DEFAULT_CONNECT_TIMEOUT_S,
		.timeout_s = MEDIA_DEFAULT_TIMEOUT_S,
		.max_redirects = MEDIA_DEFAULT_MAX_REDIRECTS,
	};
}

int media_global_init(qerr *e)
{
	CURLcode rc = curl_global_init(CURL_GLOBAL_DEFAULT);
	if (rc != CURLE_OK)
		return qerr_set(e, QERR_IO, "libcurl: global init failed: %s", curl_easy_strerror(rc));
	return 0;
}

void media_global_cleanup(void)
{
	curl_global_cleanup();
}

/* libcurl allocates inside curl_url, curl_slist_append…; NULL there is out of memory, which
 * nothing here can repair (alloc.h's policy). */
static void *curl_alloc_ok(void *p)
{
	if (!p) {
		log_msg(LOG_LEVEL_CRIT, "media", "out of memory in libcurl");
		abort();
	}
	return p;
}

/* ---- address classification ---- */

typedef struct net4 {
	uint32_t net;
	int bits;
	const char *why;
} net4;

/* IANA's IPv4 special-purpose registry, the parts that are not globally reachable unicast. */
static const net4 blocked4[] = {
	{ 0x00000000, 8, "this network (0.0.0.0/8)" },
	{ 0x0a000000, 8, "private" },
	{ 0x64400000, 10, "shared (CGNAT)" },
	{ 0x7f000000, 8, "loopback" },
	{ 0xa9fe0000, 16, "link-local" },
	{ 0xac100000, 12, "private" },
	{ 0xc0000000, 24, "IETF protocol assignments" },
	{ 0xc0000200, 24, "documentation" },
	{ 0xc0586300, 24, "6to4 relay anycast" },
	{ 0xc0a80000, 16, "private" },
	{ 0xc6120000, 15, "benchmarking" },
	{ 0xc6336400, 24, "documentation" },
	{ 0xcb007100, 24, "documentation" },
	{ 0xe0000000, 4, "multicast" },
	{ 0xf0000000, 4, "reserved" },   /* 255.255.255.255 (broadcast) included */
};

/* a in host byte order. */
static const char *v4_reason(uint32_t a)
{
	for (size_t i = 0; i < sizeof(blocked4) / sizeof(blocked4[0]); i++) {
		uint32_t mask = 0xffffffffu << (32 - blocked4[i].bits);
		if ((a & mask) == blocked4[i].net)
			return blocked4[i].why;
	}
	return NULL;
}

static uint32_t be32_at(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static bool zero_bytes(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

static const char *v6_reason(const uint8_t b[16])
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	static const uint8_t nat64[12] = { 0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0 };
	if (!memcmp(b, mapped, 12) || !memcmp(b, nat64, 12))
		return v4_reason(be32_at(b + 12));     /* ::ffff:a.b.c.d, 64:ff9b::a.b.c.d */
	if (zero_bytes(b, 15))
		return b[15] == 1 ? "loopback" : "unspecified";
	if (zero_bytes(b, 12))
		return "IPv4-compatible (deprecated)";
	if (b[0] == 0xff)
		return "multicast";
	if ((b[0] & 0xfe) == 0xfc)
		return "unique local";
	if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80)
		return "link-local";
	if (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0)
		return "site-local (deprecated)";
	/* Everything left outside global unicast: 64:ff9b:1::/48 (local NAT64), 100::/64
	 * (discard), unassigned space. */
	if ((b[0] & 0xe0) != 0x20)
		return "not global unicast";
	if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0 && b[3] == 0)
		return "Teredo";
	if (b[0] == 0x20 && b[1] == 0x01 && b[2] < 0x02)
		return "IETF protocol assignments";
	if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d && b[3] == 0xb8)
		return "documentation";
	if (b[0] == 0x3f && b[1] == 0xff && (b[2] & 0xf0) == 0)
		return "documentation";
	if (b[0] == 0x20 && b[1] == 0x02)
		return v4_reason(be32_at(b + 2));      /* 6to4: 2002:aabb:ccdd::/48 */
	return NULL;
}

const char *media_addr_reason(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
		return v4_reason(ntohl(s4->sin_addr.s_addr));
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
		return v6_reason(s6->sin6_addr.s6_addr);
	}
	return "not IP";
}

static void addr_text(const struct sockaddr *sa, char *out, size_t n)
{
	const void *a = sa->sa_family == AF_INET
		? (const void *)&((const struct sockaddr_in *)sa)->sin_addr
		: (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
	if (!inet_ntop(sa->sa_family, a, out, (socklen_t)n))
		snprintf(out, n, "?");
}

static bool same_addr(const struct sockaddr *a, const struct sockaddr *b)
{
	if (a->sa_family != b->sa_family)
		return false;
	if (a->sa_family == AF_INET)
		return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
		       ((const struct sockaddr_in *)b)->sin_addr.s_addr;
	if (a->sa_family == AF_INET6)
		return !memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
			       &((const struct sockaddr_in6 *)b)->sin6_addr, 16);
	return false;
}

/* ---- hosts and domains ---- */

bool media_host_allowed(const char *host, const char *const *domains)
{
	if (!domains)
		return true;
	size_t hl = strlen(host);
	if (hl && host[hl - 1] == '.')
		hl--;
	for (size_t i = 0; domains[i]; i++) {
		const char *d = domains[i];
		while (*d == '.')
			d++;
		size_t dl = strlen(d);
		if (dl && d[dl - 1] == '.')
			dl--;
		if (!dl)
			continue;
		if (hl == dl && !strncasecmp(host, d, dl))
			return true;
		/* a subdomain: "…." + d, so that evilexample.com does not pass for example.com */
		if (hl > dl && host[hl - dl - 1] == '.' && !strncasecmp(host + hl - dl, d, dl))
			return true;
	}
	return false;
}

/* ---- messages ---- */

/* The length of url's scheme when it starts with one followed by ':' (RFC 3986: a letter, then
 * letters, digits, '+', '-', '.'), else 0. */
static size_t scheme_len(const char *url)
{
	if (!isalpha((unsigned char)url[0]))
		return 0;
	size_t i = 1;
	while (isalnum((unsigned char)url[i]) || url[i] == '+' || url[i] == '-' || url[i] == '.')
		i++;
	return url[i] == ':' ? i : 0;
}

static bool scheme_is(const char *url, size_t sl, const char *name)
{
	return sl == strlen(name) && !strncasecmp(url, name, sl);
}

/* url as it may be quoted to a client and in logs: no userinfo, no query string or fragment
 * (tokens live there), no control bytes, at most SHOW_MAX bytes ("..." when cut). */
static void redact(const char *url, char out[SHOW_MAX])
{
	size_t o = 0;
	bool cut = false;
	const char *p = url;
	size_t sl = scheme_len(url);
	const char *auth = sl && !strncmp(url + sl, "://", 3) ? url + sl + 3 : NULL;
	const char *resume = NULL;
	if (auth) {
		size_t al = strcspn(auth, "/?#");
		const char *at = memrchr(auth, '@', al);
		if (at)
			resume = at + 1;
	}
	for (; *p && *p != '?' && *p != '#'; p++) {
		if (p == auth && resume)
			p = resume;
		if (!*p || *p == '?' || *p == '#')
			break;
		if (o == SHOW_MAX - 4) {
			cut = true;
			break;
		}
		unsigned char c = (unsigned char)*p;
		out[o++] = c < 0x20 || c == 0x7f ? '?' : (char)c;
	}
	if (cut) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = 0;
}

static void size_text(size_t n, char *out, size_t len)
{
	if (n % (1u << 20) == 0)
		snprintf(out, len, "%zu MiB", n >> 20);
	else if (n % 1024 == 0)
		snprintf(out, len, "%zu KiB", n >> 10);
	else
		snprintf(out, len, "%zu bytes", n);
}

/* One fetch: its options, the names used in messages, where errors go. */
typedef struct fetch {
	const media_opts *o;
	const char *what;              /* "image URL" or "image path" */
	char orig[SHOW_MAX];           /* the URL given, redacted */
	char hop[SHOW_MAX];            /* the current hop, redacted; "" on the first */
	qerr *e;
} fetch;

static int fail(const fetch *f, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(const fetch *f, int code, const char *fmt, ...)
{
	char why[QERR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (f->hop[0])
		return qerr_set(f->e, code, "%s %s (redirected to %s): %s", f->what, f->orig, f->hop,
				why);
	return qerr_set(f->e, code, "%s %s: %s", f->what, f->orig, why);
}

static int fail_too_big(const fetch *f)
{
	char sz[32];
	size_text(f->o->max_bytes, sz, sizeof(sz));
	return fail(f, QERR_LIMIT, "more than %s", sz);
}

/* ---- one http(s) hop ---- */

/* Where one hop goes, after the checks. */
typedef struct target {
	char host[256];                /* lower case; no brackets, no trailing dot */
	char name[258];                /* host as libcurl looks it up: a trailing dot kept */
	bool literal6;                 /* host is an IPv6 literal */
	long port;
	struct sockaddr_storage pinned[MAX_PINNED];   /* the checked addresses */
	size_t n_pinned;
	bool refused;                  /* the open-socket hook met an address not pinned */
	char refused_addr[INET6_ADDRSTRLEN];
} target;

/* Hostname characters accepted: LDH plus '_' (seen in the wild). Non-ASCII names must come in
 * their punycode form, so that the name resolved here is the one libcurl connects to. */
static bool host_chars_ok(const char *h)
{
	for (; *h; h++)
		if (!isalnum((unsigned char)*h) && *h != '-' && *h != '.' && *h != '_')
			return false;
	return true;
}

/* Parse url into t->host and t->port, checking the scheme, userinfo and host syntax. */
static int parse_target(const fetch *f, const char *url, target *t)
{
	size_t sl = scheme_len(url);
	if (!sl)
		return fail(f, QERR_INVALID, "not an absolute URL");
	if (!scheme_is(url, sl, "http") && !scheme_is(url, sl, "https"))
		return fail(f, QERR_UNSUPPORTED, "unsupported scheme %.*s (http and https only)",
			    (int)(sl < 16 ? sl : 16), url);
	CURLU *u = curl_alloc_ok(curl_url());
	int rc = 0;
	char *part = NULL;
	CURLUcode uc = curl_url_set(u, CURLUPART_URL, url, 0);
	if (uc != CURLUE_OK) {
		rc = fail(f, QERR_INVALID, "malformed URL (%s)", curl_url_strerror(uc));
		goto out;
	}
	/* user:password@host is refused outright: credentials do not belong in a request body,
	 * and "trusted.example@10.0.0.1" is a known way to make a URL look like another host. */
	const CURLUPart cred[] = { CURLUPART_USER, CURLUPART_PASSWORD, CURLUPART_OPTIONS };
	for (size_t i = 0; i < sizeof(cred) / sizeof(cred[0]); i++) {
		if (curl_url_get(u, cred[i], &part, 0) == CURLUE_OK) {
			rc = fail(f, QERR_INVALID, "credentials (userinfo) in image URLs are not allowed");
			goto out;
		}
	}
	if (curl_url_get(u, CURLUPART_ZONEID, &part, 0) == CURLUE_OK) {
		rc = fail(f, QERR_INVALID, "IPv6 zone IDs are not allowed");
		goto out;
	}
	if (curl_url_get(u, CURLUPART_HOST, &part, 0) != CURLUE_OK || !part[0]) {
		rc = fail(f, QERR_INVALID, "URL without a host");
		goto out;
	}
	const char *h = part;
	size_t hl = strlen(h);
	bool dot = false;
	t->literal6 = h[0] == '[';
	if (t->literal6) {
		h++;
		hl -= 2;                       /* curl_url keeps "[…]" balanced */
	} else if (hl && h[hl - 1] == '.') {
		hl--;
		dot = true;
	}
	if (!hl || hl >= sizeof(t->host)) {
		rc = fail(f, QERR_INVALID, "bad host name");
		goto out;
	}
	for (size_t i = 0; i < hl; i++)
		t->host[i] = (char)tolower((unsigned char)h[i]);
	t->host[hl] = 0;
	/* libcurl 7.88 keeps a trailing dot in the name it looks up, so the pin must too */
	snprintf(t->name, sizeof(t->name), "%s%s", t->host, dot ? "." : "");
	if (!t->literal6 && !host_chars_ok(t->host)) {
		rc = fail(f, QERR_INVALID, "host name with characters other than letters, digits, "
			  "'-', '.', '_' (give an IDN in its punycode form)");
		goto out;
	}
	curl_free(part);
	part = NULL;
	if (curl_url_get(u, CURLUPART_PORT, &part, CURLU_DEFAULT_PORT) != CURLUE_OK) {
		rc = fail(f, QERR_INVALID, "URL without a port");
		goto out;
	}
	t->port = strtol(part, NULL, 10);
	if (t->port < 1 || t->port > 65535)
		rc = fail(f, QERR_INVALID, "bad port %s", part);
out:
	curl_free(part);
	curl_url_cleanup(u);
	return rc;
}

/* Resolve t->host and check every address; keep the first MAX_PINNED distinct ones. */
static int resolve_target(const fetch *f, target *t)
{
	struct addrinfo hints = {
		.ai_family = AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
		.ai_flags = t->literal6 ? AI_NUMERICHOST : 0,
	};
	char port[16];
	snprintf(port, sizeof(port), "%ld", t->port);
	struct addrinfo *res = NULL;
	int g = getaddrinfo(t->name, port, &hints, &res);
	if (g)
		return fail(f, QERR_IO, "cannot resolve %s: %s", t->name,
			    g == EAI_SYSTEM ? strerror(errno) : gai_strerror(g));
	int rc = 0;
	t->n_pinned = 0;
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
			continue;
		const char *why = f->o->allow_private ? NULL : media_addr_reason(ai->ai_addr);
		if (why) {
			char txt[INET6_ADDRSTRLEN];
			addr_text(ai->ai_addr, txt, sizeof(txt));
			rc = fail(f, QERR_INVALID, "address %s is not allowed (%s)", txt, why);
			break;
		}
		bool dup = false;
		for (size_t i = 0; i < t->n_pinned && !dup; i++)
			dup = same_addr((struct sockaddr *)&t->pinned[i], ai->ai_addr);
		if (!dup && t->n_pinned < MAX_PINNED && ai->ai_addrlen <= sizeof(t->pinned[0]))
			memcpy(&t->pinned[t->n_pinned++], ai->ai_addr, ai->ai_addrlen);
	}
	freeaddrinfo(res);
	if (!rc && !t->n_pinned)
		rc = fail(f, QERR_IO, "%s has no IP address", t->host);
	return rc;
}

/* "host:port:addr,[addr6],…" for CURLOPT_RESOLVE. */
static void resolve_entry(const target *t, char *out, size_t n)
{
	size_t o = (size_t)snprintf(out, n, "%s:%ld:", t->name, t->port);
	for (size_t i = 0; i < t->n_pinned && o < n; i++) {
		char txt[INET6_ADDRSTRLEN];
		const struct sockaddr *sa = (const struct sockaddr *)&t->pinned[i];
		addr_text(sa, txt, sizeof(txt));
		o += (size_t)snprintf(out + o, n - o, sa->sa_family == AF_INET6 ? "%s[%s]" : "%s%s",
				      i ? "," : "", txt);
	}
}

/* libcurl asks here for every socket it connects: only a pinned address gets one. */
static curl_socket_t open_socket(void *ud, curlsocktype purpose, struct curl_sockaddr *a)
{
	target *t = ud;
	bool ok = false;
	for (size_t i = 0; i < t->n_pinned && !ok; i++)
		ok = same_addr((const struct sockaddr *)&t->pinned[i], &a->addr);
	if (purpose != CURLSOCKTYPE_IPCXN || !ok) {
		t->refused = true;
		if (a->family == AF_INET || a->family == AF_INET6)
			addr_text(&a->addr, t->refused_addr, sizeof(t->refused_addr));
		else
			snprintf(t->refused_addr, sizeof(t->refused_addr), "(family %d)", a->family);
		return CURL_SOCKET_BAD;
	}
	return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

/* What came back from one hop. */
typedef struct response {
	CURL *h;                       /* borrowed */
	size_t max;
	char *body;                    /* owned until handed to the caller */
	size_t len, cap;
	long status;
	long long content_length;      /* -1: none given */
	bool too_big;                  /* past max (announced or received) */
	bool not_2xx;                  /* the body was refused because of the status */
	bool has_location, location_too_long;
	char location[LOCATION_MAX + 1];
} response;

static bool is_2xx(long s)
{
	return s >= 200 && s < 300;
}

static bool header_is(const char *p, size_t n, const char *name)
{
	size_t k = strlen(name);
	return n > k && !strncasecmp(p, name, k) && p[k] == ':';
}

/* The value of a header line p[0, n) whose name is k bytes long, trimmed; *vl its length. */
static const char *header_value(const char *p, size_t n, size_t k, size_t *vl)
{
	const char *v = p + k + 1, *end = p + n;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
		end--;
	*vl = (size_t)(end - v);
	return v;
}

static void reserve(response *r, size_t need)
{
	if (need <= r->cap)
		return;
	size_t cap = r->cap ? r->cap : 16384;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	if (cap > r->max + 1)
		cap = r->max + 1;
	r->body = xrealloc(r->body, cap);
	r->cap = cap;
}

static size_t on_header(char *p, size_t size, size_t nmemb, void *ud)
{
	response *r = ud;
	size_t n = size * nmemb, vl;
	if (n >= 5 && !memcmp(p, "HTTP/", 5)) {
		/* a new response (after a 1xx): forget the previous one's headers */
		r->has_location = r->location_too_long = false;
		r->content_length = -1;
	} else if (header_is(p, n, "location")) {
		const char *v = header_value(p, n, 8, &vl);
		r->has_location = true;
		r->location_too_long = vl > LOCATION_MAX;
		if (!r->location_too_long) {
			memcpy(r->location, v, vl);
			r->location[vl] = 0;
		}
	} else if (header_is(p, n, "content-length")) {
		const char *v = header_value(p, n, 14, &vl);
		char num[24];
		if (vl && vl < sizeof(num)) {
			memcpy(num, v, vl);
			num[vl] = 0;
			char *end;
			errno = 0;
			unsigned long long cl = strtoull(num, &end, 10);
			if (!*end && !errno && isdigit((unsigned char)num[0]))
				r->content_length = cl > LLONG_MAX ? LLONG_MAX : (long long)cl;
		}
	} else if (n <= 2 && (p[0] == '\r' || p[0] == '\n')) {
		/* end of headers: refuse an announced oversize body before any of it arrives */
		long s = 0;
		curl_easy_getinfo(r->h, CURLINFO_RESPONSE_CODE, &s);
		if (is_2xx(s) && r->content_length >= 0) {
			if ((unsigned long long)r->content_length > r->max) {
				r->too_big = true;
				return 0;
			}
			reserve(r, (size_t)r->content_length + 1);
		}
	}
	return n;
}

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud)
{
	response *r = ud;
	size_t n = size * nmemb;
	long s = 0;
	curl_easy_getinfo(r->h, CURLINFO_RESPONSE_CODE, &s);
	if (!is_2xx(s)) {
		/* a redirect's or an error's body is of no use: stop reading it */
		r->not_2xx = true;
		return 0;
	}
	if (n > r->max - r->len) {
		r->too_big = true;
		return 0;
	}
	reserve(r, r->len + n + 1);
	memcpy(r->body + r->len, p, n);
	r->len += n;
	return n;
}

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* GET url from the pinned addresses of t into r, before deadline (ms, now_ms clock). Fails on
 * transport errors, timeouts and size; any HTTP status is a success here. */
static int transfer(const fetch *f, const char *url, target *t, long long deadline, response *r)
{
	long long left = deadline - now_ms();
	if (left <= 0)
		return fail(f, QERR_IO, "timed out after %ld s", f->o->timeout_s);
	long long conn = f->o->connect_timeout_s * 1000LL;
	bool total_bounds_connect = left <= conn;
	if (total_bounds_connect)
		conn = left;

	CURL *h = curl_easy_init();
	if (!h)
		return fail(f, QERR_IO, "libcurl: cannot create a handle");
	r->h = h;
	struct curl_slist *pin = NULL;
	if (!t->literal6) {
		/* IPv6 literals cannot be written as a CURLOPT_RESOLVE name; libcurl does not
		 * resolve literals anyway, and the open-socket hook checks them. */
		char entry[sizeof(t->name) + 32 + MAX_PINNED * (INET6_ADDRSTRLEN + 3)];
		resolve_entry(t, entry, sizeof(entry));
		pin = curl_alloc_ok(curl_slist_append(NULL, entry));
	}
	char errbuf[CURL_ERROR_SIZE] = "";
	bool ok = true;
	ok &= curl_easy_setopt(h, CURLOPT_URL, url) == CURLE_OK;
	ok &= curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK;
	ok &= curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https") == CURLE_OK;
	ok &= curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L) == CURLE_OK;
	ok &= curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L) == CURLE_OK;
	ok &= curl_easy_setopt(h, CURLOPT_PROXY, "") == CURLE_OK;    /* ignore *_proxy */
	ok &= curl_easy_setopt(h, CURLOPT_RESOLVE, pin) == CURLE_OK;
	ok &= curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, open_socket) == CURLE_OK;
	ok &= curl_easy_setopt(h, CURLOPT_OPENSOCKETDATA, t) == CURLE_OK;
	ok &= curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)conn) == CURLE_OK;
	ok &= curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)left) == CURLE_OK;
	ok &= curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header) == CURLE_OK;
	ok &= curl_easy_setopt(h, CURLOPT_HEADERDATA, r) == CURLE_OK;
	ok &= curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body) == CURLE_OK;
	ok &= curl_easy_setopt(h, CURLOPT_WRITEDATA, r) == CURLE_OK;
	ok &= curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf) == CURLE_OK;
	ok &= curl_easy_setopt(h, CURLOPT_USERAGENT, "qvl-fcgi") == CURLE_OK;
	int rc = 0;
	if (!ok) {
		rc = fail(f, QERR_IO, "libcurl refused an option (protocol restriction unsupported?)");
		goto out;
	}
	long long start = now_ms();
	CURLcode cc = curl_easy_perform(h);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
	if (t->refused) {
		rc = fail(f, QERR_INVALID, "connection to address %s refused (not the address checked)",
			  t->refused_addr);
	} else if (r->too_big) {
		rc = fail_too_big(f);
	} else if (cc == CURLE_WRITE_ERROR && r->not_2xx) {
		rc = 0;                        /* we stopped reading a non-2xx body */
	} else if (cc == CURLE_OPERATION_TIMEDOUT) {
		/* Which limit fired: the whole fetch's deadline, or the connect limit (which in
		 * libcurl covers the TLS handshake too)? Whichever the hop ran into. */
		if (total_bounds_connect || now_ms() - start + 100 >= left)
			rc = fail(f, QERR_IO, "timed out after %ld s", f->o->timeout_s);
		else
			rc = fail(f, QERR_IO, "connect timed out after %ld s", f->o->connect_timeout_s);
	} else if (cc != CURLE_OK) {
		rc = fail(f, QERR_IO, "%s", errbuf[0] ? errbuf : curl_easy_strerror(cc));
	}
out:
	curl_easy_cleanup(h);
	curl_slist_free_all(pin);
	r->h = NULL;
	return rc;
}

static bool is_redirect(long s)
{
	return s == 301 || s == 302 || s == 303 || s == 307 || s == 308;
}

/* The absolute URL a Location names, relative to base; *out heap. */
static int next_url(const fetch *f, const char *base, const char *loc, char **out)
{
	size_t sl = scheme_len(loc);
	if (sl && !scheme_is(loc, sl, "http") && !scheme_is(loc, sl, "https"))
		return fail(f, QERR_UNSUPPORTED, "redirect to unsupported scheme %.*s",
			    (int)(sl < 16 ? sl : 16), loc);
	CURLU *u = curl_alloc_ok(curl_url());
	int rc = 0;
	CURLUcode uc = curl_url_set(u, CURLUPART_URL, base, 0);
	if (uc == CURLUE_OK)
		uc = curl_url_set(u, CURLUPART_URL, loc, 0);
	char *s = NULL;
	if (uc == CURLUE_OK)
		uc = curl_url_get(u, CURLUPART_URL, &s, 0);
	if (uc != CURLUE_OK)
		rc = fail(f, QERR_INVALID, "bad redirect Location (%s)", curl_url_strerror(uc));
	else
		*out = xstrdup(s);
	curl_free(s);
	curl_url_cleanup(u);
	return rc;
}

static int fetch_http(fetch *f, const char *url, char **bytes, size_t *len)
{
	long long deadline = now_ms() + f->o->timeout_s * 1000LL;
	char *cur = xstrdup(url);
	response *r = xcalloc(1, sizeof(*r));   /* 8 KiB of Location: not on the stack */
	int rc = 0;
	for (int hop = 0;; hop++) {
		target t = { 0 };
		rc = parse_target(f, cur, &t);
		if (!rc && !media_host_allowed(t.host, f->o->allowed_domains))
			rc = fail(f, QERR_INVALID, "host %s is not in the allowed domains", t.host);
		if (!rc)
			rc = resolve_target(f, &t);
		if (rc)
			break;
		free(r->body);
		*r = (response){ .max = f->o->max_bytes, .content_length = -1 };
		rc = transfer(f, cur, &t, deadline, r);
		if (rc)
			break;
		if (is_2xx(r->status)) {
			if (!r->len) {
				rc = fail(f, QERR_FORMAT, "empty body (HTTP %ld)", r->status);
				break;
			}
			r->body[r->len] = 0;   /* reserve kept a byte for it */
			*bytes = r->body;
			*len = r->len;
			r->body = NULL;
			break;
		}
		if (!is_redirect(r->status)) {
			rc = fail(f, QERR_IO, "HTTP %ld", r->status);
			break;
		}
		if (!r->has_location || r->location_too_long || !r->location[0]) {
			rc = fail(f, QERR_INVALID, "HTTP %ld redirect %s", r->status,
				  r->location_too_long ? "with an over-long Location" : "without a Location");
			break;
		}
		if (hop == f->o->max_redirects) {
			rc = fail(f, QERR_LIMIT, "too many redirects (more than %d)", f->o->max_redirects);
			break;
		}
		char *next = NULL;
		redact(r->location, f->hop);
		rc = next_url(f, cur, r->location, &next);
		if (rc)
			break;
		redact(next, f->hop);
		free(cur);
		cur = next;
	}
	free(r->body);
	free(r);
	free(cur);
	return rc;
}

/* ---- local files ---- */

/* %XX-decode s into out[0, n); false on a bad escape, %00 or overflow. */
static bool pct_decode(const char *s, char *out, size_t n)
{
	size_t o = 0;
	for (; *s; s++) {
		char c = *s;
		if (c == '%') {
			if (!isxdigit((unsigned char)s[1]) || !isxdigit((unsigned char)s[2]))
				return false;
			char hex[3] = { s[1], s[2], 0 };
			c = (char)strtol(hex, NULL, 16);
			if (!c)
				return false;
			s += 2;
		}
		if (o + 1 >= n)
			return false;
		out[o++] = c;
	}
	out[o] = 0;
	return true;
}

/* Whether path lies strictly below dir (both absolute, dir without a trailing '/' unless it is
 * "/"), as strings: the caller has resolved what needs resolving. */
static bool below(const char *path, const char *dir)
{
	size_t dl = strlen(dir);
	if (dl == 1 && dir[0] == '/')
		return path[0] == '/' && path[1];
	return !strncmp(path, dir, dl) && path[dl] == '/' && path[dl + 1];
}

/* path below dir without climbing out through "." or ".." components. */
static bool lexically_below(const char *path, const char *dir)
{
	char d[PATH_MAX];
	snprintf(d, sizeof(d), "%s", dir);
	for (size_t l = strlen(d); l > 1 && d[l - 1] == '/'; l--)
		d[l - 1] = 0;
	if (!below(path, d))
		return false;
	for (const char *p = path; (p = strchr(p, '/')); p++) {
		size_t k = strcspn(p + 1, "/");
		if ((k == 1 && p[1] == '.') || (k == 2 && p[1] == '.' && p[2] == '.'))
			return false;
	}
	return true;
}

static int read_fd(const fetch *f, int fd, const struct stat *st, char **bytes, size_t *len)
{
	size_t max = f->o->max_bytes;
	if ((unsigned long long)st->st_size > max)
		return fail_too_big(f);
	/* +1: one byte past the size, to see a file that grew past max */
	size_t cap = (size_t)st->st_size + 1 < 4096 ? 4096 : (size_t)st->st_size + 1;
	if (cap > max + 1)
		cap = max + 1;
	char *buf = xmalloc(cap + 1);
	size_t got = 0;
	for (;;) {
		if (got == cap) {
			if (cap == max + 1) {
				free(buf);
				return fail_too_big(f);
			}
			cap = cap > (max + 1) / 2 ? max + 1 : cap * 2;
			buf = xrealloc(buf, cap + 1);
		}
		ssize_t k = read(fd, buf + got, cap - got);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			int err = errno;
			free(buf);
			return fail(f, QERR_IO, "read: %s", strerror(err));
		}
		if (k == 0)
			break;
		got += (size_t)k;
	}
	if (got > max) {
		free(buf);
		return fail_too_big(f);
	}
	if (!got) {
		free(buf);
		return fail(f, QERR_FORMAT, "empty file");
	}
	buf[got] = 0;
	*bytes = buf;
	*len = got;
	return 0;
}

static int fetch_file(const fetch *f, const char *url, char **bytes, size_t *len)
{
	const char *dir = f->o->allowed_local_media_path;
	if (!dir)
		return fail(f, QERR_UNSUPPORTED, "local files are not allowed (no allowed media directory "
			    "is configured)");
	char path[PATH_MAX];
	if (url[0] == '/') {
		if (strlen(url) >= sizeof(path))
			return fail(f, QERR_INVALID, "path too long");
		memcpy(path, url, strlen(url) + 1);
	} else {
		const char *p = url + 7;           /* after "file://" */
		if (!strncasecmp(p, "localhost/", 10))
			p += 9;
		if (p[0] != '/')
			return fail(f, QERR_INVALID, "a file URL must be file:///absolute/path");
		if (strpbrk(p, "?#"))
			return fail(f, QERR_UNSUPPORTED, "query or fragment in a file URL");
		if (!pct_decode(p, path, sizeof(path)))
			return fail(f, QERR_INVALID, "bad percent-escape or path too long");
	}
	char root[PATH_MAX], real[PATH_MAX];
	if (!realpath(dir, root))
		return fail(f, QERR_IO, "allowed media directory: %s", strerror(errno));
	if (!realpath(path, real)) {
		int err = errno;
		/* Say "missing" only for what lies below the directory anyway, so that this is no
		 * oracle for which files exist elsewhere. */
		if (!lexically_below(path, dir) && !lexically_below(path, root))
			return fail(f, QERR_INVALID, "not under the allowed media directory");
		if (err == ENOENT || err == ENOTDIR)
			return fail(f, QERR_MISSING, "no such file");
		return fail(f, QERR_IO, "%s", strerror(err));
	}
	if (!below(real, root))
		return fail(f, QERR_INVALID, "not under the allowed media directory");
	/* O_NONBLOCK: a FIFO would block the open; O_NOFOLLOW: real has no links left, so one
	 * appearing now is a swap under our feet. */
	int fd = open(real, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
	if (fd < 0)
		return fail(f, errno == ENOENT ? QERR_MISSING : QERR_IO, "%s", strerror(errno));
	/* A directory above the file may have been swapped for a link between realpath and open:
	 * ask the kernel where the descriptor really is (when /proc is there). */
	char proc[64], where[PATH_MAX];
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	ssize_t wl = readlink(proc, where, sizeof(where) - 1);
	if (wl > 0)
		where[wl] = 0;
	int rc = 0;
	struct stat st;
	if (wl > 0 && !below(where, root))
		rc = fail(f, QERR_INVALID, "not under the allowed media directory");
	else if (fstat(fd, &st) != 0)
		rc = fail(f, QERR_IO, "%s", strerror(errno));
	else if (!S_ISREG(st.st_mode))
		rc = fail(f, QERR_INVALID, "not a regular file");
	else
		rc = read_fd(f, fd, &st, bytes, len);
	close(fd);
	return rc;
}

/* ---- entry ---- */

int media_fetch(const char *url, const media_opts *opts, char **bytes, size_t *len, qerr *e)
{
	*bytes = NULL;
	*len = 0;
	media_opts defaults;
	if (!opts) {
		media_opts_init(&defaults);
		opts = &defaults;
	}
	fetch f = { .o = opts, .what = "image URL", .e = e };
	redact(url, f.orig);
	if (!opts->max_bytes || opts->max_bytes >= SIZE_MAX / 2)
		return fail(&f, QERR_INVALID, "media_fetch: bad max_bytes %zu", opts->max_bytes);
	if (opts->connect_timeout_s < 1 || opts->timeout_s < 1 || opts->timeout_s > 86400 ||
	    opts->connect_timeout_s > 86400)
		return fail(&f, QERR_INVALID, "media_fetch: timeouts must be 1..86400 s");
	if (opts->max_redirects < 0)
		return fail(&f, QERR_INVALID, "media_fetch: max_redirects < 0");
	size_t sl = scheme_len(url);
	if (url[0] == '/') {
		f.what = "image path";
		return fetch_file(&f, url, bytes, len);
	}
	if (scheme_is(url, sl, "file")) {
		if (strncmp(url + 4, "://", 3))
			return fail(&f, QERR_INVALID, "a file URL must be file:///absolute/path");
		return fetch_file(&f, url, bytes, len);
	}
	if (!sl)
		return fail(&f, QERR_INVALID, "not an absolute URL or path");
	return fetch_http(&f, url, bytes, len);
}
