// SPDX-License-Identifier: GPL-2.0
//! icmpfuzz: the packet generator of rust_icmp's fuzz test (tests/fuzz.sh).
//!
//! ```text
//! icmpfuzz [--mode volume|diff] [--seed S] [--count N] [--first I] [--netns NS] [--ifname IF]
//!          [--rate FPS] [--batch B] [--settle SECS] [--capture FILE | --no-capture]
//!          [--errqueue FILE] [--dut-netns NS2] [--peer-mac MAC] [--dut-mac MAC] [--no-pin]
//! icmpfuzz --dump I [--seed S]
//! ```
//!
//! From network namespace NS (default `peer`), sends N seeded triggers, numbers I to
//! I+N-1 (see `gen.rs`: random and malformed ICMP, ICMP errors quoting good and bad
//! headers, PROBE objects with bad lengths, options, fragments, broadcast and multicast
//! destinations, and a few datagrams that make the dut send errors) as Ethernet frames on
//! IF (default `veth0`) with an AF_PACKET socket, `sendmmsg` in batches of B, paced to FPS
//! frames per second (0: as fast as the kernel takes them), from one CPU (`--no-pin`: any).
//! Meanwhile it captures the IPv4 packets arriving on IF
//! (what the dut sends), masks what differs between runs (IP ID, timestamps, checksums
//! covering them; see `wire::mask`), and after the last trigger waits until nothing arrived
//! for SECS seconds. With `--capture FILE` it writes one line per captured packet,
//! `TAG HEX`, where TAG is the 16-bit index of the trigger the packet answers (`-` if the
//! packet does not say). Two runs of the same seed, one with the built-in ICMP code and one
//! with rust_icmp, must give the same lines in some order.
//!
//! With `--errqueue FILE`, a UDP socket in namespace NS2 (default `dut`) bound to port
//! 33000 asks for ICMP errors (IP_RECVERR and IP_RECVERR_RFC4884) during the run; some
//! errors quote datagrams from it. Afterwards FILE gets what its error queue holds, one
//! line per error, oldest first: the same lines in the same order in both runs.
//!
//! The result is one JSON object on standard output: triggers and frames sent, how many
//! triggers reach the dut's icmp_rcv (`to_icmp`, what IcmpInMsgs must count), the time and
//! rate, packets captured, the capture socket's drops, and errors queued (-1: no socket).
//!
//! `--mode` only sets defaults: `volume` sends 1,000,000 triggers and captures without
//! keeping the packets; `diff` sends 20,000 and needs `--capture`.
//!
//! `--dump I` prints trigger I of the seed (what was chosen and the frames in hex) and
//! exits: a difference in the capture names its trigger by TAG.

mod gen;
mod rng;
mod sock;
mod wire;

use std::{
    fs::File,
    io::{self, BufWriter, Write},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

struct Args {
    mode: String,
    seed: u64,
    count: u64,
    first: u64,
    netns: String,
    ifname: String,
    rate: f64,
    batch: usize,
    settle: f64,
    capture: Option<String>,
    errqueue: Option<String>,
    dut_netns: String,
    no_capture: bool,
    pin: bool,
    macs: gen::Macs,
    dump: Option<u64>,
}

fn usage() -> ! {
    eprintln!(
        "usage: icmpfuzz [--mode volume|diff] [--seed S] [--count N] [--first I] [--netns NS] \
         [--ifname IF] [--rate FPS] [--batch B] [--settle SECS] [--capture FILE | \
         --no-capture] [--errqueue FILE] [--dut-netns NS2] [--peer-mac MAC] \
         [--dut-mac MAC] [--no-pin]\n       icmpfuzz --dump I [--seed S]"
    );
    std::process::exit(2);
}

fn parse_mac(s: &str) -> [u8; 6] {
    let v: Vec<u8> = s
        .split(':')
        .map(|x| u8::from_str_radix(x, 16).unwrap_or_else(|_| usage()))
        .collect();
    v.try_into().unwrap_or_else(|_| usage())
}

fn parse_args() -> Args {
    let mut a = Args {
        mode: "volume".into(),
        seed: 1,
        count: 0,
        first: 0,
        netns: "peer".into(),
        ifname: "veth0".into(),
        rate: 0.0,
        batch: 32,
        settle: 1.0,
        capture: None,
        errqueue: None,
        dut_netns: "dut".into(),
        no_capture: false,
        pin: true,
        // The addresses tests/fuzz.sh (like tests/lib/icmptest.py) gives the veth pair.
        macs: gen::Macs {
            peer: [0x02, 0, 0, 0, 0x01, 0x01],
            dut: [0x02, 0, 0, 0, 0x01, 0x02],
        },
        dump: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--no-capture" {
            a.no_capture = true;
            continue;
        }
        if flag == "--no-pin" {
            a.pin = false;
            continue;
        }
        let v = it.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--mode" => a.mode = v,
            "--seed" => a.seed = v.parse().unwrap_or_else(|_| usage()),
            "--count" => a.count = v.parse().unwrap_or_else(|_| usage()),
            "--first" => a.first = v.parse().unwrap_or_else(|_| usage()),
            "--netns" => a.netns = v,
            "--ifname" => a.ifname = v,
            "--rate" => a.rate = v.parse().unwrap_or_else(|_| usage()),
            "--batch" => a.batch = v.parse().unwrap_or_else(|_| usage()),
            "--settle" => a.settle = v.parse().unwrap_or_else(|_| usage()),
            "--capture" => a.capture = Some(v),
            "--errqueue" => a.errqueue = Some(v),
            "--dut-netns" => a.dut_netns = v,
            "--peer-mac" => a.macs.peer = parse_mac(&v),
            "--dut-mac" => a.macs.dut = parse_mac(&v),
            "--dump" => a.dump = Some(v.parse().unwrap_or_else(|_| usage())),
            _ => usage(),
        }
    }
    match a.mode.as_str() {
        "volume" if a.count == 0 => a.count = 1_000_000,
        "diff" if a.count == 0 => a.count = 20_000,
        "volume" | "diff" => {}
        _ => usage(),
    }
    if a.mode == "diff" && a.capture.is_none() && a.dump.is_none() {
        eprintln!("icmpfuzz: --mode diff needs --capture FILE");
        usage();
    }
    if a.batch == 0 || a.rate < 0.0 || a.settle < 0.0 {
        usage();
    }
    a
}

fn dump(a: &Args, index: u64) {
    let t = gen::trigger(a.seed, index, &a.macs);
    println!("trigger {index} of seed {}", a.seed);
    for n in &t.notes {
        println!("  {n}");
    }
    for (i, f) in t.frames.iter().enumerate() {
        println!("  frame {i} ({} bytes): {}", f.len(), gen::hex(f));
    }
}

/// What the capture thread found.
struct Captured {
    packets: u64,
    lines: Vec<String>,
    drops: u64,
}

fn capture_thread(
    cap: sock::Capture,
    keep: bool,
    stop: Arc<AtomicBool>,
    last_rx: Arc<AtomicU64>,
    origin: Instant,
) -> Captured {
    let mut bufs = vec![vec![0u8; 4096]; 64];
    let mut out = Captured {
        packets: 0,
        lines: Vec::new(),
        drops: 0,
    };
    while !stop.load(Ordering::Relaxed) {
        let n = cap.receive(&mut bufs, |p| {
            out.packets += 1;
            if keep {
                let tag = wire::mask(p).map_or("-".to_string(), |t| t.to_string());
                out.lines.push(format!("{tag} {}", gen::hex(p)));
            }
        });
        if n > 0 {
            last_rx.store(origin.elapsed().as_millis() as u64, Ordering::Relaxed);
        }
    }
    out.drops = cap.drops();
    out
}

fn run(a: &Args) -> io::Result<String> {
    // The dut's UDP socket, made by a thread that enters the dut's namespace (a socket
    // stays in the namespace it was made in).
    let errqueue = match &a.errqueue {
        Some(_) => {
            let ns = a.dut_netns.clone();
            let made = thread::spawn(move || {
                sock::enter_netns(&ns)?;
                sock::ErrQueue::new(gen::UDP_PORT)
            });
            Some(
                made.join()
                    .map_err(|_| io::Error::other("errqueue thread panicked"))??,
            )
        }
        None => None,
    };
    sock::enter_netns(&a.netns)?;
    let ifindex = sock::ifindex(&a.ifname)?;
    let sender = sock::Sender::new(ifindex)?;
    let origin = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let last_rx = Arc::new(AtomicU64::new(0));
    let capturing = !a.no_capture;
    let receiver = if capturing {
        let cap = sock::Capture::new(ifindex)?;
        let keep = a.capture.is_some();
        let (stop, last_rx) = (stop.clone(), last_rx.clone());
        Some(thread::spawn(move || {
            capture_thread(cap, keep, stop, last_rx, origin)
        }))
    } else {
        None
    };

    // All the work of a trigger happens on the CPU that sends it (veth queues the frame on
    // that CPU's backlog, and the dut answers from there), in the order sent: keep the
    // sender on one CPU, so that no trigger overtakes another in the backlog of another CPU
    // (later triggers can depend on earlier ones, e.g. through the path MTU).
    if a.pin {
        sock::pin_to_current_cpu()?;
    }

    let mut kinds = [0u64; gen::KINDS.len()];
    let (mut frames, mut bytes, mut to_icmp, mut refused) = (0u64, 0u64, 0u64, 0u64);
    let mut last_error = None;
    let mut batch: Vec<Vec<u8>> = Vec::with_capacity(a.batch + 16);
    let start = Instant::now();
    let mut next_report = start + Duration::from_secs(10);
    let mut index = a.first;
    let end = a.first + a.count;
    while index < end {
        batch.clear();
        while batch.len() < a.batch && index < end {
            let t = gen::trigger(a.seed, index, &a.macs);
            kinds[t.kind] += 1;
            to_icmp += u64::from(t.to_icmp);
            bytes += t.frames.iter().map(|f| f.len() as u64).sum::<u64>();
            batch.extend(t.frames);
            index += 1;
        }
        let sent = sender.send(&mut batch);
        frames += (sent.ok + sent.refused) as u64;
        refused += sent.refused as u64;
        if sent.error.is_some() {
            last_error = sent.error;
        }
        if a.rate > 0.0 {
            // Pacing: never ahead of `rate` frames per second since the start.
            let due = start + Duration::from_secs_f64(frames as f64 / a.rate);
            let now = Instant::now();
            if due > now {
                thread::sleep(due - now);
            }
        }
        if Instant::now() >= next_report {
            let s = start.elapsed().as_secs_f64();
            eprintln!(
                "icmpfuzz: {}/{} triggers, {frames} frames in {s:.0} s ({:.0} frames/s)",
                index - a.first,
                a.count,
                frames as f64 / s
            );
            next_report += Duration::from_secs(10);
        }
    }
    let seconds = start.elapsed().as_secs_f64();

    // Wait for the answers: until nothing arrived for `settle` seconds.
    let mut captured = Captured {
        packets: 0,
        lines: Vec::new(),
        drops: 0,
    };
    if let Some(h) = receiver {
        let sent_ms = origin.elapsed().as_millis() as u64;
        loop {
            thread::sleep(Duration::from_millis(50));
            let now = origin.elapsed().as_millis() as u64;
            let quiet_since = last_rx.load(Ordering::Relaxed).max(sent_ms);
            if now.saturating_sub(quiet_since) as f64 >= a.settle * 1000.0 {
                break;
            }
        }
        stop.store(true, Ordering::Relaxed);
        captured = h
            .join()
            .map_err(|_| io::Error::other("capture thread panicked"))?;
    } else {
        thread::sleep(Duration::from_secs_f64(a.settle));
    }
    if let Some(path) = &a.capture {
        let mut w = BufWriter::new(File::create(path)?);
        for l in &captured.lines {
            writeln!(w, "{l}")?;
        }
        w.flush()?;
    }
    let mut queued = -1i64;
    if let (Some(q), Some(path)) = (&errqueue, &a.errqueue) {
        let lines = q.drain();
        queued = lines.len() as i64;
        let mut w = BufWriter::new(File::create(path)?);
        for l in &lines {
            writeln!(w, "{l}")?;
        }
        w.flush()?;
    }
    let kinds_json: Vec<String> = gen::KINDS
        .iter()
        .zip(kinds.iter())
        .map(|(k, n)| format!("\"{}\": {n}", k.1))
        .collect();
    Ok(format!(
        "{{\"mode\": \"{}\", \"seed\": {}, \"triggers\": {}, \"frames\": {frames}, \
         \"bytes\": {bytes}, \"to_icmp\": {to_icmp}, \"refused\": {refused}, \
         \"last_error\": \"{}\", \"seconds\": {seconds:.3}, \"triggers_per_sec\": {:.1}, \
         \"frames_per_sec\": {:.1}, \"captured\": {}, \"capture_drops\": {}, \
         \"errqueue\": {queued}, \"kinds\": {{{}}}}}",
        a.mode,
        a.seed,
        a.count,
        last_error.map_or(String::new(), |e| e.to_string()),
        a.count as f64 / seconds,
        frames as f64 / seconds,
        if capturing {
            captured.packets as i64
        } else {
            -1
        },
        if capturing { captured.drops as i64 } else { -1 },
        kinds_json.join(", ")
    ))
}

fn main() {
    let a = parse_args();
    if let Some(i) = a.dump {
        dump(&a, i);
        return;
    }
    match run(&a) {
        Ok(json) => println!("{json}"),
        Err(e) => {
            eprintln!("icmpfuzz: {e}");
            std::process::exit(1);
        }
    }
}
