/*
 * strbuf: growable byte strings (see strbuf.h).
 */
#include "strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"

void strbuf_reserve(strbuf *b, size_t extra)
{
	size_t need;
	if (!size_add(b->len, extra, &need) || !size_add(need, 1, &need))
		need = SIZE_MAX;   /* xrealloc aborts on an impossible size */
	if (need <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 64;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	b->s = xrealloc(b->s, cap);
	b->cap = cap;
}

void strbuf_add(strbuf *b, const void *data, size_t n)
{
	strbuf_reserve(b, n);
	if (n)
		memcpy(b->s + b->len, data, n);
	b->len += n;
	b->s[b->len] = 0;
}

void strbuf_adds(strbuf *b, const char *s)
{
	strbuf_add(b, s, strlen(s));
}

void strbuf_addc(strbuf *b, char c)
{
	strbuf_add(b, &c, 1);
}

void strbuf_addf(strbuf *b, const char *fmt, ...)
{
	va_list ap;
	char small[256];
	va_start(ap, fmt);
	int n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n < sizeof(small)) {
		strbuf_add(b, small, (size_t)n);
		return;
	}
	strbuf_reserve(b, (size_t)n);
	va_start(ap, fmt);
	vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

void strbuf_truncate(strbuf *b, size_t n)
{
	if (n < b->len) {
		b->len = n;
		b->s[n] = 0;
	}
}

const char *strbuf_str(const strbuf *b)
{
	return b->s ? b->s : "";
}

char *strbuf_detach(strbuf *b, size_t *len)
{
	strbuf_reserve(b, 0);
	char *s = b->s;
	if (len)
		*len = b->len;
	b->s = NULL;
	b->len = b->cap = 0;
	return s;
}

void strbuf_deinit(strbuf *b)
{
	free(b->s);
	b->s = NULL;
	b->len = b->cap = 0;
}
