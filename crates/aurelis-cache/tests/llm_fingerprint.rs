//! The model request fingerprint: golden keys, every answer-changing field changes the key,
//! excluded fields and canonical forms do not.

use aurelis_cache::llm::{ContentPart, Message, ModelRequest, Role, ToolCall};
use aurelis_cache::KeyBuilder;
use serde_json::json;

/// A request with every key field set.
fn full() -> ModelRequest {
    ModelRequest::new("gpt-4o")
        .system("You are terse.")
        .message(Message::user("What is the weather in Paris?").name("alice"))
        .message(
            Message::assistant("")
                .tool_call(ToolCall::function("call_1", "get_weather", r#"{"city":"Paris"}"#)),
        )
        .message(Message::tool_result("call_1", r#"{"temp_c":18}"#))
        .message(Message::with_parts(
            Role::User,
            vec![ContentPart::text("And this?"), ContentPart::image_url("https://example.invalid/a.png")],
        ))
        .tool(json!({"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}))
        .tool_choice(json!("auto"))
        .response_format(json!({"type": "json_object"}))
        .temperature(0.0)
        .top_p(0.9)
        .max_tokens(256)
        .stop("\n\n")
        .seed(7)
        .param("presence_penalty", 0.5)
}

#[test]
fn golden_keys() {
    // A change of these strings is a change of the key scheme: every model cache goes cold.
    // Change them only together with FINGERPRINT_SCHEMA.
    let keys = KeyBuilder::default();
    let minimal = ModelRequest::new("gpt-4o").message(Message::user("Hi")).temperature(0.0);
    assert_eq!(
        minimal.key(&keys).unwrap().as_str(),
        "aurelis:v1:@model:gpt-4o:ababf00deed1923609d79db722d9368b"
    );
    assert_eq!(
        full().key(&keys).unwrap().as_str(),
        "aurelis:v1:@model:gpt-4o:af1f22bc6fdcf6c9eedd76de2bdfc2cf"
    );
    assert_eq!(full().fingerprint(), "dc3f324ca67285ab5d41734beb04bd66");
}

/// Each answer-changing field, changed on its own.
fn variants() -> Vec<(&'static str, ModelRequest)> {
    let base = full();
    let mut out: Vec<(&'static str, ModelRequest)> = Vec::new();
    let mut v = base.clone();
    v.model = "gpt-4o-mini".into();
    out.push(("model", v));
    out.push(("system prompt", base.clone().system("You are verbose.")));
    let mut v = base.clone();
    v.system = None;
    out.push(("no system prompt", v));
    let mut v = base.clone();
    v.messages[0] = Message::user("What is the weather in Lyon?").name("alice");
    out.push(("user text", v));
    let mut v = base.clone();
    v.messages[0].role = Role::Developer;
    out.push(("role", v));
    let mut v = base.clone();
    v.messages[0].name = Some("bob".into());
    out.push(("message name", v));
    let mut v = base.clone();
    v.messages[1].tool_calls[0].arguments = r#"{"city":"Lyon"}"#.into();
    out.push(("tool call arguments", v));
    let mut v = base.clone();
    v.messages[1].tool_calls[0].name = "get_forecast".into();
    out.push(("tool call name", v));
    let mut v = base.clone();
    v.messages[1].tool_calls[0].id = "call_2".into();
    out.push(("tool call id", v));
    let mut v = base.clone();
    v.messages[2] = Message::tool_result("call_1", r#"{"temp_c":25}"#);
    out.push(("tool result", v));
    let mut v = base.clone();
    v.messages[2].tool_call_id = Some("call_9".into());
    out.push(("tool result call id", v));
    let mut v = base.clone();
    v.messages[3].content[1] = ContentPart::image_url("https://example.invalid/b.png");
    out.push(("image url", v));
    let mut v = base.clone();
    v.messages[3].content[1] = ContentPart::ImageUrl {
        url: "https://example.invalid/a.png".into(),
        detail: Some("high".into()),
    };
    out.push(("image detail", v));
    let mut v = base.clone();
    v.messages.swap(0, 3);
    out.push(("message order", v));
    let mut v = base.clone();
    v.messages.pop();
    out.push(("one message fewer", v));
    let mut v = base.clone();
    v.tools[0]["function"]["parameters"] = json!({"type": "object", "required": ["city"]});
    out.push(("tool schema", v));
    let mut v = base.clone();
    v.tools.clear();
    out.push(("no tools", v));
    out.push(("tool_choice", base.clone().tool_choice(json!("required"))));
    let mut v = base.clone();
    v.tool_choice = None;
    out.push(("no tool_choice", v));
    out.push(("response_format", base.clone().response_format(json!({"type": "text"}))));
    out.push(("temperature", base.clone().temperature(0.2)));
    let mut v = base.clone();
    v.temperature = None;
    out.push(("no temperature", v));
    out.push(("top_p", base.clone().top_p(0.5)));
    out.push(("max_tokens", base.clone().max_tokens(257)));
    out.push(("stop", base.clone().stop("END")));
    out.push(("seed", base.clone().seed(8)));
    out.push(("provider param value", base.clone().param("presence_penalty", 0.6)));
    out.push(("provider param added", base.clone().param("reasoning_effort", "high")));
    out
}

#[test]
fn every_answer_changing_field_changes_the_key() {
    let keys = KeyBuilder::default();
    let base = full().key(&keys).unwrap();
    let mut seen = std::collections::HashMap::new();
    seen.insert(base.clone(), "base");
    for (what, request) in variants() {
        let key = request.key(&keys).unwrap();
        assert_ne!(key, base, "{what} did not change the key");
        if let Some(other) = seen.insert(key, what) {
            panic!("{what} and {other} share a key");
        }
        // explain() names the field that differs.
        assert!(
            !full().explain().differences(&request.explain()).is_empty(),
            "{what}: explain shows no difference"
        );
    }
}

#[test]
fn excluded_fields_and_canonical_forms_keep_the_key() {
    let keys = KeyBuilder::default();
    let base = full().key(&keys).unwrap();
    let mut same = vec![
        ("user", full().user("someone else")),
        ("request id", full().request_id("req-123")),
        ("stream flag", full().stream(true)),
        ("null provider param", full().param("logit_bias", serde_json::Value::Null)),
        ("stop order and duplicates", {
            let mut r = full();
            r.stop = vec!["\n\n".into(), "\n\n".into()];
            r
        }),
    ];
    let mut with_metadata = full();
    with_metadata.metadata.insert("tenant".into(), json!("acme"));
    same.push(("metadata", with_metadata));
    // The system prompt as a field or as a leading system message.
    let mut as_message = full();
    as_message.system = None;
    as_message.messages.insert(0, Message::system("You are terse."));
    same.push(("system as a message", as_message));
    // Map order inside JSON values.
    let mut reordered = full();
    reordered.tools[0] = json!({"function": {"parameters": {"type": "object"}, "name": "get_weather"}, "type": "function"});
    same.push(("tool JSON key order", reordered));
    // -0.0 is 0.0.
    same.push(("negative zero", full().temperature(-0.0)));
    for (what, request) in same {
        assert_eq!(request.key(&keys).unwrap(), base, "{what} changed the key");
    }
    let stops = full().stop("\u{1}").stop("A");
    let mut reversed = full();
    reversed.stop = vec!["A".into(), "\u{1}".into(), "\n\n".into()];
    assert_eq!(stops.key(&keys).unwrap(), reversed.key(&keys).unwrap(), "stop is a set");
}

#[test]
fn absent_temperature_is_not_a_default_value() {
    // The provider's default differs between providers: absent is its own key.
    let keys = KeyBuilder::default();
    let absent = ModelRequest::new("m").message(Message::user("x"));
    let one = absent.clone().temperature(1.0);
    assert_ne!(absent.key(&keys).unwrap(), one.key(&keys).unwrap());
}

#[test]
fn explain_lists_included_and_excluded_fields() {
    let e = full().user("alice").stream(true).explain();
    let names: Vec<&str> = e.included.iter().map(|f| f.name).collect();
    assert_eq!(
        names,
        [
            "model",
            "messages",
            "tools",
            "tool_choice",
            "response_format",
            "temperature",
            "top_p",
            "max_tokens",
            "stop",
            "seed",
            "params"
        ]
    );
    assert_eq!(e.included[5].canonical, "0.0");
    let excluded: Vec<(&str, bool)> = e.excluded.iter().map(|f| (f.name, f.present)).collect();
    assert_eq!(
        excluded,
        [("user", true), ("request_id", false), ("stream", true), ("metadata", false)]
    );
    let minimal = ModelRequest::new("m").explain();
    assert!(minimal.defaulted.contains(&"temperature"));
    let text = e.to_string();
    for needle in
        ["fingerprint", "in the key:", "never in the key:", "user", "stream", "temperature"]
    {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    assert_eq!(e.fingerprint, full().fingerprint());
    assert!(full().explain().differences(&full().user("x").explain()).is_empty());
}

#[test]
fn model_keys_are_under_the_model_prefix() {
    let keys = KeyBuilder::new("app", "v3").unwrap();
    let key = full().key(&keys).unwrap();
    assert!(key.as_str().starts_with(&keys.model_prefix("gpt-4o").unwrap()));
    assert!(ModelRequest::new("").key(&keys).is_err());
    assert!(ModelRequest::new("bad\nmodel").key(&keys).is_err());
}

/// The key's document, written directly, is the one `explain()` shows field by field.
#[test]
fn the_key_document_is_the_explained_one() {
    let mut requests: Vec<ModelRequest> = variants().into_iter().map(|(_, r)| r).collect();
    requests.push(full());
    requests.push(ModelRequest::new("m"));
    requests.push(
        ModelRequest::new("esc\"aped")
            .message(Message::user(
                "quote \" backslash \\ newline \n tab \t bell \u{7} nul \u{0} é 😀",
            ))
            .message(Message::with_parts(
                Role::User,
                vec![ContentPart::Other {
                    value: json!({"z": null, "a": [null, {"y": 1, "b": null}]}),
                }],
            ))
            .param("nested", json!({"b": {"d": 1.5, "c": null}, "a": -0.0}))
            .param("gone", serde_json::Value::Null)
            .top_p(1e-7)
            .temperature(-0.0)
            .seed(-3),
    );
    for r in requests {
        let e = r.explain();
        let mut fields: Vec<(String, String)> =
            e.included.iter().map(|f| (f.name.to_string(), f.canonical.clone())).collect();
        fields.push(("schema".into(), format!("{:?}", e.schema)));
        fields.sort();
        let reference = format!(
            "{{{}}}",
            fields.iter().map(|(k, v)| format!("{k:?}:{v}")).collect::<Vec<_>>().join(",")
        );
        assert_eq!(r.canonical_json(), reference, "{r:?}");
    }
}
