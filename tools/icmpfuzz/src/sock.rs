// SPDX-License-Identifier: GPL-2.0
//! System calls: entering a network namespace, sending Ethernet frames and capturing IPv4
//! packets with AF_PACKET sockets.

use std::{
    fs::File,
    io,
    mem::{size_of, zeroed},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

const ETH_P_IP: u16 = 0x0800;

fn check(ret: libc::c_int, what: &str) -> io::Result<libc::c_int> {
    if ret < 0 {
        let e = io::Error::last_os_error();
        Err(io::Error::new(e.kind(), format!("{what}: {e}")))
    } else {
        Ok(ret)
    }
}

/// Moves the calling thread into the network namespace /run/netns/NAME; sockets it
/// creates afterwards belong there.
pub fn enter_netns(name: &str) -> io::Result<()> {
    let f = File::open(format!("/run/netns/{name}"))
        .map_err(|e| io::Error::new(e.kind(), format!("netns {name}: {e}")))?;
    // SAFETY: `f` is an open namespace file; setns changes only this thread's namespace.
    check(
        unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) },
        "setns",
    )?;
    Ok(())
}

/// Restricts the calling thread to the CPU it runs on now.
pub fn pin_to_current_cpu() -> io::Result<()> {
    // SAFETY: plain system call.
    let cpu = check(unsafe { libc::sched_getcpu() }, "sched_getcpu")?;
    // SAFETY: all-zero is an empty cpu_set_t.
    let mut set: libc::cpu_set_t = unsafe { zeroed() };
    // SAFETY: `set` is a live cpu_set_t and `cpu` a CPU number the kernel gave.
    unsafe { libc::CPU_SET(cpu as usize, &mut set) };
    // SAFETY: `set` lives for the call and its size is passed; 0 is the calling thread.
    check(
        unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) },
        "sched_setaffinity",
    )
    .map(|_| ())
}

fn socket(domain: libc::c_int, ty: libc::c_int, proto: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain system call with no pointers.
    let fd = check(unsafe { libc::socket(domain, ty, proto) }, "socket")?;
    // SAFETY: `fd` is a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn setsockopt<T>(fd: &OwnedFd, level: libc::c_int, opt: libc::c_int, v: &T) -> io::Result<()> {
    // SAFETY: `v` points at a live T of the size passed, for the duration of the call.
    check(
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                level,
                opt,
                (v as *const T).cast(),
                size_of::<T>() as libc::socklen_t,
            )
        },
        "setsockopt",
    )
    .map(|_| ())
}

/// A socket buffer of `bytes`: SO_*BUFFORCE (root, beyond net.core.*mem_max), else the
/// plain option.
fn set_buffer(fd: &OwnedFd, force: libc::c_int, plain: libc::c_int, bytes: libc::c_int) {
    if setsockopt(fd, libc::SOL_SOCKET, force, &bytes).is_err() {
        let _ = setsockopt(fd, libc::SOL_SOCKET, plain, &bytes);
    }
}

pub fn ifindex(name: &str) -> io::Result<libc::c_int> {
    let c = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name"))?;
    // SAFETY: `c` is a NUL-terminated string that lives for the call.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("interface {name}: {e}")));
    }
    Ok(i as libc::c_int)
}

fn sockaddr_ll(ifindex: libc::c_int) -> libc::sockaddr_ll {
    // SAFETY: all-zero is a valid sockaddr_ll.
    let mut sa: libc::sockaddr_ll = unsafe { zeroed() };
    sa.sll_family = libc::AF_PACKET as u16;
    sa.sll_protocol = ETH_P_IP.to_be();
    sa.sll_ifindex = ifindex;
    sa
}

/// Sends complete Ethernet frames (the generator writes the link-layer header, so it can
/// address broadcast, multicast and other hosts' MACs) on one interface.
pub struct Sender {
    fd: OwnedFd,
    to: libc::sockaddr_ll,
}

/// What a batch sent: frames the kernel took, and frames it refused (with the last error).
pub struct Sent {
    pub ok: usize,
    pub refused: usize,
    pub error: Option<io::Error>,
}

impl Sender {
    pub fn new(ifindex: libc::c_int) -> io::Result<Sender> {
        // Protocol 0: this socket receives nothing.
        let fd = socket(libc::AF_PACKET, libc::SOCK_RAW, 0)?;
        set_buffer(&fd, libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, 4 << 20);
        Ok(Sender {
            fd,
            to: sockaddr_ll(ifindex),
        })
    }

    /// Sends every frame with sendmmsg, blocking while the socket buffer is full. A frame
    /// the kernel refuses (sendmmsg fails on the first message of what is left) is counted
    /// and skipped.
    pub fn send(&self, frames: &mut [Vec<u8>]) -> Sent {
        let mut out = Sent {
            ok: 0,
            refused: 0,
            error: None,
        };
        let mut iovs: Vec<libc::iovec> = frames
            .iter_mut()
            .map(|f| libc::iovec {
                iov_base: f.as_mut_ptr().cast(),
                iov_len: f.len(),
            })
            .collect();
        let mut msgs: Vec<libc::mmsghdr> = iovs
            .iter_mut()
            .map(|iov| {
                // SAFETY: all-zero is a valid mmsghdr.
                let mut m: libc::mmsghdr = unsafe { zeroed() };
                m.msg_hdr.msg_name = (&self.to as *const libc::sockaddr_ll).cast_mut().cast();
                m.msg_hdr.msg_namelen = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
                m.msg_hdr.msg_iov = iov;
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        let mut at = 0;
        while at < msgs.len() {
            let rest = &mut msgs[at..];
            // SAFETY: every header points at a live frame and at `self.to` for the call.
            let n = unsafe {
                libc::sendmmsg(self.fd.as_raw_fd(), rest.as_mut_ptr(), rest.len() as u32, 0)
            };
            if n > 0 {
                out.ok += n as usize;
                at += n as usize;
                continue;
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => {}
                Some(libc::ENOBUFS) | Some(libc::EAGAIN) => std::thread::yield_now(),
                _ => {
                    out.refused += 1;
                    out.error = Some(e);
                    at += 1;
                }
            }
        }
        out
    }
}

/// IPv4 packets arriving at an interface (what the other end sent), from the IP header on.
/// Bound to ETH_P_IP, the socket does not see the frames its own host sends.
pub struct Capture {
    fd: OwnedFd,
}

impl Capture {
    pub fn new(ifindex: libc::c_int) -> io::Result<Capture> {
        let fd = socket(
            libc::AF_PACKET,
            libc::SOCK_DGRAM,
            i32::from(ETH_P_IP.to_be()),
        )?;
        set_buffer(&fd, libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, 64 << 20);
        let sa = sockaddr_ll(ifindex);
        // SAFETY: `sa` lives for the call and its size is passed.
        check(
            unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&sa as *const libc::sockaddr_ll).cast(),
                    size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                )
            },
            "bind",
        )?;
        // A receive timeout lets the capture loop notice that it should stop.
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 50_000,
        };
        setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv)?;
        Ok(Capture { fd })
    }

    /// Receives up to `bufs.len()` packets (waiting for the first at most the receive
    /// timeout) and calls `each` with every one that arrived from the link.
    pub fn receive(&self, bufs: &mut [Vec<u8>], mut each: impl FnMut(&mut [u8])) -> usize {
        // SAFETY: all-zero is a valid sockaddr_ll.
        let mut names: Vec<libc::sockaddr_ll> = vec![unsafe { zeroed() }; bufs.len()];
        let mut iovs: Vec<libc::iovec> = bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            })
            .collect();
        let mut msgs: Vec<libc::mmsghdr> = iovs
            .iter_mut()
            .zip(names.iter_mut())
            .map(|(iov, name)| {
                // SAFETY: all-zero is a valid mmsghdr.
                let mut m: libc::mmsghdr = unsafe { zeroed() };
                m.msg_hdr.msg_name = (name as *mut libc::sockaddr_ll).cast();
                m.msg_hdr.msg_namelen = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
                m.msg_hdr.msg_iov = iov;
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        // SAFETY: the headers point at live buffers and addresses for the duration of the
        // call.
        let n = unsafe {
            libc::recvmmsg(
                self.fd.as_raw_fd(),
                msgs.as_mut_ptr(),
                msgs.len() as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        let n = n.max(0) as usize;
        for i in 0..n {
            if names[i].sll_pkttype == libc::PACKET_OUTGOING {
                continue;
            }
            let len = (msgs[i].msg_len as usize).min(bufs[i].len());
            each(&mut bufs[i][..len]);
        }
        n
    }

    /// Packets the kernel dropped because the socket's buffer was full (PACKET_STATISTICS;
    /// reading resets it).
    pub fn drops(&self) -> u64 {
        // SAFETY: all-zero is a valid tpacket_stats.
        let mut st: libc::tpacket_stats = unsafe { zeroed() };
        let mut len = size_of::<libc::tpacket_stats>() as libc::socklen_t;
        // SAFETY: `st` and `len` are live and describe a buffer of that size.
        let r = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&mut st as *mut libc::tpacket_stats).cast(),
                &mut len,
            )
        };
        if r < 0 {
            return u64::MAX;
        }
        u64::from(st.tp_drops)
    }
}

/// `IP_RECVERR_RFC4884` (include/uapi/linux/in.h), which the libc crate lacks.
const IP_RECVERR_RFC4884: libc::c_int = 26;

/// A UDP socket of the dut that asked for ICMP errors (IP_RECVERR, with the RFC 4884
/// extension information): errors quoting a datagram from its port reach it through
/// icmp_unreach, icmp_socket_deliver, UDP's error handler and ip_icmp_error (and
/// ip_icmp_error_rfc4884). Nothing reads it until the end of the run.
pub struct ErrQueue {
    fd: OwnedFd,
}

impl ErrQueue {
    pub fn new(port: u16) -> io::Result<ErrQueue> {
        let fd = socket(libc::AF_INET, libc::SOCK_DGRAM, 0)?;
        // Room for every error of a run: a full queue would drop the rest.
        set_buffer(&fd, libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, 64 << 20);
        setsockopt(&fd, libc::SOL_IP, libc::IP_RECVERR, &1i32)?;
        setsockopt(&fd, libc::SOL_IP, IP_RECVERR_RFC4884, &1i32)?;
        // SAFETY: all-zero is a valid sockaddr_in.
        let mut sa: libc::sockaddr_in = unsafe { zeroed() };
        sa.sin_family = libc::AF_INET as libc::sa_family_t;
        sa.sin_port = port.to_be();
        // SAFETY: `sa` lives for the call and its size is passed.
        check(
            unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&sa as *const libc::sockaddr_in).cast(),
                    size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            },
            "bind",
        )?;
        Ok(ErrQueue { fd })
    }

    /// Everything queued, oldest first, one line per error: the control message (struct
    /// sock_extended_err and the offender's address), the address the error names, and
    /// the quoted payload, in hex.
    pub fn drain(&self) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let mut data = [0u8; 2048];
            let mut control = [0u8; 512];
            // SAFETY: all-zero is a valid sockaddr_in.
            let mut name: libc::sockaddr_in = unsafe { zeroed() };
            let mut iov = libc::iovec {
                iov_base: data.as_mut_ptr().cast(),
                iov_len: data.len(),
            };
            // SAFETY: all-zero is a valid msghdr.
            let mut msg: libc::msghdr = unsafe { zeroed() };
            msg.msg_name = (&mut name as *mut libc::sockaddr_in).cast();
            msg.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = control.len();
            // SAFETY: `msg` points at live buffers of the sizes it states.
            let n = unsafe {
                libc::recvmsg(
                    self.fd.as_raw_fd(),
                    &mut msg,
                    libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                return out;
            }
            let mut line = String::new();
            // SAFETY: `msg` was filled by recvmsg; CMSG_FIRSTHDR/NXTHDR stay within
            // msg_control and msg_controllen.
            let mut cm = unsafe { libc::CMSG_FIRSTHDR(&msg) };
            while !cm.is_null() {
                // SAFETY: `cm` is a control message header inside `control`.
                let (level, ty, len) =
                    unsafe { ((*cm).cmsg_level, (*cm).cmsg_type, (*cm).cmsg_len) };
                // SAFETY: as above; the data of a message of `len` bytes follows its header.
                let body = unsafe {
                    let p = libc::CMSG_DATA(cm);
                    let hdr = p.offset_from(cm.cast::<u8>()) as usize;
                    std::slice::from_raw_parts(p, len.saturating_sub(hdr))
                };
                line += &format!("{level}/{ty}:{} ", crate::gen::hex(body));
                // SAFETY: `cm` is a header inside `msg`'s control buffer.
                cm = unsafe { libc::CMSG_NXTHDR(&msg, cm) };
            }
            // SAFETY: sockaddr_in is plain data, read as bytes.
            let name_bytes = unsafe {
                std::slice::from_raw_parts(
                    (&name as *const libc::sockaddr_in).cast::<u8>(),
                    (msg.msg_namelen as usize).min(size_of::<libc::sockaddr_in>()),
                )
            };
            line += &format!(
                "name {} flags {:#x} data {}",
                crate::gen::hex(name_bytes),
                msg.msg_flags,
                crate::gen::hex(&data[..(n as usize).min(data.len())])
            );
            out.push(line);
        }
    }
}
