/*
 * qerr: one error value that carries a code and a message naming what was wrong.
 *
 * Library functions that can fail return int: 0 on success, or the negative of a QERR_* code.
 * When they take a `qerr *`, they also write a one-line message there (file, field, tensor…),
 * so the program that called can print exactly what was wrong with its input. A NULL `qerr *`
 * is allowed: the code is still returned, the message is dropped.
 *
 *   if (bad) return qerr_set(e, QERR_FORMAT, "%s: header length %llu exceeds the file", path, n);
 *
 * Expected pressure (a full queue, a full KV pool) is not an error and is never reported here.
 * Thread-safety: a qerr belongs to its caller; nothing here is shared.
 */
#ifndef QVL_QERR_H
#define QVL_QERR_H

enum {
	QERR_OK = 0,
	QERR_IO = 1,          /* open/read/write/mmap failed; errno is in the message */
	QERR_FORMAT = 2,      /* input is malformed (bad JSON, bad header, bad frame…) */
	QERR_UNSUPPORTED = 3, /* well-formed but something we do not implement (a dtype, a rope type) */
	QERR_INVALID = 4,     /* a value is out of range or inconsistent (a shape, a flag) */
	QERR_MISSING = 5,     /* a required file, field or tensor is absent */
	QERR_LIMIT = 6,       /* a size exceeds a configured limit */
};

#define QERR_MSG_MAX 512

typedef struct qerr {
	int code;                /* QERR_* (positive), 0 when no error was set */
	char msg[QERR_MSG_MAX];  /* one line, no trailing newline */
} qerr;

/* Record code and a printf-style message in e (if non-NULL); returns -code, so a failing
 * function can `return qerr_set(...)`. */
int qerr_set(qerr *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Prefix the message already in e with "prefix: " (used to add a file name on the way up).
 * Returns -e->code (or -QERR_FORMAT when e holds no code). */
int qerr_prefix(qerr *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A short name for a code ("I/O error", "format error", …). */
const char *qerr_name(int code);

#endif
