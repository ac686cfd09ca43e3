//! [`RedisConfig`]: the serde twin of [`RedisStoreBuilder`](crate::RedisStoreBuilder).

use std::fmt;
use std::time::Duration;

use aurelis_cache_core::Result;
use serde::{Deserialize, Serialize};

use crate::error;

/// How to reach Redis and how the Redis tier behaves.
///
/// Every field has a default (`#[serde(default)]`), so a config file names only what differs.
/// `Debug` never prints the password, neither the `password` field nor one inside a URL.
///
/// # Examples
///
/// ```
/// use aurelis_cache_redis::RedisConfig;
///
/// let config: RedisConfig = serde_json::from_str(
///     r#"{ "url": "redis://cache.internal:6379/", "key_prefix": "app1:", "timeout_ms": 100 }"#,
/// )?;
/// assert_eq!(config.name, "redis");
/// assert_eq!(config.pool_size, 16);
/// assert_eq!(config.key_prefix, "app1:");
///
/// let mut config = RedisConfig::default();
/// config.password = Some("s3cret".into());
/// assert!(!format!("{config:?}").contains("s3cret"));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct RedisConfig {
    /// The tier's name in stats, logs and errors. Default `"redis"`.
    pub name: String,
    /// The server of a standalone Redis: `redis://[[user]:password@]host[:port][/db]`, or
    /// `rediss://...` for TLS (crate feature `tls`). Ignored when `cluster_urls` is not empty.
    /// Default `"redis://127.0.0.1:6379/"`.
    pub url: String,
    /// Seed nodes of a Redis Cluster; when not empty, the store runs in cluster mode. One
    /// reachable node is enough, the others are discovered. Default empty.
    pub cluster_urls: Vec<String>,
    /// Password sent on connect; overrides a password in the URLs. Default none.
    pub password: Option<String>,
    /// Database number; overrides the one in the URL. Redis Cluster only has database 0.
    /// Default none (the URL's, else 0).
    pub db: Option<i64>,
    /// How many multiplexed connections the store keeps (each carries many concurrent
    /// requests). Default 16.
    pub pool_size: usize,
    /// Time limit of one operation (of each round trip, for operations that scan). Default 250.
    pub timeout_ms: u64,
    /// Time limit for opening a connection. Default 1000. On a cluster it bounds opening the
    /// cluster connection; each node connection inside it uses redis-rs's own 1 s limit.
    pub connect_timeout_ms: u64,
    /// Prepended to every key. `clear`, `len` and `size_bytes` act only on keys under it, so
    /// a Redis shared with other data is never flushed. Default `""` (the whole database).
    pub key_prefix: String,
    /// `COUNT` hint of each `SCAN` round trip. Default 1000.
    pub scan_count: usize,
    /// About how many messages the backplane's stream keeps (`XADD ... MAXLEN ~ n`): a
    /// subscriber disconnected for longer than it takes to publish this many messages
    /// cannot replay what it missed and reports `Reconnected`. Default 100,000.
    pub backplane_max_len: usize,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            name: "redis".to_owned(),
            url: "redis://127.0.0.1:6379/".to_owned(),
            cluster_urls: Vec::new(),
            password: None,
            db: None,
            pool_size: 16,
            timeout_ms: 250,
            connect_timeout_ms: 1000,
            key_prefix: String::new(),
            scan_count: 1000,
            backplane_max_len: 100_000,
        }
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cluster_urls: Vec<String> = self.cluster_urls.iter().map(|u| redact_url(u)).collect();
        f.debug_struct("RedisConfig")
            .field("name", &self.name)
            .field("url", &redact_url(&self.url))
            .field("cluster_urls", &cluster_urls)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("db", &self.db)
            .field("pool_size", &self.pool_size)
            .field("timeout_ms", &self.timeout_ms)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("key_prefix", &self.key_prefix)
            .field("scan_count", &self.scan_count)
            .field("backplane_max_len", &self.backplane_max_len)
            .finish()
    }
}

impl RedisConfig {
    /// Whether the config selects Redis Cluster (`cluster_urls` is not empty).
    ///
    /// # Examples
    ///
    /// ```
    /// let mut config = aurelis_cache_redis::RedisConfig::default();
    /// assert!(!config.is_cluster());
    /// config.cluster_urls = vec!["redis://10.0.0.1:7000/".into()];
    /// assert!(config.is_cluster());
    /// ```
    pub fn is_cluster(&self) -> bool {
        !self.cluster_urls.is_empty()
    }

    /// The per-operation time limit.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// The connect time limit.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// Checks the values that can be checked without a server: non-empty name, non-zero
    /// sizes and time limits, URLs that parse, no database other than 0 on a cluster.
    ///
    /// # Examples
    ///
    /// ```
    /// use aurelis_cache_core::ErrorKind;
    /// let mut config = aurelis_cache_redis::RedisConfig::default();
    /// assert!(config.validate().is_ok());
    /// config.pool_size = 0;
    /// let err = config.validate().unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::Config);
    /// assert!(err.message().contains("pool_size"));
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`](aurelis_cache_core::ErrorKind::Config) naming the field.
    pub fn validate(&self) -> Result<()> {
        if self.name.is_empty() {
            return Err(error::config("name", "must not be empty"));
        }
        if self.pool_size == 0 {
            return Err(error::config("pool_size", "must be at least 1"));
        }
        if self.timeout_ms == 0 {
            return Err(error::config("timeout_ms", "must be at least 1"));
        }
        if self.connect_timeout_ms == 0 {
            return Err(error::config("connect_timeout_ms", "must be at least 1"));
        }
        if self.scan_count == 0 {
            return Err(error::config("scan_count", "must be at least 1"));
        }
        if self.backplane_max_len == 0 {
            return Err(error::config("backplane_max_len", "must be at least 1"));
        }
        if self.is_cluster() {
            if self.db.is_some_and(|db| db != 0) {
                return Err(error::config("db", "Redis Cluster only has database 0"));
            }
            for url in &self.cluster_urls {
                crate::conn::connection_info(self, "cluster_urls", url)?;
            }
        } else {
            if self.db.is_some_and(|db| db < 0) {
                return Err(error::config("db", "must not be negative"));
            }
            crate::conn::connection_info(self, "url", &self.url)?;
        }
        Ok(())
    }
}

/// `url` with the password replaced, for logs and `Debug`.
pub(crate) fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &rest[..at];
    let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
    let has_password = userinfo.contains(':');
    if !has_password {
        return url.to_owned();
    }
    format!("{}{user}:<redacted>{}", &url[..scheme_end], &rest[at..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_in_urls() {
        assert_eq!(redact_url("redis://:pw@h:1/"), "redis://:<redacted>@h:1/");
        assert_eq!(redact_url("rediss://u:pw@h:1/2"), "rediss://u:<redacted>@h:1/2");
        assert_eq!(redact_url("redis://h:1/"), "redis://h:1/");
        assert_eq!(redact_url("redis://user@h/"), "redis://user@h/");
        assert_eq!(redact_url("not a url"), "not a url");
    }

    #[test]
    fn debug_hides_every_password() {
        let c = RedisConfig {
            url: "redis://:in-url@h:1/".into(),
            cluster_urls: vec!["redis://u:in-cluster@h:2/".into()],
            password: Some("in-field".into()),
            ..RedisConfig::default()
        };
        let s = format!("{c:?}");
        for secret in ["in-url", "in-cluster", "in-field"] {
            assert!(!s.contains(secret), "{secret} leaked: {s}");
        }
    }

    #[test]
    fn validation_names_the_field() {
        type Change = Box<dyn Fn(&mut RedisConfig)>;
        let cases: Vec<(&str, Change)> = vec![
            ("name", Box::new(|c| c.name.clear())),
            ("pool_size", Box::new(|c| c.pool_size = 0)),
            ("timeout_ms", Box::new(|c| c.timeout_ms = 0)),
            ("connect_timeout_ms", Box::new(|c| c.connect_timeout_ms = 0)),
            ("scan_count", Box::new(|c| c.scan_count = 0)),
            ("backplane_max_len", Box::new(|c| c.backplane_max_len = 0)),
            ("url", Box::new(|c| c.url = "not a url".into())),
            ("url", Box::new(|c| c.url = "http://h:1/".into())),
            ("cluster_urls", Box::new(|c| c.cluster_urls = vec!["::".into()])),
            (
                "db",
                Box::new(|c| {
                    c.cluster_urls = vec!["redis://h:1/".into()];
                    c.db = Some(3);
                }),
            ),
        ];
        for (field, change) in cases {
            let mut c = RedisConfig::default();
            change(&mut c);
            let err = c.validate().expect_err(field);
            assert_eq!(err.kind(), aurelis_cache_core::ErrorKind::Config);
            assert!(err.message().contains(field), "{field}: {err}");
        }
    }

    #[test]
    fn serde_defaults_and_round_trip() {
        let c: RedisConfig = serde_json::from_str("{}").expect("empty config");
        assert_eq!(c, RedisConfig::default());
        let c = RedisConfig {
            cluster_urls: vec!["redis://a:1/".into()],
            db: Some(0),
            ..RedisConfig::default()
        };
        let back: RedisConfig =
            serde_json::from_str(&serde_json::to_string(&c).expect("ser")).expect("de");
        assert_eq!(back, c);
    }
}
