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

// A subnet of the server's own configuration (the value of "Dhcp4" / "Dhcp6").
struct ServerSubnet {
    uint32_t id;    // 0: none given (Kea numbers it; the hook cannot name it)
    Prefix prefix;
    std::string where;  // "subnet4[0]", "shared-networks[1].subnet4[0]", for messages
    std::vector<std::pair<uint32_t, uint32_t> > pools4;  // DHCPv4 pools, first and last, host order
    // DHCPv4 reserved addresses in it (its own reservations and global ones), host order,
    // with where they are written ("subnet4[0].reservations[1]").
    std::vector<std::pair<uint32_t, std::string> > reserved4;
};

// The subnets of a kea-dhcp4 / kea-dhcp6 configuration map: "subnet4"/"subnet6", top level
// and inside "shared-networks". Entries Kea itself would refuse are left out.
std::vector<ServerSubnet> server_subnets(const isc::data::ConstElementPtr& server, int family);

// Every "id" entry of fam must name one of the server's subnets (by an explicit id); throws
// ConfigError naming the entry otherwise.
void check_subnet_ids(const FamilyConfig& fam, const std::vector<ServerSubnet>& subnets, int family);

// The hook owns its option code: option-data for it anywhere in the server's own
// configuration (global, shared network, subnet, pool, class, reservation) would compete
// with the hook's MCPs. Throws ConfigError naming where.
void check_option_data(const isc::data::ConstElementPtr& server, uint16_t code, int family);

// How "subnets" entries pick a client's MCPs by the address it is given: the most specific
// of the hook's "id" subnets and the server subnets overlapping them that holds the address
// (null mcps: a server subnet without an entry of its own), then the first "prefix" entry
// holding it. Built once per configuration, most specific first.
struct Route {
    Prefix prefix;
    const Payloads* mcps;
};
std::vector<Route> build_routes(const FamilyConfig& fam, const std::vector<ServerSubnet>& server);

// The MCPs of an address by fam's subnet entries, else fam's default (null: none). Classes
// are the caller's (they need the packet).
const Payloads* select_by_address(const FamilyConfig& fam, const std::vector<Route>& routes, const uint8_t* addr,
                                  size_t addr_len);

// Whether Kea itself sends the DHCPv4 option (no per-packet callout): only client classes
// need the callout. Kea ranks subnet options above class options and takes a client's
// classes in its own order, while the hook's rule is the client's first class in the hook's
// list, then its subnet, then the default.
inline bool v4_served_by_kea(const Config& c) { return c.v4.classes.empty(); }

// DHCPv4 without client classes: where Kea itself can carry the MCPs, so that no packet
// needs the hook. Each server subnet whose addresses all get the same MCPs by
// select_by_address gets them (unless they are the default, which goes global); a subnet
// whose addresses differ gets them per pool instead. Throws ConfigError naming the entry
// and the pool when a pool's own addresses would get different MCPs, or naming a
// reservation outside every pool of such a subnet whose address should get other MCPs than
// the default (only the default reaches it there).
struct Placement {
    size_t subnet;  // index into the server subnets
    int pool;       // index into its pools4; -1: the subnet itself
    const Payloads* mcps;
};
std::vector<Placement> plan_v4(const FamilyConfig& fam, const std::vector<Route>& routes,
                               const std::vector<ServerSubnet>& server);

// Everything dhcpN_srv_configured checks and works out from the server's configuration map
// (the value of "Dhcp4" / "Dhcp6"), in one place for the hook and kea-mptcp-check: subnet
// ids, no option-data for the hook's code, the routes, and for DHCPv4 served by Kea the
// placements. Throws ConfigError naming the entry. Empty when the family has no MCPs.
struct ServerBinding {
    std::vector<ServerSubnet> subnets;
    std::vector<Route> routes;          // point into the Config's payloads
    std::vector<Placement> placements;  // indices into subnets
};
ServerBinding bind_server(const Config& config, const isc::data::ConstElementPtr& server, int family);

// Short human description of what is configured, for the load log line.
std::string describe(const Config& config);

}  // namespace mptcp_cpe

#endif
