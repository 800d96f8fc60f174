/*
 * media_fetch: the bytes an image URL names, fetched safely: http(s) with SSRF guards, file://
 * only under one configured directory.
 *
 * Why: a chat request may name its images by http(s) URL or local path. chat_request decodes
 * data: URLs itself and refuses http(s); qvl-fcgi calls media_fetch for the other URLs first, so
 * the request that reaches the daemon carries only bytes. A server that fetches URLs for anyone
 * on the network is a classic SSRF vector (the cloud metadata service at 169.254.169.254, an
 * admin page on localhost, DNS names that rebind to 10.x), so every hop is checked here.
 *
 * http(s), for each hop of a redirect chain (libcurl's own following is off):
 *   1. scheme http or https (a redirect to file://, gopher://… is refused), no userinfo;
 *   2. the host is one of opts->allowed_domains or a subdomain of one (NULL: any host);
 *   3. the host is resolved here (getaddrinfo) and refused if ANY address is not public
 *      (media_addr_reason) unless opts->allow_private;
 *   4. libcurl is pinned to exactly those addresses (CURLOPT_RESOLVE), and its open-socket hook
 *      refuses any other address, so a second DNS answer (rebinding) cannot be used; proxies
 *      from the environment are ignored for the same reason;
 *   5. only a 2xx answer is read; its Content-Length is checked against max_bytes before any of
 *      the body arrives and the received size while it streams in. 301/302/303/307/308 with a
 *      Location continue at step 1, at most max_redirects times. One deadline (timeout_s)
 *      covers the whole chain; each connect also has connect_timeout_s.
 * file:///abs/path (or file://localhost/abs/path, percent-decoded) and plain absolute paths:
 * refused unless opts->allowed_local_media_path is set; then the file's realpath must lie under
 * that directory's realpath (checked again on the opened descriptor), be a regular file and
 * hold at most max_bytes.
 *
 * Messages name the URL as given, without userinfo, query string or fragment (they may hold
 * secrets), and the reason: "image URL http://h/a.png: HTTP 404", "…: address 127.0.0.1 is not
 * allowed (loopback)", "…: more than 64 MiB", "…: timed out after 30 s", "…: too many
 * redirects (more than 5)"; after a redirect, "image URL A (redirected to B): …".
 *
 * Threads: media_fetch is reentrant (one curl easy handle per hop, no shared state) once
 * media_global_init has run; call that from main before any thread starts.
 */
#ifndef QVL_MEDIA_FETCH_H
#define QVL_MEDIA_FETCH_H

#include <stdbool.h>
#include <stddef.h>

#include <sys/socket.h>

#include "qerr.h"

#define MEDIA_DEFAULT_CONNECT_TIMEOUT_S 10
#define MEDIA_DEFAULT_TIMEOUT_S 30
#define MEDIA_DEFAULT_MAX_REDIRECTS 5

typedef struct media_opts {
	size_t max_bytes;              /* ≥ 1; default CHAT_REQUEST_MAX_IMAGE_BYTES */
	long connect_timeout_s;        /* ≥ 1; per connection attempt */
	long timeout_s;                /* ≥ 1; the whole fetch, redirects included */
	int max_redirects;             /* ≥ 0; 0 refuses every redirect */
	/* borrowed: NULL-terminated list of domains ("example.com" admits example.com and
	 * a.b.example.com; a leading or trailing dot is ignored). NULL: any host; an empty list:
	 * none. An IP-literal host must be listed as written ("192.0.2.7", "2001:db8::1"). */
	const char *const *allowed_domains;
	bool allow_private;            /* let hosts resolve to loopback, private, link-local… */
	const char *allowed_local_media_path;  /* borrowed; NULL: local files refused */
} media_opts;

/* Fill *o with the defaults: CHAT_REQUEST_MAX_IMAGE_BYTES, 10 s connect, 30 s total, 5
 * redirects, any public host, no private addresses, no local files. */
void media_opts_init(media_opts *o);

/* curl_global_init, once per program, from main before threads start (libcurl's global init is
 * not thread-safe). QERR_IO when libcurl cannot initialise. media_global_cleanup undoes it, at
 * exit, after every fetch has returned. */
int media_global_init(qerr *e);
void media_global_cleanup(void);

/* Fetch what url names into *bytes (heap, owned by the caller: free(); *len bytes, followed by
 * a NUL not counted) under opts (NULL: media_opts_init's defaults). On failure *bytes is NULL,
 * *len 0, and e says, naming the URL as the file comment describes:
 *   QERR_UNSUPPORTED  a scheme other than http, https, file (data: included: chat_request
 *                     decodes those), a redirect to one, local files when none are allowed;
 *   QERR_INVALID      bad options; a malformed URL or Location; userinfo; a host outside
 *                     allowed_domains; a disallowed address; a file outside the allowed
 *                     directory or not a regular file;
 *   QERR_MISSING      a file that does not exist;
 *   QERR_LIMIT        more than max_bytes; more than max_redirects redirects;
 *   QERR_FORMAT       an empty body or file;
 *   QERR_IO           name resolution, connection, TLS, timeout, a non-2xx status, a read
 *                     error.
 * Blocks for at most opts->timeout_s plus name resolution (getaddrinfo has no deadline). */
int media_fetch(const char *url, const media_opts *opts, char **bytes, size_t *len, qerr *e);

/* Why sa (AF_INET or AF_INET6) is not a public unicast address: NULL when it is, else a short
 * reason ("loopback", "private", "link-local", "shared (CGNAT)", "multicast", …). IPv4-mapped,
 * NAT64 (64:ff9b::/96) and 6to4 (2002::/16) forms are judged by the IPv4 address inside; IPv6
 * outside 2000::/3 is refused. Other families: "not IP". */
const char *media_addr_reason(const struct sockaddr *sa);

/* Whether host (no brackets, no port; a trailing dot ignored; case-insensitive) is allowed by
 * domains as media_opts.allowed_domains describes. */
bool media_host_allowed(const char *host, const char *const *domains);

#endif
