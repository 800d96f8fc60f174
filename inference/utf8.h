/*
 * utf8: decoding steps with the Unicode "maximal subpart" rule for ill-formed input — the rule
 * Rust's String::from_utf8_lossy applies (one U+FFFD per maximal subpart of an ill-formed
 * sequence), which is what Hugging Face tokenizers' decoders produce. Streaming code needs the
 * same rule one step at a time, with a third outcome: "incomplete" for a valid prefix cut off
 * by the end of the available bytes.
 */
#ifndef QVL_UTF8_H
#define QVL_UTF8_H

#include <stddef.h>
#include <stdint.h>

typedef enum utf8_step {
	UTF8_VALID,       /* *n bytes form one valid character (code point in *cp) */
	UTF8_INVALID,     /* *n bytes (≥ 1) are one maximal ill-formed subpart: emit U+FFFD */
	UTF8_INCOMPLETE,  /* all len bytes are a valid prefix of a longer character */
} utf8_step;

/* Classify the sequence at s[0..len), len ≥ 1. */
utf8_step utf8_next(const uint8_t *s, size_t len, size_t *n, uint32_t *cp);

/* Length of the longest valid UTF-8 prefix of s[0..n) (eight ASCII bytes at a time). */
size_t utf8_valid_prefix(const uint8_t *s, size_t n);

/* Replace invalid UTF-8 in s[0..len) by U+FFFD (maximal-subpart rule, as from_utf8_lossy);
 * returns a heap copy (NUL-terminated) and its length in *out_len. */
char *utf8_lossy(const char *s, size_t len, size_t *out_len);

/* U+FFFD encoded */
#define UTF8_REPLACEMENT "\xef\xbf\xbd"

#endif
