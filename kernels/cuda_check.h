/*
 * cuda_check: the one error check for CUDA runtime, cuBLAS(Lt) and NCCL calls.
 *
 * A failed call logs the call text, file and line and aborts: a sticky CUDA error poisons the
 * context, so the only recovery is a new process (systemd restarts qvld; responders retry).
 * Each macro evaluates its argument once. KN_CHECK_LAUNCH() checks the last error after a kernel
 * launch, and with QVL_CUDA_SYNC=1 in the environment also synchronises, so that an
 * asynchronous fault is reported at the launch that caused it.
 */
#ifndef QVL_CUDA_CHECK_H
#define QVL_CUDA_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#include <cuda_runtime_api.h>

#define CUDA_CHECK(call)                                                                   \
	do {                                                                               \
		cudaError_t err_ = (call);                                                 \
		if (err_ != cudaSuccess) {                                                 \
			fprintf(stderr, "<2>[cuda] %s:%d: %s failed: %s\n", __FILE__, __LINE__, \
				#call, cudaGetErrorString(err_));                          \
			abort();                                                           \
		}                                                                          \
	} while (0)

static inline int kn_sync_each_launch(void)
{
	static int on = -1;   /* read once; the same for every thread afterwards */
	if (on < 0) {
		const char *s = getenv("QVL_CUDA_SYNC");
		on = s && *s == '1';
	}
	return on;
}

/* The dynamic shared-memory opt-in (above 48 KB) of kernel func, set to bytes on the current
 * device the first time done[] — one array per kernel instance — sees that device. Threads
 * may race here: setting it twice is harmless. */
#define KN_MAX_DEVICES 64
static inline void kn_smem_optin_once(const void *func, int bytes,
				      unsigned char done[KN_MAX_DEVICES])
{
	int dev = 0;
	CUDA_CHECK(cudaGetDevice(&dev));
	const int known = dev >= 0 && dev < KN_MAX_DEVICES;
	if (known && done[dev])
		return;
	CUDA_CHECK(cudaFuncSetAttribute(func, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
	if (known)
		done[dev] = 1;
}

#define KN_CHECK_LAUNCH()                                                                  \
	do {                                                                               \
		CUDA_CHECK(cudaGetLastError());                                            \
		if (kn_sync_each_launch())                                                 \
			CUDA_CHECK(cudaDeviceSynchronize());                               \
	} while (0)

#endif
