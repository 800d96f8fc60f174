/*
 * alloc: allocation wrappers that log and abort on out-of-memory, and overflow-checked size
 * arithmetic for sizes computed from input.
 *
 * Running out of host memory is not a condition any caller can repair, so x*alloc never return
 * NULL: they log one line and abort (systemd restarts the daemon; a responder's web server
 * restarts the responder). Sizes that come from input (w*h*ch, a tensor's element count) must be
 * computed with size_mul/size_add first and checked against a limit before they reach malloc.
 */
#ifndef QVL_ALLOC_H
#define QVL_ALLOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
/* xmalloc for a buffer of many megabytes written once, front to back (resized images,
 * pixel_values): on Linux it asks for transparent huge pages, which turns thousands of page
 * faults (~2 µs each, more than the writes themselves cost) into a few. Only a hint. */
void *xmalloc_huge(size_t n);
/* printf into a fresh heap string. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* *out = a*b (resp. a+b); false on overflow (then *out is unspecified). */
static inline bool size_mul(size_t a, size_t b, size_t *out) { return !__builtin_mul_overflow(a, b, out); }
static inline bool size_add(size_t a, size_t b, size_t *out) { return !__builtin_add_overflow(a, b, out); }
static inline bool u64_mul(uint64_t a, uint64_t b, uint64_t *out) { return !__builtin_mul_overflow(a, b, out); }

#endif
