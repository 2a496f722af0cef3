// mptcp-cpe's Kea 2.2 hook: serves OPTION_V4_MPTCP / OPTION_V6_MPTCP
// (draft-boucadair-mptcp-dhc) to clients that ask for them in their PRL / ORO.
// Parameters are checked and the options pre-encoded in load(); the per-packet path only
// picks the MCPs for the client (class, then subnet, then default) and copies bytes.
#include "mcp_config.h"

#include <dhcp/dhcp4.h>
#include <dhcp/dhcp6.h>
#include <dhcp/option.h>
#include <dhcp/pkt4.h>
#include <dhcp/pkt6.h>
#include <dhcp/option6_ia.h>
#include <dhcp/option6_iaaddr.h>
#include <hooks/hooks.h>
#include <log/logger.h>
#include <log/macros.h>
#include <log/message_initializer.h>

#include <memory>

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

// The client's MCPs: its first class that has some, else the subnet holding the address
// it is being given, else the default.
const mptcp_cpe::Payloads* select(const mptcp_cpe::FamilyConfig& fam, Pkt& query,
                                  const std::vector<uint8_t>& addr) {
    for (const auto& cls : fam.classes) {
        if (query.inClass(cls.first)) return &cls.second;
    }
    if (!addr.empty()) {
        for (const auto& sub : fam.subnets) {
            if (sub.contains(addr.data(), addr.size())) return &sub.mcps;
        }
    }
    return fam.has_default ? &fam.default_mcps : nullptr;
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

// Whether a request list (PRL: octets; ORO: 16-bit codes) asks for the code.
bool requested(const OptionPtr& list, uint16_t code, size_t width) {
    if (!list) return false;
    std::vector<uint8_t> data = list->toBinary(false);
    for (size_t i = 0; i + width <= data.size(); i += width) {
        uint16_t c = width == 1 ? data[i] : static_cast<uint16_t>(data[i] << 8 | data[i + 1]);
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
        config.reset(new mptcp_cpe::Config(mptcp_cpe::parse_config(handle.getParameters())));
    } catch (const std::exception& e) {
        LOG_ERROR(logger, MPTCP_LOAD_ERROR).arg(e.what());
        config.reset();
        return 1;
    }
    LOG_INFO(logger, MPTCP_LOADED).arg(mptcp_cpe::describe(*config));
    return 0;
}

int unload() {
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
        if (!requested(query->getOption(DHO_DHCP_PARAMETER_REQUEST_LIST), config->v4_code, 1)) return 0;
        const mptcp_cpe::Payloads* mcps = select(config->v4, *query, response->getYiaddr().toBytes());
        if (!mcps) return 0;
        // One option; Kea 2.2 splits data over 255 octets into several (RFC 3396) when packing.
        response->delOption(config->v4_code);
        response->addOption(OptionPtr(new Option(Option::V4, config->v4_code, mcps->front())));
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
        if (!requested(query->getOption(D6O_ORO), config->v6_code, 2)) return 0;
        const mptcp_cpe::Payloads* mcps = select(config->v6, *query, ia_address(*response));
        if (!mcps) return 0;
        while (response->delOption(config->v6_code)) {
        }
        for (const auto& instance : *mcps) {
            // One instance per MCP: Pkt6 keeps repeated options.
            response->addOption(OptionPtr(new Option(Option::V6, config->v6_code, instance)));
        }
    } catch (const std::exception& e) {
        LOG_ERROR(logger, MPTCP_CALLOUT_ERROR).arg("pkt6_send").arg(e.what());
    }
    return 0;
}

}  // extern "C"
