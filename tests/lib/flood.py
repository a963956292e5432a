#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""Background traffic for the unload tests: from namespace NS, echo requests to DST and UDP
datagrams to a closed port of DST, as fast as one process sends them, for SECONDS.
Prints "sent N" at the end; the caller counts answers from the MIB."""

import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from icmptest import InNetns, echo  # noqa: E402


def main():
    ns, dst, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    with InNetns(ns):
        icmp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    icmp.setblocking(False)
    udp.setblocking(False)
    end = time.monotonic() + seconds
    sent = seq = 0
    while time.monotonic() < end:
        seq = (seq + 1) & 0xFFFF
        for s, data, addr in ((icmp, echo(0x77, seq, b"x" * 56), (dst, 0)),
                              (udp, b"y" * 32, (dst, 9))):
            try:
                s.sendto(data, addr)
                sent += 1
            except (BlockingIOError, OSError):
                pass
        # Drain the echo replies so the socket never fills.
        try:
            while True:
                icmp.recv(2048)
        except BlockingIOError:
            pass
    print(f"sent {sent}")


if __name__ == "__main__":
    main()
