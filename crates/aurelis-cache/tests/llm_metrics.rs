//! The model cache's savings in the monitor report and the metrics export (feature `metrics`).

#![cfg(feature = "metrics")]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use aurelis_cache::llm::{
    Message, ModelRequest, ModelResponse, ModelResponseCache, Price, PriceTable, Usage,
    MODEL_METRIC_NAMES,
};
use aurelis_cache::{Cache, CacheMonitor, MetricsExporter, MokaStore, Tier};
use metrics_exporter_prometheus::PrometheusBuilder;

/// The value of `name{labels}` in Prometheus text.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
        if metric != name {
            return None;
        }
        let have: BTreeSet<&str> = rest.trim_end_matches('}').split(',').collect();
        let all = labels.iter().all(|(k, v)| have.contains(format!("{k}=\"{v}\"").as_str()));
        all.then(|| value.parse().ok()).flatten()
    })
}

#[tokio::test]
async fn savings_are_in_the_report_and_the_metrics() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).unwrap();

    let cache = Cache::builder()
        .tier(Tier::new("memory", Arc::new(MokaStore::builder().build().unwrap())))
        .build()
        .unwrap();
    let models = ModelResponseCache::builder(cache.clone())
        .prices(PriceTable::new().price("gpt-4o", Price::per_million(2.5, 10.0)))
        .build()
        .unwrap();
    let request = ModelRequest::new("gpt-4o").message(Message::user("q")).temperature(0.0);
    for _ in 0..4 {
        models
            .get_or_call(&request, || async {
                let mut r = ModelResponse::success("gpt-4o", "a").usage(Usage::new(1_000, 100));
                r.provider_latency = Duration::from_millis(500);
                Ok::<_, std::io::Error>(r)
            })
            .await
            .unwrap();
    }
    let monitor = CacheMonitor::new(cache.clone()).with_model_cache(&models);
    let report = monitor.performance_report().await;
    let costs = report.model_costs.as_ref().unwrap();
    assert_eq!(costs.models["gpt-4o"].hits, 3);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["model_costs"]["models"]["gpt-4o"]["prompt_tokens_saved"], 3_000);
    assert!(report.to_string().contains("gpt-4o"), "{report}");
    // Without a model cache the report has no such section.
    let plain = serde_json::to_value(CacheMonitor::new(cache).performance_report().await).unwrap();
    assert!(plain.get("model_costs").is_none());

    MetricsExporter::new(monitor).label("cache", "llm").export().await;
    let text = handle.render();
    let model = [("model", "gpt-4o"), ("cache", "llm")];
    assert_eq!(sample(&text, "aurelis_cache_model_requests_total", &model), Some(4.0));
    assert_eq!(sample(&text, "aurelis_cache_model_hits_total", &model), Some(3.0));
    assert_eq!(sample(&text, "aurelis_cache_model_provider_calls_total", &model), Some(1.0));
    assert_eq!(
        sample(
            &text,
            "aurelis_cache_model_tokens_saved_total",
            &[("model", "gpt-4o"), ("kind", "prompt")]
        ),
        Some(3_000.0)
    );
    let cost = sample(&text, "aurelis_cache_model_cost_saved", &model).unwrap();
    assert!((cost - (3_000.0 * 2.5 + 300.0 * 10.0) / 1e6).abs() < 1e-9, "{cost}");
    assert_eq!(sample(&text, "aurelis_cache_model_latency_saved_seconds", &model), Some(1.5));
    for name in MODEL_METRIC_NAMES {
        assert!(text.contains(name), "{name} was not exported");
    }
}
