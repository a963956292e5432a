#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""finit_module(MODULE) with the N-th fault-injectable allocation of this thread failing.

    failnth_insmod.py MODULE N [PARAM=VALUE...]

/proc/thread-self/fail-nth counts the calls of this thread that pass the fault
attributes' filters (tests/failures.sh limits them to call chains through the module
area); the load happens in the same thread, with no fork or exec in between. Prints
"ok" or the errno name, then the fail-nth left (0: the N-th call came and failed, N - k:
only k calls came). Exit status 0 if the module loaded.
"""

import ctypes
import errno
import os
import sys

SYS_finit_module = 313  # x86-64

libc = ctypes.CDLL(None, use_errno=True)
path, n = sys.argv[1], int(sys.argv[2])
params = " ".join(sys.argv[3:]).encode()
fd = os.open(path, os.O_RDONLY)
nth = os.open("/proc/thread-self/fail-nth", os.O_RDWR)
os.write(nth, str(n).encode())
rc = libc.syscall(SYS_finit_module, fd, params, 0)
err = ctypes.get_errno()
left = os.pread(nth, 32, 0).decode().strip()
os.write(nth, b"0")
print("ok" if rc == 0 else errno.errorcode.get(err, str(err)), left)
sys.exit(0 if rc == 0 else 1)
