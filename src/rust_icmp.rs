// SPDX-License-Identifier: GPL-2.0

//! rust_icmp: IPv4 ICMP (net/ipv4/icmp.c of Linux 6.12) in safe Rust.
//!
//! Loading the module swaps the kernel's built-in ICMP handler in `inet_protos[IPPROTO_ICMP]`
//! for [`Icmp`]; unloading swaps it back. Each function of icmp.c has an item of the same
//! name here, in the file named after its part of the protocol:
//!
//! | file            | icmp.c                                                            |
//! |-----------------|-------------------------------------------------------------------|
//! | `rcv.rs`        | `icmp_rcv`, `icmp_pointers[]`, `icmp_discard`                     |
//! | `echo.rs`       | `icmp_echo`, `icmp_timestamp`                                     |
//! | `probe.rs`      | `icmp_build_probe` (RFC 8335 PROBE)                               |
//! | `unreach.rs`    | `icmp_unreach`, `icmp_tag_validation`, `icmp_socket_deliver`, `icmp_redirect`, `icmp_err` |
//! | `reply.rs`      | `struct icmp_bxm`, `icmp_reply`, `icmp_push_reply`, `icmp_glue_bits` |
//! | `ratelimit.rs`  | `icmp_global_allow/consume`, `icmpv4_mask_allow`, `icmpv4_global_allow`, `icmpv4_xrlim_allow` |
//! | `stats.rs`      | the MIB updates, mirrored in this module's own counters           |

use kernel::{
    net::{
        ipv4::{
            xmit::{CtlSockConfig, CtlSockets},
            IPPROTO_ICMP, IP_PMTUDISC_DONT,
        },
        namespace,
        protocol::{BuiltinProtocol, InetProtocol, Instance, Registration},
        skb::{OwnedSkBuff, SkBuff},
    },
    prelude::*,
};

mod echo;
mod probe;
mod ratelimit;
mod rcv;
mod reply;
mod stats;
mod unreach;

module! {
    type: RustIcmp,
    name: "rust_icmp",
    author: "rust_icmp developers",
    description: "IPv4 ICMP (net/ipv4/icmp.c) reimplemented in Rust",
    license: "GPL",
}

/// The protocol: what the C code keeps in globals (the per-CPU control sockets,
/// `ipv4_icmp_sk`) plus this module's counters.
pub(crate) struct Icmp {
    /// `ipv4_icmp_sk`: one raw socket per CPU for sending replies and errors.
    socks: CtlSockets,
    /// This module's counters, one set per network namespace (`/proc/net/rust_icmp`).
    stats: Pin<KBox<namespace::Registration<stats::NetStats>>>,
}

static INSTANCE: Instance<Icmp> = Instance::new();

impl InetProtocol for Icmp {
    const PROTOCOL: u8 = IPPROTO_ICMP;

    fn instance() -> &'static Instance<Self> {
        &INSTANCE
    }

    fn handler(&self, skb: OwnedSkBuff) -> i32 {
        rcv::icmp_rcv(self, skb)
    }

    fn err_handler(&self, skb: &mut SkBuff, info: u32) -> Result {
        unreach::icmp_err(self, skb, info)
    }
}

struct RustIcmp {
    _icmp: Pin<KBox<Registration<Icmp>>>,
}

impl kernel::Module for RustIcmp {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let builtin = BuiltinProtocol::current(IPPROTO_ICMP).inspect_err(|e| {
            pr_err!(
                "inet_protos[IPPROTO_ICMP] does not hold the kernel's built-in handler ({:?}); \
                 is another ICMP module loaded?\n",
                e
            )
        })?;
        let socks = CtlSockets::new_raw(
            IPPROTO_ICMP,
            CtlSockConfig {
                sndbuf: CtlSockets::ICMP_SNDBUF,
                pmtudisc: IP_PMTUDISC_DONT,
            },
        )
        .inspect_err(|e| pr_err!("cannot create the ICMP control sockets ({:?})\n", e))?;
        let stats = KBox::pin_init(namespace::Registration::new(), GFP_KERNEL)
            .inspect_err(|e| pr_err!("cannot register per-namespace counters ({:?})\n", e))?;
        let icmp = Icmp { socks, stats };
        let icmp =
            KBox::pin_init(Registration::new(icmp, builtin), GFP_KERNEL).inspect_err(|e| {
                pr_err!(
                    "inet_protos[IPPROTO_ICMP] changed while loading ({:?})\n",
                    e
                )
            })?;
        pr_info!("IPPROTO_ICMP taken over\n");
        Ok(RustIcmp { _icmp: icmp })
    }
}

impl Drop for RustIcmp {
    fn drop(&mut self) {
        pr_info!("IPPROTO_ICMP given back to the built-in handler\n");
    }
}
