// Loading: contract.json, the artifact's manifest (refused when its contract hash differs), onnxruntime-web
// with the requested execution provider and thread count, and the two graphs.

import { EdgeSession, InputError } from './session.js';

/** A refusal or setup failure to show in the page (state "refused" or "error"). */
export class PageError extends Error {
  constructor(message, state = 'error') { super(message); this.state = state; }
}

/** GET a URL as JSON; a 404 becomes a PageError naming what is missing. */
export async function fetchJson(url, what) {
  const res = await fetch(url);
  if (!res.ok) throw new PageError(`${what} could not be loaded (${url}: HTTP ${res.status})`);
  try { return await res.json(); } catch (err) { throw new PageError(`${what} is not valid JSON (${url}: ${err.message})`); }
}

/** GET a URL as bytes. */
export async function fetchBytes(url, what) {
  const res = await fetch(url);
  if (!res.ok) throw new PageError(`${what} could not be loaded (${url}: HTTP ${res.status})`);
  return new Uint8Array(await res.arrayBuffer());
}

/** The refusal message for an artifact built against another I/O contract (null when the hashes agree). */
export function contractRefusal(contract, manifest) {
  const theirs = manifest && manifest.contract ? String(manifest.contract.hash) : '<none>';
  if (theirs === contract.hash) return null;
  return `Refused: this artifact was built for I/O contract ${theirs.slice(0, 12)}…, this page speaks ` +
    `${contract.hash.slice(0, 12)}… (version ${contract.version}). Re-export it with this edgeclick ` +
    '(edgeclick export --target onnx).';
}

/** A power profile's thread rule (runtimes/power.py ThreadRule) for `cores`: clamp(floor(cores × per_core), min, max). */
export function ruleThreads(rule, cores) {
  const n = Math.max(rule.minimum, Math.floor(cores * rule.per_core));
  return rule.maximum == null ? n : Math.min(n, rule.maximum);
}

/**
 * Requested execution provider, power profile and thread count from the page URL
 * (?ep=wasm|webgpu&power=NAME&threads=N); the profile comes from contract.json's page.power (the server's
 * --power by default), and ?threads overrides its thread count.
 */
export function requestedBackend(params, contract) {
  const ep = params.get('ep') === 'webgpu' ? 'webgpu' : 'wasm';
  const cores = navigator.hardwareConcurrency || 1;
  const power = contract.page.power;
  const notes = [];
  let name = params.get('power') || power.default;
  if (!power.profiles[name]) {
    notes.push(`unknown power profile '${name}' (choose one of ${Object.keys(power.profiles).join(', ')}): using ${power.default}`);
    name = power.default;
  }
  const profile = power.profiles[name];
  const asked = Number.parseInt(params.get('threads') || '', 10);
  const threads = Number.isInteger(asked) && asked > 0 ? asked : ruleThreads(profile.wasm_threads, cores);
  return { ep, threads, power: name, sessionConfig: profile.ort_config, notes };
}

/**
 * Import onnxruntime-web (served from the pinned npm package under page.ort_url) configured for `ep`.
 * WebGPU falls back to WASM, with a note, where the browser offers no adapter.
 */
export async function loadOrt(contract, { ep, threads, power, sessionConfig, notes: asked = [] }) {
  const notes = [...asked];
  let useEp = ep;
  let webgpuAdapter = null; // null: not asked for
  if (ep === 'webgpu') {
    const adapter = navigator.gpu ? await navigator.gpu.requestAdapter().catch(() => null) : null;
    webgpuAdapter = !!adapter;
    if (!adapter) { notes.push('WebGPU was asked for but this browser offers no WebGPU adapter: running WASM'); useEp = 'wasm'; }
  }
  const base = contract.page.ort_url;
  const ort = await import(useEp === 'webgpu' ? `${base}ort.webgpu.min.mjs` : `${base}ort.wasm.min.mjs`);
  ort.env.wasm.wasmPaths = base;
  // Threads need SharedArrayBuffer, which needs cross-origin isolation (the server's COOP/COEP headers)
  // and a secure context (https, or localhost).
  const effective = self.crossOriginIsolated ? threads : 1;
  if (threads > 1 && !self.crossOriginIsolated) notes.push(`${threads} threads asked for, but the page is not cross-origin isolated (plain http to a non-localhost address): 1 thread`);
  ort.env.wasm.numThreads = effective;
  return { ort, ep: useEp, threads: effective, notes, webgpuAdapter, power, sessionConfig: sessionConfig || {} };
}

/** Everything up to a ready session: contract, manifest (contract hash checked), onnxruntime-web, graphs. */
export async function boot(params) {
  const t0 = performance.now();
  const contract = await fetchJson('/contract.json', 'contract.json');
  const manifest = await fetchJson(`${contract.page.artifact_url}manifest.json`, "the artifact's manifest.json");
  const refusal = contractRefusal(contract, manifest);
  if (refusal) throw new PageError(refusal, 'refused');
  if (manifest.format !== 'onnx') throw new PageError(`Refused: a ${manifest.format} artifact; the browser runs ONNX artifacts`, 'refused');
  const backend = await loadOrt(contract, requestedBackend(params, contract));
  let session;
  try {
    session = await EdgeSession.open(backend.ort, contract, manifest, contract.page.artifact_url, [backend.ep],
      backend.sessionConfig);
  } catch (err) {
    if (err instanceof InputError) throw new PageError(err.message);
    throw new PageError(`the artifact's graphs could not be opened with onnxruntime-web (${backend.ep}): ${err.message || err}`);
  }
  return { contract, manifest, backend, session, bootMs: performance.now() - t0 };
}
