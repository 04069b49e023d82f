// Bench mode (?mode=bench&threads=N&ep=wasm|webgpu&runs=20&warmup=3&sustain=10&rate=5): encoder and
// per-click decoder latency, cold start (navigation start → first mask) and a fixed-rate click run, as
// JSON for `edgeclick web ARTIFACT --bench OUT`. Definitions follow runtimes/bench.py: percentiles with
// linear interpolation; a sustained slot i is due at start + i/rate, a late click starts at once, and it
// missed its deadline when it finished after its slot ended.

import { syntheticImage } from './image.js';

/** numpy.percentile (linear) of a list of milliseconds. */
export function percentile(values, q) {
  const s = [...values].sort((a, b) => a - b);
  const pos = (s.length - 1) * q / 100; const lo = Math.floor(pos); const hi = Math.ceil(pos);
  return s[lo] + (s[hi] - s[lo]) * (pos - lo);
}

export function latency(ms) {
  return { p50_ms: percentile(ms, 50), p90_ms: percentile(ms, 90), p99_ms: percentile(ms, 99),
    mean_ms: ms.reduce((a, b) => a + b, 0) / ms.length, min_ms: Math.min(...ms), runs: ms.length };
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));

/** Click positions spread over the image, deterministic (a fixed LCG), alternating labels after the first. */
function* clickStream(h, w, perSession) {
  let seed = 12345;
  const next = () => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648; };
  for (let i = 0; ; i++) {
    const k = i % perSession;
    yield { reset: k === 0, x: Math.floor(next() * (w - 1)), y: Math.floor(next() * (h - 1)), positive: k % 3 !== 2 };
  }
}

function numberParam(params, name, fallback) {
  const v = Number.parseFloat(params.get(name) || '');
  return Number.isFinite(v) && v >= 0 ? v : fallback;
}

/** Run the benchmark on an already-open session; `firstMask` is called once the first mask exists. */
export async function runBench(ctx, params, firstMask, log) {
  const { contract, manifest, session, backend } = ctx;
  const runs = Math.max(1, numberParam(params, 'runs', 20) | 0);
  const warmup = numberParam(params, 'warmup', 3) | 0;
  const sustainS = numberParam(params, 'sustain', 10);
  const rate = numberParam(params, 'rate', 5) || 5;
  const perSession = Math.min(contract.page.max_bench_clicks, 10);
  const [H, W] = manifest.size;
  const rgb = syntheticImage(H, W);

  // Cold start: everything since navigation start, up to the first mask in the page.
  await session.setImage(rgb, H, W);
  const firstEncoder = session.timings.encoder_ms;
  const first = await session.click(Math.floor(W / 2), Math.floor(H / 2), true);
  firstMask(first);
  const cold = { page_to_first_mask_ms: performance.now(), boot_ms: ctx.bootMs, open_ms: session.timings.open_ms,
    first_encoder_ms: firstEncoder, first_decoder_ms: first.timings.decoder_ms };
  log(`cold start ${cold.page_to_first_mask_ms.toFixed(0)} ms (first encoder ${firstEncoder.toFixed(0)} ms)`);

  const enc = [];
  for (let i = 0; i < warmup + runs; i++) {
    await session.setImage(rgb, H, W);
    if (i >= warmup) enc.push(session.timings.encoder_ms);
  }
  log(`encoder p50 ${percentile(enc, 50).toFixed(1)} ms`);

  const stream = clickStream(H, W, perSession);
  const click = async () => {
    const c = stream.next().value;
    if (c.reset) session.reset();
    return session.click(c.x, c.y, c.positive);
  };
  const dec = []; const post = [];
  for (let i = 0; i < warmup + runs; i++) {
    const step = await click();
    if (i >= warmup) { dec.push(step.timings.decoder_ms); post.push(step.timings.post_ms); }
  }
  log(`decoder p50 ${percentile(dec, 50).toFixed(2)} ms`);

  let sustained = null;
  if (sustainS > 0) {
    const period = 1000 / rate; const n = Math.max(1, Math.round(sustainS * rate));
    const walls = []; let missed = 0; let worstLate = 0;
    const start = performance.now();
    for (let i = 0; i < n; i++) {
      const due = start + i * period;
      await sleep(due - performance.now());
      const step = await click();
      const end = performance.now();
      walls.push(step.timings.decoder_ms);
      const late = end - (due + period);
      if (late > 0) { missed++; worstLate = Math.max(worstLate, late); }
    }
    await sleep(start + n * period - performance.now());
    const wall = (performance.now() - start) / 1000;
    sustained = { target_rate: rate, seconds: wall, clicks: n, achieved_rate: n / wall, missed_deadlines: missed,
      max_lateness_ms: worstLate, latency: latency(walls) };
    log(`sustained ${n} clicks at ${rate}/s: ${missed} missed`);
  }
  return {
    mode: 'bench', artifact: manifest.name, precision: manifest.precision, size: manifest.size,
    backend: backend.ep, threads: backend.threads, power: backend.power, cross_origin_isolated: self.crossOriginIsolated,
    hardware_concurrency: navigator.hardwareConcurrency, user_agent: navigator.userAgent,
    webgpu_api: !!navigator.gpu, webgpu_adapter: backend.webgpuAdapter,
    notes: backend.notes, settings: { runs, warmup, sustain_seconds: sustainS, click_rate: rate, clicks_per_session: perSession },
    cold, encoder_latency: latency(enc), decoder_latency: latency(dec), postprocess_latency: latency(post), sustained,
  };
}
