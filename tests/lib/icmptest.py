# SPDX-License-Identifier: GPL-2.0
"""Helpers for rust_icmp's tests: namespaces, packets, captures, counters, KTAP.

Everything here runs as root inside the test VM (qemu/run). The differential harness
(`difftest.py`) is built on it: a scenario runs once with the kernel's built-in ICMP code
and once with rust_icmp loaded, and what the two runs did is compared.
"""

import ctypes
import errno
import json
import os
import select
import socket
import struct
import subprocess
import sys
import time

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODULE = os.environ.get("RUST_ICMP_MODULE") or os.path.join(TOP, "rust_icmp.ko")
# As tests/lib.sh: loaded with its counters in /proc/net/rust_icmp, the proof that Rust ran.
# Read when the module is inserted: difftest.run_differential sets it for each Rust run.
MODULE_PARAMS = os.environ.get("RUST_ICMP_PARAMS", "mirror=1")
TRACING = "/sys/kernel/tracing"

# ---------------------------------------------------------------------------------------
# KTAP output (kselftest conventions: exit 0 pass, 1 fail, 4 skip)

KSFT_PASS, KSFT_FAIL, KSFT_SKIP = 0, 1, 4


class Ktap:
    """Prints a KTAP/TAP stream, kselftest's `# Totals:` line and the summary line
    `N passed, N failed, N skipped` (last: tests/run_all.sh reads it)."""

    def __init__(self, name):
        self.name = name
        self.n = 0
        self.passed = self.failed = self.skipped = 0
        print("TAP version 13", flush=True)
        print(f"# {name}", flush=True)

    def plan(self, count):
        print(f"1..{count}", flush=True)

    def diag(self, text):
        for line in str(text).splitlines() or [""]:
            print(f"# {line}", flush=True)

    def result(self, ok, name, diag=None):
        self.n += 1
        if diag and not ok:
            self.diag(diag)
        print(f"{'ok' if ok else 'not ok'} {self.n} {name}", flush=True)
        if ok:
            self.passed += 1
        else:
            self.failed += 1
        return ok

    def skip(self, name, reason):
        self.n += 1
        self.skipped += 1
        print(f"ok {self.n} {name} # SKIP {reason}", flush=True)

    def finish(self):
        print_totals(self.passed, self.failed, self.skipped)
        if self.failed:
            sys.exit(KSFT_FAIL)
        if self.skipped and not self.passed:
            sys.exit(KSFT_SKIP)
        sys.exit(KSFT_PASS)


def print_totals(passed, failed, skipped):
    """kselftest's `# Totals:` line, then `N passed, N failed[, N skipped]`, the last line
    of every test's output."""
    print(f"# Totals: pass:{passed} fail:{failed} xfail:0 xpass:0 skip:{skipped} error:0")
    line = f"{passed} passed, {failed} failed"
    if skipped:
        line += f", {skipped} skipped"
    print(line, flush=True)


def require_vm(name):
    """Skips the whole test unless it runs in the test VM (it loads modules, makes netns)."""
    if os.environ.get("RUST_ICMP_VM") != "1" and os.environ.get("RUST_ICMP_FORCE") != "1":
        print("TAP version 13\n1..0 # SKIP %s: run it in the test VM (qemu/run), or set "
              "RUST_ICMP_FORCE=1 on a kernel built by this project" % name)
        print_totals(0, 0, 1)
        sys.exit(KSFT_SKIP)


# ---------------------------------------------------------------------------------------
# Commands and namespaces

def sh(cmd, check=True, input=None):
    """Runs a shell command; returns its stdout. Raises with stderr on failure if `check`."""
    p = subprocess.run(cmd, shell=True, input=input, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise RuntimeError(f"`{cmd}` failed ({p.returncode}): {p.stderr.strip()}")
    return p.stdout


_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000
# Socket options (<linux/in.h>, <linux/icmp.h>, <linux/icmpv6.h>): the ICMP types a raw
# socket filters out.
SOL_RAW, ICMP_FILTER, ICMP6_FILTER = 255, 1, 1
_host_ns = os.open("/proc/self/ns/net", os.O_RDONLY)


def _setns(fd):
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


class InNetns:
    """`with InNetns("dut"):` runs the block (sockets, /proc/net, /proc/sys/net) in a netns."""

    def __init__(self, name):
        self.name = name

    def __enter__(self):
        fd = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
        try:
            _setns(fd)
        finally:
            os.close(fd)
        return self

    def __exit__(self, *exc):
        _setns(_host_ns)
        return False


def sysctl(ns, name, value=None):
    """Reads or writes a sysctl (dotted name) in namespace `ns` (None: the initial one)."""
    path = "/proc/sys/" + name.replace(".", "/")

    def rw():
        if value is None:
            with open(path) as f:
                return f.read().strip()
        with open(path, "w") as f:
            f.write(str(value))
        return str(value)

    if ns is None:
        return rw()
    with InNetns(ns):
        return rw()


class Topology:
    """Fresh namespaces `peer` and `dut` joined by a veth pair on 10.0.1.0/24.

    peer veth0 10.0.1.1  <->  dut veth0 10.0.1.2

    IPv6 is disabled so that no autoconfiguration traffic disturbs captures, and neighbours
    are static so that captures see no ARP and no first packet queued behind resolution.
    Subclasses add namespaces, links, addresses and routes.
    """

    PEER, DUT = "peer", "dut"
    # True in topologies with IPv6 (Topology6): the harness then also captures IPv6 frames,
    # counts /proc/net/snmp6 and records IPv6 drops.
    IPV6 = False
    PEER_ADDR, DUT_ADDR, BCAST = "10.0.1.1", "10.0.1.2", "10.0.1.255"
    PEER_CAPTURE_DEV = "veth0"
    # An address on the link that nobody has: the dut's neighbour entry sends it to the
    # peer's MAC, whose stack drops it silently (not local, no forwarding), so the peer can
    # answer for it with crafted ICMP errors.
    GHOST = "10.0.1.77"

    def __init__(self):
        self.namespaces = [self.PEER, self.DUT]
        # (ns_a, dev_a, ns_b, dev_b)
        self.links = [(self.PEER, "veth0", self.DUT, "veth0")]
        # ns -> [(dev, addr, prefix length)]
        self.addrs = {self.PEER: [("veth0", self.PEER_ADDR, 24)],
                      self.DUT: [("veth0", self.DUT_ADDR, 24)]}
        # ns -> [ip commands run after the addresses]
        self.routes = {}

    def mac(self, ns, dev):
        """Fixed MAC addresses: 02:00:00:00:<link>:<side>."""
        for i, (a, ia, b, ib) in enumerate(self.links):
            if (ns, dev) == (a, ia):
                return f"02:00:00:00:{i + 1:02x}:01"
            if (ns, dev) == (b, ib):
                return f"02:00:00:00:{i + 1:02x}:02"
        raise KeyError((ns, dev))

    def __enter__(self):
        stale = [ns for ns in self.namespaces if os.path.exists(f"/run/netns/{ns}")]
        if stale:
            sh("ip -batch -", check=False, input="".join(f"netns del {ns}\n" for ns in stale))
        cmds = [f"netns add {ns}" for ns in self.namespaces]
        for a, ia, b, ib in self.links:
            cmds.append(f"link add {ia} netns {a} address {self.mac(a, ia)} type veth "
                        f"peer name {ib} netns {b} address {self.mac(b, ib)}")
        sh("ip -batch -", input="\n".join(cmds) + "\n")
        for ns in self.namespaces:
            sysctl(ns, "net.ipv6.conf.all.disable_ipv6", 1)
            sysctl(ns, "net.ipv6.conf.default.disable_ipv6", 1)
            cmds = ["link set lo up"]
            for dev, addr, plen in self.addrs.get(ns, []):
                cmds.append(f"addr add {addr}/{plen} brd + dev {dev}")
            for dev in sorted({d for d, _, _ in self.addrs.get(ns, [])}):
                cmds.append(f"link set {dev} up")
            cmds += self.neighbours(ns)
            cmds += self.routes.get(ns, [])
            sh(f"ip -n {ns} -batch -", input="\n".join(cmds) + "\n")
        return self

    def neighbours(self, ns):
        """Static entries for the addresses at the other end of each of `ns`'s links."""
        cmds = []
        for a, ia, b, ib in self.links:
            for me, mydev, other, odev in ((a, ia, b, ib), (b, ib, a, ia)):
                if me != ns:
                    continue
                for dev, addr, _ in self.addrs.get(other, []):
                    if dev == odev:
                        cmds.append(f"neigh replace {addr} lladdr {self.mac(other, odev)} "
                                    f"dev {mydev} nud permanent")
        if ns == self.DUT:
            cmds.append(f"neigh replace {self.GHOST} lladdr {self.mac(self.PEER, 'veth0')} "
                        "dev veth0 nud permanent")
        return cmds

    def __exit__(self, *exc):
        sh("ip -batch -", check=False,
           input="".join(f"netns del {ns}\n" for ns in self.namespaces))
        return False


class RoutedTopology(Topology):
    """peer -- dut -- far, the dut forwarding between them:

    peer veth0 10.0.1.1 <-> 10.0.1.2 veth0 dut veth1 10.0.2.2 <-> 10.0.2.1 veth0 far
    """

    FAR = "far"
    FAR_ADDR, DUT_FAR_ADDR = "10.0.2.1", "10.0.2.2"

    def __init__(self):
        super().__init__()
        self.namespaces.append(self.FAR)
        self.links.append((self.DUT, "veth1", self.FAR, "veth0"))
        self.addrs[self.DUT].append(("veth1", self.DUT_FAR_ADDR, 24))
        self.addrs[self.FAR] = [("veth0", self.FAR_ADDR, 24)]
        self.routes[self.PEER] = [f"route add 10.0.2.0/24 via {self.DUT_ADDR}"]
        self.routes[self.FAR] = [f"route add 10.0.1.0/24 via {self.DUT_FAR_ADDR}"]

    def __enter__(self):
        super().__enter__()
        sysctl(self.DUT, "net.ipv4.ip_forward", 1)
        return self


class Topology6(RoutedTopology):
    """RoutedTopology with IPv6 as well, the dut forwarding both:

    peer veth0 fd00:1::1 <-> fd00:1::2 veth0 dut veth1 fd00:2::2 <-> fd00:2::1 veth0 far

    No NDP, DAD or autoconfiguration traffic: addresses are `nodad`, neighbours static, no
    link-local addresses (addr_gen_mode none: no router solicitations either), no router
    advertisements accepted. What remains are the MLD reports of the groups joined when the
    addresses come up (solicited-node, all-routers on the dut); their repetition interval is
    shortened and `__enter__` waits until every namespace stopped sending ICMPv6, so that
    none falls into a capture or a counter delta.
    """

    IPV6 = True
    PEER6, DUT6 = "fd00:1::1", "fd00:1::2"
    FAR6, DUT_FAR6 = "fd00:2::1", "fd00:2::2"

    def __init__(self):
        super().__init__()
        self.addrs6 = {self.PEER: [("veth0", self.PEER6)],
                       self.DUT: [("veth0", self.DUT6), ("veth1", self.DUT_FAR6)],
                       self.FAR: [("veth0", self.FAR6)]}
        self.routes6 = {self.PEER: [f"route add fd00:2::/64 via {self.DUT6}"],
                        self.FAR: [f"route add fd00:1::/64 via {self.DUT_FAR6}"]}

    def __enter__(self):
        super().__enter__()
        for ns in self.namespaces:
            devs = sorted({d for d, _ in self.addrs6.get(ns, [])})
            for dev in devs:
                for k, v in (("addr_gen_mode", 1), ("accept_ra", 0), ("accept_dad", 0),
                             ("router_solicitations", 0), ("ndisc_notify", 0),
                             ("mldv1_unsolicited_report_interval", 10),
                             ("mldv2_unsolicited_report_interval", 10)):
                    sysctl(ns, f"net.ipv6.conf.{dev}.{k}", v)
            if ns == self.DUT:
                sysctl(ns, "net.ipv6.conf.all.forwarding", 1)
            for dev in ["lo"] + devs:
                sysctl(ns, f"net.ipv6.conf.{dev}.disable_ipv6", 0)
            cmds = [f"addr add {a}/64 dev {d} nodad" for d, a in self.addrs6.get(ns, [])]
            for a, ia, b, ib in self.links:
                for me, mydev, other, odev in ((a, ia, b, ib), (b, ib, a, ia)):
                    if me == ns:
                        cmds += [f"neigh replace {addr} lladdr {self.mac(other, odev)} "
                                 f"dev {mydev} nud permanent"
                                 for dev, addr in self.addrs6.get(other, []) if dev == odev]
            cmds += self.routes6.get(ns, [])
            sh(f"ip -n {ns} -batch -", input="\n".join(cmds) + "\n")
        self.wait_icmp6_quiet()
        return self

    def wait_icmp6_quiet(self, quiet=0.4, limit=5.0):
        """Waits until no namespace sent an ICMPv6 message (MLD) for `quiet` seconds."""
        def sent():
            return [mib(ns, ipv6=True).get("Icmp6OutMsgs", 0) for ns in self.namespaces]
        start = last = time.monotonic()
        seen = sent()
        while time.monotonic() - last < quiet and time.monotonic() - start < limit:
            time.sleep(0.05)
            now = sent()
            if now != seen:
                seen, last = now, time.monotonic()


def vrf_setup(t):
    """The dut's veth0 in a VRF (red, table 10): replies and errors are routed there."""
    sh(f"ip -n {t.DUT} link add red type vrf table 10")
    sh(f"ip -n {t.DUT} link set red up")
    sh(f"ip -n {t.DUT} link set veth0 master red")
    sh(f"ip -n {t.DUT} neigh replace {t.PEER_ADDR} lladdr {t.mac(t.PEER, 'veth0')} dev veth0 "
       "nud permanent")


# ---------------------------------------------------------------------------------------
# Packets

def checksum(data):
    """The Internet checksum (RFC 1071) of `data`, as the 16-bit value to store."""
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def icmp(type_, code=0, rest=b"\0\0\0\0", payload=b"", csum=None):
    """An ICMP message; `csum` overrides the computed checksum (e.g. to make it wrong)."""
    body = struct.pack("!BBH", type_, code, 0) + rest + payload
    c = checksum(body) if csum is None else csum
    return body[:2] + struct.pack("!H", c) + body[4:]


def echo(id_=0x1234, seq=1, payload=b"", type_=8):
    return icmp(type_, 0, struct.pack("!HH", id_, seq), payload)


def pattern(n):
    """`n` bytes of a fixed pattern, the same in every run."""
    return bytes((i * 7 + 3) & 0xFF for i in range(n))


def ipv4(src, dst, proto, payload, ttl=64, tos=0, ident=0x4242, frag=0, options=b"", ihl=None,
         tot_len=None):
    """An IPv4 header plus payload; `ihl`/`tot_len` override the computed values."""
    hl = 5 + len(options) // 4 if ihl is None else ihl
    tl = 20 + len(options) + len(payload) if tot_len is None else tot_len
    hdr = struct.pack("!BBHHHBBH4s4s", 0x40 | hl, tos, tl, ident, frag, ttl, proto, 0,
                      socket.inet_aton(src), socket.inet_aton(dst)) + options
    c = checksum(hdr)
    return hdr[:10] + struct.pack("!H", c) + hdr[12:] + payload


def pseudo6(src, dst, nh, length):
    """The IPv6 pseudo-header (RFC 8200 8.1) of an upper-layer message; src/dst are bytes."""
    return src + dst + struct.pack("!IxxxB", length, nh)


def ipv6(src, dst, nh, payload, hlim=64, tc=0, flow=0, plen=None):
    """An IPv6 header plus payload; `plen` overrides the payload length."""
    n = len(payload) if plen is None else plen
    return (struct.pack("!IHBB", 6 << 28 | tc << 20 | flow, n, nh, hlim) +
            socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst) +
            payload)


def udp6(src, dst, sport, dport, payload):
    """A UDP header with its (in IPv6 mandatory) checksum, and payload."""
    n = 8 + len(payload)
    body = struct.pack("!HHHH", sport, dport, n, 0) + payload
    c = checksum(pseudo6(socket.inet_pton(socket.AF_INET6, src),
                         socket.inet_pton(socket.AF_INET6, dst), 17, n) + body) or 0xFFFF
    return body[:6] + struct.pack("!H", c) + body[8:]


class Sender:
    """Sockets in a namespace for sending ICMP: `icmp()` lets the kernel build the IP header
    (and fragment), `ip()` sends a complete IP packet as given (IP_HDRINCL)."""

    def __init__(self, ns):
        self.ns = ns
        self.raw_ip6 = self.raw_icmp6 = None
        with InNetns(ns):
            self.raw_icmp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
            self.raw_ip = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        for s in (self.raw_icmp, self.raw_ip):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        # A raw ICMP socket queues a copy of every ICMP message its namespace receives, and
        # nobody reads this one. Unfiltered, it would hold all the answers of a scenario and
        # drop them (QUEUE_PURGE) a grace period after it is closed: see close_drained().
        self.raw_icmp.setsockopt(SOL_RAW, ICMP_FILTER, struct.pack("=I", 0xFFFFFFFF))

    def icmp(self, dst, msg, options=None, ttl=None):
        if options is not None:
            self.raw_icmp.setsockopt(socket.IPPROTO_IP, socket.IP_OPTIONS, options)
        if ttl is not None:
            self.raw_icmp.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
            self.raw_icmp.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
        self.raw_icmp.sendto(msg, (dst, 0))
        if options is not None:
            self.raw_icmp.setsockopt(socket.IPPROTO_IP, socket.IP_OPTIONS, b"")

    def ip(self, packet):
        dst = socket.inet_ntoa(packet[16:20])
        self.raw_ip.sendto(packet, (dst, 0))

    def ip6(self, packet):
        """Sends a complete IPv6 packet as given (an IPPROTO_RAW socket of AF_INET6)."""
        if self.raw_ip6 is None:
            with InNetns(self.ns):
                self.raw_ip6 = socket.socket(socket.AF_INET6, socket.SOCK_RAW,
                                             socket.IPPROTO_RAW)
        self.raw_ip6.sendto(packet, (socket.inet_ntop(socket.AF_INET6, packet[24:40]), 0))

    def icmp6(self, dst, msg, hlim=None):
        """Sends an ICMPv6 message; the kernel fills in its checksum (pseudo-header)."""
        if self.raw_icmp6 is None:
            with InNetns(self.ns):
                self.raw_icmp6 = socket.socket(socket.AF_INET6, socket.SOCK_RAW,
                                               socket.IPPROTO_ICMPV6)
            # Blocks every type, for the reason given for raw_icmp above.
            self.raw_icmp6.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, b"\xff" * 32)
        if hlim is not None:
            self.raw_icmp6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, hlim)
        self.raw_icmp6.sendto(msg, (dst, 0))

    def close(self):
        for s in (self.raw_icmp, self.raw_ip, self.raw_ip6, self.raw_icmp6):
            if s is not None:
                close_drained(s)


def close_drained(sock):
    """Closes a socket after reading what is queued on it. The kernel frees an inet socket
    (raw, ping, UDP) one RCU grace period after its last close and drops what is still queued
    then (`QUEUE_PURGE`); on a loaded machine that can happen while the next scenario records
    its drop reasons, which would charge this scenario's leftovers to that one."""
    sock.setblocking(False)
    for flags in (0, socket.MSG_ERRQUEUE):
        for _ in range(100000):
            try:
                sock.recvmsg(65536, 4096, flags)
            except OSError:     # empty (EAGAIN), or nothing to read on this kind of socket
                break
    sock.close()


ETH_P_ALL, ETH_P_IP, ETH_P_IPV6, PACKET_OUTGOING = 0x0003, 0x0800, 0x86DD, 4


class Capture:
    """IPv4 packets (and with `ipv6`, IPv6 packets too) arriving at `ifname` in `ns` (what
    the other end sent), from an AF_PACKET socket opened now. Packets start at the IP header
    whatever the link type."""

    def __init__(self, ns, ifname="veth0", ipv6=False):
        self.protos = (ETH_P_IP, ETH_P_IPV6) if ipv6 else (ETH_P_IP,)
        with InNetns(ns):
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
            self.sock.bind((ifname, 0))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.setblocking(False)
        self.packets = []

    def _drain(self):
        got = 0
        while True:
            try:
                data, addr = self.sock.recvfrom(70000)
            except BlockingIOError:
                return got
            if addr[2] == PACKET_OUTGOING or addr[1] not in self.protos:
                continue
            self.packets.append(data)
            got += 1

    def wait_for(self, pred, timeout=3.0):
        """The first packet captured so far, or arriving within `timeout`, that satisfies
        `pred` (for quoting a packet of the dut in a crafted error)."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            self._drain()
            for p in self.packets[seen:]:
                if pred(p):
                    return p
            seen = len(self.packets)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("expected packet not captured")
            select.select([self.sock], [], [], min(left, 0.05))

    def settle(self, quiet=0.3, limit=5.0):
        """Collects until nothing arrived for `quiet` seconds (at most `limit`)."""
        start = last = time.monotonic()
        while True:
            now = time.monotonic()
            if now - last >= quiet or now - start >= limit:
                break
            r, _, _ = select.select([self.sock], [], [], quiet / 3)
            if r and self._drain():
                last = time.monotonic()
        self._drain()
        return self.packets

    def close(self):
        self.sock.close()


def ip_payload(pkt):
    """The bytes after the IP header."""
    return pkt[(pkt[0] & 15) * 4:]


def quote(pkt, limit=548):
    """What an ICMP error quotes of `pkt`: as much as fits a 576-byte error, like Linux."""
    return pkt[:limit]


IP_RECVERR, IP_MTU_DISCOVER, IP_MTU, IP_PMTUDISC_DO = 11, 10, 14, 2
SO_EE_ORIGIN = {0: "none", 1: "local", 2: "icmp", 3: "icmp6"}


def errqueue(sock):
    """Everything queued on `sock`'s error queue (IP_RECVERR), as readable tuples:
    (errno name, origin, type, code, info, offender address, bytes of the quoted payload,
    ee_data, which holds struct sock_ee_data_rfc4884 with IP_RECVERR_RFC4884)."""
    out = []
    while True:
        try:
            data, anc, _flags, _addr = sock.recvmsg(2048, 1024, socket.MSG_ERRQUEUE |
                                                    socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            break
        for level, ctype, cdata in anc:
            if level != socket.IPPROTO_IP or ctype != IP_RECVERR or len(cdata) < 16:
                continue
            ee_errno, origin, type_, code, _pad, info, ee_data = struct.unpack("=IBBBBII",
                                                                              cdata[:16])
            offender = socket.inet_ntoa(cdata[20:24]) if len(cdata) >= 24 else ""
            out.append((errno.errorcode.get(ee_errno, ee_errno), SO_EE_ORIGIN.get(origin, origin),
                        type_, code, info, offender, len(data), ee_data))
    return out


def so_error(sock):
    e = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    return errno.errorcode.get(e, e) if e else 0


def route_get(ns, dst):
    """`ip route get DST` in `ns`, with the seconds to expiry masked."""
    import re
    out = sh(f"ip -n {ns} route get {dst}", check=False).strip()
    return re.sub(r"expires \d+sec", "expires Nsec", " ".join(out.split()))


def mask_ipv4(pkt, extra=()):
    """The packet with the fields that legitimately vary between runs zeroed: IP ID and
    header checksum, plus the byte ranges in `extra` (offsets from the start of the packet)."""
    b = bytearray(pkt)
    if len(b) >= 20:
        b[4:6] = b"\0\0"
        b[10:12] = b"\0\0"
    for lo, hi in extra:
        b[lo:hi] = bytes(len(b[lo:hi]))
    return bytes(b)


def mask_packet(pkt, extra=()):
    """`mask_ipv4` for an IPv4 packet; an IPv6 packet has no IP ID nor header checksum, so
    only the byte ranges in `extra` are zeroed."""
    if pkt and pkt[0] >> 4 == 6:
        b = bytearray(pkt)
        for lo, hi in extra:
            b[lo:hi] = bytes(len(b[lo:hi]))
        return bytes(b)
    return mask_ipv4(pkt, extra)


def icmp6_checksum_wrong(pkt):
    """For an IPv6 packet: whether its payload length is wrong, or, if it carries ICMPv6
    directly (next header 58), whether the ICMPv6 checksum over the pseudo-header and the
    message is wrong. Returns a description, or None."""
    if len(pkt) < 40:
        return "it is shorter than an IPv6 header"
    if struct.unpack("!H", pkt[4:6])[0] != len(pkt) - 40:
        return "its IPv6 payload length is wrong"
    if pkt[6] == 58 and checksum(pseudo6(pkt[8:24], pkt[24:40], 58, len(pkt) - 40) +
                                 pkt[40:]) != 0:
        return "its ICMPv6 checksum is wrong"
    return None


def masked_checksums_wrong(pkt, extra=()):
    """What `mask_ipv4(pkt, extra)` would hide that is wrong: the IP header checksum, always
    masked (the IP ID varies), and the ICMP checksum where `extra` masks it (a message with
    timestamps). A checksum is masked only after it was verified. Returns a description, or
    None. An IPv6 packet's ICMPv6 checksum is always verified (see icmp6_checksum_wrong)."""
    if pkt and pkt[0] >> 4 == 6:
        return icmp6_checksum_wrong(pkt)
    ihl = (pkt[0] & 15) * 4 if pkt else 0
    if len(pkt) < 20 or checksum(pkt[:ihl]) != 0:
        return "its IP header checksum is wrong"
    covers = any(lo <= ihl + 2 and ihl + 4 <= hi for lo, hi in extra)
    if pkt[9] == 1 and covers and checksum(pkt[ihl:]) != 0:
        return "its ICMP checksum is wrong"
    return None


def describe(pkt):
    """A one-line summary of an IPv4 or IPv6 packet, for diagnostics."""
    if pkt and pkt[0] >> 4 == 6 and len(pkt) >= 40:
        src = socket.inet_ntop(socket.AF_INET6, pkt[8:24])
        dst = socket.inet_ntop(socket.AF_INET6, pkt[24:40])
        s = f"{src} > {dst} nh {pkt[6]} hlim {pkt[7]} len {len(pkt)}"
        if pkt[6] == 58 and len(pkt) >= 44:
            s += f" icmp6 type {pkt[40]} code {pkt[41]}"
        return s
    if len(pkt) < 20:
        return f"short packet {pkt.hex()}"
    ihl = (pkt[0] & 15) * 4
    src, dst = socket.inet_ntoa(pkt[12:16]), socket.inet_ntoa(pkt[16:20])
    frag = struct.unpack("!H", pkt[6:8])[0]
    s = f"{src} > {dst} proto {pkt[9]} len {len(pkt)} frag {frag:#06x}"
    if pkt[9] == 1 and len(pkt) >= ihl + 4 and frag & 0x1FFF == 0:
        s += f" icmp type {pkt[ihl]} code {pkt[ihl + 1]}"
    return s


# ---------------------------------------------------------------------------------------
# Counters

# nstat's names of the counters of /proc/net/snmp6.
_V6_COUNTERS = ("Ip6", "Icmp6", "Udp6", "UdpLite6")


def mib(ns, ipv6=False):
    """Every counter of /proc/net/snmp and /proc/net/netstat in `ns`, as iproute2's nstat
    names them (IcmpInMsgs, IcmpMsgInType8, IpExtInOctets, ...); with `ipv6`, those of
    /proc/net/snmp6 too (Ip6InReceives, Icmp6OutDestUnreachs, ...). Read with `nstat -j`:
    absolute values (-a), zeros included (-z), nstat's history file left alone (-s)."""
    with InNetns(ns):
        out = subprocess.run(["nstat", "-asz", "-j"], check=True, capture_output=True,
                             text=True).stdout
    return {n: v for n, v in json.loads(out)["kernel"].items()
            if not n.startswith("Sctp") and (ipv6 or not n.startswith(_V6_COUNTERS))}


def mirror_requested(params=None):
    """Whether the module parameters (`MODULE_PARAMS` unless given) switch on the mirror,
    /proc/net/rust_icmp: `mirror` set to what the kernel reads as true (kstrtobool)."""
    mirror = False
    for word in (MODULE_PARAMS if params is None else params).split():
        name, eq, value = word.partition("=")
        if name == "mirror":
            mirror = not eq or value[:1] in ("1", "y", "Y", "t", "T") or value.lower() == "on"
    return mirror


def module_counters(ns):
    """/proc/net/rust_icmp in `ns`, or None if the module is not loaded."""
    with InNetns(ns):
        try:
            with open("/proc/self/net/rust_icmp") as f:
                text = f.read()
        except FileNotFoundError:
            return None
    return {k: int(v) for k, v in (line.split() for line in text.splitlines())}


def delta(before, after):
    """Non-zero differences between two counter snapshots."""
    keys = set(before) | set(after)
    d = {k: after.get(k, 0) - before.get(k, 0) for k in keys}
    return {k: v for k, v in d.items() if v}


# ---------------------------------------------------------------------------------------
# The module

def delivered(t, before, n=1, timeout=3.0):
    """Waits until the dut's IP layer delivered `n` more packets than `before`
    (IpInDelivers is counted after the protocol handler returned, so an error has reached
    the sockets by then); raises TimeoutError if it does not."""
    deadline = time.monotonic() + timeout
    while mib(t.DUT)["IpInDelivers"] - before < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the dut's IP layer did not deliver {n} packet(s) in {timeout} s")
        time.sleep(0.02)


def module_loaded():
    return os.path.exists("/sys/module/rust_icmp")


LIVEPATCH = "/sys/kernel/livepatch/rust_icmp"
UNLOAD = os.path.join(TOP, "scripts", "unload")


def load_module(path=MODULE, timeout=60):
    """insmod (unless `path` is None: inserted already), then wait until the live patch
    reached every task (__icmp_send is Rust)."""
    if path is not None:
        sh(f"insmod {path} {MODULE_PARAMS}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"{LIVEPATCH}/transition") as f:
                if f.read().strip() == "0":
                    return
        except FileNotFoundError:
            return
        time.sleep(0.05)
    raise TimeoutError("the live patch transition of rust_icmp did not complete")


def livepatch_state():
    """(enabled, transition) of rust_icmp's live patch, or None if it is not registered."""
    try:
        with open(f"{LIVEPATCH}/enabled") as f:
            enabled = f.read().strip()
        with open(f"{LIVEPATCH}/transition") as f:
            return enabled, f.read().strip()
    except FileNotFoundError:
        return None


def unload_module():
    """scripts/unload: disable the live patch, wait for the transition, rmmod."""
    sh(UNLOAD)


# ---------------------------------------------------------------------------------------
# Drop reasons (skb:kfree_skb tracepoint)

class DropTrace:
    """Records two tracepoints in a tracing instance of its own (so that FunctionCount can
    use the main buffer meanwhile): `skb:kfree_skb`, the reason of every dropped IPv4
    packet, and `icmp:icmp_send`, every ICMP error `__icmp_send` decided to send."""

    EVENTS = ("skb/kfree_skb", "icmp/icmp_send")

    def __init__(self, ipv6=False):
        """With `ipv6`, the drops of IPv6 packets are recorded too (marked "ipv6:")."""
        self.ipv6 = ipv6
        self.dir = f"{TRACING}/instances/rust_icmp_drops"
        self.available = os.path.exists(f"{TRACING}/events/skb/kfree_skb/enable")
        if self.available and not os.path.isdir(self.dir):
            os.mkdir(self.dir)

    def _enable(self, on):
        for ev in self.EVENTS:
            path = f"{self.dir}/events/{ev}/enable"
            if os.path.exists(path):
                with open(path, "w") as f:
                    f.write("1" if on else "0")

    def start(self):
        if not self.available:
            return
        with open(f"{self.dir}/trace", "w"):
            pass
        self._enable(True)

    def stop(self):
        """Returns the sorted reasons of IPv4 drops since `start`, then the icmp_send events
        (without the skb address). `in_module` is then the number of drops made by
        rust_icmp's code (the tracepoint's location is in the module)."""
        self.in_module = 0
        if not self.available:
            return [], []
        self._enable(False)
        drops, sends = [], []
        with open(f"{self.dir}/trace") as f:
            for line in f:
                if "kfree_skb:" in line and "protocol=2048" in line:
                    drops.append(line.rsplit("reason:", 1)[-1].strip())
                    self.in_module += "[rust_icmp]" in line
                elif self.ipv6 and "kfree_skb:" in line and "protocol=34525" in line:
                    drops.append("ipv6:" + line.rsplit("reason:", 1)[-1].strip())
                    self.in_module += "[rust_icmp]" in line
                elif "icmp_send:" in line:
                    sends.append(line.split("icmp_send:", 1)[1].split(" skbaddr=")[0].strip())
        return sorted(drops), sorted(sends)


class FunctionCount:
    """Counts calls of a kernel function with the function tracer (e.g. which checksum path
    a packet took); `FunctionCount(a, b, ...)` traces several, see `counts()`.

    Counts nest: one begun while another is active (a scenario's own count inside the
    differential harness's) adds its functions to the tracer's filter, counts only what was
    traced after it began, and on exit takes out of the filter only what it added."""

    _active = []

    def __init__(self, name, *more):
        self.name = name
        self.names = (name,) + more
        self.added = self.names
        self.start = 0

    def __enter__(self):
        outer = FunctionCount._active
        if outer:
            traced = {n for fc in outer for n in fc.names}
            self.added = tuple(n for n in self.names if n not in traced)
            if self.added:
                with open(f"{TRACING}/set_ftrace_filter", "a") as f:
                    f.write(" ".join(self.added))
            self.start = sum(1 for _ in self._events())
        else:
            with open(f"{TRACING}/set_ftrace_filter", "w") as f:
                f.write(" ".join(self.names))
            with open(f"{TRACING}/trace", "w"):
                pass
            with open(f"{TRACING}/current_tracer", "w") as f:
                f.write("function")
        outer.append(self)
        return self

    @staticmethod
    def _events():
        with open(f"{TRACING}/trace") as f:
            yield from (line for line in f if not line.startswith("#"))

    def _mine(self):
        """The events traced since this count began."""
        for i, line in enumerate(self._events()):
            if i >= self.start:
                yield line

    def count(self):
        """Calls of the first function named."""
        return self.counts()[self.name]

    def counts(self):
        """{name: calls} of every traced function."""
        out = dict.fromkeys(self.names, 0)
        for line in self._mine():
            for n in self.names:
                if f" {n} <-" in line:
                    out[n] += 1
        return out

    def __exit__(self, *exc):
        FunctionCount._active.remove(self)
        if FunctionCount._active:
            if self.added:
                with open(f"{TRACING}/set_ftrace_filter", "a") as f:
                    f.write(" ".join("!" + n for n in self.added))
            return False
        with open(f"{TRACING}/current_tracer", "w") as f:
            f.write("nop")
        with open(f"{TRACING}/set_ftrace_filter", "w") as f:
            f.write("")
        return False
