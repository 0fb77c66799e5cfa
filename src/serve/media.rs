//! A request's images and videos from their URLs: `data:` (base64), `file://` under the
//! server's allowed directory only (a remote client must not read the server's files), and
//! `http(s)://` fetched with a size cap and a timeout. Images are decoded with limits on their
//! size; videos are decoded by the system ffmpeg and sampled as `linvt ask` samples them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;

use super::api::{ApiError, Media, VideoBudget};
use crate::vlm::ask_cli::video_sampling;
use crate::vlm::model::Visual;
use crate::vlm::preprocess::Frame;
use crate::vlm::video::{self, load_video_sampled, Sampling};

/// What the server lets a request read.
#[derive(Clone, Debug)]
pub struct MediaPolicy {
    /// `file://` URLs must resolve inside this directory (canonical); None refuses them all.
    pub allowed_dir: Option<PathBuf>,
    /// The most bytes one image or video may have (data URL, file or download).
    pub max_bytes: u64,
    /// How long a download may take.
    pub timeout: Duration,
    /// The model samples videos by time (Qwen2-VL) rather than uniformly (InternVL).
    pub by_time: bool,
    /// Server-wide defaults for what a request does not set.
    pub defaults: VideoBudget,
}

/// Where a media item's bytes are.
enum Source {
    Bytes(Vec<u8>),
    File(PathBuf),
}

fn too_large(what: &str, max: u64) -> ApiError {
    ApiError {
        status: 413,
        message: format!(
            "the {what} is larger than the server's limit of {max} bytes (--max-media-bytes)"
        ),
        kind: "invalid_request_error",
        param: Some("messages".into()),
        code: Some("media_too_large"),
    }
}

/// Reads `url`'s bytes (or, for an allowed file, its path).
async fn source(
    url: &str,
    policy: &MediaPolicy,
    client: &reqwest::Client,
) -> Result<Source, ApiError> {
    let param = || Some("messages".to_string());
    if let Some(rest) = url.strip_prefix("data:") {
        let (meta, payload) = rest.split_once(',').ok_or_else(|| {
            ApiError::invalid(param(), "a data URL needs a `,` before its payload")
        })?;
        if payload.len() as u64 > policy.max_bytes.saturating_mul(4) / 3 + 4 {
            return Err(too_large("data URL", policy.max_bytes));
        }
        let bytes = if meta.ends_with(";base64") {
            base64::engine::general_purpose::STANDARD
                .decode(payload.trim())
                .map_err(|e| {
                    ApiError::invalid(
                        param(),
                        format!("the data URL's base64 payload is not valid: {e}"),
                    )
                })?
        } else {
            payload.as_bytes().to_vec()
        };
        return Ok(Source::Bytes(bytes));
    }
    if let Some(path) = url.strip_prefix("file://") {
        let forbidden = |why: String| ApiError {
            status: 403,
            message: why,
            kind: "permission_error",
            param: param(),
            code: Some("path_not_allowed"),
        };
        let Some(dir) = &policy.allowed_dir else {
            return Err(forbidden(
                "file:// URLs are refused: the server was started without --allowed-media-dir"
                    .into(),
            ));
        };
        // Canonical: `..` and links cannot lead outside the directory. One message whether
        // the path exists or not, so a client cannot probe the server's files.
        let outside = || {
            forbidden(format!(
                "{path} is not a file under the allowed media directory"
            ))
        };
        let path = Path::new(path).canonicalize().map_err(|_| outside())?;
        if !path.starts_with(dir) || !path.is_file() {
            return Err(outside());
        }
        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if len > policy.max_bytes {
            return Err(too_large("file", policy.max_bytes));
        }
        return Ok(Source::File(path));
    }
    if url.starts_with("http://") || url.starts_with("https://") {
        let fail = |e: String| {
            ApiError::invalid(param(), format!("cannot fetch {url}: {e}"))
                .with_code("media_fetch_failed")
        };
        let mut resp = client
            .get(url)
            .timeout(policy.timeout)
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(fail(format!("the server answered {}", resp.status())));
        }
        if resp.content_length().is_some_and(|n| n > policy.max_bytes) {
            return Err(too_large("download", policy.max_bytes));
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| fail(e.to_string()))? {
            if (bytes.len() + chunk.len()) as u64 > policy.max_bytes {
                return Err(too_large("download", policy.max_bytes));
            }
            bytes.extend_from_slice(&chunk);
        }
        return Ok(Source::Bytes(bytes));
    }
    let scheme = url.split(':').next().unwrap_or("");
    Err(ApiError::invalid(
        param(),
        format!("unsupported URL scheme `{scheme}:`; use data:, file:// (under --allowed-media-dir) or http(s)://"),
    ))
}

fn decode_image(src: Source) -> Result<Frame, ApiError> {
    let bytes = match src {
        Source::Bytes(b) => b,
        Source::File(p) => std::fs::read(&p).map_err(|e| {
            ApiError::invalid(
                Some("messages".into()),
                format!("cannot read {}: {e}", p.display()),
            )
        })?,
    };
    video::decode_image(bytes).map_err(|e| {
        ApiError::invalid(
            Some("messages".into()),
            format!("the image cannot be decoded: {e} (PNG and JPEG are read)"),
        )
        .with_code("invalid_image")
    })
}

/// A video's bytes in a private temporary file (ffmpeg reads files), removed on drop.
struct TempVideo(PathBuf);

impl Drop for TempVideo {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn decode_video(src: Source, sampling: Sampling) -> Result<(Vec<Frame>, Option<f64>), ApiError> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let bad = |e: String| {
        ApiError::invalid(
            Some("messages".into()),
            format!("the video cannot be decoded: {e}"),
        )
        .with_code("invalid_video")
    };
    let (path, _temp) = match src {
        Source::File(p) => (p, None),
        Source::Bytes(b) => {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let p =
                std::env::temp_dir().join(format!("linvt-serve-{}-{n}.video", std::process::id()));
            let temp = TempVideo(p.clone());
            let mut f = std::fs::File::create(&p)
                .map_err(|e| ApiError::server(format!("cannot stage the video: {e}")))?;
            f.write_all(&b)
                .map_err(|e| ApiError::server(format!("cannot stage the video: {e}")))?;
            (p, Some(temp))
        }
    };
    load_video_sampled(&path, sampling).map_err(|e| match e {
        crate::error::Error::InvalidInput(m) => bad(m),
        other => bad(other.to_string()),
    })
}

/// The request's visual input (and the rate its frames stand for), read and decoded; None
/// for a text-only request.
pub async fn load(
    media: &[Media],
    budget: &VideoBudget,
    policy: &MediaPolicy,
    client: &reqwest::Client,
) -> Result<(Option<Visual>, Option<f64>), ApiError> {
    if media.is_empty() {
        return Ok((None, None));
    }
    let mut sources = Vec::with_capacity(media.len());
    for m in media {
        let url = match m {
            Media::Image(u) | Media::Video(u) => u,
        };
        sources.push(source(url, policy, client).await?);
    }
    let d = &policy.defaults;
    let fps = budget.fps.or(d.fps);
    let sampling = video_sampling(
        policy.by_time,
        budget.num_frames.or(d.num_frames),
        fps,
        budget.max_frames.or(d.max_frames).unwrap_or(768),
    );
    let is_video = matches!(media.first(), Some(Media::Video(_)));
    let max_frames = budget.max_frames.or(d.max_frames);
    tokio::task::spawn_blocking(move || {
        if is_video {
            let src = sources.pop().expect("one video");
            let (frames, rate) = decode_video(src, sampling)?;
            return Ok((Some(Visual::Video(frames)), rate));
        }
        let frames = sources
            .into_iter()
            .map(decode_image)
            .collect::<Result<Vec<_>, _>>()?;
        if max_frames.is_some_and(|m| frames.len() > m) {
            return Err(ApiError::invalid(
                Some("messages".into()),
                format!("{} images (read as frames) exceed max_frames", frames.len()),
            ));
        }
        Ok(match frames.len() {
            1 => (
                Some(Visual::Image(frames.into_iter().next().expect("one"))),
                None,
            ),
            // Several images in one conversation: a video's frames, in order, at `fps`.
            _ => (Some(Visual::Video(frames)), fps),
        })
    })
    .await
    .map_err(|e| ApiError::server(format!("media decoding stopped: {e}")))?
}
