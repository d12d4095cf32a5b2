//! Other machines' devices through ggml's RPC backend (`rpc_servers`): the list a caller gives,
//! the check of each server before ggml may touch it, and the servers this process is connected
//! to.
//!
//! ggml's RPC client aborts the process when a server cannot be reached or answers wrongly, so
//! every server is checked here first: a TCP connection and ggml's HELLO handshake, each with a
//! time limit, from Rust. A server this process already uses (another engine's) is not checked
//! again: ggml's server serves one connection at a time, and this process's connection to it is
//! the one it is serving.

use super::error::{Error, Result, Status};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Mutex;
use std::time::Duration;

/// At most this many servers (ggml's GGML_RPC_MAX_SERVERS).
pub const MAX_SERVERS: usize = 16;

/// How long a server may take to accept the connection, and then to answer the handshake.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// The protocol version of the ggml linked (ggml-rpc.h: RPC_PROTO_MAJOR_VERSION and
/// RPC_PROTO_MINOR_VERSION): a server must have the same major version and no newer minor one.
const PROTO_MAJOR: u8 = 7;
const PROTO_MINOR: u8 = 0;
/// RPC_CMD_HELLO, and the sizes of its request and reply (connection capabilities, 24 bytes).
const CMD_HELLO: u8 = 14;
const CAPS_BYTES: usize = 24;
/// The commands ggml's client sends while an engine is created (ggml-rpc.cpp's `rpc_cmd`).
const CMD_GET_ALIGNMENT: u8 = 1;
const CMD_GET_MAX_SIZE: u8 = 2;
const CMD_GET_DEVICE_MEMORY: u8 = 11;
const CMD_DEVICE_COUNT: u8 = 15;
/// Most devices a server may have (a sanity bound on its answer).
const MAX_DEVICES: u32 = 64;

/// Parses `rpc_servers`: "host:port" entries separated by commas (spaces around them ignored);
/// "" is none. Each host is a name, an IPv4 address or a bracketed IPv6 address.
pub fn parse_servers(list: &str) -> Result<Vec<String>> {
    let invalid = |why: String| Err(Error::new(Status::InvalidArgument, why));
    let mut out: Vec<String> = Vec::new();
    for entry in list.split(',').map(str::trim) {
        if entry.is_empty() {
            if list.trim().is_empty() {
                continue;
            }
            return invalid(format!("rpc_servers '{list}' has an empty entry"));
        }
        let Some((host, port)) = entry.rsplit_once(':') else {
            return invalid(format!("rpc_servers: '{entry}' is not host:port"));
        };
        let host_ok = !host.is_empty()
            && !host.contains(char::is_whitespace)
            && (host.starts_with('[') == host.ends_with(']'))
            && (host.starts_with('[') || !host.contains(':'));
        if !host_ok {
            return invalid(format!("rpc_servers: '{entry}' has no valid host"));
        }
        match port.parse::<u16>() {
            Ok(p) if p > 0 => {}
            _ => {
                return invalid(format!(
                    "rpc_servers: '{entry}' has no valid port (1 to 65535)"
                ))
            }
        }
        if out.iter().any(|e| e == entry) {
            return invalid(format!("rpc_servers: '{entry}' is given twice"));
        }
        out.push(entry.to_string());
    }
    if out.len() > MAX_SERVERS {
        return invalid(format!(
            "rpc_servers: {} servers, at most {MAX_SERVERS}",
            out.len()
        ));
    }
    Ok(out)
}

/// Connects to the server at `endpoint`, does ggml's handshake and asks what ggml's client asks
/// while an engine is created, within `timeout` each: `MINERVA_ERR_BACKEND` naming the server and
/// what went wrong, or Ok.
pub fn check_server(endpoint: &str, timeout: Duration) -> Result<()> {
    let fail = |why: String| {
        Err(Error::new(
            Status::Backend,
            format!("RPC server {endpoint}: {why}"),
        ))
    };
    let addrs: Vec<_> = match endpoint.to_socket_addrs() {
        Ok(a) => a.collect(),
        Err(e) => return fail(format!("cannot resolve the address: {e}")),
    };
    let mut last = String::from("no address");
    let mut stream = None;
    for a in &addrs {
        match TcpStream::connect_timeout(a, timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = e.to_string(),
        }
    }
    let Some(mut s) = stream else {
        return fail(format!("cannot connect: {last}"));
    };
    let _ = s.set_read_timeout(Some(timeout));
    let _ = s.set_write_timeout(Some(timeout));
    let _ = s.set_nodelay(true);
    // | cmd (1 byte) | request size (8 bytes, the host's order) | request |
    let mut hello = vec![CMD_HELLO];
    hello.extend_from_slice(&(CAPS_BYTES as u64).to_ne_bytes());
    hello.extend_from_slice(&[0u8; CAPS_BYTES]);
    if let Err(e) = s.write_all(&hello) {
        return fail(format!("the handshake failed: {e}"));
    }
    // | reply size (8 bytes) | major, minor, patch, padding, caps (24 bytes) |
    let mut size = [0u8; 8];
    let mut reply = [0u8; 4 + CAPS_BYTES];
    let answered = s.read_exact(&mut size).and_then(|_| {
        if u64::from_ne_bytes(size) == reply.len() as u64 {
            s.read_exact(&mut reply)
        } else {
            Err(std::io::Error::other(format!(
                "a reply of {} bytes",
                u64::from_ne_bytes(size)
            )))
        }
    });
    if let Err(e) = answered {
        let why = match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => format!(
                "no answer to the handshake within {} s (not a ggml RPC server, or one busy \
                 serving another client)",
                timeout.as_secs()
            ),
            std::io::ErrorKind::UnexpectedEof => {
                "it closed the connection during the handshake (not a ggml RPC server of this \
                 protocol version?)"
                    .into()
            }
            _ => format!("the handshake failed: {e} (not a ggml RPC server?)"),
        };
        return fail(why);
    }
    let (major, minor, patch) = (reply[0], reply[1], reply[2]);
    if major != PROTO_MAJOR || minor > PROTO_MINOR {
        return fail(format!(
            "it speaks RPC protocol {major}.{minor}.{patch}, this minerva {PROTO_MAJOR}.{PROTO_MINOR} \
             (use the same llama.cpp version on both sides)"
        ));
    }
    query_devices(&mut s, timeout).or_else(fail)
}

/// Asks the server what ggml's client asks it while an engine is created (its devices, and each
/// one's memory, alignment and largest buffer), all answers within `timeout`. ggml's client
/// waits without limit for an answer and aborts the process on a closed connection or a
/// malformed answer; a server that fails here never reaches it.
fn query_devices(s: &mut TcpStream, timeout: Duration) -> std::result::Result<(), String> {
    let deadline = std::time::Instant::now() + timeout;
    let mut ask = |what: &str, cmd: u8, req: &[u8], reply: &mut [u8]| {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(format!(
                "no answer to {what} within {} s after the handshake",
                timeout.as_secs()
            ));
        }
        let _ = s.set_read_timeout(Some(left));
        let _ = s.set_write_timeout(Some(left));
        let mut msg = vec![cmd];
        msg.extend_from_slice(&(req.len() as u64).to_ne_bytes());
        msg.extend_from_slice(req);
        let mut size = [0u8; 8];
        let r = s
            .write_all(&msg)
            .and_then(|_| s.read_exact(&mut size))
            .and_then(|_| match u64::from_ne_bytes(size) {
                n if n == reply.len() as u64 => s.read_exact(reply),
                n => Err(std::io::Error::other(format!(
                    "an answer of {n} bytes where {} were due",
                    reply.len()
                ))),
            });
        r.map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => format!(
                "no answer to {what} within {} s after the handshake",
                timeout.as_secs()
            ),
            std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::BrokenPipe => {
                format!("it closed the connection when asked {what} after the handshake")
            }
            _ => format!("a malformed answer to {what}: {e}"),
        })
    };
    let mut count = [0u8; 4];
    ask("its device count", CMD_DEVICE_COUNT, &[], &mut count)?;
    let count = u32::from_ne_bytes(count);
    if count == 0 || count > MAX_DEVICES {
        return Err(format!(
            "a malformed answer to its device count: {count} devices (1 to {MAX_DEVICES} expected)"
        ));
    }
    for device in 0..count {
        let req = device.to_ne_bytes();
        let mut memory = [0u8; 16];
        ask(
            &format!("device {device}'s memory"),
            CMD_GET_DEVICE_MEMORY,
            &req,
            &mut memory,
        )?;
        let (free, total) = (
            u64::from_ne_bytes(memory[..8].try_into().expect("8 bytes")),
            u64::from_ne_bytes(memory[8..].try_into().expect("8 bytes")),
        );
        if free > total {
            return Err(format!(
                "a malformed answer to device {device}'s memory: {free} bytes free of {total}"
            ));
        }
        let mut alignment = [0u8; 8];
        ask(
            &format!("device {device}'s alignment"),
            CMD_GET_ALIGNMENT,
            &req,
            &mut alignment,
        )?;
        let alignment = u64::from_ne_bytes(alignment);
        if alignment == 0 || !alignment.is_power_of_two() {
            return Err(format!(
                "a malformed answer to device {device}'s alignment: {alignment}"
            ));
        }
        let mut max_size = [0u8; 8];
        ask(
            &format!("device {device}'s largest buffer"),
            CMD_GET_MAX_SIZE,
            &req,
            &mut max_size,
        )?;
        if u64::from_ne_bytes(max_size) == 0 {
            return Err(format!(
                "a malformed answer to device {device}'s largest buffer: 0 bytes"
            ));
        }
    }
    Ok(())
}

/// Serves this machine's best device (its GPU if minerva was built with one, else the CPU) to
/// RPC clients at `endpoint` ("host:port") until the process ends, advertising `mem_bytes` of
/// memory (0: the device's own) and computing with `threads` CPU threads (0: one per physical
/// core; more than [`MAX_THREADS`](super::params::MAX_THREADS) is refused, more than the CPUs
/// this process may use is capped to them, as an engine's `threads` is). Returns only when it
/// cannot serve, with the reason.
pub fn serve(endpoint: &str, mem_bytes: usize, threads: usize) -> String {
    let max = super::params::MAX_THREADS;
    if threads > max as usize {
        return format!("threads must be in 0..={max} (0: one per physical core), got {threads}");
    }
    let threads = super::host::decode_threads(threads as u32) as usize;
    super::llama::rpc_serve(endpoint, mem_bytes, threads)
}

/// ggml's RPC client writes to its sockets without MSG_NOSIGNAL: a write to a server that went
/// away would raise SIGPIPE and end the process without a word. When the program has left
/// SIGPIPE at its default, minerva ignores it (once, with an info line), so that ggml sees the
/// failed write and its abort callback (see llama/mod.rs) says which server was lost.
pub fn ignore_sigpipe() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: reads, then sets, the process's SIGPIPE disposition; no handler code runs.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut old) == 0
                && old.sa_sigaction == libc::SIG_DFL
            {
                libc::signal(libc::SIGPIPE, libc::SIG_IGN);
                super::log::log_info!(
                    "SIGPIPE is now ignored, so that a lost RPC server is reported, not silent"
                );
            }
        }
    });
}

/// The servers this process's engines use, with how many engines use each.
static IN_USE: Mutex<BTreeMap<String, usize>> = Mutex::new(BTreeMap::new());

/// An engine's use of its servers; the model holding their weights keeps it until it is freed.
pub struct Lease {
    endpoints: Vec<String>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut map = IN_USE.lock().unwrap_or_else(|e| e.into_inner());
        for e in &self.endpoints {
            if let Some(n) = map.get_mut(e) {
                *n -= 1;
                if *n == 0 {
                    map.remove(e);
                }
            }
        }
    }
}

/// Checks every server not already in use by this process, then takes a lease on all of them.
pub fn acquire(endpoints: &[String]) -> Result<Lease> {
    let in_use = |e: &String| {
        IN_USE
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(e)
    };
    for e in endpoints.iter().filter(|e| !in_use(e)) {
        check_server(e, CHECK_TIMEOUT)?;
    }
    let mut map = IN_USE.lock().unwrap_or_else(|e| e.into_inner());
    for e in endpoints {
        *map.entry(e.clone()).or_insert(0) += 1;
    }
    Ok(Lease {
        endpoints: endpoints.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_lists_are_parsed_and_checked() {
        assert!(parse_servers("").unwrap().is_empty());
        assert!(parse_servers("  ").unwrap().is_empty());
        assert_eq!(
            parse_servers("127.0.0.1:50052, gpu-box:1,[::1]:9").unwrap(),
            vec!["127.0.0.1:50052", "gpu-box:1", "[::1]:9"]
        );
        for bad in [
            "localhost",
            "localhost:0",
            "localhost:65536",
            ":50052",
            "a b:1",
            "::1:5",
            "h:1,,h:2",
            "h:1,h:1",
            "[::1:5",
        ] {
            let e = parse_servers(bad).unwrap_err();
            assert_eq!(e.status, Status::InvalidArgument, "{bad}");
            assert!(e.message.contains("rpc_servers"), "{bad}: {}", e.message);
        }
        let many: Vec<String> = (1..=17).map(|p| format!("h:{p}")).collect();
        assert!(parse_servers(&many.join(",")).is_err());
    }

    #[test]
    fn a_closed_port_and_a_wrong_server_are_errors() {
        // Nothing listens on a port just freed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = check_server(&format!("127.0.0.1:{port}"), CHECK_TIMEOUT).unwrap_err();
        assert_eq!(e.status, Status::Backend);
        assert!(e.message.contains("cannot connect"), "{}", e.message);

        // A server that accepts and closes at once, and one that never answers.
        for (answer, expect) in [(false, "handshake"), (true, "no answer")] {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = l.local_addr().unwrap();
            let t = std::thread::spawn(move || {
                let (s, _) = l.accept().unwrap();
                if answer {
                    std::thread::sleep(Duration::from_millis(800));
                }
                drop(s);
            });
            let e = check_server(&addr.to_string(), Duration::from_millis(300)).unwrap_err();
            assert!(e.message.contains(expect), "{}", e.message);
            t.join().unwrap();
        }
    }
}
