/*
 * sched: the continuous-batching scheduler (see sched.h for the step and its invariants).
 *
 * Two intrusive lists of sequences, RUNNING and WAITING, in order:
 *
 *   RUNNING  head ─► a ─► b ─► c ◄─ tail      scheduled first, in this order; preemption takes
 *                                               from the tail (the latest admitted: FCFS)
 *   WAITING  head ─► d ─► e ◄─ tail           admitted from the head; a preempted sequence goes
 *                                               back to the head
 *
 * A step's plan (items, encs) lives in arrays the scheduler owns and reuses. Encoder outputs a
 * step reads are pinned in the encoder cache (one reference per distinct image hash per step)
 * from sched_schedule to sched_step_done, so nothing the step reads can be evicted under it.
 */
#include "scheduler.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alloc.h"

typedef struct seq_list {
	sched_seq *head, *tail;
	int n;
} seq_list;

struct sched {
	sched_opts o;
	kv_blocks *kb;                 /* borrowed */
	encoder_cache *ec;             /* borrowed; NULL without vision */
	seq_list running, waiting;
	uint64_t n_preemptions;
	sched_item *items;             /* owned: capacity cap_items */
	int cap_items;
	sched_enc *encs;               /* owned: capacity cap_encs */
	int cap_encs;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void list_push_tail(seq_list *l, sched_seq *q)
{
	q->next = NULL;
	q->prev = l->tail;
	if (l->tail)
		l->tail->next = q;
	else
		l->head = q;
	l->tail = q;
	l->n++;
}

static void list_push_head(seq_list *l, sched_seq *q)
{
	q->prev = NULL;
	q->next = l->head;
	if (l->head)
		l->head->prev = q;
	else
		l->tail = q;
	l->head = q;
	l->n++;
}

static void list_unlink(seq_list *l, sched_seq *q)
{
	if (q->prev)
		q->prev->next = q->next;
	else
		l->head = q->next;
	if (q->next)
		q->next->prev = q->prev;
	else
		l->tail = q->prev;
	q->prev = q->next = NULL;
	l->n--;
}

sched *sched_new(const sched_opts *o, kv_blocks *kb, encoder_cache *ec)
{
	sched *s = xcalloc(1, sizeof(*s));
	s->o = *o;
	s->kb = kb;
	s->ec = ec;
	s->cap_items = o->max_num_seqs > 0 ? o->max_num_seqs : 1;
	s->items = xcalloc((size_t)s->cap_items, sizeof(*s->items));
	s->cap_encs = 16;
	s->encs = xcalloc((size_t)s->cap_encs, sizeof(*s->encs));
	return s;
}

void sched_free(sched *s)
{
	if (!s)
		return;
	free(s->items);
	free(s->encs);
	free(s);
}

kv_tokens sched_seq_kv_tokens(const sched_seq *q)
{
	return (kv_tokens){ .ids = q->tokens, .n = q->n_tokens, .images = q->req->kv_images,
			    .n_images = q->req->n_images };
}

void sched_seq_append(sched_seq *q, int32_t id)
{
	if (q->n_tokens == q->cap) {
		q->cap = q->cap ? 2 * q->cap : 64;
		q->tokens = xrealloc(q->tokens, (size_t)q->cap * sizeof(int32_t));
	}
	q->tokens[q->n_tokens++] = id;
}

void sched_add(sched *s, sched_seq *q)
{
	q->state = SCHED_WAITING;
	q->n_computed = 0;
	list_push_tail(&s->waiting, q);
}

void sched_remove(sched *s, sched_seq *q)
{
	if (q->state == SCHED_RUNNING)
		list_unlink(&s->running, q);
	else if (q->state == SCHED_WAITING)
		list_unlink(&s->waiting, q);
	kv_blocks_release(s->kb, &q->blocks);
	q->n_computed = 0;
	q->state = SCHED_DONE;
}

int sched_num_running(const sched *s)
{
	return s->running.n;
}

int sched_num_waiting(const sched *s)
{
	return s->waiting.n;
}

uint64_t sched_num_preemptions(const sched *s)
{
	return s->n_preemptions;
}

/* ---- encoder outputs of a chunk ---- */

static sched_enc *plan_find_enc(sched_plan *p, const uint8_t hash[32])
{
	for (int i = 0; i < p->n_encs; i++) {
		const sched_enc *x = &p->encs[i];
		if (!memcmp(x->req->images[x->image].hash, hash, 32))
			return &p->encs[i];
	}
	return NULL;
}

static void plan_add_enc(sched *s, sched_plan *p, sched_req *r, int image, float *rows, bool encode)
{
	if (p->n_encs == s->cap_encs) {
		s->cap_encs *= 2;
		s->encs = xrealloc(s->encs, (size_t)s->cap_encs * sizeof(*s->encs));
		p->encs = s->encs;
	}
	p->encs[p->n_encs++] = (sched_enc){ .req = r, .image = image, .rows = rows, .encode = encode };
}

/* How many of the n positions from `first` on can run this step as far as images go: every
 * image the range overlaps must be cached or fit the encoder budget and cache now; the range
 * stops before the first one that does not. Pins (or reserves) the images it lets through. */
static int64_t fit_images(sched *s, sched_plan *p, sched_req *r, int64_t first, int64_t n,
			  int64_t *enc_budget)
{
	for (int i = 0; i < r->n_images; i++) {
		const sched_image *im = &r->images[i];
		if (im->start >= first + n)
			break;
		if (im->start + im->n_tokens <= first)
			continue;
		if (plan_find_enc(p, im->hash))
			continue;
		size_t nf = (size_t)im->n_tokens * (size_t)s->o.row_floats, got = 0;
		const float *hit = s->ec ? encoder_cache_acquire(s->ec, im->hash, &got) : NULL;
		if (hit && got == nf) {
			plan_add_enc(s, p, r, i, (float *)hit, false);
			continue;
		}
		if (hit)                       /* same hash, other size: cannot happen; be safe */
			encoder_cache_release(s->ec, im->hash);
		float *rows = NULL;
		if (s->ec && !hit && im->n_tokens <= *enc_budget && encoder_cache_can_insert(s->ec, nf))
			rows = encoder_cache_insert(s->ec, im->hash, nf);
		if (!rows)
			return im->start > first ? im->start - first : 0;
		*enc_budget -= im->n_tokens;
		plan_add_enc(s, p, r, i, rows, true);
	}
	return n;
}

/* ---- the step ---- */

static void preempt(sched *s, sched_seq *q)
{
	list_unlink(&s->running, q);
	kv_blocks_release(s->kb, &q->blocks);
	q->n_computed = 0;
	q->state = SCHED_WAITING;
	q->n_preempted++;
	s->n_preemptions++;
	list_push_head(&s->waiting, q);
}

static void plan_add_item(sched *s, sched_plan *p, sched_seq *q, int64_t n_new)
{
	if (p->n_items == s->cap_items) {
		s->cap_items *= 2;
		s->items = xrealloc(s->items, (size_t)s->cap_items * sizeof(*s->items));
		p->items = s->items;
	}
	p->items[p->n_items++] = (sched_item){ .seq = q, .n_new = n_new,
					       .logits = q->n_computed + n_new == q->n_tokens };
	p->n_tokens += n_new;
	if (q->t_scheduled == 0)
		q->t_scheduled = now_s();
}

void sched_schedule(sched *s, sched_plan *p)
{
	memset(p, 0, sizeof(*p));
	p->items = s->items;
	p->encs = s->encs;
	int64_t budget = s->o.max_num_batched_tokens, enc_budget = s->o.encoder_budget;

	/* 1. running sequences, in order */
	for (sched_seq *q = s->running.head; q && budget > 0;) {
		int64_t n_new = q->n_tokens - q->n_computed;
		if (n_new > budget)
			n_new = budget;
		n_new = fit_images(s, p, q->req, q->n_computed, n_new, &enc_budget);
		if (n_new <= 0) {
			q = q->next;
			continue;
		}
		bool self_preempted = false;
		while (kv_blocks_allocate(s->kb, &q->blocks, q->n_computed + n_new) != 0) {
			sched_seq *victim = s->running.tail;
			preempt(s, victim);
			p->n_preempted++;
			if (victim == q) {
				self_preempted = true;
				break;
			}
		}
		if (self_preempted)
			break;            /* everything after q was preempted before it */
		plan_add_item(s, p, q, n_new);
		budget -= n_new;
		q = q->next;
	}

	/* 2. waiting sequences, FCFS, unless this step had to preempt */
	while (!p->n_preempted && budget > 0 && s->waiting.head &&
	       s->running.n < s->o.max_num_seqs) {
		sched_seq *q = s->waiting.head;
		if (q->n_computed == 0 && q->blocks.n == 0) {
			kv_tokens t = sched_seq_kv_tokens(q);
			q->n_computed = kv_blocks_match(s->kb, &t, q->n_tokens - 1, &q->blocks);
		}
		int64_t n_new = q->n_tokens - q->n_computed;
		if (n_new > budget)
			n_new = budget;
		n_new = fit_images(s, p, q->req, q->n_computed, n_new, &enc_budget);
		if (n_new <= 0 || kv_blocks_allocate(s->kb, &q->blocks, q->n_computed + n_new) != 0) {
			/* the head waits (FCFS); its prefix hits are given back, not held */
			kv_blocks_release(s->kb, &q->blocks);
			q->n_computed = 0;
			break;
		}
		if (!q->admitted_once) {
			q->admitted_once = true;
			q->n_cached = q->n_computed;
		}
		list_unlink(&s->waiting, q);
		q->state = SCHED_RUNNING;
		list_push_tail(&s->running, q);
		plan_add_item(s, p, q, n_new);
		budget -= n_new;
	}
}

void sched_step_done(sched *s, sched_plan *p)
{
	for (int i = 0; i < p->n_items; i++) {
		sched_seq *q = p->items[i].seq;
		q->n_computed += p->items[i].n_new;
		kv_tokens t = sched_seq_kv_tokens(q);
		kv_blocks_commit(s->kb, &q->blocks, &t, q->n_computed);
	}
	for (int i = 0; i < p->n_encs; i++)
		encoder_cache_release(s->ec, p->encs[i].req->images[p->encs[i].image].hash);
	p->n_encs = 0;
}
