//! Criterion benchmarks of the video-LLM's stages on the tiny model (tests/fixtures/
//! tiny-internvl2): vision encoder, LinVT, prefill and one decode step, on the CPU executor and
//! the GPU one (skipped with a notice when no adapter is usable). The timed functions are
//! `vlm::bench_model`'s (what `linvt bench --model` runs); each ends with a read-back, so GPU
//! iterations wait for the device.

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use linvt::ops::VlmOps;
use linvt::vlm::bench_model::{
    cpu_engine, decode_step, gpu_engine, linvt_stage, prefill_stage, prompt_embeds, vision_stage,
    BenchInputs,
};
use linvt::vlm::engine::Engine;
use linvt::vlm::model::{open_model_dir, LinvtChoice};
const FRAMES: usize = 8;

fn tiny_model() -> &'static Path {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/tiny-internvl2"
    ))
}

/// The four stages on one loaded engine, in pipeline order (each stage's output feeds the next).
fn stages<O: VlmOps>(c: &mut Criterion, executor: &str, e: &mut Engine<O>, inputs: &BenchInputs) {
    let mut g = c.benchmark_group(format!("vlm-tiny/{executor}"));
    g.sample_size(20);
    g.throughput(Throughput::Elements(inputs.frames as u64));
    g.bench_function(
        format!("vision encoder {FRAMES} frames (elements = frames)"),
        |b| b.iter(|| vision_stage(e, inputs).unwrap()),
    );
    let visual = vision_stage(e, inputs).unwrap();
    g.throughput(Throughput::Elements(1));
    g.bench_function("linvt", |b| {
        b.iter(|| linvt_stage(e, inputs, &visual).unwrap())
    });
    let rows = linvt_stage(e, inputs, &visual).unwrap();
    let embeds = prompt_embeds(e, inputs, &rows).unwrap();
    let len = inputs.prompt.ids.len();
    g.throughput(Throughput::Elements(len as u64));
    g.bench_function(format!("prefill {len} tokens (elements = tokens)"), |b| {
        b.iter(|| prefill_stage(e, inputs, &embeds, 1).unwrap())
    });
    // One step at the first free position, repeated: it rewrites the same cache row each time.
    let (mut cache, id) = prefill_stage(e, inputs, &embeds, 1).unwrap();
    g.throughput(Throughput::Elements(1));
    g.bench_function("decode step (elements = tokens)", |b| {
        b.iter(|| decode_step(e, inputs, &mut cache, id, len).unwrap())
    });
    g.finish();
}

fn vlm(c: &mut Criterion) {
    let dir = tiny_model();
    let (config, _) = open_model_dir(dir).unwrap();
    let mut cpu = cpu_engine(dir, &LinvtChoice::Auto, linvt::WeightChoice::Auto).unwrap();
    let queries = cpu.linvt.as_ref().map(|m| m.queries);
    let inputs = BenchInputs::new(dir, &config, FRAMES, queries).unwrap();
    stages(c, "cpu", &mut cpu, &inputs);
    match gpu_engine(dir, &LinvtChoice::Auto) {
        Ok((mut gpu, adapter)) => stages(c, &format!("gpu {adapter}"), &mut gpu, &inputs),
        Err(e) => eprintln!("SKIPPED GPU video-LLM benches: {e}"),
    }
}

criterion_group!(benches, vlm);
criterion_main!(benches);
