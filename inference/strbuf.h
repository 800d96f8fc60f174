/*
 * strbuf: a growable byte string (NUL-terminated at all times, may hold NUL bytes inside).
 *
 * The one buffer type for building prompts, JSON, SSE chunks and detokenized text. Growth is
 * geometric; allocation failure aborts (alloc.h). A zeroed strbuf is a valid empty buffer.
 */
#ifndef QVL_STRBUF_H
#define QVL_STRBUF_H

#include <stddef.h>

typedef struct strbuf {
	char *s;      /* owned; NULL while empty and never grown */
	size_t len;   /* bytes in use, excluding the terminating NUL */
	size_t cap;
} strbuf;

void strbuf_reserve(strbuf *b, size_t extra);
void strbuf_add(strbuf *b, const void *data, size_t n);
void strbuf_adds(strbuf *b, const char *s);
void strbuf_addc(strbuf *b, char c);
void strbuf_addf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Shorten to n bytes (n <= len). */
void strbuf_truncate(strbuf *b, size_t n);
/* The contents ("" when empty); valid until the next change. */
const char *strbuf_str(const strbuf *b);
/* Hand the heap string to the caller (never NULL) and reset b. */
char *strbuf_detach(strbuf *b, size_t *len);
void strbuf_deinit(strbuf *b);

#endif
