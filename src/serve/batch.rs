//! `linvt batch`: a file of chat requests in OpenAI's batch format (one
//! `{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body": {…}}` per line, as
//! vLLM's `run_batch` reads it) through the server's own path, `--parallel` at a time; each
//! result is appended and flushed as it completes, so a killed run loses nothing done and a
//! rerun skips the `custom_id`s already in the output. `--shard i/n` takes every n-th line.

use std::collections::HashSet;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{json, Value};

use super::api::ApiError;
use super::{AppState, ServingArgs};
use crate::error::{Error, Result};
use crate::vlm::ask_cli::{bar, ModelArgs};

#[derive(Debug, clap::Args)]
pub struct BatchArgs {
    #[command(flatten)]
    pub model_args: ModelArgs,
    #[command(flatten)]
    pub serving: ServingArgs,
    /// Requests, one JSON object per line (OpenAI's batch input format).
    #[arg(long)]
    pub input: PathBuf,
    /// Results, one JSON object per line, appended (rerunning skips the `custom_id`s already
    /// there).
    #[arg(long)]
    pub output: PathBuf,
    /// Take every n-th request, starting at the i-th (0-based): `--shard 0/4` … `--shard 3/4`
    /// on four machines split one file.
    #[arg(long, value_parser = parse_shard)]
    pub shard: Option<(usize, usize)>,
}

fn parse_shard(s: &str) -> std::result::Result<(usize, usize), String> {
    let (i, n) = s
        .split_once('/')
        .ok_or_else(|| format!("`{s}`: write the shard as i/n, e.g. 0/4"))?;
    let (i, n): (usize, usize) = (
        i.trim()
            .parse()
            .map_err(|_| format!("`{s}`: i is not a number"))?,
        n.trim()
            .parse()
            .map_err(|_| format!("`{s}`: n is not a number"))?,
    );
    if n == 0 || i >= n {
        return Err(format!("`{s}`: need 0 ≤ i < n"));
    }
    Ok((i, n))
}

/// One input line: its `custom_id` (None when the line does not say) and the request, or why
/// the line cannot be run.
struct Line {
    custom_id: Option<String>,
    body: std::result::Result<Value, String>,
}

fn read_line(text: &str, number: usize) -> Line {
    let v: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            return Line {
                custom_id: None,
                body: Err(format!("line {number} is not valid JSON: {e}")),
            }
        }
    };
    let custom_id = v
        .get("custom_id")
        .and_then(Value::as_str)
        .map(str::to_string);
    let body = (|| {
        if custom_id.is_none() {
            return Err(format!("line {number} has no `custom_id`"));
        }
        if v.get("method")
            .and_then(Value::as_str)
            .is_some_and(|m| m != "POST")
        {
            return Err(format!("line {number}: only POST requests are run"));
        }
        let url = v.get("url").and_then(Value::as_str).unwrap_or("");
        if url != "/v1/chat/completions" {
            return Err(format!(
                "line {number}: url `{url}` is not supported; use /v1/chat/completions"
            ));
        }
        v.get("body")
            .filter(|b| b.is_object())
            .cloned()
            .ok_or_else(|| format!("line {number} has no `body` object"))
    })();
    Line { custom_id, body }
}

/// What an earlier run of the same input already wrote: the `custom_id`s answered, and the
/// input line numbers reported as unrunnable (lines without a `custom_id` are known by them).
#[derive(Debug, Default, PartialEq)]
struct Done {
    ids: HashSet<String>,
    bad_lines: HashSet<u64>,
}

/// Reads what `output` already holds; a last line cut short by a killed run is removed so
/// appending starts on a fresh line.
fn resume(output: &Path) -> Result<Done> {
    let mut done = Done::default();
    let Ok(file) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(output)
    else {
        return Ok(done);
    };
    let mut reader = std::io::BufReader::new(&file);
    let mut keep = 0u64;
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader
            .read_line(&mut line)
            .map_err(|e| Error::io(output, e))?;
        if n == 0 || !line.ends_with('\n') {
            break; // The end, or a line cut short: dropped below.
        }
        keep += n as u64;
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if let Some(id) = v.get("custom_id").and_then(Value::as_str) {
            done.ids.insert(id.to_string());
        } else if let Some(n) = v.pointer("/error/line").and_then(Value::as_u64) {
            done.bad_lines.insert(n);
        }
    }
    file.set_len(keep).map_err(|e| Error::io(output, e))?;
    Ok(done)
}

/// How one input line ended.
enum Outcome {
    /// The request ran: its response body, or the error it got.
    Ran(std::result::Result<Value, ApiError>),
    /// The line is not a request that can run (OpenAI's batch `error` field).
    Unrunnable(String),
}

/// The output line for input line `n`.
fn result_line(n: usize, custom_id: Option<&str>, outcome: Outcome) -> Value {
    let id = format!("batch_req_{n}");
    match outcome {
        Outcome::Ran(Ok(body)) => json!({
            "id": id, "custom_id": custom_id,
            "response": {"status_code": 200, "request_id": body["id"], "body": body},
            "error": null,
        }),
        Outcome::Ran(Err(e)) => json!({
            "id": id, "custom_id": custom_id,
            "response": {"status_code": e.status, "request_id": null, "body": e.body()},
            "error": null,
        }),
        Outcome::Unrunnable(why) => json!({
            "id": id, "custom_id": custom_id, "response": null,
            "error": {"code": "invalid_request_line", "message": why, "line": n},
        }),
    }
}

pub fn run(a: BatchArgs) -> Result<()> {
    let text = std::fs::read_to_string(&a.input).map_err(|e| Error::io(&a.input, e))?;
    let (shard, shards) = a.shard.unwrap_or((0, 1));
    crate::io::check_output_path(&a.output, &[&a.input])?;
    let done = resume(&a.output)?;
    let mut seen = HashSet::new();
    let mut todo = Vec::new();
    let mut skipped = 0;
    for (i, raw) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let line = read_line(raw, i + 1);
        // A shard takes lines by their position in the file, so every machine agrees.
        if i % shards != shard {
            continue;
        }
        if let Some(id) = &line.custom_id {
            if done.ids.contains(id) {
                skipped += 1;
                continue;
            }
            if !seen.insert(id.clone()) {
                eprintln!(
                    "note: custom_id `{id}` appears more than once; only its first line is run"
                );
                continue;
            }
        } else if done.bad_lines.contains(&(i as u64 + 1)) {
            skipped += 1;
            continue;
        }
        todo.push((i + 1, line));
    }
    if skipped > 0 {
        eprintln!(
            "{skipped} request(s) already in {}; skipping them",
            a.output.display()
        );
    }
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&a.output)
        .map_err(|e| Error::Write {
            path: a.output.clone(),
            source: e,
        })?;
    if todo.is_empty() {
        eprintln!("nothing to run");
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::input(format!("cannot start the async runtime: {e}")))?;
    // Every request is queued at once: the model thread runs `--parallel` of them together.
    let state = a.serving.start(&a.model_args, todo.len(), None)?;
    let progress = bar(Some(todo.len() as u64), "requests");
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg:>10} [{bar:30}] {pos}/{len} {elapsed_precise} (ETA {eta})",
    ) {
        progress.set_style(style.progress_chars("=> "));
    }
    let output = a.output.clone();
    let (mut ok, mut failed) = (0usize, 0usize);
    runtime.block_on(async {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for (number, line) in todo {
            let state: Arc<AppState> = state.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let outcome = match &line.body {
                    Err(why) => Outcome::Unrunnable(why.clone()),
                    Ok(body) => {
                        let mut body = body.clone();
                        body["stream"] = json!(false);
                        // One model per run: the file's model names are not checked.
                        body["model"] = json!(state.model_name);
                        Outcome::Ran(state.answer(&body).await)
                    }
                };
                let _ = tx.send((number, line.custom_id, outcome));
            });
        }
        drop(tx);
        while let Some((number, custom_id, outcome)) = rx.recv().await {
            match &outcome {
                Outcome::Ran(Ok(_)) => ok += 1,
                _ => failed += 1,
            }
            let line = result_line(number, custom_id.as_deref(), outcome);
            // Appended and flushed one by one: a killed run keeps every finished line.
            writeln!(out, "{line}")
                .and_then(|_| out.flush())
                .map_err(|e| Error::Write {
                    path: output.clone(),
                    source: e,
                })?;
            progress.inc(1);
        }
        Ok::<_, Error>(())
    })?;
    progress.finish_and_clear();
    eprintln!(
        "{ok} answered, {failed} failed (error results in the output); results in {}",
        a.output.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_and_lines() {
        assert_eq!(parse_shard("1/4"), Ok((1, 4)));
        assert!(
            parse_shard("4/4").is_err() && parse_shard("x").is_err() && parse_shard("0/0").is_err()
        );
        assert!(read_line("{", 1).body.is_err());
        let l = read_line(
            r#"{"custom_id": "a", "method": "POST", "url": "/v1/embeddings", "body": {}}"#,
            2,
        );
        assert_eq!(l.custom_id.as_deref(), Some("a"));
        assert!(l.body.unwrap_err().contains("/v1/embeddings"));
    }

    #[test]
    fn resume_keeps_whole_lines_only() {
        let dir = std::env::temp_dir().join(format!("linvt-batch-resume-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("out.jsonl");
        let bad = result_line(3, None, Outcome::Unrunnable("not JSON".into()));
        let cut = "{\"custom_id\": \"c\", \"resp";
        let text = format!("{{\"custom_id\": \"a\"}}\n{bad}\n{{\"custom_id\": \"b\"}}\n{cut}");
        std::fs::write(&p, text).unwrap();
        let done = resume(&p).unwrap();
        assert_eq!(done.ids, HashSet::from(["a".to_string(), "b".to_string()]));
        assert_eq!(done.bad_lines, HashSet::from([3]));
        assert!(std::fs::read_to_string(&p).unwrap().ends_with("\"b\"}\n"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
