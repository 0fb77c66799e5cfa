//! Batched decoding (`VideoLlm::begin` / `step`, what `linvt serve` runs): questions started at
//! different times, with different inputs, lengths and sampling, decoded together in one step
//! per token, answer exactly as each does alone through `ask`.

mod common;

use linvt::ops::SamplingParams;
use linvt::vlm::model::{AskOptions, Question, VideoLlm, Visual};
use linvt::vlm::prompt::Turns;
use linvt::Device;
use pollster::FutureExt as _;

/// Four questions: video and image, greedy and sampled, 5 to 16 tokens, one multi-turn.
fn questions() -> Vec<(Visual, &'static str, AskOptions)> {
    let clip = common::moving_bar_clip();
    let Visual::Video(frames) = &clip else {
        unreachable!()
    };
    let image = Visual::Image(frames[2].clone());
    let greedy = |n| AskOptions {
        max_new_tokens: n,
        ..Default::default()
    };
    let sampled = AskOptions {
        max_new_tokens: 12,
        sampling: SamplingParams {
            temperature: 0.8,
            top_k: 0,
            top_p: 0.9,
            seed: 5,
        },
        ..Default::default()
    };
    let multi_turn = AskOptions {
        max_new_tokens: 9,
        turns: Turns {
            system: Some("Answer briefly.".into()),
            before: vec![],
            after: vec![("A bar.".into(), "Which way does it move?".into())],
        },
        ..Default::default()
    };
    vec![
        (clip.clone(), "What moves?", greedy(16)),
        (image, "What is it?", greedy(5)),
        (clip.clone(), "Describe the colours.", sampled),
        (clip, "What moves?", multi_turn),
    ]
}

fn alone(m: &mut VideoLlm) -> Vec<Vec<u32>> {
    questions()
        .iter()
        .map(|(v, q, o)| {
            m.ask(v, q, o, &mut |_| {}, &mut |_| {})
                .block_on()
                .unwrap()
                .token_ids
        })
        .collect()
}

/// Starts two questions, decodes two steps, starts the other two, then steps all until done
/// (the server's order: new questions join running ones).
fn together(m: &mut VideoLlm) -> Vec<Vec<u32>> {
    let qs = questions();
    let mut running: Vec<Question> = Vec::new();
    let begin = |m: &mut VideoLlm, i: usize| {
        let (v, q, o) = &qs[i];
        m.begin(Some(v), q, o, &mut |_| {}).block_on().unwrap()
    };
    running.push(begin(m, 0));
    running.push(begin(m, 1));
    for _ in 0..2 {
        m.step(&mut running.iter_mut().collect::<Vec<_>>())
            .block_on()
            .unwrap();
    }
    running.push(begin(m, 2));
    running.push(begin(m, 3));
    while running.iter().any(|q| !q.done()) {
        m.step(&mut running.iter_mut().collect::<Vec<_>>())
            .block_on()
            .unwrap();
    }
    running
        .into_iter()
        .map(|q| m.finish(q).unwrap().token_ids)
        .collect()
}

/// The CPU executor's products of up to `cpu::linear::DECODE_ROWS` rows compute each row as
/// alone, and every other op is per row or per sequence: so the batched answers are the lone
/// ones exactly, greedy and sampled.
#[test]
fn batched_decoding_on_the_cpu_answers_as_each_question_alone() {
    let mut m = VideoLlm::load(&common::tiny_fixture(), Device::Cpu, &mut |_, _| {}).unwrap();
    let want = alone(&mut m);
    assert!(want.iter().all(|ids| !ids.is_empty()));
    assert_ne!(want[0], want[3], "the multi-turn prompt changes the answer");
    assert_eq!(together(&mut m), want);
}

/// On the GPU a batched step's products run the many-row kernel rather than the one-row
/// (matrix-vector) kernel, summing in another order: logits agree to ~1e-6 on this model, far
/// from any of these greedy and seeded choices' margins, so the ids must still be the lone
/// ones. (The kernels are deterministic: a pass is not luck that could change between runs.)
#[test]
fn batched_decoding_on_the_gpu_answers_as_each_question_alone() {
    if common::gpu().is_none() {
        return;
    }
    let mut m = VideoLlm::load(&common::tiny_fixture(), Device::Gpu, &mut |_, _| {}).unwrap();
    let want = alone(&mut m);
    assert_eq!(together(&mut m), want);
}

/// A question without media (text-only chat): its prompt is InternVL's template written out by
/// hand (Hermes-2: system, user and an open assistant turn, with a history turn), and decoded
/// beside a video question it answers as alone, on the CPU and the GPU alike.
#[test]
fn text_only_questions_take_the_template_and_batch_with_video_ones() {
    use linvt::vlm::prompt::INTERNVL_SYSTEM_MESSAGE;
    let opts = AskOptions {
        max_new_tokens: 8,
        turns: Turns {
            system: None,
            before: vec![("Hi".into(), "Hello.".into())],
            after: vec![],
        },
        ..Default::default()
    };
    let text = format!(
        "<|im_start|>system\n{INTERNVL_SYSTEM_MESSAGE}<|im_end|><|im_start|>user\nHi<|im_end|><|im_start|>assistant\nHello.<|im_end|><|im_start|>user\nName a colour.<|im_end|><|im_start|>assistant\n"
    );
    let mut devices = vec![Device::Cpu];
    if common::gpu().is_some() {
        devices.push(Device::Gpu);
    }
    let mut answers = Vec::new();
    for device in devices {
        let mut m = VideoLlm::load(&common::tiny_fixture(), device, &mut |_, _| {}).unwrap();
        let want_ids = m.tokenizer().encode_prompt(&text).unwrap();
        let alone = m
            .begin(None, "Name a colour.", &opts, &mut |_| {})
            .block_on()
            .unwrap();
        let mut alone = vec![alone];
        while !alone[0].done() {
            m.step(&mut alone.iter_mut().collect::<Vec<_>>())
                .block_on()
                .unwrap();
        }
        let alone = m.finish(alone.pop().unwrap()).unwrap();
        assert_eq!(alone.prompt_ids, want_ids);
        assert_eq!((alone.visual_tokens, alone.token_ids.len()), (0, 8));
        let (clip, q, o) = questions().swap_remove(0);
        let mut both = vec![
            m.begin(Some(&clip), q, &o, &mut |_| {}).block_on().unwrap(),
            m.begin(None, "Name a colour.", &opts, &mut |_| {})
                .block_on()
                .unwrap(),
        ];
        while both.iter().any(|q| !q.done()) {
            m.step(&mut both.iter_mut().collect::<Vec<_>>())
                .block_on()
                .unwrap();
        }
        let text_answer = m.finish(both.pop().unwrap()).unwrap();
        assert_eq!(text_answer.token_ids, alone.token_ids, "{device:?}");
        answers.push(alone.token_ids);
    }
    // The GPU executor answers as the CPU one.
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
}
