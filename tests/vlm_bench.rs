//! The stage functions `linvt bench --model` and benches/vlm.rs time do the real work: chained
//! on the golden clip they give the released code's greedy ids, so the benchmark measures the
//! pipeline `ask` runs, not a shortcut.

use std::path::{Path, PathBuf};

use ::linvt::vlm::bench_model::{
    cpu_engine, decode_step, linvt_stage, prefill_stage, prompt_embeds, vision_stage, BenchInputs,
};
use ::linvt::vlm::model::{open_model_dir, LinvtChoice};
use ::linvt::vlm::prompt::{Prompt, Template};
use ::linvt::vlm::tokenizer::Tokenizer;
use ::linvt::weights::TensorStore;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-internvl2")
}

#[test]
fn bench_stages_chained_give_the_golden_greedy_ids() {
    let dir = fixture();
    let golden = TensorStore::open(&dir.join("golden_e2e.safetensors")).unwrap();
    let (config, _) = open_model_dir(&dir).unwrap();
    let tokenizer = Tokenizer::from_dir(&dir).unwrap();
    let template = Template::by_name(&config.template).unwrap();
    let question = golden.metadata()["question"].clone();
    let prompt = Prompt::build(
        &tokenizer,
        &template,
        &question,
        config.num_video_query_token.unwrap(),
    )
    .unwrap();
    let pixels = golden.get("input.pixel_values").unwrap().unwrap();
    let len = prompt.ids.len();
    let inputs = BenchInputs {
        frames: pixels.shape()[0],
        video_frames: pixels.shape()[0],
        pixels,
        prompt,
        preprocess_ms: 0.0,
        grid: None,
        vision_tokens: 0,
        positions: ::linvt::ops::Positions::range(0, len),
        delta: 0,
    };
    let want: Vec<u32> = golden
        .get_i64("output.greedy_ids")
        .unwrap()
        .unwrap()
        .1
        .into_iter()
        .map(|v| v as u32)
        .collect();

    let mut e = cpu_engine(&dir, &LinvtChoice::Auto, linvt::WeightChoice::Auto).unwrap();
    let visual = vision_stage(&mut e, &inputs).unwrap();
    let rows = linvt_stage(&mut e, &inputs, &visual).unwrap();
    let embeds = prompt_embeds(&mut e, &inputs, &rows).unwrap();
    let steps = want.len() - 1;
    let (mut cache, mut id) = prefill_stage(&mut e, &inputs, &embeds, steps).unwrap();
    let mut got = vec![id];
    let len = inputs.prompt.ids.len();
    for position in len..len + steps {
        id = decode_step(&mut e, &inputs, &mut cache, id, position).unwrap();
        got.push(id);
    }
    // Greedy ids are exact: the fixture's README puts every decision far above f32 noise.
    assert_eq!(got, want);
}
