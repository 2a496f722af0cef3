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

// An address prefix: 4 or 16 octets and a length.
struct Prefix {
    std::vector<uint8_t> net;
    unsigned length = 0;
    bool contains(const uint8_t* addr, size_t len) const;
    bool overlaps(const Prefix& other) const;
    bool operator==(const Prefix& o) const { return length == o.length && net == o.net; }
};

// A "subnets" entry: a Kea subnet id ("id"), or an address prefix ("prefix").
// Debian 12's kea-dev cannot compile dhcpsrv/subnet.h (dhcpsrv/cfg_globals.h is not
// shipped), so the hook never sees a Subnet object: an id is tied to its prefix from the
// server's own configuration (server_subnets), and a client is matched by the address it
// is being given, which always lies inside the subnet Kea gives it from.
struct SubnetMcps {
    uint32_t id = 0;  // 0: given by prefix
    Prefix prefix;    // "prefix" entries only
    std::string where;  // "v4.subnets[0]", for messages
    Payloads mcps;
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
// "v4.classes[0] (REGION_WEST).mcps[1][0]: 224.0.0.5 is multicast".
class ConfigError : public std::runtime_error {
public:
    explicit ConfigError(const std::string& what) : std::runtime_error(what) {}
};

// Parse the hook's "parameters" map (may be null: nothing configured). Resolves FQDNs.
Config parse_config(const isc::data::ConstElementPtr& params);

// A subnet of the server's own configuration that carries an explicit id.
struct ServerSubnet {
    uint32_t id;
    Prefix prefix;
};

// The subnets with an explicit id of a kea-dhcp4 / kea-dhcp6 configuration map (the value
// of "Dhcp4" / "Dhcp6"): "subnet4"/"subnet6", top level and inside "shared-networks".
std::vector<ServerSubnet> server_subnets(const isc::data::ConstElementPtr& server, int family);

// Every "id" entry of fam must name one of the server's subnets; throws ConfigError naming
// the entry otherwise.
void check_subnet_ids(const FamilyConfig& fam, const std::vector<ServerSubnet>& subnets, int family);

// Short human description of what is configured, for the load log line.
std::string describe(const Config& config);

}  // namespace mptcp_cpe

#endif
