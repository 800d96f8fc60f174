/*
 * utf8: one decoding step under the maximal-subpart rule (Unicode §3.9, table 3-7):
 *
 *   lead      second byte    then
 *   00..7F    -              -
 *   C2..DF    80..BF         -
 *   E0        A0..BF         80..BF
 *   E1..EC    80..BF         80..BF
 *   ED        80..9F         80..BF          (no surrogates)
 *   EE..EF    80..BF         80..BF
 *   F0        90..BF         80..BF ×2
 *   F1..F3    80..BF         80..BF ×2
 *   F4        80..8F         80..BF ×2       (≤ U+10FFFF)
 *
 * A maximal subpart is the longest prefix that could still begin a valid sequence (at least one
 * byte): a lead byte that is not listed, or a stray continuation byte, is a subpart of one.
 */
#include "utf8.h"

#include <string.h>

#include "alloc.h"

utf8_step utf8_next(const uint8_t *s, size_t len, size_t *n, uint32_t *cp)
{
	uint8_t b = s[0];
	if (b < 0x80) {
		*n = 1;
		*cp = b;
		return UTF8_VALID;
	}
	int need;
	uint8_t lo = 0x80, hi = 0xbf;
	uint32_t c;
	if (b >= 0xc2 && b <= 0xdf) {
		need = 1;
		c = b & 0x1f;
	} else if (b >= 0xe0 && b <= 0xef) {
		need = 2;
		c = b & 0x0f;
		if (b == 0xe0)
			lo = 0xa0;
		else if (b == 0xed)
			hi = 0x9f;
	} else if (b >= 0xf0 && b <= 0xf4) {
		need = 3;
		c = b & 0x07;
		if (b == 0xf0)
			lo = 0x90;
		else if (b == 0xf4)
			hi = 0x8f;
	} else {
		*n = 1;
		return UTF8_INVALID;
	}
	for (int i = 1; i <= need; i++) {
		if ((size_t)i >= len) {
			*n = len;
			return UTF8_INCOMPLETE;
		}
		uint8_t x = s[i];
		if (x < lo || x > hi) {
			*n = (size_t)i;
			return UTF8_INVALID;
		}
		lo = 0x80;
		hi = 0xbf;
		c = (c << 6) | (x & 0x3f);
	}
	*n = (size_t)need + 1;
	*cp = c;
	return UTF8_VALID;
}

/* Length of the longest valid UTF-8 prefix of s[0..n). */
size_t utf8_valid_prefix(const uint8_t *s, size_t n)
{
	size_t i = 0, k;
	uint32_t cp;
	while (i < n) {
		/* eight ASCII bytes at a time */
		while (i + 8 <= n) {
			uint64_t w;
			memcpy(&w, s + i, 8);
			if (w & 0x8080808080808080ull)
				break;
			i += 8;
		}
		if (i >= n)
			break;
		if (utf8_next(s + i, n - i, &k, &cp) != UTF8_VALID)
			return i;
		i += k;
	}
	return n;
}

char *utf8_lossy(const char *str, size_t len, size_t *out_len)
{
	const uint8_t *s = (const uint8_t *)str;
	size_t ok = utf8_valid_prefix(s, len);
	/* each bad byte becomes at most 3 bytes */
	size_t cap;
	if (!size_mul(len - ok, 3, &cap) || !size_add(cap, ok + 1, &cap))
		cap = SIZE_MAX;
	char *out = xmalloc(cap);
	if (ok)
		memcpy(out, s, ok);
	size_t o = ok, i = ok, k;
	uint32_t cp;
	while (i < len) {
		/* an incomplete sequence can only be at the end: one maximal subpart too */
		if (utf8_next(s + i, len - i, &k, &cp) == UTF8_VALID) {
			memcpy(out + o, s + i, k);
			o += k;
		} else {
			memcpy(out + o, UTF8_REPLACEMENT, 3);
			o += 3;
		}
		i += k;
	}
	out[o] = 0;
	*out_len = o;
	return out;
}
