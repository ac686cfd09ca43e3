//! The LLM layer: model response cache (placeholder while the rest is written).

mod cost;
mod policy;
mod request;
mod response;

pub use cost::{CostReport, ModelCost, Price, PriceTable};
pub use policy::{CachePolicy, Pacing, SampledPolicy, StoreDecision};
pub use request::{
    ContentPart, ExcludedField, IncludedField, KeyExplanation, Message, ModelRequest, Role,
    ToolCall, FINGERPRINT_SCHEMA,
};
pub use response::{
    FinishReason, ModelChunk, ModelResponse, ResponseStatus, ToolCallDelta, Usage,
};
