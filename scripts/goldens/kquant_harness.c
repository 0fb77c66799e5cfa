// Quantizer goldens of the K formats for tests/quant.rs: ggml's C reference quantizers
// (quantize_row_q4_K_ref, quantize_row_q6_K_ref of ggml-quants.c) on seeded float32 rows.
// Built and run by kquant_fixture.sh; usage: kquant_harness OUT_DIR.
//
// Writes OUT_DIR/<TYPE>.quant_in.f32 (the input, little-endian float32) and
// OUT_DIR/<TYPE>.quant_out.bin (the block bytes) for Q4_K and Q6_K, and prints one line per type:
// "<TYPE> <id> <n> <rows>". The inputs come from an integer generator (splitmix64) and exact float
// arithmetic only, so every machine writes the same files. Compile with -ffp-contract=off: a fused
// multiply-add changes the reference's sums, and with them whole bytes.

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ggml.h"
#include "ggml-quants.h"

#define QK 256
#define ROW 512  // two super-blocks a row
#define N_ROWS 7

// ggml-quants.c refers to these from code the reference quantizers do not use (row validation,
// the imatrix paths); the harness never reaches them.
void ggml_abort(const char * file, int line, const char * fmt, ...) {
    fprintf(stderr, "ggml_abort at %s:%d (%s)\n", file, line, fmt);
    abort();
}
size_t ggml_row_size(enum ggml_type type, int64_t ne) { (void) type; (void) ne; abort(); }
size_t ggml_type_size(enum ggml_type type) { (void) type; abort(); }
const char * ggml_type_name(enum ggml_type type) { (void) type; abort(); }

static uint64_t state;

static uint64_t next_u64(void) {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// Uniform in [0, 1) on a 2^-24 grid: exact in float32.
static float uniform(void) { return (float) (next_u64() >> 40) * 0x1.0p-24f; }

// Roughly normal (mean 0, variance 1): a scaled sum of four uniforms, exact operations only.
static float normal(void) {
    float s = uniform() + uniform() + uniform() + uniform();
    return (s - 2.0f) * 1.7320508f;
}

// One super-block of 256 values of the given kind.
static void block(float * x, int kind) {
    static const float decades[8] = {1e-4f, 1e-3f, 1e-2f, 1e-1f, 1.0f, 10.0f, 100.0f, 1000.0f};
    for (int i = 0; i < QK; ++i) {
        float n = normal();
        switch (kind) {
            case 0: x[i] = n; break;                                        // ordinary weights
            case 1: x[i] = n * 3e4f; break;                                 // extremes
            case 2: x[i] = 0.0f; break;                                     // all zero
            case 3: x[i] = 1.5f; break;                                     // constant
            case 4: x[i] = i == 77 ? 1e5f : n; break;                       // one huge outlier
            case 5: x[i] = n * 1e-30f; break;                               // tiny: f16 scales of 0
            case 6: x[i] = n * 1e-6f; break;                                // subnormal f16 scales
            case 7: x[i] = -(n < 0 ? -n : n) - 0.25f; break;                // negative only
            case 8: x[i] = (n < 0 ? -n : n) + 0.25f; break;                 // positive only
            case 9: x[i] = n * decades[(i / 16) % 8]; break;                // mixed across sub-blocks
            case 10: x[i] = (float) ((int) (next_u64() % 16) - 8); break;   // integers: rounding ties
            case 11: x[i] = (i / 32) % 2 ? n : 0.0f; break;                 // every other sub-block zero
            case 12: x[i] = n * (i % 2 ? 0.01f : 100.0f); break;            // mixed within a sub-block
            default: x[i] = i == 200 ? -5000.0f : n * 0.5f; break;          // a negative outlier
        }
    }
}

static int write_file(const char * dir, const char * name, const char * ext, const void * p, size_t n) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.%s", dir, name, ext);
    FILE * f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        return 1;
    }
    return 0;
}

int main(int argc, char ** argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]);
        return 2;
    }
    const uint32_t one = 1;
    if (*(const uint8_t *) &one != 1) {
        fprintf(stderr, "the fixtures are little-endian; run on a little-endian machine\n");
        return 1;
    }
    static float x[N_ROWS * ROW];
    static uint8_t q[N_ROWS * ROW];  // more than either format needs
    const struct { const char * name; int id; size_t block_bytes; } types[2] = {
        {"Q4_K", GGML_TYPE_Q4_K, sizeof(block_q4_K)},
        {"Q6_K", GGML_TYPE_Q6_K, sizeof(block_q6_K)},
    };
    for (int t = 0; t < 2; ++t) {
        state = 3000 + (uint64_t) types[t].id;  // a seed per type
        for (int b = 0; b < N_ROWS * ROW / QK; ++b) {
            block(x + b * QK, b);
        }
        for (int r = 0; r < N_ROWS; ++r) {
            if (types[t].id == GGML_TYPE_Q4_K) {
                quantize_row_q4_K_ref(x + r * ROW, (block_q4_K *) (q + r * (ROW / QK) * types[t].block_bytes), ROW);
            } else {
                quantize_row_q6_K_ref(x + r * ROW, (block_q6_K *) (q + r * (ROW / QK) * types[t].block_bytes), ROW);
            }
        }
        size_t out_bytes = N_ROWS * ROW / QK * types[t].block_bytes;
        if (write_file(argv[1], types[t].name, "quant_in.f32", x, sizeof x) ||
            write_file(argv[1], types[t].name, "quant_out.bin", q, out_bytes)) {
            return 1;
        }
        printf("%s %d %d %d\n", types[t].name, types[t].id, N_ROWS * ROW, N_ROWS);
    }
    return 0;
}
