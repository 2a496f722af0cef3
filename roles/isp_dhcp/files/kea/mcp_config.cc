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
#include <functional>
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

namespace {

// The first and last address of an IPv4 prefix (host order).
std::pair<uint32_t, uint32_t> range4(const Prefix& p) {
    uint32_t net = 0;
    std::memcpy(&net, p.net.data(), 4);
    net = ntohl(net);
    uint32_t host = p.length >= 32 ? 0 : 0xffffffffu >> p.length;
    return std::make_pair(net & ~host, net | host);
}

// A DHCPv4 pool, "FIRST - LAST" or "PREFIX/LEN", as first and last address (host order).
bool parse_pool4(const std::string& text, std::pair<uint32_t, uint32_t>& out) {
    auto addr = [](std::string a, uint32_t& v) {
        a.erase(0, a.find_first_not_of(" \t"));
        a.erase(a.find_last_not_of(" \t") + 1);
        struct in_addr in;
        if (inet_pton(AF_INET, a.c_str(), &in) != 1) return false;
        v = ntohl(in.s_addr);
        return true;
    };
    size_t dash = text.find('-');
    if (dash != std::string::npos) {
        return addr(text.substr(0, dash), out.first) && addr(text.substr(dash + 1), out.second) &&
               out.first <= out.second;
    }
    try {
        std::string t = text;
        t.erase(std::remove(t.begin(), t.end(), ' '), t.end());
        out = range4(parse_prefix(t, 4, "pool"));
        return true;
    } catch (const ConfigError&) {
        return false;
    }
}

// Whether a prefix holds none, all or only part of the addresses first..last.
enum Relation { OUTSIDE, INSIDE, PARTIAL };
Relation relation4(const Prefix& p, uint32_t first, uint32_t last) {
    auto r = range4(p);
    if (last < r.first || first > r.second) return OUTSIDE;
    if (r.first <= first && last <= r.second) return INSIDE;
    return PARTIAL;
}

std::string show4(uint32_t v) {
    std::vector<uint8_t> a(4);
    v = htonl(v);
    std::memcpy(a.data(), &v, 4);
    return show(a);
}

std::string show_range(uint32_t first, uint32_t last) {
    return show4(first) + " - " + show4(last);
}

std::string show_prefix(const Prefix& p) {
    return show(p.net) + "/" + std::to_string(p.length);
}

}  // namespace

std::vector<ServerSubnet> server_subnets(const ConstElementPtr& server, int family) {
    std::vector<ServerSubnet> out;
    if (!server || server->getType() != Element::map) return out;
    const std::string key = family == 4 ? "subnet4" : "subnet6";
    // Reserved addresses ("ip-address"), of a subnet's own reservations or of global ones
    // that lie in it.
    auto take_reservations = [](ServerSubnet& sub, const ConstElementPtr& list, const std::string& at) {
        if (!list || list->getType() != Element::list) return;
        const auto& items = list->listValue();
        for (size_t i = 0; i < items.size(); ++i) {
            if (!items[i] || items[i]->getType() != Element::map) continue;
            auto ip = items[i]->get("ip-address");
            struct in_addr in;
            if (!ip || ip->getType() != Element::string || inet_pton(AF_INET, ip->stringValue().c_str(), &in) != 1) continue;
            uint32_t a = ntohl(in.s_addr);
            if (!sub.prefix.contains(reinterpret_cast<const uint8_t*>(&in.s_addr), 4)) continue;
            sub.reserved4.push_back(std::make_pair(a, at + "[" + std::to_string(i) + "]"));
        }
    };
    auto take = [&](const ConstElementPtr& list, const std::string& at) {
        if (!list || list->getType() != Element::list) return;
        const auto& items = list->listValue();
        for (size_t i = 0; i < items.size(); ++i) {
            const auto& s = items[i];
            if (!s || s->getType() != Element::map) continue;
            auto id = s->get("id");
            auto prefix = s->get("subnet");
            if (!prefix || prefix->getType() != Element::string) continue;
            ServerSubnet sub;
            sub.where = at + key + "[" + std::to_string(i) + "]";
            // Kea numbers subnets without an id itself; the hook can only name explicit ones.
            sub.id = id && id->getType() == Element::integer && id->intValue() > 0 && id->intValue() <= SUBNET_ID_MAX
                         ? static_cast<uint32_t>(id->intValue()) : 0;
            try {
                sub.prefix = parse_prefix(prefix->stringValue(), family, key);
            } catch (const ConfigError&) {
                continue;  // Kea itself refuses a bad "subnet"; nothing for the hook to add.
            }
            auto pools = s->get("pools");
            if (family == 4 && pools && pools->getType() == Element::list) {
                for (const auto& p : pools->listValue()) {
                    if (!p || p->getType() != Element::map) continue;
                    auto text = p->get("pool");
                    std::pair<uint32_t, uint32_t> range;
                    if (text && text->getType() == Element::string && parse_pool4(text->stringValue(), range)) {
                        sub.pools4.push_back(range);
                    }
                }
            }
            if (family == 4) take_reservations(sub, s->get("reservations"), sub.where + ".reservations");
            out.push_back(sub);
        }
    };
    take(server->get(key), "");
    if (auto nets = server->get("shared-networks")) {
        if (nets->getType() == Element::list) {
            const auto& items = nets->listValue();
            for (size_t i = 0; i < items.size(); ++i) {
                if (items[i] && items[i]->getType() == Element::map) {
                    take(items[i]->get(key), "shared-networks[" + std::to_string(i) + "].");
                }
            }
        }
    }
    if (family == 4) {
        for (auto& sub : out) take_reservations(sub, server->get("reservations"), "reservations");
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

void check_option_data(const ConstElementPtr& server, uint16_t code, int family) {
    if (!server || server->getType() != Element::map) return;
    const std::string space = family == 4 ? "dhcp4" : "dhcp6";
    auto in_space = [&](const ConstElementPtr& m) {
        auto sp = m->get("space");
        return !sp || (sp->getType() == Element::string && sp->stringValue() == space);
    };
    // Names the configuration defines for the code (option-def); Kea's standard names for
    // it are left to Kea (no standard option has the draft's codes).
    std::set<std::string> names;
    if (auto defs = server->get("option-def")) {
        if (defs->getType() == Element::list) {
            for (const auto& d : defs->listValue()) {
                if (!d || d->getType() != Element::map || !in_space(d)) continue;
                auto c = d->get("code");
                auto n = d->get("name");
                if (c && c->getType() == Element::integer && c->intValue() == code && n &&
                    n->getType() == Element::string) {
                    names.insert(n->stringValue());
                }
            }
        }
    }
    std::function<void(const ConstElementPtr&, const std::string&)> walk =
        [&](const ConstElementPtr& e, const std::string& at) {
            if (!e) return;
            if (e->getType() == Element::list) {
                const auto& items = e->listValue();
                for (size_t i = 0; i < items.size(); ++i) walk(items[i], at + "[" + std::to_string(i) + "]");
                return;
            }
            if (e->getType() != Element::map) return;
            for (const auto& kv : e->mapValue()) {
                const std::string here = at + (at.empty() ? "" : ".") + kv.first;
                if (kv.first != "option-data" || !kv.second || kv.second->getType() != Element::list) {
                    if (kv.first != "hooks-libraries") walk(kv.second, here);
                    continue;
                }
                const auto& items = kv.second->listValue();
                for (size_t i = 0; i < items.size(); ++i) {
                    const auto& o = items[i];
                    if (!o || o->getType() != Element::map || !in_space(o)) continue;
                    auto c = o->get("code");
                    auto n = o->get("name");
                    bool same = (c && c->getType() == Element::integer && c->intValue() == code) ||
                                (n && n->getType() == Element::string && names.count(n->stringValue()));
                    if (same) {
                        throw ConfigError(here + "[" + std::to_string(i) + "]: sets option " + std::to_string(code) +
                                          ", which the mptcp-cpe hook serves (" + (family == 4 ? "v4" : "v6") +
                                          "-option-code): remove it, or give the hook another code");
                    }
                }
            }
        };
    walk(server, "");
}

std::vector<Route> build_routes(const FamilyConfig& fam, const std::vector<ServerSubnet>& server) {
    std::vector<Route> routes;
    std::vector<uint32_t> ids;
    for (const auto& sub : fam.subnets) {
        if (!sub.id) continue;
        for (const auto& s : server) {
            if (s.id == sub.id) routes.push_back(Route{s.prefix, &sub.mcps});
        }
        ids.push_back(sub.id);
    }
    const size_t own = routes.size();
    for (const auto& s : server) {
        // Only subnets with an explicit id, as ever: Kea's own numbering is not stable.
        if (!s.id || std::find(ids.begin(), ids.end(), s.id) != ids.end()) continue;
        for (size_t i = 0; i < own; ++i) {
            if (s.prefix.overlaps(routes[i].prefix)) {
                routes.push_back(Route{s.prefix, nullptr});
                break;
            }
        }
    }
    std::stable_sort(routes.begin(), routes.end(),
                     [](const Route& a, const Route& b) { return a.prefix.length > b.prefix.length; });
    return routes;
}

const Payloads* select_by_address(const FamilyConfig& fam, const std::vector<Route>& routes, const uint8_t* addr,
                                  size_t addr_len) {
    if (addr_len) {
        for (const auto& r : routes) {
            if (r.prefix.contains(addr, addr_len)) {
                if (r.mcps) return r.mcps;
                break;
            }
        }
        for (const auto& sub : fam.subnets) {
            if (!sub.id && sub.prefix.contains(addr, addr_len)) return &sub.mcps;
        }
    }
    return fam.has_default ? &fam.default_mcps : nullptr;
}

std::vector<Placement> plan_v4(const FamilyConfig& fam, const std::vector<Route>& routes,
                               const std::vector<ServerSubnet>& server) {
    // What splits first..last: a route or a prefix entry holding only part of it ("" if none).
    auto splitter = [&](uint32_t first, uint32_t last) -> std::string {
        for (const auto& r : routes) {
            if (relation4(r.prefix, first, last) != PARTIAL) continue;
            for (const auto& sub : fam.subnets) {
                if (&sub.mcps == r.mcps) return sub.where + " (subnet id " + std::to_string(sub.id) + ", " + show_prefix(r.prefix) + ")";
            }
            for (const auto& s : server) {
                if (s.prefix == r.prefix) return s.where + " (" + show_prefix(r.prefix) + ", no MCPs of its own)";
            }
            return show_prefix(r.prefix);
        }
        for (const auto& sub : fam.subnets) {
            if (!sub.id && relation4(sub.prefix, first, last) == PARTIAL) {
                return sub.where + ".prefix (" + show_prefix(sub.prefix) + ")";
            }
        }
        return "";
    };
    auto pick = [&](uint32_t first) {
        uint32_t a = htonl(first);
        return select_by_address(fam, routes, reinterpret_cast<const uint8_t*>(&a), 4);
    };
    const Payloads* fallback = fam.has_default ? &fam.default_mcps : nullptr;
    std::vector<Placement> out;
    for (size_t i = 0; i < server.size(); ++i) {
        const ServerSubnet& s = server[i];
        auto range = range4(s.prefix);
        if (splitter(range.first, range.second).empty()) {
            const Payloads* p = pick(range.first);
            if (p && p != fallback) out.push_back(Placement{i, -1, p});
            continue;
        }
        for (size_t j = 0; j < s.pools4.size(); ++j) {
            const auto& pool = s.pools4[j];
            std::string split = splitter(pool.first, pool.second);
            if (!split.empty()) {
                throw ConfigError(split + " holds part of the pool " + show_range(pool.first, pool.second) + " of " +
                                  s.where + " (" + show_prefix(s.prefix) +
                                  "): without client classes Kea itself sends the MCPs, per subnet or pool, "
                                  "so each pool's addresses must all get the same MCPs");
            }
            const Payloads* p = pick(pool.first);
            if (p && p != fallback) out.push_back(Placement{i, static_cast<int>(j), p});
        }
        // Outside every pool only the global default reaches a client of this subnet.
        for (const auto& r : s.reserved4) {
            bool in_pool = std::any_of(s.pools4.begin(), s.pools4.end(), [&](const std::pair<uint32_t, uint32_t>& pool) {
                return pool.first <= r.first && r.first <= pool.second;
            });
            if (in_pool || pick(r.first) == fallback) continue;
            throw ConfigError(r.second + " (" + show4(r.first) +
                              ") lies outside every pool of " + s.where + " (" + show_prefix(s.prefix) +
                              "), whose addresses get different MCPs (" + splitter(range.first, range.second) +
                              " holds part of it): without client classes Kea itself sends the MCPs, per subnet or "
                              "pool, and there only the default would reach it");
        }
    }
    return out;
}

ServerBinding bind_server(const Config& config, const ConstElementPtr& server, int family) {
    ServerBinding out;
    const FamilyConfig& fam = family == 4 ? config.v4 : config.v6;
    if (fam.empty()) return out;
    std::vector<ServerSubnet> subnets = server_subnets(server, family);
    check_subnet_ids(fam, subnets, family);
    check_option_data(server, family == 4 ? config.v4_code : config.v6_code, family);
    out.routes = build_routes(fam, subnets);
    if (family == 4 && v4_served_by_kea(config)) out.placements = plan_v4(fam, out.routes, subnets);
    out.subnets = std::move(subnets);
    return out;
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
