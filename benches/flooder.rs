//! The unknown-source flood of `benches/flood.sh`: UDP datagrams (a SIP OPTIONS, so a parser
//! would have work to do) sent from an address no partner uses, at a fixed rate.
//!
//!   cargo bench --bench flooder -- SOURCE_IP DEST_IP:PORT PACKETS_PER_SECOND SECONDS
//!
//! Paced in 1 ms batches; prints how many it sent and the rate it reached.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let [source, dest, pps, secs] = &args[..] else {
        eprintln!("usage: flooder SOURCE_IP DEST_IP:PORT PACKETS_PER_SECOND SECONDS");
        std::process::exit(2);
    };
    let dest: SocketAddr = dest.parse().expect("DEST_IP:PORT");
    let pps: u64 = pps.parse().expect("PACKETS_PER_SECOND");
    let secs: u64 = secs.parse().expect("SECONDS");
    let sock = UdpSocket::bind((source.as_str(), 0)).expect("bind the source address");
    sock.connect(dest).expect("connect");
    let msg = format!(
        "OPTIONS sip:probe@{dest} SIP/2.0\r\nVia: SIP/2.0/UDP {source}:5060;branch=z9hG4bKflood\r\n\
         Max-Forwards: 70\r\nFrom: <sip:scan@{source}>;tag=flood\r\nTo: <sip:probe@{dest}>\r\n\
         Call-ID: flood@{source}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let mut sent: u64 = 0;
    let mut errors: u64 = 0;
    let mut report = start + Duration::from_secs(5);
    while Instant::now() < end {
        if Instant::now() >= report {
            // Progress, so a run stopped early still says what rate it reached.
            let t = start.elapsed().as_secs_f64();
            println!(
                "flooder t={t:.0} sent={sent} errors={errors} pps={:.0}",
                sent as f64 / t
            );
            report += Duration::from_secs(5);
        }
        // Catch up to where the rate says we should be by now.
        let due = start.elapsed().as_micros() as u64 * pps / 1_000_000;
        while sent < due {
            if sock.send(msg.as_bytes()).is_err() {
                errors += 1; // a full socket buffer: counted, the flood goes on
            }
            sent += 1;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let took = start.elapsed().as_secs_f64();
    println!(
        "flooder sent={sent} errors={errors} secs={took:.1} pps={:.0}",
        sent as f64 / took
    );
}
