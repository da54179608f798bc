/* Fused CPU kernels of the (C, B, T) training layout (quartznet_tutorial/cpu_fast.py).
 *
 * Each goes over its tensors channel by channel, a channel's rows staying in cache between the
 * passes it needs, where the ATen composition of the same step makes several passes over whole
 * tensors: the depthwise convolution without gathering overlapping windows, and training
 * BatchNorm with the ReLU after it, forward and backward. Rows are contiguous;
 * channels are split over OpenMP threads (the same libgomp as PyTorch's, so torch's thread
 * count applies). Called through ctypes by quartznet_tutorial/cpu_kernels.py, which compiles
 * this file at first use; float32 and float64 (`scalar`) versions of every function, and
 * normal_f32, standard normal noise for the white-noise augmentation.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#define MAX_TAPS 128

#define KERNELS(scalar, suffix)                                                                \
/* y[c, r, t] = sum_j w[c, j] * x[c, r, t + j*d - p], zero outside 0..L-1 ("same" padding p).  \
 * The input gradient is the same call with the kernel reversed and padding (k-1)*d - p. */      \
void dw_conv_##suffix(const scalar *x, const scalar *w, scalar *y, int64_t channels,           \
                      int64_t rows, int64_t length, int64_t k, int64_t d, int64_t p) {          \
    _Pragma("omp parallel for schedule(static)")                                               \
    for (int64_t cr = 0; cr < channels * rows; cr++) {                                         \
        const scalar *in = x + cr * length, *wc = w + (cr / rows) * k;                          \
        scalar *out = y + cr * length;                                                         \
        for (int64_t t = 0; t < length; t++) out[t] = 0;                                       \
        for (int64_t j = 0; j < k; j++) {                                                      \
            const int64_t off = j * d - p;                                                     \
            const int64_t lo = off < 0 ? -off : 0, hi = off > 0 ? length - off : length;       \
            const scalar wj = wc[j];                                                           \
            for (int64_t t = lo; t < hi; t++) out[t] += wj * in[t + off];                      \
        }                                                                                      \
    }                                                                                          \
}                                                                                              \
                                                                                               \
/* grad_w[c, j] = sum_{r, t} g[c, r, t] * x[c, r, t + j*d - p]: each row's dot in `scalar`,    \
 * summed over rows in double. */                                                              \
void dw_weight_grad_##suffix(const scalar *g, const scalar *x, scalar *grad_w,                 \
                             int64_t channels, int64_t rows, int64_t length, int64_t k,        \
                             int64_t d, int64_t p) {                                           \
    _Pragma("omp parallel for schedule(static)")                                               \
    for (int64_t c = 0; c < channels; c++) {                                                   \
        double acc[MAX_TAPS] = {0};                                                            \
        for (int64_t r = 0; r < rows; r++) {                                                   \
            const scalar *gr = g + (c * rows + r) * length, *xr = x + (c * rows + r) * length;  \
            for (int64_t j = 0; j < k; j++) {                                                  \
                const int64_t off = j * d - p;                                                 \
                const int64_t lo = off < 0 ? -off : 0, hi = off > 0 ? length - off : length;   \
                scalar dot = 0;                                                                \
                _Pragma("omp simd reduction(+:dot)")                                           \
                for (int64_t t = lo; t < hi; t++) dot += gr[t] * xr[t + off];                  \
                acc[j] += dot;                                                                 \
            }                                                                                  \
        }                                                                                      \
        for (int64_t j = 0; j < k; j++) grad_w[c * k + j] = (scalar)acc[j];                    \
    }                                                                                          \
}                                                                                              \
                                                                                               \
/* Training BatchNorm of x (C, N) with batch statistics, then max(0, .) if relu:               \
 * y = (x - mean) * invstd * w + b. Writes mean, invstd and the unbiased variance (for the      \
 * running estimate). Sums per channel in `scalar`, vectorised: the mean, then the centred  \
 * squares. */                                                                                \
void bn_forward_##suffix(const scalar *x, const scalar *w, const scalar *b, scalar *y,         \
                         scalar *mean, scalar *invstd, scalar *var_unbiased, int64_t channels, \
                         int64_t n, double eps, int relu) {                                    \
    _Pragma("omp parallel for schedule(static)")                                               \
    for (int64_t c = 0; c < channels; c++) {                                                   \
        const scalar *xc = x + c * n;                                                          \
        scalar *yc = y + c * n;                                                                \
        scalar sum = 0;                                                                        \
        _Pragma("omp simd reduction(+:sum)")                                                   \
        for (int64_t i = 0; i < n; i++) sum += xc[i];                                          \
        const scalar m = sum / (scalar)n;                                                      \
        scalar sq = 0;                                                                         \
        _Pragma("omp simd reduction(+:sq)")                                                    \
        for (int64_t i = 0; i < n; i++) sq += (xc[i] - m) * (xc[i] - m);                       \
        const scalar inv = (scalar)(1.0 / sqrt((double)sq / (double)n + eps));                 \
        const scalar scale = inv * w[c], shift = b[c] - m * scale;                             \
        if (relu) {                                                                            \
            for (int64_t i = 0; i < n; i++) {                                                  \
                const scalar v = xc[i] * scale + shift;                                        \
                yc[i] = v > 0 ? v : 0;                                                         \
            }                                                                                  \
        } else {                                                                               \
            for (int64_t i = 0; i < n; i++) yc[i] = xc[i] * scale + shift;                     \
        }                                                                                      \
        mean[c] = m;                                                                           \
        invstd[c] = inv;                                                                       \
        var_unbiased[c] = n > 1 ? sq / (scalar)(n - 1) : sq;                                   \
    }                                                                                          \
}                                                                                              \
                                                                                               \
/* Its backward: with h = g * (y > 0) (or g without the ReLU), per channel                     \
 * grad_b = sum(h), grad_w = invstd * sum(h * (x - mean)), and                                  \
 * grad_x = w * invstd * (h - grad_b / N - (x - mean) * invstd * grad_w / N). */              \
void bn_backward_##suffix(const scalar *g, const scalar *y, const scalar *x, const scalar *w,  \
                          const scalar *mean, const scalar *invstd, scalar *grad_x,            \
                          scalar *grad_w, scalar *grad_b, int64_t channels, int64_t n) {       \
    _Pragma("omp parallel for schedule(static)")                                               \
    for (int64_t c = 0; c < channels; c++) {                                                   \
        const scalar *gc = g + c * n, *xc = x + c * n, *yc = y ? y + c * n : 0;                \
        scalar *gx = grad_x + c * n;                                                           \
        const scalar m = mean[c], inv = invstd[c];                                             \
        scalar sum_h = 0, dot = 0;                                                             \
        if (yc) {                                                                              \
            _Pragma("omp simd reduction(+:sum_h, dot)")                                        \
            for (int64_t i = 0; i < n; i++) {                                                  \
                const scalar h = yc[i] > 0 ? gc[i] : 0;                                        \
                sum_h += h;                                                                    \
                dot += h * (xc[i] - m);                                                        \
            }                                                                                  \
        } else {                                                                               \
            _Pragma("omp simd reduction(+:sum_h, dot)")                                        \
            for (int64_t i = 0; i < n; i++) {                                                  \
                sum_h += gc[i];                                                                \
                dot += gc[i] * (xc[i] - m);                                                    \
            }                                                                                  \
        }                                                                                      \
        const scalar k = w[c] * inv, gw = dot * inv;                                           \
        const scalar a = k * inv * gw / (scalar)n, b0 = k * sum_h / (scalar)n;                 \
        if (yc) {                                                                              \
            for (int64_t i = 0; i < n; i++)                                                    \
                gx[i] = (yc[i] > 0 ? gc[i] : 0) * k - b0 - (xc[i] - m) * a;                    \
        } else {                                                                               \
            for (int64_t i = 0; i < n; i++) gx[i] = gc[i] * k - b0 - (xc[i] - m) * a;          \
        }                                                                                      \
        grad_w[c] = gw;                                                                        \
        grad_b[c] = sum_h;                                                                     \
    }                                                                                          \
}

KERNELS(float, f32)
KERNELS(double, f64)

/* Standard normal samples by Marsaglia and Tsang's ziggurat (J. Stat. Softw. 5(8), 2000) with
 * 256 layers, in float32 as NumPy's standard_normal(dtype=float32) draws them, from
 * splitmix64 (Steele, Lea and Flood, OOPSLA 2014). Each block of BLOCK samples has its own
 * stream, seeded from (seed, block): the same seed gives the same samples whatever the thread
 * count. One 32-bit word per try (two per 64-bit draw): 8 bits pick the layer, 1 the sign and
 * 23 the magnitude; 99% of tries end at the first comparison. */
#define ZIG_R 3.6541528853610088      /* start of the tail */
#define ZIG_V 4.92867323399e-3        /* area of each layer */
#define ZIG_M 8388608.0               /* 2^23 */
#define BLOCK 4096

static uint32_t zig_k[256];
static float zig_w[256];
static double zig_f[256];

__attribute__((constructor)) static void zig_tables(void) {
    double dn = ZIG_R, tn = dn, q = ZIG_V / exp(-0.5 * dn * dn);
    zig_k[0] = (uint32_t)((dn / q) * ZIG_M);
    zig_k[1] = 0;
    zig_w[0] = (float)(q / ZIG_M);
    zig_w[255] = (float)(dn / ZIG_M);
    zig_f[0] = 1.0;
    zig_f[255] = exp(-0.5 * dn * dn);
    for (int i = 254; i >= 1; i--) {
        dn = sqrt(-2.0 * log(ZIG_V / dn + exp(-0.5 * dn * dn)));
        zig_k[i + 1] = (uint32_t)((dn / tn) * ZIG_M);
        tn = dn;
        zig_f[i] = exp(-0.5 * dn * dn);
        zig_w[i] = (float)(dn / ZIG_M);
    }
}

static inline uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static inline double uniform_open0(uint64_t *state) { /* in (0, 1] */
    return (double)((splitmix64(state) >> 11) + 1) * (1.0 / 9007199254740992.0);
}

/* The rest of a try that missed the first comparison, then new tries until one is accepted. */
__attribute__((noinline)) static float zig_slow(uint32_t r, uint64_t *state) {
    for (;;) {
        const int layer = (int)(r & 0xff), negative = (int)((r >> 8) & 1);
        const uint32_t magnitude = r >> 9;
        const double x = magnitude * (double)zig_w[layer];
        if (magnitude < zig_k[layer]) return (float)(negative ? -x : x);
        if (layer == 0) { /* the tail beyond ZIG_R */
            double t, y;
            do {
                t = -log(uniform_open0(state)) / ZIG_R;
                y = -log(uniform_open0(state));
            } while (y + y < t * t);
            return (float)(negative ? -(ZIG_R + t) : ZIG_R + t);
        }
        const double f = zig_f[layer] + uniform_open0(state) * (zig_f[layer - 1] - zig_f[layer]);
        if (f < exp(-0.5 * x * x)) return (float)(negative ? -x : x);
        r = (uint32_t)splitmix64(state);
    }
}

static inline float zig_normal(uint32_t r, uint64_t *state) {
    const uint32_t layer = r & 0xff, magnitude = r >> 9;
    if (magnitude < zig_k[layer]) { /* the sign without a branch: it is a coin toss */
        union { float f; uint32_t u; } x = {(float)magnitude * zig_w[layer]};
        x.u ^= (r & 0x100) << 23;
        return x.f;
    }
    return zig_slow(r, state);
}

void normal_f32(float *out, int64_t n, const uint64_t *seed_in) {
    const uint64_t seed = *seed_in; /* read here, so the caller never waits on a device */
    const int64_t blocks = (n + BLOCK - 1) / BLOCK;
    _Pragma("omp parallel for schedule(static)")
    for (int64_t b = 0; b < blocks; b++) {
        uint64_t state = seed ^ (0xD1B54A32D192ED03ULL * (uint64_t)(b + 1));
        splitmix64(&state);
        const int64_t end = (b + 1) * BLOCK < n ? (b + 1) * BLOCK : n;
        int64_t i = b * BLOCK;
        for (; i + 1 < end; i += 2) {
            const uint64_t r = splitmix64(&state);
            out[i] = zig_normal((uint32_t)r, &state);
            out[i + 1] = zig_normal((uint32_t)(r >> 32), &state);
        }
        if (i < end) out[i] = zig_normal((uint32_t)splitmix64(&state), &state);
    }
}
