#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""Differential tests of what hooks see beyond the bytes on the wire: the state of the
buffers rust_icmp sends (netfilter payload and REJECT, tc and cgroup BPF, timestamping),
the context of its control sockets (their cgroup), errors about packets built locally, and
the kernel log. Built-in C vs rust_icmp, same boot.

rust_icmp is loaded from a child cgroup, as a service manager's modprobe would be, with a
cgroup BPF program on that cgroup that drops everything its sockets send: a control
socket that belonged to the loading task's cgroup would lose every message.

    tests/hooks.py [SCENARIO...]     default: all (make stress runs the log scenario on the
                                     debug kernel, where debug messages are compiled in)

HOOKS_PLAIN_LOAD=1 loads the module from the test's own cgroup instead (the cgroup program
stays): with a module whose sockets take the loader's cgroup, the other scenarios then fail
for their own reasons, not all for the packets the cgroup program drops.
"""

import errno
import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))

from bpf import (BPF_TCX_EGRESS, SKB_INGRESS_IFINDEX, SKB_TC_CLASSID,  # noqa: E402
                 SKB_TC_INDEX, TCX_DROP, TCX_PASS, CgroupEgress, insn, tcx_attach)
from difftest import Scenario, run_differential  # noqa: E402
from icmptest import (IP_RECVERR, MODULE, MODULE_PARAMS, FunctionCount, InNetns,  # noqa: E402
                      Ktap, echo, errqueue, icmp, ipv4, load_module, pattern, require_vm, sh,
                      sysctl)

CGROUP_ROOT = "/sys/fs/cgroup"
SERVICE = f"{CGROUP_ROOT}/rust_icmp_loader"
SO_TIMESTAMPING = 37
SOF_TIMESTAMPING_SOFTWARE, SOF_TIMESTAMPING_TX_SCHED = 1 << 4, 1 << 8
RECORD_ROUTE = bytes([7, 11, 4]) + bytes(8) + b"\0"


def nft(ns, rules):
    sh(f"ip netns exec {ns} nft -f -", input=f"table ip rust_icmp_hooks {{\n{rules}\n}}\n")


def nft_counters(ns):
    """The packet counts of the table's counter rules, in rule order."""
    out = sh(f"ip netns exec {ns} nft list table ip rust_icmp_hooks")
    return [int(w.split()[0]) for w in out.split("counter packets ")[1:]]


def pings(n, size=56):
    def action(t, send):
        for i in range(n):
            send.icmp(t.DUT_ADDR, echo(0x4d2, i + 1, pattern(size)))
        t.cap.settle()
    return action


def replies(n):
    """Sanity of the C run: `n` echo replies reached the peer."""
    def check(r):
        got = [p for p in r.raw_packets if p[9] == 1 and p[(p[0] & 15) * 4] == 0]
        return None if len(got) == n else f"expected {n} echo replies, got {len(got)}"
    return check


# 1. The echo reply must leave with a new buffer's state, as C's does (whatever the
#    module builds it from: up to commit 58b2846, the request's own buffer).

def ll_rules(t):
    # At LOCAL_OUT a new buffer has no link-layer header: @ll payload matches nothing.
    nft(t.DUT, """chain output {
    type filter hook output priority 0;
    icmp type echo-reply @ll,96,16 0x0800 counter
    icmp type echo-reply counter
}""")


def ll_observe(t):
    return {"output_counters (link-layer header seen, replies)": nft_counters(t.DUT)}


def tc_index_progs(t):
    """tc at the dut's ingress classifies the requests (tc_index 7); tc at its egress drops
    any packet that still carries a tc_index or an ingress interface."""
    ingress = (insn(0xb7, 2, imm=7) +                              # r2 = 7
               insn(0x63, 1, 2, off=SKB_TC_CLASSID) +              # skb->tc_classid = r2
               insn(0xb7, 0, imm=TCX_PASS) + insn(0x95))           # tc_index = classid
    egress = (insn(0x61, 2, 1, off=SKB_TC_INDEX) +                 # r2 = skb->tc_index
              insn(0x61, 3, 1, off=SKB_INGRESS_IFINDEX) +          # r3 = skb->ingress_ifindex
              insn(0x4f, 2, 3) +                                   # r2 |= r3
              insn(0xb7, 0, imm=TCX_PASS) +
              insn(0x15, 2, off=1, imm=0) +                        # if r2 == 0: pass
              insn(0xb7, 0, imm=TCX_DROP) + insn(0x95))
    with InNetns(t.DUT):
        t.links = [tcx_attach(ingress, "classify", "veth0"),
                   tcx_attach(egress, "no_rx_state", "veth0", BPF_TCX_EGRESS)]


def close_links(t):
    for fd in getattr(t, "links", []):
        os.close(fd)
    return {}


def timestamped_pings(n):
    """The peer asks for transmit timestamps of its requests; the dut's replies must not
    (each call of __skb_tstamp_tx queues a timestamp on the sending socket's error queue)."""
    def action(t, send):
        with InNetns(t.PEER):
            s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPING,
                     SOF_TIMESTAMPING_TX_SCHED | SOF_TIMESTAMPING_SOFTWARE)
        t.keep.append(s)
        with FunctionCount("__skb_tstamp_tx") as fc:
            for i in range(n):
                s.sendto(echo(0x4d3, i + 1, pattern(56)), (t.DUT_ADDR, 0))
            t.cap.settle()
            t.obs["__skb_tstamp_tx calls"] = fc.count()
    return action


def loopback_reject(t):
    """The dut pings itself over lo; its OUTPUT chain rejects the reply. __icmp_send exempts
    errors about packets that came in on a loopback device from the global limit: C's reply
    has no device at LOCAL_OUT, so the error is limited (the limit is 0 here)."""
    sysctl(t.DUT, "net.ipv4.icmp_msgs_per_sec", 0)
    sysctl(t.DUT, "net.ipv4.icmp_msgs_burst", 0)
    nft(t.DUT, """chain output {
    type filter hook output priority 0;
    icmp type echo-reply reject
}""")


def ping_self(t, send):
    with InNetns(t.DUT):
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    t.keep.append(s)
    s.sendto(echo(0x4d4, 1, pattern(56)), ("127.0.0.1", 0))
    time.sleep(0.3)


def limited_globally(r):
    n = r.mib.get("IcmpOutRateLimitGlobal", 0)
    return None if n >= 1 else f"expected the error to be rate limited globally, MIB {r.mib}"


# 3. Errors about packets built locally, with IP options, rejected at LOCAL_OUT.

def reject_output(t):
    nft(t.DUT, """chain output {
    type filter hook output priority 0;
    udp dport 7777 reject
}""")


def udp_from_dut(options):
    def action(t, send):
        with InNetns(t.DUT):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        t.keep.append(s)
        s.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
        s.bind((t.DUT_ADDR, 41000))          # the icmp_send tracepoint shows the port
        if options:
            s.setsockopt(socket.IPPROTO_IP, socket.IP_OPTIONS, options)
        try:
            s.sendto(pattern(32), (t.PEER_ADDR, 7777))
            t.obs["sendto"] = "sent"
        except OSError as e:      # the rule drops the datagram: EPERM, as for any NF_DROP
            t.obs["sendto"] = errno.errorcode.get(e.errno, e.errno)
        time.sleep(0.3)
        t.obs["errqueue"] = errqueue(s)
    return action


def refused(r):
    q = r.obs.get("errqueue") or []
    if not q or q[0][:4] != ("ECONNREFUSED", "icmp", 3, 3):
        return f"expected ECONNREFUSED from an ICMP port unreachable, got {q}"
    return None


# 4. The kernel log: a remote sender cannot flood it.

def log_lines(pattern_):
    out = sh("dmesg", check=False)
    return sum(1 for line in out.splitlines() if pattern_ in line)


def flood_errors(t, send):
    """30 "fragmentation needed" (ip_no_pmtu_disc 1: logged at debug level, not applied) and
    30 "source route failed" errors about a datagram the dut sent."""
    with InNetns(t.DUT):       # the socket the errors are about: they reach udp_err
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    t.keep.append(u)
    u.bind((t.DUT_ADDR, 40000))
    u.connect((t.PEER_ADDR, 9))
    quoted = ipv4(t.DUT_ADDR, t.PEER_ADDR, 17, struct.pack("!HHHH", 40000, 9, 16, 0) + bytes(8))
    before = [log_lines(p) for p in ("fragmentation needed", "Source Route Failed")]
    for code in (4, 5):
        for _ in range(30):
            send.ip(ipv4(t.PEER_ADDR, t.DUT_ADDR, 1, icmp(3, code, struct.pack("!HH", 0, 1280),
                                                          quoted)))
    time.sleep(0.3)
    burst = int(sysctl(None, "net.core.message_burst"))
    after = [log_lines(p) for p in ("fragmentation needed", "Source Route Failed")]
    t.obs["log lines per message within net_ratelimit's burst"] = [
        a - b <= burst for a, b in zip(after, before)]


def no_pmtu_disc(t):
    sysctl(t.DUT, "net.ipv4.ip_no_pmtu_disc", 1)


def in_errors(n):
    def check(r):
        got = r.mib.get("IcmpInDestUnreachs", 0)
        return None if got == n else f"expected {n} InDestUnreachs, got {got}"
    return check


def scenarios():
    s = []
    s.append(Scenario("echo_reply_link_header_at_output", pings(3), setup=ll_rules,
                      observe=ll_observe, sanity=replies(3)))
    s.append(Scenario("echo_reply_tc_index_and_ingress_dev", pings(3), setup=tc_index_progs,
                      observe=close_links, sanity=replies(3)))
    s.append(Scenario("echo_reply_tx_timestamp_request", timestamped_pings(3),
                      sanity=replies(3)))
    s.append(Scenario("echo_reply_device_at_local_out", ping_self, setup=loopback_reject,
                      sanity=limited_globally))
    # The module's control sockets in the loader's cgroup would lose these to its program.
    s.append(Scenario("cgroup_of_control_sockets_echo", pings(2), sanity=replies(2)))
    s.append(Scenario("reject_at_local_out", udp_from_dut(b""), setup=reject_output,
                      sanity=refused))
    s.append(Scenario("reject_at_local_out_ip_options", udp_from_dut(RECORD_ROUTE),
                      setup=reject_output, sanity=refused))
    s.append(Scenario("log_flood_remote_errors", flood_errors, setup=no_pmtu_disc,
                      sanity=in_errors(60)))
    return s


def mount_cgroup2():
    if not os.path.exists(f"{CGROUP_ROOT}/cgroup.procs"):
        sh(f"mount -t cgroup2 none {CGROUP_ROOT}")
    if not os.path.isdir(SERVICE):
        os.mkdir(SERVICE)


def load_from_child_cgroup():
    """insmod from a child cgroup, as systemd-modules-load runs modprobe in a unit's cgroup,
    then wait for the live patch (load_module with the module already inserted)."""
    sh(f"sh -c 'echo $$ > {SERVICE}/cgroup.procs && exec insmod {MODULE} {MODULE_PARAMS}'")
    load_module(path=None)


def main():
    require_vm("hooks")
    ktap = Ktap("hooks: what hooks, sockets and the log see, built-in C vs rust_icmp")
    want = set(sys.argv[1:])
    chosen = [sc for sc in scenarios() if not want or sc.name in want]
    if len(chosen) != len(want or chosen):
        raise SystemExit(f"unknown scenario in {sorted(want)}")
    if any(sc.name.startswith("log_") for sc in chosen) and len(chosen) == 1:
        # The debug kernel has no cgroups: the log scenario alone loads the module plainly.
        run_differential(ktap, chosen)
    else:
        mount_cgroup2()
        drop_all = insn(0xb7, 0, imm=0) + insn(0x95)                # return 0: drop
        with CgroupEgress(SERVICE, drop_all, "drop_all"):
            plain = os.environ.get("HOOKS_PLAIN_LOAD") == "1"
            run_differential(ktap, chosen, load=load_module if plain else load_from_child_cgroup)
        os.rmdir(SERVICE)
    ktap.finish()


if __name__ == "__main__":
    main()
