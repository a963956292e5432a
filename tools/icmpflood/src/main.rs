// SPDX-License-Identifier: GPL-2.0
//! icmpflood: the traffic generator of rust_icmp's benchmark (`make bench`).
//!
//! ```text
//! icmpflood echo NETNS DST [--size N] [--flows F] [--threads T] [--seconds S] [--batch B]
//!                          [--calibrate N]
//! icmpflood udp  NETNS DST [--size N] [--flows F] [--threads T] [--seconds S] [--batch B]
//!                          [--calibrate N]
//! icmpflood rtt  NETNS DST [--size N] [--count C] [--interval-ms I] [--mark 0|1]
//!                          [--calibrate N] [--udp 0|1]
//! ```
//!
//! From network namespace NETNS (a name under /run/netns):
//!
//! - `echo` floods DST with echo requests of N payload bytes for S seconds, F identifiers
//!   (flows) in turn, from T sender threads (each pinned to its own CPU when T > 1), and
//!   counts the echo replies carrying one of those identifiers;
//! - `udp` floods UDP port 9 of DST (closed) with N-byte datagrams from F source ports
//!   (at least T) and counts the port unreachables that quote one of them;
//! - `rtt` sends C echo requests one at a time, each after the previous reply (or a 1 s
//!   timeout) and a pause of I ms, and reports round-trip percentiles. With `--mark 1` it
//!   executes a marker instruction just before the first request and just after the last
//!   reply, so that the QEMU plugin tools/insncount counts the instructions of the round
//!   trips alone (make bench's `insns` workload); the marker is a no-op on any x86-64.
//!   With `--udp 1` the round trips are UDP datagrams of N bytes to port 9 of DST (closed),
//!   each answered by a port unreachable.
//!
//! `--calibrate N` (default 4000, 0 for none) measures how fast the host runs the guest: after
//! each `sendmmsg`, and in `rtt` after each reply (not with `--mark`), the sender times N
//! steps of a fixed loop. Under TCG the guest's speed is the host's, and on a shared machine
//! that can double or halve within seconds; the report scales rates and round-trip times by
//! it (`spin_per_sec`; the floods also give `work_seconds`, their time minus the spins').
//!
//! The result is one JSON object on standard output. The senders do as little work per
//! packet as possible: every packet is built once, before the clock starts, and sent again and
//! again with `sendmmsg` (B packets per system call), so that the sender's own cost stays
//! small next to the kernel's, which is what the benchmark compares.
//!
//! Through a veth pair the receiving side runs in the sender's system call (the packet is
//! queued to the sending CPU's backlog and processed when the sender re-enables bottom
//! halves), so each sender thread drives one CPU of the destination: T threads on T CPUs is
//! how the benchmark measures scaling. Replies are counted by one separate receiver thread on
//! its own raw socket; the senders' raw sockets filter out every ICMP type (`ICMP_FILTER`) so
//! that the kernel does not queue a copy of each reply to them too.

use std::{
    fs::File,
    io,
    mem::{size_of, zeroed},
    net::Ipv4Addr,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::{
        atomic::{AtomicBool, Ordering},
        Barrier,
    },
    thread,
    time::{Duration, Instant},
};

const ECHO_ID_BASE: u16 = 0x4b00;
const UDP_PORT_BASE: u16 = 42000;
const UNREACHABLE_PORT: u16 = 9;
// linux/icmp.h: a raw ICMP socket option, a bit mask of the types not to deliver.
const ICMP_FILTER: libc::c_int = 1;
// How long the receiver may go on draining its queue after the senders stopped.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

struct Args {
    mode: String,
    netns: String,
    dst: Ipv4Addr,
    size: usize,
    flows: u16,
    threads: usize,
    seconds: f64,
    batch: usize,
    count: usize,
    interval_ms: u64,
    /// Whether `echo`/`udp` receive and count the answers (`--receive 0`: the dut's counters
    /// are the only count, and no receiving thread or raw socket adds its cost).
    receive: bool,
    /// Whether `rtt` executes [`mark`] around its round trips.
    mark: bool,
    /// Iterations of [`spin`] each sender runs after each `sendmmsg` (0: none).
    calibrate: u32,
    /// Whether `rtt` times UDP datagrams to a closed port and their port unreachables
    /// instead of echo requests and replies.
    udp: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: icmpflood echo|udp|rtt NETNS DST [--size N] [--flows F] [--threads T] \
         [--seconds S] [--batch B] [--count C] [--interval-ms I] [--receive 0|1] [--mark 0|1] \
         [--calibrate N] [--udp 0|1]"
    );
    std::process::exit(2);
}

fn parse_args() -> Args {
    let mut it = std::env::args().skip(1);
    let mode = it.next().unwrap_or_else(|| usage());
    let netns = it.next().unwrap_or_else(|| usage());
    let dst = it
        .next()
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| usage());
    let mut a = Args {
        mode,
        netns,
        dst,
        size: 56,
        flows: 4,
        threads: 1,
        seconds: 3.0,
        batch: 32,
        count: 200,
        interval_ms: 5,
        receive: true,
        mark: false,
        calibrate: 4000,
        udp: false,
    };
    while let Some(flag) = it.next() {
        let v = it.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--size" => a.size = v.parse().unwrap_or_else(|_| usage()),
            "--flows" => a.flows = v.parse().unwrap_or_else(|_| usage()),
            "--threads" => a.threads = v.parse().unwrap_or_else(|_| usage()),
            "--receive" => a.receive = v != "0",
            "--mark" => a.mark = v != "0",
            "--udp" => a.udp = v != "0",
            "--calibrate" => a.calibrate = v.parse().unwrap_or_else(|_| usage()),
            "--seconds" => a.seconds = v.parse().unwrap_or_else(|_| usage()),
            "--batch" => a.batch = v.parse().unwrap_or_else(|_| usage()),
            "--count" => a.count = v.parse().unwrap_or_else(|_| usage()),
            "--interval-ms" => a.interval_ms = v.parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    // An echo request or datagram must fit one unfragmented 1500-byte packet on the veth;
    // rtt needs 8 payload bytes for its timestamp.
    let sane = a.flows > 0
        && a.threads > 0
        && a.threads <= 256
        && a.batch > 0
        && a.batch <= 1024
        && a.size <= 1472
        && a.seconds > 0.0
        && ["echo", "udp", "rtt"].contains(&a.mode.as_str());
    if !sane {
        usage();
    }
    if a.mode == "udp" {
        // Every sender thread needs a source port of its own.
        a.flows = a.flows.max(a.threads as u16);
    }
    a
}

fn check(ret: libc::c_int, what: &str) -> io::Result<libc::c_int> {
    if ret < 0 {
        let e = io::Error::last_os_error();
        Err(io::Error::new(e.kind(), format!("{what}: {e}")))
    } else {
        Ok(ret)
    }
}

/// Moves the calling thread into a named netns; threads it creates later inherit it.
fn enter_netns(name: &str) -> io::Result<()> {
    let f = File::open(format!("/run/netns/{name}"))
        .map_err(|e| io::Error::new(e.kind(), format!("netns {name}: {e}")))?;
    // SAFETY: `f` is an open namespace file; setns only changes this thread's namespace.
    check(
        unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) },
        "setns",
    )?;
    Ok(())
}

fn socket(domain: libc::c_int, ty: libc::c_int, proto: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: a plain system call with integer arguments.
    let fd = check(unsafe { libc::socket(domain, ty, proto) }, "socket")?;
    // SAFETY: `fd` is a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sets a socket option from a plain value; false if the kernel refused it.
fn setsockopt<T>(fd: &OwnedFd, level: libc::c_int, opt: libc::c_int, v: T) -> bool {
    // SAFETY: `v` lives for the call, and the length passed is its size.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            (&v as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    ret == 0
}

/// Enlarges a socket buffer beyond net.core.[rw]mem_max if we may (CAP_NET_ADMIN, as root in
/// the VM), else up to that limit. A receive buffer of the default 208 KiB holds only ~100
/// replies of 1400 bytes, too few when the receiver thread shares a CPU with a sender.
/// Failures are ignored: the run still works, only with more drops at the sender.
fn set_buffer(fd: &OwnedFd, force: libc::c_int, plain: libc::c_int, bytes: libc::c_int) {
    if !setsockopt(fd, libc::SOL_SOCKET, force, bytes) {
        setsockopt(fd, libc::SOL_SOCKET, plain, bytes);
    }
}

fn set_recv_timeout(fd: &OwnedFd, d: Duration) {
    let tv = libc::timeval {
        tv_sec: d.as_secs() as libc::time_t,
        tv_usec: d.subsec_micros() as libc::suseconds_t,
    };
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, tv);
}

fn sockaddr(addr: Ipv4Addr, port: u16) -> libc::sockaddr_in {
    // SAFETY: all-zero is a valid sockaddr_in.
    let mut sa: libc::sockaddr_in = unsafe { zeroed() };
    sa.sin_family = libc::AF_INET as libc::sa_family_t;
    sa.sin_port = port.to_be();
    sa.sin_addr.s_addr = u32::from(addr).to_be();
    sa
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An echo request with `size` payload bytes; the first 8 carry `stamp` if they exist.
fn echo_request(id: u16, seq: u16, size: usize, stamp: u64) -> Vec<u8> {
    let mut p = vec![0u8; 8 + size];
    p[0] = 8;
    p[4..6].copy_from_slice(&id.to_be_bytes());
    p[6..8].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in p[8..].iter_mut().enumerate() {
        *b = (i * 7 + 3) as u8;
    }
    if size >= 8 {
        p[8..16].copy_from_slice(&stamp.to_ne_bytes());
    }
    let c = checksum(&p);
    p[2..4].copy_from_slice(&c.to_be_bytes());
    p
}

/// Packets built once and sent again and again with one `sendmmsg` each time.
///
/// `iovs` points into the heap buffers of `bufs`, and `msgs` into those of `iovs` and
/// `dst`; none of them is resized or dropped before the others, so the pointers stay valid
/// for the life of the value, wherever the value itself moves.
struct Batch {
    _bufs: Vec<Vec<u8>>,
    _iovs: Vec<libc::iovec>,
    _dst: Box<libc::sockaddr_in>,
    msgs: Vec<libc::mmsghdr>,
}

impl Batch {
    fn new(mut bufs: Vec<Vec<u8>>, dst: libc::sockaddr_in) -> Self {
        let dst = Box::new(dst);
        let mut iovs: Vec<libc::iovec> = bufs
            .iter_mut()
            .map(|p| libc::iovec {
                iov_base: p.as_mut_ptr().cast(),
                iov_len: p.len(),
            })
            .collect();
        let msgs = iovs
            .iter_mut()
            .map(|iov| {
                // SAFETY: all-zero is a valid mmsghdr.
                let mut m: libc::mmsghdr = unsafe { zeroed() };
                m.msg_hdr.msg_name = (&*dst as *const libc::sockaddr_in).cast_mut().cast();
                m.msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
                m.msg_hdr.msg_iov = iov;
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        Batch {
            _bufs: bufs,
            _iovs: iovs,
            _dst: dst,
            msgs,
        }
    }

    /// Sends the whole batch without blocking; returns how many packets the kernel took.
    fn send(&mut self, fd: &OwnedFd) -> usize {
        // SAFETY: the headers point at live buffers and at the destination (see the type's
        // comment); the kernel writes only the `msg_len` fields of `msgs`.
        let n = unsafe {
            libc::sendmmsg(
                fd.as_raw_fd(),
                self.msgs.as_mut_ptr(),
                self.msgs.len() as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        n.max(0) as usize
    }
}

/// The CPUs this process may run on, in order.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: all-zero is a valid (empty) cpu_set_t.
    let mut set: libc::cpu_set_t = unsafe { zeroed() };
    // SAFETY: `set` is writable and its size is passed.
    let ret = unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) };
    if ret != 0 {
        return vec![0];
    }
    // SAFETY: CPU_ISSET reads within the set for any index below CPU_SETSIZE.
    let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect();
    if cpus.is_empty() {
        vec![0]
    } else {
        cpus
    }
}

/// Pins the calling thread to one CPU (best effort: unpinned, the run only scales worse).
fn pin_to(cpu: usize) {
    // SAFETY: all-zero is a valid (empty) cpu_set_t.
    let mut set: libc::cpu_set_t = unsafe { zeroed() };
    // SAFETY: `cpu` comes from sched_getaffinity, so it is below CPU_SETSIZE.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is initialised and its size is passed; 0 means the calling thread.
    unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) };
}

/// Per CPU, how long it has been busy since boot, in clock ticks: the user, nice, system,
/// irq, softirq and steal columns of /proc/stat (empty if it cannot be read).
fn cpu_busy_ticks() -> Vec<u64> {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return Vec::new();
    };
    stat.lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .map(|l| {
            let f: Vec<u64> = l
                .split_whitespace()
                .skip(1)
                .map(|x| x.parse().unwrap_or(0))
                .collect();
            [0, 1, 2, 5, 6, 7]
                .iter()
                .map(|&i| f.get(i).copied().unwrap_or(0))
                .sum()
        })
        .collect()
}

/// Receives ICMP messages (with their IP header, as raw sockets do), counting those `wanted`
/// accepts, until `stop` is set and the socket's queue is empty (nothing for 50 ms); returns
/// the count. Through veth a reply is queued while its request is being sent, so what is
/// still queued when the senders stop is all that will come.
fn receive(fd: &OwnedFd, stop: &AtomicBool, wanted: impl Fn(&[u8]) -> bool) -> u64 {
    const N: usize = 64;
    let mut bufs = vec![[0u8; 2048]; N];
    let mut got = 0u64;
    // A receive timeout lets the loop notice `stop`.
    set_recv_timeout(fd, Duration::from_millis(50));
    let mut iovs: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        })
        .collect();
    let mut msgs: Vec<libc::mmsghdr> = iovs
        .iter_mut()
        .map(|iov| {
            // SAFETY: all-zero is a valid mmsghdr.
            let mut m: libc::mmsghdr = unsafe { zeroed() };
            m.msg_hdr.msg_iov = iov;
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect();
    let mut stopped_at = None;
    loop {
        if stopped_at.is_none() && stop.load(Ordering::Relaxed) {
            stopped_at = Some(Instant::now());
        }
        // SAFETY: the headers point at `iovs`, which point at `bufs`; all three live, and
        // are not otherwise touched, for the duration of the call.
        let n = unsafe {
            libc::recvmmsg(
                fd.as_raw_fd(),
                msgs.as_mut_ptr(),
                N as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        for (i, m) in msgs.iter().enumerate().take(n.max(0) as usize) {
            let len = (m.msg_len as usize).min(bufs[i].len());
            if wanted(&bufs[i][..len]) {
                got += 1;
            }
        }
        if let Some(t) = stopped_at {
            if n <= 0 || t.elapsed() > DRAIN_LIMIT {
                return got;
            }
        }
    }
}

/// The ICMP (or other transport) part of a packet that starts with an IPv4 header.
fn icmp_of(p: &[u8]) -> Option<&[u8]> {
    let ihl = usize::from(*p.first()? & 15) * 4;
    p.get(ihl..).filter(|i| i.len() >= 8)
}

/// What one sender thread sends: its socket(s), each with its prebuilt batch.
/// A UDP socket bound to `port` on every local address.
fn udp_socket(port: u16) -> io::Result<OwnedFd> {
    let s = socket(libc::AF_INET, libc::SOCK_DGRAM, 0)?;
    let sa = sockaddr(Ipv4Addr::UNSPECIFIED, port);
    // SAFETY: `sa` lives for the call, and the length passed is its size.
    check(
        unsafe {
            libc::bind(
                s.as_raw_fd(),
                (&sa as *const libc::sockaddr_in).cast(),
                size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        },
        "bind",
    )?;
    Ok(s)
}

fn sender_batches(a: &Args, t: usize) -> io::Result<Vec<(OwnedFd, Batch)>> {
    let threads = a.threads;
    if a.mode == "echo" {
        let raw = socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP)?;
        set_buffer(&raw, libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, 8 << 20);
        // Every type filtered: the replies go to the receiver's socket only.
        setsockopt(&raw, libc::SOL_RAW, ICMP_FILTER, u32::MAX);
        // Thread t's packets take the identifiers t, t + T, t + 2T... (modulo F) in turn.
        let packets = (0..a.batch)
            .map(|j| {
                let flow = ((t + j * threads) % usize::from(a.flows)) as u16;
                echo_request(ECHO_ID_BASE + flow, j as u16, a.size, 0)
            })
            .collect();
        Ok(vec![(raw, Batch::new(packets, sockaddr(a.dst, 0)))])
    } else {
        // Thread t owns the source ports t, t + T, t + 2T... (flows >= threads).
        let mut out = Vec::new();
        for flow in (t..usize::from(a.flows)).step_by(threads) {
            let s = udp_socket(UDP_PORT_BASE + flow as u16)?;
            set_buffer(&s, libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, 8 << 20);
            let packets = vec![vec![0x5a; a.size]; a.batch];
            out.push((s, Batch::new(packets, sockaddr(a.dst, UNREACHABLE_PORT))));
        }
        Ok(out)
    }
}

/// A fixed amount of plain CPU work: `iters` steps of a 64-bit LCG, each through memory
/// (`black_box`: without it the compiler composes eight steps into one). How long it takes
/// measures how fast the host runs this vCPU at that moment.
#[inline(never)]
fn spin(iters: u32) -> u64 {
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    for _ in 0..iters {
        x = std::hint::black_box(
            x.wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407),
        );
    }
    x
}

/// What one sender thread did: packets sent, and its calibration spins (iterations, time).
#[derive(Default)]
struct Sent {
    packets: u64,
    spin_iters: u64,
    spin_time: Duration,
}

/// One sender thread: sends its batches in turn until `deadline`, each `sendmmsg` followed
/// by `calibrate` iterations of [`spin`], timed.
///
/// The spins sample the host's speed all through the flood, in the same vCPU and at the
/// same moments as the packets: under TCG the host's speed can double or halve from one
/// second to the next (other guests of the machine we run on), which a calibration before or
/// after the flood cannot follow.
fn send_until(mut socks: Vec<(OwnedFd, Batch)>, deadline: Instant, a: &Args) -> Sent {
    let mut out = Sent::default();
    let (mut k, count) = (0usize, socks.len());
    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        if a.calibrate > 0 {
            spin(a.calibrate);
            out.spin_iters += u64::from(a.calibrate);
            let after = Instant::now();
            out.spin_time += after - now;
            if after >= deadline {
                break;
            }
        }
        let (fd, b) = &mut socks[k];
        k = (k + 1) % count;
        let n = b.send(fd);
        out.packets += n as u64;
        if n < a.batch {
            // The socket's send buffer is full: let the softirq and the receiver catch up.
            thread::yield_now();
        }
    }
    out
}

fn flood(a: &Args) -> io::Result<String> {
    let rx = if a.receive {
        let rx = socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP)?;
        set_buffer(&rx, libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, 32 << 20);
        Some(rx)
    } else {
        None
    };
    let echo_mode = a.mode == "echo";
    let ids = ECHO_ID_BASE..ECHO_ID_BASE + a.flows;
    let ports = UDP_PORT_BASE..UDP_PORT_BASE + a.flows;
    let wanted = move |p: &[u8]| match icmp_of(p) {
        Some(i) if echo_mode => i[0] == 0 && ids.contains(&u16::from_be_bytes([i[4], i[5]])),
        // A port unreachable quoting one of our datagrams (inner IP header, then UDP).
        Some(i) if !echo_mode && i[0] == 3 && i[1] == 3 => icmp_of(&i[8..]).is_some_and(|u| {
            ports.contains(&u16::from_be_bytes([u[0], u[1]]))
                && u16::from_be_bytes([u[2], u[3]]) == UNREACHABLE_PORT
        }),
        _ => false,
    };
    let cpus = allowed_cpus();
    let pin = a.threads > 1;
    let stop = AtomicBool::new(false);
    // The senders build their sockets and packets (raw pointers: they stay in the thread
    // that made them), then meet the main thread here, and the clock starts.
    let ready = Barrier::new(a.threads + 1);
    let (sent, elapsed, busy, received) = thread::scope(|s| {
        let receiver = rx.as_ref().map(|rx| s.spawn(|| receive(rx, &stop, wanted)));
        let senders: Vec<_> = (0..a.threads)
            .map(|t| {
                let (cpu, ready) = (cpus[t % cpus.len()], &ready);
                s.spawn(move || {
                    if pin {
                        pin_to(cpu);
                    }
                    let socks = sender_batches(a, t);
                    ready.wait();
                    let deadline = Instant::now() + Duration::from_secs_f64(a.seconds);
                    Ok::<Sent, io::Error>(send_until(socks?, deadline, a))
                })
            })
            .collect();
        ready.wait();
        let start = Instant::now();
        let busy_before = cpu_busy_ticks();
        let mut sent = Ok(Sent::default());
        for h in senders {
            let r = h
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("a sender thread panicked")));
            sent = sent.and_then(|total| {
                r.map(|n| Sent {
                    packets: total.packets + n.packets,
                    spin_iters: total.spin_iters + n.spin_iters,
                    spin_time: total.spin_time + n.spin_time,
                })
            });
        }
        let elapsed = start.elapsed().as_secs_f64();
        let busy_after = cpu_busy_ticks();
        stop.store(true, Ordering::Relaxed);
        // How busy each CPU was while the senders ran, in %: whether every vCPU worked.
        // SAFETY: sysconf only reads a constant.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let busy: Vec<String> = busy_after
            .iter()
            .zip(&busy_before)
            .map(|(a, b)| format!("{:.1}", a.saturating_sub(*b) as f64 / hz / elapsed * 100.0))
            .collect();
        let received = receiver.map_or(0, |h| h.join().unwrap_or(0));
        (sent, elapsed, busy, received)
    });
    let Sent {
        packets: sent,
        spin_iters,
        spin_time,
    } = sent?;
    // Seconds per vCPU not spent spinning: the time the packets had.
    let spin_secs = spin_time.as_secs_f64() / a.threads as f64;
    let spin_rate = if spin_time.is_zero() {
        0.0
    } else {
        spin_iters as f64 / spin_time.as_secs_f64()
    };
    Ok(format!(
        "{{\"mode\": \"{}\", \"size\": {}, \"flows\": {}, \"threads\": {}, \"batch\": {}, \
         \"seconds\": {:.4}, \"sent\": {}, \"received\": {}, \"sent_per_sec\": {:.1}, \
         \"received_per_sec\": {:.1}, \"cpu_busy_pct\": [{}], \"spin_iters\": {}, \
         \"spin_seconds\": {:.4}, \"spin_per_sec\": {:.0}, \"work_seconds\": {:.4}}}",
        a.mode,
        a.size,
        a.flows,
        a.threads,
        a.batch,
        elapsed,
        sent,
        received,
        sent as f64 / elapsed,
        received as f64 / elapsed,
        busy.join(", "),
        spin_iters,
        spin_secs,
        spin_rate,
        elapsed - spin_secs
    ))
}

/// The marker of tools/insncount: `nopl 0x1ce1c0de(%rax,%rax,1)`, an 8-byte no-op whose
/// displacement no compiler emits. Under the plugin it ends one counting window and starts
/// the next; anywhere else it does nothing.
#[inline(never)]
fn mark() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a no-op: it reads no memory and changes no register or flag.
    unsafe {
        std::arch::asm!(
            ".byte 0x0f, 0x1f, 0x84, 0x00, 0xde, 0xc0, 0xe1, 0x1c",
            options(nomem, nostack, preserves_flags)
        );
    }
}

fn rtt(a: &Args) -> io::Result<String> {
    let raw = socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP)?;
    // Only echo replies reach this socket, or with --udp only destination unreachables.
    let only = if a.udp { 3 } else { 0 };
    setsockopt(&raw, libc::SOL_RAW, ICMP_FILTER, !(1u32 << only));
    set_recv_timeout(&raw, Duration::from_secs(1));
    // With --udp the datagrams leave from a socket bound to UDP_PORT_BASE, to port 9.
    let udp = if a.udp {
        Some(udp_socket(UDP_PORT_BASE)?)
    } else {
        None
    };
    let tx = udp.as_ref().unwrap_or(&raw);
    let dst = sockaddr(a.dst, if a.udp { UNREACHABLE_PORT } else { 0 });
    let origin = Instant::now();
    let mut rtts = Vec::with_capacity(a.count);
    // The host's speed right after each answered round trip (spin iterations per second),
    // unless the plugin counts (`--mark`): see `send_until`.
    let calibrate = if a.mark { 0 } else { a.calibrate };
    let mut speeds = Vec::with_capacity(a.count);
    let mut lost = 0usize;
    let mut buf = [0u8; 4096];
    let size = a.size.max(8);
    if a.mark {
        mark();
    }
    for i in 0..a.count {
        let seq = i as u16;
        let sent_at = origin.elapsed().as_nanos() as u64;
        let p = if a.udp {
            // The datagram's payload: the time it was sent, then its sequence number.
            let mut p = vec![0x5a; size.max(10)];
            p[..8].copy_from_slice(&sent_at.to_ne_bytes());
            p[8..10].copy_from_slice(&seq.to_be_bytes());
            p
        } else {
            echo_request(ECHO_ID_BASE, seq, size, sent_at)
        };
        // SAFETY: `p` and `dst` live for the call, and their lengths are passed.
        let n = unsafe {
            libc::sendto(
                tx.as_raw_fd(),
                p.as_ptr().cast(),
                p.len(),
                0,
                (&dst as *const libc::sockaddr_in).cast(),
                size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        if n < 0 {
            lost += 1;
            continue;
        }
        let mut answered = false;
        let wait_until = Instant::now() + Duration::from_secs(1);
        while !answered && Instant::now() < wait_until {
            // SAFETY: `buf` is writable for its length.
            let n = unsafe { libc::recv(raw.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                break;
            }
            let now = origin.elapsed().as_nanos() as u64;
            let got = &buf[..n as usize];
            if a.udp {
                // A port unreachable quoting our datagram: inner IP header, UDP header,
                // then the payload's time and sequence number.
                let quoted = icmp_of(got)
                    .filter(|i| i[0] == 3 && i[1] == 3)
                    .and_then(|i| icmp_of(&i[8..]));
                if let Some(u) = quoted.filter(|u| u.len() >= 18) {
                    if u16::from_be_bytes([u[0], u[1]]) == UDP_PORT_BASE
                        && u16::from_be_bytes([u[2], u[3]]) == UNREACHABLE_PORT
                        && u16::from_be_bytes([u[16], u[17]]) == seq
                    {
                        let t = u64::from_ne_bytes(u[8..16].try_into().unwrap_or([0; 8]));
                        rtts.push(now.saturating_sub(t) as f64 / 1000.0);
                        answered = true;
                    }
                }
            } else if let Some(i) = icmp_of(got) {
                if i[0] == 0
                    && u16::from_be_bytes([i[4], i[5]]) == ECHO_ID_BASE
                    && u16::from_be_bytes([i[6], i[7]]) == seq
                    && i.len() >= 16
                {
                    let t = u64::from_ne_bytes(i[8..16].try_into().unwrap_or([0; 8]));
                    rtts.push(now.saturating_sub(t) as f64 / 1000.0);
                    answered = true;
                }
            }
        }
        if !answered {
            lost += 1;
        } else if calibrate > 0 {
            let t0 = Instant::now();
            spin(calibrate);
            speeds.push(f64::from(calibrate) / t0.elapsed().as_secs_f64().max(1e-9));
        }
        if a.interval_ms > 0 {
            thread::sleep(Duration::from_millis(a.interval_ms));
        }
    }
    if a.mark {
        mark();
    }
    // Each round trip also at the run's median host speed: its time times how much faster
    // than the median the host ran just after it.
    let mut scaled = Vec::new();
    let mut sorted_speeds = speeds.clone();
    sorted_speeds.sort_by(|x, y| x.total_cmp(y));
    let median_speed = sorted_speeds
        .get(sorted_speeds.len() / 2)
        .copied()
        .unwrap_or(0.0);
    if speeds.len() == rtts.len() && median_speed > 0.0 {
        scaled = rtts
            .iter()
            .zip(&speeds)
            .map(|(r, v)| r * v / median_speed)
            .collect();
    }
    rtts.sort_by(|x, y| x.total_cmp(y));
    scaled.sort_by(|x, y| x.total_cmp(y));
    let pct_of = |v: &[f64], p: f64| -> f64 {
        if v.is_empty() {
            return 0.0;
        }
        v[((v.len() - 1) as f64 * p).round() as usize]
    };
    let pct = |p: f64| pct_of(&rtts, p);
    let mean = rtts.iter().sum::<f64>() / rtts.len().max(1) as f64;
    Ok(format!(
        "{{\"mode\": \"rtt\", \"size\": {}, \"count\": {}, \"answered\": {}, \"lost\": {}, \
         \"min_us\": {:.1}, \"p50_us\": {:.1}, \"p90_us\": {:.1}, \"p99_us\": {:.1}, \
         \"max_us\": {:.1}, \"mean_us\": {:.1}, \"spin_per_sec\": {:.0}, \
         \"p50_us_at_median_speed\": {:.1}, \"p99_us_at_median_speed\": {:.1}}}",
        size,
        a.count,
        rtts.len(),
        lost,
        pct(0.0),
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(1.0),
        mean,
        median_speed,
        pct_of(&scaled, 0.5),
        pct_of(&scaled, 0.99)
    ))
}

fn main() {
    let a = parse_args();
    let result =
        enter_netns(&a.netns).and_then(|()| if a.mode == "rtt" { rtt(&a) } else { flood(&a) });
    match result {
        Ok(json) => println!("{json}"),
        Err(e) => {
            eprintln!("icmpflood: {e}");
            std::process::exit(1);
        }
    }
}
