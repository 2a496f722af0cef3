/*
 * MCP option codec (draft-boucadair-mptcp-dhc): OPTION_V4_MPTCP and OPTION_V6_MPTCP data,
 * without the option code and length octets. C99, no allocation, no Kea dependency: the
 * same file is compiled into the Kea hook and, through cffi, into mptcp_cpe.options.
 *
 * DHCPv4 data:  ( list-len(8) | n x IPv4 )+   list-len in octets, a non-zero multiple of 4;
 *               the data is at least 5 octets. Each list is one MCP. Over 255 octets the
 *               option is split on the wire (RFC 3396): callers pass the joined data.
 * DHCPv6 data:  n x IPv6, n >= 1. One option instance per MCP; IPv4-mapped addresses
 *               (::ffff:a.b.c.d) name an IPv4 MCP.
 *
 * Addresses are passed as packed network-order octets: 4 per IPv4 address, 16 per IPv6.
 * Every function bounds each read and write by the lengths it is given; none keeps state,
 * so all are safe to call from several threads at once.
 */
#ifndef MPTCP_CPE_MCP_CODEC_H
#define MPTCP_CPE_MCP_CODEC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Results: 0 or a count on success, one of these (negative) on error. */
#define MCP_OK 0
#define MCP_E_SHORT (-1)         /* v4 data under 5 octets; v6 data empty */
#define MCP_E_LIST_LEN (-2)      /* v4: a list-len of 0 or not a multiple of 4 */
#define MCP_E_TRUNCATED (-3)     /* v4: a list runs past the end of the data */
#define MCP_E_V6_LEN (-4)        /* v6: length not a multiple of 16 */
#define MCP_E_NOSPACE (-5)       /* an output buffer is too small */
#define MCP_E_LIST_TOO_LONG (-6) /* v4 encode: over 63 addresses in one list (list-len is one octet) */
#define MCP_E_EMPTY_LIST (-7)    /* encode: a list with no address, or no list at all */
#define MCP_E_ADDR (-8)          /* encode/check: a multicast, loopback or unspecified address */
#define MCP_E_ARG (-9)           /* a NULL pointer where data was required */

/* A short English description of an MCP_E_* code (static storage). */
const char *mcp_strerror(int code);

/* The most addresses in one DHCPv4 list: list-len is one octet, a multiple of 4. */
#define MCP_V4_LIST_MAX 63

/*
 * Decode DHCPv4 data into addresses and per-list counts.
 *   addrs:        receives n_addrs * 4 octets; room for addrs_cap addresses (len / 4 always suffices)
 *   list_counts:  receives the number of addresses of each list; room for lists_cap (len / 5 suffices)
 *   n_addrs:      set to the total number of addresses
 *   err_offset:   on error, the octet offset in data where the fault lies (may be NULL)
 * Returns the number of lists (>= 1), or MCP_E_SHORT, MCP_E_LIST_LEN, MCP_E_TRUNCATED,
 * MCP_E_NOSPACE, MCP_E_ARG. No client rule is applied: see mcp_v4_client_filter.
 */
int mcp_v4_decode(const uint8_t *data, size_t len, uint8_t *addrs, size_t addrs_cap,
                  uint16_t *list_counts, size_t lists_cap, size_t *n_addrs, size_t *err_offset);

/*
 * Encode lists into DHCPv4 data. addrs holds the addresses of all lists one after the other
 * (sum of list_counts addresses). Returns the number of octets written to out, or
 * MCP_E_EMPTY_LIST, MCP_E_LIST_TOO_LONG, MCP_E_ADDR (multicast, loopback, 0.0.0.0),
 * MCP_E_NOSPACE, MCP_E_ARG. Nothing is split: a caller with over 255 octets splits
 * (Kea 2.2 does so on send).
 */
int mcp_v4_encode(const uint8_t *addrs, const uint16_t *list_counts, size_t n_lists,
                  uint8_t *out, size_t out_cap);

/*
 * The client rule, in place: drop multicast and loopback addresses, then lists left empty.
 * Updates *n_addrs and returns the new number of lists (0 when nothing is left).
 */
size_t mcp_v4_client_filter(uint8_t *addrs, uint16_t *list_counts, size_t n_lists, size_t *n_addrs);

/*
 * Decode one DHCPv6 option instance (one MCP). addrs receives n * 16 octets, room for
 * addrs_cap addresses (len / 16 suffices). Returns the number of addresses (>= 1), or
 * MCP_E_SHORT, MCP_E_V6_LEN, MCP_E_NOSPACE, MCP_E_ARG; *err_offset as above.
 */
int mcp_v6_decode(const uint8_t *data, size_t len, uint8_t *addrs, size_t addrs_cap, size_t *err_offset);

/* Encode one DHCPv6 instance from n addresses. Returns octets written or an MCP_E_* code. */
int mcp_v6_encode(const uint8_t *addrs, size_t n, uint8_t *out, size_t out_cap);

/* The client rule for one DHCPv6 instance, in place (IPv4-mapped multicast/loopback too).
 * Returns the number of addresses left (0: drop the instance). */
size_t mcp_v6_client_filter(uint8_t *addrs, size_t n);

/* Whether an address may be an MCP's: MCP_OK, or MCP_E_ADDR for multicast, loopback and
 * unspecified (for IPv6, also IPv4-mapped ones of those). */
int mcp_v4_addr_check(const uint8_t addr[4]);
int mcp_v6_addr_check(const uint8_t addr[16]);

#ifdef __cplusplus
}
#endif

#endif /* MPTCP_CPE_MCP_CODEC_H */
