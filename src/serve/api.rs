//! The OpenAI chat-completions request as this server reads it, and the objects it answers
//! with: a request becomes a [`ChatRequest`] (the conversation's text turns, where its media
//! are, how to sample) or an [`ApiError`] — OpenAI's error object with an HTTP status, so every
//! bad request is a 4xx that names what is wrong.

use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::vlm::prompt::Turns;

/// An error as OpenAI's API reports it: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    /// `invalid_request_error`, `authentication_error`, `not_found_error`, `rate_limit_error`,
    /// `server_error`.
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<&'static str>,
}

impl ApiError {
    /// A 400 about the request's field `param`.
    pub fn invalid(param: impl Into<Option<String>>, message: impl Into<String>) -> Self {
        ApiError {
            status: 400,
            message: message.into(),
            kind: "invalid_request_error",
            param: param.into(),
            code: None,
        }
    }

    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    pub fn server(message: impl Into<String>) -> Self {
        ApiError {
            status: 500,
            message: message.into(),
            kind: "server_error",
            param: None,
            code: None,
        }
    }

    /// An error of the model or its inputs: what the user can change is a 400, what the
    /// model or the device did a 500.
    pub fn from_error(e: &crate::error::Error) -> Self {
        use crate::error::Error as E;
        match e {
            E::InvalidInput(_) | E::NonFinite { .. } | E::TensorTooLarge { .. } => {
                ApiError::invalid(None, e.to_string())
            }
            _ => ApiError::server(e.to_string()),
        }
    }

    pub fn body(&self) -> Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

/// Where an image or a video comes from: the part's URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Media {
    Image(String),
    Video(String),
}

/// Per-request bounds on a video's frames and pixels (extension fields; unset: the server's).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VideoBudget {
    pub fps: Option<f64>,
    pub num_frames: Option<usize>,
    pub max_frames: Option<usize>,
    pub max_pixels: Option<usize>,
    pub max_tiles: Option<usize>,
}

/// A chat-completions request, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatRequest {
    pub model: String,
    /// The media turn's text (the question the media go with).
    pub question: String,
    /// The other turns and a system message.
    pub turns: Turns,
    /// The media of the conversation, in order (one video, or images: several are read as a
    /// video's frames); none for a text-only conversation.
    pub media: Vec<Media>,
    pub max_tokens: Option<usize>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub seed: Option<u64>,
    pub stop: Vec<String>,
    pub stream: bool,
    /// `stream_options.include_usage`: a last chunk with the usage.
    pub stream_usage: bool,
    pub budget: VideoBudget,
}

fn field<'a>(body: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    body.get(name).filter(|v| !v.is_null())
}

fn number(body: &Map<String, Value>, name: &str) -> Result<Option<f64>, ApiError> {
    match field(body, name) {
        None => Ok(None),
        Some(v) => v
            .as_f64()
            .filter(|x| x.is_finite())
            .map(Some)
            .ok_or_else(|| {
                ApiError::invalid(name.to_string(), format!("`{name}` must be a number"))
            }),
    }
}

fn count(body: &Map<String, Value>, name: &str, min: u64) -> Result<Option<usize>, ApiError> {
    match field(body, name) {
        None => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if n >= min => Ok(Some(n as usize)),
            _ => Err(ApiError::invalid(
                name.to_string(),
                format!("`{name}` must be an integer ≥ {min}"),
            )),
        },
    }
}

/// A message's content: its text parts joined, and its media parts.
fn content(v: &Value, at: usize) -> Result<(String, Vec<Media>), ApiError> {
    let param = format!("messages[{at}].content");
    match v {
        Value::String(s) => Ok((s.clone(), Vec::new())),
        Value::Array(parts) => {
            let (mut text, mut media) = (Vec::new(), Vec::new());
            for (i, part) in parts.iter().enumerate() {
                let p = format!("{param}[{i}]");
                let kind = part.get("type").and_then(Value::as_str).unwrap_or("");
                let url = |key: &str| -> Result<String, ApiError> {
                    let u = part.get(key);
                    // `{"url": …}` as OpenAI sends it, or the URL alone as some clients do.
                    let url = u
                        .and_then(|u| u.get("url"))
                        .or(u)
                        .and_then(Value::as_str)
                        .ok_or_else(|| {
                            ApiError::invalid(
                                p.clone(),
                                format!("a `{kind}` part needs `{key}.url`"),
                            )
                        })?;
                    Ok(url.to_string())
                };
                match kind {
                    "text" | "input_text" => text.push(
                        part.get("text")
                            .and_then(Value::as_str)
                            .ok_or_else(|| ApiError::invalid(p.clone(), "a text part needs `text`"))?
                            .to_string(),
                    ),
                    "image_url" => media.push(Media::Image(url("image_url")?)),
                    "video_url" => media.push(Media::Video(url("video_url")?)),
                    other => {
                        return Err(ApiError::invalid(
                            p,
                            format!("unsupported content part type `{other}`; this server reads `text`, `image_url` and `video_url`"),
                        ))
                    }
                }
            }
            Ok((text.join("\n"), media))
        }
        Value::Null => Ok((String::new(), Vec::new())),
        _ => Err(ApiError::invalid(
            param,
            "`content` must be a string or an array of parts",
        )),
    }
}

/// Reads a `/v1/chat/completions` body. The conversation must end with a user message and
/// carry its media in one user message (earlier turns' media are reused by later ones).
pub fn parse_chat(body: &Value) -> Result<ChatRequest, ApiError> {
    let body = body
        .as_object()
        .ok_or_else(|| ApiError::invalid(None, "the body must be a JSON object"))?;
    let model = field(body, "model")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::invalid("model".to_string(), "`model` is required"))?
        .to_string();
    let messages = field(body, "messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| {
            ApiError::invalid(
                "messages".to_string(),
                "`messages` must be a non-empty array",
            )
        })?;
    if let Some(n) = count(body, "n", 0)? {
        if n != 1 {
            return Err(ApiError::invalid(
                "n".to_string(),
                "only `n` = 1 is supported",
            ));
        }
    }
    // (role, text) turns with consecutive same-role messages merged; the media's turn index.
    let mut system: Option<String> = None;
    let mut turns: Vec<(&'static str, String)> = Vec::new();
    let mut media: Vec<Media> = Vec::new();
    let mut media_turn = None;
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        let (text, parts) = content(m.get("content").unwrap_or(&Value::Null), i)?;
        let role = match role {
            "system" | "developer" => {
                if !parts.is_empty() {
                    return Err(ApiError::invalid(
                        format!("messages[{i}].content"),
                        "a system message carries text only",
                    ));
                }
                system = Some(match system {
                    Some(s) => format!("{s}\n{text}"),
                    None => text,
                });
                continue;
            }
            "user" => "user",
            "assistant" => "assistant",
            other => {
                return Err(ApiError::invalid(
                    format!("messages[{i}].role"),
                    format!("unsupported role `{other}`; use system, user or assistant"),
                ))
            }
        };
        // The turn this message lands in (consecutive messages of one role merge).
        let lands = match turns.last() {
            Some((r, _)) if *r == role => turns.len() - 1,
            _ => turns.len(),
        };
        if !parts.is_empty() {
            if role != "user" {
                return Err(ApiError::invalid(
                    format!("messages[{i}].content"),
                    "images and videos go in user messages",
                ));
            }
            if media_turn.is_some_and(|t| t != lands) {
                return Err(ApiError::invalid(
                    format!("messages[{i}].content"),
                    "the conversation carries media in more than one user turn; this server answers about one video (or one set of images) per conversation",
                ));
            }
            media_turn = Some(lands);
            media.extend(parts);
        }
        match turns.get_mut(lands) {
            Some((_, t)) => {
                if !text.is_empty() {
                    t.push('\n');
                    t.push_str(&text);
                }
            }
            None => turns.push((role, text)),
        }
    }
    if turns.last().map(|t| t.0) != Some("user") {
        return Err(ApiError::invalid(
            "messages".to_string(),
            "the last message must be the user's",
        ));
    }
    // Without media the last user turn is the question (text-only chat).
    let at = media_turn.unwrap_or(turns.len() - 1);
    let videos = media
        .iter()
        .filter(|m| matches!(m, Media::Video(_)))
        .count();
    if videos > 1 || (videos == 1 && media.len() > 1) {
        return Err(ApiError::invalid(
            "messages".to_string(),
            "one video, or images (read as one video's frames), per conversation",
        ));
    }
    // Turns alternate user / assistant from here (merged above), starting with either.
    let before: Vec<(String, String)> = pairs(&turns[..at], "user")?;
    let after: Vec<(String, String)> = pairs(&turns[at + 1..], "assistant")?;
    let question = turns[at].1.clone();
    if question.trim().is_empty() && after.is_empty() {
        return Err(ApiError::invalid(
            "messages".to_string(),
            "the last user message has no text; ask something",
        ));
    }

    let max_tokens = match count(body, "max_completion_tokens", 1)? {
        Some(n) => Some(n),
        None => count(body, "max_tokens", 1)?,
    };
    let temperature = number(body, "temperature")?.map(|t| t as f32);
    if temperature.is_some_and(|t| !(0.0..=2.0).contains(&t)) {
        return Err(ApiError::invalid(
            "temperature".to_string(),
            "`temperature` must be in [0, 2]",
        ));
    }
    let top_p = number(body, "top_p")?.map(|t| t as f32);
    if top_p.is_some_and(|p| !(p > 0.0 && p <= 1.0)) {
        return Err(ApiError::invalid(
            "top_p".to_string(),
            "`top_p` must be in (0, 1]",
        ));
    }
    let seed = match field(body, "seed") {
        None => None,
        Some(v) => Some(
            v.as_u64()
                .or_else(|| v.as_i64().map(|s| s as u64))
                .ok_or_else(|| {
                    ApiError::invalid("seed".to_string(), "`seed` must be an integer")
                })?,
        ),
    };
    let stop = match field(body, "stop") {
        None => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|s| s.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| ApiError::invalid("stop".to_string(), "`stop` must be strings"))?,
        Some(_) => {
            return Err(ApiError::invalid(
                "stop".to_string(),
                "`stop` must be a string or an array of strings",
            ))
        }
    };
    if stop.len() > 4 || stop.iter().any(String::is_empty) {
        return Err(ApiError::invalid(
            "stop".to_string(),
            "`stop` takes at most 4 non-empty strings",
        ));
    }
    let stream = match field(body, "stream") {
        None => false,
        Some(v) => v.as_bool().ok_or_else(|| {
            ApiError::invalid("stream".to_string(), "`stream` must be true or false")
        })?,
    };
    let stream_usage = field(body, "stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    // Extension fields: top level, or inside `mm_processor_kwargs` as vLLM takes them.
    let kwargs = field(body, "mm_processor_kwargs").and_then(Value::as_object);
    let pick = |name: &str, min: u64| -> Result<Option<usize>, ApiError> {
        match count(body, name, min)? {
            Some(v) => Ok(Some(v)),
            None => kwargs.map_or(Ok(None), |k| count(k, name, min)),
        }
    };
    let fps = match number(body, "fps")? {
        Some(v) => Some(v),
        None => kwargs.map_or(Ok(None), |k| number(k, "fps"))?,
    };
    if fps.is_some_and(|f| f <= 0.0) {
        return Err(ApiError::invalid(
            "fps".to_string(),
            "`fps` must be positive",
        ));
    }
    let budget = VideoBudget {
        fps,
        num_frames: pick("num_frames", 1)?,
        max_frames: pick("max_frames", 1)?,
        max_pixels: pick("max_pixels", 1)?,
        max_tiles: pick("max_tiles", 1)?,
    };
    Ok(ChatRequest {
        model,
        question,
        turns: Turns {
            system,
            before,
            after,
        },
        media,
        max_tokens,
        temperature,
        top_p,
        seed,
        stop,
        stream,
        stream_usage,
        budget,
    })
}

/// Alternating turns starting with `first` as pairs ((user, assistant) or (assistant, user)).
fn pairs(turns: &[(&'static str, String)], first: &str) -> Result<Vec<(String, String)>, ApiError> {
    if !turns.len().is_multiple_of(2) || turns.first().is_some_and(|t| t.0 != first) {
        return Err(ApiError::invalid(
            "messages".to_string(),
            "user and assistant messages must alternate, ending with the user's",
        ));
    }
    Ok(turns
        .chunks(2)
        .map(|c| (c[0].1.clone(), c[1].1.clone()))
        .collect())
}

/// What a finished answer reports besides its text.
#[derive(Clone, Debug, Serialize)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
    /// Visual tokens out of the projector (before LinVT) and in the prompt (after it).
    pub visual_tokens: usize,
    pub prompt_visual_tokens: usize,
}

/// The non-streaming response object.
pub fn completion(
    id: &str,
    model: &str,
    created: u64,
    text: &str,
    finish: &str,
    usage: &Usage,
) -> Value {
    json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "logprobs": null,
            "finish_reason": finish,
        }],
        "usage": usage,
    })
}

/// One streamed chunk: a role, a text delta, a finish reason, or (no choices) the usage.
pub fn chunk(
    id: &str,
    model: &str,
    created: u64,
    delta: Value,
    finish: Option<&str>,
    usage: Option<&Usage>,
) -> Value {
    let choices = match usage {
        Some(_) => json!([]),
        None => json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]),
    };
    let mut c = json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": choices,
    });
    if let Some(u) = usage {
        c["usage"] = json!(u);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Result<ChatRequest, ApiError> {
        parse_chat(&v)
    }

    #[test]
    fn a_video_question_with_sampling_fields() {
        let r = parse(json!({
            "model": "m", "max_tokens": 7, "temperature": 0, "seed": 3, "stop": "x",
            "fps": 1.5, "mm_processor_kwargs": {"max_frames": 8},
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [
                    {"type": "video_url", "video_url": {"url": "data:video/mp4;base64,AA=="}},
                    {"type": "text", "text": "What moves?"}]}]
        }))
        .unwrap();
        assert_eq!(r.question, "What moves?");
        assert_eq!(r.turns.system.as_deref(), Some("Be brief."));
        assert_eq!(
            r.media,
            vec![Media::Video("data:video/mp4;base64,AA==".into())]
        );
        assert_eq!(
            (r.max_tokens, r.temperature, r.seed),
            (Some(7), Some(0.0), Some(3))
        );
        assert_eq!(r.stop, vec!["x".to_string()]);
        assert_eq!((r.budget.fps, r.budget.max_frames), (Some(1.5), Some(8)));
    }

    #[test]
    fn a_text_only_conversation_asks_its_last_user_message() {
        let r = parse(json!({"model": "m", "messages": [
            {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": [{"type": "text", "text": "Name a colour."}]}]}))
        .unwrap();
        assert!(r.media.is_empty());
        assert_eq!(r.question, "Name a colour.");
        assert_eq!(r.turns.before, vec![("Hi".into(), "Hello.".into())]);
    }

    #[test]
    fn later_turns_reuse_the_media_of_the_first() {
        let r = parse(json!({"model": "m", "messages": [
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "file:///a.png"}}, {"type": "text", "text": "What is it?"}]},
            {"role": "assistant", "content": "A bar."},
            {"role": "user", "content": "Which colour?"}]}))
        .unwrap();
        assert_eq!(r.question, "What is it?");
        assert!(r.turns.before.is_empty());
        assert_eq!(
            r.turns.after,
            vec![("A bar.".into(), "Which colour?".into())]
        );
    }

    #[test]
    fn bad_requests_name_what_is_wrong() {
        let video = json!({"type": "video_url", "video_url": {"url": "data:,"}});
        for (body, param) in [
            (json!([]), None),
            (
                json!({"messages": [{"role": "user", "content": [video]}]}),
                Some("model"),
            ),
            (json!({"model": "m", "messages": []}), Some("messages")),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}),
                Some("messages"),
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "audio", "x": 1}]}]}),
                Some("messages[0].content[0]"),
            ),
            (
                json!({"model": "m", "n": 2, "messages": [{"role": "user", "content": [video, {"type": "text", "text": "q"}]}]}),
                Some("n"),
            ),
            (
                json!({"model": "m", "top_p": 0, "messages": [{"role": "user", "content": [video, {"type": "text", "text": "q"}]}]}),
                Some("top_p"),
            ),
            (
                json!({"model": "m", "messages": [{"role": "tool", "content": "x"}]}),
                Some("messages[0].role"),
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": [video, video, {"type": "text", "text": "q"}]}]}),
                Some("messages"),
            ),
        ] {
            let e = parse(body.clone()).unwrap_err();
            assert_eq!(e.status, 400, "{body}");
            assert_eq!(e.param.as_deref(), param, "{body}: {}", e.message);
        }
    }
}
