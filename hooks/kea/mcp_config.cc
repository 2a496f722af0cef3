// Parsing and checking of the hook's parameters (see mcp_config.h).
#include "mcp_config.h"

#include "mcp_codec.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <sstream>

using isc::data::ConstElementPtr;
using isc::data::Element;

namespace mptcp_cpe {
namespace {

const char* fam_name(int family) { return family == 4 ? "IPv4" : "IPv6"; }

void expect(const ConstElementPtr& e, Element::types type, const std::string& where, const std::string& what) {
    if (!e || e->getType() != type) {
        throw ConfigError(where + ": must be " + what + " (got " + (e ? e->str() : std::string("nothing")) + ")");
    }
}

void only_keys(const ConstElementPtr& map, const std::set<std::string>& allowed, const std::string& where) {
    for (const auto& kv : map->mapValue()) {
        if (!allowed.count(kv.first)) {
            std::string list;
            for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
            throw ConfigError(where + (where.empty() ? "" : ": ") + "unknown parameter \"" + kv.first +
                              "\" (allowed: " + list + ")");
        }
    }
}

int64_t parse_int(const ConstElementPtr& e, const std::string& where, int64_t lo, int64_t hi) {
    if (!e || e->getType() != Element::integer || e->intValue() < lo || e->intValue() > hi) {
        throw ConfigError(where + ": must be an integer from " + std::to_string(lo) + " to " + std::to_string(hi) +
                          " (got " + (e ? e->str() : std::string("nothing")) + ")");
    }
    return e->intValue();
}

// The codec decides whether an address may be an MCP's; this only says why not, in a word.
std::string fault(const uint8_t* a, int family) {
    if (family == 6) {
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        static const uint8_t zero[15] = {0};
        if (std::memcmp(a, mapped, 12) == 0) return "an IPv4-mapped " + fault(a + 12, 4) + " address";
        if (a[0] == 0xff) return "multicast";
        if (std::memcmp(a, zero, 15) == 0 && a[15] <= 1) return a[15] ? "loopback" : "unspecified";
    } else {
        if (a[0] >= 224 && a[0] <= 239) return "multicast";
        if (a[0] == 127) return "loopback";
        if (!a[0] && !a[1] && !a[2] && !a[3]) return "unspecified";
    }
    return "not usable as an MCP address";
}

int addr_check(const uint8_t* a, int family) {
    return family == 4 ? mcp_v4_addr_check(a) : mcp_v6_addr_check(a);
}

std::string show(const std::vector<uint8_t>& a) {
    char buf[INET6_ADDRSTRLEN] = "?";
    inet_ntop(a.size() == 4 ? AF_INET : AF_INET6, a.data(), buf, sizeof(buf));
    return buf;
}

bool looks_like_fqdn(const std::string& s) {
    return !s.empty() && s.size() <= 253 &&
           s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-") == std::string::npos &&
           s.find_first_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") != std::string::npos;
}

// All addresses of one name in the family asked, in the resolver's order, once each.
std::vector<std::vector<uint8_t> > resolve(const std::string& name, int family, const std::string& where) {
    struct addrinfo hints;
    std::memset(&hints, 0, sizeof(hints));
    hints.ai_family = family == 4 ? AF_INET : AF_INET6;
    hints.ai_socktype = SOCK_DGRAM;
    struct addrinfo* res = nullptr;
    int rc = getaddrinfo(name.c_str(), nullptr, &hints, &res);
    if (rc != 0) {
        throw ConfigError(where + ": " + name + " does not resolve to an " + fam_name(family) + " address (" +
                          gai_strerror(rc) + ")");
    }
    std::vector<std::vector<uint8_t> > out;
    for (struct addrinfo* ai = res; ai; ai = ai->ai_next) {
        std::vector<uint8_t> a;
        if (family == 4 && ai->ai_family == AF_INET) {
            const uint8_t* p = reinterpret_cast<const uint8_t*>(&reinterpret_cast<sockaddr_in*>(ai->ai_addr)->sin_addr);
            a.assign(p, p + 4);
        } else if (family == 6 && ai->ai_family == AF_INET6) {
            const uint8_t* p = reinterpret_cast<const uint8_t*>(&reinterpret_cast<sockaddr_in6*>(ai->ai_addr)->sin6_addr);
            a.assign(p, p + 16);
        } else {
            continue;
        }
        if (std::find(out.begin(), out.end(), a) == out.end()) out.push_back(a);
    }
    freeaddrinfo(res);
    if (out.empty()) throw ConfigError(where + ": " + name + " has no " + fam_name(family) + " address");
    return out;
}

// One MCP: a non-empty list of addresses, or a list holding exactly one FQDN, which becomes
// one MCP with all its addresses (draft Appendix A: never split over several lists).
std::vector<std::vector<uint8_t> > parse_mcp(const ConstElementPtr& e, int family, const std::string& where) {
    expect(e, Element::list, where, "a non-empty list of addresses, or [FQDN]");
    const auto& items = e->listValue();
    if (items.empty()) throw ConfigError(where + ": an MCP needs at least one address");
    int af = family == 4 ? AF_INET : AF_INET6;
    size_t len = family == 4 ? 4 : 16;
    if (items.size() == 1 && items[0]->getType() == Element::string) {
        const std::string& name = items[0]->stringValue();
        uint8_t buf[16];
        if (inet_pton(af, name.c_str(), buf) != 1 && looks_like_fqdn(name)) {
            std::string at = where + "[0]";
            auto addrs = resolve(name, family, at);
            for (const auto& a : addrs) {
                if (addr_check(a.data(), family) != MCP_OK) {
                    throw ConfigError(at + ": " + name + " resolves to " + show(a) + ", which is " +
                                      fault(a.data(), family));
                }
            }
            if (family == 4 && addrs.size() > MCP_V4_LIST_MAX) {
                throw ConfigError(at + ": " + name + " resolves to " + std::to_string(addrs.size()) +
                                  " addresses, at most 63 fit one DHCPv4 list");
            }
            return addrs;
        }
    }
    if (family == 4 && items.size() > MCP_V4_LIST_MAX) {
        throw ConfigError(where + ": " + std::to_string(items.size()) + " addresses, at most 63 fit one DHCPv4 list");
    }
    std::vector<std::vector<uint8_t> > out;
    for (size_t i = 0; i < items.size(); ++i) {
        std::string at = where + "[" + std::to_string(i) + "]";
        expect(items[i], Element::string, at, std::string("an ") + fam_name(family) + " address");
        const std::string& s = items[i]->stringValue();
        std::vector<uint8_t> a(len);
        if (inet_pton(af, s.c_str(), a.data()) != 1) {
            if (looks_like_fqdn(s)) throw ConfigError(at + ": " + s + ": an FQDN must be the only entry of its MCP");
            throw ConfigError(at + ": " + s + " is not an " + fam_name(family) + " address");
        }
        if (addr_check(a.data(), family) != MCP_OK) throw ConfigError(at + ": " + s + " is " + fault(a.data(), family));
        out.push_back(a);
    }
    return out;
}

// The "mcps" of one entry, encoded with the shared codec.
Payloads parse_mcps(const ConstElementPtr& e, int family, const std::string& where) {
    expect(e, Element::list, where, "a non-empty list of MCPs");
    const auto& items = e->listValue();
    if (items.empty()) throw ConfigError(where + ": must hold at least one MCP");
    std::vector<std::vector<std::vector<uint8_t> > > mcps;
    for (size_t i = 0; i < items.size(); ++i) {
        mcps.push_back(parse_mcp(items[i], family, where + "[" + std::to_string(i) + "]"));
    }
    Payloads out;
    if (family == 4) {
        std::vector<uint8_t> addrs;
        std::vector<uint16_t> counts;
        for (const auto& m : mcps) {
            for (const auto& a : m) addrs.insert(addrs.end(), a.begin(), a.end());
            counts.push_back(static_cast<uint16_t>(m.size()));
        }
        std::vector<uint8_t> data(addrs.size() + counts.size());  // one list-len octet per list
        int n = mcp_v4_encode(addrs.data(), counts.data(), counts.size(), data.data(), data.size());
        if (n < 0) throw ConfigError(where + ": " + mcp_strerror(n));
        data.resize(static_cast<size_t>(n));
        out.push_back(data);
    } else {
        for (size_t i = 0; i < mcps.size(); ++i) {
            std::vector<uint8_t> addrs;
            for (const auto& a : mcps[i]) addrs.insert(addrs.end(), a.begin(), a.end());
            std::vector<uint8_t> data(addrs.size());
            int n = mcp_v6_encode(addrs.data(), mcps[i].size(), data.data(), data.size());
            if (n < 0) throw ConfigError(where + "[" + std::to_string(i) + "]: " + mcp_strerror(n));
            data.resize(static_cast<size_t>(n));
            out.push_back(data);
        }
    }
    return out;
}

Prefix parse_prefix(const std::string& text, int family, const std::string& where) {
    Prefix p;
    size_t slash = text.find('/');
    unsigned max = family == 4 ? 32 : 128;
    p.net.resize(family == 4 ? 4 : 16);
    char* end = nullptr;
    unsigned long bits = 999;
    if (slash != std::string::npos && slash + 1 < text.size() && std::isdigit(static_cast<unsigned char>(text[slash + 1]))) {
        bits = std::strtoul(text.c_str() + slash + 1, &end, 10);
    }
    if (bits > max || !end || *end ||
        inet_pton(family == 4 ? AF_INET : AF_INET6, text.substr(0, slash).c_str(), p.net.data()) != 1) {
        throw ConfigError(where + ": " + text + " is not an " + fam_name(family) + " prefix");
    }
    p.length = static_cast<unsigned>(bits);
    return p;
}

const uint32_t SUBNET_ID_MAX = 4294967294u;  // Kea's largest subnet id

FamilyConfig parse_family(const ConstElementPtr& e, int family) {
    std::string fam = family == 4 ? "v4" : "v6";
    FamilyConfig out;
    expect(e, Element::map, fam, "a map with mcps, subnets and/or classes");
    only_keys(e, {"mcps", "subnets", "classes"}, fam);
    if (auto m = e->get("mcps")) {
        out.default_mcps = parse_mcps(m, family, fam + ".mcps");
        out.has_default = true;
    }
    if (auto subs = e->get("subnets")) {
        expect(subs, Element::list, fam + ".subnets", "a list of {id or prefix, mcps}");
        const auto& items = subs->listValue();
        for (size_t i = 0; i < items.size(); ++i) {
            SubnetMcps sub;
            sub.where = fam + ".subnets[" + std::to_string(i) + "]";
            expect(items[i], Element::map, sub.where, "a map with id (or prefix) and mcps");
            only_keys(items[i], {"id", "prefix", "mcps"}, sub.where);
            auto id = items[i]->get("id");
            auto prefix = items[i]->get("prefix");
            if (!id == !prefix) throw ConfigError(sub.where + ": needs exactly one of id (a Kea subnet id) and prefix");
            if (id) {
                sub.id = static_cast<uint32_t>(parse_int(id, sub.where + ".id", 1, SUBNET_ID_MAX));
                for (const auto& other : out.subnets) {
                    if (other.id == sub.id) {
                        throw ConfigError(sub.where + ".id: " + std::to_string(sub.id) + " is also " + other.where + ".id");
                    }
                }
            } else {
                expect(prefix, Element::string, sub.where + ".prefix", "a prefix like 192.0.2.0/24");
                sub.prefix = parse_prefix(prefix->stringValue(), family, sub.where + ".prefix");
                for (const auto& other : out.subnets) {
                    if (!other.id && other.prefix == sub.prefix) {
                        throw ConfigError(sub.where + ".prefix: " + prefix->stringValue() + " is also " + other.where +
                                          ".prefix");
                    }
                }
            }
            sub.mcps = parse_mcps(items[i]->get("mcps"), family, sub.where + ".mcps");
            out.subnets.push_back(sub);
        }
    }
    if (auto cls = e->get("classes")) {
        expect(cls, Element::list, fam + ".classes", "a list of {name, mcps}");
        const auto& items = cls->listValue();
        std::map<std::string, std::string> seen;
        for (size_t i = 0; i < items.size(); ++i) {
            std::string where = fam + ".classes[" + std::to_string(i) + "]";
            expect(items[i], Element::map, where, "a map with name and mcps");
            only_keys(items[i], {"name", "mcps"}, where);
            auto name = items[i]->get("name");
            expect(name, Element::string, where + ".name", "a client class name");
            const std::string& n = name->stringValue();
            if (n.empty()) throw ConfigError(where + ".name: must not be empty");
            if (seen.count(n)) throw ConfigError(where + ".name: \"" + n + "\" is also " + seen[n] + ".name");
            seen[n] = where;
            out.classes.push_back(std::make_pair(n, parse_mcps(items[i]->get("mcps"), family, where + " (" + n + ").mcps")));
        }
    }
    return out;
}

}  // namespace

Config parse_config(const ConstElementPtr& params) {
    Config config;
    if (!params) return config;
    expect(params, Element::map, "parameters", "a map");
    only_keys(params, {"v4-option-code", "v6-option-code", "v4", "v6"}, "");
    if (auto c = params->get("v4-option-code")) config.v4_code = static_cast<uint16_t>(parse_int(c, "v4-option-code", 1, 254));
    if (auto c = params->get("v6-option-code")) config.v6_code = static_cast<uint16_t>(parse_int(c, "v6-option-code", 1, 65535));
    if (auto v = params->get("v4")) config.v4 = parse_family(v, 4);
    if (auto v = params->get("v6")) config.v6 = parse_family(v, 6);
    return config;
}

std::vector<ServerSubnet> server_subnets(const ConstElementPtr& server, int family) {
    std::vector<ServerSubnet> out;
    if (!server || server->getType() != Element::map) return out;
    const std::string key = family == 4 ? "subnet4" : "subnet6";
    auto take = [&](const ConstElementPtr& list) {
        if (!list || list->getType() != Element::list) return;
        for (const auto& s : list->listValue()) {
            if (!s || s->getType() != Element::map) continue;
            auto id = s->get("id");
            auto prefix = s->get("subnet");
            // Kea numbers subnets without an id itself; the hook can only name explicit ones.
            if (!id || id->getType() != Element::integer || id->intValue() <= 0 || id->intValue() > SUBNET_ID_MAX) continue;
            if (!prefix || prefix->getType() != Element::string) continue;
            try {
                out.push_back(ServerSubnet{static_cast<uint32_t>(id->intValue()),
                                           parse_prefix(prefix->stringValue(), family, key)});
            } catch (const ConfigError&) {
                // Kea itself refuses a bad "subnet"; nothing for the hook to add.
            }
        }
    };
    take(server->get(key));
    if (auto nets = server->get("shared-networks")) {
        if (nets->getType() == Element::list) {
            for (const auto& net : nets->listValue()) {
                if (net && net->getType() == Element::map) take(net->get(key));
            }
        }
    }
    return out;
}

void check_subnet_ids(const FamilyConfig& fam, const std::vector<ServerSubnet>& subnets, int family) {
    for (const auto& sub : fam.subnets) {
        if (!sub.id) continue;
        bool found = std::any_of(subnets.begin(), subnets.end(), [&](const ServerSubnet& s) { return s.id == sub.id; });
        if (!found) {
            throw ConfigError(sub.where + ".id: no " + (family == 4 ? "subnet4" : "subnet6") + " has the id " +
                              std::to_string(sub.id) + " (an explicit \"id\" in the server's configuration)");
        }
    }
}

bool Prefix::contains(const uint8_t* addr, size_t len) const {
    if (len != net.size()) return false;
    unsigned full = length / 8, rest = length % 8;
    if (std::memcmp(addr, net.data(), full) != 0) return false;
    if (rest == 0) return true;
    uint8_t mask = static_cast<uint8_t>(0xff << (8 - rest));
    return (addr[full] & mask) == (net[full] & mask);
}

bool Prefix::overlaps(const Prefix& other) const {
    if (net.size() != other.net.size()) return false;
    return length <= other.length ? contains(other.net.data(), other.net.size())
                                  : other.contains(net.data(), net.size());
}

std::string describe(const Config& c) {
    std::ostringstream s;
    s << "v4 code " << c.v4_code << ": " << (c.v4.has_default ? "default, " : "") << c.v4.subnets.size()
      << " subnet(s), " << c.v4.classes.size() << " class(es); v6 code " << c.v6_code << ": "
      << (c.v6.has_default ? "default, " : "") << c.v6.subnets.size() << " subnet(s), " << c.v6.classes.size()
      << " class(es)";
    return s.str();
}

}  // namespace mptcp_cpe
