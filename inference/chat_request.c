/*
 * chat_request: reading an OpenAI chat-completions body (see chat_request.h for what is read).
 *
 * Each field goes through a jsonx getter, so "absent", "wrong type" and "out of range" are told
 * apart and the message names the field; a getter's 1 (absent) leaves the default in place.
 * Ranges follow vLLM's SamplingParams checks where it has one (temperature ≥ 0, 0 < top_p ≤ 1,
 * top_k −1/0 or ≥ 1, 0 ≤ min_p ≤ 1, max_tokens ≥ 1, 0 ≤ min_tokens ≤ max_tokens,
 * top_logprobs ≤ 20 and only with logprobs).
 */
#include "chat_request.h"

#include <stdio.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "alloc.h"
#include "jsonx.h"

#define WHERE "request"

/* jsonx getters return 1 for absent: fold that into success. */
static int got(int rc)
{
	return rc < 0 ? rc : 0;
}

void chat_request_deinit(chat_request *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n_images; i++)
		free(r->images[i].data);
	free(r->images);
	r->images = NULL;
	r->n_images = 0;
}

/* The value of each base64 character of the standard alphabet; -1 for every other byte ('='
 * included: padding is handled apart, at the end only). */
static const int8_t B64[256] = {
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 62, -1, -1, -1, 63,
	52, 53, 54, 55, 56, 57, 58, 59, 60, 61, -1, -1, -1, -1, -1, -1,
	-1,  0,  1,  2,  3,  4,  5,  6,  7,  8,  9, 10, 11, 12, 13, 14,
	15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, -1, -1, -1, -1, -1,
	-1, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40,
	41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
};

/* The quad at s[i, i+4) into buf[*o, *o+take), every check made: a character outside the
 * alphabet (reported at its offset), '=' outside the last pad characters, non-zero bits under
 * the padding. */
static int b64_quad(const char *s, size_t i, size_t len, size_t pad, char *buf, size_t *o, qerr *e)
{
	int v[4];
	for (int k = 0; k < 4; k++) {
		size_t at = i + (size_t)k;
		/* '=' only as the last one or two characters */
		if (s[at] == '=' && at >= len - pad) {
			v[k] = 0;
			continue;
		}
		v[k] = B64[(unsigned char)s[at]];
		if (v[k] < 0)
			return qerr_set(e, QERR_FORMAT, "base64: invalid character 0x%02x at offset %zu",
					(unsigned char)s[at], at);
	}
	uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
	size_t take = i + 4 == len ? 3 - pad : 3;
	/* the bits the padding drops must be zero (a canonical encoding) */
	if ((take == 1 && (w & 0xffff)) || (take == 2 && (w & 0xff)))
		return qerr_set(e, QERR_FORMAT, "base64: non-zero padding bits at offset %zu", i);
	for (size_t k = 0; k < take; k++)
		buf[(*o)++] = (char)(w >> (16 - 8 * k));
	return 0;
}

#if defined(__x86_64__)
/* 32 characters to 24 bytes at a time while all 32 are in the alphabet and 32 bytes may be
 * written (the last 8 are scratch, overwritten next); returns how many characters it decoded
 * (a multiple of 32). Per byte c, the class masks (signed compares: bytes ≥ 0x80 are in none)
 *   A-Z: c - 65   a-z: c - 71   0-9: c + 4   '+': 62   '/': 63
 * give the 6-bit value; maddubs joins pairs (a << 6 | b), madd pairs of those
 * (ab << 12 | cd), and a shuffle takes the three low bytes of each 32-bit lane, high first. */
__attribute__((target("avx2")))
static size_t b64_avx2(const unsigned char *s, size_t n_chars, char *out, size_t out_room)
{
	const __m256i A = _mm256_set1_epi8('A' - 1), Z = _mm256_set1_epi8('Z' + 1);
	const __m256i a = _mm256_set1_epi8('a' - 1), z = _mm256_set1_epi8('z' + 1);
	const __m256i d0 = _mm256_set1_epi8('0' - 1), d9 = _mm256_set1_epi8('9' + 1);
	const __m256i plus = _mm256_set1_epi8('+'), slash = _mm256_set1_epi8('/');
	const __m256i pack1 = _mm256_set1_epi32(0x01400140), pack2 = _mm256_set1_epi32(0x00011000);
	const __m256i shuf = _mm256_setr_epi8(2, 1, 0, 6, 5, 4, 10, 9, 8, 14, 13, 12, -1, -1, -1, -1,
					      2, 1, 0, 6, 5, 4, 10, 9, 8, 14, 13, 12, -1, -1, -1, -1);
	const __m256i perm = _mm256_setr_epi32(0, 1, 2, 4, 5, 6, 3, 7);
	size_t i = 0, o = 0;
	for (; i + 32 <= n_chars && o + 32 <= out_room; i += 32, o += 24) {
		__m256i c = _mm256_loadu_si256((const __m256i *)(s + i));
		__m256i up = _mm256_and_si256(_mm256_cmpgt_epi8(c, A), _mm256_cmpgt_epi8(Z, c));
		__m256i lo = _mm256_and_si256(_mm256_cmpgt_epi8(c, a), _mm256_cmpgt_epi8(z, c));
		__m256i dg = _mm256_and_si256(_mm256_cmpgt_epi8(c, d0), _mm256_cmpgt_epi8(d9, c));
		__m256i pl = _mm256_cmpeq_epi8(c, plus), sl = _mm256_cmpeq_epi8(c, slash);
		__m256i ok = _mm256_or_si256(_mm256_or_si256(up, lo), _mm256_or_si256(dg, _mm256_or_si256(pl, sl)));
		if ((uint32_t)_mm256_movemask_epi8(ok) != 0xffffffffu)
			break;
		__m256i off = _mm256_or_si256(
			_mm256_or_si256(_mm256_and_si256(up, _mm256_set1_epi8(-65)),
					_mm256_and_si256(lo, _mm256_set1_epi8(-71))),
			_mm256_or_si256(_mm256_and_si256(dg, _mm256_set1_epi8(4)),
					_mm256_or_si256(_mm256_and_si256(pl, _mm256_set1_epi8(62 - '+')),
							_mm256_and_si256(sl, _mm256_set1_epi8(63 - '/')))));
		__m256i v = _mm256_add_epi8(c, off);
		__m256i w = _mm256_madd_epi16(_mm256_maddubs_epi16(v, pack1), pack2);
		w = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(w, shuf), perm);
		_mm256_storeu_si256((__m256i *)(out + o), w);
	}
	return i;
}

static bool have_avx2(void)
{
	return __builtin_cpu_supports("avx2");
}
#endif

/* Every quad but the last (the only one that may hold padding) goes through the fast loops: 32
 * characters at a time with AVX2 where the CPU has it, else four table lookups, one sign test for
 * all four (any byte outside the alphabet is -1), three bytes out. A block or quad they reject is
 * decoded again by b64_quad, which names the bad character. A data URL image is most of a request
 * body (800 KB for a 448x448 PNG): this is ~15x (table) and ~60x (AVX2) faster than checking
 * character by character. */
int chat_base64_decode(const char *s, size_t len, size_t max_bytes, char **out, size_t *out_len,
		       qerr *e)
{
	*out = NULL;
	if (len % 4)
		return qerr_set(e, QERR_FORMAT, "base64: length %zu is not a multiple of 4", len);
	size_t pad = 0;
	if (len >= 1 && s[len - 1] == '=')
		pad++;
	if (len >= 2 && s[len - 2] == '=')
		pad++;
	size_t n = len / 4 * 3 - pad;
	if (n > max_bytes)
		return qerr_set(e, QERR_LIMIT, "base64: %zu decoded bytes exceed the limit of %zu", n,
				max_bytes);
	char *buf = xmalloc(n + 1);
	const unsigned char *u = (const unsigned char *)s;
	const size_t body = len ? len - 4 : 0;
	size_t o = 0, i = 0;
#if defined(__x86_64__)
	if (have_avx2()) {
		i = b64_avx2(u, body, buf, n + 1);
		o = i / 4 * 3;
	}
#endif
	while (i < body) {
		int a = B64[u[i]], b = B64[u[i + 1]], c = B64[u[i + 2]], d = B64[u[i + 3]];
		if ((a | b | c | d) < 0) {
			int rc = b64_quad(s, i, len, pad, buf, &o, e);
			if (rc) {
				free(buf);
				return rc;
			}
		} else {
			uint32_t w = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6 | (uint32_t)d;
			buf[o] = (char)(w >> 16);
			buf[o + 1] = (char)(w >> 8);
			buf[o + 2] = (char)w;
			o += 3;
		}
		i += 4;
	}
	int rc = len ? b64_quad(s, body, len, pad, buf, &o, e) : 0;
	if (rc) {
		free(buf);
		return rc;
	}
	buf[o] = 0;
	*out = buf;
	*out_len = o;
	return 0;
}

/* Load the image a URL names into img. */
static int load_image(const char *url, const chat_media *m, chat_image *img, qerr *e)
{
	bool allow_local = m && m->allow_local_paths;
	if (!strncmp(url, "data:", 5)) {
		const char *comma = strchr(url, ',');
		if (!comma)
			return qerr_set(e, QERR_FORMAT, "%s: data URL without a comma", img->where);
		size_t hl = (size_t)(comma - url);
		if (hl < 7 || memcmp(comma - 7, ";base64", 7))
			return qerr_set(e, QERR_UNSUPPORTED, "%s: only base64 data URLs are supported",
					img->where);
		if (strncmp(url + 5, "image/", 6))
			return qerr_set(e, QERR_UNSUPPORTED, "%s: data URL media type is not image/*",
					img->where);
		int rc = chat_base64_decode(comma + 1, strlen(comma + 1), CHAT_REQUEST_MAX_IMAGE_BYTES,
					    &img->data, &img->len, e);
		return rc ? qerr_prefix(e, "%s", img->where) : 0;
	}
	if (m && m->fetch) {
		/* the server's fetcher decides what it may load (http(s), file:// under a root) */
		int rc = m->fetch(m->ctx, url, &img->data, &img->len, e);
		return rc ? qerr_prefix(e, "%s", img->where) : 0;
	}
	if (!strncmp(url, "http://", 7) || !strncmp(url, "https://", 8))
		return qerr_set(e, QERR_UNSUPPORTED,
				"%s: http(s) image URLs are fetched by the server (qvl-fcgi), not here; "
				"give a data: URL or a local path", img->where);
	const char *path = url;
	if (!strncmp(url, "file://", 7)) {
		path = url + 7;
		if (path[0] != '/')
			return qerr_set(e, QERR_INVALID, "%s: file URL must hold an absolute path", img->where);
	} else if (strchr(url, ':') && strstr(url, "://")) {
		return qerr_set(e, QERR_UNSUPPORTED, "%s: unsupported URL scheme", img->where);
	}
	if (!allow_local)
		return qerr_set(e, QERR_UNSUPPORTED, "%s: local image paths are not allowed here",
				img->where);
	int rc = jsonx_read_file(path, CHAT_REQUEST_MAX_IMAGE_BYTES, &img->data, &img->len, e);
	return rc ? qerr_prefix(e, "%s", img->where) : 0;
}

/* The URL of an image part, or NULL with an error set (the part is known to be an image). */
static const char *image_url(json_object *part, const char *where, qerr *e)
{
	json_object *u = jsonx_member(part, "image_url");
	if (u && json_object_is_type(u, json_type_object))
		u = jsonx_member(u, "url");
	if (!u)
		u = jsonx_member(part, "image");
	if (!u || !json_object_is_type(u, json_type_string)) {
		qerr_set(e, QERR_FORMAT, "%s: image part without a URL string (image_url.url or image)",
			 where);
		return NULL;
	}
	return json_object_get_string(u);
}

static bool member_is(json_object *o, const char *key, const char *val)
{
	json_object *v = jsonx_member(o, key);
	return v && json_object_is_type(v, json_type_string) && !strcmp(json_object_get_string(v), val);
}

static int collect_images(chat_request *r, const chat_media *m, qerr *e)
{
	size_t nm = json_object_array_length(r->messages);
	for (size_t i = 0; i < nm; i++) {
		json_object *content = jsonx_member(json_object_array_get_idx(r->messages, i), "content");
		if (!content || !json_object_is_type(content, json_type_array))
			continue;
		for (size_t k = 0; k < json_object_array_length(content); k++) {
			json_object *part = json_object_array_get_idx(content, k);
			char where[64];
			snprintf(where, sizeof(where), "messages[%zu].content[%zu]", i, k);
			if (member_is(part, "type", "video") || member_is(part, "type", "video_url") ||
			    jsonx_member(part, "video") || jsonx_member(part, "video_url"))
				return qerr_set(e, QERR_UNSUPPORTED, "%s: videos are not supported", where);
			if (!member_is(part, "type", "image") && !member_is(part, "type", "image_url") &&
			    !jsonx_member(part, "image") && !jsonx_member(part, "image_url"))
				continue;
			if (r->n_images == CHAT_REQUEST_MAX_IMAGES)
				return qerr_set(e, QERR_LIMIT, "%s: more than %d images", where,
						CHAT_REQUEST_MAX_IMAGES);
			const char *url = image_url(part, where, e);
			if (!url)
				return -e->code;
			r->images = xrealloc(r->images, (r->n_images + 1) * sizeof(*r->images));
			chat_image *img = &r->images[r->n_images];
			memset(img, 0, sizeof(*img));
			snprintf(img->where, sizeof(img->where), "%s", where);
			r->n_images++;
			int rc = load_image(url, m, img, e);
			if (rc)
				return rc;
		}
	}
	return 0;
}

static int parse_stop(json_object *body, chat_request *r, qerr *e)
{
	json_object *s = jsonx_member(body, "stop");
	if (!s)
		return 0;
	if (json_object_is_type(s, json_type_string)) {
		r->stop[r->n_stop++] = json_object_get_string(s);
	} else if (json_object_is_type(s, json_type_array)) {
		size_t n = json_object_array_length(s);
		if (n > DETOK_MAX_STOPS)
			return qerr_set(e, QERR_INVALID, WHERE ": stop: more than %d strings", DETOK_MAX_STOPS);
		for (size_t i = 0; i < n; i++) {
			json_object *v = json_object_array_get_idx(s, i);
			if (!json_object_is_type(v, json_type_string))
				return qerr_set(e, QERR_FORMAT, WHERE ": stop[%zu]: expected a string", i);
			r->stop[r->n_stop++] = json_object_get_string(v);
		}
	} else {
		return qerr_set(e, QERR_FORMAT, WHERE ": stop: expected a string or an array of strings");
	}
	for (size_t i = 0; i < r->n_stop; i++) {
		size_t len = strlen(r->stop[i]);
		if (len == 0 || len > DETOK_MAX_STOP_BYTES)
			return qerr_set(e, QERR_INVALID, WHERE ": stop: strings must hold 1 to %d bytes",
					DETOK_MAX_STOP_BYTES);
	}
	return 0;
}

static int parse_stop_token_ids(json_object *body, chat_request *r, qerr *e)
{
	json_object *a = NULL;
	int rc = got(jsonx_get_array(body, "stop_token_ids", &a, WHERE, e));
	if (rc || !a)
		return rc;
	size_t n = json_object_array_length(a);
	if (n > CHAT_REQUEST_MAX_STOP_TOKEN_IDS)
		return qerr_set(e, QERR_INVALID, WHERE ": stop_token_ids: more than %d ids",
				CHAT_REQUEST_MAX_STOP_TOKEN_IDS);
	for (size_t i = 0; i < n; i++) {
		int64_t id;
		if (!jsonx_as_int(json_object_array_get_idx(a, i), 0, INT32_MAX, &id))
			return qerr_set(e, QERR_INVALID, WHERE ": stop_token_ids[%zu]: expected a token id", i);
		r->stop_token_ids[r->n_stop_token_ids++] = (int32_t)id;
	}
	return 0;
}

static int parse_sampling(json_object *body, chat_request *r, qerr *e)
{
	int rc;
	int64_t v = -1;
	if ((rc = got(jsonx_get_int(body, "max_completion_tokens", 1, INT32_MAX, &v, WHERE, e))))
		return rc;
	if (v < 0 && (rc = got(jsonx_get_int(body, "max_tokens", 1, INT32_MAX, &v, WHERE, e))))
		return rc;
	r->max_tokens = v;

	rc = jsonx_get_double(body, "temperature", &r->temperature, WHERE, e);
	if (rc < 0)
		return rc;
	r->has_temperature = rc == 0;
	if (r->has_temperature && !(r->temperature >= 0))
		return qerr_set(e, QERR_INVALID, WHERE ": temperature: must be ≥ 0, got %g", r->temperature);
	rc = jsonx_get_double(body, "top_p", &r->top_p, WHERE, e);
	if (rc < 0)
		return rc;
	r->has_top_p = rc == 0;
	if (r->has_top_p && !(r->top_p > 0 && r->top_p <= 1))
		return qerr_set(e, QERR_INVALID, WHERE ": top_p: must be in (0, 1], got %g", r->top_p);
	rc = jsonx_get_int(body, "top_k", -1, INT32_MAX, &r->top_k, WHERE, e);
	if (rc < 0)
		return rc;
	r->has_top_k = rc == 0;
	rc = jsonx_get_double(body, "min_p", &r->min_p, WHERE, e);
	if (rc < 0)
		return rc;
	r->has_min_p = rc == 0;
	if (r->has_min_p && !(r->min_p >= 0 && r->min_p <= 1))
		return qerr_set(e, QERR_INVALID, WHERE ": min_p: must be in [0, 1], got %g", r->min_p);
	int64_t seed;
	rc = jsonx_get_int(body, "seed", INT64_MIN, INT64_MAX, &seed, WHERE, e);
	if (rc < 0)
		return rc;
	r->has_seed = rc == 0;
	r->seed = (uint64_t)seed;

	/* penalties, as vLLM takes them: presence and frequency in [-2, 2], repetition > 0 */
	r->presence_penalty = 0;
	r->frequency_penalty = 0;
	if ((rc = got(jsonx_get_double(body, "presence_penalty", &r->presence_penalty, WHERE, e))))
		return rc;
	if (!(r->presence_penalty >= -2 && r->presence_penalty <= 2))
		return qerr_set(e, QERR_INVALID, WHERE ": presence_penalty: must be in [-2, 2], got %g",
				r->presence_penalty);
	if ((rc = got(jsonx_get_double(body, "frequency_penalty", &r->frequency_penalty, WHERE, e))))
		return rc;
	if (!(r->frequency_penalty >= -2 && r->frequency_penalty <= 2))
		return qerr_set(e, QERR_INVALID, WHERE ": frequency_penalty: must be in [-2, 2], got %g",
				r->frequency_penalty);
	rc = jsonx_get_double(body, "repetition_penalty", &r->repetition_penalty, WHERE, e);
	if (rc < 0)
		return rc;
	r->has_repetition_penalty = rc == 0;
	if (r->has_repetition_penalty && !(r->repetition_penalty > 0 && r->repetition_penalty <= 1e6))
		return qerr_set(e, QERR_INVALID, WHERE ": repetition_penalty: must be > 0, got %g",
				r->repetition_penalty);

	int64_t n = 1;
	if ((rc = got(jsonx_get_int(body, "n", 1, CHAT_REQUEST_MAX_N, &n, WHERE, e))))
		return rc;
	r->n = (uint32_t)n;
	if ((rc = got(jsonx_get_bool(body, "ignore_eos", &r->ignore_eos, WHERE, e))))
		return rc;
	if ((rc = got(jsonx_get_int(body, "min_tokens", 0, INT32_MAX, &r->min_tokens, WHERE, e))))
		return rc;
	if (r->max_tokens >= 0 && r->min_tokens > r->max_tokens)
		return qerr_set(e, QERR_INVALID, WHERE ": min_tokens: %lld exceeds max_tokens %lld",
				(long long)r->min_tokens, (long long)r->max_tokens);
	return 0;
}

static int parse_output(json_object *body, chat_request *r, qerr *e)
{
	int rc;
	if ((rc = got(jsonx_get_bool(body, "logprobs", &r->logprobs, WHERE, e))))
		return rc;
	int64_t tl = 0;
	if ((rc = got(jsonx_get_int(body, "top_logprobs", 0, CHAT_REQUEST_MAX_TOP_LOGPROBS, &tl, WHERE, e))))
		return rc;
	if (tl > 0 && !r->logprobs)
		return qerr_set(e, QERR_INVALID, WHERE ": top_logprobs: needs logprobs set to true");
	r->top_logprobs = (int)tl;
	if ((rc = got(jsonx_get_bool(body, "skip_special_tokens", &r->skip_special_tokens, WHERE, e))) ||
	    (rc = got(jsonx_get_bool(body, "include_stop_str_in_output", &r->include_stop_str_in_output,
				     WHERE, e))) ||
	    (rc = got(jsonx_get_bool(body, "return_tokens_as_token_ids", &r->return_tokens_as_token_ids,
				     WHERE, e))) ||
	    (rc = got(jsonx_get_bool(body, "add_generation_prompt", &r->chat.add_generation_prompt,
				     WHERE, e))))
		return rc;
	json_object *k = NULL;
	if ((rc = got(jsonx_get_object(body, "chat_template_kwargs", &k, WHERE, e))))
		return rc;
	if (k && (rc = got(jsonx_get_bool(k, "add_vision_id", &r->chat.add_vision_id,
					  WHERE ": chat_template_kwargs", e))))
		return rc;
	k = NULL;
	if ((rc = got(jsonx_get_object(body, "mm_processor_kwargs", &k, WHERE, e))))
		return rc;
	if (k && ((rc = got(jsonx_get_int(k, "min_pixels", 1, INT32_MAX, &r->min_pixels,
					  WHERE ": mm_processor_kwargs", e))) ||
		  (rc = got(jsonx_get_int(k, "max_pixels", 1, INT64_MAX / 4, &r->max_pixels,
					  WHERE ": mm_processor_kwargs", e)))))
		return rc;
	return 0;
}

int chat_request_parse(json_object *body, bool allow_local_paths, chat_request *out, qerr *e)
{
	chat_media m = { .allow_local_paths = allow_local_paths };
	return chat_request_parse_media(body, &m, out, e);
}

int chat_request_parse_media(json_object *body, const chat_media *m, chat_request *out, qerr *e)
{
	chat_request *r = out;
	memset(r, 0, sizeof(*r));
	r->max_tokens = -1;
	r->skip_special_tokens = true;
	r->chat.add_generation_prompt = true;
	if (!json_object_is_type(body, json_type_object))
		return qerr_set(e, QERR_FORMAT, WHERE ": expected a JSON object");
	int rc = jsonx_get_array(body, "messages", &r->messages, WHERE, e);
	if (rc == 1)
		return qerr_set(e, QERR_MISSING, WHERE ": messages: missing");
	if (rc < 0)
		return rc;
	if ((rc = got(jsonx_get_array(body, "tools", &r->tools, WHERE, e))) ||
	    (rc = got(jsonx_get_string(body, "model", &r->model, WHERE, e))) ||
	    (rc = parse_sampling(body, r, e)) || (rc = parse_stop(body, r, e)) ||
	    (rc = parse_stop_token_ids(body, r, e)) || (rc = parse_output(body, r, e)))
		return rc;
	return collect_images(r, m, e);
}
