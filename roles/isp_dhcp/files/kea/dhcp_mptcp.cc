// mptcp-cpe's Kea 2.2 hook: serves OPTION_V4_MPTCP / OPTION_V6_MPTCP
// (draft-boucadair-mptcp-dhc) to clients that ask for them in their PRL / ORO.
// Parameters are checked and the options pre-encoded in load(); subnet ids are tied to
// their prefixes from the server's configuration in dhcpN_srv_configured.
//
// DHCPv4 without client classes: no callout runs per packet. dhcp4_srv_configured puts the
// options into Kea's own configuration (global for the default, subnets or pools for the
// subnet entries), and Kea sends them when the PRL asks, as it sends any option. A per-packet
// callout costs Kea more (its hook machinery alone, ~7 us per exchange) than the whole option.
// DHCPv4 with client classes, and DHCPv6 (one instance per MCP, which Kea 2.2 does not send
// from its own configuration): pkt4_send / pkt6_send pick the client's MCPs (class, then
// subnet, then default) and add options built once.
#include "mcp_config.h"

#include <dhcp/dhcp4.h>
#include <dhcp/dhcp6.h>
#include <dhcp/option.h>
#include <dhcp/option6_ia.h>
#include <dhcp/option6_iaaddr.h>
#include <dhcp/option_int_array.h>
#include <dhcp/option_space.h>
#include <dhcp/pkt4.h>
#include <dhcp/pkt6.h>
#include <dhcpsrv/cfg_option.h>
#include <dhcpsrv/cfg_subnets4.h>
#include <dhcpsrv/pool.h>
#include <dhcpsrv/srv_config.h>
#include <dhcpsrv/subnet.h>
#include <hooks/hooks.h>
#include <log/logger.h>
#include <log/macros.h>
#include <log/message_initializer.h>

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <unordered_map>

using namespace isc::dhcp;
using namespace isc::hooks;
using isc::data::ConstElementPtr;

namespace {

const isc::log::MessageID MPTCP_LOAD_ERROR = "MPTCP_LOAD_ERROR";
const isc::log::MessageID MPTCP_LOADED = "MPTCP_LOADED";
const isc::log::MessageID MPTCP_SUBNETS_BOUND = "MPTCP_SUBNETS_BOUND";
const isc::log::MessageID MPTCP_CALLOUT_ERROR = "MPTCP_CALLOUT_ERROR";
const isc::log::MessageID MPTCP_V4_NATIVE = "MPTCP_V4_NATIVE";
const isc::log::MessageID MPTCP_V4_PER_PACKET = "MPTCP_V4_PER_PACKET";
const char* messages[] = {
    "MPTCP_LOAD_ERROR", "mptcp-cpe hook: parameters refused: %1",
    "MPTCP_LOADED", "mptcp-cpe hook: loaded: %1",
    "MPTCP_SUBNETS_BOUND", "mptcp-cpe hook: %1 subnet id(s) of %2 bound to the server's subnets",
    "MPTCP_CALLOUT_ERROR", "mptcp-cpe hook: %1 failed: %2",
    "MPTCP_V4_NATIVE", "mptcp-cpe hook: DHCPv4 option %1 sent by Kea from its own configuration (no per-packet callout): %2",
    "MPTCP_V4_PER_PACKET", "mptcp-cpe hook: DHCPv4 option %1 added per packet (pkt4_send): %2",
    nullptr,
};
const isc::log::MessageInitializer message_initializer(messages);
isc::log::Logger logger("dhcp-mptcp");

// Set by load() and read-only afterwards: safe to read from Kea's packet threads.
std::unique_ptr<const mptcp_cpe::Config> config;
// The options each MCP selection sends, built once at load(): the per-packet path only
// adds a shared pointer to the response (Kea packs and splits without changing them).
std::unordered_map<const mptcp_cpe::Payloads*, std::vector<OptionPtr> > prepared;

// Built by dhcpN_srv_configured, which Kea calls after load() and before it serves any
// packet with the new configuration (packet processing is stopped while it reconfigures);
// read-only afterwards.
std::vector<mptcp_cpe::Route> routes4, routes6;

void prepare(const mptcp_cpe::FamilyConfig& fam, Option::Universe universe, uint16_t code) {
    auto add = [&](const mptcp_cpe::Payloads& p) {
        std::vector<OptionPtr>& opts = prepared[&p];
        for (const auto& data : p) opts.push_back(OptionPtr(new Option(universe, code, data)));
    };
    if (fam.has_default) add(fam.default_mcps);
    for (const auto& s : fam.subnets) add(s.mcps);
    for (const auto& c : fam.classes) add(c.second);
}

const std::vector<OptionPtr>* options_of(const mptcp_cpe::Payloads& p) {
    auto it = prepared.find(&p);
    return it == prepared.end() ? nullptr : &it->second;
}

// The client's MCPs: its first class that has some; else by the address it is being given.
const std::vector<OptionPtr>* select(const mptcp_cpe::FamilyConfig& fam, const std::vector<mptcp_cpe::Route>& routes,
                                     Pkt& query, const uint8_t* addr, size_t addr_len) {
    for (const auto& cls : fam.classes) {
        if (query.inClass(cls.first)) return options_of(cls.second);
    }
    const mptcp_cpe::Payloads* p = mptcp_cpe::select_by_address(fam, routes, addr, addr_len);
    return p ? options_of(*p) : nullptr;
}

// The address the response gives: the first IA_NA address, else the first IA_PD prefix.
bool v6_address(const Pkt6& response, uint8_t out[16]) {
    for (uint16_t ia_type : {D6O_IA_NA, D6O_IA_PD}) {
        auto range = response.options_.equal_range(ia_type);
        for (auto it = range.first; it != range.second; ++it) {
            if (!it->second) continue;
            for (uint16_t addr_type : {D6O_IAADDR, D6O_IAPREFIX}) {
                auto sub = it->second->getOption(addr_type);
                // Option6IAPrefix is an Option6IAAddr: getAddress() is the prefix.
                auto iaaddr = boost::dynamic_pointer_cast<Option6IAAddr>(sub);
                if (!iaaddr || !iaaddr->getAddress().isV6()) continue;
                std::vector<uint8_t> bytes = iaaddr->getAddress().toBytes();
                if (bytes.size() != 16) continue;
                std::memcpy(out, bytes.data(), 16);
                return true;
            }
        }
    }
    return false;
}

// Whether the query's request list (PRL: 8-bit codes; ORO: 16-bit codes) asks for the
// code. Read from the packet's own option (Pkt::options_), not getOption(): during
// pkt*_send Kea hands hooks deep copies, which only a hook that changes them needs.
template <typename T>
bool requested(const Pkt& query, uint16_t list_code, uint16_t code) {
    auto it = query.options_.find(list_code);
    if (it == query.options_.end() || !it->second) return false;
    if (auto arr = dynamic_cast<const OptionIntArray<T>*>(it->second.get())) {
        for (T c : arr->getValues()) {
            if (c == code) return true;
        }
        return false;
    }
    // Not parsed as an array (a custom definition): walk its packed data.
    std::vector<uint8_t> data = it->second->toBinary(false);
    for (size_t i = 0; i + sizeof(T) <= data.size(); i += sizeof(T)) {
        uint16_t c = sizeof(T) == 1 ? data[i] : static_cast<uint16_t>(data[i] << 8 | data[i + 1]);
        if (c == code) return true;
    }
    return false;
}

// DHCPv4 without classes: put the options where bind_server placed them, in the
// configuration Kea is about to use. Kea's subnets and pools are found by their prefix and
// range (Kea refuses two subnets with one prefix).
void serve_natively(CalloutHandle& handle, const mptcp_cpe::FamilyConfig& fam,
                    const mptcp_cpe::ServerBinding& bound) {
    SrvConfigPtr srv;
    handle.getArgument("server_config", srv);
    if (!srv) throw mptcp_cpe::ConfigError("Kea passed no server configuration to dhcp4_srv_configured");
    auto add = [](const CfgOptionPtr& cfg, const mptcp_cpe::Payloads& p) {
        const std::vector<OptionPtr>* opts = options_of(p);
        if (opts && !opts->empty()) cfg->add(OptionDescriptor(opts->front(), false), DHCP4_OPTION_SPACE);
    };
    if (fam.has_default) add(srv->getCfgOption(), fam.default_mcps);
    size_t n_subnets = 0, n_pools = 0;
    for (const auto& placement : bound.placements) {
        const mptcp_cpe::ServerSubnet& want = bound.subnets[placement.subnet];
        Subnet4Ptr subnet;
        for (const auto& s : *srv->getCfgSubnets4()->getAll()) {
            auto prefix = s->get();
            mptcp_cpe::Prefix have{prefix.first.toBytes(), prefix.second};
            // Kea keeps a prefix as written ("192.0.2.5/24"): compare the networks.
            if (have.length == want.prefix.length && have.contains(want.prefix.net.data(), want.prefix.net.size())) {
                subnet = s;
                break;
            }
        }
        if (!subnet) throw mptcp_cpe::ConfigError(want.where + ": Kea has no such subnet to send the MCPs from");
        if (placement.pool < 0) {
            add(subnet->getCfgOption(), *placement.mcps);
            ++n_subnets;
            continue;
        }
        const auto& range = want.pools4[static_cast<size_t>(placement.pool)];
        PoolPtr pool;
        for (const auto& p : subnet->getPools(Lease::TYPE_V4)) {
            if (p->getFirstAddress().toUint32() == range.first && p->getLastAddress().toUint32() == range.second) {
                pool = p;
                break;
            }
        }
        if (!pool) throw mptcp_cpe::ConfigError(want.where + ": Kea has no such pool to send the MCPs from");
        add(pool->getCfgOption(), *placement.mcps);
        ++n_pools;
    }
    LOG_INFO(logger, MPTCP_V4_NATIVE)
        .arg(config->v4_code)
        .arg((fam.has_default ? std::string("default (global), ") : std::string()) + std::to_string(n_subnets) +
             " subnet(s), " + std::to_string(n_pools) + " pool(s)");
}

// dhcpN_srv_configured: tie the "id" entries to the server's subnets and check that the
// server does not set the hook's option itself; for DHCPv4 without classes, hand the options
// to Kea. Anything wrong makes Kea refuse the configuration, as load() does.
int configure(CalloutHandle& handle, int family) {
    std::vector<mptcp_cpe::Route>& routes = family == 4 ? routes4 : routes6;
    try {
        routes.clear();
        if (!config) return 0;
        const mptcp_cpe::FamilyConfig& fam = family == 4 ? config->v4 : config->v6;
        if (fam.empty()) return 0;
        ConstElementPtr json;
        handle.getArgument("json_config", json);
        const char* wrapper = family == 4 ? "Dhcp4" : "Dhcp6";
        if (json && json->getType() == isc::data::Element::map && json->get(wrapper)) json = json->get(wrapper);
        mptcp_cpe::ServerBinding bound = mptcp_cpe::bind_server(*config, json, family);
        size_t n_ids = std::count_if(fam.subnets.begin(), fam.subnets.end(),
                                     [](const mptcp_cpe::SubnetMcps& s) { return s.id != 0; });
        if (n_ids) {
            LOG_INFO(logger, MPTCP_SUBNETS_BOUND).arg(n_ids).arg(family == 4 ? "v4" : "v6");
        }
        if (family == 4 && mptcp_cpe::v4_served_by_kea(*config)) serve_natively(handle, fam, bound);
        routes = std::move(bound.routes);
    } catch (const std::exception& e) {
        routes.clear();
        LOG_ERROR(logger, MPTCP_LOAD_ERROR).arg(e.what());
        try {
            handle.setArgument("error", std::string("mptcp-cpe hook: parameters refused: ") + e.what());
            handle.setStatus(CalloutHandle::NEXT_STEP_DROP);
        } catch (...) {
        }
        return 1;
    }
    return 0;
}

// pkt4_send, registered by load() only when DHCPv4 has client classes (v4_served_by_kea).
int pkt4_send_per_packet(CalloutHandle& handle) {
    try {
        if (!config || config->v4.empty()) return 0;
        Pkt4Ptr query, response;
        handle.getArgument("query4", query);
        handle.getArgument("response4", response);
        if (!query || !response) return 0;
        if (response->getType() != DHCPOFFER && response->getType() != DHCPACK) return 0;
        if (!requested<uint8_t>(*query, DHO_DHCP_PARAMETER_REQUEST_LIST, config->v4_code)) return 0;
        // The address being given; an ACK to an INFORM gives none: the client's own.
        uint32_t host = response->getYiaddr().toUint32();
        if (!host) host = query->getCiaddr().toUint32();
        uint32_t addr = htonl(host);
        const std::vector<OptionPtr>* opts =
            select(config->v4, routes4, *query, reinterpret_cast<const uint8_t*>(&addr), host ? 4 : 0);
        if (!opts || opts->empty()) return 0;
        // One option; Kea 2.2 splits data over 255 octets into several (RFC 3396) when packing.
        response->delOption(config->v4_code);
        response->addOption(opts->front());
    } catch (const std::exception& e) {
        LOG_ERROR(logger, MPTCP_CALLOUT_ERROR).arg("pkt4_send").arg(e.what());
    } catch (...) {
        LOG_ERROR(logger, MPTCP_CALLOUT_ERROR).arg("pkt4_send").arg("unknown exception");
    }
    return 0;
}

}  // namespace

extern "C" {

int version() {
    return KEA_HOOKS_VERSION;
}

int load(LibraryHandle& handle) {
    try {
        prepared.clear();
        routes4.clear();
        routes6.clear();
        config.reset(new mptcp_cpe::Config(mptcp_cpe::parse_config(handle.getParameters())));
        prepare(config->v4, Option::V4, config->v4_code);
        prepare(config->v6, Option::V6, config->v6_code);
        if (!mptcp_cpe::v4_served_by_kea(*config)) {
            handle.registerCallout("pkt4_send", pkt4_send_per_packet);
            LOG_INFO(logger, MPTCP_V4_PER_PACKET)
                .arg(config->v4_code)
                .arg("client classes pick MCPs, which Kea's own option precedence cannot express");
        }
    } catch (const std::exception& e) {
        LOG_ERROR(logger, MPTCP_LOAD_ERROR).arg(e.what());
        config.reset();
        prepared.clear();
        return 1;
    }
    LOG_INFO(logger, MPTCP_LOADED).arg(mptcp_cpe::describe(*config));
    return 0;
}

int unload() {
    routes4.clear();
    routes6.clear();
    prepared.clear();
    config.reset();
    return 0;
}

// The configuration is read-only once loaded (and bound), and callouts keep no other state.
int multi_threading_compatible() {
    return 1;
}

int dhcp4_srv_configured(CalloutHandle& handle) {
    return configure(handle, 4);
}

int dhcp6_srv_configured(CalloutHandle& handle) {
    return configure(handle, 6);
}

int pkt6_send(CalloutHandle& handle) {
    try {
        if (!config || config->v6.empty()) return 0;
        Pkt6Ptr query, response;
        handle.getArgument("query6", query);
        handle.getArgument("response6", response);
        if (!query || !response) return 0;
        if (response->getType() != DHCPV6_ADVERTISE && response->getType() != DHCPV6_REPLY) return 0;
        if (!requested<uint16_t>(*query, D6O_ORO, config->v6_code)) return 0;
        uint8_t addr[16];
        bool has_addr = v6_address(*response, addr);
        const std::vector<OptionPtr>* opts = select(config->v6, routes6, *query, addr, has_addr ? 16 : 0);
        if (!opts || opts->empty()) return 0;
        while (response->delOption(config->v6_code)) {
        }
        for (const auto& opt : *opts) {
            // One instance per MCP: Pkt6 keeps repeated options.
            response->addOption(opt);
        }
    } catch (const std::exception& e) {
        LOG_ERROR(logger, MPTCP_CALLOUT_ERROR).arg("pkt6_send").arg(e.what());
    } catch (...) {
        LOG_ERROR(logger, MPTCP_CALLOUT_ERROR).arg("pkt6_send").arg("unknown exception");
    }
    return 0;
}

}  // extern "C"
