// Decoding an image the user gives (file, drop, camera) or a parity bundle holds into RGB bytes.

import { InputError } from './session.js';

// Pixels exactly as stored: no colour-profile conversion, no alpha premultiplication (parity with Pillow).
const RAW = { colorSpaceConversion: 'none', premultiplyAlpha: 'none', imageOrientation: 'from-image' };

/**
 * Blob → { canvas (drawn at the image's size), rgb (h×w×3 uint8), h, w, note }.
 * Images above maxPixels are downscaled first (with a note) so a huge photo does not freeze the tab.
 */
export async function decodeImage(blob, maxPixels, name = 'the file') {
  if (blob.type && !blob.type.startsWith('image/')) {
    throw new InputError(`${name} is not an image (${blob.type}); open a PNG, JPEG or WebP photo`);
  }
  let bitmap;
  try {
    bitmap = await createImageBitmap(blob, RAW);
  } catch (err) {
    throw new InputError(`${name} could not be decoded as an image (${err.message || err}); open a PNG, JPEG or WebP photo`);
  }
  let note = '';
  const pixels = bitmap.width * bitmap.height;
  if (pixels > maxPixels) {
    const s = Math.sqrt(maxPixels / pixels);
    const w = Math.max(2, Math.floor(bitmap.width * s)); const h = Math.max(2, Math.floor(bitmap.height * s));
    note = `${name} is ${bitmap.width}×${bitmap.height} (${(pixels / 1e6).toFixed(1)} MP); downscaled to ${w}×${h} ` +
      `for the browser (limit ${(maxPixels / 1e6).toFixed(0)} MP)`;
    const small = await createImageBitmap(bitmap, { resizeWidth: w, resizeHeight: h, resizeQuality: 'high' });
    bitmap.close();
    bitmap = small;
  }
  const { width: w, height: h } = bitmap;
  const canvas = document.createElement('canvas');
  canvas.width = w; canvas.height = h;
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0);
  bitmap.close();
  const rgba = ctx.getImageData(0, 0, w, h).data;
  const rgb = new Uint8Array(w * h * 3);
  for (let i = 0, j = 0; i < rgba.length; i += 4, j += 3) { rgb[j] = rgba[i]; rgb[j + 1] = rgba[i + 1]; rgb[j + 2] = rgba[i + 2]; }
  return { canvas, rgb, h, w, note };
}

/** A deterministic synthetic h×w RGB image (bench mode without a bundle): gradients and a bright disc. */
export function syntheticImage(h, w) {
  const rgb = new Uint8Array(h * w * 3);
  const cy = h / 2; const cx = w / 2; const r2 = (Math.min(h, w) / 4) ** 2;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const o = 3 * (y * w + x); const inside = (y - cy) ** 2 + (x - cx) ** 2 < r2;
      rgb[o] = inside ? 230 : (x * 255 / w) | 0; rgb[o + 1] = inside ? 200 : (y * 255 / h) | 0; rgb[o + 2] = inside ? 40 : 90;
    }
  }
  return rgb;
}
