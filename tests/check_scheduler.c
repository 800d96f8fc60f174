/*
 * check_scheduler: the scheduler's invariants, driven by a fake model.
 *
 * The fake model "computes" whatever the plan says and, for every item that reaches the end of
 * its sequence, appends the token f(sequence, length) — so the expected output of every
 * sequence is known in advance, whatever the batching, chunking or preemption did. Each step
 * checks: Σ n_new ≤ the token budget, running ≤ max_num_seqs, every item holds blocks for
 * n_computed + n_new positions and no block is held by two running sequences unless both hold
 * it through the prefix cache (hashed), n_new ≥ 1.
 */
#include <stdlib.h>
#include <string.h>

#include "kv_blocks.h"
#include "scheduler.h"
#include "testutil.h"

#define MAX_SEQS 64

typedef struct fake {
	sched *s;
	kv_blocks *kb;
	sched_req req[MAX_SEQS];
	sched_seq seq[MAX_SEQS];
	int n;
	int32_t max_out[MAX_SEQS];
	int done[MAX_SEQS];
	int first_token_step[MAX_SEQS];
	int finish_step[MAX_SEQS];
	int budget, max_seqs, n_blocks, bs;
	uint64_t preemptions;
} fake;

static int32_t fake_token(int seq, int64_t len)
{
	return (int32_t)((seq * 7919 + len * 104729) % 1000) + 1;
}

static void fake_init(fake *f, int budget, int max_seqs, int n_blocks, int bs, bool caching)
{
	memset(f, 0, sizeof(*f));
	f->budget = budget;
	f->max_seqs = max_seqs;
	f->n_blocks = n_blocks;
	f->bs = bs;
	f->kb = kv_blocks_new(n_blocks, bs, caching);
	sched_opts o = { .max_num_seqs = max_seqs, .max_num_batched_tokens = budget,
			 .encoder_budget = 0, .row_floats = 0 };
	f->s = sched_new(&o, f->kb, NULL);
}

/* Add sequence i with a prompt of n tokens (prefix_of ≥ 0: share its first `shared` tokens). */
static void fake_add(fake *f, int64_t n, int32_t max_out, int prefix_of, int64_t shared)
{
	int i = f->n++;
	sched_req *r = &f->req[i];
	sched_seq *q = &f->seq[i];
	memset(r, 0, sizeof(*r));
	memset(q, 0, sizeof(*q));
	r->id = (uint64_t)i;
	r->n_prompt = n;
	r->n = r->n_live = 1;
	r->max_tokens = max_out;
	q->req = r;
	q->cap = n + max_out;
	q->tokens = calloc((size_t)q->cap, sizeof(int32_t));
	for (int64_t k = 0; k < n; k++)
		q->tokens[k] = prefix_of >= 0 && k < shared ? f->seq[prefix_of].tokens[k]
							     : (int32_t)((i * 31 + k * 17) % 5000);
	q->n_tokens = n;
	f->max_out[i] = max_out;
	f->first_token_step[i] = -1;
	sched_add(f->s, q);
}

static void assert_plan_ok(fake *f, const sched_plan *p)
{
	int64_t total = 0;
	ck_assert_int_le(sched_num_running(f->s), f->max_seqs);
	for (int i = 0; i < p->n_items; i++) {
		const sched_item *it = &p->items[i];
		ck_assert_int_ge(it->n_new, 1);
		ck_assert_int_le(it->seq->n_computed + it->n_new, it->seq->n_tokens);
		int64_t need = (it->seq->n_computed + it->n_new + f->bs - 1) / f->bs;
		ck_assert_int_ge(it->seq->blocks.n, need);
		total += it->n_new;
		/* blocks shared between two scheduled sequences must be prefix-cache hits, i.e.
		 * among the first (shared) full blocks of both */
		for (int j = 0; j < i; j++) {
			const kv_seq_blocks *a = &it->seq->blocks, *b = &p->items[j].seq->blocks;
			for (int x = 0; x < a->n; x++)
				for (int y = 0; y < b->n; y++)
					if (a->ids[x] == b->ids[y])
						ck_assert_msg(x == y && x < a->n_hashed && y < b->n_hashed,
							      "block %d shared by two sequences outside "
							      "their cached prefix", a->ids[x]);
		}
	}
	ck_assert_int_eq(total, p->n_tokens);
	ck_assert_int_le(total, f->budget);
}

/* Run until every sequence is done or max_steps; returns the number of steps. */
static int fake_run(fake *f, int max_steps)
{
	int step = 0;
	for (; step < max_steps; step++) {
		int left = 0;
		for (int i = 0; i < f->n; i++)
			left += !f->done[i];
		if (!left)
			break;
		sched_plan p;
		sched_schedule(f->s, &p);
		assert_plan_ok(f, &p);
		f->preemptions += (uint64_t)p.n_preempted;
		sched_step_done(f->s, &p);
		for (int i = 0; i < p.n_items; i++) {
			if (!p.items[i].logits)
				continue;
			sched_seq *q = p.items[i].seq;
			int idx = (int)q->req->id;
			sched_seq_append(q, fake_token(idx, q->n_tokens));
			if (f->first_token_step[idx] < 0)
				f->first_token_step[idx] = step;
			if (q->n_tokens - q->req->n_prompt == f->max_out[idx]) {
				sched_remove(f->s, q);
				f->done[idx] = 1;
				f->finish_step[idx] = step;
			}
		}
	}
	return step;
}

static void assert_outputs(fake *f)
{
	for (int i = 0; i < f->n; i++) {
		sched_seq *q = &f->seq[i];
		ck_assert_msg(f->done[i], "sequence %d never finished", i);
		ck_assert_int_eq(q->n_tokens, q->req->n_prompt + f->max_out[i]);
		for (int64_t k = q->req->n_prompt; k < q->n_tokens; k++)
			ck_assert_int_eq(q->tokens[k], fake_token(i, k));
	}
}

static void fake_deinit(fake *f)
{
	for (int i = 0; i < f->n; i++) {
		kv_seq_blocks_deinit(&f->seq[i].blocks);
		free(f->seq[i].tokens);
	}
	kv_blocks_stats st;
	kv_blocks_get_stats(f->kb, &st);
	ck_assert_int_eq(st.n_free, f->n_blocks);   /* every block came back */
	sched_free(f->s);
	kv_blocks_free(f->kb);
}

START_TEST(test_sched_budget_and_max_seqs)
{
	fake f;
	fake_init(&f, 64, 4, 1000, 16, true);
	for (int i = 0; i < 12; i++)
		fake_add(&f, 10 + 37 * i % 150, 5 + i % 7, -1, 0);
	int steps = fake_run(&f, 10000);
	ck_assert_int_lt(steps, 10000);
	assert_outputs(&f);
	ck_assert_uint_eq(f.preemptions, 0);
	fake_deinit(&f);
}
END_TEST

START_TEST(test_sched_chunked_prefill)
{
	/* a 300-token prompt with a budget of 32: chunks of ≤ 32, first token after ≥ 10 steps */
	fake f;
	fake_init(&f, 32, 8, 100, 16, false);
	fake_add(&f, 300, 3, -1, 0);
	fake_run(&f, 1000);
	assert_outputs(&f);
	ck_assert_int_ge(f.first_token_step[0], 9);
	fake_deinit(&f);
}
END_TEST

START_TEST(test_sched_decodes_not_starved_by_prefill)
{
	/* a running decode keeps getting a token every step while a long prompt is prefilled */
	fake f;
	fake_init(&f, 16, 8, 200, 16, false);
	fake_add(&f, 4, 40, -1, 0);
	sched_plan p;
	sched_schedule(f.s, &p);
	sched_step_done(f.s, &p);
	sched_seq_append(&f.seq[0], fake_token(0, f.seq[0].n_tokens));
	fake_add(&f, 400, 2, -1, 0);
	for (int step = 0; step < 20; step++) {
		sched_schedule(f.s, &p);
		assert_plan_ok(&f, &p);
		ck_assert_int_ge(p.n_items, 1);
		ck_assert_ptr_eq(p.items[0].seq, &f.seq[0]);
		ck_assert_int_eq(p.items[0].n_new, 1);
		ck_assert(p.items[0].logits);
		sched_step_done(f.s, &p);
		sched_seq_append(&f.seq[0], fake_token(0, f.seq[0].n_tokens));
		for (int i = 1; i < p.n_items; i++)
			ck_assert(!p.items[i].logits);    /* the long prompt is still prefilling */
	}
	for (int i = 0; i < f.n; i++) {
		sched_remove(f.s, &f.seq[i]);
		f.done[i] = 1;
	}
	fake_deinit(&f);
}
END_TEST

START_TEST(test_sched_preemption_then_recovery)
{
	/* 8 sequences that each need 6 blocks in a pool of 20: they cannot all run; the last
	 * admitted are preempted, recomputed, and every output is still the expected one */
	fake f;
	fake_init(&f, 256, 8, 20, 4, true);
	for (int i = 0; i < 8; i++)
		fake_add(&f, 8, 16, -1, 0);
	int steps = fake_run(&f, 5000);
	ck_assert_int_lt(steps, 5000);
	assert_outputs(&f);
	ck_assert_uint_gt(f.preemptions, 0);
	ck_assert_uint_eq(sched_num_preemptions(f.s), f.preemptions);
	fake_deinit(&f);
}
END_TEST

START_TEST(test_sched_fcfs_no_starvation)
{
	/* a stream of requests with a small pool: each finishes, and first tokens come in
	 * arrival order (FCFS) when all prompts are the same size */
	fake f;
	fake_init(&f, 48, 3, 30, 8, false);
	for (int i = 0; i < 30; i++)
		fake_add(&f, 20, 6, -1, 0);
	int steps = fake_run(&f, 20000);
	ck_assert_int_lt(steps, 20000);
	assert_outputs(&f);
	for (int i = 1; i < f.n; i++)
		ck_assert_int_le(f.first_token_step[i - 1], f.first_token_step[i]);
	fake_deinit(&f);
}
END_TEST

START_TEST(test_sched_prefix_hits_skip_compute)
{
	/* the second request shares 64 of its 70 prompt tokens with the first, which finished:
	 * it starts with 64 cached positions and computes only the rest */
	fake f;
	fake_init(&f, 512, 4, 64, 16, true);
	fake_add(&f, 70, 2, -1, 0);
	fake_run(&f, 100);
	fake_add(&f, 70, 2, 0, 64);
	sched_plan p;
	sched_schedule(f.s, &p);
	ck_assert_int_eq(p.n_items, 1);
	ck_assert_int_eq(f.seq[1].n_cached, 64);
	ck_assert_int_eq(p.items[0].n_new, 70 - 64);
	sched_step_done(f.s, &p);
	sched_seq_append(&f.seq[1], fake_token(1, f.seq[1].n_tokens));
	fake_run(&f, 100);
	assert_outputs(&f);
	fake_deinit(&f);
}
END_TEST

START_TEST(test_sched_random_invariants)
{
	/* random arrivals, sizes and pool pressure; invariants every step, outputs exact */
	for (int round = 0; round < 20; round++) {
		fake f;
		srand(1000 + round);
		int bs = 1 << (rand() % 5);
		fake_init(&f, 8 + rand() % 200, 1 + rand() % 8, 60 + rand() % 200, bs, rand() % 2);
		for (int i = 0; i < 40; i++) {
			int64_t n = 1 + rand() % 120;
			int prefix = i > 0 && rand() % 3 == 0 ? rand() % i : -1;
			int64_t shared = prefix >= 0 ? rand() % (f.seq[prefix].req->n_prompt + 1) : 0;
			if (shared > n)
				shared = n;
			int32_t out = 1 + rand() % 30;
			/* a sequence must fit the pool alone */
			if ((n + out + bs - 1) / bs > f.n_blocks)
				n = 8;
			fake_add(&f, n, out, prefix, shared);
		}
		int steps = fake_run(&f, 100000);
		ck_assert_int_lt(steps, 100000);
		assert_outputs(&f);
		fake_deinit(&f);
	}
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("scheduler");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, test_sched_budget_and_max_seqs);
	tcase_add_test(tc, test_sched_chunked_prefill);
	tcase_add_test(tc, test_sched_decodes_not_starved_by_prefill);
	tcase_add_test(tc, test_sched_preemption_then_recovery);
	tcase_add_test(tc, test_sched_fcfs_no_starvation);
	tcase_add_test(tc, test_sched_prefix_hits_skip_compute);
	tcase_add_test(tc, test_sched_random_invariants);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run_suite(suite());
}
