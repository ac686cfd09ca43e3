//! [`FlightLease`] on Redis: cross-process single-flight leases as `SET NX PX` keys.
//!
//! The lease of cache key `k` is the Redis key `<key_prefix>@lease:<k>` holding the holder's
//! random token, with the lease's time to live. Renewal and release compare the token first
//! (a Lua script, one round trip), so a holder whose lease expired never extends or removes a
//! lease someone else took meanwhile.

use std::time::Duration;

use async_trait::async_trait;
use aurelis_cache_core::lease::{new_token, FlightLease};
use aurelis_cache_core::Result;

use crate::store::RedisStore;

/// `PEXPIRE` the lease if it still holds the token: 1 when renewed.
const RENEW: &str = r"if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0";

/// `DEL` the lease if it still holds the token.
const RELEASE: &str = r"if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0";

fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl RedisStore {
    fn lease_key(&self, key: &str) -> String {
        format!("{}@lease:{key}", self.config().key_prefix)
    }
}

#[async_trait]
impl FlightLease for RedisStore {
    async fn try_acquire(&self, key: &str, ttl: Duration) -> Result<Option<String>> {
        let token = new_token();
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.lease_key(key)).arg(&token).arg("NX").arg("PX").arg(millis(ttl));
        let taken = self
            .conns()
            .run("SET NX (lease)", |mut c| async move {
                cmd.query_async::<Option<String>>(&mut c).await
            })
            .await?;
        Ok(taken.map(|_| token))
    }

    async fn renew(&self, key: &str, token: &str, ttl: Duration) -> Result<bool> {
        let script = redis::Script::new(RENEW);
        let mut invocation = script.key(self.lease_key(key));
        invocation.arg(token).arg(millis(ttl));
        let renewed = self
            .conns()
            .run("EVALSHA (renew lease)", |mut c| async move {
                invocation.invoke_async::<i64>(&mut c).await
            })
            .await?;
        Ok(renewed == 1)
    }

    async fn is_held(&self, key: &str) -> Result<bool> {
        let mut cmd = redis::cmd("EXISTS");
        cmd.arg(self.lease_key(key));
        let n = self
            .conns()
            .run("EXISTS (lease)", |mut c| async move { cmd.query_async::<i64>(&mut c).await })
            .await?;
        Ok(n > 0)
    }

    async fn release(&self, key: &str, token: &str) -> Result<()> {
        let script = redis::Script::new(RELEASE);
        let mut invocation = script.key(self.lease_key(key));
        invocation.arg(token);
        self.conns()
            .run("EVALSHA (release lease)", |mut c| async move {
                invocation.invoke_async::<i64>(&mut c).await
            })
            .await?;
        Ok(())
    }
}
