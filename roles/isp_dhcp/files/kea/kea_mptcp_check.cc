// kea-mptcp-check CONFIG: the hook's own parameter checks (the code load() and
// dhcpN_srv_configured run: parameters, subnet ids, no option-data for the hook's code, and
// for DHCPv4 without classes whether Kea can carry the MCPs per subnet or pool), which
// `kea-dhcp4 -t` / `kea-dhcp6 -t` never run.
// Prints "ok" or the error line; exit 0 / 1 (2: usage).
#include "mcp_config.h"

#include <cc/data.h>

#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

using isc::data::ConstElementPtr;
using isc::data::Element;

static bool ends_with(const std::string& s, const std::string& tail) {
    return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// Kea's config parser accepts #, // and /* */ comments anywhere; isc::data's JSON parser
// (Element::fromJSONFile, even with preproc) only "#" in a line's first column. Blank them
// out (outside strings), keeping line numbers for error messages.
static std::string strip_comments(const std::string& in) {
    std::string out;
    out.reserve(in.size());
    bool in_string = false;
    for (size_t i = 0; i < in.size(); ++i) {
        char c = in[i];
        if (in_string) {
            out += c;
            if (c == '\\' && i + 1 < in.size()) {
                out += in[++i];
            } else if (c == '"') {
                in_string = false;
            }
        } else if (c == '"') {
            in_string = true;
            out += c;
        } else if (c == '#' || (c == '/' && i + 1 < in.size() && in[i + 1] == '/')) {
            while (i < in.size() && in[i] != '\n') ++i;
            if (i < in.size()) out += '\n';
        } else if (c == '/' && i + 1 < in.size() && in[i + 1] == '*') {
            for (i += 2; i + 1 < in.size() && !(in[i] == '*' && in[i + 1] == '/'); ++i) {
                if (in[i] == '\n') out += '\n';
            }
            ++i;
        } else {
            out += c;
        }
    }
    return out;
}

int main(int argc, char** argv) {
    if (argc != 2) {
        std::cerr << "usage: kea-mptcp-check KEA-CONFIG.json" << std::endl;
        return 2;
    }
    try {
        std::ifstream file(argv[1]);
        if (!file) {
            std::cout << argv[1] << ": cannot be read" << std::endl;
            return 1;
        }
        std::stringstream text;
        text << file.rdbuf();
        std::istringstream json(strip_comments(text.str()));
        ConstElementPtr root = Element::fromJSON(json, argv[1], false);
        int found = 0;
        if (root->getType() != Element::map) {
            std::cout << argv[1] << ": not a Kea configuration (a JSON map)" << std::endl;
            return 1;
        }
        for (int family : {4, 6}) {
            ConstElementPtr srv = root->get(family == 4 ? "Dhcp4" : "Dhcp6");
            if (!srv) continue;
            ConstElementPtr libs = srv->get("hooks-libraries");
            if (!libs) continue;
            for (const auto& lib : libs->listValue()) {
                ConstElementPtr path = lib->get("library");
                if (!path || path->getType() != Element::string ||
                    !ends_with(path->stringValue(), "libdhcp_mptcp.so")) {
                    continue;
                }
                mptcp_cpe::Config config = mptcp_cpe::parse_config(lib->get("parameters"));
                mptcp_cpe::bind_server(config, srv, family);  // what dhcpN_srv_configured checks
                ++found;
            }
        }
        if (!found) {
            std::cout << argv[1] << ": no hooks-libraries entry for libdhcp_mptcp.so" << std::endl;
            return 1;
        }
    } catch (const std::exception& e) {
        std::cout << e.what() << std::endl;
        return 1;
    }
    std::cout << "ok" << std::endl;
    return 0;
}
