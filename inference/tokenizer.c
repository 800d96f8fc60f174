/*
 * tokenizer: loading a Qwen2/Qwen3 tokenizer.json and encoding and decoding text exactly as
 * Hugging Face tokenizers does (see tokenizer.h for the contract).
 *
 * Encoding, for one call:
 *
 *   bytes ──utf8 check──▶ text ──added tokens (raw)──▶ spans ──NFC──▶ spans ──added tokens
 *   (normalized ones, if any)──▶ spans ──pretok──▶ pieces ──bpe──▶ ids
 *
 *   - invalid UTF-8 is replaced first (utf8_lossy, with utf8.h's maximal-subpart step), so
 *     everything after sees valid UTF-8;
 *   - added tokens are found with a byte trie, leftmost-longest: at each position where some
 *     token's first byte occurs (memchr when all tokens start with the same byte, as Qwen's '<'),
 *     the longest token matching there wins; the text between tokens is a span;
 *   - NFC, with utf8proc's data, is applied only to spans that hold a code point flagged
 *     PRETOK_NFC_CHECK (most text holds none and is not copied), split at PRETOK_NFC_BARRIER code
 *     points, which tokenizers' older normalizer does not know (it leaves them as they are and
 *     does not compose or reorder across them); the canonical ordering is done here, in linear
 *     time, because utf8proc's is quadratic in the length of a run of combining marks;
 *   - pretok_piece_end cuts a span into the pieces of the Split regex; each piece's bytes go to
 *     bpe_encode (the byte-level alphabet is implicit: byte b starts as the id of the token that
 *     spells b; the word cache lives there).
 *
 * Decoding concatenates each id's bytes — tokenizers' ByteLevel decoder maps every character of
 * a token back to its byte when all of them are in the byte-level alphabet, and otherwise takes
 * the token's own UTF-8 (this holds for added tokens too) — then applies utf8_lossy.
 *
 * The vocabulary: entries indexed by id (spelling and decoded bytes, both in one string arena)
 * and an open-addressing table from spelling to id. Added tokens get ids as tokenizers would give
 * them (the id of an equal vocabulary token, else the next free one); a file whose ids disagree is
 * refused, since tokenizers would silently renumber it.
 *
 * Threads: after tok_load everything here is read-only; the only mutable state, the word cache,
 * is inside bpe and locked there. Per-call buffers are allocated per call.
 */
#include "tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json.h>
#include <utf8proc.h>

#include "alloc.h"
#include "bpe.h"
#include "jsonx.h"
#include "log.h"
#include "pretok.h"
#include "strbuf.h"
#include "utf8.h"

/* tokenizer.json of Qwen3 is 11 MB; leave room, but not unbounded. */
#define TOK_MAX_FILE_BYTES ((size_t)256 << 20)
#define TOK_MAX_IDS (1 << 24)

enum {
	ENT_MODEL = 1,     /* in model.vocab */
	ENT_ADDED = 2,     /* an added token */
	ENT_SPECIAL = 4,   /* an added token marked special */
};

struct tok_entry {
	uint32_t spelled, spelled_len;   /* offsets into strs */
	uint32_t bytes, bytes_len;
	uint8_t flags;                   /* ENT_*; 0 = no token has this id */
};

/* A byte trie of added-token contents: node 0 is the root; child/sibling 0 = none. */
struct trie_node {
	uint32_t child, sibling;
	int32_t id;   /* token id ending here, or -1 */
	uint8_t byte;
};

struct matcher {
	struct trie_node *nodes;   /* owned */
	size_t n, cap;
	bool first[256];   /* some token starts with this byte */
	int nfirst;
	uint8_t only_first;   /* the first byte when nfirst == 1 */
};

struct tokenizer {
	char *path;                  /* owned */
	struct tok_entry *ent;       /* owned; n_ids */
	int32_t n_ids;
	char *strs;                  /* owned arena */
	size_t strs_len, strs_cap;
	int32_t *lookup;             /* owned; spelling → id, -1 empty; lookup_mask + 1 */
	size_t lookup_mask;
	struct matcher raw;          /* added tokens with normalized=false */
	struct matcher norm;         /* added tokens with normalized=true (matched after NFC) */
	bool nfc;
	bool ignore_merges;
	bool ascii_nfc_check;        /* some ASCII code point has PRETOK_NFC_CHECK (never, in practice) */
	pretok *pre;                 /* owned */
	bpe *model;                  /* owned */
	uint32_t byte_cp[256];       /* byte-level alphabet: byte → code point */
	int16_t cp_byte[0x144];      /* and back; -1 outside */
};

/* ---- ids ---- */

void tok_ids_push(tok_ids *ids, int32_t id)
{
	if (ids->n == ids->cap) {
		ids->cap = ids->cap ? 2 * ids->cap : 64;
		ids->v = xrealloc(ids->v, ids->cap * sizeof(*ids->v));
	}
	ids->v[ids->n++] = id;
}

void tok_ids_deinit(tok_ids *ids)
{
	free(ids->v);
	ids->v = NULL;
	ids->n = ids->cap = 0;
}

/* ---- vocabulary ---- */

/* FNV-1a of s[0..n), its high bits folded down for the table's low-bit mask. */
static uint64_t hash_str(const char *s, size_t n)
{
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
	return h ^ (h >> 29);
}

/* Append n bytes to the arena; returns their offset (below 4 GiB: the file is at most
 * TOK_MAX_FILE_BYTES, and the arena holds each string twice at most). */
static uint32_t arena_add(tokenizer *t, const void *p, size_t n)
{
	strbuf b = { t->strs, t->strs_len, t->strs_cap };
	size_t off = b.len;
	strbuf_add(&b, p, n);
	t->strs = b.s;
	t->strs_len = b.len;
	t->strs_cap = b.cap;
	return (uint32_t)off;
}

/* The id spelled s[0..n) (a vocabulary token or an added token's content), or -1. */
static int32_t lookup_id(const tokenizer *t, const char *s, size_t n)
{
	for (size_t i = hash_str(s, n) & t->lookup_mask;; i = (i + 1) & t->lookup_mask) {
		int32_t id = t->lookup[i];
		if (id < 0)
			return -1;
		const struct tok_entry *en = &t->ent[id];
		if (en->spelled_len == n && memcmp(t->strs + en->spelled, s, n) == 0)
			return id;
	}
}

/* Make id findable by its spelling (not already in the table; the table is at most half full). */
static void lookup_insert(tokenizer *t, int32_t id)
{
	const struct tok_entry *en = &t->ent[id];
	size_t i = hash_str(t->strs + en->spelled, en->spelled_len) & t->lookup_mask;
	while (t->lookup[i] >= 0)
		i = (i + 1) & t->lookup_mask;
	t->lookup[i] = id;
}

/* The bytes a token stands for, by tokenizers' ByteLevel decoder rule: each character mapped back
 * to its byte when all of them are in the byte-level alphabet, else the spelling itself. */
static void token_bytes(const tokenizer *t, const char *s, size_t n, strbuf *out)
{
	out->len = 0;
	size_t i = 0;
	while (i < n) {
		utf8proc_int32_t cp;
		utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &cp);
		if (k <= 0 || cp < 0 || cp >= 0x144 || t->cp_byte[cp] < 0) {
			out->len = 0;
			strbuf_add(out, s, n);
			return;
		}
		uint8_t b = (uint8_t)t->cp_byte[cp];
		strbuf_add(out, &b, 1);
		i += (size_t)k;
	}
	if (!out->s)
		strbuf_add(out, "", 0);
}

/* Record token id with spelling s[0..n) (valid UTF-8, checked by the caller). */
static void set_entry(tokenizer *t, int32_t id, const char *s, size_t n, uint8_t flags, strbuf *tmp)
{
	struct tok_entry *en = &t->ent[id];
	/* each string NUL-terminated, for tok_id_to_token */
	en->spelled = arena_add(t, s, n);
	en->spelled_len = (uint32_t)n;
	arena_add(t, "", 1);
	token_bytes(t, s, n, tmp);
	en->bytes = arena_add(t, tmp->s, tmp->len);
	en->bytes_len = (uint32_t)tmp->len;
	arena_add(t, "", 1);
	en->flags |= flags;
}

/* ---- added-token matching ---- */

/* A new childless node for byte; returns its index. */
static uint32_t trie_node_new(struct matcher *m, uint8_t byte)
{
	if (m->n == m->cap) {
		m->cap = m->cap ? 2 * m->cap : 64;
		m->nodes = xrealloc(m->nodes, m->cap * sizeof(*m->nodes));
	}
	m->nodes[m->n] = (struct trie_node){ 0, 0, -1, byte };
	return (uint32_t)m->n++;
}

/* Add token id with content s[0..n), n ≥ 1 (contents are unique). */
static void trie_add(struct matcher *m, const uint8_t *s, size_t n, int32_t id)
{
	if (m->n == 0)
		trie_node_new(m, 0);
	uint32_t at = 0;
	for (size_t i = 0; i < n; i++) {
		uint32_t c = m->nodes[at].child;
		while (c && m->nodes[c].byte != s[i])
			c = m->nodes[c].sibling;
		if (!c) {
			c = trie_node_new(m, s[i]);
			m->nodes[c].sibling = m->nodes[at].child;
			m->nodes[at].child = c;
		}
		at = c;
	}
	m->nodes[at].id = id;
	if (!m->first[s[0]]) {
		m->first[s[0]] = true;
		m->nfirst++;
		m->only_first = s[0];
	}
}

/* The longest token at s[0..n): its length (0 if none) and *id. */
static size_t trie_longest(const struct matcher *m, const uint8_t *s, size_t n, int32_t *id)
{
	uint32_t at = 0;
	size_t best = 0;
	for (size_t i = 0; i < n; i++) {
		uint32_t c = m->nodes[at].child;
		while (c && m->nodes[c].byte != s[i])
			c = m->nodes[c].sibling;
		if (!c)
			break;
		at = c;
		if (m->nodes[at].id >= 0) {
			best = i + 1;
			*id = m->nodes[at].id;
		}
	}
	return best;
}

/* The leftmost-longest token in s[i..n): its start (n if none), *len and *id. */
static size_t next_added(const struct matcher *m, const uint8_t *s, size_t n, size_t i,
			 size_t *len, int32_t *id)
{
	if (m->nfirst == 0)
		return n;
	while (i < n) {
		if (m->nfirst == 1) {
			const uint8_t *p = memchr(s + i, m->only_first, n - i);
			if (!p)
				return n;
			i = (size_t)(p - s);
		} else if (!m->first[s[i]]) {
			i++;
			continue;
		}
		size_t k = trie_longest(m, s + i, n - i, id);
		if (k) {
			*len = k;
			return i;
		}
		i++;
	}
	return n;
}

/* ---- normalisation ---- */

/* The code point at s[0..avail) of valid UTF-8, and its length in *n. */
static inline uint32_t utf8_decode(const uint8_t *s, size_t avail, size_t *n)
{
	uint32_t cp = 0xfffd;
	if (utf8_next(s, avail, n, &cp) != UTF8_VALID)
		cp = 0xfffd;   /* not reached: the text was repaired first */
	return cp;
}

/* Offset of the first code point in s[0..n) with flag, or n. */
static size_t find_flag(const tokenizer *t, const uint8_t *s, size_t n, unsigned flag)
{
	size_t i = 0;
	while (i < n) {
		if (!t->ascii_nfc_check) {
			/* ASCII never needs NFC: skip it eight bytes at a time */
			while (i + 8 <= n) {
				uint64_t w;
				memcpy(&w, s + i, 8);
				if (w & 0x8080808080808080ull)
					break;
				i += 8;
			}
			while (i < n && s[i] < 0x80)
				i++;
			if (i >= n)
				break;
		}
		size_t k;
		uint32_t cp = utf8_decode(s + i, n - i, &k);
		if (pretok_flags(t->pre, cp) & flag)
			return i;
		i += k;
	}
	return n;
}

/* Stable sort of v[0..n) by combining class cc (a run of non-starters), through tmp: insertion
 * for short runs, counting sort for long ones, so that a run of a million marks stays linear. */
static void sort_marks(int32_t *v, uint8_t *cc, size_t n, int32_t *tmp, uint8_t *tmpcc)
{
	if (n <= 32) {
		for (size_t i = 1; i < n; i++) {
			int32_t x = v[i];
			uint8_t c = cc[i];
			size_t j = i;
			for (; j > 0 && cc[j - 1] > c; j--) {
				v[j] = v[j - 1];
				cc[j] = cc[j - 1];
			}
			v[j] = x;
			cc[j] = c;
		}
		return;
	}
	size_t start[257] = { 0 };
	for (size_t i = 0; i < n; i++)
		start[cc[i] + 1]++;
	for (int c = 0; c < 256; c++)
		start[c + 1] += start[c];
	for (size_t i = 0; i < n; i++) {
		size_t at = start[cc[i]]++;
		tmp[at] = v[i];
		tmpcc[at] = cc[i];
	}
	memcpy(v, tmp, n * sizeof(*v));
	memcpy(cc, tmpcc, n);
}

/* Append NFC(s[0..n)) by utf8proc's data to out: canonical decomposition per code point, then
 * canonical ordering here, then utf8proc's composition. (utf8proc_map would do it all, but its
 * ordering is an insertion sort over the whole text: 16 000 marks in a row take half a second,
 * 2 million hours.) */
static void nfc_part(const tokenizer *t, const uint8_t *s, size_t n, strbuf *out)
{
	if (find_flag(t, s, n, PRETOK_NFC_CHECK) == n) {
		strbuf_add(out, s, n);
		return;
	}
	enum { MAXDEC = 16 };   /* a canonical decomposition has at most 4 code points */
	size_t cap = n + MAXDEC, len = 0;
	int32_t *v = xmalloc(cap * sizeof(*v));
	uint8_t *cc = xmalloc(cap);
	for (size_t i = 0; i < n;) {
		size_t k;
		uint32_t cp = utf8_decode(s + i, n - i, &k);
		i += k;
		if (cap - len < MAXDEC) {
			cap = 2 * cap;
			v = xrealloc(v, cap * sizeof(*v));
			cc = xrealloc(cc, cap);
		}
		int bound = 0;
		utf8proc_ssize_t m = utf8proc_decompose_char((utf8proc_int32_t)cp, v + len, MAXDEC, UTF8PROC_DECOMPOSE, &bound);
		if (m < 1 || m > MAXDEC) {   /* cannot happen for a valid code point */
			v[len] = (int32_t)cp;
			m = 1;
		}
		for (utf8proc_ssize_t q = 0; q < m; q++)
			cc[len + (size_t)q] = utf8proc_get_property(v[len + (size_t)q])->combining_class;
		len += (size_t)m;
	}
	int32_t *tmp = NULL;
	uint8_t *tmpcc = NULL;
	for (size_t i = 0; i < len;) {
		if (cc[i] == 0) {
			i++;
			continue;
		}
		size_t j = i;
		while (j < len && cc[j] != 0)
			j++;
		if (j - i > 32 && !tmp) {
			tmp = xmalloc(len * sizeof(*tmp));
			tmpcc = xmalloc(len);
		}
		sort_marks(v + i, cc + i, j - i, tmp, tmpcc);
		i = j;
	}
	free(tmp);
	free(tmpcc);
	free(cc);
	utf8proc_ssize_t m = utf8proc_normalize_utf32(v, (utf8proc_ssize_t)len, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
	if (m < 0) {   /* composition only shortens; no error is possible */
		log_msg(LOG_LEVEL_CRIT, "tokenizer", "utf8proc_normalize_utf32: %s", utf8proc_errmsg(m));
		abort();
	}
	for (utf8proc_ssize_t q = 0; q < m; q++) {
		utf8proc_uint8_t u[4];
		utf8proc_ssize_t k = utf8proc_encode_char(v[q], u);
		strbuf_add(out, u, (size_t)k);
	}
	free(v);
}

/* NFC of s[0..n) as tokenizers computes it; returns s itself when it is already in NFC, else
 * out's buffer, and the length in *out_n. */
static const uint8_t *normalize(const tokenizer *t, const uint8_t *s, size_t n, strbuf *out,
				size_t *out_n)
{
	*out_n = n;
	if (!t->nfc || find_flag(t, s, n, PRETOK_NFC_CHECK) == n)
		return s;
	out->len = 0;
	size_t a = 0;
	for (size_t i = 0; i < n;) {
		size_t b = i + find_flag(t, s + i, n - i, PRETOK_NFC_BARRIER);
		if (b >= n)
			break;
		size_t k;
		utf8_decode(s + b, n - b, &k);
		nfc_part(t, s + a, b - a, out);
		strbuf_add(out, s + b, k);
		a = i = b + k;
	}
	nfc_part(t, s + a, n - a, out);
	*out_n = out->len;
	return (const uint8_t *)out->s;
}

/* ---- encoding ---- */

/* One pre-token: BPE, or (ignore_merges) the whole piece when the vocabulary has it. */
static void encode_piece(const tokenizer *t, const uint8_t *s, size_t n, tok_ids *ids)
{
	if (t->ignore_merges) {
		strbuf sp = { 0 };
		for (size_t i = 0; i < n; i++) {
			utf8proc_uint8_t u[4];
			utf8proc_ssize_t k = utf8proc_encode_char((utf8proc_int32_t)t->byte_cp[s[i]], u);
			strbuf_add(&sp, u, (size_t)k);
		}
		int32_t id = lookup_id(t, sp.s, sp.len);
		free(sp.s);
		if (id >= 0 && (t->ent[id].flags & ENT_MODEL)) {
			tok_ids_push(ids, id);
			return;
		}
	}
	bpe_encode(t->model, s, n, ids);
}

/* A normalised span without added tokens: pre-tokenize and encode each piece. */
static void encode_words(const tokenizer *t, const uint8_t *s, size_t n, tok_ids *ids)
{
	for (size_t i = 0; i < n;) {
		size_t e = pretok_piece_end(t->pre, (const char *)s, n, i);
		encode_piece(t, s + i, e - i, ids);
		i = e;
	}
}

/* A span between raw-matched added tokens: normalise, match normalized added tokens, encode. */
static void encode_span(const tokenizer *t, const uint8_t *s, size_t n, tok_ids *ids, strbuf *tmp)
{
	if (n == 0)
		return;
	size_t nn;
	const uint8_t *ns = normalize(t, s, n, tmp, &nn);
	size_t i = 0, len = 0;
	int32_t id = -1;
	for (;;) {
		size_t at = next_added(&t->norm, ns, nn, i, &len, &id);
		encode_words(t, ns + i, at - i, ids);
		if (at >= nn)
			break;
		tok_ids_push(ids, id);
		i = at + len;
	}
}

void tok_encode(const tokenizer *t, const char *text, size_t len, tok_ids *ids)
{
	char *fixed = NULL;
	const uint8_t *s = (const uint8_t *)text;
	if (utf8_valid_prefix(s, len) != len) {
		fixed = utf8_lossy(text, len, &len);
		s = (const uint8_t *)fixed;
	}
	strbuf tmp = { 0 };
	size_t i = 0, tlen = 0;
	int32_t id = -1;
	for (;;) {
		size_t at = next_added(&t->raw, s, len, i, &tlen, &id);
		encode_span(t, s + i, at - i, ids, &tmp);
		if (at >= len)
			break;
		tok_ids_push(ids, id);
		i = at + tlen;
	}
	free(tmp.s);
	free(fixed);
}

char *tok_normalize(const tokenizer *t, const char *text, size_t len, size_t *out_len)
{
	char *fixed = NULL;
	const uint8_t *s = (const uint8_t *)text;
	if (utf8_valid_prefix(s, len) != len) {
		fixed = utf8_lossy(text, len, &len);
		s = (const uint8_t *)fixed;
	}
	strbuf out = { 0 }, tmp = { 0 };
	strbuf_add(&out, "", 0);
	size_t i = 0, tlen = 0;
	int32_t id = -1;
	for (;;) {
		size_t at = next_added(&t->raw, s, len, i, &tlen, &id);
		size_t nn;
		const uint8_t *ns = normalize(t, s + i, at - i, &tmp, &nn);
		strbuf_add(&out, ns, nn);
		if (at >= len)
			break;
		strbuf_add(&out, s + at, tlen);
		i = at + tlen;
	}
	free(tmp.s);
	free(fixed);
	*out_len = out.len;
	return out.s;
}

/* ---- decoding and queries ---- */

int32_t tok_vocab_size(const tokenizer *t)
{
	return t->n_ids;
}

/* The entry of id, or NULL when no token has this id. */
static const struct tok_entry *entry(const tokenizer *t, int32_t id)
{
	if (id < 0 || id >= t->n_ids || !t->ent[id].flags)
		return NULL;
	return &t->ent[id];
}

const char *tok_id_bytes(const tokenizer *t, int32_t id, size_t *len)
{
	const struct tok_entry *en = entry(t, id);
	if (!en)
		return NULL;
	*len = en->bytes_len;
	return t->strs + en->bytes;
}

const char *tok_id_to_token(const tokenizer *t, int32_t id)
{
	const struct tok_entry *en = entry(t, id);
	return en ? t->strs + en->spelled : NULL;
}

int32_t tok_token_to_id(const tokenizer *t, const char *token)
{
	return token ? lookup_id(t, token, strlen(token)) : -1;
}

bool tok_is_special(const tokenizer *t, int32_t id)
{
	const struct tok_entry *en = entry(t, id);
	return en && (en->flags & ENT_SPECIAL);
}

bool tok_is_added(const tokenizer *t, int32_t id)
{
	const struct tok_entry *en = entry(t, id);
	return en && (en->flags & ENT_ADDED);
}

char *tok_decode(const tokenizer *t, const int32_t *ids, size_t n, bool skip_special, size_t *len)
{
	strbuf b = { 0 };
	strbuf_add(&b, "", 0);
	for (size_t i = 0; i < n; i++) {
		const struct tok_entry *en = entry(t, ids[i]);
		if (!en || (skip_special && (en->flags & ENT_SPECIAL)))
			continue;
		strbuf_add(&b, t->strs + en->bytes, en->bytes_len);
	}
	char *out = utf8_lossy(b.s, b.len, len);
	free(b.s);
	return out;
}

/* ---- loading ---- */

void tok_free(tokenizer *t)
{
	if (!t)
		return;
	bpe_free(t->model);
	pretok_free(t->pre);
	free(t->raw.nodes);
	free(t->norm.nodes);
	free(t->lookup);
	free(t->strs);
	free(t->ent);
	free(t->path);
	free(t);
}

/* Whether s[0..n) is valid UTF-8. */
static bool valid_utf8(const char *s, size_t n)
{
	return utf8_valid_prefix((const uint8_t *)s, n) == n;
}

/* An optional string member that must be null, absent or equal to one of the allowed values. */
static int check_string(json_object *obj, const char *key, const char *const *allowed, size_t nallowed,
			const char *where, qerr *e)
{
	const char *v = NULL;
	int rc = jsonx_get_string(obj, key, &v, where, e);
	if (rc < 0)
		return rc;
	if (rc == 1)
		return 0;
	for (size_t i = 0; i < nallowed; i++)
		if (strcmp(v, allowed[i]) == 0)
			return 0;
	return qerr_set(e, QERR_UNSUPPORTED, "%s: %s \"%s\" is not supported", where, key, v);
}

/* An optional bool member that, when present, must have the value want. */
static int check_bool(json_object *obj, const char *key, bool want, const char *where, qerr *e)
{
	bool v = want;
	int rc = jsonx_get_bool(obj, key, &v, where, e);
	if (rc < 0)
		return rc;
	if (v != want)
		return qerr_set(e, QERR_UNSUPPORTED, "%s: %s = %s is not supported", where, key,
				v ? "true" : "false");
	return 0;
}

/* The "type" member of o, or NULL. */
static const char *type_of(json_object *o)
{
	const char *ty = NULL;
	if (jsonx_get_string(o, "type", &ty, "", NULL) != 0)
		return NULL;
	return ty;
}

/* normalizer: null or NFC (also as a one-element Sequence). */
static int load_normalizer(tokenizer *t, json_object *root, qerr *e)
{
	json_object *n = jsonx_member(root, "normalizer");
	if (!n)
		return 0;
	const char *ty = type_of(n);
	if (ty && strcmp(ty, "Sequence") == 0) {
		json_object *list = jsonx_member(n, "normalizers");
		if (list && json_object_is_type(list, json_type_array) && json_object_array_length(list) == 1) {
			n = json_object_array_get_idx(list, 0);
			ty = type_of(n);
		}
	}
	if (!ty || strcmp(ty, "NFC") != 0)
		return qerr_set(e, QERR_UNSUPPORTED, "%s: normalizer %s is not supported (NFC only)",
				t->path, ty ? ty : json_object_to_json_string(n));
	t->nfc = true;
	return 0;
}

/* pre_tokenizer: Sequence[Split(Qwen2 regex, Isolated), ByteLevel(no prefix space, no regex)]. */
static int load_pre_tokenizer(tokenizer *t, json_object *root, qerr *e)
{
	json_object *p = jsonx_member(root, "pre_tokenizer");
	const char *ty = p ? type_of(p) : NULL;
	json_object *list = jsonx_member(p, "pretokenizers");
	if (!ty || strcmp(ty, "Sequence") != 0 || !list || !json_object_is_type(list, json_type_array) ||
	    json_object_array_length(list) != 2)
		return qerr_set(e, QERR_UNSUPPORTED, "%s: pre_tokenizer: only Sequence[Split, ByteLevel] "
				"(as Qwen2/Qwen3 use) is supported", t->path);
	json_object *split = json_object_array_get_idx(list, 0), *bl = json_object_array_get_idx(list, 1);
	char where[512];
	snprintf(where, sizeof(where), "%s: pre_tokenizer", t->path);
	ty = type_of(split);
	if (!ty || strcmp(ty, "Split") != 0)
		return qerr_set(e, QERR_UNSUPPORTED, "%s: first step %s is not supported (Split only)",
				where, ty ? ty : "without a type");
	const char *re = NULL;
	json_object *pat = jsonx_member(split, "pattern");
	if (jsonx_get_string(pat, "Regex", &re, where, NULL) != 0 || !pretok_is_qwen2_regex(re))
		return qerr_set(e, QERR_UNSUPPORTED, "%s: Split pattern %s is not the Qwen2 regex", where,
				pat ? json_object_to_json_string(pat) : "(missing)");
	static const char *const isolated[] = { "Isolated" };
	int rc;
	if ((rc = check_string(split, "behavior", isolated, 1, where, e)) ||
	    (rc = check_bool(split, "invert", false, where, e)))
		return rc;
	ty = type_of(bl);
	if (!ty || strcmp(ty, "ByteLevel") != 0)
		return qerr_set(e, QERR_UNSUPPORTED, "%s: second step %s is not supported (ByteLevel only)",
				where, ty ? ty : "without a type");
	if ((rc = check_bool(bl, "add_prefix_space", false, where, e)) ||
	    (rc = check_bool(bl, "use_regex", false, where, e)))
		return rc;
	return 0;
}

/* post_processor null/ByteLevel (adds nothing), decoder ByteLevel, no truncation or padding. */
static int load_pipeline_rest(tokenizer *t, json_object *root, qerr *e)
{
	json_object *pp = jsonx_member(root, "post_processor");
	const char *ty = pp ? type_of(pp) : "ByteLevel";
	if (!ty || strcmp(ty, "ByteLevel") != 0)
		return qerr_set(e, QERR_UNSUPPORTED, "%s: post_processor %s is not supported (ByteLevel only)",
				t->path, ty ? ty : "without a type");
	json_object *d = jsonx_member(root, "decoder");
	ty = d ? type_of(d) : NULL;
	if (!ty || strcmp(ty, "ByteLevel") != 0)
		return qerr_set(e, QERR_UNSUPPORTED, "%s: decoder %s is not supported (ByteLevel only)",
				t->path, ty ? ty : "(none)");
	if (jsonx_member(root, "truncation") || jsonx_member(root, "padding"))
		return qerr_set(e, QERR_UNSUPPORTED, "%s: truncation and padding must be null", t->path);
	return 0;
}

/* Split a merge "a b" / ["a", "b"] into its two parts (borrowed / in buf). */
static bool merge_parts(json_object *m, char *buf, size_t bufsz, const char **a, size_t *alen,
			const char **b, size_t *blen)
{
	if (json_object_is_type(m, json_type_array)) {
		if (json_object_array_length(m) != 2)
			return false;
		json_object *x = json_object_array_get_idx(m, 0), *y = json_object_array_get_idx(m, 1);
		if (!json_object_is_type(x, json_type_string) || !json_object_is_type(y, json_type_string))
			return false;
		*a = json_object_get_string(x);
		*alen = (size_t)json_object_get_string_len(x);
		*b = json_object_get_string(y);
		*blen = (size_t)json_object_get_string_len(y);
		return true;
	}
	if (!json_object_is_type(m, json_type_string))
		return false;
	const char *s = json_object_get_string(m);
	size_t n = (size_t)json_object_get_string_len(m);
	const char *sp = memchr(s, ' ', n);
	if (!sp || n >= bufsz)
		return false;
	memcpy(buf, s, n);
	*a = buf;
	*alen = (size_t)(sp - s);
	*b = buf + *alen + 1;
	*blen = n - *alen - 1;
	return true;
}

/* model options: BPE without dropout, prefixes, suffixes or byte fallback. */
static int load_model_options(tokenizer *t, json_object *model, bool *fuse_unk, const char **unk,
			      const char *where, qerr *e)
{
	const char *ty = type_of(model);
	if (!ty || strcmp(ty, "BPE") != 0)
		return qerr_set(e, QERR_UNSUPPORTED, "%s: type %s is not supported (BPE only)", where,
				ty ? ty : "(missing)");
	int rc;
	double dropout = 0;
	if ((rc = jsonx_get_double(model, "dropout", &dropout, where, e)) < 0)
		return rc;
	if (dropout != 0)
		return qerr_set(e, QERR_UNSUPPORTED, "%s: dropout %g is not supported", where, dropout);
	static const char *const empty[] = { "" };
	if ((rc = check_string(model, "continuing_subword_prefix", empty, 1, where, e)) ||
	    (rc = check_string(model, "end_of_word_suffix", empty, 1, where, e)) ||
	    (rc = check_bool(model, "byte_fallback", false, where, e)))
		return rc;
	if ((rc = jsonx_get_bool(model, "fuse_unk", fuse_unk, where, e)) < 0 ||
	    (rc = jsonx_get_bool(model, "ignore_merges", &t->ignore_merges, where, e)) < 0 ||
	    (rc = jsonx_get_string(model, "unk_token", unk, where, e)) < 0)
		return rc;
	return 0;
}

/* One entry of added_tokens, checked. */
struct added {
	const char *content;   /* borrowed from the JSON */
	size_t len;
	int32_t id;
	bool special, normalized;
};

/* Parse added_tokens[i] into *a; fails on a malformed entry or one with lstrip, rstrip or
 * single_word set (options Qwen3 does not use; refused as unsupported). */
static int parse_added(json_object *o, size_t i, struct added *a, const char *path, qerr *e)
{
	char where[512];
	snprintf(where, sizeof(where), "%s: added_tokens[%zu]", path, i);
	if (!o || !json_object_is_type(o, json_type_object))
		return qerr_set(e, QERR_FORMAT, "%s: not an object", where);
	int64_t id;
	int rc;
	if ((rc = jsonx_get_int(o, "id", 0, TOK_MAX_IDS - 1, &id, where, e)) != 0)
		return rc < 0 ? rc : qerr_set(e, QERR_MISSING, "%s: no id", where);
	json_object *c = jsonx_member(o, "content");
	if (!c || !json_object_is_type(c, json_type_string))
		return qerr_set(e, QERR_FORMAT, "%s: content is not a string", where);
	a->content = json_object_get_string(c);
	a->len = (size_t)json_object_get_string_len(c);
	if (a->len == 0 || !valid_utf8(a->content, a->len))
		return qerr_set(e, QERR_FORMAT, "%s: content is empty or not UTF-8", where);
	a->id = (int32_t)id;
	a->special = false;
	if ((rc = jsonx_get_bool(o, "special", &a->special, where, e)) < 0)
		return rc;
	a->normalized = !a->special;   /* tokenizers' default */
	if ((rc = jsonx_get_bool(o, "normalized", &a->normalized, where, e)) < 0 ||
	    (rc = check_bool(o, "lstrip", false, where, e)) || (rc = check_bool(o, "rstrip", false, where, e)) ||
	    (rc = check_bool(o, "single_word", false, where, e)))
		return rc;
	return 0;
}

/* Vocabulary and added tokens: entries by id, the spelling lookup, the two matchers. */
static int load_vocab(tokenizer *t, json_object *model, json_object *root, qerr *e)
{
	char where[512];
	snprintf(where, sizeof(where), "%s: model", t->path);
	json_object *vocab = jsonx_member(model, "vocab");
	if (!vocab)
		return qerr_set(e, QERR_MISSING, "%s: no vocab", where);
	if (!json_object_is_type(vocab, json_type_object))
		return qerr_set(e, QERR_FORMAT, "%s: vocab is not an object", where);
	json_object *added = jsonx_member(root, "added_tokens");
	if (added && !json_object_is_type(added, json_type_array))
		return qerr_set(e, QERR_FORMAT, "%s: added_tokens is not an array", t->path);
	size_t nadded = added ? json_object_array_length(added) : 0;

	int64_t max_id = -1;
	size_t nvocab = 0;
	json_object_object_foreach(vocab, k0, v0) {
		int64_t id;
		if (!v0 || !jsonx_as_int(v0, 0, TOK_MAX_IDS - 1, &id))
			return qerr_set(e, QERR_FORMAT, "%s: vocab[\"%s\"]: not an id in [0, %d)", where, k0,
					TOK_MAX_IDS);
		if (id > max_id)
			max_id = id;
		nvocab++;
	}
	if (nvocab == 0)
		return qerr_set(e, QERR_FORMAT, "%s: empty vocab", where);
	struct added *ad = xcalloc(nadded ? nadded : 1, sizeof(*ad));
	int rc = 0;
	for (size_t i = 0; i < nadded && !rc; i++) {
		rc = parse_added(json_object_array_get_idx(added, i), i, &ad[i], t->path, e);
		if (!rc && ad[i].id > max_id)
			max_id = ad[i].id;
	}
	if (rc)
		goto out;

	t->n_ids = (int32_t)max_id + 1;
	t->ent = xcalloc((size_t)t->n_ids, sizeof(*t->ent));
	size_t nslots = 1024;
	while (nslots < 2 * (nvocab + nadded))
		nslots *= 2;
	t->lookup = xmalloc(nslots * sizeof(*t->lookup));
	memset(t->lookup, 0xff, nslots * sizeof(*t->lookup));
	t->lookup_mask = nslots - 1;

	strbuf tmp = { 0 };
	json_object_object_foreach(vocab, k, v) {
		int64_t id = json_object_get_int64(v);
		size_t klen = strlen(k);
		if (!valid_utf8(k, klen)) {
			rc = qerr_set(e, QERR_FORMAT, "%s: vocab key for id %lld is not UTF-8", where, (long long)id);
			break;
		}
		if (t->ent[id].flags) {
			rc = qerr_set(e, QERR_FORMAT, "%s: vocab: id %lld is used by \"%s\" and \"%s\"", where,
				      (long long)id, t->strs + t->ent[id].spelled, k);
			break;
		}
		set_entry(t, (int32_t)id, k, klen, ENT_MODEL, &tmp);
		lookup_insert(t, (int32_t)id);
	}

	/* Added tokens get ids as tokenizers' AddedVocabulary::add_tokens gives them: the id of the
	 * equal token if there is one, else max(vocab size, largest added id + 1). */
	int64_t max_added = -1;
	for (size_t i = 0; i < nadded && !rc; i++) {
		struct added *a = &ad[i];
		int32_t have = lookup_id(t, a->content, a->len);
		if (have >= 0 && (t->ent[have].flags & ENT_ADDED)) {
			rc = qerr_set(e, QERR_FORMAT, "%s: added_tokens[%zu]: \"%s\" is listed twice", t->path,
				      i, a->content);
			break;
		}
		int64_t want = have >= 0 ? have : max_added < 0 ? (int64_t)nvocab :
			       max_added >= (int64_t)nvocab ? max_added + 1 : (int64_t)nvocab;
		if (a->id != want) {
			rc = qerr_set(e, QERR_INVALID, "%s: added_tokens[%zu]: \"%s\" has id %d, but tokenizers "
				      "gives it id %lld", t->path, i, a->content, a->id, (long long)want);
			break;
		}
		if (want > max_added)
			max_added = want;
		uint8_t fl = ENT_ADDED | (a->special ? ENT_SPECIAL : 0);
		if (have >= 0) {
			t->ent[have].flags |= fl;
		} else {
			set_entry(t, a->id, a->content, a->len, fl, &tmp);
			lookup_insert(t, a->id);
		}
		if (!a->normalized) {
			trie_add(&t->raw, (const uint8_t *)a->content, a->len, a->id);
		} else {
			/* matched in normalised text, so normalised itself */
			size_t nn;
			strbuf nb = { 0 };
			const uint8_t *ns = normalize(t, (const uint8_t *)a->content, a->len, &nb, &nn);
			if (nn)
				trie_add(&t->norm, ns, nn, a->id);
			free(nb.s);
		}
	}
	free(tmp.s);
out:
	free(ad);
	return rc;
}

/* merges → the BPE model; byte ids from the vocabulary. */
static int load_merges(tokenizer *t, json_object *model, bool fuse_unk, const char *unk, qerr *e)
{
	char where[512];
	snprintf(where, sizeof(where), "%s: model", t->path);
	int32_t byte_ids[256];
	for (int b = 0; b < 256; b++) {
		utf8proc_uint8_t u[4];
		utf8proc_ssize_t k = utf8proc_encode_char((utf8proc_int32_t)t->byte_cp[b], u);
		int32_t id = lookup_id(t, (const char *)u, (size_t)k);
		byte_ids[b] = id >= 0 && (t->ent[id].flags & ENT_MODEL) ? id : -1;
	}
	int32_t unk_id = -1;
	if (unk) {
		unk_id = lookup_id(t, unk, strlen(unk));
		if (unk_id < 0 || !(t->ent[unk_id].flags & ENT_MODEL))
			return qerr_set(e, QERR_INVALID, "%s: unk_token \"%s\" is not in the vocab", where, unk);
	}
	json_object *merges = jsonx_member(model, "merges");
	if (!merges)
		return qerr_set(e, QERR_MISSING, "%s: no merges", where);
	if (!json_object_is_type(merges, json_type_array))
		return qerr_set(e, QERR_FORMAT, "%s: merges is not an array", where);
	size_t n = json_object_array_length(merges);
	t->model = bpe_new(byte_ids, unk_id, fuse_unk, n);
	char buf[1024], cat[1024];
	for (size_t i = 0; i < n; i++) {
		json_object *m = json_object_array_get_idx(merges, i);
		const char *a, *b;
		size_t alen, blen;
		if (!merge_parts(m, buf, sizeof(buf), &a, &alen, &b, &blen))
			return qerr_set(e, QERR_FORMAT, "%s: merges[%zu]: %.80s is not \"a b\" or [\"a\", \"b\"]",
					where, i, m ? json_object_to_json_string(m) : "null");
		int32_t ia = lookup_id(t, a, alen), ib = lookup_id(t, b, blen);
		if (ia < 0 || ib < 0 || !(t->ent[ia].flags & ENT_MODEL) || !(t->ent[ib].flags & ENT_MODEL))
			return qerr_set(e, QERR_FORMAT, "%s: merges[%zu]: \"%.*s\" is not in the vocab", where, i,
					(int)(ia < 0 ? alen : blen), ia < 0 ? a : b);
		if (alen + blen >= sizeof(cat))
			return qerr_set(e, QERR_FORMAT, "%s: merges[%zu]: tokens too long", where, i);
		memcpy(cat, a, alen);
		memcpy(cat + alen, b, blen);
		int32_t im = lookup_id(t, cat, alen + blen);
		if (im < 0 || !(t->ent[im].flags & ENT_MODEL))
			return qerr_set(e, QERR_FORMAT, "%s: merges[%zu]: the merged token \"%.*s\" is not in the vocab",
					where, i, (int)(alen + blen), cat);
		if (i > UINT32_MAX - 1)
			return qerr_set(e, QERR_LIMIT, "%s: too many merges", where);
		bpe_add_merge(t->model, ia, ib, im, (uint32_t)i);
	}
	return 0;
}

/* Read and check t->path and build everything from it; on failure t is half built (tok_free
 * releases it). */
static int load(tokenizer *t, qerr *e)
{
	json_object *root = NULL;
	int rc = jsonx_parse_file(t->path, TOK_MAX_FILE_BYTES, &root, e);
	if (rc)
		return rc;
	if (!root || !json_object_is_type(root, json_type_object)) {
		rc = qerr_set(e, QERR_FORMAT, "%s: not a JSON object", t->path);
		goto out;
	}
	json_object *model = jsonx_member(root, "model");
	if (!model) {
		rc = qerr_set(e, QERR_MISSING, "%s: no \"model\"", t->path);
		goto out;
	}
	char where[512];
	snprintf(where, sizeof(where), "%s: model", t->path);
	bool fuse_unk = false;
	const char *unk = NULL;
	if ((rc = load_model_options(t, model, &fuse_unk, &unk, where, e)) ||
	    (rc = load_normalizer(t, root, e)) || (rc = load_pre_tokenizer(t, root, e)) ||
	    (rc = load_pipeline_rest(t, root, e)))
		goto out;
	t->pre = pretok_new();
	for (int c = 0; c < 0x80; c++)
		if (pretok_flags(t->pre, (uint32_t)c) & PRETOK_NFC_CHECK)
			t->ascii_nfc_check = true;
	if ((rc = load_vocab(t, model, root, e)) || (rc = load_merges(t, model, fuse_unk, unk, e)))
		goto out;
out:
	json_object_put(root);
	return rc;
}

int tok_load(const char *path, tokenizer **out, qerr *e)
{
	*out = NULL;
	tokenizer *t = xcalloc(1, sizeof(*t));
	t->path = xstrdup(path);
	/* GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the other 68 bytes
	 * for U+0100 + n in increasing byte order */
	memset(t->cp_byte, 0xff, sizeof(t->cp_byte));
	uint32_t next = 256;
	for (int b = 0; b < 256; b++) {
		bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
		t->byte_cp[b] = printable ? (uint32_t)b : next++;
		t->cp_byte[t->byte_cp[b]] = (int16_t)b;
	}
	int rc = load(t, e);
	if (rc) {
		tok_free(t);
		return rc;
	}
	*out = t;
	return 0;
}
