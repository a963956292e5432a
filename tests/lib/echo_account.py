#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""Accounted echo traffic for the hot-swap test.

    echo_account.py NS DST RATE [UDP_EVERY]

From namespace NS, sends echo requests to DST at RATE per second, each carrying a 64-bit
serial number in its payload (and, readable on the wire, identifier 0x5100 + serial / 65536
and sequence serial % 65536), and every UDP_EVERY-th request also a UDP datagram to closed
port 9 of DST. Prints `sending` when its sockets are set up and the first request is about
to leave, runs until its standard input is closed, waits a second for late answers, then
prints one JSON object: requests sent, the number of serials answered once, twice or
more (duplicates) and never (lost, with the first few listed), and the port unreachables
received. The receive side matches replies by serial, so reordering does not matter.

Every raw ICMP socket of NS gets a copy of every ICMP packet NS receives, the hot-swap
test's unaccounted flood included: the receiving socket's buffer is forced to 64 MiB (a
plain SO_RCVBUF is capped by net.core.rmem_max, some 550 small packets, which a receiver
thread held up for a moment by a slow host overflows), and the report gives the packets it
dropped all the same (SO_RXQ_OVFL), so that a loss there is not taken for the kernel's.
"""

import json
import os
import select
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from icmptest import InNetns, echo  # noqa: E402

ID_BASE = 0x5100
PAD = b"rust_icmp hot swap".ljust(48, b".")
UDP_SPORT = 41999
# asm-generic/socket.h, which Python's socket module does not all export.
SO_RCVBUFFORCE = 33
SO_RXQ_OVFL = 40


def receiver(sock, answers, unreach, dropped, stop):
    while not stop.is_set():
        r, _, _ = select.select([sock], [], [], 0.2)
        if not r:
            continue
        while True:
            try:
                pkt, anc, _, _ = sock.recvmsg(4096, socket.CMSG_SPACE(4))
            except BlockingIOError:
                break
            for level, kind, data in anc:
                # The socket's drop count so far, on each packet after the first drop.
                if level == socket.SOL_SOCKET and kind == SO_RXQ_OVFL and len(data) >= 4:
                    dropped[0] = max(dropped[0], struct.unpack("=I", data[:4])[0])
            h = (pkt[0] & 15) * 4
            type_, code = pkt[h], pkt[h + 1]
            if type_ == 0 and len(pkt) >= h + 16:
                ident = struct.unpack("!H", pkt[h + 4:h + 6])[0]
                if ident & 0xFF00 == ID_BASE & 0xFF00:
                    serial = struct.unpack("!Q", pkt[h + 8:h + 16])[0]
                    answers[serial] = answers.get(serial, 0) + 1
            elif type_ == 3 and code == 3 and len(pkt) >= h + 8 + 20 + 4:
                # Only those about our own datagrams (the quoted UDP source port).
                inner = h + 8 + (pkt[h + 8] & 15) * 4
                if pkt[inner:inner + 2] == struct.pack("!H", UDP_SPORT):
                    unreach[0] += 1


def main():
    ns, dst, rate = sys.argv[1], sys.argv[2], float(sys.argv[3])
    udp_every = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    with InNetns(ns):
        icmp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("0.0.0.0", UDP_SPORT))
    try:
        icmp.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 << 20)
    except OSError:
        icmp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 20)
    icmp.setsockopt(socket.SOL_SOCKET, SO_RXQ_OVFL, 1)
    icmp.setblocking(False)
    answers, unreach, dropped, stop = {}, [0], [0], threading.Event()
    rx = threading.Thread(target=receiver, args=(icmp, answers, unreach, dropped, stop))
    rx.start()

    sent = send_errors = udp_sent = 0
    # The caller times its phases from here: starting Python and this script can take many
    # seconds on a loaded debug kernel under TCG.
    print("sending", flush=True)
    start = time.monotonic()
    while True:
        # Pace: the n-th request leaves at start + n / rate. Standard input is polled before
        # every request, also when sending is behind schedule (a slow machine), which must
        # still stop when told.
        wait = start + sent / rate - time.monotonic()
        r, _, _ = select.select([sys.stdin], [], [], max(wait, 0))
        if r and not sys.stdin.buffer.read1(4096):
            break
        if wait > 0:
            continue
        serial = sent
        data = echo(ID_BASE + (serial >> 16 & 0xFF), serial & 0xFFFF,
                    struct.pack("!Q", serial) + PAD)
        try:
            icmp.sendto(data, (dst, 0))
        except OSError:
            send_errors += 1
            continue
        sent += 1
        if udp_every and sent % udp_every == 0:
            try:
                udp.sendto(b"closed", (dst, 9))
                udp_sent += 1
            except OSError:
                pass
    time.sleep(1)
    stop.set()
    rx.join()

    once = sum(1 for s in range(sent) if answers.get(s) == 1)
    lost = [s for s in range(sent) if s not in answers]
    dup = sum(n - 1 for n in answers.values() if n > 1)
    print(json.dumps({
        "seconds": round(time.monotonic() - start - 1, 1), "requests": sent,
        "answered_once": once, "lost": len(lost), "first_lost": lost[:10],
        "duplicates": dup, "send_errors": send_errors, "udp_sent": udp_sent,
        "port_unreachables": unreach[0], "socket_drops": dropped[0],
        "rcvbuf": icmp.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
    }))


if __name__ == "__main__":
    main()
