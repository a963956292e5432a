#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""Differential tests of IPsec on ICMP's paths: echo replies and errors routed through
transport-mode ESP (icmp_reply's output route, icmp_route_lookup's xfrm_lookup and its
XFRM_LOOKUP_ICMP relookup with the reverse of the offending flow), and icmp_rcv's input
policy check (xfrm4_policy_check, and the reverse check for ICMP errors that arrive over a
state flagged XFRM_STATE_ICMP). Built-in C vs rust_icmp, same boot.

Topology: peer 10.0.1.1 -- 10.0.1.2 dut. Both namespaces get the same two ESP states
(peer->dut SPI 0x1001 reqid 1, dut->peer SPI 0x2002 reqid 2) with null encryption and a
fixed HMAC-SHA256 key, so an ESP packet carries its payload in clear and is the same, byte
for byte, in both runs (fresh states: sequence numbers start at 1; no IV). Each scenario
installs its own policies (`ip xfrm policy`), in the dut and, for traffic that must arrive
over ESP, in the peer. The peer's capture sees the dut's ESP packets (protocol 50)."""

import os
import socket
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))

from difftest import Scenario, first_problem, in_order, run_differential, select  # noqa: E402
from icmptest import (IP_MTU_DISCOVER, IP_PMTUDISC_DO, IP_RECVERR, InNetns,  # noqa: E402
                      Ktap, RoutedTopology, Topology, delivered, echo, errqueue, icmp, ipv4,
                      mib, pattern, quote, require_vm, route_get, sh, so_error)

P, D, GHOST = Topology.PEER_ADDR, Topology.DUT_ADDR, Topology.GHOST
SPI_IN, SPI_OUT = 0x1001, 0x2002        # peer->dut (reqid 1), dut->peer (reqid 2)
AUTH_KEY = "0x" + bytes(range(1, 33)).hex()
ICV_LEN = 16                            # hmac(sha256) truncated to 128 bits
CRYPTO = f"enc 'ecb(cipher_null)' '' auth-trunc 'hmac(sha256)' {AUTH_KEY} {ICV_LEN * 8}"

# Policy pieces: selectors and templates (transport mode takes the flow's addresses).
ICMP_OUT = f"src {D}/32 dst {P}/32 proto icmp dir out"


def icmp_out(type_, code):
    """The dut's ICMP to the peer of one type and code (the ICMP selector's source and
    destination "ports"; iproute2 wants them before `dir`)."""
    return f"src {D}/32 dst {P}/32 proto icmp type {type_} code {code} dir out"


ICMP_IN = f"src {P}/32 dst {D}/32 proto icmp dir in"
PEER_ICMP_OUT = f"src {P}/32 dst {D}/32 proto icmp dir out"
TMPL_OUT = "tmpl proto esp reqid 2 mode transport"
TMPL_IN = "tmpl proto esp reqid 1 mode transport"
BLOCK = "action block"

# The peer's datagram to a closed port of the dut (fixed ports and IP ID), and the flow of
# the dut's answer the relookup decodes from it (xfrm_decode_session_reverse).
UDP_SPORT, UDP_DPORT = 40000, 9
UDP_REVERSE_OUT = f"src {D}/32 dst {P}/32 proto udp sport {UDP_DPORT} dport {UDP_SPORT} dir out"

# The dut's datagram that the peer answers with a crafted error (scenario group 5), and the
# flow the reverse check in icmp_rcv decodes from the quote: GHOST:50000 -> dut:40000.
DUT_SPORT, GHOST_PORT = 40000, 50000
QUOTED_REVERSE_IN = (f"src {GHOST}/32 dst {D}/32 proto udp sport {GHOST_PORT} "
                     f"dport {DUT_SPORT} dir in")


def sa_commands(flags_in=""):
    """The `ip xfrm state` lines of the two transport-mode ESP states: null cipher (no IV,
    payload in clear) and HMAC-SHA256 with a fixed key, so that the ICV is a function of the
    bytes alone. `flags_in` is added to the peer->dut state (e.g. `flag icmp`)."""
    return [f"xfrm state add src {P} dst {D} proto esp spi {SPI_IN:#x} reqid 1 "
            f"mode transport {CRYPTO} {flags_in}".strip(),
            f"xfrm state add src {D} dst {P} proto esp spi {SPI_OUT:#x} reqid 2 "
            f"mode transport {CRYPTO}"]


def ipsec(dut=(), peer=(), dut_sa_in_flags="", dut_states=True):
    """A setup: the two ESP states in both namespaces (the dut's peer->dut state with
    `dut_sa_in_flags`; none in the dut if not `dut_states`), then the policies `dut` and
    `peer` (arguments of `ip xfrm policy add`). The peer needs the states too, so that it
    decrypts what the dut sends it instead of dropping it (drops are compared
    system-wide)."""
    def setup(t):
        for ns, flags, with_sa, policies in ((t.PEER, "", True, peer),
                                             (t.DUT, dut_sa_in_flags, dut_states, dut)):
            cmds = sa_commands(flags) if with_sa else []
            cmds += [f"xfrm policy add {p}" for p in policies]
            for cmd in cmds:
                sh(f"ip -n {ns} {cmd}")
    return setup


def esp_decap(pkt):
    """(SPI, sequence number, next header, payload) of an ESP packet as our states build it:
    SPI and sequence number, the payload in clear (null cipher, no IV), then padding, pad
    length, next header and the 16-byte ICV. None for another protocol."""
    if len(pkt) < 20 or pkt[9] != 50:
        return None
    body = pkt[(pkt[0] & 15) * 4:]
    if len(body) < 8 + 2 + ICV_LEN:
        return None
    spi, seq = struct.unpack("!II", body[:8])
    padlen, nexthdr = body[-ICV_LEN - 2], body[-ICV_LEN - 1]
    return spi, seq, nexthdr, body[8:len(body) - ICV_LEN - 2 - padlen]


def icmp_seen(pkt):
    """What a packet of the dut is, for the sanity checks: ("esp", spi, type, code) for ICMP
    inside ESP, ("plain", type, code) for ICMP, ("esp", spi, "proto N") or ("proto N",) for
    anything else."""
    if pkt[9] == 1:
        h = (pkt[0] & 15) * 4
        return ("plain", pkt[h], pkt[h + 1])
    esp = esp_decap(pkt)
    if esp:
        spi, _seq, nexthdr, inner = esp
        if nexthdr == 1 and len(inner) >= 2:
            return ("esp", spi, inner[0], inner[1])
        return ("esp", spi, f"proto {nexthdr}")
    return (f"proto {pkt[9]}",)


def sent(*expected, ignore_udp=False):
    """Sanity of the C run: the dut's packets, as `icmp_seen` describes them, are exactly
    `expected` (ESP tuples name the dut->peer SPI); with `ignore_udp`, its plain UDP datagrams
    (what the peer answers with a crafted error) are left out."""
    def check(r):
        got = [icmp_seen(p) for p in r.raw_packets]
        if ignore_udp:
            got = [g for g in got if g != ("proto 17",)]
        return None if got == list(expected) else f"expected {list(expected)}, got {got}"
    return check


def counted_once(counter):
    """Sanity of the C run: `counter` moved by exactly 1."""
    def check(r):
        return None if r.mib.get(counter) == 1 else f"expected {counter} 1"
    return check


def dropped(reason):
    """Sanity of the C run: the drop reasons include `reason` (skb:kfree_skb)."""
    def check(r):
        return None if reason in r.drops else f"expected a {reason} drop, got {r.drops}"
    return check


def observed(key, value):
    """Sanity of the C run: the observation `key` (recorded by the action in topo.obs) is
    `value`."""
    def check(r):
        got = r.obs.get(key)
        return None if got == value else f"expected {key} {value!r}, got {got!r}"
    return check


def observed_contains(key, text):
    """Sanity of the C run: the observation `key` contains `text`."""
    def check(r):
        got = str(r.obs.get(key))
        return None if text in got else f"expected {text!r} in {key}, got {got!r}"
    return check


def socket_got_port_unreach(r):
    """Sanity of the C run: the dut's socket queued the peer's port unreachable
    (ECONNREFUSED, from ICMP 3/3 sent by the peer)."""
    got = [e[:4] + e[5:6] for e in r.obs.get("errqueue", [])]
    want = [("ECONNREFUSED", "icmp", 3, 3, P)]
    return None if got == want else f"expected error queue {want}, got {got}"


# ---------------------------------------------------------------------------------------
# Actions

def echo_request(t, send):
    """The peer's raw ICMP socket sends an echo request (fixed id, sequence and payload);
    its out policies decide whether it leaves over ESP."""
    send.icmp(t.DUT_ADDR, echo(0x5801, 1, pattern(56)))


def timestamp_request(t, send):
    """The peer sends a timestamp request (originate time fixed)."""
    send.icmp(t.DUT_ADDR, icmp(13, 0, struct.pack("!HH", 0x5802, 1), struct.pack("!III", 1, 0, 0)))


# The dut's clock in its timestamp reply (receive and transmit times) and the ICMP
# checksum over them, in a reply sent in clear.
TIMESTAMP_MASK = ((22, 24), (32, 40))
# Scenario.proof of an error __icmp_send (live-patched) decides not to send: no counter of
# the module moves, so the tracer must show the call, and the live patch enabled.
ICMP_SEND = {"__icmp_send": True}


def udp_to_closed_port(t, send):
    """The peer sends a datagram in clear (IP_HDRINCL: the peer's ICMP policies do not apply
    to it) to a closed port of the dut, which answers with a port unreachable through
    __icmp_send and icmp_route_lookup."""
    hdr = struct.pack("!HHHH", UDP_SPORT, UDP_DPORT, 8 + 32, 0)
    send.ip(ipv4(t.PEER_ADDR, t.DUT_ADDR, 17, hdr + pattern(32), ident=0x4343))


def error_about_dut_datagram(esp_expected):
    """A connected UDP socket of the dut (IP_RECVERR) sends to GHOST:50000, an address whose
    neighbour entry points at the peer; the peer, acting as a router, answers with a port
    unreachable quoting it, sent from its raw ICMP socket so that its ICMP out policy (if
    any) puts it in ESP. Records what reached the socket. `esp_expected`: the error arrives
    as ESP and the inner packet is delivered from a tasklet after the ESP packet was counted
    (xfrm_trans_queue), so IpInDelivers moves twice."""
    def action(t, send):
        with InNetns(t.DUT):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        t.keep.append(s)
        s.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
        s.bind((t.DUT_ADDR, DUT_SPORT))
        s.connect((t.GHOST, GHOST_PORT))
        s.send(pattern(20))
        pkt = t.cap.wait_for(lambda p: p[9] == 17)
        before = mib(t.DUT)["IpInDelivers"]
        send.icmp(t.DUT_ADDR, icmp(3, 3, b"\0\0\0\0", quote(pkt)))
        delivered(t, before, 2 if esp_expected else 1)
        t.obs["errqueue"] = errqueue(s)
        t.obs["so_error"] = so_error(s)
    return action


def frag_needed_about_esp(t, send):
    """The dut's UDP socket (DF) sends 1200 bytes to the peer over ESP; the peer, acting as a
    router on a narrower link, answers "fragmentation needed, MTU 1000" in clear, quoting the
    ESP packet. icmp_rcv hands it to ESP's err_handler (xfrm4_esp_err -> esp4_err), which
    finds the state by the quoted SPI and lowers the path MTU to the peer. (The peer takes
    the datagram on an open socket, so that it answers nothing itself.)"""
    with InNetns(t.PEER):
        sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    t.keep.append(sink)
    sink.bind((t.PEER_ADDR, ESP_UDP_PORT))
    with InNetns(t.DUT):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    t.keep.append(s)
    s.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
    s.bind((t.DUT_ADDR, DUT_SPORT))
    s.connect((t.PEER_ADDR, ESP_UDP_PORT))
    s.send(pattern(1200))
    pkt = t.cap.wait_for(lambda p: p[9] == 50)
    before = mib(t.DUT)["IpInDelivers"]
    send.icmp(t.DUT_ADDR, icmp(3, 4, struct.pack("!HH", 0, 1000), quote(pkt)))
    delivered(t, before)
    t.obs["route"] = route_get(t.DUT, t.PEER_ADDR)


ESP_UDP_PORT = 50001
UDP_OUT = f"src {D}/32 dst {P}/32 proto udp dport {ESP_UDP_PORT} dir out"
UDP_IN = f"src {D}/32 dst {P}/32 proto udp dport {ESP_UDP_PORT} dir in"


def ttl_exceeded_forwarded(t, send):
    """The peer sends a datagram for far with TTL 1 through the dut (RoutedTopology): the
    dut answers with time exceeded; the offending flow's reverse (far -> peer) is not local
    to the dut, so the relookup builds its route as an input route (the "Ugh!" branch)."""
    hdr = struct.pack("!HHHH", UDP_SPORT, UDP_DPORT, 8 + 32, 0)
    send.ip(ipv4(t.PEER_ADDR, t.FAR_ADDR, 17, hdr + pattern(32), ttl=1, ident=0x4344))


FAR_NET = RoutedTopology.FAR_ADDR.rsplit(".", 1)[0] + ".0/24"
FORWARDED_REVERSE_OUT = (f"src {FAR_NET} dst {P}/32 proto udp sport {UDP_DPORT} "
                         f"dport {UDP_SPORT} dir out")


# In tunnel mode the dut's inner IP header is inside the ESP payload: its IP ID and header
# checksum vary, and so does the ICV over them (time exceeded quoting 60 bytes: inner packet
# 88 bytes, padded to 92, ICV at 120..136).
TUNNEL_MASK = ((32, 34), (38, 40), (120, 136))


def tunnel_sa(t):
    """A tunnel-mode ESP state dut -> peer (SPI 0x3003, reqid 3) in both namespaces, for
    the forwarded flow's reverse: a security gateway's policy for the network behind it."""
    for ns in (t.PEER, t.DUT):
        sh(f"ip -n {ns} xfrm state add src {D} dst {P} proto esp spi 0x3003 reqid 3 "
           f"mode tunnel {CRYPTO}")


# ---------------------------------------------------------------------------------------

def scenarios():
    s = []
    esp_out = lambda type_, code: ("esp", SPI_OUT, type_, code)  # noqa: E731

    # 1. icmp_reply: the reply's output route (ip_route_output_key -> xfrm_lookup_route).
    s.append(Scenario("echo_reply_over_esp", echo_request,
                      setup=ipsec(dut=[f"{ICMP_OUT} {TMPL_OUT}"]), sanity=sent(esp_out(0, 0))))
    s.append(Scenario("echo_reply_blocked_by_out_policy", echo_request,
                      setup=ipsec(dut=[f"{ICMP_OUT} {BLOCK}"]),
                      quiet="the reply's route lookup fails with -EPERM (block policy)"))
    # No dut->peer state: xfrm_lookup_route turns -EREMOTE (larval drop) into a blackhole
    # route; the reply is counted, then discarded by the blackhole.
    s.append(Scenario("echo_reply_policy_without_state", echo_request,
                      setup=ipsec(dut=[f"{ICMP_OUT} {TMPL_OUT}"], dut_states=False),
                      sanity=first_problem(sent(), counted_once("IcmpOutEchoReps"))))
    # icmp_reply's flow has no ICMP type/code (0/0), whatever the reply: a policy selecting
    # type 0 blocks a timestamp reply, one selecting type 14 does not match it. (For the same
    # reason C counts the timestamp reply as IcmpOutEchoReps.)
    s.append(Scenario("timestamp_reply_policy_type_0_blocks", timestamp_request,
                      setup=ipsec(dut=[f"{icmp_out(0, 0)} {BLOCK}"]),
                      quiet="the reply's flow is type 0 code 0, which the block policy selects"))
    s.append(Scenario("timestamp_reply_policy_type_14_no_match", timestamp_request,
                      setup=ipsec(dut=[f"{icmp_out(14, 0)} {BLOCK}"]),
                      mask=TIMESTAMP_MASK, sanity=sent(("plain", 14, 0))))

    # 2. icmp_rcv's xfrm4_policy_check: requests that arrived over ESP, or in clear.
    request_esp = dict(peer=[f"{PEER_ICMP_OUT} {TMPL_IN}"])
    s.append(Scenario("echo_request_over_esp_reply_over_esp", echo_request,
                      setup=ipsec(dut=[f"{ICMP_IN} {TMPL_IN}", f"{ICMP_OUT} {TMPL_OUT}"],
                                  **request_esp),
                      sanity=sent(esp_out(0, 0))))
    s.append(Scenario("echo_request_over_esp_no_in_policy", echo_request,
                      setup=ipsec(**request_esp), sanity=sent(("plain", 0, 0))))
    s.append(Scenario("echo_request_plain_in_policy_requires_esp", echo_request,
                      setup=ipsec(dut=[f"{ICMP_IN} {TMPL_IN}"]),
                      sanity=dropped("XFRM_POLICY"),
                      quiet="the input policy requires ESP: icmp_rcv drops the request"))
    s.append(Scenario("echo_request_plain_in_policy_optional_esp", echo_request,
                      setup=ipsec(dut=[f"{ICMP_IN} {TMPL_IN} level use"]),
                      sanity=sent(("plain", 0, 0))))
    s.append(Scenario("echo_request_over_esp_in_policy_blocks", echo_request,
                      setup=ipsec(dut=[f"{ICMP_IN} {BLOCK}"], **request_esp),
                      sanity=dropped("XFRM_POLICY"),
                      quiet="a block input policy: icmp_rcv drops the request (no "
                            "XFRM_STATE_ICMP state)"))

    # 3. __icmp_send: the error's route has an out policy (first xfrm_lookup gives a bundle).
    s.append(Scenario("port_unreach_over_esp", udp_to_closed_port,
                      setup=ipsec(dut=[f"{ICMP_OUT} {TMPL_OUT}"]), sanity=sent(esp_out(3, 3))))
    s.append(Scenario("port_unreach_policy_selects_its_type_code", udp_to_closed_port,
                      setup=ipsec(dut=[f"{icmp_out(3, 3)} {TMPL_OUT}"]),
                      sanity=sent(esp_out(3, 3))))
    s.append(Scenario("port_unreach_policy_for_other_code_plain", udp_to_closed_port,
                      setup=ipsec(dut=[f"{icmp_out(3, 1)} {TMPL_OUT}"]),
                      sanity=sent(("plain", 3, 3))))
    s.append(Scenario("port_unreach_policy_without_state", udp_to_closed_port,
                      setup=ipsec(dut=[f"{ICMP_OUT} {TMPL_OUT}"], dut_states=False),
                      quiet="xfrm_lookup fails with -EREMOTE (no state, larval drop): "
                            "icmp_route_lookup returns the error, nothing is sent",
                      proof=ICMP_SEND))

    # 4. The XFRM_LOOKUP_ICMP relookup with the reverse of the offending flow (fl4_dec:
    # dut:9 -> peer:40000 UDP), reached when the first lookup is refused (-EPERM) or finds no
    # policy (the plain route, to a non-local address). It takes only a policy flagged
    # XFRM_POLICY_ICMP (`flag icmp`); without one it fails with -ENOENT and the first
    # lookup's result stands. When the relookup's route is used, icmp_route_lookup copies
    # fl4_dec over the error's flow, and ip_output counts the message by that flow's ICMP
    # type (the icmp socket is SOCK_RAW), which is the UDP flow's port bytes: C counts
    # IcmpMsgOutType156 (40000 = 0x9c40), not DestUnreachs; both runs must agree.
    block_icmp = f"{ICMP_OUT} {BLOCK}"
    s.append(Scenario("relookup_after_block_reverse_esp", udp_to_closed_port,
                      setup=ipsec(dut=[block_icmp, f"{UDP_REVERSE_OUT} flag icmp {TMPL_OUT}"]),
                      sanity=sent(esp_out(3, 3))))
    s.append(Scenario("relookup_after_block_reverse_allow_plain", udp_to_closed_port,
                      setup=ipsec(dut=[block_icmp, f"{UDP_REVERSE_OUT} flag icmp"]),
                      sanity=sent(("plain", 3, 3))))
    s.append(Scenario("relookup_after_block_reverse_without_icmp_flag", udp_to_closed_port,
                      setup=ipsec(dut=[block_icmp, f"{UDP_REVERSE_OUT} {TMPL_OUT}"]),
                      quiet="the relookup ignores a policy without XFRM_POLICY_ICMP (-ENOENT) "
                            "and the first lookup was refused",
                      proof=ICMP_SEND))
    s.append(Scenario("relookup_after_block_no_reverse_policy", udp_to_closed_port,
                      setup=ipsec(dut=[block_icmp]),
                      quiet="no policy for the reverse flow (-ENOENT) and the first lookup "
                            "was refused",
                      proof=ICMP_SEND))
    s.append(Scenario("relookup_after_block_reverse_blocks", udp_to_closed_port,
                      setup=ipsec(dut=[block_icmp, f"{UDP_REVERSE_OUT} flag icmp {BLOCK}"]),
                      quiet="the relookup is refused too (-EPERM)",
                      proof=ICMP_SEND))
    s.append(Scenario("relookup_no_icmp_policy_reverse_esp", udp_to_closed_port,
                      setup=ipsec(dut=[f"{UDP_REVERSE_OUT} flag icmp {TMPL_OUT}"]),
                      sanity=sent(esp_out(3, 3))))
    s.append(Scenario("relookup_no_icmp_policy_reverse_without_icmp_flag", udp_to_closed_port,
                      setup=ipsec(dut=[f"{UDP_REVERSE_OUT} {TMPL_OUT}"]),
                      sanity=sent(("plain", 3, 3))))
    s.append(Scenario("relookup_after_block_reverse_without_state", udp_to_closed_port,
                      setup=ipsec(dut=[block_icmp, f"{UDP_REVERSE_OUT} flag icmp {TMPL_OUT}"],
                                  dut_states=False),
                      quiet="the relookup fails with -EREMOTE (no state) and the first "
                            "lookup was refused",
                      proof=ICMP_SEND))
    # The forwarded case: the reverse flow far -> peer is not local, its route is an input
    # route computed on the offending packet; a tunnel-mode policy protects it. (The peer's
    # capture sees the ESP packet (next header 4, IPIP), then the inner packet again, which
    # the peer's tunnel-mode input re-injects on veth0 before dropping it: no input policy.)
    s.append(Scenario("relookup_forwarded_reverse_tunnel", ttl_exceeded_forwarded,
                      topology=RoutedTopology,
                      setup=in_order(tunnel_sa, ipsec(dut=[
                          f"{FORWARDED_REVERSE_OUT} flag icmp tmpl src {D} dst {P} proto esp "
                          "reqid 3 mode tunnel"])),
                      mask=TUNNEL_MASK, sanity=sent(("esp", 0x3003, "proto 4"), ("plain", 11, 0))))
    s.append(Scenario("relookup_forwarded_after_block_reverse_allow", ttl_exceeded_forwarded,
                      topology=RoutedTopology,
                      setup=ipsec(dut=[block_icmp, f"{FORWARDED_REVERSE_OUT} flag icmp"]),
                      sanity=sent(("plain", 11, 0))))

    # 5. icmp_rcv's reverse check: the dut's ICMP input policy blocks the peer's error, which
    # arrives over ESP; a state flagged XFRM_STATE_ICMP lets it be checked against the input
    # policy of the quoted packet's reverse (GHOST:50000 -> dut:40000) instead.
    error_esp = dict(peer=[f"{PEER_ICMP_OUT} {TMPL_IN}"])
    block_in = f"{ICMP_IN} {BLOCK}"
    refused = socket_got_port_unreach
    nothing = first_problem(observed("errqueue", []), observed("so_error", 0))
    s.append(Scenario("rcv_error_esp_state_flag_icmp_reverse_esp",
                      error_about_dut_datagram(True),
                      setup=ipsec(dut=[block_in, f"{QUOTED_REVERSE_IN} {TMPL_IN}"],
                                  dut_sa_in_flags="flag icmp", **error_esp),
                      sanity=first_problem(refused, sent(ignore_udp=True))))
    s.append(Scenario("rcv_error_esp_state_flag_icmp_no_reverse_policy",
                      error_about_dut_datagram(True),
                      setup=ipsec(dut=[block_in], dut_sa_in_flags="flag icmp", **error_esp),
                      sanity=first_problem(refused, sent(ignore_udp=True))))
    s.append(Scenario("rcv_error_esp_state_without_flag_icmp",
                      error_about_dut_datagram(True),
                      setup=ipsec(dut=[block_in, f"{QUOTED_REVERSE_IN} {TMPL_IN}"],
                                  **error_esp),
                      sanity=first_problem(nothing, dropped("XFRM_POLICY")),
                      quiet="the error is dropped by the input policy check"))
    s.append(Scenario("rcv_error_esp_state_flag_icmp_reverse_blocks",
                      error_about_dut_datagram(True),
                      setup=ipsec(dut=[block_in, f"{QUOTED_REVERSE_IN} {BLOCK}"],
                                  dut_sa_in_flags="flag icmp", **error_esp),
                      sanity=first_problem(nothing, dropped("XFRM_POLICY")),
                      quiet="the reverse check refuses the quoted flow"))
    # 6. An error about an ESP packet the dut sent: ESP's err_handler learns the path MTU.
    s.append(Scenario("frag_needed_about_esp_packet", frag_needed_about_esp,
                      setup=ipsec(dut=[f"{UDP_OUT} {TMPL_OUT}"],
                                  peer=[f"{UDP_IN} {TMPL_OUT}"]),
                      sanity=observed_contains("route", "mtu 1000")))
    s.append(Scenario("rcv_error_plain_in_policy_blocks", error_about_dut_datagram(False),
                      setup=ipsec(dut=[block_in, f"{QUOTED_REVERSE_IN} {TMPL_IN}"],
                                  dut_sa_in_flags="flag icmp"),
                      sanity=first_problem(nothing, dropped("XFRM_POLICY")),
                      quiet="an error in clear has no state, so no reverse check"))
    return s


def main():
    require_vm("xfrm")
    ktap = Ktap("xfrm: IPsec (ESP) on ICMP's paths, built-in C vs rust_icmp")
    run_differential(ktap, select(scenarios(), sys.argv[1:]), both=True)
    ktap.finish()


if __name__ == "__main__":
    main()
