/*
 * sampler: vLLM V1's sampling for one sequence at a time (sampler.h gives the pipeline and its
 * semantics). This file is about doing it in O(V) per call, with no sort of the vocabulary and
 * no allocation: the engine calls it for every sequence of every step, at V = 151936.
 *
 * Blocks. The vocabulary is cut into blocks of SB = 64 logits:
 *
 *   logits | block 0: ids 0..63 | block 1: ids 64..127 | … | block nb-1 (short: -inf padded) |
 *   bmax   | max of block 0     | max of block 1       | … |
 *   bsum   | Σ weights, block 0 | Σ weights, block 1   | … |       (random path, when needed)
 *
 * One vectorised pass gives the block maxima and the global max m: greedy is that pass plus a
 * look inside the first block holding m. The maxima bound what follows: the k-th largest block
 * max is a lower bound on the k-th largest logit (k blocks each hold a logit at least that
 * large), so top_k and the top logprobs look only inside the few blocks that reach it; a block
 * under min_p's cut, or whose max underflows after the temperature, is skipped whole; a block's
 * weight sum bounds each of its weights, so blocks lighter than a threshold are skipped whole.
 *
 * Weights. w = exp((l - m)/T) = 2^((l - m)·c) with c = log2(e)/T, from a polynomial exp2 (Cephes'
 * exp2f, relative error < 2e-7) written with GCC vector extensions; 2^x below 2^-125 is 0, as
 * are -inf and NaN logits. The max has weight exactly 1, so the sum Z of a non-empty set lies in
 * [1, V]. Block sums are float (64 terms, each ≤ 1); Z is their sum in double. This is the one
 * loop worth AVX2: on x86-64 block_weights has an AVX2 copy, used where the CPU has it; neither
 * copy uses FMA, so both round alike and a seed gives the same draws on every machine. The rest
 * is SSE2 (NEON on arm64); no target flags in the build.
 *
 * The random path, after the min_tokens mask and the penalties:
 *   1. bmax and m. m = -inf (all masked): the arg max of the raw logits; m = +inf: the lowest +inf
 *      id wins outright (every other weight is 0 next to it).
 *   2. min_p: keep l ≥ m + T·ln(min_p), which is p ≥ min_p·p_max in logit space.
 *   3. top_k: t = the k-th largest block max (of blocks above the cut); gather the logits ≥ t
 *      of the blocks that reach t, ids ascending, and quickselect their k-th largest, kv; keep
 *      l ≥ kv (ties with the k-th value stay, as vLLM's mask `logits < kth` leaves them).
 *   4. top_p, over the top_k candidates or else the whole vocabulary (weights kept in the
 *      scratch). Only tokens at least as heavy as the cut matter, and any threshold x whose
 *      tokens together weigh top_p·Z is at most the cut (all of them precede a lighter cut, so
 *      the mass before it would reach top_p·Z). Safe thresholds: (1 - top_p)·Z/n (all tokens at
 *      most as heavy as a lighter one weigh less than (1 - top_p)·Z) and, over the vocabulary,
 *      what the block maxima alone prove; a sharper one is guessed from every 16th weight and
 *      checked by the rule above. Weights are bucketed by their top 13 bits (16 buckets per
 *      octave, ordered like the values): one pass of bucket masses above the threshold names the
 *      bucket holding the cut and the mass above it, and the cut inside that bucket comes from
 *      iterative three-way partitioning on mass (quickselect whose rank is a running sum).
 *      Expected O(n), no sort but of small runs.
 *   5. one 53-bit uniform u from the sequence's xoshiro256** (always exactly one per non-greedy
 *      call); walk the kept set in ascending id order until the running weight exceeds u·Σ kept:
 *      by block sums then inside one block (no top_k, no top_p), or over the gathered candidates,
 *      SB at a time then one by one.
 *
 * Raw logprobs use the same machinery at T = 1 before anything is changed: m + ln Z is the
 * log-sum-exp (Z summed in double from the float weights, so within ~2e-7 of exact, below a
 * float's resolution for what is reported), each logprob is (double)l - m - ln Z, and the top
 * list comes from the blocks that reach the k-th largest block max, inserted in id order.
 *
 * Undo log. The min_tokens mask and the penalties change a few logits in place; each change first
 * records (id, old value) in the scratch, so the raw value of an id (the chosen token's logprob)
 * and the raw arg max (when everything is masked) come back without a copy of the vocabulary.
 *
 * Choices sampler.h leaves open: top_k keeps ties with the k-th value (vLLM's mask does); top_p
 * orders ties lower id first, so it cuts between equal tokens by id; greedy takes no draw and a
 * non-greedy call exactly one, so a sequence's draws depend only on its own steps; n_top is
 * min(logprobs, V), and lp is left alone when logprobs is -1. NaN counts as -inf everywhere; if
 * every raw logit is -inf, logprobs are uniform (-ln V); if some are +inf, those share the mass.
 *
 * Ownership and threads: see sampler.h. The scratch is rewritten by every call.
 */
#include "sampler.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"

#define SB 64                          /* logits per block */
#define VL 4                           /* lanes per vector: one SSE or NEON register */
#define NBUCKET 2048                   /* weight buckets: the top 13 bits of a float in [0, 1] */
#define BIG_CUT 2048                   /* top_p cuts over more tokens go through buckets first */

typedef float vf __attribute__((vector_size(VL * sizeof(float))));
typedef int32_t vi __attribute__((vector_size(VL * sizeof(int32_t))));

typedef struct undo {
	int32_t id;
	float v;                       /* the value before the change */
} undo;

typedef struct wid {
	float w;
	int32_t id;
} wid;

struct sampler_scratch {
	int V;                         /* capacity in tokens */
	int nb;                        /* blocks: ceil(V / SB) */
	float *bmax;                   /* owned: (nb) block maxima of the logits last scanned */
	double *bsum;                  /* owned: (nb) block weight sums (random path) */
	double *csum;                  /* owned: (nb) sums of SB candidates at a time (draw_list) */
	float *sel;                    /* owned: (V) values being selected, reordered */
	int32_t *cid;                  /* owned: (V) gathered candidates: ids, ascending */
	float *cl;                     /* owned: (V) their logits (top_k), or weights (top_p alone) */
	float *cw;                     /* owned: (V) weights: of the top_k candidates, else of the
					* vocabulary by id (valid in blocks with bsum > 0) */
	wid *pairs;                    /* owned: (V) (weight, id) for the top_p cut, reordered */
	double *hist;                  /* owned: (4, NBUCKET) mass per weight bucket */
	undo *log;                     /* owned: (log_cap) the changes made to this call's logits */
	size_t log_len, log_cap;
};

/* ---- parameters ---- */

#define BAD(...) qerr_set(e, QERR_INVALID, "sampling: " __VA_ARGS__)

int sampling_params_check(const sampling_params *p, int V, qerr *e)
{
	if (V <= 0)
		return BAD("vocabulary: must hold ≥ 1 token, got %d", V);
	if (!(p->temperature >= 0) || isinf(p->temperature))
		return BAD("temperature: must be finite and ≥ 0, got %g", p->temperature);
	if (!(p->top_p > 0 && p->top_p <= 1))
		return BAD("top_p: must be in (0, 1], got %g", p->top_p);
	if (!(p->min_p >= 0 && p->min_p <= 1))
		return BAD("min_p: must be in [0, 1], got %g", p->min_p);
	if (p->guided > SAMPLER_GUIDED_JSON)
		return BAD("guided: %u is not a guided-decoding mode", p->guided);
	if (!(p->repetition_penalty > 0) || isinf(p->repetition_penalty))
		return BAD("repetition_penalty: must be finite and > 0, got %g", p->repetition_penalty);
	if (!(p->presence_penalty >= -2 && p->presence_penalty <= 2))
		return BAD("presence_penalty: must be in [-2, 2], got %g", p->presence_penalty);
	if (!(p->frequency_penalty >= -2 && p->frequency_penalty <= 2))
		return BAD("frequency_penalty: must be in [-2, 2], got %g", p->frequency_penalty);
	if (p->min_tokens < 0)
		return BAD("min_tokens: must be ≥ 0, got %d", p->min_tokens);
	if (p->n_eos < 0 || p->n_eos > SAMPLER_MAX_EOS)
		return BAD("n_eos: must be in [0, %d], got %d", SAMPLER_MAX_EOS, p->n_eos);
	for (int i = 0; i < p->n_eos; i++)
		if (p->eos_ids[i] < 0 || p->eos_ids[i] >= V)
			return BAD("eos_ids[%d]: %d is not a token id (vocabulary of %d)", i,
				   p->eos_ids[i], V);
	if (p->n_stop_ids < 0 || p->n_stop_ids > SAMPLER_MAX_STOP_IDS)
		return BAD("n_stop_ids: must be in [0, %d], got %d", SAMPLER_MAX_STOP_IDS,
			   p->n_stop_ids);
	for (int i = 0; i < p->n_stop_ids; i++)
		if (p->stop_ids[i] < 0 || p->stop_ids[i] >= V)
			return BAD("stop_ids[%d]: %d is not a token id (vocabulary of %d)", i,
				   p->stop_ids[i], V);
	if (p->logprobs < -1 || p->logprobs > SAMPLER_MAX_LOGPROBS)
		return BAD("logprobs: must be in [-1, %d], got %d", SAMPLER_MAX_LOGPROBS, p->logprobs);
	return 0;
}

#undef BAD

/* ---- random numbers ---- */

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static uint64_t xoshiro_next(uint64_t s[4])
{
	uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

/* 32 bytes from getrandom(2); should it fail (it does not on Linux ≥ 3.17), the clock, the pid
 * and an address through splitmix64. Never the all-zero state, where xoshiro is stuck. */
static void seed_from_os(uint64_t rng[4])
{
	uint8_t *b = (uint8_t *)rng;
	size_t got = 0;
	while (got < 4 * sizeof(uint64_t)) {
		ssize_t r = getrandom(b + got, 4 * sizeof(uint64_t) - got, 0);
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	if (got < 4 * sizeof(uint64_t)) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		uint64_t x = (uint64_t)ts.tv_sec * 1000000007ull ^ (uint64_t)ts.tv_nsec ^
			     (uint64_t)getpid() << 32 ^ (uint64_t)(uintptr_t)rng;
		for (int i = 0; i < 4; i++)
			rng[i] = splitmix64(&x);
	}
	if (!(rng[0] | rng[1] | rng[2] | rng[3]))
		rng[0] = 1;
}

/* ---- sequence state ---- */

static int cmp_i32(const void *a, const void *b)
{
	int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
	return x < y ? -1 : x > y;
}

static bool penalised(const sampling_params *p)
{
	return p->repetition_penalty != 1 || p->frequency_penalty != 0 || p->presence_penalty != 0;
}

void sampler_state_init(sampler_state *s, const sampling_params *p, uint32_t index,
			const int32_t *prompt, size_t n_prompt)
{
	memset(s, 0, sizeof(*s));
	if (p->has_seed) {
		uint64_t x = p->seed + index;
		for (int i = 0; i < 4; i++)
			s->rng[i] = splitmix64(&x);
	} else {
		seed_from_os(s->rng);
	}
	if (p->repetition_penalty != 1 && n_prompt) {
		s->prompt_ids = xmalloc(n_prompt * sizeof(int32_t));
		memcpy(s->prompt_ids, prompt, n_prompt * sizeof(int32_t));
		qsort(s->prompt_ids, n_prompt, sizeof(int32_t), cmp_i32);
		size_t n = 0;
		for (size_t i = 0; i < n_prompt; i++) {
			int32_t id = s->prompt_ids[i];
			if (id >= 0 && (n == 0 || id != s->prompt_ids[n - 1]))
				s->prompt_ids[n++] = id;
		}
		s->n_prompt_ids = n;
	}
	if (penalised(p)) {
		s->cap = 16;
		s->out_ids = xmalloc(s->cap * sizeof(int32_t));
		s->out_counts = xcalloc(s->cap, sizeof(int32_t));
		memset(s->out_ids, 0xff, s->cap * sizeof(int32_t));
	}
}

void sampler_state_deinit(sampler_state *s)
{
	free(s->prompt_ids);
	free(s->out_ids);
	free(s->out_counts);
	memset(s, 0, sizeof(*s));
}

static size_t slot_of(int32_t id, size_t cap)
{
	return (size_t)(((uint64_t)(uint32_t)id * 0x9e3779b97f4a7c15ull) >> 32) & (cap - 1);
}

/* The slot holding id, or the empty slot where it goes (linear probing; cap a power of two, the
 * table at most half full). */
static size_t find_slot(const int32_t *keys, size_t cap, int32_t id)
{
	size_t i = slot_of(id, cap);
	while (keys[i] >= 0 && keys[i] != id)
		i = (i + 1) & (cap - 1);
	return i;
}

void sampler_state_accept(sampler_state *s, const sampling_params *p, int32_t id)
{
	(void)p;
	s->n_out++;
	if (!s->out_ids || id < 0)
		return;
	if (2 * (s->n_out_distinct + 1) > s->cap) {
		size_t cap = 2 * s->cap;
		int32_t *keys = xmalloc(cap * sizeof(int32_t));
		int32_t *counts = xcalloc(cap, sizeof(int32_t));
		memset(keys, 0xff, cap * sizeof(int32_t));
		for (size_t i = 0; i < s->cap; i++)
			if (s->out_ids[i] >= 0) {
				size_t j = find_slot(keys, cap, s->out_ids[i]);
				keys[j] = s->out_ids[i];
				counts[j] = s->out_counts[i];
			}
		free(s->out_ids);
		free(s->out_counts);
		s->out_ids = keys;
		s->out_counts = counts;
		s->cap = cap;
	}
	size_t i = find_slot(s->out_ids, s->cap, id);
	if (s->out_ids[i] < 0) {
		s->out_ids[i] = id;
		s->n_out_distinct++;
	}
	s->out_counts[i]++;
}

static bool prompt_has(const sampler_state *s, int32_t id)
{
	return s->n_prompt_ids &&
	       bsearch(&id, s->prompt_ids, s->n_prompt_ids, sizeof(int32_t), cmp_i32) != NULL;
}

/* ---- scratch ---- */

/* Room for a vocabulary of V (the contents are not kept; the undo log is). */
static void scratch_reserve(sampler_scratch *sc, int V)
{
	if (V <= sc->V)
		return;
	free(sc->bmax);
	free(sc->bsum);
	free(sc->csum);
	free(sc->sel);
	free(sc->cid);
	free(sc->cl);
	free(sc->cw);
	free(sc->pairs);
	free(sc->hist);
	size_t n = (size_t)V;
	sc->V = V;
	sc->nb = (V + SB - 1) / SB;
	sc->bmax = xmalloc((size_t)sc->nb * sizeof(float));
	sc->bsum = xmalloc((size_t)sc->nb * sizeof(double));
	sc->csum = xmalloc((size_t)sc->nb * sizeof(double));
	sc->sel = xmalloc(n * sizeof(float));
	sc->cid = xmalloc(n * sizeof(int32_t));
	sc->cl = xmalloc(n * sizeof(float));
	sc->cw = xmalloc(n * sizeof(float));
	sc->pairs = xmalloc(n * sizeof(wid));
	sc->hist = xmalloc(4 * NBUCKET * sizeof(double));
}

sampler_scratch *sampler_scratch_new(int V)
{
	sampler_scratch *sc = xcalloc(1, sizeof(*sc));
	scratch_reserve(sc, V > 0 ? V : 1);
	sc->log_cap = 256;
	sc->log = xmalloc(sc->log_cap * sizeof(undo));
	return sc;
}

void sampler_scratch_free(sampler_scratch *sc)
{
	if (!sc)
		return;
	free(sc->bmax);
	free(sc->bsum);
	free(sc->csum);
	free(sc->sel);
	free(sc->cid);
	free(sc->cl);
	free(sc->cw);
	free(sc->pairs);
	free(sc->hist);
	free(sc->log);
	free(sc);
}

/* ---- the undo log ---- */

static void log_reserve(sampler_scratch *sc, size_t n)
{
	if (n <= sc->log_cap)
		return;
	while (sc->log_cap < n)
		sc->log_cap *= 2;
	sc->log = xrealloc(sc->log, sc->log_cap * sizeof(undo));
}

/* l[id] = v, remembering the old value (room was reserved). */
static void set_logit(sampler_scratch *sc, float *l, int32_t id, float v)
{
	sc->log[sc->log_len++] = (undo){ id, l[id] };
	l[id] = v;
}

/* The value l[id] had when the call began: the first change to it records it. */
static float raw_value(const sampler_scratch *sc, const float *l, int32_t id)
{
	for (size_t i = 0; i < sc->log_len; i++)
		if (sc->log[i].id == id)
			return sc->log[i].v;
	return l[id];
}

/* Put back every logit the call changed (latest change first). */
static void undo_all(sampler_scratch *sc, float *l)
{
	while (sc->log_len) {
		sc->log_len--;
		l[sc->log[sc->log_len].id] = sc->log[sc->log_len].v;
	}
}

/* ---- vector kernels ---- */

static inline vf vsplat(float x)
{
	return (vf){ 0 } + x;
}

static inline vf vload(const float *p)
{
	vf v;
	memcpy(&v, p, sizeof(v));
	return v;
}

/* a > b ? a : b lane by lane, so b where a is NaN: one MAXPS on x86, whose rule this is. */
#if defined(__SSE__) && VL == 4
#define vmax(a, b) __builtin_ia32_maxps((a), (b))
#else
static inline vf vmax(vf a, vf b)
{
	vi m = a > b;
	return (vf)((m & (vi)a) | (~m & (vi)b));
}
#endif

/* The lanes of m as bits, lane 0 lowest. */
static inline unsigned vmask(vi m)
{
#if defined(__SSE__) && VL == 4
	return (unsigned)__builtin_ia32_movmskps((vf)m);
#else
	unsigned r = 0;
	for (int j = 0; j < VL; j++)
		r |= (unsigned)(m[j] & 1) << j;
	return r;
#endif
}

static inline int block_len(int V, int b)
{
	return V - b * SB < SB ? V - b * SB : SB;
}

/* Bit j set where w[j] ≥ x, for the len ≤ SB values of a block. Walking the set bits visits
 * just those, with no branch that depends on the data but the loop's own. */
static uint64_t mask_ge(const float *w, int len, float x)
{
	uint64_t m = 0;
	if (len == SB) {
		vf vx = vsplat(x);
		for (int j = 0; j < SB; j += VL)
			m |= (uint64_t)vmask(vload(w + j) >= vx) << j;
	} else {
		for (int j = 0; j < len; j++)
			m |= (uint64_t)(w[j] >= x) << j;
	}
	return m;
}

/* Weights of n ≤ SB logits into w[0..n): 2^((l[j] - m)·c) where l[j] ≥ lo, else 0 (NaN: 0).
 * Returns their sum. Every weight of the file comes from here, so equal inputs give equal
 * weights wherever they are computed.
 *
 * The body is written once, for vectors of W floats, and instantiated twice: 4 lanes (SSE2,
 * NEON) and, on x86-64, 8 lanes under target("avx2"), picked per call by what the CPU has (the
 * file comment says why). Each copy keeps its vectors inside, so no vector crosses a function
 * boundary whose ABI would depend on the target. 2^t is 0 below -125 (every result stays a
 * normal float: denormals are slow on x86) and for NaN; Cephes' exp2f polynomial on the
 * fraction (relative error < 2e-7), scaled by the integer part through the exponent bits. */
#define BLOCK_WEIGHTS(name, W)                                                                  \
	static float name(const float *l, int n, float m, float c, float lo, float *w)           \
	{                                                                                          \
		typedef float f_t __attribute__((vector_size(W * sizeof(float))));               \
		typedef int32_t i_t __attribute__((vector_size(W * sizeof(int32_t))));           \
		float pad[SB], wpad[SB], *out = w;                                                 \
		if (n < SB) {                                                                      \
			/* a short block: read padded with -inf, write n */                        \
			memcpy(pad, l, (size_t)n * sizeof(float));                                 \
			for (int j = n; j < SB; j++)                                               \
				pad[j] = -INFINITY;                                                \
			l = pad;                                                                   \
			w = wpad;                                                                  \
		}                                                                                  \
		const f_t zero = { 0 }, vm = zero + m, vc = zero + c, vlo = zero + lo;             \
		const f_t lim = zero - 125.0f, round = zero + 12582912.0f;                         \
		f_t acc = zero;                                                                    \
		for (int j = 0; j < SB; j += W) {                                                  \
			f_t x, t;                                                                  \
			memcpy(&x, l + j, sizeof(x));                                              \
			t = (x - vm) * vc;                                                         \
			i_t ok = (t >= lim) & (x >= vlo);                                          \
			i_t big = t > lim;                                                         \
			t = (f_t)((big & (i_t)t) | (~big & (i_t)lim));                             \
			/* the nearest integer: 1.5·2^23 pushes the fraction out of the mantissa */ \
			f_t k = (t + round) - round;                                               \
			f_t f = t - k;                                                             \
			f_t q = zero + 1.535336188319500e-4f;                                      \
			q = q * f + 1.339887440266574e-3f;                                         \
			q = q * f + 9.618437357674640e-3f;                                         \
			q = q * f + 5.550332471162809e-2f;                                         \
			q = q * f + 2.402264791363012e-1f;                                         \
			q = q * f + 6.931472028550421e-1f;                                         \
			q = q * f + 1.0f;                                                          \
			i_t e = (__builtin_convertvector(k, i_t) + 127) << 23;                     \
			f_t y = (f_t)((i_t)(q * (f_t)e) & ok);                                     \
			memcpy(w + j, &y, sizeof(y));                                              \
			acc += y;                                                                  \
		}                                                                                  \
		if (w != out)                                                                      \
			memcpy(out, w, (size_t)n * sizeof(float));                                 \
		float s = 0;                                                                       \
		for (int j = 0; j < W; j++)                                                        \
			s += acc[j];                                                               \
		return s;                                                                          \
	}

BLOCK_WEIGHTS(block_weights_4, 4)

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx2"))) BLOCK_WEIGHTS(block_weights_8, 8)

static float block_weights(const float *l, int n, float m, float c, float lo, float *w)
{
	return __builtin_cpu_supports("avx2") ? block_weights_8(l, n, m, c, lo, w)
					      : block_weights_4(l, n, m, c, lo, w);
}
#else
#define block_weights block_weights_4
#endif

/* The block maxima of l (V) into bm; NaN is ignored (a block of NaN and -inf has max -inf).
 * Returns the max of all. */
static float block_maxima(const float *l, int V, float *bm)
{
	float pad[SB], m = -INFINITY;
	int nb = (V + SB - 1) / SB;
	for (int b = 0; b < nb; b++) {
		const float *p = l + (size_t)b * SB;
		int n = block_len(V, b);
		if (n < SB) {
			memcpy(pad, p, (size_t)n * sizeof(float));
			for (int j = n; j < SB; j++)
				pad[j] = -INFINITY;
			p = pad;
		}
		/* four chains; the running max is the second operand, so NaN never enters */
		vf a0 = vsplat(-INFINITY), a1 = a0, a2 = a0, a3 = a0;
		for (int j = 0; j < SB; j += 4 * VL) {
			a0 = vmax(vload(p + j), a0);
			a1 = vmax(vload(p + j + VL), a1);
			a2 = vmax(vload(p + j + 2 * VL), a2);
			a3 = vmax(vload(p + j + 3 * VL), a3);
		}
		a0 = vmax(vmax(a0, a1), vmax(a2, a3));
		float r = a0[0];
		for (int j = 1; j < VL; j++)
			r = a0[j] > r ? a0[j] : r;
		bm[b] = r;
		m = r > m ? r : m;
	}
	return m;
}

/* The first id holding m (the max of l, bm its block maxima); 0 when m is -inf (every logit
 * -inf or NaN). With block_maxima: the arg max, lowest id on ties. */
static int32_t first_max(const float *l, int V, const float *bm, float m)
{
	if (m == -INFINITY)
		return 0;
	int nb = (V + SB - 1) / SB;
	for (int b = 0; b < nb; b++)
		if (bm[b] == m)
			for (int i = b * SB; i < b * SB + block_len(V, b); i++)
				if (l[i] == m)
					return i;
	return 0;
}

/* ---- selection ---- */

static float median3(float a, float b, float c)
{
	if (a > b) {
		float t = a;
		a = b;
		b = t;
	}
	if (b > c)
		b = c;
	return a > b ? a : b;
}

static int log2_floor(size_t n)
{
	int k = 0;
	while (n >>= 1)
		k++;
	return k;
}

static int cmp_f32_desc(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return x > y ? -1 : x < y;
}

/* The k-th largest (1 ≤ k ≤ n) of a[0..n) (no NaN; a is reordered). Quickselect with three-way
 * partitions around a median of three: expected O(n), O(1) on equal values; after 2·log2(n) + 8
 * rounds the rest is sorted, so no input costs more than O(n log n). */
static float kth_largest(float *a, size_t n, size_t k)
{
	size_t lo = 0, hi = n, want = k - 1;
	int rounds = 0, limit = 2 * log2_floor(n) + 8;
	while (hi - lo > 16 && ++rounds <= limit) {
		float pv = median3(a[lo], a[lo + (hi - lo) / 2], a[hi - 1]);
		size_t lt = lo, i = lo, gt = hi;
		/* [lo, lt) > pv, [lt, i) == pv, [gt, hi) < pv */
		while (i < gt) {
			float x = a[i];
			if (x > pv) {
				a[i++] = a[lt];
				a[lt++] = x;
			} else if (x < pv) {
				a[i] = a[--gt];
				a[gt] = x;
			} else {
				i++;
			}
		}
		if (want < lt)
			hi = lt;
		else if (want < gt)
			return pv;
		else
			lo = gt;
	}
	qsort(a + lo, hi - lo, sizeof(float), cmp_f32_desc);
	return a[want];
}

/* Heavier first; ties: lower id first (the order top_p walks in). */
static int cmp_wid(const void *a, const void *b)
{
	const wid *x = a, *y = b;
	if (x->w != y->w)
		return x->w > y->w ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

static int cmp_wid_id(const void *a, const void *b)
{
	const wid *x = a, *y = b;
	return x->id < y->id ? -1 : x->id > y->id;
}

/* top_p's cut among a[0..n) (n ≥ 1; reordered): in the order heavier first, ties lower id first,
 * the first token at which the running mass reaches target, i.e. the last token kept. If the
 * mass never reaches it (rounding), the last token of that order. Iterative three-way
 * partitioning on weight that descends into the side holding the cut, carrying the mass above
 * it: expected O(n); the bounded sort fallback as in kth_largest. */
static wid top_p_cut(wid *a, size_t n, double target)
{
	size_t lo = 0, hi = n;
	double acc = 0;
	int rounds = 0, limit = 2 * log2_floor(n) + 8;
	while (hi - lo > 16 && ++rounds <= limit) {
		float pv = median3(a[lo].w, a[lo + (hi - lo) / 2].w, a[hi - 1].w);
		size_t lt = lo, i = lo, gt = hi;
		double up = 0;
		while (i < gt) {
			wid x = a[i];
			if (x.w > pv) {
				up += x.w;
				a[i++] = a[lt];
				a[lt++] = x;
			} else if (x.w < pv) {
				a[i] = a[--gt];
				a[gt] = x;
			} else {
				i++;
			}
		}
		if (acc + up >= target) {
			hi = lt;        /* acc < target, so up > 0 and [lo, lt) is not empty */
			continue;
		}
		acc += up;
		size_t j = 0, ne = gt - lt;
		while (j < ne && (acc += pv) < target)
			j++;
		if (j < ne || gt == hi) {
			/* the cut is among the equals, in id order (or they end the set) */
			qsort(a + lt, ne, sizeof(wid), cmp_wid_id);
			return a[lt + (j < ne ? j : ne - 1)];
		}
		lo = gt;
	}
	qsort(a + lo, hi - lo, sizeof(wid), cmp_wid);
	for (size_t i = lo; i < hi; i++)
		if ((acc += a[i].w) >= target)
			return a[i];
	return a[hi - 1];
}

/* Weight buckets: for w in [0, 1] the float's bit pattern orders like its value, and its top 13
 * bits (8 of exponent, 4 of mantissa) cut [2^-126, 1] into 16 buckets per octave. */
static inline unsigned bucket_of(float w)
{
	uint32_t u;
	memcpy(&u, &w, sizeof(u));
	return u >> 19;
}

static float bucket_floor(int b)
{
	uint32_t u = (uint32_t)b << 19;
	float f;
	memcpy(&f, &u, sizeof(f));
	return f;
}

/* The bucket of hist in which the running mass, heaviest bucket first, reaches target; *above
 * gets the mass of the heavier buckets. -1 when the whole mass stays under target. */
static int walk_buckets(const double *hist, double target, double *above)
{
	double acc = 0;
	for (int b = NBUCKET - 1; b > 0; b--) {
		if (acc + hist[b] >= target) {
			*above = acc;
			return b;
		}
		acc += hist[b];
	}
	return -1;
}

/* top_p_cut for any n: above BIG_CUT tokens, one pass of bucket masses finds the bucket that
 * holds the cut, and only that bucket is partitioned (a radix select of one digit). */
static wid cut_pairs(sampler_scratch *sc, wid *a, size_t n, double target)
{
	if (n > BIG_CUT) {
		/* four histograms, one per i % 4: neighbours often share a bucket, and one histogram
		 * would chain every add through memory */
		memset(sc->hist, 0, 4 * NBUCKET * sizeof(double));
		for (size_t i = 0; i < n; i++)
			sc->hist[(i & 3) * NBUCKET + bucket_of(a[i].w)] += a[i].w;
		for (int t = 1; t < 4; t++)
			for (int k = 0; k < NBUCKET; k++)
				sc->hist[k] += sc->hist[t * NBUCKET + k];
		double above;
		int b = walk_buckets(sc->hist, target, &above);
		if (b >= 0) {
			size_t k = 0;
			for (size_t i = 0; i < n; i++)
				if (bucket_of(a[i].w) == (unsigned)b) {
					wid t = a[k];
					a[k++] = a[i];
					a[i] = t;
				}
			return top_p_cut(a, k, target - above);
		}
	}
	return top_p_cut(a, n, target);
}

/* ---- logprobs of the raw logits ---- */

typedef struct rawdist {
	double m, lnz;                 /* max and ln Σ exp(l - m) */
	double n_inf;                  /* how many +inf when m = +inf */
	int V;
} rawdist;

static double raw_logprob(const rawdist *d, float x)
{
	if (isnan(x))
		x = -INFINITY;
	if (isfinite(d->m))
		return (double)x - d->m - d->lnz;
	if (d->m > 0)
		return x == INFINITY ? -log(d->n_inf) : -INFINITY;
	return -log((double)d->V);
}

/* The distribution of the raw logits l (V) and its top k (≤ SAMPLER_MAX_LOGPROBS) into lp. */
static void raw_logprobs(const float *l, int V, int k, sampler_scratch *sc, rawdist *d,
			 sampler_logprobs *lp)
{
	int nb = (V + SB - 1) / SB;
	float m = block_maxima(l, V, sc->bmax), w[SB];
	*d = (rawdist){ .m = m, .V = V };
	if (isfinite(m)) {
		const float c = (float)M_LOG2E, lo = (float)(m - 126.0 / M_LOG2E);
		double z = 0;
		for (int b = 0; b < nb; b++)
			if (sc->bmax[b] >= lo)
				z += block_weights(l + (size_t)b * SB, block_len(V, b), m, c, -INFINITY,
						   w);
		d->lnz = log(z);
	} else if (m > 0) {
		for (int i = 0; i < V; i++)
			d->n_inf += l[i] == INFINITY;
	}
	lp->n_top = k;
	if (k <= 0)
		return;
	/* the k-th largest block max bounds the k-th largest logit from below */
	memcpy(sc->sel, sc->bmax, (size_t)nb * sizeof(float));
	float t = nb >= k ? kth_largest(sc->sel, (size_t)nb, (size_t)k) : -INFINITY;
	float val[SAMPLER_MAX_LOGPROBS];
	int n = 0;
	for (int b = 0; b < nb; b++) {
		if (sc->bmax[b] < t)
			continue;
		for (int i = b * SB; i < b * SB + block_len(V, b); i++) {
			float x = isnan(l[i]) ? -INFINITY : l[i];
			if (n == k && !(x > val[n - 1]))
				continue;
			/* ids arrive ascending, and only a larger value moves ahead: ties keep id
			 * order */
			int j = n < k ? n++ : n - 1;
			while (j > 0 && val[j - 1] < x) {
				val[j] = val[j - 1];
				lp->top_ids[j] = lp->top_ids[j - 1];
				j--;
			}
			val[j] = x;
			lp->top_ids[j] = i;
		}
	}
	for (int j = 0; j < k; j++)
		lp->top_logprobs[j] = (float)raw_logprob(d, val[j]);
}

/* ---- min_tokens and penalties ---- */

static void mask_stops(const sampling_params *p, float *l, int V, sampler_scratch *sc)
{
	for (int i = 0; !p->ignore_eos && i < p->n_eos && i < SAMPLER_MAX_EOS; i++)
		if (p->eos_ids[i] >= 0 && p->eos_ids[i] < V)
			set_logit(sc, l, p->eos_ids[i], -INFINITY);
	for (int i = 0; i < p->n_stop_ids && i < SAMPLER_MAX_STOP_IDS; i++)
		if (p->stop_ids[i] >= 0 && p->stop_ids[i] < V)
			set_logit(sc, l, p->stop_ids[i], -INFINITY);
}

/* vLLM's apply_penalties: the repetition penalty once per id of prompt ∪ output, then frequency
 * and presence over the output ids, in float as vLLM's float32 tensors do. */
static void apply_penalties(const sampling_params *p, const sampler_state *s, float *l, int V,
			    sampler_scratch *sc)
{
	bool rep = p->repetition_penalty != 1;
	bool fp = p->frequency_penalty != 0 || p->presence_penalty != 0;
	float r = (float)p->repetition_penalty, f = (float)p->frequency_penalty;
	float pr = (float)p->presence_penalty;
	for (size_t i = 0; rep && i < s->n_prompt_ids; i++) {
		int32_t id = s->prompt_ids[i];
		if (id < V) {
			float x = l[id];
			set_logit(sc, l, id, x > 0 ? x / r : x * r);
		}
	}
	for (size_t i = 0; s->out_ids && i < s->cap; i++) {
		int32_t id = s->out_ids[i];
		if (id < 0 || id >= V)
			continue;
		float x = l[id];
		if (rep && !prompt_has(s, id))
			x = x > 0 ? x / r : x * r;
		if (fp) {
			x -= f * (float)s->out_counts[i];
			x -= pr;        /* every id in the table has a count > 0 */
		}
		set_logit(sc, l, id, x);
	}
}

/* ---- the random path ---- */

/* The smallest float ≥ x. */
static float float_at_least(double x)
{
	float f = (float)x;
	if ((double)f < x)
		f = nextafterf(f, INFINITY);
	return f;
}

/* The arg max of the raw logits, for when every id is masked. */
static int32_t raw_argmax(sampler_scratch *sc, float *l, int V)
{
	undo_all(sc, l);
	float m = block_maxima(l, V, sc->bmax);
	return first_max(l, V, sc->bmax, m);
}

/* top_k: gather into cid/cl (ids ascending) every logit ≥ lo among the k largest, ties with the
 * k-th kept. Returns how many. */
static size_t gather_top_k(sampler_scratch *sc, const float *l, int V, size_t k, float lo)
{
	int nb = (V + SB - 1) / SB;
	size_t nbk = 0;
	for (int b = 0; b < nb; b++)
		if (sc->bmax[b] >= lo)
			sc->sel[nbk++] = sc->bmax[b];
	float t = nbk >= k ? kth_largest(sc->sel, nbk, k) : lo;
	size_t n = 0;
	for (int b = 0; b < nb; b++) {
		if (sc->bmax[b] < t)
			continue;
		for (int i = b * SB; i < b * SB + block_len(V, b); i++) {
			/* branch-free append: most of a block that reaches t falls below it */
			float x = l[i];
			sc->cid[n] = i;
			sc->cl[n] = x;
			n += x >= t;
		}
	}
	if (n > k) {
		memcpy(sc->sel, sc->cl, n * sizeof(float));
		float kv = kth_largest(sc->sel, n, k);
		size_t m = 0;
		for (size_t i = 0; i < n; i++) {
			sc->cid[m] = sc->cid[i];
			sc->cl[m] = sc->cl[i];
			m += sc->cl[i] >= kv;
		}
		n = m;
	}
	return n;
}

/* The weights of the whole vocabulary into cw and their block sums into bsum; returns Z. Blocks
 * whose max is under skip (the min_p cut, or where weights underflow) get bsum 0 without a look
 * (and their cw is left as it was: nothing reads it). */
static double block_sums(sampler_scratch *sc, const float *l, int V, float m, float c, float lo,
			 float skip)
{
	int nb = (V + SB - 1) / SB;
	double z = 0;
	for (int b = 0; b < nb; b++) {
		size_t at = (size_t)b * SB;
		sc->bsum[b] = sc->bmax[b] >= skip ?
			block_weights(l + at, block_len(V, b), m, c, lo, sc->cw + at) : 0;
		z += sc->bsum[b];
	}
	return z;
}

/* A lower bound on top_p's cut weight from the block maxima: their weights, heaviest first, until
 * they alone reach target, are distinct tokens at least as heavy as the bucket floor of the last
 * one; so the cut is no lighter (otherwise the mass before it would already reach target).
 * 0 when all maxima together stay under target. */
static float block_bound(sampler_scratch *sc, int V, float m, float c, float lo, double target)
{
	int nb = (V + SB - 1) / SB;
	float *mb = sc->sel;
	for (int i = 0; i < nb; i += SB)
		block_weights(sc->bmax + i, nb - i < SB ? nb - i : SB, m, c, lo, mb + i);
	memset(sc->hist, 0, NBUCKET * sizeof(double));
	for (int b = 0; b < nb; b++)
		sc->hist[bucket_of(mb[b])] += mb[b];
	double above;
	int b = walk_buckets(sc->hist, target, &above);
	return b >= 0 ? bucket_floor(b) : 0;
}

/* A guess at top_p's cut weight from every 16th weight: where the sample's own mass, heaviest
 * bucket first, reaches top_p of it. 0 when there is no sample. */
static float sample_guess(sampler_scratch *sc, int V, double top_p)
{
	int nb = (V + SB - 1) / SB;
	memset(sc->hist, 0, NBUCKET * sizeof(double));
	for (int b = 0; b < nb; b++)
		if (sc->bsum[b] > 0)
			for (int i = b * SB; i < b * SB + block_len(V, b); i += 16)
				sc->hist[bucket_of(sc->cw[i])] += sc->cw[i];
	double zs = 0, above;
	for (int k = 0; k < NBUCKET; k++)
		zs += sc->hist[k];
	int bk = walk_buckets(sc->hist, top_p * zs, &above);
	return bk >= 0 ? bucket_floor(bk) : 0;
}

/* The mass per weight bucket (into hist) of the tokens of weight ≥ floor_w (a bucket floor),
 * looking only in blocks whose sum reaches it. One histogram per id % 4, summed at the end:
 * neighbours often share a bucket, and one histogram would chain every add through memory. */
static void bucket_masses(sampler_scratch *sc, int V, float floor_w)
{
	int nb = (V + SB - 1) / SB;
	double *h = sc->hist;
	memset(h, 0, 4 * NBUCKET * sizeof(double));
	for (int b = 0; b < nb; b++) {
		if (!(sc->bsum[b] >= floor_w))
			continue;
		const float *w = sc->cw + (size_t)b * SB;
		for (uint64_t k = mask_ge(w, block_len(V, b), floor_w); k; k &= k - 1) {
			int j = __builtin_ctzll(k);
			h[(j & 3) * NBUCKET + bucket_of(w[j])] += w[j];
		}
	}
	for (int t = 1; t < 4; t++)
		for (int k = 0; k < NBUCKET; k++)
			h[k] += h[t * NBUCKET + k];
}

/* Whether top_p keeps a token: no lighter than the cut, and of its weight, no later in id. */
static inline bool kept(float w, int32_t id, wid cut)
{
	return w > cut.w || (w == cut.w && id <= cut.id);
}

/* A draw among n candidates (ids ascending, weights w), only the kept ones when cut is given:
 * u·Σ kept, walked in id order, SB candidates at a time (sums into csum) and then one by one. */
static int32_t draw_list(sampler_scratch *sc, const int32_t *id, const float *w, size_t n, double u,
			 const wid *cut)
{
	double z = 0;
	size_t nc = (n + SB - 1) / SB;
	for (size_t g = 0; g < nc; g++) {
		size_t end = (g + 1) * SB < n ? (g + 1) * SB : n;
		float s = 0;
		for (size_t i = g * SB; i < end; i++)
			s += !cut || kept(w[i], id[i], *cut) ? w[i] : 0;
		z += sc->csum[g] = s;
	}
	double target = u * z, cum = 0;
	size_t g = 0;
	while (g + 1 < nc && !(cum + sc->csum[g] > target))
		cum += sc->csum[g++];
	/* past the end only by rounding: then the last token of weight > 0 */
	int32_t pick = n ? id[0] : 0;
	for (size_t gg = g; gg < nc; gg++) {
		size_t end = (gg + 1) * SB < n ? (gg + 1) * SB : n;
		for (size_t i = gg * SB; i < end; i++) {
			if (!(w[i] > 0) || (cut && !kept(w[i], id[i], *cut)))
				continue;
			pick = id[i];
			if ((cum += w[i]) > target)
				return pick;
		}
	}
	return pick;
}

/* top_p over the whole vocabulary (weights in cw, block sums known): returns the draw (step 4
 * of the file comment). The bucket masses above a threshold that is proven or checked give the
 * bucket holding the cut and the mass above it; that bucket and the heavier ones are gathered
 * (ids ascending), that bucket's tokens are partitioned for the cut, and the draw walks the
 * gathered ones that are kept. */
static int32_t top_p_vocab(sampler_scratch *sc, int V, float m, float c, float lo, double z,
			   double top_p, double u)
{
	int nb = (V + SB - 1) / SB;
	double target = top_p * z, above = 0, inner = target;
	/* 0.999: rounding slack */
	float safe = (float)((1 - top_p) * z / (double)V * 0.999);
	float bb = block_bound(sc, V, m, c, lo, target);
	safe = bb > safe ? bb : safe;
	float guess = sample_guess(sc, V, top_p) * 0.25f;
	int bk = -1;
	for (int pass = guess > safe ? 0 : 1; pass < 2; pass++) {
		unsigned kb = bucket_of(pass ? safe : guess);
		kb = kb ? kb : 1;
		bucket_masses(sc, V, bucket_floor((int)kb));
		bk = walk_buckets(sc->hist, target, &above);
		if (bk >= (int)kb) {
			inner = target - above;
			break;
		}
		if (pass == 1) {
			/* rounding left the mass above the safe bound short: keep all of it */
			bk = (int)kb;
			inner = INFINITY;
		}
	}
	float wlo = bucket_floor(bk), whi = bucket_floor(bk + 1);
	size_t n = 0, np = 0;
	for (int b = 0; b < nb; b++) {
		if (!(sc->bsum[b] >= wlo))
			continue;
		const float *w = sc->cw + (size_t)b * SB;
		for (uint64_t k = mask_ge(w, block_len(V, b), wlo); k; k &= k - 1) {
			int j = __builtin_ctzll(k);
			sc->cid[n] = b * SB + j;
			sc->cl[n++] = w[j];
		}
	}
	for (size_t i = 0; i < n; i++) {
		sc->pairs[np] = (wid){ sc->cl[i], sc->cid[i] };
		np += sc->cl[i] < whi;
	}
	wid cut = np ? top_p_cut(sc->pairs, np, inner) : (wid){ wlo, INT32_MAX };
	return draw_list(sc, sc->cid, sc->cl, n, u, &cut);
}

/* A draw over the whole vocabulary: u·z picks the block by bsum, then the token in it by cw. */
static int32_t draw_blocks(const sampler_scratch *sc, int V, double z, double u)
{
	int nb = (V + SB - 1) / SB, b, last = 0;
	double target = u * z, cum = 0;
	for (b = 0; b < nb; b++) {
		if (!(sc->bsum[b] > 0))
			continue;
		last = b;
		if (cum + sc->bsum[b] > target)
			break;
		cum += sc->bsum[b];
	}
	if (b == nb) {
		/* rounding ran past the end: the last token of weight > 0 */
		b = last;
		target = INFINITY;
	}
	double t = target - cum, run = 0;
	int32_t pick = b * SB;
	for (int i = b * SB; i < b * SB + block_len(V, b); i++) {
		if (!(sc->cw[i] > 0))
			continue;
		pick = i;
		if ((run += sc->cw[i]) > t)
			break;
	}
	return pick;
}

static int32_t sample_random(const sampling_params *p, sampler_state *s, float *l, int V,
			     sampler_scratch *sc)
{
	double u = sampler_draw(s);
	float m = block_maxima(l, V, sc->bmax);
	if (m == -INFINITY)
		return raw_argmax(sc, l, V);
	if (m == INFINITY)
		return first_max(l, V, sc->bmax, m);
	double T = p->temperature;
	float c = (float)(M_LOG2E / T);
	if (!(c >= FLT_MIN))
		c = FLT_MIN;
	/* min_p: p < min_p·p_max  ⇔  (l - m)/T < ln(min_p) */
	float lo = p->min_p > 0 ? float_at_least(m + T * log(p->min_p)) : -INFINITY;
	/* below skip a weight is 0 for certain: under min_p's cut or under 2^-126 */
	float uf = (float)((double)m - 126.0 / c), skip = lo > uf ? lo : uf;

	if (!(p->top_k > 0 && p->top_k < V)) {
		/* the whole vocabulary, by blocks */
		double z = block_sums(sc, l, V, m, c, lo, skip);
		if (p->top_p < 1)
			return top_p_vocab(sc, V, m, c, lo, z, p->top_p, u);
		return draw_blocks(sc, V, z, u);
	}

	/* top_k: the gathered candidates, ids ascending */
	size_t n = gather_top_k(sc, l, V, (size_t)p->top_k, skip);
	double z = 0;
	for (size_t i = 0; i < n; i += SB)
		z += block_weights(sc->cl + i, n - i < SB ? (int)(n - i) : SB, m, c, lo, sc->cw + i);
	if (!(p->top_p < 1))
		return draw_list(sc, sc->cid, sc->cw, n, u, NULL);
	float thr = (float)((1 - p->top_p) * z / (double)n * 0.999);
	size_t np = 0;
	for (size_t i = 0; i < n; i++) {
		sc->pairs[np] = (wid){ sc->cw[i], sc->cid[i] };
		np += sc->cw[i] >= thr;
	}
	wid cut = cut_pairs(sc, sc->pairs, np, p->top_p * z);
	return draw_list(sc, sc->cid, sc->cw, n, u, &cut);
}

/* ---- one step ---- */

int32_t sampler_sample(const sampling_params *p, sampler_state *s, float *logits, int V,
		       sampler_scratch *sc, sampler_logprobs *lp)
{
	if (V <= 0)
		return 0;
	scratch_reserve(sc, V);
	rawdist d;
	bool want_lp = lp && p->logprobs >= 0;
	if (want_lp)
		raw_logprobs(logits, V, p->logprobs < V ? p->logprobs : V, sc, &d, lp);

	sc->log_len = 0;
	bool mask = s->n_out < p->min_tokens;
	bool pen = penalised(p);
	log_reserve(sc, (mask ? (size_t)(SAMPLER_MAX_EOS + SAMPLER_MAX_STOP_IDS) : 0) +
			(pen ? s->n_prompt_ids + s->n_out_distinct : 0));
	if (mask)
		mask_stops(p, logits, V, sc);
	if (pen)
		apply_penalties(p, s, logits, V, sc);

	int32_t id;
	if (!(p->temperature >= SAMPLER_GREEDY_EPS)) {
		float m = block_maxima(logits, V, sc->bmax);
		id = m == -INFINITY ? raw_argmax(sc, logits, V) : first_max(logits, V, sc->bmax, m);
	} else {
		id = sample_random(p, s, logits, V, sc);
	}
	if (want_lp) {
		lp->id = id;
		lp->logprob = (float)raw_logprob(&d, raw_value(sc, logits, id));
	}
	return id;
}

/* ---- sampling elsewhere ---- */

double sampler_draw(sampler_state *s)
{
	return (double)(xoshiro_next(s->rng) >> 11) * 0x1.0p-53;
}

bool sampler_masks_stops(const sampling_params *p, const sampler_state *s)
{
	return s->n_out < p->min_tokens;
}

bool sampler_penalised(const sampling_params *p)
{
	return penalised(p);
}

size_t sampler_penalty_list(const sampling_params *p, const sampler_state *s, int32_t *ids,
			    int32_t *counts, size_t cap)
{
	if (!penalised(p))
		return 0;
	size_t n = 0;
	for (size_t i = 0; s->out_ids && i < s->cap; i++) {
		if (s->out_ids[i] < 0)
			continue;
		if (n < cap) {
			ids[n] = s->out_ids[i];
			counts[n] = s->out_counts[i];
		}
		n++;
	}
	if (p->repetition_penalty != 1)
		for (size_t i = 0; i < s->n_prompt_ids; i++) {
			int32_t id = s->prompt_ids[i];
			if (s->out_ids && s->out_ids[find_slot(s->out_ids, s->cap, id)] == id)
				continue;
			if (n < cap) {
				ids[n] = id;
				counts[n] = 0;
			}
			n++;
		}
	return n;
}
