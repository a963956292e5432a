#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""Differential tests of ICMP errors the host receives: delivery to UDP, TCP, ping and raw
sockets (IP_RECVERR contents, socket errors), path MTU and redirects in the route cache,
errors about ICMP messages, and malformed errors. Built-in C vs rust_icmp, same boot.

The dut sends a packet to an address on the link that nobody owns (its neighbour entry
points at the peer, whose stack drops it); the peer captures it and answers with a crafted
ICMP error quoting it, as a router would."""

import os
import socket
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))

from difftest import Scenario, in_order, run_differential, select  # noqa: E402
from icmptest import (IP_MTU, IP_MTU_DISCOVER, IP_PMTUDISC_DO, IP_RECVERR,  # noqa: E402
                      FunctionCount, InNetns, Ktap, checksum, delivered, echo, errqueue, icmp, ipv4, mib, pattern, quote, require_vm,
                      route_get, sh, so_error, sysctl)


def dut_socket(t, type_, proto=0, recverr=True):
    with InNetns(t.DUT):
        s = socket.socket(socket.AF_INET, type_, proto)
    if recverr:
        s.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
    t.keep.append(s)
    return s


def answer(t, send, pkt, type_, code, rest=b"\0\0\0\0", body=None):
    """Sends the dut an ICMP error about `pkt` (or with `body` instead of the quote)."""
    before = mib(t.DUT)["IpInDelivers"]
    send.icmp(t.DUT_ADDR, icmp(type_, code, rest, quote(pkt) if body is None else body))
    delivered(t, before)


def udp_error(type_, code, rest=b"\0\0\0\0", size=20, df=False, dst=None, body=None,
              route=False):
    """A connected UDP socket of the dut sends a datagram; the peer answers with an error."""
    def action(t, send):
        s = dut_socket(t, socket.SOCK_DGRAM)
        if df:
            s.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
        s.bind((t.DUT_ADDR, 40000))
        s.connect((dst or t.GHOST, 50000))
        s.send(pattern(size))
        pkt = t.cap.wait_for(lambda p: p[9] == 17)
        answer(t, send, pkt, type_, code, rest, body(pkt) if body else None)
        t.obs["errqueue"] = errqueue(s)
        t.obs["so_error"] = so_error(s)
        if df:
            try:
                t.obs["ip_mtu"] = s.getsockopt(socket.IPPROTO_IP, IP_MTU)
            except OSError as e:
                t.obs["ip_mtu"] = e.errno
        if route:
            t.obs["route"] = route_get(t.DUT, dst or t.GHOST)
    return action


def mtu_rest(mtu):
    return struct.pack("!HH", 0, mtu)


def set_dut(**sysctls):
    def setup(t):
        for k, v in sysctls.items():
            sysctl(t.DUT, "net.ipv4." + k, v)
    return setup


def tcp_connect_error(type_, code, rest=b"\0\0\0\0"):
    """A non-blocking connect of the dut; the peer answers its SYN with an error."""
    def action(t, send):
        s = dut_socket(t, socket.SOCK_STREAM)
        s.setblocking(False)
        s.bind((t.DUT_ADDR, 40001))
        t.obs["connect"] = s.connect_ex((t.GHOST, 80))
        pkt = t.cap.wait_for(lambda p: p[9] == 6)
        answer(t, send, pkt, type_, code, rest)
        t.obs["so_error"] = so_error(s)
        t.obs["errqueue"] = errqueue(s)
        t.obs["route"] = route_get(t.DUT, t.GHOST)
        # A connect that survives the error retransmits its SYN after a second: abort it
        # now, or the capture depends on how long the run takes (the debug kernel's did).
        t.keep.remove(s)
        s.close()
    return action


def ping_socket_error(type_, code, rest=b"\0\0\0\0"):
    """An ICMP ("ping") socket of the dut sends an echo request; the peer answers with an
    error, which reaches the socket through ICMP's own err_handler (icmp_err -> ping_err)."""
    def action(t, send):
        s = dut_socket(t, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
        s.bind((t.DUT_ADDR, 0x777))
        s.sendto(echo(0, 1, pattern(16)), (t.GHOST, 0))
        pkt = t.cap.wait_for(lambda p: p[9] == 1)
        answer(t, send, pkt, type_, code, rest)
        t.obs["errqueue"] = errqueue(s)
        t.obs["so_error"] = so_error(s)
    return action


def raw_socket_error(proto, type_, code):
    """A raw socket of the dut sends a packet of protocol `proto`; raw_icmp_error delivers
    the error to it."""
    def action(t, send):
        s = dut_socket(t, socket.SOCK_RAW, proto)
        s.sendto(pattern(24), (t.GHOST, 0))
        pkt = t.cap.wait_for(lambda p: p[9] == proto)
        answer(t, send, pkt, type_, code)
        t.obs["errqueue"] = errqueue(s)
    return action


def echo_reply_error(type_, code, rest, dst_route):
    """The dut answers the peer's echo request; the peer sends an error about the reply,
    handled by icmp_err for messages the kernel sent (PMTU update, redirect)."""
    def action(t, send):
        send.icmp(t.DUT_ADDR, echo(0x55, 1, pattern(200)))
        reply = t.cap.wait_for(lambda p: p[9] == 1 and p[20] == 0)
        answer(t, send, reply, type_, code, rest)
        t.obs["route"] = route_get(t.DUT, dst_route)
    return action


REDIRECT_NET = "10.9.0.0/16"
REDIRECT_DST = "10.9.9.9"
NEW_GW = "10.0.1.3"


def redirect_setup(accept=1, secure=0, shared=1):
    def setup(t):
        sh(f"ip -n {t.DUT} route add {REDIRECT_NET} via {t.PEER_ADDR}")
        sh(f"ip -n {t.DUT} neigh replace {NEW_GW} lladdr 02:00:00:00:01:03 dev veth0 "
           "nud permanent")
        for conf in ("all", "veth0"):
            sysctl(t.DUT, f"net.ipv4.conf.{conf}.accept_redirects", accept)
            sysctl(t.DUT, f"net.ipv4.conf.{conf}.secure_redirects", secure)
            sysctl(t.DUT, f"net.ipv4.conf.{conf}.shared_media", shared)
    return setup


def redirect_action(t, send):
    udp_error(5, 1, socket.inet_aton(NEW_GW), dst=REDIRECT_DST)(t, send)
    t.obs["route"] = route_get(t.DUT, REDIRECT_DST)


# Tunnels whose outer packets go to the ghost address: errors about them are crafted by the
# peer and reach the tunnel's err_handler (gre_err, __udp4_lib_err's encapsulation lookup).
TUNNEL_DST = "10.0.8.1"


def gre_setup(t):
    """A GRE tunnel from the dut to the ghost (DF set on the outer header) carrying
    10.0.8.0/24."""
    sh(f"ip -n {t.DUT} link add gre1 type gre local {t.DUT_ADDR} remote {t.GHOST} ttl 64")
    sh(f"ip -n {t.DUT} addr add 10.0.7.1/30 dev gre1")
    sh(f"ip -n {t.DUT} link set gre1 up")
    sh(f"ip -n {t.DUT} route add 10.0.8.0/24 dev gre1")


def vxlan_setup(t):
    """A VXLAN device of the dut whose default destination is the ghost, DF set on the
    outer header and the source port from 5000-5001 (a hash of the flow picks it)."""
    sh(f"ip -n {t.DUT} link add vxlan0 address 02:00:00:00:08:02 type vxlan id 42 "
       f"local {t.DUT_ADDR} remote {t.GHOST} dstport 4789 srcport 5000 5001 df set ttl 64")
    sh(f"ip -n {t.DUT} addr add 10.0.8.2/24 dev vxlan0")
    sh(f"ip -n {t.DUT} link set vxlan0 up")
    sh(f"ip -n {t.DUT} neigh add {TUNNEL_DST} lladdr 02:00:00:00:08:01 dev vxlan0 nud permanent")


# The inner IP header's ID and checksum in the outer packets (the socket's IP IDs vary).
GRE_INNER = ((28, 30), (34, 36))
VXLAN_INNER = ((54, 56), (60, 62))
# For VXLAN also the outer UDP source port and checksum: on 7.3 the port is picked from the
# range by the packet's flow hash, which was seen to differ between the C and Rust runs of
# identical inner packets (5000 and 5001).
VXLAN_OUTER_PORT = ((20, 22), (26, 28))


def gue_setup(t):
    """A GUE receive port of the dut (fou). From then on, UDP hands an error about a
    datagram that no socket sent to the encapsulations' error handlers, gue_err among them."""
    sh(f"ip -n {t.DUT} fou add port 5555 gue")


def gue_carrying_icmp_error(t, send):
    """An error about a GUE datagram that carries ICMP (version 0, proto_ctype 1) from a port
    with no socket. UDP's error handler points the network header at the quoted packet and
    calls gue_err, which points the transport header at the error's ICMP header and calls
    ICMP's err_handler: the path on which the error handler cannot assume the headers of a
    received packet. It reads the UDP header after the quoted IP header as the quoted ICMP
    header: source port 0x0800 reads as an echo request, and the length (20) as its
    identifier, so ping_err hands the error to the dut's ping socket with that identifier.
    (UDP itself sets no path MTU and reports nothing for a host unreachable.)"""
    s = dut_socket(t, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
    s.bind(("0.0.0.0", 20))
    udp = struct.pack("!HHHH", 0x0800, 5555, 8 + 4 + 8, 0)
    gue = bytes([0, 1, 0, 0])
    pkt = ipv4(t.DUT_ADDR, t.GHOST, 17, udp + gue + pattern(8))
    answer(t, send, pkt, 3, 1)
    t.obs["errqueue"] = errqueue(s)
    t.obs["so_error"] = so_error(s)


def inner_checksum_ok(mask):
    """verify=: the inner header checksums that `mask` hides are right."""
    start = mask[0][0] - 4

    def check(r):
        for i, p in enumerate(r.raw_packets):
            if p[9] in (17, 47) and checksum(p[start:start + 20]) != 0:
                return f"packet {i}: its inner IP header checksum is wrong"
        return None
    return check


def tunnel_error(outer, type_, code, rest=b"\0\0\0\0", again=False):
    """A UDP socket of the dut sends through the tunnel; the peer answers the outer packet
    (IP protocol `outer[0]`, or UDP to port `outer[1]`) with an error. The route cache of
    the outer destination, and of the inner one, shows what the err_handler did; with
    `again`, a second datagram shows what the tunnel does with its error count (ip_tunnel
    reports a recent error to the sender as a link failure)."""
    def is_outer(p):
        if p[9] != outer[0]:
            return False
        return outer[1] is None or struct.unpack("!H", p[22:24])[0] == outer[1]

    def action(t, send):
        s = dut_socket(t, socket.SOCK_DGRAM)
        s.bind(("0.0.0.0", 40002))
        s.connect((TUNNEL_DST, 50000))
        s.send(pattern(1000))
        pkt = t.cap.wait_for(is_outer)
        answer(t, send, pkt, type_, code, rest)
        if again:
            s.send(pattern(100))
            t.cap.settle()
        t.obs["errqueue"] = errqueue(s)
        t.obs["so_error"] = so_error(s)
        t.obs["route outer"] = route_get(t.DUT, t.GHOST)
        if not again:
            # (After a link failure, whether the inner route shows its PMTU exception
            # depends on which cached route the second datagram took: it varies in C.)
            t.obs["route inner"] = route_get(t.DUT, TUNNEL_DST)
    return action


def nested_link_failure(t, send):
    """An icmp_send nested in the transmission of an echo reply, on the same CPU: the GRE
    tunnel has an error counted against it (a host unreachable about its outer packet), so
    ip_tunnel_xmit reports the next packet it carries, the dut's echo reply to 10.0.8.5, as a
    link failure; ipv4_link_failure calls __icmp_send about the reply while icmp_reply still
    holds this CPU's control socket. C's icmp_xmit_lock finds the socket busy (trylock) and
    sends nothing; the reply itself goes out."""
    tunnel_error((47, None), 3, 1)(t, send)
    before = mib(t.DUT)["IpInDelivers"]
    with FunctionCount("ipv4_link_failure") as fc:
        send.ip(ipv4("10.0.8.5", t.DUT_ADDR, 1, echo(0x57, 1, pattern(32))))
        delivered(t, before)
        t.cap.wait_for(lambda p: p[9] == 47 and p[24 + 9] == 1)
        t.obs["link failures"] = fc.count()


def one_link_failure(r):
    n = r.obs.get("link failures")
    return None if n == 1 else f"expected the reply to be reported as a link failure, got {n}"


def malformed(build):
    """The peer sends an error whose quoted part is built by `build(t)`."""
    def action(t, send):
        before = mib(t.DUT)["IpInDelivers"]
        send.icmp(t.DUT_ADDR, build(t))
        delivered(t, before)
    return action


def inner(t, proto=17, ihl=None, dst=None, payload=pattern(8)):
    return ipv4(t.DUT_ADDR, dst or t.GHOST, proto, payload, ihl=ihl)


# A TCP SYN of the dut: its initial sequence number, checksum and timestamp value differ
# from run to run (offsets from the IP header: seq, checksum, TSval).
SYN_MASK = ((24, 28), (36, 38), (48, 52))


def scenarios():
    s = []
    # Every destination unreachable code, and codes past the last (RFC 1812: 0..15).
    for code in list(range(16)) + [16, 20]:
        rest = mtu_rest(1400) if code == 4 else b"\0\0\0\0"
        s.append(Scenario(f"udp_dest_unreach_code_{code}", udp_error(3, code, rest)))
    s.append(Scenario("udp_source_quench", udp_error(4, 0)))
    s.append(Scenario("udp_time_exceeded_ttl", udp_error(11, 0)))
    s.append(Scenario("udp_time_exceeded_fragtime", udp_error(11, 1)))
    s.append(Scenario("udp_parameter_problem", udp_error(12, 0, bytes([12, 0, 0, 0]))))
    s.append(Scenario("udp_parameter_problem_code_1", udp_error(12, 1, bytes([5, 0, 0, 0]))))

    # TCP: an error during connect() aborts it (port unreachable is ECONNREFUSED).
    s.append(Scenario("tcp_connect_port_unreach", tcp_connect_error(3, 3), mask=SYN_MASK))
    s.append(Scenario("tcp_connect_host_unreach", tcp_connect_error(3, 1), mask=SYN_MASK))
    s.append(Scenario("tcp_syn_frag_needed", tcp_connect_error(3, 4, mtu_rest(1280)),
                      mask=SYN_MASK))

    # Ping and raw sockets.
    ping_range = set_dut(ping_group_range="0 2147483647")
    s.append(Scenario("ping_socket_host_unreach", ping_socket_error(3, 1), setup=ping_range))
    s.append(Scenario("ping_socket_time_exceeded", ping_socket_error(11, 0), setup=ping_range))
    s.append(Scenario("ping_socket_param_problem", ping_socket_error(12, 0, bytes([8, 0, 0, 0])),
                      setup=ping_range))
    s.append(Scenario("raw_socket_port_unreach", raw_socket_error(253, 3, 3)))
    s.append(Scenario("raw_socket_icmp_unreach", raw_socket_error(1, 3, 1)))

    # Path MTU: the route cache learns the MTU (locked at min_pmtu 552 below it), as
    # ip_no_pmtu_disc allows.
    for mode in (0, 1, 2, 3):
        s.append(Scenario(f"pmtu_1280_no_pmtu_disc_{mode}",
                          udp_error(3, 4, mtu_rest(1280), size=1400, df=True, route=True),
                          setup=set_dut(ip_no_pmtu_disc=mode)))
    s.append(Scenario("pmtu_500_locked_at_min_pmtu",
                      udp_error(3, 4, mtu_rest(500), size=1400, df=True, route=True)))
    s.append(Scenario("pmtu_tcp_no_pmtu_disc_3", tcp_connect_error(3, 4, mtu_rest(1280)),
                      setup=set_dut(ip_no_pmtu_disc=3), mask=SYN_MASK))

    # Redirects (RFC 1122 3.2.2.2), applied by ipv4_redirect as the settings allow.
    s.append(Scenario("redirect_accepted", redirect_action, setup=redirect_setup()))
    s.append(Scenario("redirect_refused_accept_redirects_0", redirect_action,
                      setup=redirect_setup(accept=0)))
    s.append(Scenario("redirect_refused_secure_redirects", redirect_action,
                      setup=redirect_setup(secure=1, shared=0)))

    # Errors about ICMP messages the kernel sent (icmp_err).
    s.append(Scenario("echo_reply_frag_needed", echo_reply_error(3, 4, mtu_rest(576), "10.0.1.1")))
    s.append(Scenario("echo_reply_redirect", echo_reply_error(5, 1, socket.inet_aton(NEW_GW),
                                                              "10.0.1.1"),
                      setup=redirect_setup()))

    # The same for a reply that leaves through a gateway: the redirect is applied.
    def far_echo_reply(t, send):
        send.ip(ipv4(REDIRECT_DST, t.DUT_ADDR, 1, echo(0x56, 1, pattern(64))))
        reply = t.cap.wait_for(lambda p: p[9] == 1 and p[20] == 0)
        answer(t, send, reply, 5, 1, socket.inet_aton(NEW_GW))
        t.obs["route"] = route_get(t.DUT, REDIRECT_DST)
    s.append(Scenario("echo_reply_redirect_via_gateway", far_echo_reply, setup=redirect_setup()))

    # Errors about tunnel packets reach the tunnel's err_handler: GRE learns the path MTU
    # and counts other errors against the tunnel; VXLAN's socket is found by its port.
    gre = dict(setup=gre_setup, mask=GRE_INNER, verify=inner_checksum_ok(GRE_INNER))
    vxlan = dict(setup=vxlan_setup, mask=VXLAN_OUTER_PORT + VXLAN_INNER,
                 verify=inner_checksum_ok(VXLAN_INNER))
    s.append(Scenario("gre_frag_needed", tunnel_error((47, None), 3, 4, mtu_rest(1200)), **gre))
    s.append(Scenario("gre_host_unreach_then_send", tunnel_error((47, None), 3, 1, again=True),
                      **gre))
    s.append(Scenario("vxlan_frag_needed", tunnel_error((17, 4789), 3, 4, mtu_rest(1200)),
                      **vxlan))
    s.append(Scenario("vxlan_port_unreach", tunnel_error((17, 4789), 3, 3), **vxlan))
    s.append(Scenario("gue_carrying_icmp_host_unreach", gue_carrying_icmp_error,
                      setup=in_order(gue_setup, set_dut(ping_group_range="0 2147483647"))))

    s.append(Scenario("echo_reply_nested_link_failure", nested_link_failure,
                      setup=gre_setup, sanity=one_link_failure, mask=GRE_INNER, verify=inner_checksum_ok(GRE_INNER)))

    # Malformed errors.
    s.append(Scenario("error_without_inner_header", malformed(lambda t: icmp(3, 3))))
    s.append(Scenario("error_inner_ihl_4", malformed(
        lambda t: icmp(3, 3, b"\0\0\0\0", inner(t, ihl=4)))))
    s.append(Scenario("error_inner_header_only", malformed(
        lambda t: icmp(3, 3, b"\0\0\0\0", inner(t)[:20]))))
    s.append(Scenario("error_inner_ipproto_raw", malformed(
        lambda t: icmp(3, 3, b"\0\0\0\0", inner(t, proto=255)))))
    # (With the check off, the error reaches UDP, which counts InErrors: no socket.)
    for bogus in (0, 1):
        s.append(Scenario(f"error_inner_broadcast_ignore_bogus_{bogus}", malformed(
            lambda t: icmp(3, 3, b"\0\0\0\0", inner(t, dst=t.BCAST))),
            setup=set_dut(icmp_ignore_bogus_error_responses=bogus), shared_counts=bool(bogus)))
    s.append(Scenario("redirect_too_short", malformed(
        lambda t: icmp(5, 1, socket.inet_aton(NEW_GW), pattern(12)))))
    s.append(Scenario("redirect_inner_header_only", malformed(
        lambda t: icmp(5, 1, socket.inet_aton(NEW_GW), inner(t)[:20]))))
    return s


def main():
    require_vm("rcv_errors")
    ktap = Ktap("rcv_errors: ICMP errors received, built-in C vs rust_icmp")
    run_differential(ktap, select(scenarios(), sys.argv[1:]), both=True)
    ktap.finish()


if __name__ == "__main__":
    main()
