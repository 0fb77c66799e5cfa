//! The chat prompt: InternVL's conversation templates, the `<image>` → `<img>` + n ×
//! `<IMG_CONTEXT>` + `</img>` expansion, and the text LinVT is conditioned on
//! (`value_input_ids`).

use super::tokenizer::{Tokenizer, IMG_CONTEXT, IMG_END, IMG_START};
use crate::config::Preset;
use crate::error::{Error, Result};

/// InternVL2's system message (`InternVLChatModel.system_message`; the Hermes-2,
/// internlm2-chat and phi3-chat checkpoints).
pub const INTERNVL_SYSTEM_MESSAGE: &str = "你是由上海人工智能实验室联合商汤科技开发的书生多模态大模型，英文名叫InternVL, 是一个有用无害的人工智能助手。";

/// InternVL2.5's and InternVL3's system message (the `internvl2_5` template).
pub const INTERNVL2_5_SYSTEM_MESSAGE: &str = "你是书生·万象，英文名是InternVL，是由上海人工智能实验室、清华大学及多家合作单位联合开发的多模态大语言模型。";

/// An MPT-style conversation template (InternVL's `conversation.py`): system turn, user turn,
/// open assistant turn, each closed by `sep`.
#[derive(Clone, Debug)]
pub struct Template {
    pub system_template: &'static str,
    pub system_message: String,
    pub user_role: &'static str,
    pub assistant_role: &'static str,
    /// Ends every turn; its token (without trailing whitespace) also stops generation.
    pub sep: &'static str,
    /// A multi-turn conversation's other turns (empty: one question).
    pub turns: Turns,
}

/// The turns of a conversation around the one that carries the image or video (multi-turn
/// chat: the media stay in the turn that brought them, as InternVL's `chat(history=…)` and the
/// Qwen2-VL chat template place them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Turns {
    /// Replaces the template's system message.
    pub system: Option<String>,
    /// (user, assistant) turns before the media's turn.
    pub before: Vec<(String, String)>,
    /// (assistant, user) turns after it: the answer to the media's turn, the next question, …
    /// — the last user message is the one being answered.
    pub after: Vec<(String, String)>,
}

impl Template {
    /// The template named in config.json (see `config::SUPPORTED_TEMPLATES`).
    pub fn by_name(name: &str) -> Result<Self> {
        let chatml = |system_message: &str, sep| Template {
            system_template: "<|im_start|>system\n{system_message}",
            system_message: system_message.to_string(),
            user_role: "<|im_start|>user\n",
            assistant_role: "<|im_start|>assistant\n",
            sep,
            turns: Turns::default(),
        };
        match name {
            // InternVL2's `Hermes-2` and `internlm2-chat` are the same chatml layout.
            "Hermes-2" | "internlm2-chat" => Ok(chatml(INTERNVL_SYSTEM_MESSAGE, "<|im_end|>")),
            "internvl2_5" => Ok(chatml(INTERNVL2_5_SYSTEM_MESSAGE, "<|im_end|>\n")),
            // A -hf checkpoint's chat template: the same turns, no system turn.
            super::config::HF_TEMPLATE => Ok(Template {
                system_template: "",
                system_message: String::new(),
                ..chatml("", "<|im_end|>\n")
            }),
            // Qwen2-VL's and Qwen2.5-VL's chat template (its default system turn).
            super::config::QWEN2_VL_TEMPLATE => {
                Ok(chatml("You are a helpful assistant.", "<|im_end|>\n"))
            }
            "phi3-chat" => Ok(Template {
                system_template: "<|system|>\n{system_message}",
                system_message: INTERNVL_SYSTEM_MESSAGE.to_string(),
                user_role: "<|user|>\n",
                assistant_role: "<|assistant|>\n",
                sep: "<|end|>",
                turns: Turns::default(),
            }),
            other => Err(Error::config(format!(
                "unsupported chat template `{other}`; supported: {}",
                super::config::SUPPORTED_TEMPLATES.join(", ")
            ))),
        }
    }

    /// The token that ends an assistant turn (`sep` without trailing whitespace).
    pub fn stop_token(&self) -> &'static str {
        self.sep.trim_end()
    }

    /// system + sep + user + message + sep + assistant (no newline after a sep, as released;
    /// no system turn when the template has none), with `turns` before and after the message's.
    pub fn render(&self, user_message: &str) -> String {
        let system_message = self.turns.system.as_deref().unwrap_or(&self.system_message);
        let system = if self.system_template.is_empty() {
            String::new()
        } else {
            let s = self.system_template;
            format!(
                "{}{}",
                s.replace("{system_message}", system_message),
                self.sep
            )
        };
        let (user, assistant, sep) = (self.user_role, self.assistant_role, self.sep);
        let before: String = (self.turns.before.iter())
            .map(|(q, a)| format!("{user}{q}{sep}{assistant}{a}{sep}"))
            .collect();
        let after: String = (self.turns.after.iter())
            .map(|(a, q)| format!("{assistant}{a}{sep}{user}{q}{sep}"))
            .collect();
        format!("{system}{before}{user}{user_message}{sep}{after}{assistant}")
    }
}

/// A tokenized prompt and where its parts are.
#[derive(Clone, Debug)]
pub struct Prompt {
    pub text: String,
    pub ids: Vec<u32>,
    /// Positions of the `<IMG_CONTEXT>` tokens (the visual tokens go there).
    pub context_positions: Vec<u32>,
    /// Tokens of everything up to and including the last `</img>` (tokenized alone).
    pub h_len: usize,
    /// Tokens of the user text after the last `</img>` up to the turn's end (tokenized alone).
    pub v_len: usize,
}

impl Prompt {
    /// `question` with `<image>\n` prepended when it has no `<image>`, the first `<image>`
    /// replaced by `<img>` + `context_tokens` × `<IMG_CONTEXT>` + `</img>`, in the template.
    pub fn build(
        tok: &Tokenizer,
        template: &Template,
        question: &str,
        context_tokens: usize,
    ) -> Result<Prompt> {
        Self::build_spans(tok, template, question, &[context_tokens])
    }

    /// InternVL's `chat()`: `question` with `<image>\n` prepended when it has no `<image>`,
    /// then the i-th `<image>` replaced by `<img>` + `spans[i]` × `<IMG_CONTEXT>` + `</img>`
    /// (one span per image, or per frame of a video), in the template.
    pub fn build_spans(
        tok: &Tokenizer,
        template: &Template,
        question: &str,
        spans: &[usize],
    ) -> Result<Prompt> {
        if question.trim().is_empty() {
            return Err(Error::input(
                "the question is empty; ask something about the video",
            ));
        }
        let question = if question.contains("<image>") {
            question.to_string()
        } else {
            format!("<image>\n{question}")
        };
        let placeholders = question.matches("<image>").count();
        if placeholders < spans.len() {
            return Err(Error::input(format!(
                "the question holds {placeholders} `<image>` placeholder(s) but {} images or frames are given; put one `<image>` per image, or none",
                spans.len()
            )));
        }
        let mut message = question;
        for &n in spans {
            let placeholder = format!("{IMG_START}{}{IMG_END}", IMG_CONTEXT.repeat(n));
            message = message.replacen("<image>", &placeholder, 1);
        }
        Self::from_message(
            tok,
            template,
            &message,
            IMG_CONTEXT,
            spans.iter().sum(),
            IMG_END,
        )
    }

    /// `message` (the user turn, visual placeholders expanded) in the template, tokenized: the
    /// `pad` tokens must number `visual_tokens` (they take the visual rows); the text LinVT is
    /// conditioned on splits after the last `end` (the end of the last visual block).
    pub fn from_message(
        tok: &Tokenizer,
        template: &Template,
        message: &str,
        pad: &str,
        visual_tokens: usize,
        end: &str,
    ) -> Result<Prompt> {
        let pad_id = tok
            .token_to_id(pad)
            .ok_or_else(|| Error::config(format!("tokenizer.json lacks `{pad}`")))?;
        let text = template.render(message);
        let ids = tok.encode_prompt(&text)?;
        let context_positions: Vec<u32> = ids
            .iter()
            .enumerate()
            .filter(|(_, &id)| id == pad_id)
            .map(|(i, _)| i as u32)
            .collect();
        if context_positions.len() != visual_tokens {
            return Err(Error::input(format!(
                "the prompt holds {} `{pad}` tokens but {visual_tokens} visual tokens are to be placed (does the question itself contain `{pad}`?)",
                context_positions.len()
            )));
        }
        // The training code's split: h = the prompt through the last visual block's end, v = the
        // user text after it up to the turn's end; each tokenized on its own.
        let split = text.rfind(end).map_or(0, |i| i + end.len());
        let user_end = text[split..]
            .find(template.sep)
            .map_or(text.len(), |i| split + i);
        let h_len = tok.encode(&text[..split])?.len();
        let v_len = tok.encode(&text[split..user_end])?.len();
        Ok(Prompt {
            text,
            ids,
            context_positions,
            h_len,
            v_len,
        })
    }

    /// The token ids LinVT is conditioned on: `official` = `input_ids[v_len : v_len + h_len]`
    /// (the released training code's slice), `paper` = the question alone,
    /// `input_ids[h_len : h_len + v_len]`.
    pub fn value_ids(&self, preset: Preset) -> Result<&[u32]> {
        let (start, len) = match preset {
            Preset::Official => (self.v_len, self.h_len),
            Preset::Paper => (self.h_len, self.v_len),
        };
        self.ids.get(start..start + len).ok_or_else(|| {
            Error::input(format!(
                "the prompt's {} tokens cannot hold the text slice {start}..{}",
                self.ids.len(),
                start + len
            ))
        })
    }
}
