/*
 * log: the one logging module of every qvl program.
 *
 * Lines go to stderr. Under systemd (JOURNAL_STREAM set, or QVL_LOG_PREFIX=1) each line starts
 * with "<N>", the syslog priority journald reads; otherwise with "qvl[area] level:". The level is
 * tested before anything is formatted, so a disabled debug line costs one comparison. A request
 * id, when there is one, goes on the line through log_req. Never log image bytes or whole
 * prompts above debug.
 *
 * Threads: log_msg may be called from any thread; one line is written with one write(2), so
 * lines from different threads do not interleave. log_set_level is meant for start-up.
 */
#ifndef QVL_LOG_H
#define QVL_LOG_H

#include <stdint.h>

/* syslog priorities */
enum {
	LOG_LEVEL_CRIT = 2,
	LOG_LEVEL_ERR = 3,
	LOG_LEVEL_WARN = 4,
	LOG_LEVEL_NOTICE = 5,
	LOG_LEVEL_INFO = 6,
	LOG_LEVEL_DEBUG = 7,
};

/* The most verbose priority printed (default LOG_LEVEL_INFO, or $QVL_LOG_LEVEL at first use:
 * a number 2..7 or one of crit, err, warn, notice, info, debug). */
void log_set_level(int level);
int log_get_level(void);
/* Parse a level name or number; -1 if unknown. */
int log_parse_level(const char *s);

void log_msg(int level, const char *area, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The same, with "req=<id>" on the line. */
void log_req(int level, const char *area, uint64_t req_id, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#define LOG_ENABLED(level) ((level) <= log_get_level())

#endif
