/* MCP option codec: see mcp_codec.h for the wire formats and the contract. */
#include "mcp_codec.h"

#include <string.h>

const char *mcp_strerror(int code)
{
    switch (code) {
    case MCP_OK: return "ok";
    case MCP_E_SHORT: return "option too short";
    case MCP_E_LIST_LEN: return "list-len is not a non-zero multiple of 4";
    case MCP_E_TRUNCATED: return "list runs past the end of the option";
    case MCP_E_V6_LEN: return "length is not a multiple of 16";
    case MCP_E_NOSPACE: return "output buffer too small";
    case MCP_E_LIST_TOO_LONG: return "more than 63 addresses in one list";
    case MCP_E_EMPTY_LIST: return "empty MCP list";
    case MCP_E_ADDR: return "multicast, loopback or unspecified address";
    case MCP_E_ARG: return "missing argument";
    default: return "unknown error";
    }
}

static void set_offset(size_t *err_offset, size_t at)
{
    if (err_offset)
        *err_offset = at;
}

int mcp_v4_decode(const uint8_t *data, size_t len, uint8_t *addrs, size_t addrs_cap,
                  uint16_t *list_counts, size_t lists_cap, size_t *n_addrs, size_t *err_offset)
{
    size_t pos = 0, lists = 0, total = 0;

    if (!data || !n_addrs || (!addrs && addrs_cap) || (!list_counts && lists_cap))
        return MCP_E_ARG;
    if (len < 5) {
        set_offset(err_offset, len);
        return MCP_E_SHORT;
    }
    while (pos < len) {
        size_t list_len = data[pos];
        size_t n = list_len / 4;

        if (list_len == 0 || list_len % 4 != 0) {
            set_offset(err_offset, pos);
            return MCP_E_LIST_LEN;
        }
        if (list_len > len - pos - 1) {
            set_offset(err_offset, pos);
            return MCP_E_TRUNCATED;
        }
        if (lists >= lists_cap || n > addrs_cap - total) {
            set_offset(err_offset, pos);
            return MCP_E_NOSPACE;
        }
        memcpy(addrs + total * 4, data + pos + 1, list_len);
        list_counts[lists++] = (uint16_t)n;
        total += n;
        pos += 1 + list_len;
    }
    *n_addrs = total;
    return (int)lists;
}

int mcp_v4_addr_check(const uint8_t addr[4])
{
    if (!addr)
        return MCP_E_ARG;
    if (addr[0] == 127 || (addr[0] & 0xf0) == 0xe0)
        return MCP_E_ADDR; /* loopback 127/8, multicast 224/4 */
    if (addr[0] == 0 && addr[1] == 0 && addr[2] == 0 && addr[3] == 0)
        return MCP_E_ADDR;
    return MCP_OK;
}

int mcp_v4_encode(const uint8_t *addrs, const uint16_t *list_counts, size_t n_lists,
                  uint8_t *out, size_t out_cap)
{
    size_t i, j, in = 0, pos = 0;

    if (!list_counts || !out)
        return MCP_E_ARG;
    if (n_lists == 0)
        return MCP_E_EMPTY_LIST;
    if (!addrs)
        return MCP_E_ARG;
    for (i = 0; i < n_lists; i++) {
        size_t n = list_counts[i];

        if (n == 0)
            return MCP_E_EMPTY_LIST;
        if (n > MCP_V4_LIST_MAX)
            return MCP_E_LIST_TOO_LONG;
        for (j = 0; j < n; j++)
            if (mcp_v4_addr_check(addrs + (in + j) * 4) != MCP_OK)
                return MCP_E_ADDR;
        if (out_cap - pos < 1 + n * 4)
            return MCP_E_NOSPACE;
        out[pos] = (uint8_t)(n * 4);
        memcpy(out + pos + 1, addrs + in * 4, n * 4);
        pos += 1 + n * 4;
        in += n;
    }
    if (pos > (size_t)0x7fffffff)
        return MCP_E_NOSPACE;
    return (int)pos;
}

/* The client rule drops loopback and multicast only (the draft's MUST); an unspecified
 * address is no use either, but discarding it is not the client's rule to apply. */
static int v4_client_drops(const uint8_t a[4])
{
    return a[0] == 127 || (a[0] & 0xf0) == 0xe0;
}

size_t mcp_v4_client_filter(uint8_t *addrs, uint16_t *list_counts, size_t n_lists, size_t *n_addrs)
{
    size_t i, j, in = 0, out = 0, lists_out = 0;

    if (!addrs || !list_counts || !n_addrs)
        return 0;
    for (i = 0; i < n_lists; i++) {
        size_t kept = 0;

        for (j = 0; j < list_counts[i]; j++, in++) {
            if (v4_client_drops(addrs + in * 4))
                continue;
            if (out != in)
                memmove(addrs + out * 4, addrs + in * 4, 4);
            out++;
            kept++;
        }
        if (kept)
            list_counts[lists_out++] = (uint16_t)kept;
    }
    *n_addrs = out;
    return lists_out;
}

int mcp_v6_decode(const uint8_t *data, size_t len, uint8_t *addrs, size_t addrs_cap, size_t *err_offset)
{
    size_t n;

    if (!data || (!addrs && addrs_cap))
        return MCP_E_ARG;
    if (len == 0) {
        set_offset(err_offset, 0);
        return MCP_E_SHORT;
    }
    if (len % 16 != 0) {
        set_offset(err_offset, len - len % 16);
        return MCP_E_V6_LEN;
    }
    n = len / 16;
    if (n > addrs_cap) {
        set_offset(err_offset, addrs_cap * 16);
        return MCP_E_NOSPACE;
    }
    if (n > (size_t)0x7fffffff)
        return MCP_E_NOSPACE;
    memcpy(addrs, data, len);
    return (int)n;
}

static int v6_is_v4_mapped(const uint8_t a[16])
{
    static const uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return memcmp(a, prefix, 12) == 0;
}

static int v6_client_drops(const uint8_t a[16])
{
    static const uint8_t loopback[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};

    if (a[0] == 0xff || memcmp(a, loopback, 16) == 0)
        return 1;
    return v6_is_v4_mapped(a) && v4_client_drops(a + 12);
}

int mcp_v6_addr_check(const uint8_t addr[16])
{
    static const uint8_t zero[16] = {0};

    if (!addr)
        return MCP_E_ARG;
    if (v6_client_drops(addr) || memcmp(addr, zero, 16) == 0)
        return MCP_E_ADDR;
    if (v6_is_v4_mapped(addr) && mcp_v4_addr_check(addr + 12) != MCP_OK)
        return MCP_E_ADDR;
    return MCP_OK;
}

int mcp_v6_encode(const uint8_t *addrs, size_t n, uint8_t *out, size_t out_cap)
{
    size_t i;

    if (!out || (!addrs && n))
        return MCP_E_ARG;
    if (n == 0)
        return MCP_E_EMPTY_LIST;
    for (i = 0; i < n; i++)
        if (mcp_v6_addr_check(addrs + i * 16) != MCP_OK)
            return MCP_E_ADDR;
    if (n > out_cap / 16)
        return MCP_E_NOSPACE;
    if (n * 16 > (size_t)0x7fffffff)
        return MCP_E_NOSPACE;
    memcpy(out, addrs, n * 16);
    return (int)(n * 16);
}

size_t mcp_v6_client_filter(uint8_t *addrs, size_t n)
{
    size_t in, out = 0;

    if (!addrs)
        return 0;
    for (in = 0; in < n; in++) {
        if (v6_client_drops(addrs + in * 16))
            continue;
        if (out != in)
            memmove(addrs + out * 16, addrs + in * 16, 16);
        out++;
    }
    return out;
}
