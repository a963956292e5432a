# SPDX-License-Identifier: GPL-2.0
"""bpf(2) from Python, for the few-instruction programs the tests attach (no libbpf, no
compiler): load a program, attach it to a device's tc hook (tcx) or to a cgroup."""

import ctypes
import os
import socket
import struct

SYS_BPF = 321  # x86-64
BPF_PROG_LOAD, BPF_PROG_ATTACH, BPF_PROG_DETACH, BPF_LINK_CREATE = 5, 8, 9, 28
BPF_PROG_TYPE_SCHED_CLS, BPF_PROG_TYPE_CGROUP_SKB = 3, 8
BPF_CGROUP_INET_EGRESS, BPF_TCX_INGRESS, BPF_TCX_EGRESS = 1, 46, 47
# struct __sk_buff offsets.
SKB_INGRESS_IFINDEX, SKB_TC_INDEX, SKB_TC_CLASSID = 36, 44, 72
TCX_PASS, TCX_DROP = 0, 2
_libc = ctypes.CDLL(None, use_errno=True)


def bpf(cmd, attr):
    buf = ctypes.create_string_buffer(attr, len(attr))
    fd = _libc.syscall(ctypes.c_long(SYS_BPF), ctypes.c_int(cmd), buf, ctypes.c_uint(len(attr)))
    if fd < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"bpf({cmd}): {os.strerror(e)}")
    return fd


def insn(code, dst=0, src=0, off=0, imm=0):
    """One instruction: opcode, registers, offset, immediate."""
    return struct.pack("<BBhi", code, dst | src << 4, off, imm)


def load(prog_type, insns, name, attach_type=0):
    """Loads a program; returns its fd. Raises RuntimeError with the verifier's log."""
    code = ctypes.create_string_buffer(insns, len(insns))
    lic = ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(1 << 16)
    attr = struct.pack("<IIQQIIQII16sII", prog_type, len(insns) // 8, ctypes.addressof(code),
                       ctypes.addressof(lic), 1, len(log), ctypes.addressof(log), 0, 0,
                       name.encode()[:15], 0, attach_type)
    try:
        return bpf(BPF_PROG_LOAD, attr.ljust(128, b"\0"))
    except OSError as e:
        raise RuntimeError(f"{e}; verifier: {log.value.decode(errors='replace')}") from None


def tcx_attach(insns, name, ifname, where=BPF_TCX_INGRESS):
    """Attaches a tc program to `ifname` (in the calling thread's namespace); returns the
    link's fd: closing it detaches the program."""
    prog = load(BPF_PROG_TYPE_SCHED_CLS, insns, name)
    try:
        attr = struct.pack("<IIII", prog, socket.if_nametoindex(ifname), where, 0)
        return bpf(BPF_LINK_CREATE, attr.ljust(64, b"\0"))
    finally:
        os.close(prog)


class CgroupEgress:
    """`with CgroupEgress(path, insns):` a cgroup skb program on the egress of the cgroup v2
    directory `path` (and its descendants) for the duration of the block."""

    def __init__(self, path, insns, name):
        self.path, self.insns, self.name = path, insns, name

    def _attr(self):
        return struct.pack("<IIII", self.cg, self.prog, BPF_CGROUP_INET_EGRESS, 0).ljust(64, b"\0")

    def __enter__(self):
        self.prog = load(BPF_PROG_TYPE_CGROUP_SKB, self.insns, self.name, BPF_CGROUP_INET_EGRESS)
        self.cg = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        bpf(BPF_PROG_ATTACH, self._attr())
        return self

    def __exit__(self, *exc):
        bpf(BPF_PROG_DETACH, self._attr())
        os.close(self.cg)
        os.close(self.prog)
        return False
