#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""Differential tests of the less common ways into icmp_rcv: the checksum states a driver
or tunnel leaves (CHECKSUM_NONE, _PARTIAL, _COMPLETE, and _UNNECESSARY at csum_level 0 and 1,
which NIC drivers set and a tc BPF program stands in for here),
the IPsec input policy and its exception for ICMP errors (XFRM_STATE_ICMP), fwmark_reflect,
errors about tunnel packets, and RFC 4884 extensions reported to sockets. Built-in C vs
rust_icmp, same boot."""

import fcntl
import os
import select
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))

from bpf import TCX_PASS, insn, tcx_attach  # noqa: E402
import difftest  # noqa: E402
from difftest import Scenario, run_differential  # noqa: E402
from icmptest import (IP_RECVERR, FunctionCount, InNetns, Ktap, Topology, echo,  # noqa: E402
                      delivered, errqueue, icmp, mask_ipv4, mib, pattern, quote, require_vm, route_get,
                      sh, so_error, sysctl)

CSUM_FN = "__skb_checksum_complete"


# ---------------------------------------------------------------------------------------
# Checksum states

class GreTopology(Topology):
    """peer and dut also joined by a GRE tunnel with checksums (10.0.3.1 -- 10.0.3.2): the
    dut validates the GRE checksum, which leaves the inner packet CHECKSUM_COMPLETE."""

    PEER_CAPTURE_DEV = "gre1"
    GRE_PEER, GRE_DUT = "10.0.3.1", "10.0.3.2"

    def __enter__(self):
        super().__enter__()
        for ns, local, remote, addr in ((self.PEER, self.PEER_ADDR, self.DUT_ADDR, self.GRE_PEER),
                                        (self.DUT, self.DUT_ADDR, self.PEER_ADDR, self.GRE_DUT)):
            sh(f"ip -n {ns} link add gre1 type gre local {local} remote {remote} csum")
            sh(f"ip -n {ns} addr add {addr}/30 dev gre1")
            sh(f"ip -n {ns} link set gre1 up")
        return self


def gre_echo(csum=None):
    def action(t, send):
        with FunctionCount(CSUM_FN) as fc:
            before = mib(t.DUT)["IpInDelivers"]
            send.icmp(t.GRE_DUT, icmp(8, 0, struct.pack("!HH", 0x66, 1), pattern(40), csum=csum))
            delivered(t, before)
            t.cap.settle()
            t.obs["checksum_complete_calls"] = fc.count()
    return action


TUNSETIFF, IFF_TAP, IFF_NO_PI, IFF_VNET_HDR = 0x400454CA, 0x0002, 0x1000, 0x4000
VIRTIO_NET_HDR_F_NEEDS_CSUM = 1
TAP_DUT, TAP_FAKE_PEER = "10.0.2.2", "10.0.2.1"
TAP_FAKE_MAC = bytes.fromhex("020000000201")


BPF_FUNC_CSUM_LEVEL, BPF_CSUM_LEVEL_INC = 135, 1


def attach_csum_unnecessary(ifname, incs):
    """Attaches to `ifname`'s ingress (tcx, in the calling thread's namespace) a program that
    calls bpf_csum_level(skb, BPF_CSUM_LEVEL_INC) `incs` times, as a NIC driver that verified
    `incs` checksums would mark the packet: CHECKSUM_NONE becomes CHECKSUM_UNNECESSARY with
    csum_level `incs - 1`. Returns the link's fd; closing it detaches the program."""
    insns = insn(0xbf, 6, 1)                                   # r6 = r1 (the skb)
    for _ in range(incs):
        insns += insn(0xbf, 1, 6)                              # r1 = r6
        insns += insn(0xb7, 2, imm=BPF_CSUM_LEVEL_INC)         # r2 = BPF_CSUM_LEVEL_INC
        insns += insn(0x85, imm=BPF_FUNC_CSUM_LEVEL)           # call bpf_csum_level
    insns += insn(0xb7, 0, imm=TCX_PASS) + insn(0x95)         # return TCX_PASS
    return tcx_attach(insns, "csum_verified", ifname)


def tap_echo(partial, csum=None, unnecessary=0):
    """The test writes an echo request into a TAP device of the dut, with a virtio-net
    header that either asks for the ICMP checksum to be completed later (NEEDS_CSUM: the
    packet arrives CHECKSUM_PARTIAL, whose checksum is trusted like CHECKSUM_UNNECESSARY's)
    or says nothing (CHECKSUM_NONE), and reads back what the dut sends.

    CHECKSUM_UNNECESSARY comes only from NIC drivers (tun ignores the DATA_VALID flag on
    input, and veth and loopback keep the sender's state), so with `unnecessary` = n a tc
    program on the TAP's ingress marks n checksums verified (csum_level n - 1), as such a
    driver would."""
    def action(t, send):
        with InNetns(t.DUT):
            fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", b"tap0", IFF_TAP | IFF_NO_PI | IFF_VNET_HDR))
        sh(f"ip -n {t.DUT} -batch -", input="\n".join([
            f"addr add {TAP_DUT}/24 dev tap0", "link set tap0 up",
            f"neigh replace {TAP_FAKE_PEER} lladdr 02:00:00:00:02:01 dev tap0 nud permanent"]) + "\n")
        link = None
        if unnecessary:
            with InNetns(t.DUT):
                link = attach_csum_unnecessary("tap0", unnecessary)
        dut_mac = bytes.fromhex(sh(f"ip -n {t.DUT} -br link show tap0").split()[2].replace(":", ""))
        time.sleep(0.2)
        while True:  # drop what the dut sent when the link came up
            try:
                os.read(fd, 70000)
            except BlockingIOError:
                break
        from icmptest import ipv4
        pkt = ipv4(TAP_FAKE_PEER, TAP_DUT, 1,
                   icmp(8, 0, struct.pack("!HH", 0x67, 1), pattern(40), csum=csum))
        if partial:   # the ICMP checksum field starts 14 + 20 + 2 bytes into the frame
            vnet = struct.pack("=BBHHHH", VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 0, 0, 34, 2)
        else:
            vnet = bytes(10)
        frame = dut_mac + TAP_FAKE_MAC + b"\x08\x00" + pkt
        with FunctionCount(CSUM_FN) as fc:
            before = mib(t.DUT)["IpInDelivers"]
            os.write(fd, vnet + frame)
            delivered(t, before)
            t.obs["checksum_complete_calls"] = fc.count()
        out = []
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            r, _, _ = select.select([fd], [], [], 0.1)
            if r:
                data = os.read(fd, 70000)[10:]
                if data[12:14] == b"\x08\x00":
                    out.append(mask_ipv4(data[14:]).hex())
        t.obs["tap_replies"] = out
        if link is not None:
            os.close(link)
        os.close(fd)
    return action


def trusted(result):
    """Sanity of a CHECKSUM_UNNECESSARY run: the checksum was not computed, and the request
    (even one with a wrong checksum) was answered."""
    if result.obs.get("checksum_complete_calls") != 0:
        return f"{CSUM_FN} ran {result.obs.get('checksum_complete_calls')} times: not UNNECESSARY"
    if len(result.obs.get("tap_replies", [])) != 1:
        return f"{len(result.obs.get('tap_replies', []))} replies, expected 1"
    return None


# ---------------------------------------------------------------------------------------
# IPsec

ROUTER_NET = "10.2.0.0/16"
FAR = "10.2.0.5"


def xfrm_setup(icmp_flag=True, dut_policy=True):
    """An ESP tunnel (null cipher) from the peer to the dut carries ICMP from 10.0.1.1. The
    dut's input policy covers only 10.2.0.0/16, whose packets must come through the tunnel,
    so an error from 10.0.1.1 fails the policy and is accepted only through
    XFRM_STATE_ICMP and the reverse check of the packet it quotes."""
    def setup(t):
        flag = " flag icmp" if icmp_flag else ""
        for ns in (t.PEER, t.DUT):
            sh(f"ip -n {ns} xfrm state add src {t.PEER_ADDR} dst {t.DUT_ADDR} proto esp spi 0x100 "
               f"mode tunnel enc cipher_null '' auth digest_null ''{flag}")
        sh(f"ip -n {t.PEER} xfrm policy add src {t.PEER_ADDR} dst {t.DUT_ADDR} proto icmp dir out "
           f"tmpl src {t.PEER_ADDR} dst {t.DUT_ADDR} proto esp mode tunnel")
        if dut_policy:
            sh(f"ip -n {t.DUT} xfrm policy add src {ROUTER_NET} dst {t.DUT_ADDR} dir in "
               f"tmpl src {t.PEER_ADDR} dst {t.DUT_ADDR} proto esp mode tunnel")
        sh(f"ip -n {t.DUT} route add {ROUTER_NET} via {t.PEER_ADDR}")
    return setup


def dut_udp_error(dst, type_=3, code=3, rfc4884=False, body=None, rest=b"\0\0\0\0", proto=17):
    """A connected UDP socket of the dut sends to `dst`; the peer answers with an error."""
    def action(t, send):
        with InNetns(t.DUT):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        t.keep.append(s)
        s.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
        if rfc4884:
            s.setsockopt(socket.IPPROTO_IP, 26, 1)  # IP_RECVERR_RFC4884
        s.bind((t.DUT_ADDR, 40002))
        s.connect((dst, 50000))
        s.send(pattern(64))
        pkt = t.cap.wait_for(lambda p: p[9] == proto)
        before = mib(t.DUT)["IpInDelivers"]
        send.icmp(t.DUT_ADDR, icmp(type_, code, rest, body(pkt) if body else quote(pkt)))
        delivered(t, before)
        t.obs["errqueue"] = errqueue(s)
        t.obs["so_error"] = so_error(s)
    return action


def plain_icmp_to_policy(t, send):
    """An echo request in clear from inside 10.2.0.0/16, whose policy demands ESP."""
    from icmptest import ipv4
    send.ip(ipv4("10.2.0.9", t.DUT_ADDR, 1, echo(0x68, 1, pattern(16))))


def xfrm_default_block(t):
    """No IPsec policy or state at all, and the dut's default input policy "block": the
    default alone decides, and icmp_rcv's policy check refuses every message."""
    sh(f"ip -n {t.DUT} xfrm policy setdefault in block")


def plain_echo(t, send):
    send.icmp(t.DUT_ADDR, echo(0x6a, 1, pattern(16)))


# ---------------------------------------------------------------------------------------
# RFC 4884: "original datagram" length in the error, and an extension structure after it

def rfc4884_body(valid=True, version=2):
    def body(pkt):
        orig = pkt[:128].ljust(128, b"\0")
        obj = struct.pack("!HBB", 8, 1, 1) + b"\0\0\0\x2a"       # a 4-byte object
        ext = struct.pack("!BBH", version << 4, 0, 0) + obj
        from icmptest import checksum
        c = checksum(ext) if valid else 0x1234
        ext = ext[:2] + struct.pack("!H", c) + ext[4:]
        return orig + ext
    return body


def rfc4884_rest(words=32):
    return struct.pack("!BBH", 0, words, 0)


# ---------------------------------------------------------------------------------------

def fwmark_setup(reflect):
    """Echo requests from the peer get mark 0x42 (nftables); replies marked the same are
    routed to an unreachable route by a fwmark rule, so the reply is sent only if
    IP4_REPLY_MARK does not reflect the mark."""
    def setup(t):
        sysctl(t.DUT, "net.ipv4.fwmark_reflect", reflect)
        sh(f"ip netns exec {t.DUT} nft -f -", input="""
table ip rust_icmp_test {
  chain pre {
    type filter hook prerouting priority 0;
    icmp type echo-request meta mark set 0x42
  }
}
""")
        sh(f"ip -n {t.DUT} rule add fwmark 0x42 table 100")
        sh(f"ip -n {t.DUT} route add unreachable {t.PEER_ADDR} table 100")
    return setup


def ipip_setup(t):
    sh(f"ip -n {t.DUT} link add ipip1 type ipip local {t.DUT_ADDR} remote {t.GHOST} pmtudisc")
    sh(f"ip -n {t.DUT} addr add 10.0.9.2/30 dev ipip1")
    sh(f"ip -n {t.DUT} link set ipip1 up")


def ipip_error(type_, code, rest):
    def action(t, send):
        dut_udp_error("10.0.9.1", type_, code, rest=rest, proto=4)(t, send)
        t.obs["route"] = route_get(t.DUT, t.GHOST)
    return action


def scenarios():
    s = []
    # Checksum states.
    s.append(Scenario("csum_complete_gre_good", gre_echo(), topology=GreTopology))
    s.append(Scenario("csum_complete_gre_bad", gre_echo(csum=0xbad0), topology=GreTopology))
    s.append(Scenario("csum_partial_tap_good", tap_echo(True)))
    s.append(Scenario("csum_partial_tap_bad", tap_echo(True, csum=0xbad0)))
    s.append(Scenario("csum_none_tap_good", tap_echo(False)))
    s.append(Scenario("csum_none_tap_bad", tap_echo(False, csum=0xbad0)))
    s.append(Scenario("csum_unnecessary_good", tap_echo(False, unnecessary=1), sanity=trusted))
    s.append(Scenario("csum_unnecessary_bad", tap_echo(False, csum=0xbad0, unnecessary=1),
                      sanity=trusted))
    s.append(Scenario("csum_unnecessary_level1_bad",
                      tap_echo(False, csum=0xbad0, unnecessary=2), sanity=trusted))

    # IPsec input policy. A message the policy refuses is dropped before icmp_rcv counts it.
    def policy_drop(r):
        return None if "XFRM_POLICY" in r.drops else f"expected an XFRM_POLICY drop: {r.drops}"

    s.append(Scenario("xfrm_icmp_error_reverse_policy", dut_udp_error(FAR),
                      setup=xfrm_setup(icmp_flag=True)))
    s.append(Scenario("xfrm_icmp_error_no_icmp_flag", dut_udp_error(FAR),
                      setup=xfrm_setup(icmp_flag=False), sanity=policy_drop))
    s.append(Scenario("xfrm_plain_icmp_refused", plain_icmp_to_policy, setup=xfrm_setup(),
                      sanity=policy_drop))
    s.append(Scenario("xfrm_icmp_error_no_policy", dut_udp_error(FAR),
                      setup=xfrm_setup(dut_policy=False), sanity=policy_drop))
    s.append(Scenario("xfrm_default_block_no_policy", plain_echo,
                      setup=xfrm_default_block, sanity=policy_drop))

    # IP4_REPLY_MARK.
    for reflect in (0, 1):
        s.append(Scenario(f"fwmark_reflect_{reflect}", lambda t, send: send.icmp(
            t.DUT_ADDR, echo(0x69, 1, pattern(8))), setup=fwmark_setup(reflect)))

    # Errors about tunnel packets go to the tunnel's err_handler.
    # (The encapsulated packet's IP ID and header checksum vary too.)
    inner_ip = ((24, 26), (30, 32))
    s.append(Scenario("ipip_frag_needed", ipip_error(3, 4, struct.pack("!HH", 0, 1300)),
                      setup=ipip_setup, mask=inner_ip))
    s.append(Scenario("ipip_port_unreach", ipip_error(3, 3, b"\0\0\0\0"), setup=ipip_setup,
                      mask=inner_ip))

    # RFC 4884 extensions, as IP_RECVERR_RFC4884 reports them.
    s.append(Scenario("rfc4884_valid", dut_udp_error(
        Topology.GHOST, 3, 1, rfc4884=True, body=rfc4884_body(), rest=rfc4884_rest())))
    s.append(Scenario("rfc4884_bad_checksum", dut_udp_error(
        Topology.GHOST, 3, 1, rfc4884=True, body=rfc4884_body(valid=False), rest=rfc4884_rest())))
    s.append(Scenario("rfc4884_version_1", dut_udp_error(
        Topology.GHOST, 3, 1, rfc4884=True, body=rfc4884_body(version=1), rest=rfc4884_rest())))
    s.append(Scenario("rfc4884_short_length", dut_udp_error(
        Topology.GHOST, 11, 0, rfc4884=True, body=rfc4884_body(), rest=rfc4884_rest(8))))
    return s


def bpf_unavailable():
    """Why the CHECKSUM_UNNECESSARY scenarios cannot run (None if they can): they need
    bpf(2) and tcx (CONFIG_BPF_SYSCALL, CONFIG_NET_XGRESS: the default kernel has them, the
    debug kernel does not)."""
    try:
        os.close(attach_csum_unnecessary("lo", 1))
    except (OSError, RuntimeError) as e:
        return f"environment: no tc BPF program on this kernel ({e})"
    return None


def main():
    require_vm("rcv_paths")
    ktap = Ktap("rcv_paths: checksum states, IPsec, marks, tunnels, RFC 4884; C vs rust_icmp")
    todo, skipped = difftest.select(scenarios(), sys.argv[1:]), []
    reason = bpf_unavailable()
    if reason:
        skipped = [(sc.name, reason) for sc in todo if sc.name.startswith("csum_unnecessary")]
        todo = [sc for sc in todo if not sc.name.startswith("csum_unnecessary")]
    run_differential(ktap, todo, skipped, both=True)
    ktap.finish()


if __name__ == "__main__":
    main()
