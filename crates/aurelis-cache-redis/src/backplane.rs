//! placeholder
#[derive(Debug)]
pub struct RedisBackplane;
