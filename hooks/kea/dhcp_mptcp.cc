// mptcp-cpe's Kea 2.2 hook: serves OPTION_V4_MPTCP / OPTION_V6_MPTCP
// (draft-boucadair-mptcp-dhc) to clients that ask for them in their PRL / ORO.
// Parameters are checked and the options pre-encoded in load(); the per-packet path only
// picks the MCPs for the client (class, then subnet, then default) and copies bytes.
#include "mcp_config.h"

#include <dhcp/dhcp4.h>
#include <dhcp/dhcp6.h>
#include <dhcp/option.h>
#include <dhcp/option_int_array.h>
#include <dhcp/pkt4.h>
#include <dhcp/pkt6.h>
#include <dhcp/option6_ia.h>
#include <dhcp/option6_iaaddr.h>
#include <hooks/hooks.h>
#include <log/logger.h>
#include <log/macros.h>
#include <log/message_initializer.h>

#include <arpa/inet.h>

#include <memory>
#include <unordered_map>

using namespace isc::dhcp;
using namespace isc::hooks;

namespace {

const isc::log::MessageID MPTCP_LOAD_ERROR = "MPTCP_LOAD_ERROR";
const isc::log::MessageID MPTCP_LOADED = "MPTCP_LOADED";
const isc::log::MessageID MPTCP_CALLOUT_ERROR = "MPTCP_CALLOUT_ERROR";
const char* messages[] = {
    "MPTCP_LOAD_ERROR", "mptcp-cpe hook: parameters refused: %1",
    "MPTCP_LOADED", "mptcp-cpe hook: loaded: %1",
    "MPTCP_CALLOUT_ERROR", "mptcp-cpe hook: %1 failed: %2",
    nullptr,
};
const isc::log::MessageInitializer message_initializer(messages);
isc::log::Logger logger("dhcp-mptcp");

// Immutable after load(): safe to read from Kea's packet threads.
std::unique_ptr<const mptcp_cpe::Config> config;
// The options each MCP selection sends, built once at load(): the per-packet path only
// adds a shared pointer to the response (Kea packs options without changing them).
std::unordered_map<const mptcp_cpe::Payloads*, std::vector<OptionPtr> > prepared;

void prepare(const mptcp_cpe::FamilyConfig& fam, Option::Universe universe, uint16_t code) {
    auto add = [&](const mptcp_cpe::Payloads& p) {
        std::vector<OptionPtr>& opts = prepared[&p];
        for (const auto& data : p) opts.push_back(OptionPtr(new Option(universe, code, data)));
    };
    if (fam.has_default) add(fam.default_mcps);
    for (const auto& s : fam.subnets) add(s.mcps);
    for (const auto& c : fam.classes) add(c.second);
}

// The client's MCPs: its first class that has some, else the subnet holding the address
// it is being given, else the default.
const std::vector<OptionPtr>* select(const mptcp_cpe::FamilyConfig& fam, Pkt& query,
                                     const uint8_t* addr, size_t addr_len) {
    const mptcp_cpe::Payloads* chosen = nullptr;
    for (const auto& cls : fam.classes) {
        if (query.inClass(cls.first)) {
            chosen = &cls.second;
            break;
        }
    }
    if (!chosen && addr_len) {
        for (const auto& sub : fam.subnets) {
            if (sub.contains(addr, addr_len)) {
                chosen = &sub.mcps;
                break;
            }
        }
    }
    if (!chosen && fam.has_default) chosen = &fam.default_mcps;
    if (!chosen) return nullptr;
    auto it = prepared.find(chosen);
    return it == prepared.end() ? nullptr : &it->second;
}

// The first address of the response's first IA_NA (empty if none).
std::vector<uint8_t> ia_address(Pkt6& response) {
    for (const auto& opt : response.getOptions(D6O_IA_NA)) {
        auto ia = boost::dynamic_pointer_cast<Option6IA>(opt.second);
        if (!ia) continue;
        auto iaaddr = boost::dynamic_pointer_cast<Option6IAAddr>(ia->getOption(D6O_IAADDR));
        if (iaaddr) return iaaddr->getAddress().toBytes();
    }
    return std::vector<uint8_t>();
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

}  // namespace

extern "C" {

int version() {
    return KEA_HOOKS_VERSION;
}

int load(LibraryHandle& handle) {
    try {
        prepared.clear();
        config.reset(new mptcp_cpe::Config(mptcp_cpe::parse_config(handle.getParameters())));
        prepare(config->v4, Option::V4, config->v4_code);
        prepare(config->v6, Option::V6, config->v6_code);
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
    prepared.clear();
    config.reset();
    return 0;
}

// The configuration is read-only once loaded and callouts keep no other state.
int multi_threading_compatible() {
    return 1;
}

int pkt4_send(CalloutHandle& handle) {
    try {
        if (!config || config->v4.empty()) return 0;
        Pkt4Ptr query, response;
        handle.getArgument("query4", query);
        handle.getArgument("response4", response);
        if (!query || !response) return 0;
        if (response->getType() != DHCPOFFER && response->getType() != DHCPACK) return 0;
        if (!requested<uint8_t>(*query, DHO_DHCP_PARAMETER_REQUEST_LIST, config->v4_code)) return 0;
        uint32_t yiaddr = htonl(response->getYiaddr().toUint32());
        const std::vector<OptionPtr>* opts =
            select(config->v4, *query, reinterpret_cast<const uint8_t*>(&yiaddr), yiaddr ? 4 : 0);
        if (!opts) return 0;
        // One option; Kea 2.2 splits data over 255 octets into several (RFC 3396) when packing.
        response->delOption(config->v4_code);
        response->addOption(opts->front());
    } catch (const std::exception& e) {
        LOG_ERROR(logger, MPTCP_CALLOUT_ERROR).arg("pkt4_send").arg(e.what());
    }
    return 0;
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
        std::vector<uint8_t> addr = ia_address(*response);
        const std::vector<OptionPtr>* opts = select(config->v6, *query, addr.data(), addr.size());
        if (!opts) return 0;
        while (response->delOption(config->v6_code)) {
        }
        for (const auto& opt : *opts) {
            // One instance per MCP: Pkt6 keeps repeated options.
            response->addOption(opt);
        }
    } catch (const std::exception& e) {
        LOG_ERROR(logger, MPTCP_CALLOUT_ERROR).arg("pkt6_send").arg(e.what());
    }
    return 0;
}

}  // extern "C"
