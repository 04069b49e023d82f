// The page: boot (contract, manifest, onnxruntime-web, graphs), then one of three modes from the URL —
// interactive (default), ?mode=parity, ?mode=bench. `window.edgeclick` exposes the state and the last
// result so the browser tests and the CLI read what the page shows.

import { runBench } from './bench.js';
import { decodeImage } from './image.js';
import { runParity } from './parity.js';
import { PageError, boot } from './runtime.js';
import { InputError } from './session.js';

const $ = (id) => document.getElementById(id);
const page = { state: 'loading', message: '', result: null, mask: null, clicks: [], log: [] };
window.edgeclick = page;

function setState(state) { page.state = state; document.body.dataset.state = state; }

/** A visible message: kind "error" (red, role=alert), "note" or "info". */
function say(text, kind = 'info') {
  const box = $('message');
  // The box keeps its height when empty: the image must not move under the user's finger between clicks.
  box.textContent = text; box.className = kind;
  page.message = text;
}

function log(line) { page.log.push(line); $('log').textContent = page.log.slice(-12).join('\n'); }

// ----- drawing ------------------------------------------------------------------------------------
let view = null; // { w, h, ctx overlay }

function showImage(img) {
  const base = $('photo'); const overlay = $('overlay');
  base.width = overlay.width = img.w; base.height = overlay.height = img.h;
  base.getContext('2d').drawImage(img.canvas, 0, 0);
  view = { w: img.w, h: img.h, ctx: overlay.getContext('2d') };
  $('stage').classList.add('has-image');
  drawStep(null);
}

/** Mask overlay at the image's own resolution, and the clicks (green positive, red negative). */
function drawStep(step) {
  if (!view) return;
  const { w, h, ctx } = view;
  ctx.clearRect(0, 0, w, h);
  page.mask = step ? summarize(step.mask, w, h) : null;
  page.clicks = step ? step.clicks : [];
  if (step) {
    const data = ctx.createImageData(w, h); const px = data.data;
    for (let i = 0; i < step.mask.length; i++) {
      if (step.mask[i]) { const o = 4 * i; px[o] = 30; px[o + 1] = 144; px[o + 2] = 255; px[o + 3] = 130; }
    }
    ctx.putImageData(data, 0, 0);
    const r = Math.max(3, Math.round(Math.min(w, h) / 90));
    for (const c of step.clicks) {
      ctx.beginPath(); ctx.arc(c.x + 0.5, c.y + 0.5, r, 0, 2 * Math.PI);
      ctx.fillStyle = c.positive ? '#2ecc40' : '#ff4136'; ctx.fill();
      ctx.lineWidth = Math.max(1, r / 3); ctx.strokeStyle = '#fff'; ctx.stroke();
    }
  }
  $('undo').disabled = !step; $('reset').disabled = !step;
  $('count').textContent = step ? `${step.clicks.length} click${step.clicks.length > 1 ? 's' : ''}, ${step.area} mask pixels` : '';
}

/** Area, bounding box and centroid of a 0/1 mask (what tests check; cheap to keep). */
function summarize(mask, w, h) {
  let area = 0; let sx = 0; let sy = 0; let x0 = w; let y0 = h; let x1 = -1; let y1 = -1;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      if (mask[y * w + x]) { area++; sx += x; sy += y; if (x < x0) x0 = x; if (x > x1) x1 = x; if (y < y0) y0 = y; if (y > y1) y1 = y; }
    }
  }
  return { area, width: w, height: h, bbox: area ? [x0, y0, x1, y1] : null, centroid: area ? [sx / area, sy / area] : null };
}

// ----- interactive mode ---------------------------------------------------------------------------
function interactive(ctx) {
  const { contract, session } = ctx;
  let queue = Promise.resolve(); // clicks run one after another, in the order given
  const run = (fn) => { queue = queue.then(fn).catch((err) => { setState('error'); say(err.message || String(err), 'error'); }); return queue; };

  async function open(blob, name) {
    setState('decoding');
    say(`decoding ${name}…`);
    const img = await decodeImage(blob, contract.page.max_source_pixels, name);
    showImage(img);
    const t0 = performance.now();
    await session.setImage(img.rgb, img.h, img.w);
    const t = session.timings;
    say(img.note, img.note ? 'note' : 'info');
    log(`${name}: ${img.w}×${img.h}, letterbox ${t.letterbox_ms.toFixed(0)} ms, encoder ${t.encoder_ms.toFixed(0)} ms (total ${(performance.now() - t0).toFixed(0)} ms)`);
    setState('loaded');
  }
  const openFile = (file) => run(() => open(file, file.name || 'the file'));

  $('file').addEventListener('change', (e) => { if (e.target.files[0]) openFile(e.target.files[0]); e.target.value = ''; });
  $('camera').addEventListener('change', (e) => { if (e.target.files[0]) openFile(e.target.files[0]); e.target.value = ''; });
  const stage = $('stage');
  stage.addEventListener('dragover', (e) => { e.preventDefault(); stage.classList.add('drop'); });
  stage.addEventListener('dragleave', () => stage.classList.remove('drop'));
  stage.addEventListener('drop', (e) => {
    e.preventDefault(); stage.classList.remove('drop');
    const file = e.dataTransfer.files[0];
    if (file) openFile(file); else say('drop an image file', 'error');
  });

  /** Event position → image pixel (integer column/row, as RITM's clicks), clamped into the image. */
  const pixel = (e) => {
    const r = $('overlay').getBoundingClientRect();
    const x = Math.floor((e.clientX - r.left) * view.w / r.width); const y = Math.floor((e.clientY - r.top) * view.h / r.height);
    return [Math.min(view.w - 1, Math.max(0, x)), Math.min(view.h - 1, Math.max(0, y))];
  };
  const click = (x, y, positive) => run(async () => {
    if (!session.letterbox) throw new InputError('open an image first (file picker or drag and drop)');
    const step = await session.click(x, y, positive);
    drawStep(step);
    log(`${positive ? '+' : '−'} (${x}, ${y}): decoder ${step.timings.decoder_ms.toFixed(1)} ms, mask ${step.timings.post_ms.toFixed(1)} ms`);
    say('');
    setState('mask');
  });

  const overlay = $('overlay');
  overlay.addEventListener('contextmenu', (e) => e.preventDefault());
  let press = null; // touch: long press = negative
  overlay.addEventListener('pointerdown', (e) => {
    if (!view) return;
    const [x, y] = pixel(e);
    if (e.pointerType === 'touch') {
      press = { x, y, timer: setTimeout(() => { press = null; click(x, y, false); }, contract.page.long_press_ms) };
    } else if (e.button === 0 || e.button === 2) {
      click(x, y, e.button === 0);
    }
  });
  const endPress = (e, fire) => {
    if (!press) return;
    clearTimeout(press.timer);
    if (fire) click(press.x, press.y, true);
    press = null;
    e.preventDefault();
  };
  overlay.addEventListener('pointerup', (e) => endPress(e, true));
  overlay.addEventListener('pointercancel', (e) => endPress(e, false));

  $('undo').addEventListener('click', () => run(async () => { drawStep(session.undo()); setState(session.current ? 'mask' : 'loaded'); }));
  $('reset').addEventListener('click', () => run(async () => { session.reset(); drawStep(null); setState('loaded'); }));
  document.addEventListener('keydown', (e) => {
    if ((e.ctrlKey || e.metaKey) && e.key === 'z') { e.preventDefault(); $('undo').click(); }
  });
  $('controls').hidden = false;
  setState('ready');
  say('Open an image (button or drag and drop), then click: left = object, right (or long press) = background.');
}

// ----- boot ---------------------------------------------------------------------------------------
async function main() {
  const params = new URLSearchParams(location.search);
  const mode = params.get('mode') || 'interactive';
  setState('loading');
  say('loading the model…');
  let ctx;
  try {
    ctx = await boot(params);
  } catch (err) {
    setState(err instanceof PageError ? err.state : 'error');
    say(err.message || String(err), 'error');
    return;
  }
  const { manifest, backend } = ctx;
  page.backend = { ep: backend.ep, threads: backend.threads, power: backend.power, cross_origin_isolated: self.crossOriginIsolated, notes: backend.notes };
  $('backend').textContent = `${manifest.name} (${manifest.precision}, ${manifest.size.join('×')}) · ` +
    `onnxruntime-web ${backend.ep}, ${backend.threads} thread${backend.threads > 1 ? 's' : ''}, power profile ${backend.power}` +
    `${self.crossOriginIsolated ? '' : ' (not cross-origin isolated)'} · ready in ${ctx.bootMs.toFixed(0)} ms`;
  for (const note of backend.notes) log(note);
  try {
    if (mode === 'parity') {
      setState('running');
      page.result = await runParity(ctx, log);
      say(`parity ${page.result.passed ? 'PASSED' : 'FAILED'}: mean mask IoU ${page.result.summary.mean_mask_iou.toFixed(6)}, ` +
        `max |Δlogit| ${page.result.summary.max_abs_logit.toExponential(2)}`, page.result.passed ? 'info' : 'error');
      setState('done');
    } else if (mode === 'bench') {
      setState('running');
      page.result = await runBench(ctx, params, () => {}, log);
      say(`bench done: encoder p50 ${page.result.encoder_latency.p50_ms.toFixed(1)} ms, decoder p50 ${page.result.decoder_latency.p50_ms.toFixed(2)} ms`);
      setState('done');
    } else {
      interactive(ctx);
    }
  } catch (err) {
    setState(err instanceof PageError ? err.state : 'error');
    say(err.message || String(err), 'error');
  }
}

main();
