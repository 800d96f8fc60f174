/*
 * parallel: parallel_run (parallel.h).
 */
#include "parallel.h"

#include <pthread.h>
#include <stdbool.h>

void parallel_run(void *(*fn)(void *), void *jobs, size_t job_bytes, int n, size_t stack_bytes)
{
	pthread_t th[PARALLEL_MAX_PARTS];
	bool started[PARALLEL_MAX_PARTS] = { false };
	char *base = jobs;
	pthread_attr_t at;
	const bool have_at = stack_bytes > 0 && pthread_attr_init(&at) == 0;
	if (have_at)
		pthread_attr_setstacksize(&at, stack_bytes);
	for (int k = 1; k < n && k < PARALLEL_MAX_PARTS; k++)
		started[k] = pthread_create(&th[k], have_at ? &at : NULL, fn,
					    base + (size_t)k * job_bytes) == 0;
	if (have_at)
		pthread_attr_destroy(&at);
	if (n > 0)
		fn(base);
	for (int k = 1; k < n; k++) {
		if (k < PARALLEL_MAX_PARTS && started[k])
			pthread_join(th[k], NULL);
		else
			fn(base + (size_t)k * job_bytes);   /* no thread: this one does it */
	}
}
