//! An RPC peer that answers ggml's handshake, then answers what minerva asks next with the
//! fuzzer's bytes, then falls silent or closes: minerva's check of a server must end within its
//! time limit, with Ok or an error naming the server, never hang or crash (ggml's own client
//! would wait for good or abort the process).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// What the peer sends after the handshake, and whether it then closes.
static SCRIPT: Mutex<(Vec<u8>, bool)> = Mutex::new((Vec::new(), false));

fn peer() -> &'static str {
    static ADDR: OnceLock<String> = OnceLock::new();
    ADDR.get_or_init(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                let (answer, close) = SCRIPT.lock().unwrap().clone();
                std::thread::spawn(move || {
                    let mut hello = [0u8; 9 + 24];
                    if s.read_exact(&mut hello).is_err() {
                        return;
                    }
                    let mut reply = (28u64).to_ne_bytes().to_vec();
                    reply.extend_from_slice(&[7, 0, 0, 0]);
                    reply.extend_from_slice(&[0; 24]);
                    let _ = s.write_all(&reply);
                    let _ = s.write_all(&answer);
                    if !close {
                        let mut sink = [0u8; 1024];
                        while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
                    }
                });
            }
        });
        addr
    })
}

fuzz_target!(|data: &[u8]| {
    let (close, answer) = match data.split_first() {
        Some((c, rest)) => (c % 2 == 0, rest.to_vec()),
        None => (true, Vec::new()),
    };
    *SCRIPT.lock().unwrap() = (answer, close);
    let addr = peer();
    let limit = Duration::from_millis(200);
    let t = Instant::now();
    let r = minerva::engine::rpc::check_server(addr, limit);
    // The connection, the handshake and the rest: each within the limit.
    assert!(t.elapsed() < limit * 3 + Duration::from_millis(300), "{:?}", t.elapsed());
    if let Err(e) = r {
        assert!(e.message.contains(addr), "{}", e.message);
    }
});
