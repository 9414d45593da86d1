# shellcheck shell=bash disable=SC2034  # the variables are for the sourcing script
# The link between broker A's side and broker B's, for the bridge tests
# and bench/bridge.sh (sourced by both): two network namespaces joined by
# a veth pair, addressed NET.1 and NET.2 (/24) inside them only, when this
# process may make them (root, a kernel with veth, `ip netns exec`
# allowed); else loopback. Sets in_a/in_b (a command prefix running a
# program on that side), addr_a/addr_b, link (a description) and, with
# namespaces, veth_a (A's end of the pair, inside ns_a).
# HSB_TEST_LOOPBACK=1 asks for loopback.
ns_a='' ns_b=''
hsb_link_down() {
	[[ -n $ns_a ]] && ip netns del "$ns_a" 2>/dev/null
	[[ -n $ns_b ]] && ip netns del "$ns_b" 2>/dev/null
	ns_a='' ns_b=''
}
hsb_link_up() { # NET, e.g. 10.231.0
	local net=$1 va="hva$$" vb="hvb$$"
	if [[ ${HSB_TEST_LOOPBACK:-0} != 1 && $(id -u) -eq 0 ]] && command -v ip >/dev/null &&
		ip netns add "hsbA$$" 2>/dev/null; then
		ns_a=hsbA$$ ns_b=hsbB$$
		if ip netns add "$ns_b" &&
			ip link add "$va" type veth peer name "$vb" &&
			ip link set "$va" netns "$ns_a" && ip link set "$vb" netns "$ns_b" &&
			ip -n "$ns_a" addr add "$net.1/24" dev "$va" &&
			ip -n "$ns_b" addr add "$net.2/24" dev "$vb" &&
			ip -n "$ns_a" link set lo up && ip -n "$ns_b" link set lo up &&
			ip -n "$ns_a" link set "$va" up && ip -n "$ns_b" link set "$vb" up &&
			ip netns exec "$ns_a" true; then
			in_a=(ip netns exec "$ns_a") in_b=(ip netns exec "$ns_b")
			addr_a=$net.1 addr_b=$net.2 veth_a=$va
			link="veth between network namespaces $ns_a and $ns_b"
			return
		fi
		hsb_link_down 2>/dev/null
	fi
	in_a=() in_b=()
	addr_a=127.0.0.1 addr_b=127.0.0.1
	link="loopback"
}
