// The interactive session over onnxruntime-web, step for step what runtimes/session.py does over any
// Backend: setImage letterboxes and runs the encoder once; each click builds the padded click rows, feeds
// the previous click's model-space probabilities back as prev_mask, runs the decoder, and brings the
// logits (not probabilities) back to the image's size before sigmoid and threshold. Every name and number
// comes from contract.json (generated from edgeclick/contract.py), none is typed here.

import { Letterbox } from './letterbox.js';

const f32 = Math.fround;

/** An error the user can act on; the message names the problem and the fix. */
export class InputError extends Error {}

/** sigmoid(clip(x, ±clip)) in float32, as runtimes.session.sigmoid. */
export function sigmoid(x, clip) {
  const v = Math.min(Math.max(x, -clip), clip);
  return f32(1 / f32(1 + f32(Math.exp(-v))));
}

/** Milliseconds of an awaited call. */
async function timed(fn) {
  const t0 = performance.now();
  const value = await fn();
  return [value, performance.now() - t0];
}

export class EdgeSession {
  /**
   * @param ort the onnxruntime-web module
   * @param contract contract.json
   * @param manifest the artifact's manifest.json
   * @param encoder, decoder ort.InferenceSession
   */
  constructor(ort, contract, manifest, encoder, decoder) {
    this.ort = ort; this.c = contract; this.manifest = manifest;
    this.encoder = encoder; this.decoder = decoder;
    this.target = manifest.size; // [H, W]
    this.letterbox = null; this.features = null; this.history = [];
    this.timings = { encoder_ms: null, letterbox_ms: null };
  }

  /**
   * Open both graphs of the artifact with one execution provider; checks their names against the contract.
   * `sessionConfig`: onnxruntime session config entries of the power profile (e.g. intra-op spinning),
   * passed flat through onnxruntime-web's `extra` session options.
   */
  static async open(ort, contract, manifest, baseUrl, executionProviders, sessionConfig = {}) {
    const opts = { executionProviders, graphOptimizationLevel: 'all', extra: { ...sessionConfig } };
    const names = contract.names;
    const [encoder, encMs] = await timed(() => ort.InferenceSession.create(`${baseUrl}${names.ENCODER}.onnx`, opts));
    const [decoder, decMs] = await timed(() => ort.InferenceSession.create(`${baseUrl}${names.DECODER}.onnx`, opts));
    const layout = contract.layouts[`${manifest.model.fusion}/${manifest.model.adapter ? 'adapter' : 'base'}`];
    if (!layout) throw new InputError(`the manifest's model layout (fusion ${manifest.model.fusion}) is not in the contract`);
    const same = (a, b) => a.length === b.length && a.every((n) => b.includes(n));
    for (const [graph, session] of [[names.ENCODER, encoder], [names.DECODER, decoder]]) {
      const spec = layout[graph];
      if (!same(session.inputNames, spec.inputs) || !same(session.outputNames, spec.outputs)) {
        throw new InputError(`${graph}.onnx has inputs [${session.inputNames}] / outputs [${session.outputNames}], ` +
          `the contract says [${spec.inputs}] / [${spec.outputs}]; re-export the artifact`);
      }
    }
    const s = new EdgeSession(ort, contract, manifest, encoder, decoder);
    s.timings.open_ms = { encoder_graph: encMs, decoder_graph: decMs };
    return s;
  }

  /** Run the encoder on h×w×3 interleaved RGB uint8 and forget all clicks. */
  async setImage(rgb, h, w) {
    if (h < 2 || w < 2) throw new InputError(`image of size ${h}x${w} is too small`);
    const t0 = performance.now();
    this.letterbox = Letterbox.fit([h, w], this.target, this.c.pad_multiple);
    this.modelImage = this.letterbox.image(rgb, this.c.pad_value);
    this.timings.letterbox_ms = performance.now() - t0;
    const [H, W] = this.target;
    const feeds = { [this.c.names.IMAGE]: new this.ort.Tensor('uint8', this.modelImage, [1, H, W, 3]) };
    const [out, ms] = await timed(() => this.encoder.run(feeds));
    this.features = out;
    this.timings.encoder_ms = ms;
    this.history = [];
  }

  get imageSize() { return this.letterbox ? this.letterbox.source : null; }
  get clicks() { return this.history.length ? this.history[this.history.length - 1].clicks.slice() : []; }
  get current() { return this.history.length ? this.history[this.history.length - 1] : null; }

  /** Add a click at pixel (x column, y row); resolves to the new step {clicks, mask, logits, timings}. */
  async click(x, y, positive) {
    const clicks = [...this.clicks, { x, y, positive: !!positive }];
    const prev = this.current ? this.current.modelProb : null;
    const step = await this.decode(clicks, prev);
    this.history.push(step);
    return step;
  }

  /** Remove the last click; returns the step before it (null when no click is left). */
  undo() { this.history.pop(); return this.current; }

  /** Forget all clicks (the encoder features stay). */
  reset() { this.history = []; }

  clickRows(clicks) {
    const c = this.c;
    if (!this.letterbox) throw new InputError('no image: open one first');
    if (clicks.length > c.num_clicks) throw new InputError(`${clicks.length} clicks exceed the contract's ${c.num_clicks}; undo or reset first`);
    const [h, w] = this.letterbox.source;
    const rows = new Float32Array(c.num_clicks * 3).fill(c.labels.padding);
    clicks.forEach((k, i) => {
      if (!(Number.isFinite(k.x) && Number.isFinite(k.y) && k.x >= 0 && k.x <= w - 1 && k.y >= 0 && k.y <= h - 1)) {
        throw new InputError(`click (${k.x}, ${k.y}) is outside the ${w}×${h} image`);
      }
      const [mx, my] = this.letterbox.point(k.x, k.y);
      rows[3 * i] = mx; rows[3 * i + 1] = my;
      rows[3 * i + 2] = k.positive ? c.labels.positive : c.labels.negative;
    });
    return rows;
  }

  async decode(clicks, modelPrev) {
    const c = this.c; const [H, W] = this.target;
    const rows = this.clickRows(clicks);
    const prev = modelPrev || new Float32Array(H * W);
    const feeds = { ...this.features };
    feeds[c.names.CLICKS] = new this.ort.Tensor('float32', rows, [1, c.num_clicks, 3]);
    feeds[c.names.PREV_MASK] = new this.ort.Tensor('float32', prev, [1, 1, H, W]);
    const [out, decoderMs] = await timed(() => this.decoder.run(feeds));
    const t0 = performance.now();
    const logits = new Float32Array(out[c.names.LOGITS].data); // a copy: the tensor's buffer may be reused
    const modelProb = new Float32Array(H * W);
    for (let i = 0; i < modelProb.length; i++) modelProb[i] = sigmoid(logits[i], c.logit_clip);
    // Resize logits, not probabilities, back to the image (runtimes/session.py: sharper, what RITM does).
    const imageLogits = this.letterbox.unmap(logits);
    const mask = new Uint8Array(imageLogits.length);
    let area = 0;
    for (let i = 0; i < mask.length; i++) {
      if (sigmoid(imageLogits[i], c.logit_clip) > c.threshold) { mask[i] = 1; area++; }
    }
    return { clicks, logits, modelProb, mask, area, timings: { decoder_ms: decoderMs, post_ms: performance.now() - t0 } };
  }
}
