/*
 * log: formatting and output of log lines (see log.h).
 *
 * The level lives in one static int: the only process-wide state in libqvl, set at start-up and
 * read by every thread afterwards (a plain int read is fine for a value that changes once).
 */
#include "log.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static int log_level = -1;
static int log_journal = -1;

static const char *const level_names[] = {
	[LOG_LEVEL_CRIT] = "crit", [LOG_LEVEL_ERR] = "err",   [LOG_LEVEL_WARN] = "warn",
	[LOG_LEVEL_NOTICE] = "notice", [LOG_LEVEL_INFO] = "info", [LOG_LEVEL_DEBUG] = "debug",
};

int log_parse_level(const char *s)
{
	if (!s || !*s)
		return -1;
	if (s[0] >= '0' && s[0] <= '7' && s[1] == 0)
		return s[0] - '0' < LOG_LEVEL_CRIT ? LOG_LEVEL_CRIT : s[0] - '0';
	for (int i = LOG_LEVEL_CRIT; i <= LOG_LEVEL_DEBUG; i++)
		if (!strcasecmp(s, level_names[i]))
			return i;
	if (!strcasecmp(s, "error"))
		return LOG_LEVEL_ERR;
	if (!strcasecmp(s, "warning"))
		return LOG_LEVEL_WARN;
	return -1;
}

void log_set_level(int level)
{
	if (level < LOG_LEVEL_CRIT)
		level = LOG_LEVEL_CRIT;
	if (level > LOG_LEVEL_DEBUG)
		level = LOG_LEVEL_DEBUG;
	log_level = level;
}

int log_get_level(void)
{
	if (log_level < 0) {
		int l = log_parse_level(getenv("QVL_LOG_LEVEL"));
		log_level = l < 0 ? LOG_LEVEL_INFO : l;
	}
	return log_level;
}

static void emit(int level, const char *area, const char *req, const char *fmt, va_list ap)
{
	if (level < LOG_LEVEL_CRIT)
		level = LOG_LEVEL_CRIT;
	if (level > LOG_LEVEL_DEBUG)
		level = LOG_LEVEL_DEBUG;
	if (log_journal < 0) {
		const char *p = getenv("QVL_LOG_PREFIX");
		log_journal = getenv("JOURNAL_STREAM") != NULL || (p && *p == '1');
	}
	char line[2048];
	int n;
	if (log_journal)
		n = snprintf(line, sizeof(line), "<%d>[%s]%s ", level, area, req);
	else
		n = snprintf(line, sizeof(line), "qvl[%s] %s:%s ", area, level_names[level], req);
	if (n < 0)
		return;
	if ((size_t)n < sizeof(line)) {
		int m = vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
		if (m > 0)
			n += m;
	}
	if ((size_t)n >= sizeof(line) - 1)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	/* One write per line keeps lines whole across threads; a failed write has nowhere to go. */
	ssize_t w = write(STDERR_FILENO, line, (size_t)n);
	(void)w;
}

void log_msg(int level, const char *area, const char *fmt, ...)
{
	if (level > log_get_level())
		return;
	va_list ap;
	va_start(ap, fmt);
	emit(level, area, "", fmt, ap);
	va_end(ap);
}

void log_req(int level, const char *area, uint64_t req_id, const char *fmt, ...)
{
	if (level > log_get_level())
		return;
	char req[32];
	snprintf(req, sizeof(req), " req=%" PRIu64, req_id);
	va_list ap;
	va_start(ap, fmt);
	emit(level, area, req, fmt, ap);
	va_end(ap);
}
