//! `rediss://` against a real TLS server with a self-signed certificate made by the `openssl`
//! command. Runs with `cargo test -p aurelis-cache-redis --features tls-insecure --test tls`
//! (`#insecure` URLs need that feature; plain `tls` verifies against the system's roots,
//! which a self-signed test certificate is not in).
#![cfg(feature = "tls-insecure")]

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aurelis_cache_core::{
    Backplane, BackplaneEvent, ErrorKind, Invalidation, InvalidationMessage, Store,
};
use aurelis_cache_redis::{RedisBackplane, RedisStore};
use aurelis_redis_harness::{free_port, RedisServer};
use bytes::Bytes;

/// Whether `err` (or an error in its source chain) is about the server's certificate.
fn is_certificate_error(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(err);
    while let Some(e) = current {
        let text = format!("{e} {e:?}").to_lowercase();
        if text.contains("certificate") || text.contains("unknownissuer") {
            return true;
        }
        current = e.source();
    }
    false
}

fn self_signed(dir: &Path) -> (String, String) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl (apt-get install -y openssl): {e}"));
    assert!(status.status.success(), "openssl failed: {}", String::from_utf8_lossy(&status.stderr));
    (cert.display().to_string(), key.display().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_and_backplane_over_tls_with_a_password() {
    let certs = tempfile::tempdir().expect("tempdir");
    let (cert, key) = self_signed(certs.path());
    let tls_port = free_port().expect("port");
    let server = tokio::task::spawn_blocking(move || {
        RedisServer::builder()
            .requirepass("tls-pw")
            .option("tls-port", tls_port.to_string())
            .option("tls-cert-file", cert.clone())
            .option("tls-key-file", key)
            .option("tls-ca-cert-file", cert)
            .option("tls-auth-clients", "no")
            .start()
    })
    .await
    .expect("join")
    .unwrap_or_else(|e| panic!("{e}"));

    let url = format!("rediss://127.0.0.1:{tls_port}/#insecure");
    let store = RedisStore::builder()
        .url(&url)
        .password("tls-pw")
        .timeout_ms(5_000)
        .build()
        .await
        .expect("tls store");
    store
        .set("k", Bytes::from_static(b"over tls"), Some(Duration::from_secs(60)))
        .await
        .expect("set");
    assert_eq!(store.get("k").await.expect("get"), Some(Bytes::from_static(b"over tls")));
    assert_eq!(store.len().await.expect("len"), 1);

    // Without `#insecure` the self-signed certificate is refused.
    let verified = RedisStore::builder()
        .url(format!("rediss://127.0.0.1:{tls_port}/"))
        .password("tls-pw")
        .timeout_ms(2_000)
        .build()
        .await
        .expect("builds");
    let err = verified.get("k").await.expect_err("an unknown certificate must be refused");
    assert_eq!(err.kind(), ErrorKind::Backend, "{err}");
    assert!(is_certificate_error(&err), "not a certificate error: {err}");

    // The check above can fail: a closed TLS port is refused too, but not for its certificate.
    let closed = free_port().expect("port");
    let nobody = RedisStore::builder()
        .url(format!("rediss://127.0.0.1:{closed}/"))
        .timeout_ms(2_000)
        .build()
        .await
        .expect("builds");
    let err = nobody.get("k").await.expect_err("nobody listens");
    assert!(!is_certificate_error(&err), "a closed port passed as a certificate error: {err}");

    let mut config = store.config().clone();
    config.key_prefix.clear();
    let publisher = RedisBackplane::new(&config, "tls", "v1").expect("publisher");
    let subscriber = RedisBackplane::new(&config, "tls", "v1").expect("subscriber");
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    subscriber
        .subscribe(Arc::new(move |e| sink.lock().expect("lock").push(e)))
        .await
        .expect("subscribe over tls");
    // The subscriber starts reading at the stream's end once connected: publish until one
    // message arrives.
    let deadline = Instant::now() + Duration::from_secs(20);
    'delivered: for n in 0.. {
        let msg = InvalidationMessage::new("a", Invalidation::Key(format!("k{n}")));
        publisher.publish(&msg).await.expect("publish over tls");
        let until = Instant::now() + Duration::from_millis(500);
        while Instant::now() < until {
            if events.lock().expect("lock").contains(&BackplaneEvent::Invalidate(msg.clone())) {
                break 'delivered;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(Instant::now() < deadline, "no message over tls");
    }
    drop(server);
}
