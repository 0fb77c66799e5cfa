// The model's worker: the wasm bundle (web/pkg-vlm) and the page's WebGPU device. Weights are
// read from the picked Files with FileReaderSync (workers only), a tensor at a time, so a model
// is never held whole in wasm memory. Messages: {id, op: "load" | "ask"} in; {id, progress |
// token | stage} and finally {id, done} or {id, error} out.
import init, { WebVlm } from "./pkg-vlm/linvt_web.js";

const ready = init();
let model = null;

self.onmessage = async (e) => {
  const { id, op } = e.data;
  const reply = (m, transfer = []) => self.postMessage({ id, ...m }, transfer);
  try {
    await ready;
    if (op === "load") {
      model?.dispose();
      model = null;
      model = await WebVlm.load(e.data.files, e.data.linvt, (progress) => reply({ progress }));
      reply({ done: model.info });
    } else if (op === "ask") {
      if (!model) throw new Error("no model is loaded; call loadModel first");
      const answer = await model.ask(
        e.data.frames,
        e.data.question,
        e.data.options,
        (token) => reply({ token }),
        (stage) => reply({ stage }),
      );
      answer.wasmHeapBytes = wasmHeapBytes();
      reply({ done: answer }, answer.provenance ? [answer.provenance.data.buffer] : []);
    } else {
      throw new Error(`unknown operation ${op}`);
    }
  } catch (err) {
    reply({ error: String(err?.message ?? err) });
  }
};

// The wasm heap's size (it only grows): the peak memory the model took in wasm.
function wasmHeapBytes() {
  return WebVlm.heapBytes?.() ?? null;
}
