//! Inputs: a video file (decoded by the system `ffmpeg`), a directory of frames, or one image,
//! as RGB frames; videos and frame directories are sampled uniformly to `num_frames`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::preprocess::{uniform_indices, Frame};
use crate::error::{Error, Result};

/// Image file extensions read from a frames directory.
const FRAME_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg"];

/// Reads one image file as an RGB frame (any size: preprocessing resizes it).
pub fn load_image(path: &Path) -> Result<Frame> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let img = image::load_from_memory(&bytes).map_err(|e| {
        Error::input(format!(
            "{} is not a readable PNG or JPEG image: {e}",
            path.display()
        ))
    })?;
    let rgb = img.to_rgb8();
    Frame::new(rgb.width() as usize, rgb.height() as usize, rgb.into_raw())
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

/// Width, height and frame count of the first video stream (ffprobe, counting packets).
fn probe(ffprobe: &Path, video: &Path) -> Result<(usize, usize, usize)> {
    let out = Command::new(ffprobe)
        .args(["-v", "error", "-select_streams", "v:0", "-count_packets"])
        .args([
            "-show_entries",
            "stream=width,height,nb_read_packets",
            "-of",
            "csv=p=0",
        ])
        .arg(video)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::io(ffprobe, e))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<usize> = text
        .trim()
        .split(',')
        .filter_map(|f| f.trim().parse().ok())
        .collect();
    match fields.as_slice() {
        [w, h, n, ..] if out.status.success() && *w > 0 && *h > 0 && *n > 0 => Ok((*w, *h, *n)),
        [_, _, 0, ..] => Err(Error::input(format!(
            "{} holds no video frames (it is empty)",
            video.display()
        ))),
        _ => Err(Error::input(format!(
            "{} is not a readable video: {}",
            video.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))),
    }
}

/// Decodes `video` with ffmpeg and keeps `num_frames` frames sampled uniformly.
pub fn load_video(video: &Path, num_frames: usize) -> Result<Vec<Frame>> {
    check_count(num_frames)?;
    std::fs::metadata(video).map_err(|e| Error::io(video, e))?;
    let ffmpeg = find_program("ffmpeg").ok_or_else(|| ffmpeg_missing("ffmpeg"))?;
    let ffprobe = find_program("ffprobe").ok_or_else(|| ffmpeg_missing("ffprobe"))?;
    let (w, h, count) = probe(&ffprobe, video)?;
    let wanted = uniform_indices(count, num_frames);
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
    Ok(frames)
}
