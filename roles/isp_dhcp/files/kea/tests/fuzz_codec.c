/*
 * A bounded, deterministic fuzz loop over the MCP codec, built with ASan and UBSan by
 * tests/unit/test_codec_sanitizers.py. Every output buffer is malloc'd at exactly the size
 * the header says suffices, so any overrun is caught. Aborts on any inconsistency:
 * decode -> (filter) -> encode must give back the input when nothing was filtered.
 * usage: fuzz_codec [ITERATIONS]
 */
#include "../mcp_codec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static uint32_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)rng;
}

#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "check failed at line %d: %s\n", __LINE__, #cond); \
            abort();                                                         \
        }                                                                    \
    } while (0)

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    CHECK(p != NULL);
    return p;
}

/* A valid v4 option of random lists, some addresses multicast or loopback. */
static size_t valid_v4(uint8_t *buf, size_t cap)
{
    size_t pos = 0, lists = 1 + next() % 6;
    for (size_t l = 0; l < lists; l++) {
        size_t n = 1 + next() % 20;
        if (pos + 1 + 4 * n > cap)
            break;
        buf[pos++] = (uint8_t)(4 * n);
        for (size_t i = 0; i < 4 * n; i++)
            buf[pos++] = (uint8_t)next();
    }
    return pos;
}

static void one_v4(const uint8_t *in, size_t len)
{
    uint8_t *data = xmalloc(len);
    memcpy(data, in, len);
    size_t cap_a = len / 4, cap_l = len / 5, n_addrs = 0, off = 0;
    uint8_t *addrs = xmalloc(cap_a * 4);
    uint16_t *counts = xmalloc(cap_l * sizeof(uint16_t));
    int lists = mcp_v4_decode(data, len, addrs, cap_a, counts, cap_l, &n_addrs, &off);
    if (lists < 0) {
        CHECK(lists >= MCP_E_ARG);
        CHECK(off <= len);
        CHECK(lists != MCP_E_NOSPACE); /* the header's sizes always suffice */
    } else {
        CHECK(lists >= 1 && (size_t)lists <= cap_l && n_addrs <= cap_a);
        size_t sum = 0;
        for (int i = 0; i < lists; i++)
            sum += counts[i];
        CHECK(sum == n_addrs);
        /* Re-encode the raw decode: every list is in range, so only bad addresses fail. */
        uint8_t *out = xmalloc(len);
        int w = mcp_v4_encode(addrs, counts, (size_t)lists, out, len);
        if (w >= 0) {
            CHECK((size_t)w == len && memcmp(out, data, len) == 0);
            CHECK(mcp_v4_encode(addrs, counts, (size_t)lists, out, len - 1) == MCP_E_NOSPACE);
        } else {
            CHECK(w == MCP_E_ADDR);
        }
        size_t before = n_addrs;
        size_t kept = mcp_v4_client_filter(addrs, counts, (size_t)lists, &n_addrs);
        CHECK(kept <= (size_t)lists && n_addrs <= before);
        for (size_t i = 0; i < n_addrs; i++)
            CHECK(addrs[i * 4] != 127 && (addrs[i * 4] & 0xf0) != 0xe0);
        free(out);
    }
    free(addrs);
    free(counts);
    free(data);
}

static void one_v6(const uint8_t *in, size_t len)
{
    uint8_t *data = xmalloc(len);
    memcpy(data, in, len);
    size_t cap = len / 16, off = 0;
    uint8_t *addrs = xmalloc(cap * 16);
    int n = mcp_v6_decode(data, len, addrs, cap, &off);
    if (n < 0) {
        CHECK(n == MCP_E_SHORT || n == MCP_E_V6_LEN);
        CHECK(off <= len);
    } else {
        CHECK((size_t)n == cap);
        uint8_t *out = xmalloc(len);
        int w = mcp_v6_encode(addrs, (size_t)n, out, len);
        if (w >= 0)
            CHECK((size_t)w == len && memcmp(out, data, len) == 0 &&
                  mcp_v6_encode(addrs, (size_t)n, out, len - 1) == MCP_E_NOSPACE);
        else
            CHECK(w == MCP_E_ADDR);
        size_t kept = mcp_v6_client_filter(addrs, (size_t)n);
        CHECK(kept <= (size_t)n);
        free(out);
    }
    free(addrs);
    free(data);
}

int main(int argc, char **argv)
{
    long iterations = argc > 1 ? atol(argv[1]) : 200000;
    uint8_t buf[600];

    for (long it = 0; it < iterations; it++) {
        size_t len;
        if (it % 2) {
            len = next() % sizeof buf;
            for (size_t i = 0; i < len; i++)
                buf[i] = (uint8_t)next();
        } else {
            len = valid_v4(buf, sizeof buf);
            if (len && it % 4 == 0) { /* mutate: flip a byte or cut the tail */
                if (next() % 2)
                    buf[next() % len] ^= (uint8_t)(1 + next() % 255);
                else
                    len = next() % len;
            }
        }
        one_v4(buf, len);
        one_v6(buf, len);
    }
    printf("ok %ld\n", iterations);
    return 0;
}
