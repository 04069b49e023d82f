// Parity mode (?mode=parity): replay the bundle `edgeclick parity --web-reference` wrote through this page's
// own preprocessing and onnxruntime-web, click by click, and compare with PyTorch: per-click mask IoU at the
// image's size and |Δlogit| in model space, gated as runtimes/parity.py gates (contract.json's tolerances
// and gated fields for the artifact's precision).

import { decodeImage } from './image.js';
import { PageError, fetchBytes, fetchJson } from './runtime.js';

/** IoU of two 0/1 masks (1 when both are empty, as edgeclick.metrics.iou). */
export function maskIou(a, b) {
  let inter = 0; let union = 0;
  for (let i = 0; i < a.length; i++) { const x = a[i]; const y = b[i]; inter += x & y; union += x | y; }
  return union ? inter / union : 1;
}

function gates(clicks, precision, contract) {
  const tol = contract.tolerances[precision];
  const out = [];
  for (const name of contract.gated[precision]) {
    const threshold = tol[name] === null ? Infinity : tol[name];
    let value; let passed; let where = ''; let failing = 0;
    if (name === 'max_abs_logit') {
      const worst = clicks.reduce((m, c) => (c.max_abs_logit > m.max_abs_logit || Number.isNaN(c.max_abs_logit) ? c : m), clicks[0]);
      value = worst.max_abs_logit; failing = clicks.filter((c) => !(c.max_abs_logit <= threshold)).length;
      where = `sample ${worst.sample} click ${worst.click}`;
    } else if (name === 'min_mask_iou_per_click') {
      const worst = clicks.reduce((m, c) => (c.mask_iou < m.mask_iou ? c : m), clicks[0]);
      value = worst.mask_iou; failing = clicks.filter((c) => !(c.mask_iou >= threshold)).length;
      where = `sample ${worst.sample} click ${worst.click}`;
    } else {
      value = clicks.reduce((s, c) => s + c.mask_iou, 0) / clicks.length;
    }
    passed = clicks.length > 0 && failing === 0 && (name !== 'min_mean_mask_iou' || value >= threshold);
    out.push({ name, threshold: threshold === Infinity ? null : threshold, value, passed, where, failing, total: clicks.length });
  }
  return out;
}

/** Replay the bundle; returns the JSON report the CLI and the tests read. */
export async function runParity(ctx, log) {
  const { contract, manifest, session, backend } = ctx;
  const base = contract.page.reference_url;
  const bundle = await fetchJson(`${base}bundle.json`, 'the parity bundle (serve one with edgeclick web --reference DIR)');
  if (bundle.contract_hash !== contract.hash) throw new PageError('Refused: the parity bundle was written for another I/O contract', 'refused');
  if (String(bundle.input_size) !== String(manifest.size)) {
    throw new PageError(`the parity bundle was made at ${bundle.input_size.join('x')}, the artifact runs at ${manifest.size.join('x')}`);
  }
  const [H, W] = manifest.size;
  const clicks = []; const letterbox = [];
  for (const sample of bundle.samples) {
    const png = new Blob([await fetchBytes(base + sample.png, sample.png)], { type: 'image/png' });
    const img = await decodeImage(png, Infinity, sample.name);
    await session.setImage(img.rgb, img.h, img.w);
    const pyImage = await fetchBytes(base + sample.model_u8, sample.model_u8);
    let maxDiff = 0; let differing = 0;
    for (let i = 0; i < pyImage.length; i++) {
      const d = Math.abs(pyImage[i] - session.modelImage[i]);
      if (d) { differing++; if (d > maxDiff) maxDiff = d; }
    }
    letterbox.push({ sample: sample.name, max_abs_diff: maxDiff, differing_values: differing, values: pyImage.length });
    for (const [k, ref] of sample.steps.entries()) {
      const step = await session.click(ref.x, ref.y, ref.positive);
      const refLogits = new Float32Array((await fetchBytes(base + ref.logits_f32, ref.logits_f32)).buffer);
      const refMask = await fetchBytes(base + ref.mask_u8, ref.mask_u8);
      let maxAbs = 0; let sumAbs = 0; let refAbsMax = 0;
      for (let i = 0; i < H * W; i++) {
        const d = Math.abs(refLogits[i] - step.logits[i]);
        if (d > maxAbs || Number.isNaN(d)) maxAbs = d;
        sumAbs += d; refAbsMax = Math.max(refAbsMax, Math.abs(refLogits[i]));
      }
      const record = { sample: sample.name, click: k + 1, x: ref.x, y: ref.y, positive: ref.positive,
        max_abs_logit: maxAbs, mean_abs_logit: sumAbs / (H * W), mask_iou: maskIou(step.mask, refMask),
        reference_area: ref.area, reference_logit_absmax: refAbsMax, decoder_ms: step.timings.decoder_ms };
      clicks.push(record);
      log(`${sample.name} click ${k + 1}: mask IoU ${record.mask_iou.toFixed(6)}, max |Δlogit| ${maxAbs.toExponential(2)}`);
    }
  }
  const precision = manifest.precision;
  const g = gates(clicks, precision, contract);
  const mean = (f) => clicks.reduce((s, c) => s + f(c), 0) / clicks.length;
  return {
    mode: 'parity', artifact: manifest.name, precision, backend: backend.ep, threads: backend.threads, power: backend.power,
    passed: g.every((x) => x.passed), gates: g,
    summary: { n_samples: bundle.samples.length, n_clicks: clicks.length, mean_mask_iou: mean((c) => c.mask_iou),
      min_mask_iou: Math.min(...clicks.map((c) => c.mask_iou)), max_abs_logit: Math.max(...clicks.map((c) => c.max_abs_logit)),
      mean_abs_logit: mean((c) => c.mean_abs_logit), trivial_masks: clicks.filter((c) => c.reference_area === 0 || c.reference_area === 1).length },
    letterbox, per_click: clicks,
  };
}
