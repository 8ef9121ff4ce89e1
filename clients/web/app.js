'use strict';
/* ---------------------------------------------------------------------------------------------
 * State
 * ------------------------------------------------------------------------------------------- */
const $ = (sel) => document.querySelector(sel);
const app = {
  image: null,          // {h, w, data: Float32Array} values in [0,1] (the drawn / uploaded / example image)
  source: '',           // 'canvas' | 'upload' | 'example'
  kernels: [],          // GET /kernels list
  kernelsLoaded: null,  // promise of the current kernel list load
  lastRun: null,        // {image, kernel: {spec, values, shape}, padding, stride, bias, output: {shape, data}}
  train: null,          // {losses: [[step, loss]], steps, status, job, controller, ...}
  pending: null,        // promise of the action the last button click started (the self-test awaits it)
  perf: { slice: 0, render: 0, stopAt: 0 }, // longest stream-parsing slice and render (ms), for ?stalltest
  events: new EventTarget(),
};
const STORAGE_KEY = 'convd.token';
const SEED_X = [[1,1,1,1,1,1,1,1],[1,1,0,0,0,0,1,1],[1,1,0,0,0,0,1,1],[1,1,0,0,0,0,1,1],[1,1,1,1,1,1,1,1],[1,1,1,1,1,1,1,1]];

function notify() { app.events.dispatchEvent(new Event('update')); }

/* ---------------------------------------------------------------------------------------------
 * HTTP: token, JSON requests, problem+json errors
 * ------------------------------------------------------------------------------------------- */
class ProblemError extends Error {
  constructor(problem) { super(problem.detail || problem.title || 'request failed'); this.problem = problem; }
}

function authHeaders(extra) {
  const h = Object.assign({}, extra || {});
  const token = (localStorage.getItem(STORAGE_KEY) || '').trim();
  if (token) h['Authorization'] = 'Bearer ' + token;
  return h;
}

async function problemFrom(resp) {
  const text = await resp.text().catch(() => '');
  try {
    const p = JSON.parse(text);
    if (p && typeof p === 'object') { if (!p.status) p.status = resp.status; return p; }
  } catch (e) { /* not JSON */ }
  return { status: resp.status, title: resp.statusText || 'HTTP error', detail: text.slice(0, 300) || 'HTTP ' + resp.status };
}

async function request(method, path, body, signal) {
  let resp;
  try {
    resp = await fetch(path, {
      method,
      headers: authHeaders(body !== undefined ? { 'Content-Type': 'application/json' } : {}),
      body: body !== undefined ? JSON.stringify(body) : undefined,
      signal,
    });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ProblemError({ title: 'Network error', detail: 'could not reach the daemon: ' + e.message });
  }
  if (!resp.ok) throw new ProblemError(await problemFrom(resp));
  return resp;
}
async function getJSON(path) { return (await request('GET', path)).json(); }
async function postJSON(path, body) { return (await request('POST', path, body)).json(); }

// Which UI control each request field belongs to, to mark it when a problem points at it.
const POINTER_FIELDS = [
  ['/kernel_size', '#kernel-select'], ['/kernel', '#kernel-select'], ['/padding', '#padding'], ['/stride', '#stride'],
  ['/lr', '#lr'], ['/steps', '#steps'], ['/init', '#init-weight'], ['/seed', '#seed'], ['/optimizer', '#optimizer'],
  ['/loss', '#loss'],
];
function fieldFor(pointer, which) {
  if (which === 'corr' && pointer === '/bias') return '#corr-bias';
  if (pointer.startsWith('/kernel') && !pointer.startsWith('/kernel_size') && $('#kernel-select').value === 'custom')
    return '#custom-kernel';
  for (const [prefix, sel] of POINTER_FIELDS) if (pointer === prefix || pointer.startsWith(prefix + '/')) return sel;
  return null;
}
function clearInvalid(scope) { document.querySelectorAll(scope + ' [aria-invalid=true]').forEach((el) => el.removeAttribute('aria-invalid')); }

/** Shows a problem (RFC 9457 object, or any Error) in one of the error boxes. */
function showProblem(box, err, which) {
  const el = $(box);
  el.replaceChildren();
  const p = err instanceof ProblemError ? err.problem : (err && err.problem) ? err.problem
          : { title: 'Error', detail: String(err && err.message || err) };
  const head = document.createElement('div');
  head.className = 'title';
  head.textContent = [p.status, p.title].filter(Boolean).join(' ') || 'Error';
  if (p.code) { const c = document.createElement('code'); c.textContent = p.code; head.append(' ', c); }
  el.append(head);
  if (p.detail) { const d = document.createElement('p'); d.className = 'detail'; d.textContent = p.detail; el.append(d); }
  if (p.line !== undefined) {
    const d = document.createElement('p'); d.textContent = `at line ${p.line}, column ${p.column}`; el.append(d);
  }
  if (Array.isArray(p.errors) && p.errors.length) {
    const ul = document.createElement('ul');
    for (const e of p.errors) {
      const li = document.createElement('li');
      const ptr = document.createElement('span'); ptr.className = 'pointer'; ptr.textContent = e.pointer || '(body)';
      li.append(ptr, ' ' + (e.detail || ''));
      ul.append(li);
      const f = e.pointer !== undefined && fieldFor(e.pointer, which);
      if (f && $(f)) $(f).setAttribute('aria-invalid', 'true');
    }
    el.append(ul);
  }
  if (p.status === 401) {
    const d = document.createElement('p'); d.textContent = 'The daemon wants a bearer token: enter it at the top right and press Save.';
    el.append(d);
  }
  el.hidden = false;
}
function hideProblem(box) { const el = $(box); el.hidden = true; el.replaceChildren(); }

/* ---------------------------------------------------------------------------------------------
 * Tensors: base64 float32, flat, nested
 * ------------------------------------------------------------------------------------------- */
function f32ToB64(arr) {
  const buf = new ArrayBuffer(arr.length * 4), dv = new DataView(buf);
  for (let i = 0; i < arr.length; i++) dv.setFloat32(i * 4, arr[i], true); // little-endian, as API.md says
  const bytes = new Uint8Array(buf);
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(s);
}
function b64ToF32(b64) {
  const s = atob(b64), dv = new DataView(new ArrayBuffer(s.length));
  for (let i = 0; i < s.length; i++) dv.setUint8(i, s.charCodeAt(i));
  const out = new Float32Array(s.length >> 2);
  for (let i = 0; i < out.length; i++) out[i] = dv.getFloat32(i * 4, true);
  return out;
}
function encodeTensor(shape, data, form) {
  if (form === 'flat') return { shape, data: Array.from(data) };
  return { shape, dtype: 'float32', b64: f32ToB64(data) };
}
function nestedShape(v) {
  const shape = [];
  while (Array.isArray(v)) { shape.push(v.length); v = v[0]; }
  return shape;
}
/** Any tensor form of API.md -> {shape, data: Float32Array}; throws on malformed input. */
function decodeTensor(t) {
  if (Array.isArray(t)) {
    const shape = nestedShape(t), flat = t.flat(Infinity);
    if (flat.some((x) => typeof x !== 'number')) throw new Error('the tensor has non-numbers');
    if (flat.length !== shape.reduce((a, b) => a * b, 1)) throw new Error('the nested arrays are not rectangular');
    return { shape, data: Float32Array.from(flat) };
  }
  if (t && Array.isArray(t.shape)) {
    if (typeof t.b64 === 'string') return { shape: t.shape, data: b64ToF32(t.b64) };
    if (Array.isArray(t.data)) return { shape: t.shape, data: Float32Array.from(t.data) };
  }
  throw new Error('not a tensor');
}
function toNested(shape, data) {
  if (shape.length !== 2) return Array.from(data);
  const rows = [];
  for (let i = 0; i < shape[0]; i++) rows.push(Array.from(data.subarray(i * shape[1], (i + 1) * shape[1])));
  return rows;
}
function fmt(x) {
  if (x === null || x === undefined) return '–';
  if (x === 0) return '0';
  const a = Math.abs(x);
  if (a >= 1e5 || a < 1e-3) return x.toExponential(2);
  return String(Number(x.toPrecision(4)));
}
/** At most 3 significant digits, for table cells. */
function fmtShort(x) {
  if (x === 0) return '0';
  const a = Math.abs(x);
  if (a >= 1e4 || a < 1e-2) return x.toExponential(1).replace('e-', 'e−').replace('e+', 'e');
  return String(Number(x.toPrecision(3)));
}
function minMax(data) {
  let lo = Infinity, hi = -Infinity;
  for (const v of data) { if (v < lo) lo = v; if (v > hi) hi = v; }
  return [lo, hi];
}

/* ---------------------------------------------------------------------------------------------
 * Colour maps and image drawing
 * ------------------------------------------------------------------------------------------- */
// Diverging blue - white - red (after ColorBrewer RdBu), t in [-1, 1].
const DIV_STOPS = [[-1, [33, 102, 172]], [-0.5, [103, 169, 207]], [0, [247, 247, 247]], [0.5, [239, 138, 98]], [1, [178, 24, 43]]];
function diverging(t) {
  t = Math.max(-1, Math.min(1, t));
  for (let i = 1; i < DIV_STOPS.length; i++) {
    const [t1, c1] = DIV_STOPS[i];
    if (t <= t1) {
      const [t0, c0] = DIV_STOPS[i - 1], u = (t - t0) / (t1 - t0);
      return [0, 1, 2].map((k) => Math.round(c0[k] + u * (c1[k] - c0[k])));
    }
  }
  return DIV_STOPS[DIV_STOPS.length - 1][1];
}
/** Colour of value v in a map: diverging around 0 when the range has negatives, else grayscale lo..hi. */
function colourMap(lo, hi) {
  if (lo < 0) {
    const m = Math.max(-lo, hi) || 1;
    return { kind: 'diverging', at: (v) => diverging(v / m), lo: -m, hi: m };
  }
  const span = hi - lo;
  return { kind: 'gray', lo, hi, at: (v) => { const g = Math.round(span > 0 ? (v - lo) / span * 255 : (hi > 0 ? 255 : 0)); return [g, g, g]; } };
}
/** Fits a (h, w) canvas into a box of at most `box` CSS pixels, scaled by a whole factor when it can be. */
function fitCanvas(canvas, h, w, box) {
  let s = Math.min(box / w, box / h);
  if (s >= 1) s = Math.floor(s);
  canvas.style.width = Math.max(1, Math.round(w * s)) + 'px';
  canvas.style.height = Math.max(1, Math.round(h * s)) + 'px';
}
function paintCanvas(canvas, h, w, data, cmap) {
  if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
  const ctx = canvas.getContext('2d'), img = ctx.createImageData(w, h);
  for (let i = 0; i < h * w; i++) {
    const c = cmap.at(data[i]);
    img.data[4 * i] = c[0]; img.data[4 * i + 1] = c[1]; img.data[4 * i + 2] = c[2]; img.data[4 * i + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
}
/** A table of a 2-D tensor's values, cells coloured with the same map as the images. */
function matrixTable(shape, data, maxCells) {
  const wrap = document.createElement('div');
  if (shape.length !== 2) { wrap.textContent = JSON.stringify(Array.from(data)); return wrap; }
  const [h, w] = shape;
  if (h * w > (maxCells || 400)) { wrap.className = 'info'; wrap.textContent = `${h} × ${w} values (too many to list)`; return wrap; }
  const [lo, hi] = minMax(data), cmap = colourMap(Math.min(lo, 0), Math.max(hi, 0) || 1);
  const table = document.createElement('table');
  table.className = 'matrix';
  for (let i = 0; i < h; i++) {
    const tr = document.createElement('tr');
    for (let j = 0; j < w; j++) {
      const v = data[i * w + j], c = cmap.at(v), td = document.createElement('td');
      td.textContent = fmtShort(v);
      td.title = String(v);
      td.style.background = `rgb(${c[0]},${c[1]},${c[2]})`;
      td.style.color = (0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]) < 140 ? '#fff' : '#1d2330';
      tr.append(td);
    }
    table.append(tr);
  }
  wrap.append(table);
  return wrap;
}

/* ---------------------------------------------------------------------------------------------
 * 1. The input image: draw, clear, upload, textbook example
 * ------------------------------------------------------------------------------------------- */
function setImage(h, w, data, source, c) {
  app.image = { h, w, c: c || 1, data };
  clearOutput(); // a result of another image is stale
  if (source !== app.source) suggestTraining(source);
  app.source = source;
  renderImage();
  notify();
}
/* Clears the output of an earlier corr2d (and what depends on it) when the input changes. */
function clearOutput() {
  if (!app.lastRun) return;
  app.lastRun = null;
  $('#output-canvas').hidden = true; $('#legend').hidden = true;
  $('#output-info').textContent = 'Run corr2d to see the output.';
  $('#output-values').replaceChildren();
  for (const b of ['#btn-dl-out-png', '#btn-dl-out-npy', '#btn-curl-corr']) $(b).disabled = true;
}
/* Paints a (3,H,W) tensor as colour, mapping lo..hi to 0..255. */
function paintRGB(canvas, h, w, data, lo, hi) {
  if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
  const ctx = canvas.getContext('2d'), img = ctx.createImageData(w, h), n = h * w, k = hi > lo ? 255 / (hi - lo) : 0;
  for (let i = 0; i < n; i++) {
    for (let ch = 0; ch < 3; ch++) img.data[4 * i + ch] = Math.round((data[ch * n + i] - lo) * k);
    img.data[4 * i + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
}
/* The CSS size that shows an h x w image at the input's scale, so input and output line up. */
function inputScaleBox(h, w) {
  const img = app.image, s = Math.min(256 / img.w, 256 / img.h);
  return Math.max(h, w) * (s >= 1 ? Math.floor(s) : s);
}
function renderImage() {
  const { h, w, data } = app.image, c = $('#input-canvas');
  if (app.image.c === 3) paintRGB(c, h, w, data, 0, 1);
  else paintCanvas(c, h, w, data, { at: (v) => { const g = Math.round(Math.max(0, Math.min(1, v)) * 255); return [g, g, g]; } });
  fitCanvas(c, h, w, 256);
  const [lo, hi] = minMax(data);
  const what = { canvas: 'drawn', 'canvas-edit': 'edited', upload: 'uploaded', example: "the textbook's example" }[app.source] || '';
  $('#input-info').innerHTML = '';
  $('#input-info').append(`${what} ${app.image.c === 3 ? 'RGB ' : ''}image `, Object.assign(document.createElement('b'), { textContent: `${h} × ${w}` }),
                          `, values ${fmt(lo)} … ${fmt(hi)}`);
}
function blankImage(n) { return new Float32Array(n * n); }
function clearCanvas() {
  const n = parseInt($('#canvas-size').value, 10) || 64;
  hideProblem('#input-error');
  setImage(n, n, blankImage(n), 'canvas');
}
function loadSeedExample() {
  hideProblem('#input-error');
  $('#padding').value = '0'; $('#stride').value = '1'; $('#corr-bias').value = '0'; // the textbook's corr2d
  setImage(6, 8, Float32Array.from(SEED_X.flat()), 'example');
}
/** Paints a disc of the brush's value centred on image pixel (x, y). */
function paintAt(x, y) {
  const img = app.image, v = parseFloat($('#brush-value').value);
  const size = Math.max(1, parseInt($('#brush-size').value, 10) || 1), r = size / 2;
  for (let i = Math.floor(y - r); i <= Math.ceil(y + r); i++) {
    for (let j = Math.floor(x - r); j <= Math.ceil(x + r); j++) {
      if (i < 0 || j < 0 || i >= img.h || j >= img.w) continue;
      const dy = i + 0.5 - y, dx = j + 0.5 - x;
      if (dx * dx + dy * dy <= r * r || (size === 1 && i === Math.floor(y) && j === Math.floor(x)))
        for (let ch = 0; ch < img.c; ch++) img.data[ch * img.h * img.w + i * img.w + j] = v;
    }
  }
}
const drawState = { down: false, x: 0, y: 0 };
function eventToPixel(ev) {
  const rect = $('#input-canvas').getBoundingClientRect();
  return [(ev.clientX - rect.left) / rect.width * app.image.w, (ev.clientY - rect.top) / rect.height * app.image.h];
}
function onPointerDown(ev) {
  ev.preventDefault();
  try { ev.target.setPointerCapture(ev.pointerId); } catch (e) { /* synthetic pointers cannot be captured */ }
  const [x, y] = eventToPixel(ev);
  Object.assign(drawState, { down: true, x, y });
  if (app.source !== 'canvas') app.source = 'canvas-edit';
  paintAt(x, y);
  renderImage();
}
function onPointerMove(ev) {
  if (!drawState.down) return;
  const [x, y] = eventToPixel(ev), n = Math.ceil(Math.hypot(x - drawState.x, y - drawState.y) * 2) || 1;
  for (let k = 1; k <= n; k++) paintAt(drawState.x + (x - drawState.x) * k / n, drawState.y + (y - drawState.y) * k / n);
  Object.assign(drawState, { x, y });
  renderImage();
}
function onPointerUp() { if (drawState.down) { drawState.down = false; notify(); } }

/** Reads an image file, composites it on white, turns it to grayscale in [0,1] and downscales it to <= 128 px. */
async function loadImageFile(file) {
  hideProblem('#input-error');
  try {
    let bitmap;
    try { bitmap = await createImageBitmap(file); }
    catch (e) { throw new Error(`"${file.name || 'file'}" is not an image this browser can decode`); }
    const limit = parseInt($('#upload-max').value, 10) || 128, rgb = $('#upload-mode').value === 'rgb';
    const s = Math.min(1, limit / Math.max(bitmap.width, bitmap.height));
    const w = Math.max(1, Math.round(bitmap.width * s)), h = Math.max(1, Math.round(bitmap.height * s));
    const c = document.createElement('canvas');
    c.width = w; c.height = h;
    const ctx = c.getContext('2d');
    ctx.fillStyle = '#fff'; ctx.fillRect(0, 0, w, h);
    ctx.imageSmoothingEnabled = true; ctx.imageSmoothingQuality = 'high';
    ctx.drawImage(bitmap, 0, 0, w, h);
    const px = ctx.getImageData(0, 0, w, h).data, n = w * h;
    if (rgb) { // (3, H, W): channel planes
      const data = new Float32Array(3 * n);
      for (let i = 0; i < n; i++) for (let ch = 0; ch < 3; ch++) data[ch * n + i] = px[4 * i + ch] / 255;
      setImage(h, w, data, 'upload', 3);
      return { h, w, c: 3 };
    }
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++)
      data[i] = Math.round((0.299 * px[4 * i] + 0.587 * px[4 * i + 1] + 0.114 * px[4 * i + 2]) / 255 * 1000) / 1000;
    setImage(h, w, data, 'upload');
    return { h, w };
  } catch (e) {
    showProblem('#input-error', e);
    throw e;
  }
}

/** Training settings that work: the textbook's for its example, Adam on the mean for anything larger. */
function suggestTraining(source) {
  const set = (sel, v) => { $(sel).value = v; };
  if (source === 'example') {
    set('#lr', '0.012'); set('#steps', '20'); set('#optimizer', 'sgd'); set('#loss', 'sse');
  } else {
    set('#lr', '0.05'); set('#steps', '300'); set('#optimizer', 'adam'); set('#loss', 'mse');
  }
  $('#train-bias').checked = false;
}

/* ---------------------------------------------------------------------------------------------
 * 2. Kernels and corr2d
 * ------------------------------------------------------------------------------------------- */
async function loadKernels() {
  hideProblem('#global-error');
  const sel = $('#kernel-select'), keep = sel.value;
  try {
    const reply = await getJSON('/kernels');
    app.kernels = reply.kernels || [];
    sel.replaceChildren();
    for (const k of app.kernels) sel.append(new Option(k.name, k.name));
    sel.append(new Option('custom (JSON)…', 'custom'));
    sel.value = [...sel.options].some((o) => o.value === keep) && keep ? keep : 'edge';
    if (!sel.value) sel.selectedIndex = 0;
    await onKernelChange();
  } catch (e) {
    sel.replaceChildren(new Option('(GET /kernels failed)', ''), new Option('custom (JSON)…', 'custom'));
    showProblem('#global-error', e);
    throw e;
  } finally {
    notify();
  }
}
function reloadKernels() { app.kernelsLoaded = loadKernels(); app.kernelsLoaded.catch(() => {}); return app.kernelsLoaded; }

/** The kernel as the request sends it ("edge", {"name":"box","size":5}, [[..]] …). */
function kernelSpec() {
  const name = $('#kernel-select').value;
  if (name === 'custom') {
    const text = $('#custom-kernel').value;
    try { return JSON.parse(text); }
    catch (e) { throw new ProblemError({ title: 'Custom kernel is not JSON', detail: e.message, errors: [{ pointer: '/kernel', detail: 'not valid JSON' }] }); }
  }
  const k = app.kernels.find((x) => x.name === name);
  if (!k) throw new ProblemError({ title: 'No kernel', detail: 'choose a kernel (the list comes from GET /kernels)' });
  if (k.parameters) {
    const spec = { name, size: parseInt($('#kernel-size').value, 10) };
    if ('sigma' in k.parameters) spec.sigma = parseFloat($('#kernel-sigma').value);
    return spec;
  }
  return name;
}

/** Resolves the chosen kernel to its values: from GET /kernels, from the JSON typed, or by asking the daemon
 *  (corr2d of a unit impulse gives the kernel flipped). */
async function resolveKernel() {
  const spec = kernelSpec();
  const name = typeof spec === 'string' ? spec : null;
  const listed = name && app.kernels.find((k) => k.name === name && k.kernel);
  if (listed) { const t = decodeTensor(listed.kernel); return { spec, shape: t.shape, data: t.data }; }
  if (Array.isArray(spec) || (spec && Array.isArray(spec.shape))) {
    let t;
    try { t = decodeTensor(spec); }
    catch (e) { return { spec, shape: null, data: null, note: e.message }; } // the daemon will say what is wrong
    return { spec, shape: t.shape, data: t.data };
  }
  // a parameterised or custom named kernel: correlate a 61 x 61 impulse with it (kernels are at most 31 x 31)
  const n = 61, c = 30, x = new Float32Array(n * n);
  x[c * n + c] = 1;
  const reply = await postJSON('/corr2d', { input: { shape: [n, n], data: Array.from(x) }, kernel: spec, output_format: 'flat' });
  const [oh, ow] = reply.output.shape, kh = n + 1 - oh, kw = n + 1 - ow, data = new Float32Array(kh * kw);
  for (let a = 0; a < kh; a++) for (let b = 0; b < kw; b++) data[a * kw + b] = reply.output.data[(c - a) * ow + (c - b)];
  return { spec, shape: [kh, kw], data };
}

let kernelShown = 0;
async function onKernelChange() {
  const name = $('#kernel-select').value, k = app.kernels.find((x) => x.name === name);
  $('#custom-wrap').hidden = name !== 'custom';
  $('#kernel-params').hidden = !(k && k.parameters);
  if (k && k.parameters) {
    $('#sigma-wrap').hidden = !('sigma' in k.parameters);
    const ex = k.example ? nestedShape(k.example)[0] : 3;
    if (k.name !== app.paramKernel) { $('#kernel-size').value = ex; app.paramKernel = k.name; }
  }
  $('#kernel-desc').textContent = name === 'custom' ? 'Your own kernel, sent as typed.' : k ? k.description || '' : '';
  hideProblem('#corr-error');
  $('#run-status').textContent = '';
  $('#kernel-select').removeAttribute('aria-invalid');
  $('#custom-kernel').removeAttribute('aria-invalid');
  const ticket = ++kernelShown;
  try {
    const kr = await resolveKernel();
    if (ticket === kernelShown) showKernel(kr);
  } catch (e) {
    if (ticket !== kernelShown) return;
    if (e.problem && !e.problem.status) showKernel({ note: e.message }); // typing: not JSON (yet)
    else { showKernel({}); showProblem('#corr-error', e, 'corr'); }
  }
}
function showKernel(kr) {
  $('#kernel-values').replaceChildren(kr.data ? matrixTable(kr.shape, kr.data)
    : Object.assign(document.createElement('p'), { className: 'info', textContent: kr.note || '' }));
  $('#kernel-values-h').textContent = kr.shape ? `Kernel values (${kr.shape.join(' × ')})` : 'Kernel values';
}
let typingTimer = 0;
function onCustomKernelInput() {
  clearTimeout(typingTimer);
  typingTimer = setTimeout(onKernelChange, 400);
}

/** "3", "1,2", "same", "valid" -> what the API takes. */
function parsePair(text, allowWords) {
  const t = String(text).trim();
  if (allowWords && (t === 'same' || t === 'valid')) return t;
  if (/^-?\d+$/.test(t)) return parseInt(t, 10);
  const m = /^\[?\s*(-?\d+)\s*[, x]\s*(-?\d+)\s*\]?$/.exec(t);
  if (m) return [parseInt(m[1], 10), parseInt(m[2], 10)];
  return t; // sent as typed: the daemon answers with a pointer to it
}
function parseNumber(text) {
  const t = String(text).trim();
  return t !== '' && isFinite(Number(t)) ? Number(t) : t;
}

/** The "Run corr2d" button. */
async function runCorr2d() {
  hideProblem('#corr-error'); clearInvalid('#sec-corr');
  const btn = $('#btn-run'), status = $('#run-status');
  btn.disabled = true; status.textContent = 'running…'; status.className = 'status';
  try {
    const img = app.image, form = $('#tensor-form').value;
    const kernel = await resolveKernel();
    showKernel(kernel.data ? kernel : { note: kernel.note });
    const input = { h: img.h, w: img.w, c: img.c, data: Float32Array.from(img.data) };
    const shape = img.c === 3 ? [3, img.h, img.w] : [img.h, img.w];
    const body = { input: encodeTensor(shape, input.data, form), kernel: kernel.spec,
                   padding: parsePair($('#padding').value, true), stride: parsePair($('#stride').value, false) };
    const bias = parseNumber($('#corr-bias').value);
    if (bias !== 0) body.bias = bias;
    const t0 = performance.now();
    const reply = await postJSON('/corr2d', body);
    const ms = performance.now() - t0, out = decodeTensor(reply.output);
    app.lastRun = { input, kernel, padding: body.padding, stride: body.stride, bias, form, output: out, body };
    for (const b of ['#btn-dl-out-png', '#btn-dl-out-npy', '#btn-curl-corr']) $(b).disabled = false;
    renderOutput(out);
    status.textContent = `done in ${ms.toFixed(0)} ms`; status.className = 'status ok';
    return out;
  } catch (e) {
    status.textContent = 'failed';
    showProblem('#corr-error', e, 'corr');
    throw e;
  } finally {
    btn.disabled = false;
    notify();
  }
}

function renderOutput(out) {
  const [h, w] = out.shape.slice(-2), [lo, hi] = minMax(out.data), cmap = colourMap(lo, hi);
  const c = $('#output-canvas');
  if (out.shape.length === 3 && out.shape[0] === 3) paintRGB(c, h, w, out.data, lo, hi); // per-channel output of an RGB input
  else paintCanvas(c, h, w, out.data, cmap);
  fitCanvas(c, h, w, inputScaleBox(h, w));
  c.hidden = false;
  // legend
  const lg = $('#legend-canvas'), lctx = lg.getContext('2d');
  lg.height = 120;
  for (let y = 0; y < 120; y++) {
    const v = cmap.hi - (cmap.hi - cmap.lo) * y / 119, col = cmap.at(v);
    lctx.fillStyle = `rgb(${col[0]},${col[1]},${col[2]})`; lctx.fillRect(0, y, 1, 1);
  }
  $('#legend-max').textContent = fmt(cmap.hi); $('#legend-min').textContent = fmt(cmap.lo);
  $('#legend').hidden = false;
  const info = $('#output-info');
  info.replaceChildren('output ', Object.assign(document.createElement('b'), { id: 'output-shape', textContent: out.shape.join(' × ') }),
    ', min ', Object.assign(document.createElement('b'), { id: 'output-min', textContent: fmt(lo) }),
    ', max ', Object.assign(document.createElement('b'), { id: 'output-max', textContent: fmt(hi) }),
    cmap.kind === 'diverging' ? ' (blue < 0 < red)' : ' (grayscale, min to max)');
  $('#output-values').replaceChildren(out.data.length <= 144 ? matrixTable(out.shape, out.data) : document.createElement('div'));
}

/* ---------------------------------------------------------------------------------------------
 * 3. Training: POST /train, NDJSON read with fetch + ReadableStream, live loss curve, Stop
 * ------------------------------------------------------------------------------------------- */
function trainStatus(text, cls) { const s = $('#train-status'); s.textContent = text; s.className = 'status' + (cls ? ' ' + cls : ''); }

/** Splits a byte stream into NDJSON objects (scanning each chunk once, not re-slicing the rest per line). */
async function* ndjson(body) {
  const reader = body.getReader(), dec = new TextDecoder();
  let buf = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let start = 0, nl;
      while ((nl = buf.indexOf('\n', start)) >= 0) {
        const line = buf.slice(start, nl).trim();
        start = nl + 1;
        if (line) yield JSON.parse(line);
      }
      buf = buf.slice(start);
    }
    if (buf.trim()) yield JSON.parse(buf);
  } finally {
    reader.releaseLock();
  }
}

/* Rendering during a training never runs per event: events only change app.train, and one
 * animation frame at a time draws what changed (status, the last lines of the log, the chart).
 * At 200,000 steps a second, per-event DOM work (a forced layout for scrollTop was 3-5 ms) froze
 * the tab for minutes. */
const LOG_LINES = 200;
function logLine(text) {
  const tr = app.train;
  if (!tr) return;
  tr.log.push(text);
  if (tr.log.length > 2 * LOG_LINES) tr.log.splice(0, tr.log.length - LOG_LINES);
  tr.logDirty = true;
  scheduleRender();
}
let renderPending = false;
function scheduleRender() {
  if (renderPending) return;
  renderPending = true;
  requestAnimationFrame(renderTrain);
}
function renderTrain() {
  renderPending = false;
  const tr = app.train;
  if (!tr) return;
  const t0 = performance.now();
  if (tr.statusText !== tr.shownStatus) { trainStatus(tr.statusText, tr.statusClass); tr.shownStatus = tr.statusText; }
  const log = $('#stream-log');
  if (tr.logDirty && log.closest('details').open) { // a closed log costs nothing: it is filled when opened
    log.textContent = tr.log.slice(-LOG_LINES).join('\n');
    log.scrollTop = log.scrollHeight;
    tr.logDirty = false;
  }
  drawLoss();
  notify();
  app.perf.render = Math.max(app.perf.render, performance.now() - t0);
}
/* Gives the event loop a turn (input, Stop, rendering) when the stream has been parsed for a while. */
const yieldChannel = new MessageChannel(), yieldQueue = [];
yieldChannel.port1.onmessage = () => { const r = yieldQueue.shift(); if (r) r(); };
function yieldToLoop() { return new Promise((r) => { yieldQueue.push(r); yieldChannel.port2.postMessage(0); }); }

/** The "Train" button. */
async function startTrain() {
  hideProblem('#train-error'); clearInvalid('#sec-train');
  const run = app.lastRun;
  if (!run) {
    showProblem('#train-error', { problem: { title: 'Nothing to learn yet', detail: 'Run corr2d first: its input and output are the training pair.' } });
    return null;
  }
  if (!run.kernel.shape) {
    showProblem('#train-error', { problem: { title: 'Unknown kernel shape', detail: 'the kernel of the last run has no known shape' } });
    return null;
  }
  const form = $('#tensor-form').value;
  const body = {
    input: encodeTensor(run.input.c === 3 ? [3, run.input.h, run.input.w] : [run.input.h, run.input.w], run.input.data, form),
    target: encodeTensor(run.output.shape, run.output.data, form),
    kernel_size: run.kernel.shape.slice(-2),
    bias: $('#train-bias').checked,
    padding: run.padding, stride: run.stride,
    lr: parseNumber($('#lr').value), steps: parseNumber($('#steps').value),
    optimizer: $('#optimizer').value, loss: $('#loss').value,
    output_format: 'nested',
  };
  const init = $('#init-weight').value.trim();
  if (init) {
    try { body.init = { weight: JSON.parse(init) }; }
    catch (e) { showProblem('#train-error', { problem: { title: 'init weight is not JSON', detail: e.message, errors: [{ pointer: '/init/weight', detail: 'not valid JSON' }] } }); return null; }
  }
  const seed = $('#seed').value.trim();
  if (seed) body.seed = /^\d+$/.test(seed) ? Number(seed) : seed;

  app.lastTrainBody = body;
  $('#btn-curl-train').disabled = false;
  if (typeof body.steps === 'number') $('#log-scale').checked = body.steps > 1000; // long runs span decades: log by default
  keepForOverlay(app.train);
  const controller = new AbortController();
  const tr = app.train = { losses: [], steps: typeof body.steps === 'number' ? body.steps : 0, status: 'starting',
                           controller, job: null, lastIndex: -1, done: null, error: null, trueKernel: run.kernel,
                           series: newSeries(), log: [], logDirty: false, statusText: 'starting…', statusClass: '', shownStatus: '' };
  $('#btn-train').disabled = true; $('#btn-stop').disabled = false;
  $('#train-result').hidden = true; $('#stream-log').textContent = '';
  trainStatus('starting…'); drawLoss(); notify();
  try {
    const resp = await request('POST', '/train', body, controller.signal);
    tr.job = resp.headers.get('X-Job-Id');
    let slice = performance.now(), last = slice;
    for await (const ev of ndjson(resp.body)) {
      const t = performance.now();
      if (t - last > 2) slice = t; // the loop was idle (waiting for the network): a new slice of work
      if (t - slice > 8) { app.perf.slice = Math.max(app.perf.slice, t - slice); await yieldToLoop(); slice = performance.now(); }
      last = performance.now();
      if (ev.event === 'heartbeat') continue;
      tr.lastIndex++;
      if (ev.event === 'step') logLine(`step ${ev.step}  loss ${ev.loss}`);
      else logLine(JSON.stringify(ev));
      if (ev.event === 'start') {
        tr.job = ev.job; tr.steps = ev.steps; tr.status = 'running'; tr.seed = ev.seed;
        trainStatus(`job ${ev.job} started: ${ev.steps} steps, ${ev.parameters} parameters, seed ${ev.seed}`);
        tr.statusText = tr.shownStatus = $('#train-status').textContent;
      } else if (ev.event === 'step') {
        tr.losses.push([ev.step, ev.loss]);
        addToSeries(tr.series, ev.step, ev.loss);
        tr.statusText = `step ${ev.step} / ${tr.steps} · loss ${fmt(ev.loss)}` + (tr.warning ? ` · ${tr.warning}` : '');
        continue; // drawn by the next animation frame
      } else if (ev.event === 'warning') {
        tr.warning = `warning: ${ev.code} (loss ${fmt(ev.loss)} at step ${ev.step}, first ${fmt(ev.first_loss)})`;
        continue;
      } else if (ev.event === 'done') {
        tr.done = ev; tr.status = ev.status;
        trainStatus(`${ev.status}: ${ev.steps} steps, last loss ${fmt(ev.loss)}, final loss ${fmt(ev.final_loss)} (${fmt(ev.elapsed_ms)} ms)`,
                    ev.status === 'succeeded' ? 'ok' : '');
        showLearned(tr, ev);
      } else if (ev.event === 'error') {
        tr.status = ev.status || 'failed'; tr.error = ev;
        trainStatus(`failed at step ${tr.losses.length ? tr.losses[tr.losses.length - 1][0] : 0}`);
        showProblem('#train-error', { problem: { title: 'Training failed', code: ev.code, detail: ev.detail,
                                                  errors: ev.code === 'diverged' ? [{ pointer: '/lr', detail: 'try a smaller learning rate' }] : [] } }, 'train');
      }
      tr.statusText = tr.shownStatus = $('#train-status').textContent;
      scheduleRender();
    }
    if (!tr.done && !tr.error) { tr.status = 'cut'; trainStatus('the stream ended without a done event'); }
  } catch (e) {
    if (e.name === 'AbortError') {
      app.perf.stoppedAt = performance.now();
      tr.status = 'stopped';
      tr.statusText = tr.shownStatus = '';
      const at = tr.losses.length ? tr.losses[tr.losses.length - 1][0] : 0;
      trainStatus(`stopped at step ${at}; the daemon cancels the job…`);
      notify();
      if (tr.job) await confirmCancelled(tr, at);
    } else {
      tr.status = 'failed'; tr.error = e;
      trainStatus('failed');
      showProblem('#train-error', e, 'train');
    }
  } finally {
    $('#btn-train').disabled = false; $('#btn-stop').disabled = true;
    tr.statusText = tr.shownStatus = $('#train-status').textContent;
    tr.logDirty = true;
    renderTrain();
  }
  return tr;
}

/** After Stop: follows the job's own event log (GET /jobs/{id}/events, a reader that never cancels) to its end
 *  and shows how the daemon finished the job. */
async function confirmCancelled(tr, at) {
  const ac = new AbortController(), timer = setTimeout(() => ac.abort(), 10000);
  try {
    const job = await (await request('GET', `/jobs/${tr.job}`, undefined, ac.signal)).json();
    let final = ['queued', 'running', 'cancelling'].includes(job.status) ? null : job.status;
    if (!final) {
      const resp = await request('GET', `/jobs/${tr.job}/events?after=${Math.max(0, tr.lastIndex)}`, undefined, ac.signal);
      if (resp.status !== 204) for await (const ev of ndjson(resp.body)) if (ev.event === 'done' || ev.event === 'error') final = ev.status;
      if (!final) final = (await (await request('GET', `/jobs/${tr.job}`, undefined, ac.signal)).json()).status;
    }
    tr.jobStatus = final;
    trainStatus(`stopped at step ${at}; job ${tr.job} is ${final} on the daemon`);
  } catch (e) {
    trainStatus(`stopped at step ${at}; could not read the job's status (${e.message})`);
  } finally {
    clearTimeout(timer);
  }
}

/** The "Stop" button: aborting the fetch closes the connection, and the daemon cancels the job. */
function stopTrain() {
  if (app.train && app.train.controller) {
    app.perf.stopAt = performance.now();
    app.train.controller.abort();
  }
}

function showLearned(tr, ev) {
  const wt = ev.weight ? decodeTensor(ev.weight) : null, tk = tr.trueKernel;
  $('#true-kernel').replaceChildren(tk.data ? matrixTable(tk.shape, tk.data, 100) : document.createElement('span'));
  $('#learned-kernel').replaceChildren(wt ? matrixTable(wt.shape, wt.data, 100) : document.createElement('span'));
  let diff = '';
  if (wt && tk.data && wt.data.length === tk.data.length) {
    let m = 0; for (let i = 0; i < wt.data.length; i++) m = Math.max(m, Math.abs(wt.data[i] - tk.data[i]));
    diff = `, largest |learned − true| = ${fmt(m)}`;
    tr.maxDiff = m;
  }
  tr.weight = wt;
  $('#train-summary').textContent = `${ev.status} after ${ev.steps} steps: final loss ${fmt(ev.final_loss)}` +
    (ev.bias !== null && ev.bias !== undefined ? `, bias ${Array.isArray(ev.bias) ? ev.bias.map(fmt).join(', ') : fmt(ev.bias)}` : '') + diff;
  $('#train-result').hidden = false;
}

/* Loss chart. The curve is drawn from a downsampled series: at most 4096 buckets, each with the
 * range of steps it covers and the smallest and largest loss in it (and the smallest positive one, for
 * the log scale), merged pairwise as the run grows; so a frame costs the same at 100 or 100,000 steps. */
const SERIES_MAX = 4096;
function newSeries() { return { size: 1, buckets: [] }; }
function addToSeries(series, step, loss) {
  const b = series.buckets, last = b[b.length - 1], pos = loss > 0 ? loss : Infinity;
  if (last && last.n < series.size) {
    last.s1 = step; last.n++; last.v = loss;
    if (loss < last.lo) last.lo = loss;
    if (loss > last.hi) last.hi = loss;
    if (pos < last.pos) last.pos = pos;
  } else {
    b.push({ s0: step, s1: step, n: 1, lo: loss, hi: loss, pos, v: loss });
  }
  if (b.length > SERIES_MAX) {
    const merged = [];
    for (let i = 0; i < b.length; i += 2) {
      const x = b[i], y = b[i + 1];
      merged.push(y ? { s0: x.s0, s1: y.s1, n: x.n + y.n, lo: Math.min(x.lo, y.lo), hi: Math.max(x.hi, y.hi),
                        pos: Math.min(x.pos, y.pos), v: y.v } : x);
    }
    series.buckets = merged;
    series.size *= 2;
  }
}
let drawPending = false;
function scheduleDraw() {
  if (drawPending) return;
  drawPending = true;
  requestAnimationFrame(() => { drawPending = false; drawLoss(); });
}
function niceTicks(lo, hi, n) {
  const span = hi - lo || Math.abs(hi) || 1, step0 = span / n, mag = Math.pow(10, Math.floor(Math.log10(step0)));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => span / s <= n) || 10 * mag;
  const ticks = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}
function drawLoss() {
  const c = $('#loss-canvas'), dpr = window.devicePixelRatio || 1;
  const W = c.clientWidth || 400, H = c.clientHeight || 230;
  if (c.width !== Math.round(W * dpr) || c.height !== Math.round(H * dpr)) { c.width = Math.round(W * dpr); c.height = Math.round(H * dpr); }
  const ctx = c.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, W, H);
  const tr = app.train, pts = tr ? tr.losses : [], logScale = $('#log-scale').checked;
  const L = 58, R = 22, T = 12, B = 30, pw = W - L - R, ph = H - T - B;
  ctx.font = '11px system-ui, "DejaVu Sans", sans-serif'; ctx.fillStyle = '#5d6677'; ctx.strokeStyle = '#d9dde5';
  ctx.strokeRect(L + 0.5, T + 0.5, pw, ph);
  if (!pts.length) {
    const msg = !tr ? 'the loss of every step appears here' : ['starting', 'running'].includes(tr.status) ? 'waiting for the first step…' : 'no steps';
    ctx.textAlign = 'center'; ctx.fillText(msg, L + pw / 2, T + ph / 2);
    c.setAttribute('aria-label', 'Loss per training step: no steps yet');
    return;
  }
  const nSteps = Math.max(tr.steps || 0, pts[pts.length - 1][0], 2);
  const buckets = tr.series ? tr.series.buckets : [];
  let lo = Infinity, hi = -Infinity;
  for (const b of buckets) {
    const a = logScale ? b.pos : b.lo;
    if (a < lo) lo = a;
    if (b.hi > hi) hi = b.hi;
  }
  if (!(lo <= hi) || (logScale && !(hi > 0))) { lo = logScale ? 1 : 0; hi = logScale ? 10 : 1; }
  if (logScale) { lo = Math.log10(lo); hi = Math.log10(hi); }
  if (!logScale) lo = Math.min(0, lo);
  if (hi - lo < 1e-12) { hi += logScale ? 0.5 : Math.abs(hi) * 0.1 || 1; lo -= logScale ? 0.5 : 0; }
  if (logScale) { lo = Math.floor(lo); hi = Math.ceil(hi); if (hi === lo) hi = lo + 1; }
  const X = (s) => L + (s - 1) / (nSteps - 1) * pw, Y = (v) => T + ph - (v - lo) / (hi - lo) * ph;
  // grid and labels
  ctx.textAlign = 'right'; ctx.textBaseline = 'middle';
  const yt = logScale ? Array.from({ length: hi - lo + 1 }, (_, i) => lo + i) : niceTicks(lo, hi, 5);
  const step = logScale ? Math.ceil(yt.length / 7) : 1;
  yt.forEach((v, i) => {
    if (i % step) return;
    const y = Math.round(Y(v)) + 0.5;
    ctx.beginPath(); ctx.moveTo(L, y); ctx.lineTo(L + pw, y); ctx.stroke();
    ctx.fillText(logScale ? (Math.abs(v) >= 3 ? `1e${v}` : String(Math.pow(10, v))) : fmt(v), L - 5, y);
  });
  ctx.textAlign = 'center'; ctx.textBaseline = 'top';
  for (const s of niceTicks(1, nSteps, 6)) {
    if (s < 1 || s % 1) continue;
    const x = Math.round(X(s)) + 0.5;
    ctx.beginPath(); ctx.moveTo(x, T + ph); ctx.lineTo(x, T + ph + 4); ctx.stroke();
    ctx.fillText(String(s), x, T + ph + 6);
  }
  ctx.fillText('step', L + pw / 2, T + ph + 17);
  ctx.save(); ctx.translate(12, T + ph / 2); ctx.rotate(-Math.PI / 2); ctx.fillText(logScale ? 'loss (log)' : 'loss', 0, -6); ctx.restore();
  // the curve: at most two points a pixel column (min and max of the column), from the buckets
  const val = (v) => logScale ? Math.log10(v) : v;
  if ($('#overlay').checked) app.runs.forEach((run, i) => drawSeries(ctx, run.series.buckets, X, Y, val, logScale, OVERLAY_COLOURS[i % OVERLAY_COLOURS.length], 1));
  const alpha = Number($('#smoothing').value) || 0;
  if (alpha > 0) drawSmoothed(ctx, buckets, X, Y, val, logScale, alpha);
  ctx.strokeStyle = alpha > 0 ? 'rgba(36,87,197,0.3)' : '#2457c5'; ctx.lineWidth = 1.6; ctx.beginPath();
  let first = true, col = -1, cmin = 0, cmax = 0;
  const flush = () => { if (col < 0) return; const a = Y(cmax), b = Y(cmin); if (first) { ctx.moveTo(col, a); first = false; } else ctx.lineTo(col, a); if (b !== a) ctx.lineTo(col, b); };
  for (const bk of buckets) {
    const blo = logScale ? bk.pos : bk.lo;
    if (!(blo < Infinity)) continue;
    const x = Math.round(X((bk.s0 + bk.s1) / 2)), vlo = val(blo), vhi = val(Math.max(bk.hi, blo));
    if (x !== col) { flush(); col = x; cmin = vlo; cmax = vhi; } else { cmin = Math.min(cmin, vlo); cmax = Math.max(cmax, vhi); }
  }
  flush(); ctx.stroke();
  if (pts.length <= 60) {
    ctx.fillStyle = '#2457c5';
    for (const p of pts) { if (logScale && !(p[1] > 0)) continue; ctx.beginPath(); ctx.arc(X(p[0]), Y(val(p[1])), 2.5, 0, 2 * Math.PI); ctx.fill(); }
  }
  const last = pts[pts.length - 1];
  c.setAttribute('aria-label', `Loss per training step: ${pts.length} steps, last step ${last[0]} loss ${fmt(last[1])}`);
}

/* Earlier runs, drawn under the current one (the last five). */
const OVERLAY_COLOURS = ['#c2410c', '#15803d', '#7e22ce', '#a16207', '#0e7490'];
app.runs = [];
function keepForOverlay(tr) {
  if (!tr || !tr.series || !tr.series.buckets.length) return;
  app.runs.push({ job: tr.job, series: tr.series });
  if (app.runs.length > 5) app.runs.shift();
}
function drawSeries(ctx, buckets, X, Y, val, logScale, colour, width) {
  ctx.save(); ctx.strokeStyle = colour; ctx.globalAlpha = 0.6; ctx.lineWidth = width; ctx.beginPath();
  let first = true;
  for (const b of buckets) {
    const v = logScale ? b.pos : b.v;
    if (!(v < Infinity) || (logScale && !(v > 0))) continue;
    const x = X((b.s0 + b.s1) / 2), y = Y(val(v));
    if (first) { ctx.moveTo(x, y); first = false; } else ctx.lineTo(x, y);
  }
  ctx.stroke(); ctx.restore();
}
/* An exponential moving average over the buckets' last values (alpha: the weight of the past). */
function drawSmoothed(ctx, buckets, X, Y, val, logScale, alpha) {
  ctx.save(); ctx.strokeStyle = '#2457c5'; ctx.lineWidth = 2; ctx.beginPath();
  let first = true, ema = NaN;
  for (const b of buckets) {
    if (logScale && !(b.v > 0)) continue;
    const v = val(b.v);
    ema = Number.isNaN(ema) ? v : alpha * ema + (1 - alpha) * v;
    const x = X((b.s0 + b.s1) / 2), y = Y(ema);
    if (first) { ctx.moveTo(x, y); first = false; } else ctx.lineTo(x, y);
  }
  ctx.stroke(); ctx.restore();
}

/* ---------------------------------------------------------------------------------------------
 * Downloads, copy as curl, following a job by id, saving a kernel by name
 * ------------------------------------------------------------------------------------------- */
function download(name, blob) {
  const url = URL.createObjectURL(blob), a = document.createElement('a');
  a.href = url; a.download = name; document.body.append(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
  app.lastDownload = { name, blob };
}
/* A NumPy .npy file (version 1.0, little-endian float32, C order) of data with shape. */
function npyBlob(shape, data) {
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  const total = 10 + header.length + 1, pad = (64 - (total % 64)) % 64;
  header += ' '.repeat(pad) + '\n';
  const head = new Uint8Array(10 + header.length);
  head.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, header.length & 255, header.length >> 8]);
  for (let i = 0; i < header.length; i++) head[10 + i] = header.charCodeAt(i);
  const body = new DataView(new ArrayBuffer(data.length * 4));
  for (let i = 0; i < data.length; i++) body.setFloat32(i * 4, data[i], true);
  return new Blob([head, body.buffer], { type: 'application/octet-stream' });
}
function canvasBlob(canvas) { return new Promise((resolve) => canvas.toBlob(resolve, 'image/png')); }
async function downloadOutputPng() { download('convd-output.png', await canvasBlob($('#output-canvas'))); }
function downloadOutputNpy() { const o = app.lastRun.output; download('convd-output.npy', npyBlob(o.shape, o.data)); }
function learnedKernel() {
  const w = app.train && app.train.weight;
  if (!w) throw new ProblemError({ title: 'No learned kernel', detail: 'train first' });
  return w;
}
function downloadKernelJson() { const w = learnedKernel(); download('convd-kernel.json', new Blob([JSON.stringify(toNested(w.shape, w.data)) + '\n'], { type: 'application/json' })); }
function downloadKernelNpy() { const w = learnedKernel(); download('convd-kernel.npy', npyBlob(w.shape, w.data)); }
async function downloadLossPng() { download('convd-loss.png', await canvasBlob($('#loss-canvas'))); }
function downloadLossCsv() {
  const rows = ['step,loss'].concat((app.train ? app.train.losses : []).map((p) => `${p[0]},${p[1]}`));
  download('convd-loss.csv', new Blob([rows.join('\n') + '\n'], { type: 'text/csv' }));
}
/* The last request as a curl command that works with curl 7.74 (no --json). */
function curlFor(path, body) {
  const q = (t) => "'" + t.replace(/'/g, "'\\''") + "'";
  const token = localStorage.getItem(STORAGE_KEY);
  return `curl -s${path === '/train' ? 'N' : ''} -H 'Content-Type: application/json'` +
    (token ? ` -H ${q('Authorization: Bearer ' + token)}` : '') + ` -d ${q(JSON.stringify(body))} ${location.origin}${path}`;
}
async function copyCurl(path, body) {
  const text = curlFor(path, body), box = $('#curl-text');
  box.value = text; box.hidden = false;
  try { await navigator.clipboard.writeText(text); } catch (e) { box.select(); } // shown either way
  app.lastCurl = text;
  return text;
}
/* Follows any job (started by curl, the CLI, or another page) by id: its events from the start. */
async function followJob() {
  const id = $('#follow-id').value.trim();
  if (!/^j-[0-9a-f]{32}$/.test(id)) {
    showProblem('#train-error', { problem: { title: 'Not a job id', detail: 'a job id is j- and 32 hex digits' } });
    return null;
  }
  hideProblem('#train-error');
  keepForOverlay(app.train);
  const controller = new AbortController();
  const tr = app.train = { losses: [], steps: 0, status: 'starting', controller, job: id, lastIndex: -1, done: null,
                           error: null, trueKernel: {}, series: newSeries(), log: [], logDirty: false,
                           statusText: `following ${id}…`, statusClass: '', shownStatus: '' };
  $('#btn-stop').disabled = false;
  scheduleRender();
  try {
    const resp = await request('GET', `/jobs/${id}/events`, undefined, controller.signal);
    let slice = performance.now();
    if (resp.status !== 204) for await (const ev of ndjson(resp.body)) {
      if (performance.now() - slice > 8) { await yieldToLoop(); slice = performance.now(); }
      if (ev.event === 'heartbeat') continue;
      tr.lastIndex++;
      logLine(ev.event === 'step' ? `step ${ev.step}  loss ${ev.loss}` : JSON.stringify(ev));
      if (ev.event === 'start') { tr.steps = ev.steps; tr.status = 'running'; }
      else if (ev.event === 'step') { tr.losses.push([ev.step, ev.loss]); addToSeries(tr.series, ev.step, ev.loss); tr.statusText = `job ${id}: step ${ev.step} / ${tr.steps} · loss ${fmt(ev.loss)}`; }
      else if (ev.event === 'done') { tr.done = ev; tr.status = ev.status; tr.statusText = `job ${id} ${ev.status}: ${ev.steps} steps, final loss ${fmt(ev.final_loss)}`; showLearned(tr, ev); }
      else if (ev.event === 'error') { tr.status = 'failed'; tr.error = ev; tr.statusText = `job ${id} failed: ${ev.code}`; }
    }
    if (!tr.done && !tr.error) { // finished before: the resource has the result
      const job = await (await request('GET', `/jobs/${id}?include=losses`)).json();
      tr.status = job.status; tr.steps = job.progress.steps;
      if (job.result && job.result.losses) job.result.losses.forEach((l, i) => { tr.losses.push([i + 1, l]); addToSeries(tr.series, i + 1, l); });
      tr.statusText = `job ${id} ${job.status}`;
    }
  } catch (e) {
    if (e.name === 'AbortError') { tr.status = 'stopped'; tr.statusText = `stopped following ${id} (the job runs on)`; }
    else { tr.status = 'failed'; showProblem('#train-error', e, 'train'); tr.statusText = 'could not follow the job'; }
  } finally {
    $('#btn-stop').disabled = true;
    tr.logDirty = true;
    renderTrain();
  }
  return tr;
}
async function saveKernel() {
  const name = $('#kernel-name').value.trim(), tr = app.train, st = $('#save-status');
  if (!tr || !tr.job || !tr.done) throw new ProblemError({ title: 'Nothing to save', detail: 'a finished training first' });
  try {
    const k = await postJSON('/kernels', { name, from_job: tr.job });
    st.textContent = `saved as ${k.name}`; st.className = 'status ok';
    reloadKernels();
    return k;
  } catch (e) {
    st.textContent = 'not saved'; st.className = 'status';
    showProblem('#train-error', e, 'train');
    throw e;
  }
}

/* ---------------------------------------------------------------------------------------------
 * Wiring: every button calls one function; the promise of what it started is kept in app.pending
 * ------------------------------------------------------------------------------------------- */
function on(sel, type, fn) {
  $(sel).addEventListener(type, (ev) => {
    const p = Promise.resolve().then(() => fn(ev));
    p.catch(() => {}); // shown in the page already
    app.pending = p;
  });
}
function saveToken() {
  const t = $('#token').value.trim();
  if (t) localStorage.setItem(STORAGE_KEY, t); else localStorage.removeItem(STORAGE_KEY);
  return reloadKernels();
}
function init() {
  $('#token').value = localStorage.getItem(STORAGE_KEY) || '';
  on('#btn-token', 'click', saveToken);
  $('#token').addEventListener('keydown', (ev) => { if (ev.key === 'Enter') { ev.preventDefault(); $('#btn-token').click(); } });
  on('#btn-clear', 'click', clearCanvas);
  on('#btn-seed', 'click', loadSeedExample);
  on('#file', 'change', (ev) => ev.target.files && ev.target.files[0] ? loadImageFile(ev.target.files[0]) : null);
  const canvas = $('#input-canvas');
  canvas.addEventListener('pointerdown', onPointerDown);
  canvas.addEventListener('pointermove', onPointerMove);
  canvas.addEventListener('pointerup', onPointerUp);
  canvas.addEventListener('pointercancel', onPointerUp);
  on('#btn-kernels', 'click', reloadKernels);
  on('#kernel-select', 'change', onKernelChange);
  on('#kernel-size', 'change', onKernelChange);
  on('#kernel-sigma', 'change', onKernelChange);
  on('#custom-kernel', 'change', onKernelChange);
  $('#custom-kernel').addEventListener('input', onCustomKernelInput);
  on('#btn-run', 'click', runCorr2d);
  on('#btn-train', 'click', startTrain);
  on('#btn-stop', 'click', stopTrain);
  on('#log-scale', 'change', drawLoss);
  on('#smoothing', 'input', scheduleDraw);
  on('#overlay', 'change', scheduleDraw);
  on('#btn-dl-out-png', 'click', downloadOutputPng);
  on('#btn-dl-out-npy', 'click', downloadOutputNpy);
  on('#btn-dl-kernel-json', 'click', downloadKernelJson);
  on('#btn-dl-kernel-npy', 'click', downloadKernelNpy);
  on('#btn-dl-loss-png', 'click', downloadLossPng);
  on('#btn-dl-loss-csv', 'click', downloadLossCsv);
  on('#btn-curl-corr', 'click', () => copyCurl('/corr2d', app.lastRun.body));
  on('#btn-curl-train', 'click', () => copyCurl('/train', app.lastTrainBody));
  on('#btn-follow', 'click', followJob);
  on('#btn-save-kernel', 'click', saveKernel);
  $('#stream-log').closest('details').addEventListener('toggle', () => { if (app.train) { app.train.logDirty = true; scheduleRender(); } });
  window.addEventListener('resize', scheduleDraw);

  // a first image to play with: a disc and a bar on black
  const n = 64, data = blankImage(n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++)
    if ((i - 24) ** 2 + (j - 24) ** 2 < 13 ** 2 || (i >= 40 && i < 54 && j >= 30 && j < 58)) data[i * n + j] = 1;
  setImage(n, n, data, 'canvas');
  drawLoss();
  reloadKernels();
  if (new URLSearchParams(location.search).has('selftest')) selftest();
  if (new URLSearchParams(location.search).has('stalltest')) stalltest();
}

/* ---------------------------------------------------------------------------------------------
 * Stall test (?stalltest=1): a 100,000-step training of the textbook example streamed into the page
 * (every step reported), then Stop during a second one. The page's own work per task (stream
 * parsing slices, renders) must stay under 100 ms, and Stop must take effect within 100 ms. The
 * browser's Long Tasks (PerformanceObserver) and the longest gap between animation frames are
 * reported too: on a loaded machine they include time the process waited for a CPU.
 * ------------------------------------------------------------------------------------------- */
async function stalltest() {
  const out = $('#selftest'), lines = [];
  let failed = 0;
  out.hidden = false; out.textContent = 'RUNNING';
  const check = (name, ok, info) => { if (!ok) failed++; lines.push((ok ? 'ok - ' : 'not ok - ') + name + (info ? ` (${info})` : '')); };
  let longest = 0, frameGap = 0, lastFrame = 0, frames = true;
  try {
    new PerformanceObserver((list) => { for (const e of list.getEntries()) longest = Math.max(longest, e.duration); })
      .observe({ type: 'longtask', buffered: true });
  } catch (e) { lines.push('# no Long Tasks API: ' + e.message); }
  const tick = (t) => { if (lastFrame) frameGap = Math.max(frameGap, t - lastFrame); lastFrame = t; if (frames) requestAnimationFrame(tick); };
  try {
    await app.kernelsLoaded;
    loadSeedExample();
    $('#kernel-select').value = 'edge';
    await onKernelChange();
    await runCorr2d();
    $('#init-weight').value = '[[0.5,0.5]]';
    $('#steps').value = '100000';
    app.perf.slice = app.perf.render = 0;
    requestAnimationFrame(tick);
    const t0 = performance.now();
    const tr = await startTrain();
    const secs = (performance.now() - t0) / 1000;
    frames = false;
    check('100,000 steps streamed into the page', tr && tr.status === 'succeeded' && tr.losses.length === 100000,
          tr ? `${tr.status}, ${tr.losses.length} steps in ${secs.toFixed(1)} s` : 'no training');
    const own = Math.max(app.perf.slice, app.perf.render);
    check('longest stall of the page\'s own work < 100 ms', own < 100,
          `stream slice ${app.perf.slice.toFixed(1)} ms, render ${app.perf.render.toFixed(1)} ms`);
    lines.push(`# longest long task ${longest.toFixed(0)} ms, longest gap between frames ${frameGap.toFixed(0)} ms`);
    check('the chart shows every step', /100000 steps, last step 100000/.test($('#loss-canvas').getAttribute('aria-label')),
          $('#loss-canvas').getAttribute('aria-label'));
    check('the log is bounded', $('#stream-log').textContent.split('\n').length <= LOG_LINES);
    // Stop during a second long training
    const second = startTrain();
    await new Promise((resolve) => { const h = () => { if (app.train.losses.length >= 5000 || app.train.status !== 'running' && app.train.status !== 'starting') { app.events.removeEventListener('update', h); resolve(); } }; app.events.addEventListener('update', h); });
    app.perf.stoppedAt = 0;
    stopTrain();
    const tr2 = await second;
    const reaction = app.perf.stoppedAt - app.perf.stopAt;
    check('Stop takes effect within 100 ms', tr2.status === 'stopped' && reaction < 100 && tr2.losses.length < 100000,
          `${tr2.status} after ${tr2.losses.length} steps, ${reaction.toFixed(1)} ms`);
  } catch (e) {
    check('stall test ran to the end', false, e && e.stack || e);
  }
  frames = false;
  out.textContent = (failed ? `FAIL ${failed} checks failed` : 'PASS') + '\n' + lines.join('\n');
}

/* ---------------------------------------------------------------------------------------------
 * Self-test (?selftest=1): drives the UI above as a user would (clicks, typed values, change events)
 * and writes "PASS n/n" or "FAIL" with reasons into <pre id="selftest">.
 * ------------------------------------------------------------------------------------------- */
async function selftest() {
  const out = $('#selftest'), results = [];
  out.hidden = false; out.textContent = 'RUNNING';
  const check = (name, ok, info) => {
    results.push({ name, ok: !!ok, info: ok ? '' : String(info === undefined ? '' : info) });
    out.textContent = `RUNNING after ${results.length} checks (last: ${name})`; // shows how far a run that timed out got
  };
  const click = (sel) => { app.pending = null; $(sel).click(); return app.pending; };
  const settle = (p) => Promise.resolve(p).then((v) => ({ ok: true, v }), (e) => ({ ok: false, e }));
  const fire = (sel, evt) => { app.pending = null; $(sel).dispatchEvent(new Event(evt, { bubbles: true })); return app.pending; };
  const type = (sel, v, evt) => { $(sel).value = v; return fire(sel, evt || 'input'); };
  const until = (pred) => new Promise((resolve) => {
    if (pred()) return resolve();
    const h = () => { if (pred()) { app.events.removeEventListener('update', h); resolve(); } };
    app.events.addEventListener('update', h);
  });
  const text = (sel) => $(sel).textContent;
  const params = new URLSearchParams(location.search);
  const Y = [[0,0,0,0,0,0,0],[0,1,0,0,0,-1,0],[0,1,0,0,0,-1,0],[0,1,0,0,0,-1,0],[0,0,0,0,0,0,0],[0,0,0,0,0,0,0]];
  try {
    // 0. a daemon with --token-file: the kernel list fails with 401 until the token is typed and saved
    if (params.has('token')) {
      await settle(app.kernelsLoaded);
      check('401 shown without a token', !$('#global-error').hidden && /401/.test(text('#global-error')) && /unauthorized/i.test(text('#global-error')),
            text('#global-error'));
      $('#token').value = params.get('token');
      await settle(click('#btn-token'));
      check('token stored in localStorage', localStorage.getItem(STORAGE_KEY) === params.get('token'));
    }
    const loaded = await settle(app.kernelsLoaded);
    check('GET /kernels listed', loaded.ok && $('#kernel-select').options.length >= 9 && app.kernels.some((k) => k.name === 'edge'),
          loaded.ok ? $('#kernel-select').options.length + ' options' : loaded.e.message);
    check('no error shown after loading', $('#global-error').hidden, text('#global-error'));

    // 1. upload: a 300 x 200 PNG becomes a 128 x 85 grayscale image
    const big = document.createElement('canvas');
    big.width = 300; big.height = 200;
    const bctx = big.getContext('2d');
    bctx.fillStyle = '#000'; bctx.fillRect(0, 0, 300, 200); bctx.fillStyle = '#fff'; bctx.fillRect(150, 0, 150, 200);
    const blob = await new Promise((res) => big.toBlob(res, 'image/png'));
    const file = new File([blob], 'test.png', { type: 'image/png' });
    const dt = new DataTransfer(); dt.items.add(file); $('#file').files = dt.files;
    const up = await settle(fire('#file', 'change'));
    check('upload downscaled to 128 x 85 grayscale', up.ok && app.image.w === 128 && app.image.h === 85 &&
          app.image.data[0] === 0 && app.image.data[127] === 1, up.ok ? `${app.image.h}x${app.image.w}` : up.e.message);
    {
      const rgbCanvas = document.createElement('canvas'); rgbCanvas.width = 1024; rgbCanvas.height = 600;
      const rc = rgbCanvas.getContext('2d'); rc.fillStyle = '#ff0000'; rc.fillRect(0, 0, 1024, 600); rc.fillStyle = '#0000ff'; rc.fillRect(512, 0, 512, 600);
      const rgbFile = new File([await new Promise((res) => rgbCanvas.toBlob(res, 'image/png'))], 'rgb.png', { type: 'image/png' });
      $('#upload-mode').value = 'rgb'; $('#upload-max').value = '512';
      const ru = await settle(loadImageFile(rgbFile));
      const im = app.image, n = im.h * im.w;
      check('RGB upload up to 512 px as (3,H,W)', ru.ok && im.c === 3 && im.w === 512 && im.h === 300 && im.data.length === 3 * n &&
            im.data[0] === 1 && im.data[n] === 0 && im.data[2 * n + 511] === 1, ru.ok ? `${im.c}x${im.h}x${im.w}` : ru.e.message);
      await settle(type('#kernel-select', 'sobel_x', 'change'));
      $('#padding').value = 'same';
      const rr = await settle(click('#btn-run'));
      check('corr2d on RGB gives 3 channels drawn at the input scale', rr.ok && app.lastRun.output.shape.join('x') === '3x300x512' &&
            $('#output-canvas').style.width === $('#input-canvas').style.width, rr.ok ? app.lastRun.output.shape.join('x') : rr.e.message);
      $('#upload-mode').value = 'gray'; $('#upload-max').value = '128'; $('#padding').value = '0';
      await settle(loadImageFile(file));
      check('a new input clears the stale output', $('#output-canvas').hidden && app.lastRun === null);
    }
    check('upload suggests adam/mse', $('#optimizer').value === 'adam' && $('#loss').value === 'mse');
    const bad = new DataTransfer(); bad.items.add(new File(['not an image'], 'x.png', { type: 'image/png' })); $('#file').files = bad.files;
    const up2 = await settle(fire('#file', 'change'));
    check('a broken upload is reported', !up2.ok && !$('#input-error').hidden && /not an image/.test(text('#input-error')), text('#input-error'));

    // 2. draw: clear to a blank 128 x 128 canvas and paint a stroke with the pointer
    type('#canvas-size', '128', 'change');
    await settle(click('#btn-clear'));
    check('clear gives a blank 128 x 128', app.image.h === 128 && app.image.data.every((v) => v === 0));
    const rect = $('#input-canvas').getBoundingClientRect();
    const at = (fx, fy) => ({ clientX: rect.left + rect.width * fx, clientY: rect.top + rect.height * fy, pointerId: 7, bubbles: true, isPrimary: true });
    type('#brush-value', '1', 'change'); type('#brush-size', '6');
    $('#input-canvas').dispatchEvent(new PointerEvent('pointerdown', at(0.2, 0.2)));
    $('#input-canvas').dispatchEvent(new PointerEvent('pointermove', at(0.8, 0.8)));
    $('#input-canvas').dispatchEvent(new PointerEvent('pointerup', at(0.8, 0.8)));
    const img = app.image, pix = (fx, fy) => img.data[Math.floor(fy * img.h) * img.w + Math.floor(fx * img.w)];
    check('drawing paints a stroke', pix(0.5, 0.5) === 1 && pix(0.2, 0.2) === 1 && pix(0.8, 0.2) === 0, `${pix(0.5, 0.5)} ${pix(0.8, 0.2)}`);

    // 3. a named parameterised kernel, then a long training stopped with Stop: the daemon cancels the job
    await settle(type('#kernel-select', 'gaussian', 'change'));
    await settle(type('#kernel-size', '9', 'change'));
    check('gaussian 9x9 values resolved', /Kernel values \(9 × 9\)/.test(text('#kernel-values-h')), text('#kernel-values-h'));
    type('#padding', 'same');
    const g = await settle(click('#btn-run'));
    check('corr2d with padding same', g.ok && text('#output-shape') === '128 × 128', g.ok ? text('#output-shape') : g.e.message);
    type('#init-weight', ''); type('#seed', '7'); type('#lr', '0.01'); type('#steps', '100000');
    const before = app.train, long = click('#btn-train');
    await until(() => app.train && app.train !== before && (app.train.losses.length >= 3 || !['starting', 'running'].includes(app.train.status)));
    check('long training streams steps', app.train.status === 'running' && app.train.losses.length >= 3, app.train.status);
    check('Stop is enabled while training', !$('#btn-stop').disabled);
    click('#btn-stop');
    await settle(long);
    const n = app.train.losses.length;
    check('Stop aborts the stream', app.train.status === 'stopped' && n < 100000, app.train.status + ' after ' + n);
    check('the daemon cancelled the job', app.train.jobStatus === 'cancelled' && /cancelled on the daemon/.test(text('#train-status')),
          text('#train-status'));
    check('buttons restored', $('#btn-stop').disabled && !$('#btn-train').disabled);
    // 4. the textbook example with "edge"
    await settle(click('#btn-seed'));
    check('seed example loaded 6x8', app.image.h === 6 && app.image.w === 8 && /6 × 8/.test(text('#input-info')), text('#input-info'));
    check('seed example suggests lr 0.012, 20 steps, sgd, sse', $('#lr').value === '0.012' && $('#steps').value === '20' &&
          $('#optimizer').value === 'sgd' && $('#loss').value === 'sse' && !$('#train-bias').checked);
    await settle(type('#kernel-select', 'edge', 'change'));
    check('edge kernel values shown', /Kernel values \(1 × 2\)/.test(text('#kernel-values-h')) && text('#kernel-values').replace(/\s/g, '') === '1-1',
          text('#kernel-values-h') + ' ' + text('#kernel-values'));
    for (const form of ['flat', 'b64']) {
      type('#tensor-form', form, 'change');
      const r = await settle(click('#btn-run'));
      const got = r.ok && app.lastRun ? toNested(app.lastRun.output.shape, app.lastRun.output.data) : null;
      check(`corr2d (${form}) gives the seed's Y`, got && JSON.stringify(got) === JSON.stringify(Y), r.ok ? JSON.stringify(got) : r.e.message);
    }
    check('output shape/min/max shown', text('#output-shape') === '6 × 7' && text('#output-min') === '-1' && text('#output-max') === '1',
          text('#output-info'));
    const oc = $('#output-canvas'), px = oc.getContext('2d').getImageData(1, 1, 1, 1).data, px0 = oc.getContext('2d').getImageData(0, 0, 1, 1).data;
    check('output drawn with a diverging map (+1 red, 0 white)', oc.width === 7 && oc.height === 6 && px[0] > 150 && px[2] < 80 &&
          px0[0] > 240 && px0[1] > 240 && px0[2] > 240, `${oc.width}x${oc.height} ${Array.from(px)} ${Array.from(px0)}`);

    // 5. errors (on the textbook example): problem detail and pointers, on corr2d and on train
    await settle(type('#kernel-select', 'custom', 'change'));
    await settle(type('#custom-kernel', JSON.stringify(Array(7).fill(Array(7).fill(1))), 'change'));
    const e1 = await settle(click('#btn-run'));
    const ce = text('#corr-error');
    check('corr2d error shows detail and pointer', !e1.ok && !$('#corr-error').hidden && /422/.test(ce) && /shape_mismatch/.test(ce) &&
          /kernel is larger than the padded input/.test(ce) && /\/kernel/.test($('#corr-error .pointer') ? text('#corr-error .pointer') : ''), ce);
    check('the bad field is marked', $('#custom-kernel').getAttribute('aria-invalid') === 'true');
    await settle(type('#custom-kernel', '[[1, "x"]]', 'change'));
    await settle(click('#btn-run'));
    check('pointer to the bad element', /\/kernel\/0\/1/.test(text('#corr-error')), text('#corr-error'));
    await settle(type('#kernel-select', 'edge', 'change'));
    check('changing the kernel clears the error', $('#corr-error').hidden);
    type('#lr', '-1');
    await settle(click('#btn-train'));
    const te = text('#train-error');
    check('train error shows detail and /lr', !$('#train-error').hidden && /must be a number > 0/.test(te) && /\/lr/.test(te) &&
          $('#lr').getAttribute('aria-invalid') === 'true', te);

    // 6. learn it back from the textbook's start
    type('#init-weight', '[[0.5,0.5]]'); type('#seed', ''); type('#lr', '0.012'); type('#steps', '20');
    $('#train-bias').checked = false;
    const r = await settle(click('#btn-train'));
    const tr = app.train, losses = tr ? tr.losses.map((p) => p[1]) : [];
    check('train finished', r.ok && tr && tr.status === 'succeeded', r.ok ? tr && tr.status : r.e.message);
    check('20 loss points arrived', losses.length === 20 && tr.losses.every((p, i) => p[0] === i + 1), losses.length);
    check('step 1 loss = 34.5', Math.abs(losses[0] - 34.5) < 1e-6, losses[0]);
    check('loss falls every step', losses.length > 1 && losses.every((l, i) => i === 0 || l < losses[i - 1]), JSON.stringify(losses));
    check('step 20 loss = 0.35073102', Math.abs(losses[19] - 0.35073102) < 1e-6, losses[19]);
    check('status shows the last step', /succeeded: 20 steps/.test(text('#train-status')), text('#train-status'));
    check('learned vs true kernel shown', !$('#train-result').hidden && text('#true-kernel').replace(/\s/g, '') === '1-1' &&
          /^0\.776-0\.776$/.test(text('#learned-kernel').replace(/\s/g, '')) &&
          [...document.querySelectorAll('#learned-kernel td')].map((td) => Number(td.title).toFixed(4)).join(' ') === '0.7756 -0.7756',
          text('#true-kernel') + ' | ' + text('#learned-kernel'));
    const lc = $('#loss-canvas');
    check('loss curve drawn', lc.width > 100 && /20 steps, last step 20/.test(lc.getAttribute('aria-label')), lc.getAttribute('aria-label'));
    $('#log-scale').click();
    check('log scale toggles', $('#log-scale').checked && /last step 20/.test(lc.getAttribute('aria-label')));
    $('#log-scale').click();

    // 7. downloads, copy as curl, save the kernel by name, follow the job by id, overlay, smoothing
    const blobText = (b) => b.text();
    await settle(click('#btn-dl-out-npy'));
    const npy = app.lastDownload && new Uint8Array(await app.lastDownload.blob.arrayBuffer());
    check('output as .npy', npy && app.lastDownload.name === 'convd-output.npy' && npy[0] === 0x93 &&
          String.fromCharCode(...npy.slice(1, 6)) === 'NUMPY' && (npy.length - 10 - (npy[8] | npy[9] << 8)) === 6 * 7 * 4 &&
          (10 + (npy[8] | npy[9] << 8)) % 64 === 0, npy && npy.length);
    await settle(click('#btn-dl-out-png'));
    check('output as .png', app.lastDownload.name === 'convd-output.png' && app.lastDownload.blob.type === 'image/png');
    await settle(click('#btn-dl-kernel-json'));
    const kj = JSON.parse(await blobText(app.lastDownload.blob));
    check('learned kernel as .json', kj.length === 1 && Math.abs(kj[0][0] - 0.7756327) < 1e-5, JSON.stringify(kj));
    await settle(click('#btn-dl-kernel-npy'));
    check('learned kernel as .npy', app.lastDownload.blob.size === 128 + 8, app.lastDownload.blob.size);
    await settle(click('#btn-dl-loss-csv'));
    const csv = (await blobText(app.lastDownload.blob)).trim().split('\n');
    check('loss curve as .csv', csv.length === 21 && csv[0] === 'step,loss' && csv[1] === '1,34.5', csv.slice(0, 2).join('|'));
    await settle(click('#btn-dl-loss-png'));
    check('loss curve as .png', app.lastDownload.blob.type === 'image/png');
    await settle(click('#btn-curl-train'));
    check('copy as curl', /^curl -sN -H 'Content-Type: application\/json'/.test(app.lastCurl) && !/--json/.test(app.lastCurl) &&
          /\/train$/.test(app.lastCurl) && !$('#curl-text').hidden, app.lastCurl && app.lastCurl.slice(0, 80));
    $('#kernel-name').value = 'selftest_edge';
    const sk = await settle(click('#btn-save-kernel'));
    await settle(app.kernelsLoaded);
    check('save the learned kernel by name', sk.ok && /saved as selftest_edge/.test(text('#save-status')) &&
          app.kernels.some((k) => k.name === 'selftest_edge'), sk.ok ? text('#save-status') : sk.e.message);
    const trained = app.train.job;
    $('#follow-id').value = trained;
    const fj = await settle(click('#btn-follow'));
    check('follow a job by id', fj.ok && app.train.job === trained && app.train.status === 'succeeded' && app.train.losses.length === 20,
          fj.ok ? `${app.train.status} ${app.train.losses.length}` : fj.e.message);
    check('earlier runs kept for the overlay', app.runs.length >= 1 && $('#overlay').checked);
    type('#smoothing', '0.9', 'input');
    drawLoss();
    check('smoothing draws', /20 steps/.test(lc.getAttribute('aria-label')));
    type('#smoothing', '0', 'input');

  } catch (e) {
    check('self-test ran to the end', false, e && e.stack || e);
  }
  const failed = results.filter((r) => !r.ok);
  out.textContent = (failed.length ? `FAIL ${failed.length} of ${results.length} checks failed` : `PASS ${results.length}/${results.length}`) + '\n' +
    results.map((r) => (r.ok ? 'ok - ' : 'not ok - ') + r.name + (r.ok ? '' : ': ' + r.info)).join('\n');
  document.title = failed.length ? 'selftest FAIL' : 'selftest PASS';
}

init();
