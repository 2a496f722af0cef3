// Parameters of the mptcp-cpe Kea hook: parsed and checked once, pre-encoded for the
// per-packet path. One parser for load() and for kea-mptcp-check.
#ifndef MPTCP_CPE_MCP_CONFIG_H
#define MPTCP_CPE_MCP_CONFIG_H

#include <cc/data.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace mptcp_cpe {

// What one client gets: DHCPv4, one option's data (every MCP a list in it); DHCPv6,
// one option instance per MCP.
typedef std::vector<std::vector<uint8_t> > Payloads;

// A subnet's prefix, matched against the address a client is being given. (Debian 12's
// kea-dev cannot compile dhcpsrv/subnet.h, so Kea's subnet objects are out of reach.)
struct SubnetMcps {
    std::vector<uint8_t> prefix;  // 4 or 16 octets
    unsigned length = 0;
    Payloads mcps;
    bool contains(const uint8_t* addr, size_t len) const;
};

struct FamilyConfig {
    bool has_default = false;
    Payloads default_mcps;
    std::vector<SubnetMcps> subnets;
    std::vector<std::pair<std::string, Payloads> > classes;  // first match wins
    bool empty() const { return !has_default && subnets.empty() && classes.empty(); }
};

struct Config {
    uint16_t v4_code = 224;
    uint16_t v6_code = 65000;
    FamilyConfig v4;
    FamilyConfig v6;
};

// A parameter that cannot be used; what() names the entry, e.g.
// "v4.classes[0] (REGION_WEST).mcps[1][0]: 224.0.0.5 is multicast, loopback or unspecified".
class ConfigError : public std::runtime_error {
public:
    explicit ConfigError(const std::string& what) : std::runtime_error(what) {}
};

// Parse the hook's "parameters" map (may be null: nothing configured). Resolves FQDNs.
Config parse_config(const isc::data::ConstElementPtr& params);

// Short human description of what is configured, for the load log line.
std::string describe(const Config& config);

}  // namespace mptcp_cpe

#endif
