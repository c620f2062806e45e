// INT8 weight-only GEMM / GEMV for CUDA:
//
//     y[m, n] = scale[n] * sum_k x[m, k] * w_q[n, k] + bias[n]
//
// x: f32 (M x K) row-major, w_q: int8 (N x K) row-major (per-output-channel symmetric
// quantisation, see src/quant/int8.rs), scale and bias: f32 (N), y: f32 (M x N) row-major.
// Any M, N, K (no multiple-of restrictions). The activations stay f32 (weight-only
// quantisation): the only error against the f32 product of the dequantised weight is the
// order of the f32 additions.
//
// Layout of the work: one warp per output column n (decode, M = 1, reads each weight row
// once, coalesced), and each warp handles ROWS_PER_WARP activation rows at a time so a
// weight row read from memory serves several rows of x when M > 1. Each lane sums a strided
// slice of k, then the warp reduces with shuffles. Lane 0 applies scale and bias.
//
// Vectorised loads (4 int8 weights as char4, 4 activations as float4) are used only when
// every row start is aligned: K % 4 == 0, x 16-byte aligned and w 4-byte aligned. Otherwise
// (odd K, an input view starting at an unaligned offset) the scalar loop handles every k,
// so there is no separate tail to get wrong.

#include <stdint.h>

#define WARPS_PER_BLOCK 8
#define ROWS_PER_WARP 4

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) {
        v += __shfl_xor_sync(0xffffffffu, v, offset);
    }
    return v;
}

extern "C" __global__ void int8_gemm_f32(
    const float* __restrict__ x,
    const int8_t* __restrict__ w,
    const float* __restrict__ scale,
    const float* __restrict__ bias,
    float* __restrict__ y,
    unsigned int m,
    unsigned int n,
    unsigned int k) {
    const unsigned int lane = threadIdx.x & 31u;
    const unsigned int col = blockIdx.x * WARPS_PER_BLOCK + (threadIdx.x >> 5);
    // `col` is the same for the 32 lanes of a warp, so whole warps leave together and the
    // full-mask shuffles below always see 32 active lanes.
    if (col >= n) {
        return;
    }
    const int8_t* wrow = w + (size_t)col * k;
    const bool vec = (k % 4u == 0u) && ((uintptr_t)x % 16u == 0u) && ((uintptr_t)w % 4u == 0u);

    // A grid-stride loop over blocks of rows: gridDim.y is capped at 65535 by the launcher.
    for (size_t m0 = (size_t)blockIdx.y * ROWS_PER_WARP; m0 < m; m0 += (size_t)gridDim.y * ROWS_PER_WARP) {
        const unsigned int rows = (m - m0 < ROWS_PER_WARP) ? (unsigned int)(m - m0) : ROWS_PER_WARP;
        const float* xrow = x + m0 * k;
        float acc[ROWS_PER_WARP];
#pragma unroll
        for (int r = 0; r < ROWS_PER_WARP; ++r) {
            acc[r] = 0.0f;
        }

        if (vec) {
            const unsigned int k4 = k / 4u;
            const char4* w4 = reinterpret_cast<const char4*>(wrow);
            for (unsigned int i = lane; i < k4; i += 32u) {
                const char4 q = w4[i];
                const float q0 = (float)q.x, q1 = (float)q.y, q2 = (float)q.z, q3 = (float)q.w;
#pragma unroll
                for (unsigned int r = 0; r < ROWS_PER_WARP; ++r) {
                    if (r < rows) {
                        const float4 xv = reinterpret_cast<const float4*>(xrow + (size_t)r * k)[i];
                        acc[r] += xv.x * q0 + xv.y * q1 + xv.z * q2 + xv.w * q3;
                    }
                }
            }
        } else {
            for (unsigned int i = lane; i < k; i += 32u) {
                const float q = (float)wrow[i];
#pragma unroll
                for (unsigned int r = 0; r < ROWS_PER_WARP; ++r) {
                    if (r < rows) {
                        acc[r] += xrow[(size_t)r * k + i] * q;
                    }
                }
            }
        }

        const float s = scale[col];
        const float b = bias[col];
#pragma unroll
        for (unsigned int r = 0; r < ROWS_PER_WARP; ++r) {
            // Every lane takes part in the shuffle (rows is warp-uniform), lane 0 writes.
            if (r < rows) {
                const float total = warp_sum(acc[r]);
                if (lane == 0) {
                    y[(m0 + r) * n + col] = total * s + b;
                }
            }
        }
    }
}
