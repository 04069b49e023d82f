// The contract's preprocessing in the browser, written to give what edgeclick/preprocess.py's Letterbox
// gives: fit the image into the model input keeping its aspect ratio, pad bottom/right, map clicks between
// pixel centres, and undo it for the logits. Resizing follows torch's F.interpolate(bilinear,
// align_corners=False), with its antialiased (triangle filter, widened by the scale) kernel when shrinking,
// in float32 arithmetic (Math.fround) so rounded uint8 pixels agree with Python's.

const f32 = Math.fround;

/** Round half to even (Python's round() and torch's Tensor.round()). */
export function roundHalfEven(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Antialiased bilinear weights of torch's separable resampler, for one axis (in -> out samples). */
function aaAxis(inSize, outSize) {
  const scale = f32(inSize / outSize);
  const support = scale >= 1 ? f32(scale) : 1; // interp_size 2 -> half-width 1, widened by the scale
  const invscale = scale >= 1 ? f32(1 / scale) : 1;
  const starts = new Int32Array(outSize);
  const sizes = new Int32Array(outSize);
  const span = Math.ceil(support) * 2 + 1;
  const weights = new Float32Array(outSize * span);
  for (let i = 0; i < outSize; i++) {
    const center = f32(scale * (i + 0.5));
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xsize = Math.min(Math.max(Math.min(Math.trunc(center + support + 0.5), inSize) - xmin, 0), span);
    let total = 0;
    for (let j = 0; j < xsize; j++) {
      const d = Math.abs(f32((j + xmin - center + 0.5) * invscale));
      const w = d < 1 ? f32(1 - d) : 0;
      weights[i * span + j] = w;
      total = f32(total + w);
    }
    if (total !== 0) for (let j = 0; j < xsize; j++) weights[i * span + j] = f32(weights[i * span + j] / total);
    starts[i] = xmin;
    sizes[i] = xsize;
  }
  return { starts, sizes, weights, span };
}

/** One antialiased pass along an axis of a planar float32 array (channels × rows × cols). */
function aaPass(src, channels, rows, cols, outRows, outCols) {
  const out = new Float32Array(channels * outRows * outCols);
  if (outCols !== cols) { // horizontal: within rows
    const ax = aaAxis(cols, outCols);
    for (let c = 0; c < channels; c++) {
      for (let y = 0; y < rows; y++) {
        const row = (c * rows + y) * cols;
        const orow = (c * rows + y) * outCols;
        for (let x = 0; x < outCols; x++) {
          const s = ax.starts[x]; const n = ax.sizes[x]; const wb = x * ax.span;
          let acc = 0;
          for (let j = 0; j < n; j++) acc = f32(acc + f32(src[row + s + j] * ax.weights[wb + j]));
          out[orow + x] = acc;
        }
      }
    }
  } else { // vertical: across rows
    const ax = aaAxis(rows, outRows);
    for (let c = 0; c < channels; c++) {
      for (let y = 0; y < outRows; y++) {
        const s = ax.starts[y]; const n = ax.sizes[y]; const wb = y * ax.span;
        const orow = (c * outRows + y) * cols;
        for (let x = 0; x < cols; x++) {
          let acc = 0;
          for (let j = 0; j < n; j++) acc = f32(acc + f32(src[(c * rows + s + j) * cols + x] * ax.weights[wb + j]));
          out[orow + x] = acc;
        }
      }
    }
  }
  return out;
}

/** Source index and weights of torch's plain bilinear (align_corners=False) for one axis. */
function linearAxis(inSize, outSize) {
  const i0 = new Int32Array(outSize); const i1 = new Int32Array(outSize);
  const l0 = new Float32Array(outSize); const l1 = new Float32Array(outSize);
  const scale = f32(inSize / outSize);
  for (let i = 0; i < outSize; i++) {
    if (inSize === outSize) { i0[i] = i; i1[i] = i; l0[i] = 1; l1[i] = 0; continue; }
    const real = Math.max(f32(f32(scale * f32(i + 0.5)) - 0.5), 0);
    const idx = Math.min(Math.floor(real), inSize - 1);
    const lam = Math.min(Math.max(f32(real - idx), 0), 1);
    i0[i] = idx; i1[i] = idx < inSize - 1 ? idx + 1 : idx; l1[i] = lam; l0[i] = f32(1 - lam);
  }
  return { i0, i1, l0, l1 };
}

/**
 * torch F.interpolate(bilinear, align_corners=False, antialias=shrink) of a planar float32 array.
 * shrink (either side gets smaller) selects the antialiased separable kernel, as preprocess._resize does.
 */
export function resizePlanar(src, channels, rows, cols, outRows, outCols) {
  if (rows === outRows && cols === outCols) return src;
  const shrink = outRows < rows || outCols < cols;
  if (shrink) {
    let data = src; let c = cols; let r = rows;
    if (outCols !== c) { data = aaPass(data, channels, r, c, r, outCols); c = outCols; }
    if (outRows !== r) { data = aaPass(data, channels, r, c, outRows, c); r = outRows; }
    return data;
  }
  const ay = linearAxis(rows, outRows); const ax = linearAxis(cols, outCols);
  const out = new Float32Array(channels * outRows * outCols);
  for (let ch = 0; ch < channels; ch++) {
    const base = ch * rows * cols;
    for (let y = 0; y < outRows; y++) {
      const r0 = base + ay.i0[y] * cols; const r1 = base + ay.i1[y] * cols;
      const h0 = ay.l0[y]; const h1 = ay.l1[y];
      const orow = (ch * outRows + y) * outCols;
      for (let x = 0; x < outCols; x++) {
        const a = ax.i0[x]; const b = ax.i1[x]; const w0 = ax.l0[x]; const w1 = ax.l1[x];
        const top = f32(f32(src[r0 + a] * w0) + f32(src[r0 + b] * w1));
        const bot = f32(f32(src[r1 + a] * w0) + f32(src[r1 + b] * w1));
        out[orow + x] = f32(f32(top * h0) + f32(bot * h1));
      }
    }
  }
  return out;
}

/** How one image of `source` [h, w] sits in a model input of `target` [H, W] (preprocess.Letterbox). */
export class Letterbox {
  constructor(source, target, resized) {
    this.source = source; this.target = target; this.resized = resized;
  }

  /** Letterbox.fit with a fixed target; the target must be a multiple of padMultiple. */
  static fit(source, target, padMultiple) {
    const [h, w] = source; const [H, W] = target;
    if (H % padMultiple || W % padMultiple) throw new Error(`model input ${H}x${W} is not a multiple of ${padMultiple}`);
    const scale = Math.min(H / h, W / w);
    const resized = [Math.min(H, Math.max(1, roundHalfEven(h * scale))), Math.min(W, Math.max(1, roundHalfEven(w * scale)))];
    return new Letterbox([h, w], [H, W], resized);
  }

  get scaleXY() { return [this.resized[1] / this.source[1], this.resized[0] / this.source[0]]; }

  /** h×w×3 interleaved RGB uint8 → H×W×3 uint8 (resized, padded with padValue). */
  image(rgb, padValue) {
    const [h, w] = this.source; const [H, W] = this.target; const [rh, rw] = this.resized;
    const planar = new Float32Array(3 * h * w);
    for (let i = 0, n = h * w; i < n; i++) {
      planar[i] = rgb[3 * i]; planar[n + i] = rgb[3 * i + 1]; planar[2 * n + i] = rgb[3 * i + 2];
    }
    const res = resizePlanar(planar, 3, h, w, rh, rw);
    const out = new Uint8Array(H * W * 3).fill(padValue);
    const n = rh * rw;
    for (let y = 0; y < rh; y++) {
      for (let x = 0; x < rw; x++) {
        const i = y * rw + x; const o = 3 * (y * W + x);
        for (let c = 0; c < 3; c++) out[o + c] = Math.min(255, Math.max(0, roundHalfEven(res[c * n + i])));
      }
    }
    return out;
  }

  /** (x, y) in source pixels → model-input pixels, between pixel centres (float32, as Python casts). */
  point(x, y) {
    const [sx, sy] = this.scaleXY;
    return [f32((x + 0.5) * sx - 0.5), f32((y + 0.5) * sy - 0.5)];
  }

  /** H×W model-space map → h×w at the source size: crop the padding, resize back. */
  unmap(modelMap) {
    const [H, W] = this.target; const [rh, rw] = this.resized; const [h, w] = this.source;
    let crop = modelMap;
    if (rh !== H || rw !== W) {
      crop = new Float32Array(rh * rw);
      for (let y = 0; y < rh; y++) crop.set(modelMap.subarray(y * W, y * W + rw), y * rw);
    }
    return resizePlanar(crop, 1, rh, rw, h, w);
  }
}
