// Stand-in for Kea 2.2's dhcpsrv/cfg_globals.h, which Debian 12's kea-dev does not ship
// although dhcpsrv/srv_config.h and dhcpsrv/network.h include it. Without it no hook can see
// Kea's SrvConfig, Subnet4 or Pool objects, which the mptcp-cpe hook needs to put its option
// into Kea's own configuration (see dhcp_mptcp.cc).
//
// Only the names those headers mention are declared, so they compile. Everything the hook
// uses (SrvConfig's, CfgSubnets4's, Subnet's and Pool's option accessors) holds CfgGlobals
// only through a boost::shared_ptr, whose size does not depend on the class, so the layout
// of every Kea object the hook touches is Kea's own.
//
// The member functions are templates that are declared and never defined: Kea's library
// exports no such symbols, so a hook that ever called one (through Network's inherited-
// global getters, say) would fail to link (-Wl,--no-undefined), instead of calling Kea's
// CfgGlobals with this file's made-up index values.
#ifndef MPTCP_CPE_COMPAT_CFG_GLOBALS_H
#define MPTCP_CPE_COMPAT_CFG_GLOBALS_H

#include <cc/data.h>

#include <boost/shared_ptr.hpp>

namespace isc {
namespace dhcp {

class CfgGlobals {
public:
    // The indices dhcpsrv/network.h and dhcpsrv/srv_config.h name; the values are not Kea's.
    enum Index {
        AUTHORITATIVE,
        BOOT_FILE_NAME,
        CACHE_MAX_AGE,
        CACHE_THRESHOLD,
        CALCULATE_TEE_TIMES,
        DDNS_GENERATED_PREFIX,
        DDNS_OVERRIDE_CLIENT_UPDATE,
        DDNS_OVERRIDE_NO_UPDATE,
        DDNS_QUALIFYING_SUFFIX,
        DDNS_REPLACE_CLIENT_NAME,
        DDNS_SEND_UPDATES,
        DDNS_UPDATE_ON_RENEW,
        DDNS_USE_CONFLICT_RESOLUTION,
        HOSTNAME_CHAR_REPLACEMENT,
        HOSTNAME_CHAR_SET,
        MATCH_CLIENT_ID,
        MAX_PREFERRED_LIFETIME,
        MAX_VALID_LIFETIME,
        MIN_PREFERRED_LIFETIME,
        MIN_VALID_LIFETIME,
        NEXT_SERVER,
        PREFERRED_LIFETIME,
        REBIND_TIMER,
        RENEW_TIMER,
        RESERVATIONS_GLOBAL,
        RESERVATIONS_IN_SUBNET,
        RESERVATIONS_OUT_OF_POOL,
        SERVER_HOSTNAME,
        STORE_EXTENDED_INFO,
        T1_PERCENT,
        T2_PERCENT,
        VALID_LIFETIME,
    };

    template <typename IndexOrName>
    isc::data::ConstElementPtr get(const IndexOrName& index_or_name) const;
    template <typename Name, typename Value>
    void set(const Name& name, Value value);
    template <typename Unused = void>
    void clear();
};

typedef boost::shared_ptr<CfgGlobals> CfgGlobalsPtr;
typedef boost::shared_ptr<const CfgGlobals> ConstCfgGlobalsPtr;

}  // namespace dhcp
}  // namespace isc

#endif
