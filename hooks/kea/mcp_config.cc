// Parsing and checking of the hook's parameters (see mcp_config.h).
#include "mcp_config.h"

#include "mcp_codec.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <set>
#include <sstream>

using isc::data::ConstElementPtr;
using isc::data::Element;

namespace mptcp_cpe {
namespace {

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

bool looks_like_fqdn(const std::string& s) {
    return !s.empty() && s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-") ==
                             std::string::npos &&
           s.find_first_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") != std::string::npos;
}

// All addresses of one name, in the family asked, in the resolver's order, once each.
std::vector<std::vector<uint8_t> > resolve(const std::string& name, int family, const std::string& where) {
    struct addrinfo hints;
    std::memset(&hints, 0, sizeof(hints));
    hints.ai_family = family;
    hints.ai_socktype = SOCK_DGRAM;
    struct addrinfo* res = nullptr;
    int rc = getaddrinfo(name.c_str(), nullptr, &hints, &res);
    if (rc != 0) {
        throw ConfigError(where + ": " + name + " does not resolve to an IPv" + (family == AF_INET ? "4" : "6") +
                          " address (" + gai_strerror(rc) + ")");
    }
    std::vector<std::vector<uint8_t> > out;
    for (struct addrinfo* ai = res; ai; ai = ai->ai_next) {
        std::vector<uint8_t> a;
        if (ai->ai_family == AF_INET) {
            const uint8_t* p = reinterpret_cast<const uint8_t*>(&reinterpret_cast<sockaddr_in*>(ai->ai_addr)->sin_addr);
            a.assign(p, p + 4);
        } else if (ai->ai_family == AF_INET6) {
            const uint8_t* p = reinterpret_cast<const uint8_t*>(&reinterpret_cast<sockaddr_in6*>(ai->ai_addr)->sin6_addr);
            a.assign(p, p + 16);
        } else {
            continue;
        }
        if (std::find(out.begin(), out.end(), a) == out.end()) out.push_back(a);
    }
    freeaddrinfo(res);
    if (out.empty()) throw ConfigError(where + ": " + name + " has no address");
    return out;
}

// One MCP: a non-empty list of addresses, or a list holding exactly one FQDN.
std::vector<std::vector<uint8_t> > parse_mcp(const ConstElementPtr& e, int family, const std::string& where) {
    expect(e, Element::list, where, "a non-empty list of addresses, or [FQDN]");
    const auto& items = e->listValue();
    if (items.empty()) throw ConfigError(where + ": an MCP needs at least one address");
    int af = family == 4 ? AF_INET : AF_INET6;
    size_t len = family == 4 ? 4 : 16;
    if (items.size() == 1 && items[0]->getType() == Element::string) {
        std::string s = items[0]->stringValue();
        uint8_t buf[16];
        if (inet_pton(af, s.c_str(), buf) != 1 && looks_like_fqdn(s)) {
            auto addrs = resolve(s, af, where + "[0]");
            for (const auto& a : addrs) {
                int ok = family == 4 ? mcp_v4_addr_check(a.data()) : mcp_v6_addr_check(a.data());
                if (ok != MCP_OK) throw ConfigError(where + "[0]: " + s + " resolves to a multicast, loopback or unspecified address");
            }
            if (family == 4 && addrs.size() > MCP_V4_LIST_MAX) {
                throw ConfigError(where + "[0]: " + s + " resolves to more than 63 addresses");
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
        expect(items[i], Element::string, at, std::string("an IPv") + (family == 4 ? "4" : "6") + " address");
        std::string s = items[i]->stringValue();
        std::vector<uint8_t> a(len);
        if (inet_pton(af, s.c_str(), a.data()) != 1) {
            throw ConfigError(at + ": " + s + " is not an IPv" + (family == 4 ? "4" : "6") + " address");
        }
        int ok = family == 4 ? mcp_v4_addr_check(a.data()) : mcp_v6_addr_check(a.data());
        if (ok != MCP_OK) throw ConfigError(at + ": " + s + " is multicast, loopback or unspecified");
        out.push_back(a);
    }
    return out;
}

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
        std::vector<uint8_t> data(addrs.size() + counts.size());
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
            out.push_back(data);
        }
    }
    return out;
}

int64_t parse_int(const ConstElementPtr& e, const std::string& where, int64_t lo, int64_t hi) {
    if (!e || e->getType() != Element::integer || e->intValue() < lo || e->intValue() > hi) {
        throw ConfigError(where + ": must be an integer from " + std::to_string(lo) + " to " + std::to_string(hi) +
                          " (got " + (e ? e->str() : std::string("nothing")) + ")");
    }
    return e->intValue();
}

SubnetMcps parse_prefix(const std::string& text, int family, const std::string& where) {
    SubnetMcps sub;
    size_t slash = text.find('/');
    size_t len = family == 4 ? 4 : 16;
    unsigned max = family == 4 ? 32 : 128;
    sub.prefix.resize(len);
    std::string addr = text.substr(0, slash);
    char* end = nullptr;
    unsigned long bits = slash == std::string::npos ? 999 : std::strtoul(text.c_str() + slash + 1, &end, 10);
    if (slash == std::string::npos || !end || *end || bits > max ||
        inet_pton(family == 4 ? AF_INET : AF_INET6, addr.c_str(), sub.prefix.data()) != 1) {
        throw ConfigError(where + ": " + text + " is not an IPv" + (family == 4 ? "4" : "6") + " prefix");
    }
    sub.length = static_cast<unsigned>(bits);
    return sub;
}

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
        expect(subs, Element::list, fam + ".subnets", "a list of {prefix, mcps}");
        const auto& items = subs->listValue();
        for (size_t i = 0; i < items.size(); ++i) {
            std::string where = fam + ".subnets[" + std::to_string(i) + "]";
            expect(items[i], Element::map, where, "a map with prefix and mcps");
            only_keys(items[i], {"prefix", "mcps"}, where);
            auto p = items[i]->get("prefix");
            expect(p, Element::string, where + ".prefix", "a prefix like 192.0.2.0/24");
            SubnetMcps sub = parse_prefix(p->stringValue(), family, where + ".prefix");
            for (const auto& other : out.subnets) {
                if (other.length == sub.length && other.prefix == sub.prefix) {
                    throw ConfigError(where + ".prefix: " + p->stringValue() + " is listed twice");
                }
            }
            sub.mcps = parse_mcps(items[i]->get("mcps"), family, where + ".mcps");
            out.subnets.push_back(sub);
        }
    }
    if (auto cls = e->get("classes")) {
        expect(cls, Element::list, fam + ".classes", "a list of {name, mcps}");
        const auto& items = cls->listValue();
        std::set<std::string> seen;
        for (size_t i = 0; i < items.size(); ++i) {
            std::string where = fam + ".classes[" + std::to_string(i) + "]";
            expect(items[i], Element::map, where, "a map with name and mcps");
            only_keys(items[i], {"name", "mcps"}, where);
            auto name = items[i]->get("name");
            expect(name, Element::string, where + ".name", "a client class name");
            std::string n = name->stringValue();
            if (n.empty() || !seen.insert(n).second) {
                throw ConfigError(where + ".name: \"" + n + "\" is empty or listed twice");
            }
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

bool SubnetMcps::contains(const uint8_t* addr, size_t len) const {
    if (len != prefix.size()) return false;
    unsigned full = length / 8, rest = length % 8;
    if (std::memcmp(addr, prefix.data(), full) != 0) return false;
    if (rest == 0) return true;
    uint8_t mask = static_cast<uint8_t>(0xff << (8 - rest));
    return (addr[full] & mask) == (prefix[full] & mask);
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
