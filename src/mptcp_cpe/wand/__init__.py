"""wand: the multi-WAN daemon (tables, rules, NAT, MPTCP endpoints, health)."""
