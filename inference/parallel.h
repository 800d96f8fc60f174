/*
 * parallel: one piece of host work cut into independent parts that run at once, the caller's
 * thread taking the first and short-lived threads the others (mkmodel's weight fill, the image
 * patches in img_preprocess, the pixels' bf16 rounding in vision_cuda). No pool: a part is
 * large (≥ ~100 µs of work) next to a thread's start (tens of µs).
 *
 * Threads: any; parallel_run returns only when every part has run, so the jobs may live on the
 * caller's stack.
 */
#ifndef QVL_PARALLEL_H
#define QVL_PARALLEL_H

#include <stddef.h>

/* The most parts run on threads of their own; parts past it run on the caller. */
#define PARALLEL_MAX_PARTS 16

/* fn(jobs + k·job_bytes) for k in [0, n): part 0 on the calling thread, the others on threads
 * started for the call, with stacks of stack_bytes (0: the system's default). A part whose
 * thread cannot be started (or past PARALLEL_MAX_PARTS) runs on the calling thread once the
 * started ones are joined. fn's return value is ignored. */
void parallel_run(void *(*fn)(void *), void *jobs, size_t job_bytes, int n, size_t stack_bytes);

#endif
