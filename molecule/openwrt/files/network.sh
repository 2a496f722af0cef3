# The lab CPE's netifd config on OpenWrt (sh, run with raw): LAN lan0 static, WANs wan1
# (interfaces dsl, dsl6) and wan2 (lte, lte6), DHCP and DHCPv6; the default zones get them.
if uci -q get network.dsl >/dev/null; then echo "network: as it was"; exit 0; fi
uci batch <<'UCI'
set network.lan=interface
set network.lan.device='lan0'
set network.lan.proto='static'
set network.lan.ipaddr='198.18.1.1'
set network.lan.netmask='255.255.255.0'
set network.lan.ip6addr='2001:db8:0:100::1/64'
delete network.wan
delete network.wan6
set network.dsl=interface
set network.dsl.device='wan1'
set network.dsl.proto='dhcp'
set network.dsl6=interface
set network.dsl6.device='@dsl'
set network.dsl6.proto='dhcpv6'
set network.lte=interface
set network.lte.device='wan2'
set network.lte.proto='dhcp'
set network.lte6=interface
set network.lte6.device='@lte'
set network.lte6.proto='dhcpv6'
UCI
uci commit network
i=0
while uci -q get "firewall.@zone[$i]" >/dev/null; do
	if [ "$(uci -q get "firewall.@zone[$i].name")" = wan ]; then
		uci -q delete "firewall.@zone[$i].network"
		uci add_list "firewall.@zone[$i].network=dsl"
		uci add_list "firewall.@zone[$i].network=dsl6"
	fi
	i=$((i + 1))
done
uci commit firewall
/etc/init.d/network reload
/etc/init.d/firewall reload
echo "network: configured"
