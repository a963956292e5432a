// SPDX-License-Identifier: GPL-2.0

//! rust_icmp: IPv4 ICMP (net/ipv4/icmp.c of Linux 7.3) in safe Rust.
//!
//! Loading the module swaps the kernel's built-in ICMP handler in `inet_protos[IPPROTO_ICMP]`
//! for [`Icmp`]; then `module!` enables the live patch that sends the icmp.c functions the
//! rest of the kernel calls (`__icmp_send`, the rate limits, ...) to Rust as well; also
//! `icmp_out_count` with `mirror=1`, whose counters need it (without, it would count what C's
//! counts, and every ICMP message sent would pay for the redirection).
//! Unloading takes two steps, because only user space can disable a live patch:
//! `scripts/unload` disables it (`/sys/kernel/livepatch/rust_icmp/enabled`), waits for the
//! transition, then removes the module, which swaps the handler back.
//!
//! The functions of icmp.c that handle messages each have an item of the same name here, in
//! the file named after their part of the protocol. `icmp_init`'s per-CPU control sockets
//! and `icmp_xmit_lock` are the kernel crate's `CtlSockets` (made in [`RustIcmp`]'s init);
//! `icmp_sk_init`'s sysctl defaults stay the kernel's, set for every namespace:
//!
//! - `rcv.rs`: `icmp_rcv`, `icmp_pointers[]`, `icmp_discard`;
//! - `echo.rs`: `icmp_echo`, `icmp_timestamp`;
//! - `probe.rs`: `icmp_build_probe` (RFC 8335 PROBE);
//! - `unreach.rs`: `icmp_unreach`, `icmp_tag_validation`, `icmp_socket_deliver`,
//!   `icmp_redirect`, `icmp_err`, `ip_icmp_error_rfc4884` and its `_validate`;
//! - `send.rs`: `__icmp_send`, `icmp_route_lookup`, `icmp_get_route_lookup_dev`;
//! - `reply.rs`: `struct icmp_bxm`, `icmp_reply`, `icmp_push_reply`, `icmp_glue_bits`;
//! - `ratelimit.rs`: `icmp_global_allow`, `icmp_global_consume`, `icmpv4_mask_allow`,
//!   `icmpv4_global_allow`, `icmpv4_xrlim_allow`;
//! - `stats.rs`: `icmp_out_count` and the MIB updates, mirrored in this module's own
//!   counters when it is loaded with `mirror=1`.

use kernel::{
    livepatch,
    net::{
        ipv4::{
            icmp::{self, IcmpHooks, IcmpSendSkb, LivepatchFuncs, OutCount, Rfc4884},
            xmit::{CtlSockConfig, CtlSockets, InetSkbParm},
            IcmpHdr, Ipv4ErrSkBuff, Ipv4RxSkBuff, IPPROTO_ICMP, IP_PMTUDISC_DONT,
        },
        namespace::{self, Net},
        protocol::{BuiltinProtocol, Registration},
        skb::{OwnedSkBuff, SkBuff},
        Be32,
    },
    prelude::*,
    sync::rcu,
};
mod echo;
mod ext;
mod probe;
mod ratelimit;
mod rcv;
mod reply;
mod send;
mod stats;
mod unreach;

module! {
    type: RustIcmp,
    name: "rust_icmp",
    authors: ["rust_icmp developers"],
    description: "IPv4 ICMP (net/ipv4/icmp.c) reimplemented in Rust",
    license: "GPL",
    params: {
        mirror: bool {
            default: false,
            description: "Count what Rust does in /proc/net/rust_icmp (per network namespace)",
        },
    },
    livepatch: true,
}

/// The protocol: what the C code keeps in globals (the per-CPU control sockets,
/// `ipv4_icmp_sk`) plus this module's counters.
pub(crate) struct Icmp {
    /// `ipv4_icmp_sk`: one raw socket per CPU for sending replies and errors.
    socks: CtlSockets,
    /// This module's counters, one set per network namespace (`/proc/net/rust_icmp`), if it
    /// was loaded with `mirror=1`. Without them it counts in the MIB only, as C does, and
    /// leaves no file in /proc/net.
    stats: Option<Pin<KBox<namespace::Registration<stats::NetStats>>>>,
}

kernel::inet_protocol! {
    impl InetProtocol for Icmp {
        const PROTOCOL: u8 = IPPROTO_ICMP;

        // Inlined into the protocol trampoline: on every ICMP message's path.
        #[inline]
        fn handler(&self, skb: OwnedSkBuff<Ipv4RxSkBuff>, rcu: &rcu::Guard) -> i32 {
            rcv::icmp_rcv(self, skb, rcu)
        }

        fn err_handler(&self, skb: Pin<&mut Ipv4ErrSkBuff>, info: u32) -> Result {
            unreach::icmp_err(self, skb, info)
        }
    }
}

impl IcmpHooks for Icmp {
    fn icmp_send(
        &self,
        skb_in: IcmpSendSkb<'_>,
        type_: i32,
        code: i32,
        info: Be32,
        parm: &InetSkbParm,
    ) {
        send::__icmp_send(self, skb_in, type_, code, info, parm);
    }

    // Inlined into the live patch's hook: on every ICMP message's path.
    #[inline]
    fn icmp_out_count(&self, net: &Net, type_: u8, rcu: &rcu::Guard) {
        stats::icmp_out_count(self, net, type_, rcu);
    }

    fn icmp_global_allow(&self, net: &Net) -> bool {
        ratelimit::icmp_global_allow(net)
    }

    fn icmp_global_consume(&self, net: &Net) {
        ratelimit::icmp_global_consume(net);
    }

    fn icmp_build_probe(&self, skb: &SkBuff, icmph: &mut IcmpHdr) -> bool {
        probe::icmp_build_probe(skb, icmph)
    }

    fn ip_icmp_error_rfc4884(&self, skb: &SkBuff, out: &mut Rfc4884, thlen: i32, off: i32) {
        unreach::ip_icmp_error_rfc4884(skb, out, thlen, off);
    }
}

/// The module: the protocol registration (dropping it swaps the built-in handler back). The
/// live patch is `module!`'s ([`livepatch::LivePatch`]).
struct RustIcmp {
    _icmp: Pin<KBox<Registration<Icmp>>>,
    /// Whether the live patch takes `icmp_out_count`: only for the mirror's counters.
    out_count: OutCount,
}

impl livepatch::LivePatch for RustIcmp {
    type Funcs = LivepatchFuncs;

    /// Enabled by `module!` right after [`RustIcmp::init`]: last, as nothing can undo it from
    /// here (a live patch is disabled from user space).
    fn funcs(&self) -> Self::Funcs {
        icmp::livepatch_funcs::<Icmp>(self.out_count)
    }
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
        let stats = if module_parameters::mirror.value() {
            let stats = KBox::pin_init(namespace::Registration::new(), GFP_KERNEL)
                .inspect_err(|e| pr_err!("cannot register per-namespace counters ({:?})\n", e))?;
            Some(stats)
        } else {
            None
        };
        let out_count = if stats.is_some() {
            OutCount::Patched
        } else {
            OutCount::Builtin
        };
        let icmp = Icmp { socks, stats };
        let icmp = KBox::pin_init(Registration::new(icmp, builtin), GFP_KERNEL)
            .inspect_err(|e| pr_err!("cannot take over inet_protos[IPPROTO_ICMP] ({:?})\n", e))?;
        pr_info!("IPPROTO_ICMP taken over; __icmp_send and friends are patched next\n");
        Ok(RustIcmp {
            _icmp: icmp,
            out_count,
        })
    }
}

impl Drop for RustIcmp {
    fn drop(&mut self) {
        pr_info!("giving IPPROTO_ICMP back to the built-in handler\n");
    }
}
