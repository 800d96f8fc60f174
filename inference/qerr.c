/*
 * qerr: error codes and messages (see qerr.h). Messages are truncated to QERR_MSG_MAX bytes;
 * truncation is harmless because every message leads with what matters (file, then problem).
 */
#include "qerr.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int qerr_set(qerr *e, int code, const char *fmt, ...)
{
	if (e) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
		va_end(ap);
		e->code = code;
	}
	return -code;
}

int qerr_prefix(qerr *e, const char *fmt, ...)
{
	if (!e)
		return -QERR_FORMAT;
	char head[QERR_MSG_MAX], old[QERR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(head, sizeof(head), fmt, ap);
	va_end(ap);
	memcpy(old, e->msg, sizeof(old));
	/* Truncation is accepted (see the file comment); building the line piecewise keeps the
	 * compiler's truncation warning meaningful elsewhere. */
	size_t n = strnlen(head, sizeof(head) - 1);
	memcpy(e->msg, head, n);
	if (n + 2 < sizeof(e->msg)) {
		e->msg[n++] = ':';
		e->msg[n++] = ' ';
	}
	size_t m = strnlen(old, sizeof(old) - 1);
	if (m > sizeof(e->msg) - 1 - n)
		m = sizeof(e->msg) - 1 - n;
	memcpy(e->msg + n, old, m);
	e->msg[n + m] = 0;
	if (!e->code)
		e->code = QERR_FORMAT;
	return -e->code;
}

const char *qerr_name(int code)
{
	switch (code < 0 ? -code : code) {
	case QERR_OK: return "no error";
	case QERR_IO: return "I/O error";
	case QERR_FORMAT: return "format error";
	case QERR_UNSUPPORTED: return "unsupported";
	case QERR_INVALID: return "invalid value";
	case QERR_MISSING: return "missing";
	case QERR_LIMIT: return "limit exceeded";
	}
	return "unknown error";
}
