//! Inputs: a video file (decoded by the system `ffmpeg`), a directory of frames, or one image,
//! as RGB frames; videos and frame directories are sampled uniformly to `num_frames`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::preprocess::{uniform_indices, Frame};
use crate::error::{Error, Result};

/// Image file extensions read from a frames directory.
const FRAME_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg"];

/// Reads one image file as an RGB frame (any size up to [`MAX_IMAGE_SIDE`]: preprocessing
/// resizes it).
pub fn load_image(path: &Path) -> Result<Frame> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_image(bytes).map_err(|e| {
        Error::input(format!(
            "{} is not a readable PNG or JPEG image: {e}",
            path.display()
        ))
    })
}

/// The most pixels per side of an image or a video frame, and the most bytes decoding one image
/// may allocate: a small hostile file must not make us allocate gigabytes.
pub const MAX_IMAGE_SIDE: u32 = 16_384;
const MAX_IMAGE_ALLOC: u64 = 1 << 30;

/// A PNG or JPEG image's bytes as an RGB frame, within the limits above; the decoder's
/// complaint otherwise.
pub fn decode_image(bytes: Vec<u8>) -> std::result::Result<Frame, String> {
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| e.to_string())?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_IMAGE_ALLOC);
    reader.limits(limits);
    let rgb = reader.decode().map_err(|e| e.to_string())?.to_rgb8();
    Frame::new(rgb.width() as usize, rgb.height() as usize, rgb.into_raw())
        .map_err(|e| e.to_string())
}

/// The frames of a directory (PNG/JPEG, sorted by file name), `num_frames` of them sampled
/// uniformly. Frames may differ in size: each is resized to the model's size later.
pub fn load_frames_dir(dir: &Path, num_frames: usize) -> Result<Vec<Frame>> {
    check_count(num_frames)?;
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| FRAME_EXTENSIONS.contains(&x.to_ascii_lowercase().as_str()))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::input(format!(
            "{} holds no frames (zero .png/.jpg/.jpeg files)",
            dir.display()
        )));
    }
    uniform_indices(files.len(), num_frames)
        .into_iter()
        .map(|i| load_image(&files[i]))
        .collect()
}

fn check_count(num_frames: usize) -> Result<()> {
    if num_frames == 0 {
        return Err(Error::input("--num-frames is 0; sample at least one frame"));
    }
    Ok(())
}

/// The path of `program` on PATH, if any (a `which`-style lookup).
pub fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

fn ffmpeg_missing(program: &str) -> Error {
    Error::input(format!(
        "`{program}` was not found on PATH; video files are decoded with the system ffmpeg. Install it (Debian/Ubuntu: `apt-get install ffmpeg`, macOS: `brew install ffmpeg`), or pass --frames DIR with extracted frames"
    ))
}

/// What ffprobe says about the first video stream.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VideoInfo {
    pub width: usize,
    pub height: usize,
    pub frames: usize,
    /// Frames per second (`avg_frame_rate`); None when the container does not say.
    pub fps: Option<f64>,
}

/// Probes the first video stream (ffprobe, counting packets).
fn probe(ffprobe: &Path, video: &Path) -> Result<VideoInfo> {
    let out = Command::new(ffprobe)
        .args(["-v", "error", "-select_streams", "v:0", "-count_packets"])
        .args([
            "-show_entries",
            "stream=width,height,nb_read_packets,avg_frame_rate",
            "-of",
            "json",
        ])
        .arg(video)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::io(ffprobe, e))?;
    let unreadable = || {
        Error::input(format!(
            "{} is not a readable video: {}",
            video.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    };
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|_| unreadable())?;
    let stream = json
        .get("streams")
        .and_then(|s| s.get(0))
        .filter(|_| out.status.success())
        .ok_or_else(unreadable)?;
    let num = |key: &str| -> Option<usize> {
        let v = stream.get(key)?;
        v.as_u64()
            .map(|x| x as usize)
            .or_else(|| v.as_str()?.parse().ok())
    };
    let fps = stream
        .get("avg_frame_rate")
        .and_then(|r| r.as_str())
        .and_then(|r| {
            let (n, d) = r.split_once('/')?;
            let (n, d): (f64, f64) = (n.parse().ok()?, d.parse().ok()?);
            (n > 0.0 && d > 0.0).then_some(n / d)
        });
    match (num("width"), num("height"), num("nb_read_packets")) {
        (_, _, Some(0)) => Err(Error::input(format!(
            "{} holds no video frames (it is empty)",
            video.display()
        ))),
        (Some(width), Some(height), Some(frames)) if width > 0 && height > 0 => Ok(VideoInfo {
            width,
            height,
            frames,
            fps,
        }),
        _ => Err(unreadable()),
    }
}

/// How to pick a video's frames.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sampling {
    /// `n` frames spread uniformly over the clip (InternVL's `get_index`).
    Uniform(usize),
    /// `fps` frames per second of video, at least `min_frames` and at most `max_frames`, a
    /// multiple of `multiple` (Qwen2-VL's pipeline: 2 fps, 4 … 768 frames, pairs), spread
    /// evenly from the first frame to the last.
    Rate {
        fps: f64,
        min_frames: usize,
        max_frames: usize,
        multiple: usize,
    },
}

/// The frame indices `sampling` picks from a clip of `total` frames at `video_fps`, and the
/// rate they represent (frames per second of video; None when unknown).
pub fn sample_indices(
    total: usize,
    video_fps: Option<f64>,
    sampling: Sampling,
) -> Result<(Vec<usize>, Option<f64>)> {
    match sampling {
        Sampling::Uniform(n) => {
            check_count(n)?;
            let idx = uniform_indices(total, n);
            let rate = video_fps.map(|f| idx.len() as f64 / total.max(1) as f64 * f);
            Ok((idx, rate))
        }
        Sampling::Rate {
            fps,
            min_frames,
            max_frames,
            multiple,
        } => {
            if !(fps > 0.0 && fps.is_finite()) || max_frames == 0 {
                return Err(Error::input(format!(
                    "--fps {fps} and --max-frames {max_frames} must be positive"
                )));
            }
            let video_fps = video_fps.ok_or_else(|| {
                Error::input(
                    "the video does not state its frame rate, so it cannot be sampled by --fps; pass --num-frames instead",
                )
            })?;
            // As Qwen's `smart_nframes`: the rate's count, clamped to [min, max] (min rounded
            // up, max down to the multiple, max ≤ the clip), at most the clip, rounded down to
            // the multiple.
            let m = multiple.max(1) as f64;
            let lo = (min_frames as f64 / m).ceil() * m;
            let hi = ((max_frames.min(total) as f64) / m).floor() * m;
            let n = (total as f64 / video_fps * fps)
                .max(lo)
                .min(hi)
                .min(total as f64);
            let n = ((n / m).floor() * m) as usize;
            if n == 0 {
                return Err(Error::input(format!(
                    "a clip of {total} frames is too short to sample in groups of {m}"
                )));
            }
            // Evenly from the first frame to the last, rounded (torch.linspace(...).round()).
            let idx: Vec<usize> = (0..n)
                .map(|i| {
                    let x = if n == 1 {
                        0.0
                    } else {
                        i as f64 * (total - 1) as f64 / (n - 1) as f64
                    };
                    x.round_ties_even() as usize
                })
                .collect();
            let rate = n as f64 / total.max(1) as f64 * video_fps;
            Ok((idx, Some(rate)))
        }
    }
}

/// The most pixels a video frame may have (as for images: 16384 × 16384).
const MAX_FRAME_PIXELS: usize = (MAX_IMAGE_SIDE as usize) * (MAX_IMAGE_SIDE as usize);

/// Decodes `video` with ffmpeg and keeps the frames `sampling` picks; also the rate they
/// represent (frames per second of video).
pub fn load_video_sampled(video: &Path, sampling: Sampling) -> Result<(Vec<Frame>, Option<f64>)> {
    std::fs::metadata(video).map_err(|e| Error::io(video, e))?;
    let ffmpeg = find_program("ffmpeg").ok_or_else(|| ffmpeg_missing("ffmpeg"))?;
    let ffprobe = find_program("ffprobe").ok_or_else(|| ffmpeg_missing("ffprobe"))?;
    let info = probe(&ffprobe, video)?;
    let (wanted, rate) = sample_indices(info.frames, info.fps, sampling)?;
    let (w, h) = (info.width, info.height);
    // A file's header can claim any size; one frame's buffer is allocated before decoding.
    if w.checked_mul(h).is_none_or(|p| p > MAX_FRAME_PIXELS) {
        return Err(Error::input(format!(
            "{} declares {w}×{h} frames, more than the {MAX_FRAME_PIXELS}-pixel limit (16384 × 16384); is it a real video?",
            video.display()
        )));
    }
    let mut child = Command::new(&ffmpeg)
        .args(["-v", "error", "-nostdin", "-noautorotate", "-i"])
        .arg(video)
        .args(["-map", "0:v:0", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| Error::io(&ffmpeg, e))?;
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let mut frames = Vec::with_capacity(wanted.len());
    let mut buf = vec![0u8; w * h * 3];
    let mut index = 0;
    let mut next = wanted.iter().peekable();
    while next.peek().is_some() {
        if stdout.read_exact(&mut buf).is_err() {
            break;
        }
        while next.peek() == Some(&&index) {
            frames.push(Frame::new(w, h, buf.clone())?);
            next.next();
        }
        index += 1;
    }
    // Stop decoding once the last sampled frame is in.
    drop(stdout);
    let _ = child.kill();
    let _ = child.wait();
    if frames.is_empty() {
        return Err(Error::input(format!(
            "{} decoded to no frames; is it a video file?",
            video.display()
        )));
    }
    Ok((frames, rate))
}

/// Decodes `video` with ffmpeg and keeps `num_frames` frames sampled uniformly.
pub fn load_video(video: &Path, num_frames: usize) -> Result<Vec<Frame>> {
    check_count(num_frames)?;
    load_video_sampled(video, Sampling::Uniform(num_frames)).map(|(f, _)| f)
}

#[cfg(test)]
mod tests {
    use super::*;

    const QWEN: fn(f64) -> Sampling = |fps| Sampling::Rate {
        fps,
        min_frames: 4,
        max_frames: 768,
        multiple: 2,
    };

    #[test]
    fn rate_sampling_by_hand() {
        // 10 s at 30 fps, 2 fps → 20 frames from 0 to 299: 299·i/19 rounded.
        let (idx, rate) = sample_indices(300, Some(30.0), QWEN(2.0)).unwrap();
        assert_eq!(idx.len(), 20);
        assert_eq!((idx[0], idx[1], idx[19]), (0, 16, 299));
        assert!((rate.unwrap() - 2.0).abs() < 1e-12);
        // 1 s at 25 fps: 2 frames wanted, at least 4 kept.
        let (idx, rate) = sample_indices(25, Some(25.0), QWEN(2.0)).unwrap();
        assert_eq!(idx, [0, 8, 16, 24]);
        assert!((rate.unwrap() - 4.0).abs() < 1e-12);
        // A long clip stops at max_frames; an odd cap rounds down to pairs.
        let capped = Sampling::Rate {
            fps: 2.0,
            min_frames: 4,
            max_frames: 9,
            multiple: 2,
        };
        assert_eq!(sample_indices(3000, Some(30.0), capped).unwrap().0.len(), 8);
        // Without a frame rate, rate sampling is refused; uniform works.
        assert!(sample_indices(100, None, QWEN(2.0)).is_err());
        assert_eq!(
            sample_indices(100, None, Sampling::Uniform(4))
                .unwrap()
                .0
                .len(),
            4
        );
        // A one-frame clip cannot make a pair.
        assert!(sample_indices(1, Some(30.0), QWEN(2.0)).is_err());
    }
}
