//! Prometheus metrics for a cache: traffic against memory + disk tiers, the cache's counters
//! exported through the `metrics` facade every second, and the Prometheus text served on
//! `http://127.0.0.1:PORT/metrics` (rendered by `metrics-exporter-prometheus`).
//!
//! ```text
//! cargo run -p aurelis-cache --features metrics --example prometheus              # ephemeral port, printed
//! cargo run -p aurelis-cache --features metrics --example prometheus -- 9899      # a port of your choice
//! cargo run -p aurelis-cache --features metrics --example prometheus -- --once    # print one scrape, exit
//! curl -s http://127.0.0.1:PORT/metrics | grep aurelis_cache_requests_total
//! ```
//!
//! Point Prometheus at it and import docs/grafana-dashboard.json into Grafana. The names and
//! labels are listed in docs/monitoring.md.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aurelis_cache::{spawn_metrics_exporter, Cache, CacheConfig, CacheMonitor, SetOptions};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

struct Args {
    port: u16,
    once: bool,
    seconds: Option<u64>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args { port: 0, once: false, seconds: None };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--once" => args.once = true,
            "--seconds" => {
                let v = it.next().ok_or("--seconds needs a value")?;
                args.seconds = Some(v.parse().map_err(|e| format!("--seconds: {e}"))?);
            }
            "--port" => {
                let v = it.next().ok_or("--port needs a value")?;
                args.port = v.parse().map_err(|e| format!("--port: {e}"))?;
            }
            "-h" | "--help" => {
                println!("prometheus [PORT | --port PORT] [--seconds N] [--once]");
                std::process::exit(0);
            }
            port if port.parse::<u16>().is_ok() => args.port = port.parse().unwrap_or(0),
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(args)
}

/// Cache traffic: a few popular keys read again and again, a tail of new ones, a loader that
/// fails now and then, an invalidation from time to time.
async fn traffic(cache: Cache, rounds: Option<u64>) {
    let calls = Arc::new(AtomicU64::new(0));
    let mut round = 0u64;
    loop {
        for i in 0..50u64 {
            let id = if i % 5 == 0 { format!("new-{round}-{i}") } else { format!("hot-{}", i % 7) };
            let calls = calls.clone();
            let result = cache
                .get_or_compute_with::<String, _, _, _>(
                    ("answers", &id),
                    &SetOptions::new().ttl(Duration::from_secs(60)),
                    || async move {
                        let n = calls.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        if n % 17 == 16 {
                            Err(std::io::Error::other("upstream timeout"))
                        } else {
                            Ok(format!("answer #{n}"))
                        }
                    },
                )
                .await;
            // Loader failures are part of the simulated traffic: the counters show them.
            drop(result);
        }
        if round % 10 == 9 {
            let _ = cache.invalidate_pattern("answers:new-*").await;
        }
        round += 1;
        if rounds.is_some_and(|r| round >= r) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Answers `GET /metrics` with the Prometheus text, anything else with 404.
fn serve(listener: TcpListener, handle: PrometheusHandle) {
    for stream in listener.incoming().flatten() {
        if let Err(e) = answer(stream, &handle) {
            eprintln!("scrape failed: {e}");
        }
    }
}

fn answer(stream: TcpStream, handle: &PrometheusHandle) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" || header == "\n" {
            break;
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/");
    let (status, body) = if path == "/metrics" || path.starts_with("/metrics?") {
        ("200 OK", handle.render())
    } else {
        ("404 Not Found", "try /metrics\n".to_owned())
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder)?;

    let dir = tempfile::tempdir()?;
    let mut config = CacheConfig::default();
    config.disk.store.path = Some(dir.path().join("cache"));
    let cache: Cache = config.build().await?;
    let monitor = CacheMonitor::new(cache.clone());

    if args.once {
        traffic(cache.clone(), Some(3)).await;
        monitor.export_metrics().await;
        print!("{}", handle.render());
        return Ok(());
    }

    let listener = TcpListener::bind(("127.0.0.1", args.port))?;
    let addr = listener.local_addr()?;
    println!("serving Prometheus metrics on http://{addr}/metrics");
    let serving = handle.clone();
    std::thread::spawn(move || serve(listener, serving));

    let exporter = spawn_metrics_exporter(monitor.clone(), Duration::from_secs(1));
    let load = tokio::spawn(traffic(cache.clone(), None));
    match args.seconds {
        Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
        None => std::future::pending::<()>().await, // until Ctrl-C
    }
    load.abort();
    exporter.abort();
    println!("{}", monitor.performance_report().await);
    Ok(())
}
