/*
 * fp8.cuh: the KV cache's fp8 E4M3 conversions on the device (the format and the host side,
 * with the exact rounding rule, are in fp8.h).
 *
 *   fp8_encode(x)      fp8(x), round to nearest even, saturating to ±448: the same bits as
 *                      f32_to_fp8e4m3 (cvt.rn.satfinite.e4m3x2.f32 on sm_89+).
 *   fp8x2_to_float2(v) two E4M3 values (low byte first) to float, exact (cvt.rn.f16x2.e4m3x2,
 *                      then half to float: every E4M3 value is a half).
 *   fp8x2_to_bf162(v)  the same to bf16x2 for tensor-core operands, exact too.
 */
#ifndef QVL_KERNELS_FP8_CUH
#define QVL_KERNELS_FP8_CUH
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <stdint.h>

static __device__ __forceinline__ uint8_t fp8_encode(float x)
{
	return (uint8_t)__nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3);
}

static __device__ __forceinline__ float2 fp8x2_to_float2(uint16_t v)
{
	__half2_raw h = __nv_cvt_fp8x2_to_halfraw2((__nv_fp8x2_storage_t)v, __NV_E4M3);
	return __half22float2(*reinterpret_cast<__half2 *>(&h));
}

static __device__ __forceinline__ __nv_bfloat162 fp8x2_to_bf162(uint16_t v)
{
	return __float22bfloat162_rn(fp8x2_to_float2(v));
}

#endif
