//! `linvt serve` in-process over loopback (the Python `openai` client tests in
//! `scripts/test-serve.sh` cover the rest): a greedy answer equals `VideoLlm::ask`'s, streamed
//! or not; a bad request is a 4xx with OpenAI's error object.

mod common;

use pollster::FutureExt as _;
use std::sync::Arc;

use linvt::serve::{router, AppState, ServingArgs};
use linvt::vlm::ask_cli::ModelArgs;
use linvt::vlm::model::{AskOptions, VideoLlm};
use linvt::{Device, WeightChoice};
use serde_json::{json, Value};

fn model_args() -> ModelArgs {
    ModelArgs {
        model: common::tiny_fixture(),
        mmproj: None,
        linvt: None,
        no_linvt: false,
        lora: None,
        backend: Device::Cpu,
        gpu_weights: WeightChoice::Auto,
        cpu_weights: WeightChoice::Auto,
        cpu_activations: linvt::ops::Activations::Int8,
        cpu_products: linvt::Products::F32,
        cpu_huge_pages: false,
    }
}

fn serving(media: &std::path::Path) -> ServingArgs {
    ServingArgs {
        served_model_name: Some("tiny".into()),
        parallel: 4,
        max_tokens: 512,
        allowed_media_dir: Some(media.to_path_buf()),
        max_media_bytes: 1 << 20,
        media_timeout: 5,
        fps: None,
        num_frames: None,
        max_frames: None,
        max_pixels: None,
    }
}

async fn start(state: Arc<AppState>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(state, 1 << 20)).await });
    format!("http://{addr}")
}

fn question(url: &str, stream: bool) -> Value {
    json!({
        "model": "tiny", "temperature": 0, "max_tokens": 10, "stream": stream,
        "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": url}},
            {"type": "text", "text": "What is it?"}]}],
    })
}

#[test]
fn answers_match_ask_streamed_or_not_and_bad_requests_are_4xx() {
    let media = std::env::temp_dir().join(format!("linvt-serve-test-{}", std::process::id()));
    std::fs::create_dir_all(&media).unwrap();
    let linvt::vlm::model::Visual::Video(frames) = common::moving_bar_clip() else {
        unreachable!()
    };
    let png = media.join("frame.png");
    image::RgbImage::from_raw(56, 56, frames[1].rgb.clone())
        .unwrap()
        .save(&png)
        .unwrap();
    // What `ask` answers on the same image (the PNG round trip is lossless).
    let mut m = VideoLlm::load(&common::tiny_fixture(), Device::Cpu, &mut |_, _| {}).unwrap();
    let opts = AskOptions {
        max_new_tokens: 10,
        ..Default::default()
    };
    let want = m
        .ask(
            &linvt::vlm::model::Visual::Image(frames[1].clone()),
            "What is it?",
            &opts,
            &mut |_| {},
            &mut |_| {},
        )
        .block_on()
        .unwrap();
    drop(m);

    let state = serving(&media).start(&model_args(), 8, None).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let base = start(state).await;
        let client = reqwest::Client::new();
        let url = format!("file://{}", png.canonicalize().unwrap().display());
        let post = |body: Value| {
            client
                .post(format!("{base}/v1/chat/completions"))
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
        };

        let r = post(question(&url, false)).await.unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], want.text.as_str());
        assert_eq!(v["usage"]["completion_tokens"], want.token_ids.len());
        assert_eq!(v["usage"]["prompt_tokens"], want.prompt_ids.len());

        let text = post(question(&url, true))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let mut streamed = String::new();
        let events: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .collect();
        assert_eq!(events.last(), Some(&"[DONE]"));
        for e in &events[..events.len() - 1] {
            let c: Value = serde_json::from_str(e).unwrap();
            if let Some(t) = c["choices"][0]["delta"]["content"].as_str() {
                streamed.push_str(t);
            }
        }
        assert_eq!(streamed, want.text);

        for (body, status, kind) in [
            (json!({"model": "tiny"}), 400, "invalid_request_error"),
            (
                json!({"model": "other", "messages": question(&url, false)["messages"]}),
                404,
                "invalid_request_error",
            ),
            (
                question("file:///etc/passwd", false),
                403,
                "permission_error",
            ),
            (
                question("data:image/png;base64,AAAA", false),
                400,
                "invalid_request_error",
            ),
        ] {
            let r = post(body.clone()).await.unwrap();
            assert_eq!(r.status().as_u16(), status, "{body}");
            let v: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
            assert_eq!(v["error"]["type"], kind, "{body}");
            assert!(v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()));
        }
        let health = client.get(format!("{base}/health")).send().await.unwrap();
        assert_eq!(health.status(), 200);
    });
    std::fs::remove_dir_all(&media).unwrap();
}
