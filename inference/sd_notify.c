/*
 * sd_notify: systemd's notification protocol without libsystemd (see sd_notify.h).
 *
 * The protocol is one datagram per message: newline-separated VAR=value assignments sent to the
 * AF_UNIX socket named by $NOTIFY_SOCKET. A value starting with '/' is a path; one starting
 * with '@' names the abstract namespace, where the '@' becomes a leading NUL byte and the address
 * length counts exactly the name (no terminating NUL):
 *
 *   "/run/systemd/notify"  ->  sun_path = "/run/systemd/notify\0"   len = offsetof + 19 + 1
 *   "@sd-notify-42"        ->  sun_path = "\0sd-notify-42"          len = offsetof + 1 + 12
 *
 * Each call opens its own socket (SOCK_CLOEXEC, so a child started meanwhile does not inherit
 * it), sends with MSG_NOSIGNAL and closes: no state is shared, so any thread may call, and a
 * vanished systemd costs an error return, never a SIGPIPE. Credentials are not attached: the
 * default NotifyAccess=main accepts the main process's datagrams, which is us.
 */
#include "sd_notify.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "alloc.h"

/* Fill *sa from a NOTIFY_SOCKET value. QERR_INVALID unless it is an absolute path or an '@'
 * name that fits sun_path. */
static int notify_addr(const char *v, struct sockaddr_un *sa, socklen_t *len, qerr *e)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	size_t n = strlen(v);
	if (v[0] == '@') {
		/* the whole of sun_path may hold the name: abstract names need no terminator */
		if (n < 2 || n > sizeof(sa->sun_path))
			return qerr_set(e, QERR_INVALID, "NOTIFY_SOCKET \"%s\": abstract name of "
					"%zu bytes (1 to %zu)", v, n - 1, sizeof(sa->sun_path) - 1);
		memcpy(sa->sun_path + 1, v + 1, n - 1);
		*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
		return 0;
	}
	if (v[0] != '/')
		return qerr_set(e, QERR_INVALID, "NOTIFY_SOCKET \"%s\" is neither an absolute "
				"path nor an @abstract name", v);
	if (n >= sizeof(sa->sun_path))
		return qerr_set(e, QERR_INVALID, "NOTIFY_SOCKET \"%s\": path longer than %zu bytes",
				v, sizeof(sa->sun_path) - 1);
	memcpy(sa->sun_path, v, n + 1);
	*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
	return 0;
}

int sd_notify_send(const char *state, qerr *e)
{
	const char *v = getenv("NOTIFY_SOCKET");
	if (!v)
		return 0;
	if (!state || !*state)
		return qerr_set(e, QERR_INVALID, "sd_notify: empty state");
	struct sockaddr_un sa;
	socklen_t salen = 0;
	int rc = notify_addr(v, &sa, &salen, e);
	if (rc)
		return rc;
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return qerr_set(e, QERR_IO, "NOTIFY_SOCKET %s: socket: %s", v, strerror(errno));
	size_t n = strlen(state);
	ssize_t k;
	do
		k = sendto(fd, state, n, MSG_NOSIGNAL, (const struct sockaddr *)&sa, salen);
	while (k < 0 && errno == EINTR);
	int err = errno;
	close(fd);
	if (k < 0)
		return qerr_set(e, QERR_IO, "NOTIFY_SOCKET %s: sendto: %s", v, strerror(err));
	if ((size_t)k != n)   /* a datagram goes whole or not at all; be sure anyway */
		return qerr_set(e, QERR_IO, "NOTIFY_SOCKET %s: sent %zd of %zu bytes", v, k, n);
	return 0;
}

int sd_notify_sendf(qerr *e, const char *fmt, ...)
{
	if (!getenv("NOTIFY_SOCKET"))
		return 0;   /* nothing to format for */
	va_list ap;
	va_start(ap, fmt);
	char small[256];
	int n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0)
		return qerr_set(e, QERR_INVALID, "sd_notify: cannot format \"%s\"", fmt);
	if ((size_t)n < sizeof(small))
		return sd_notify_send(small, e);
	char *big = xmalloc((size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	int rc = sd_notify_send(big, e);
	free(big);
	return rc;
}

/* A positive decimal number made of digits only ("30000000"), or 0. */
static uint64_t parse_u64(const char *s)
{
	if (!s || !*s)
		return 0;
	uint64_t v = 0;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return 0;
		if (__builtin_mul_overflow(v, 10, &v) ||
		    __builtin_add_overflow(v, (uint64_t)(*s - '0'), &v))
			return 0;
	}
	return v;
}

uint64_t sd_notify_watchdog_usec(void)
{
	uint64_t usec = parse_u64(getenv("WATCHDOG_USEC"));
	if (usec == 0)
		return 0;
	const char *pid = getenv("WATCHDOG_PID");
	if (pid) {
		/* the watchdog is meant for that process only (e.g. not for a child we exec'd) */
		uint64_t p = parse_u64(pid);
		if (p == 0 || p != (uint64_t)getpid())
			return 0;
	}
	return usec;
}
