/*
 * step_profile: per-phase GPU time of text_cuda's eager steps (step_profile.h).
 *
 * One event per phase boundary, reused by every step (a step waits for its last event before
 * the next begins, so the events are free again), recorded on the backend's stream (borrowed).
 * Classes are the distinct (T, n_dec) pairs, the first STEP_PROFILE_CLASSES of them; later pairs
 * go to one class "other". Not thread-safe: the backend's thread only.
 */
#include "step_profile.h"

#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "cuda_check.h"
#include "log.h"

#define STEP_PROFILE_CLASSES 32
#define STEP_PROFILE_MARKS 512   /* events of one step: 28 layers × ≤ 10 marks + 3, and room */

static const char *const PH_NAME[STEP_PROFILE_N_PHASES] = {
	"embedding", "norm+qkv", "qk_norm_rope", "attention (decodes)", "attention (prefill)",
	"attention (both)", "o", "post norm", "gate_up", "silu_mul", "down", "deepstack add", "final norm", "LM head"
};

typedef struct prof_class {
	int T, n_dec;           /* -1, -1: "other" */
	long steps;
	double ms[STEP_PROFILE_N_PHASES];
} prof_class;

struct step_profile {
	cudaStream_t stream;    /* borrowed */
	cudaEvent_t ev[STEP_PROFILE_MARKS + 1];   /* ev[0]: the step's start */
	int ph[STEP_PROFILE_MARKS + 1];
	int n_marks;
	bool active;
	int cur;                /* the class of the step in progress */
	bool overflow;          /* the step had more marks than events (logged once) */
	prof_class cls[STEP_PROFILE_CLASSES + 1];
	int n_cls;
};

step_profile *step_profile_new(cudaStream_t stream)
{
	const char *s = getenv("QVL_PROFILE");
	if (!s || strcmp(s, "1"))
		return NULL;
	step_profile *p = xcalloc(1, sizeof(*p));
	p->stream = stream;
	for (int i = 0; i <= STEP_PROFILE_MARKS; i++)
		CUDA_CHECK(cudaEventCreate(&p->ev[i]));
	p->cls[STEP_PROFILE_CLASSES] = (prof_class){ .T = -1, .n_dec = -1 };
	log_msg(LOG_LEVEL_NOTICE, "profile", "QVL_PROFILE=1: eager steps are timed phase by phase "
		"(slower steps; captured graphs are not profiled)");
	return p;
}

void step_profile_free(step_profile *p)
{
	if (!p)
		return;
	for (int i = 0; i <= STEP_PROFILE_MARKS; i++)
		CUDA_CHECK(cudaEventDestroy(p->ev[i]));
	free(p);
}

static int class_of(step_profile *p, int T, int n_dec)
{
	for (int i = 0; i < p->n_cls; i++)
		if (p->cls[i].T == T && p->cls[i].n_dec == n_dec)
			return i;
	if (p->n_cls == STEP_PROFILE_CLASSES)
		return STEP_PROFILE_CLASSES;
	p->cls[p->n_cls] = (prof_class){ .T = T, .n_dec = n_dec };
	return p->n_cls++;
}

void step_profile_begin(step_profile *p, int T, int n_dec)
{
	if (!p)
		return;
	p->cur = class_of(p, T, n_dec);
	p->n_marks = 0;
	p->active = true;
	CUDA_CHECK(cudaEventRecord(p->ev[0], p->stream));
}

void step_profile_mark(step_profile *p, enum step_profile_phase ph)
{
	if (!p || !p->active)
		return;
	if (p->n_marks == STEP_PROFILE_MARKS) {
		p->overflow = true;
		return;
	}
	p->n_marks++;
	p->ph[p->n_marks] = ph;
	CUDA_CHECK(cudaEventRecord(p->ev[p->n_marks], p->stream));
}

void step_profile_end(step_profile *p)
{
	if (!p || !p->active)
		return;
	p->active = false;
	if (p->overflow) {
		log_msg(LOG_LEVEL_WARN, "profile", "a step had more than %d phases; its tail is "
			"missing from the profile", STEP_PROFILE_MARKS);
		p->overflow = false;
	}
	if (!p->n_marks)
		return;
	CUDA_CHECK(cudaEventSynchronize(p->ev[p->n_marks]));
	prof_class *c = &p->cls[p->cur];
	c->steps++;
	for (int i = 1; i <= p->n_marks; i++) {
		float ms;
		CUDA_CHECK(cudaEventElapsedTime(&ms, p->ev[i - 1], p->ev[i]));
		c->ms[p->ph[i]] += ms;
	}
}

void step_profile_report(const step_profile *p)
{
	if (!p)
		return;
	for (int i = 0; i <= STEP_PROFILE_CLASSES; i++) {
		const prof_class *c = &p->cls[i];
		if (!c->steps)
			continue;
		double sum = 0;
		for (int k = 0; k < STEP_PROFILE_N_PHASES; k++)
			sum += c->ms[k];
		const double n = (double)c->steps;
		if (c->T < 0)
			log_msg(LOG_LEVEL_NOTICE, "profile", "other steps: %ld, %.3f ms a step", c->steps,
				sum / n);
		else
			log_msg(LOG_LEVEL_NOTICE, "profile", "steps of %d rows (%d decodes): %ld, %.3f "
				"ms a step", c->T, c->n_dec, c->steps, sum / n);
		for (int k = 0; k < STEP_PROFILE_N_PHASES; k++)
			if (c->ms[k] > 0)
				log_msg(LOG_LEVEL_NOTICE, "profile", "  %-20s %9.3f ms %5.1f%%",
					PH_NAME[k], c->ms[k] / n, 100.0 * c->ms[k] / sum);
	}
}
