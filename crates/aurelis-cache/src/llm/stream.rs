//! Streamed answers: a tee that passes a provider's chunks through as they arrive and records
//! them, one shared provider stream per request in flight (late joiners get the chunks so far,
//! then the rest live), and replays of recorded streams chunk by chunk.
//!
//! A driver task reads the provider stream inside the cache's `get_or_compute_with` (so a
//! concurrent whole request for the same answer shares the call, and the stream inherits the
//! cache's single-flight) and appends each chunk to the shared [`Live`] state, which every
//! consumer reads at its own position. When the last consumer is dropped before the end, the
//! driver is aborted: the provider stream is dropped and nothing is stored.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;

use aurelis_cache_core::{Error, ErrorKind, Result};
use futures::{Stream, StreamExt};
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::cost::Served;
use super::request::ModelRequest;
use super::response::{ModelChunk, ModelResponse, ResponseStatus, StoredAnswer, StreamRecording};
use super::{fill_latency, hit, provider_error, LoadFailure, ModelResponseCache, StoreDecision};

/// Where a [`ModelStream`]'s chunks come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamSource {
    /// A replay of a cached answer.
    Replay,
    /// A provider stream this request started.
    Provider,
    /// A provider stream another identical request started (the chunks so far, then live).
    Joined,
    /// The provider, the cache not consulted (sampled requests under `SampledPolicy::Skip`).
    Bypass,
}

/// A streamed answer: a `Stream` of [`ModelChunk`]s, from the provider or a replay.
///
/// Dropping it before the model's finish reason arrived stops the provider stream (unless
/// other identical requests still read it) and stores nothing; dropping it after that lets
/// the provider stream end and be stored.
pub struct ModelStream {
    source: StreamSource,
    inner: Pin<Box<dyn Stream<Item = Result<ModelChunk>> + Send>>,
}

impl fmt::Debug for ModelStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModelStream").field("source", &self.source).finish_non_exhaustive()
    }
}

impl ModelStream {
    /// Where the chunks come from.
    pub fn source(&self) -> StreamSource {
        self.source
    }

    /// Reads the stream to its end and assembles the answer.
    ///
    /// # Errors
    ///
    /// The stream's first error.
    pub async fn into_response(mut self) -> Result<ModelResponse> {
        let mut chunks = Vec::new();
        while let Some(chunk) = self.next().await {
            chunks.push(chunk?);
        }
        let mut r = ModelResponse::from_chunks(&chunks);
        r.from_cache = matches!(self.source, StreamSource::Replay | StreamSource::Joined);
        Ok(r)
    }
}

impl Stream for ModelStream {
    type Item = Result<ModelChunk>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

/// The streams in flight, by key.
#[derive(Default)]
pub(crate) struct Registry {
    live: Mutex<HashMap<String, Arc<Live>>>,
}

/// One provider stream in flight.
struct Live {
    state: Mutex<LiveState>,
    changed: Notify,
}

#[derive(Default)]
struct LiveState {
    chunks: Vec<ModelChunk>,
    offsets_us: Vec<u64>,
    /// `Some` once the stream ended: normally, or with this error.
    end: Option<std::result::Result<(), Error>>,
    consumers: usize,
    /// Consumers that joined a stream another request started (counted as hits at the end).
    joined: u64,
    abort: Option<tokio::task::AbortHandle>,
    /// All consumers left before the provider stream ended: the driver is aborted.
    cancelled: bool,
    /// The provider stream has ended; the driver only stores and accounts now, which no
    /// reader leaving may interrupt.
    provider_done: bool,
}

impl Live {
    fn push(&self, chunk: ModelChunk, offset: Duration) {
        {
            let mut s = self.state.lock();
            s.chunks.push(chunk);
            s.offsets_us.push(u64::try_from(offset.as_micros()).unwrap_or(u64::MAX));
        }
        self.changed.notify_waiters();
    }

    fn finish(&self, end: std::result::Result<(), Error>) {
        self.state.lock().end = Some(end);
        self.changed.notify_waiters();
    }

    fn recording(&self, total: Duration) -> StreamRecording {
        let s = self.state.lock();
        StreamRecording {
            chunks: s.chunks.clone(),
            offsets_us: s.offsets_us.clone(),
            total_us: u64::try_from(total.as_micros()).unwrap_or(u64::MAX),
        }
    }
}

/// A reader of a [`Live`] stream; the last one to leave before the end aborts the driver.
struct Consumer {
    live: Arc<Live>,
    models: ModelResponseCache,
    key: String,
    pos: usize,
}

impl Drop for Consumer {
    fn drop(&mut self) {
        let mut map = self.models.inner.live.live.lock();
        let mut s = self.live.state.lock();
        s.consumers -= 1;
        // Once the model said why it stopped, the answer is whole: the driver reads what
        // follows (a usage trailer) and stores it even when nobody reads any more.
        let finished = s.provider_done || s.chunks.iter().any(|c| c.finish_reason.is_some());
        if s.consumers == 0 && s.end.is_none() && !finished {
            s.cancelled = true;
            if let Some(abort) = s.abort.take() {
                abort.abort();
            }
            if map.get(&self.key).is_some_and(|l| Arc::ptr_eq(l, &self.live)) {
                map.remove(&self.key);
            }
        }
    }
}

impl Consumer {
    /// The next chunk at this consumer's position: waits for the driver when it has none.
    async fn next(&mut self) -> Option<Result<ModelChunk>> {
        loop {
            let notified = self.live.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let s = self.live.state.lock();
                if let Some(chunk) = s.chunks.get(self.pos) {
                    self.pos += 1;
                    return Some(Ok(chunk.clone()));
                }
                match &s.end {
                    Some(Ok(())) => return None,
                    // The stream built on this ends after the error.
                    Some(Err(e)) => return Some(Err(e.clone())),
                    None => {}
                }
            }
            notified.await;
        }
    }

    fn into_stream(self) -> impl Stream<Item = Result<ModelChunk>> + Send {
        futures::stream::unfold((self, false), |(mut consumer, failed)| async move {
            if failed {
                return None;
            }
            let item = consumer.next().await?;
            let failed = item.is_err();
            Some((item, (consumer, failed)))
        })
    }
}

/// Replays recorded chunks, paced as the policy says.
fn replay(answer: StoredAnswer, pacing: super::CachePolicy) -> ModelStream {
    let (chunks, offsets) = match answer {
        StoredAnswer::Stream(rec) => (rec.chunks, rec.offsets_us),
        StoredAnswer::Whole(r) => (r.to_chunks(), Vec::new()),
    };
    let stream = futures::stream::unfold(
        (chunks.into_iter().enumerate(), offsets, 0u64),
        move |(mut it, offsets, last)| {
            let pacing = pacing.clone();
            async move {
                let (i, chunk) = it.next()?;
                let mut last = last;
                if let Some(&at) = offsets.get(i) {
                    if let Some(gap) = pacing.gap(Duration::from_micros(at.saturating_sub(last))) {
                        if !gap.is_zero() {
                            tokio::time::sleep(gap).await;
                        }
                    }
                    last = at;
                }
                Some((Ok(chunk), (it, offsets, last)))
            }
        },
    );
    ModelStream { source: StreamSource::Replay, inner: Box::pin(stream) }
}

impl ModelResponseCache {
    /// A streamed answer to `request`: a replay of the cached answer (chunk by chunk, with
    /// the original boundaries, paced as [`CachePolicy::pacing`](super::CachePolicy::pacing)
    /// says), the live stream of an identical request in flight (the chunks so far, then the
    /// rest), or the stream `call` returns, passed through as each chunk arrives.
    ///
    /// A provider stream is stored when it ends normally (with a finish reason) and the policy
    /// keeps its answer (not truncated, unless allowed); a provider error, a truncated finish, an
    /// end without a finish reason, or every reader
    /// dropping the stream before the finish reason arrived stores nothing. A cached whole answer serves a
    /// stream (split into chunks), and a recorded stream serves
    /// [`ModelResponseCache::get_or_call`] (assembled).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use futures::StreamExt;
    /// use aurelis_cache::{Cache, MokaStore, Tier};
    /// use aurelis_cache::llm::{FinishReason, ModelChunk, ModelRequest, ModelResponseCache, StreamSource};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> aurelis_cache::Result<()> {
    /// # let cache = Cache::builder().tier(Tier::new("memory", Arc::new(MokaStore::builder().build()?))).build()?;
    /// let models = ModelResponseCache::new(cache);
    /// let request = ModelRequest::new("gpt-4o").temperature(0.0).stream(true);
    /// let provider = || async {
    ///     let chunks = vec![ModelChunk::text("Hel"), ModelChunk::text("lo"), ModelChunk::finished(FinishReason::Stop)];
    ///     Ok::<_, std::io::Error>(futures::stream::iter(chunks.into_iter().map(Ok)))
    /// };
    /// let live: Vec<_> = models.stream(&request, provider).await?.collect().await;
    /// let replay = models.stream(&request, provider).await?;
    /// assert_eq!(replay.source(), StreamSource::Replay);
    /// let replayed: Vec<_> = replay.collect().await;
    /// assert_eq!(replayed.len(), 3); // the same chunks, the same boundaries
    /// assert_eq!(replayed[1].as_ref().unwrap().content.as_deref(), Some("lo"));
    /// assert_eq!(live.len(), 3);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidKey`] for a bad model name; [`ErrorKind::Loader`] when `call`
    /// fails before the stream starts (while streaming, errors are items of the stream).
    pub async fn stream<F, Fut, S, E>(&self, request: &ModelRequest, call: F) -> Result<ModelStream>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<S, E>> + Send + 'static,
        S: Stream<Item = std::result::Result<ModelChunk, E>> + Send + 'static,
        E: Into<Box<dyn StdError + Send + Sync>> + Send + 'static,
    {
        let inner = &self.inner;
        if !inner.policy.uses_cache(request) {
            let stream = call().await.map_err(provider_error)?;
            inner.costs.tracker.record(&request.model, Served::Bypassed);
            let stream = stream.map(|item| item.map_err(provider_error));
            return Ok(ModelStream { source: StreamSource::Bypass, inner: Box::pin(stream) });
        }
        let key = self.key(request)?;
        if let Some(answer) = inner.cache.get::<StoredAnswer>(&key).await? {
            inner.costs.tracker.record(&request.model, hit(&answer));
            return Ok(replay(answer, inner.policy.clone()));
        }
        let mut map = inner.live.live.lock();
        if let Some(live) = map.get(key.as_str()).cloned() {
            let mut s = live.state.lock();
            if !s.cancelled {
                s.consumers += 1;
                s.joined += 1;
                drop(s);
                drop(map);
                let consumer =
                    Consumer { live, models: self.clone(), key: key.as_str().to_owned(), pos: 0 };
                return Ok(ModelStream {
                    source: StreamSource::Joined,
                    inner: Box::pin(consumer.into_stream()),
                });
            }
        }
        let live = Arc::new(Live {
            state: Mutex::new(LiveState { consumers: 1, ..Default::default() }),
            changed: Notify::new(),
        });
        let driver = drive(self.clone(), key.clone(), request.clone(), live.clone(), call);
        let handle = tokio::spawn(driver);
        live.state.lock().abort = Some(handle.abort_handle());
        map.insert(key.as_str().to_owned(), live.clone());
        drop(map);
        let consumer = Consumer { live, models: self.clone(), key: key.into_string(), pos: 0 };
        Ok(ModelStream { source: StreamSource::Provider, inner: Box::pin(consumer.into_stream()) })
    }
}

impl ModelResponseCache {
    /// A reader of the stream in flight for `key`, if there is one.
    pub(crate) fn join_live(&self, key: &aurelis_cache_core::Key) -> Option<ModelStream> {
        let map = self.inner.live.live.lock();
        let live = map.get(key.as_str())?.clone();
        let mut s = live.state.lock();
        if s.cancelled {
            return None;
        }
        s.consumers += 1;
        s.joined += 1;
        drop(s);
        drop(map);
        let consumer =
            Consumer { live, models: self.clone(), key: key.as_str().to_owned(), pos: 0 };
        Some(ModelStream { source: StreamSource::Joined, inner: Box::pin(consumer.into_stream()) })
    }
}

/// Reads the provider stream into `live` inside the cache's load, stores it when the policy
/// says so, and accounts for it.
async fn drive<F, Fut, S, E>(
    models: ModelResponseCache,
    key: aurelis_cache_core::Key,
    request: ModelRequest,
    live: Arc<Live>,
    call: F,
) where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = std::result::Result<S, E>> + Send + 'static,
    S: Stream<Item = std::result::Result<ModelChunk, E>> + Send + 'static,
    E: Into<Box<dyn StdError + Send + Sync>> + Send + 'static,
{
    let started = Instant::now();
    let policy = &models.inner.policy;
    let loaded = models
        .load(&key, || async {
            let stream = call().await.map_err(|e| LoadFailure::Provider(e.into()))?;
            let mut stream = std::pin::pin!(stream);
            while let Some(item) = stream.next().await {
                match item {
                    Ok(chunk) => live.push(chunk, started.elapsed()),
                    Err(e) => return Err(LoadFailure::Provider(e.into())),
                }
            }
            // Complete: a reader that leaves now (say, after the last chunk, without waiting
            // for the end) must not stop the store.
            live.state.lock().provider_done = true;
            let recording = live.recording(started.elapsed());
            let mut response = ModelResponse::from_chunks(&recording.chunks);
            fill_latency(&mut response, started);
            // A stream that stops without saying why may have been cut: not stored.
            let decision = match response.finish_reason {
                None => StoreDecision::Skip("the stream ended without a finish reason"),
                Some(_) => policy.decide(&request, &response),
            };
            models.classify(StoredAnswer::Stream(recording), decision)
        })
        .await;
    let end = match &loaded {
        Ok(loaded) if !loaded.called => {
            // Answered by the cache or a call in flight: replay it to the readers.
            let response = loaded.answer.to_response();
            if response.status == ResponseStatus::Error {
                Err(Error::new(ErrorKind::Loader, "the model provider answered with an error")
                    .with_source(ProviderAnswer(response.error.unwrap_or_default())))
            } else {
                let chunks = match &loaded.answer {
                    StoredAnswer::Stream(rec) => rec.chunks.clone(),
                    StoredAnswer::Whole(r) => r.to_chunks(),
                };
                for chunk in chunks {
                    live.push(chunk, Duration::ZERO);
                }
                Ok(())
            }
        }
        Ok(_) => Ok(()),
        Err(e) => Err(e.clone()),
    };
    // Leave the registry before the readers see the end: a request after the end finds the
    // stored answer or starts a new stream, never this finished one; and no reader joins
    // after the count below.
    {
        let mut map = models.inner.live.live.lock();
        if map.get(key.as_str()).is_some_and(|l| Arc::ptr_eq(l, &live)) {
            map.remove(key.as_str());
        }
    }
    let joined = live.state.lock().joined;
    let costs = &models.inner.costs.tracker;
    match &loaded {
        Ok(loaded) => {
            models.account(&request.model, loaded);
            for _ in 0..joined {
                costs.record(&request.model, hit(&loaded.answer));
            }
        }
        Err(_) => {
            costs.record(&request.model, Served::CalledNotStored);
            let nothing = Served::Hit { prompt: 0, completion: 0, latency: Duration::ZERO };
            for _ in 0..joined {
                costs.record(&request.model, nothing);
            }
        }
    }
    live.finish(end);
}

/// An error status answer, as an error source.
#[derive(Debug)]
struct ProviderAnswer(String);

impl fmt::Display for ProviderAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl StdError for ProviderAnswer {}
