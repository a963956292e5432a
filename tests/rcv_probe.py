#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""Differential tests of RFC 8335 PROBE (extended echo, ICMP types 42/43): interfaces named
by name, index, IPv4 and IPv6 address; answered, unknown and malformed; with
net.ipv4.icmp_echo_enable_probe on and off. Built-in C vs rust_icmp, same boot."""

import os
import socket
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))

from difftest import Scenario, run_differential, select  # noqa: E402
from icmptest import InNetns, Ktap, icmp, require_vm, sh, sysctl  # noqa: E402

DUT_V6 = "fd00::2"


def probe(obj, l_bit=True, seq=5, ext=b"\x20\x00\x00\x00"):
    """An extended echo request: identifier, sequence number with the L-bit (probe an
    interface of the receiving node), an RFC 4884 extension header, then `obj`."""
    rest = struct.pack("!HBB", 0x4242, seq, 1 if l_bit else 0)
    return icmp(42, 0, rest, ext + obj)


def iio(ctype, ident, length=None):
    """An Interface Identification Object (class 3) of class type `ctype`."""
    n = 4 + len(ident) if length is None else length
    return struct.pack("!HBB", n, 3, ctype) + ident


def by_name(name):
    return iio(1, name)


def by_index(i, width=4):
    return iio(2, i.to_bytes(width, "big"))


def by_addr(afi, addr, addrlen=None):
    return iio(3, struct.pack("!HBB", afi, len(addr) if addrlen is None else addrlen, 0) + addr)


def reply(code):
    """Sanity of the C run: one extended echo reply (43) with `code` (RFC 8335: 0 no error,
    1 malformed query, 2 no such interface)."""
    def check(r):
        if len(r.raw_packets) != 1:
            return f"expected one reply, got {len(r.raw_packets)} packets"
        p = r.raw_packets[0]
        got = (p[20], p[21])
        return None if got == (43, code) else f"expected type 43 code {code}, got {got}"
    return check


def no_reply(r):
    return f"expected no reply, got {len(r.raw_packets)}" if r.raw_packets else None


def setup(enable=1, ipv6=False):
    def f(t):
        sysctl(t.DUT, "net.ipv4.icmp_echo_enable_probe", enable)
        # A down interface without addresses, to see the state bits cleared.
        sh(f"ip -n {t.DUT} link add dummy0 type dummy")
        if ipv6:
            sysctl(t.DUT, "net.ipv6.conf.veth0.disable_ipv6", 0)
            sh(f"ip -n {t.DUT} addr add {DUT_V6}/64 dev veth0 nodad")
    return f


def send_probe(msg, dst=None):
    def action(t, send):
        send.icmp(dst or t.DUT_ADDR, msg)
    return action


def ext_echo_from_ping_socket(t, send):
    """A ping socket of the dut probes the peer's lo (ping sockets send extended echo
    requests too); the peer's kernel answers, and the dut hands the extended echo reply to
    the socket (ping_rcv)."""
    with InNetns(t.DUT):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
    t.keep.append(s)
    s.bind((t.DUT_ADDR, 0x322))
    s.settimeout(2)
    s.sendto(probe(by_name(b"lo")), (t.PEER_ADDR, 0))
    try:
        t.obs["reply"] = s.recv(200).hex()
    except socket.timeout:
        t.obs["reply"] = None


def ping_socket_setup(t):
    sysctl(t.DUT, "net.ipv4.ping_group_range", "0 2147483647")
    sysctl(t.PEER, "net.ipv4.icmp_echo_enable_probe", 1)


def socket_got_reply(r):
    """Sanity of the C run: the socket received an extended echo reply (43) with code 0."""
    reply = bytes.fromhex(r.obs.get("reply") or "")
    if reply[:2] != bytes([43, 0]):
        return f"the ping socket got {reply[:2].hex() or 'nothing'}, not an extended echo reply"
    return None


def scenarios():
    s = []
    v4 = socket.inet_aton
    v6 = socket.inet_pton(socket.AF_INET6, DUT_V6)
    cases = [
        ("name_veth0", by_name(b"veth0")),
        ("name_lo", by_name(b"lo")),
        ("name_down_dummy", by_name(b"dummy0")),
        ("name_unknown", by_name(b"nope0")),
        ("name_with_nul_padding", by_name(b"lo\0\0")),
        ("name_15_bytes_unknown", by_name(b"abcdefghijklmno")),
        ("index_1", by_index(1)),
        ("index_2", by_index(2)),
        ("index_unknown", by_index(999)),
        ("addr_ipv4_own", by_addr(1, v4("10.0.1.2"))),
        ("addr_ipv4_loopback", by_addr(1, v4("127.0.0.1"))),
        ("addr_ipv4_unknown", by_addr(1, v4("10.9.9.9"))),
        ("addr_ipv6_unknown", by_addr(2, socket.inet_pton(socket.AF_INET6, "fd00::99"))),
        # Malformed: RFC 8335 says answer with code 1 (Malformed Query).
        ("mal_name_16_bytes", by_name(b"abcdefghijklmnop")),
        ("mal_index_3_bytes", by_index(1, width=3)),
        ("mal_addr_ipv4_len_16", by_addr(1, v4("10.0.1.2"), addrlen=16)),
        ("mal_addr_afi_3", by_addr(3, v4("10.0.1.2"))),
        ("mal_addr_short", iio(3, b"\0\1")),
        ("mal_ctype_9", iio(9, b"abcd")),
        ("mal_length_4", iio(1, b"", length=4)),
        ("mal_length_25", iio(1, b"lo" + bytes(21), length=25)),
        ("mal_length_past_end", iio(1, b"lo", length=12)),
    ]
    for name, obj in cases:
        code = 1 if name.startswith("mal_") else 2 if name.endswith("unknown") else 0
        s.append(Scenario(f"probe_{name}", send_probe(probe(obj)), setup=setup(),
                          sanity=reply(code)))
    s.append(Scenario("probe_addr_ipv6_own", send_probe(probe(by_addr(2, v6))),
                      setup=setup(ipv6=True), sanity=reply(0)))
    s.append(Scenario("probe_no_extension", send_probe(icmp(42, 0, struct.pack("!HBB", 1, 5, 1))),
                      setup=setup(), sanity=reply(1)))
    s.append(Scenario("probe_l_bit_clear", send_probe(probe(by_name(b"lo"), l_bit=False)),
                      setup=setup(), sanity=no_reply))
    s.append(Scenario("probe_disabled", send_probe(probe(by_name(b"lo"))), setup=setup(enable=0),
                      sanity=no_reply))
    s.append(Scenario("probe_to_broadcast", lambda t, send: send.icmp(
        t.BCAST, probe(by_name(b"veth0"))), setup=setup(), sanity=reply(0)))
    s.append(Scenario("probe_echo_ignore_all", send_probe(probe(by_name(b"lo"))),
                      setup=lambda t: (setup()(t), sysctl(t.DUT, "net.ipv4.icmp_echo_ignore_all", 1)),
                      sanity=no_reply))
    s.append(Scenario("ext_echo_reply_no_socket", send_probe(icmp(43, 0, struct.pack("!HH", 1, 1),
                                                                  bytes(8))), setup=setup(),
                      sanity=no_reply))
    s.append(Scenario("ext_echo_reply_to_ping_socket", ext_echo_from_ping_socket,
                      setup=ping_socket_setup, sanity=socket_got_reply))
    return s


def main():
    require_vm("rcv_probe")
    ktap = Ktap("rcv_probe: RFC 8335 PROBE, built-in C vs rust_icmp")
    run_differential(ktap, select(scenarios(), sys.argv[1:]), both=True)
    ktap.finish()


if __name__ == "__main__":
    main()
