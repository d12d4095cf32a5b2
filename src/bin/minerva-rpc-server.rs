//! minerva-rpc-server: lends this machine's device (its GPU if minerva was built with one, else
//! its CPU) to engines on other machines, over ggml's RPC protocol
//! (`minerva_engine_params.rpc_servers = "this-host:50052"`).
//!
//!     minerva-rpc-server [--host 127.0.0.1] [--port 50052] [--mem MiB] [--threads N]
//!
//! The protocol has no authentication and no encryption: anyone who reaches the port can run
//! computations and read what is sent. It listens on 127.0.0.1 unless told otherwise; give
//! another --host only on a trusted network (docs/RPC.md). One client at a time.

use std::process::ExitCode;

const USAGE: &str =
    "usage: minerva-rpc-server [--host HOST] [--port PORT] [--mem MIB] [--threads N]

  --host HOST    address to listen on (default 127.0.0.1; the protocol has no authentication:
                 listen elsewhere only on a trusted network)
  --port PORT    TCP port (default 50052)
  --mem MIB      memory to advertise to clients, in MiB (default: the device's own free memory);
                 clients put as many layers here as fit in it
  --threads N    CPU threads for computing (default: one per physical core; at most 1024,
                 and no more than the CPUs this process may use)";

struct Args {
    host: String,
    port: u16,
    mem_mib: usize,
    threads: usize,
}

fn parse(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args {
        host: "127.0.0.1".into(),
        port: 50052,
        mem_mib: 0,
        threads: 0,
    };
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            return Err(String::new());
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = |what: &str| {
            value
                .parse::<usize>()
                .map_err(|_| format!("{flag}: '{value}' is not {what}"))
        };
        match flag.as_str() {
            "--host" | "-H" => a.host = value.clone(),
            "--port" | "-p" => {
                a.port = match value.parse::<u16>() {
                    Ok(p) if p > 0 => p,
                    _ => return Err(format!("--port: '{value}' is not a port (1 to 65535)")),
                }
            }
            "--mem" | "-m" => a.mem_mib = number("a number of MiB")?,
            "--threads" | "-t" => {
                a.threads = number("a number of threads")?;
                let max = minerva::engine::params::MAX_THREADS as usize;
                if a.threads > max {
                    return Err(format!("--threads: {} is more than {max}", a.threads));
                }
            }
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if a.host.is_empty() || a.host.contains(char::is_whitespace) {
        return Err(format!("--host: '{}' is not an address", a.host));
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(why) => {
            if !why.is_empty() {
                eprintln!("minerva-rpc-server: {why}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let loopback = args.host == "localhost"
        || args
            .host
            .trim_matches(|c| c == '[' || c == ']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        eprintln!(
            "minerva-rpc-server: WARNING: listening on {}: the RPC protocol has no \
             authentication; anyone who reaches this port can use this machine. Use a trusted \
             network only.",
            args.host
        );
    }
    let host = if args.host.contains(':') && !args.host.starts_with('[') {
        format!("[{}]", args.host)
    } else {
        args.host.clone()
    };
    let why = minerva::engine::rpc::serve(
        &format!("{host}:{}", args.port),
        args.mem_mib.saturating_mul(1 << 20),
        args.threads,
    );
    eprintln!("minerva-rpc-server: {why}");
    ExitCode::from(1)
}
