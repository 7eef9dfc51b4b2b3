// SPDX-License-Identifier: MIT
// The live view's page: frames from mead-view over WebSocket (docs/live-view.md),
// drawn on canvases and one DOM grid.  Nothing is fetched but this page's own
// files and its WebSocket.
'use strict';
(function () {
  const EVENT = { 1: 'run_start', 2: 'run_end', 3: 'trial_start', 4: 'trial_end', 5: 'label', 6: 'phase', 7: 'item',
    8: 'stim_refused', 9: 'overflow', 10: 'gap', 11: 'late', 12: 'device_gone', 13: 'device_back', 14: 'blank',
    15: 'stall', 16: 'stim_lost', 17: 'unread', 18: 'threshold', 19: 'digital' };
  const LOSS = new Set([9, 10, 11, 12, 15, 16, 17]);
  const PHASE = { 0: 'train', 1: 'test', 2: 'rest', 3: 'validation' };
  const PHASE_COLOUR = { 0: '#3b82c4', 1: '#e08a2e', 2: '#555b66', 3: '#8f6bd1' };
  const ALL = 65535;
  const RASTER_S = 10, KEEP_S = 12, TRACE_S = 1.0, MAX_TRACES = 8;
  const PSTH_PRE_MS = 50, PSTH_POST_MS = 250, PSTH_BIN_MS = 5;
  const RING = 400000;

  const $ = (id) => document.getElementById(id);
  const S = {
    ws: null, connected: false, status: null, bridge: null, rate: 0, clockVirtual: null,
    n: 0, labels: [], excluded: new Set(), rows: 0, cols: 0, pos: [], layoutKey: '',
    base: null, baseSeq: null, counts: null, lastSeq: null, spikesSinceBase: 0,
    rates: null, prevCounts: null, prevSample: null,
    latest: 0, lastFrameN: null, framesMissed: 0, frames: 0, behind: false, viewGaps: null,
    unlistedSpikes: 0, unlistedOther: 0,
    ring: { s: new Float64Array(RING), e: new Uint16Array(RING), head: 0, len: 0 },
    byEl: [], stim: [], events: [], losses: [], refused: [], trials: [], phases: [], blanks: [], viewLoss: [],
    pulses: 0, flash: null, pulsedEl: new Set(), labelsSeen: new Set(),
    traces: new Map(), selected: [], selectionSent: false, raw: null,
    psth: { el: 0, trig: 'any', bins: null, n: 0, pending: [] },
  };

  // ---------- connection ----------
  function connect() {
    const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws' + location.search;
    const ws = new WebSocket(url);
    ws.binaryType = 'arraybuffer';
    S.ws = ws;
    setConn('connecting…', '');
    ws.onopen = () => { S.connected = true; setConn('live', 'ok'); S.selectionSent = false; sendSelection(); };
    ws.onclose = () => { S.connected = false; setConn('disconnected: retrying', 'bad'); setTimeout(connect, 2000); };
    ws.onmessage = (m) => {
      if (typeof m.data === 'string') {
        const j = JSON.parse(m.data);
        if (j.type === 'frame') onFrame(j);
        else if (j.type === 'status' || j.type === 'hello') onStatus(j);
      } else {
        onRaw(m.data);
      }
    };
  }
  function setConn(text, cls) { const c = $('conn'); c.textContent = text; c.className = 'pill ' + cls; }
  function sendSelection() {
    if (S.ws && S.ws.readyState === 1) { S.ws.send(JSON.stringify({ traces: S.selected })); S.selectionSent = true; }
  }

  // ---------- status and layout ----------
  function onStatus(j) {
    if (j.bridge) S.bridge = j.bridge;
    if (!j.status) return;
    const st = j.status;
    S.status = st;
    S.rate = st.sample_rate_hz || S.rate;
    S.clockVirtual = st.virtual_clock;
    const l = st.layout;
    if (l) {
      const key = JSON.stringify([l.rows, l.cols, l.labels, l.excluded]);
      if (key !== S.layoutKey) { S.layoutKey = key; buildLayout(l); }
    }
  }

  // Where each electrode sits: MCS two-digit labels (column, row) give their
  // own place; otherwise index order fills the rows x cols grid row by row.
  function buildLayout(l) {
    S.n = l.count; S.labels = l.labels.slice(); S.excluded = new Set(l.excluded);
    S.rows = l.rows || 1; S.cols = l.cols || Math.ceil(S.n / S.rows);
    const mcs = S.labels.length > 0 && S.labels.every((s) => /^[1-9][1-9]$/.test(s));
    S.pos = S.labels.map((s, i) => mcs ? { r: +s[1] - 1, c: +s[0] - 1 } : { r: Math.floor(i / S.cols), c: i % S.cols });
    if (mcs) { S.rows = Math.max(...S.pos.map((p) => p.r)) + 1; S.cols = Math.max(...S.pos.map((p) => p.c)) + 1; }
    if (S.rows * S.cols < S.n) { S.cols = Math.ceil(S.n / S.rows); S.pos = S.labels.map((s, i) => ({ r: Math.floor(i / S.cols), c: i % S.cols })); }
    S.rates = new Float64Array(S.n); S.flash = new Float64Array(S.n);
    S.byEl = []; for (let e = 0; e < S.n; e++) S.byEl.push({ s: new Float64Array(8192), head: 0, len: 0 });
    const map = $('map');
    map.innerHTML = '';
    map.style.gridTemplateColumns = 'repeat(' + S.cols + ', 1fr)';
    const cells = new Array(S.rows * S.cols).fill(null);
    S.pos.forEach((p, i) => { cells[p.r * S.cols + p.c] = i; });
    S.cells = [];
    for (const i of cells) {
      const d = document.createElement('div');
      if (i === null) { d.className = 'hole'; map.appendChild(d); continue; }
      d.className = 'el' + (S.excluded.has(i) ? ' excluded' : '');
      d.dataset.electrode = i; d.dataset.label = S.labels[i]; d.dataset.count = '0';
      d.innerHTML = '<span class="lbl"></span><span class="cnt"></span>';
      d.firstChild.textContent = S.labels[i];
      if (!S.excluded.has(i)) d.addEventListener('click', () => toggleTrace(i));
      map.appendChild(d);
      S.cells[i] = d;
    }
    $('map-note').textContent = S.n + ' electrodes' + (S.excluded.size ? ', ' + S.excluded.size + ' excluded (never stimulated)' : '');
    if (!S.selected.length) {
      for (let e = 0; e < S.n && S.selected.length < 4; e++) if (!S.excluded.has(e)) S.selected.push(e);
      sendSelection();
    }
    const pe = $('psth-electrode'); pe.innerHTML = '';
    S.labels.forEach((s, i) => { const o = document.createElement('option'); o.value = i; o.textContent = s; pe.appendChild(o); });
    S.psth.el = S.selected[0] || 0; pe.value = S.psth.el;
    refreshTriggers();
    resetPsth();
  }

  function toggleTrace(e) {
    const k = S.selected.indexOf(e);
    if (k >= 0) S.selected.splice(k, 1);
    else { S.selected.push(e); if (S.selected.length > MAX_TRACES) S.selected.shift(); }
    for (const c of [...S.traces.keys()]) if (!S.selected.includes(c)) S.traces.delete(c);
    sendSelection();
    S.psth.el = e; $('psth-electrode').value = e; resetPsth();
  }

  // ---------- frames ----------
  function keepRecent(list, key) {
    const cut = S.latest - KEEP_S * (S.rate || 1);
    let i = 0; while (i < list.length && key(list[i]) < cut) i++;
    if (i) list.splice(0, i);
  }

  function onFrame(f) {
    S.frames++;
    if (S.lastFrameN !== null && f.n > S.lastFrameN + 1) S.framesMissed += f.n - S.lastFrameN - 1;
    S.lastFrameN = f.n;
    S.latest = Math.max(S.latest, f.sample);
    S.behind = f.behind;
    const now = performance.now();
    if (S.viewGaps) {
      let was = 0, is = 0;
      for (const t in f.gaps) { was += S.viewGaps[t]; is += f.gaps[t]; }
      if (is > was) S.viewLoss.push({ s: f.sample, n: is - was });
    }
    S.viewGaps = f.gaps;
    // Counts: cumulative since the view started; this page shows those since it opened.
    if (f.spikes_seq !== null && S.n) {
      if (S.base === null) { S.base = f.counts.slice(); S.baseSeq = f.spikes_seq; }
      if (S.prevCounts && S.rate && f.sample > S.prevSample) {
        const dt = (f.sample - S.prevSample) / S.rate;
        for (let e = 0; e < S.n; e++) {
          const r = ((f.counts[e] || 0) - (S.prevCounts[e] || 0)) / dt;
          S.rates[e] += (r - S.rates[e]) * Math.min(1, dt / 0.5);
        }
      }
      if (!S.prevCounts || f.sample > S.prevSample) { S.prevCounts = f.counts; S.prevSample = f.sample; }
      S.counts = f.counts; S.lastSeq = f.spikes_seq;
    }
    const d = f.spikes.d, t0 = f.spikes.t0, R = S.ring;
    for (let i = 0; i + 1 < d.length; i += 2) {
      const s = t0 + d[i], e = d[i + 1];
      R.s[R.head] = s; R.e[R.head] = e; R.head = (R.head + 1) % RING; if (R.len < RING) R.len++;
      const b = S.byEl[e];
      if (b) { b.s[b.head] = s; b.head = (b.head + 1) % b.s.length; if (b.len < b.s.length) b.len++; }
    }
    S.unlistedSpikes += f.spikes.unlisted; S.unlistedOther += f.unlisted;
    for (const p of f.stim) {
      const [s, e] = p;
      S.stim.push({ s, e, a: p[2] }); S.pulses++;
      if (S.flash && e < S.n) S.flash[e] = now;
      if (!S.pulsedEl.has(e)) { S.pulsedEl.add(e); refreshTriggers(); }
      addTrigger('pulse:' + e, s); addTrigger('any', s);
    }
    for (const ev of f.events) {
      const [s, type, value, samples, el] = ev;
      if (LOSS.has(type)) S.losses.push({ s, n: Math.max(samples, 1), type, open: type === 12 });
      else if (type === 13) { const g = S.losses.filter((x) => x.open); if (g.length) { g[g.length - 1].n = s - g[g.length - 1].s; g[g.length - 1].open = false; } }
      else if (type === 8) S.refused.push({ s, e: el, reason: value });
      else if (type === 14) S.blanks.push({ s, n: samples, e: el });
      else if (type === 3) { S.trials.push({ s, value, label: null }); addTrigger('trial', s); S.pendingTrial = S.trials[S.trials.length - 1]; }
      else if (type === 5) {
        if (S.pendingTrial) { S.pendingTrial.label = value; addTrigger('label:' + value, S.pendingTrial.s); }
        if (!S.labelsSeen.has(value)) { S.labelsSeen.add(value); refreshTriggers(); }
      } else if (type === 4) S.pendingTrial = null;
      else if (type === 6) S.phases.push({ s, value });
    }
    if (f.raw) S.raw = f.raw; else S.raw = null;
    for (const l of [S.stim, S.losses, S.refused, S.trials, S.blanks, S.viewLoss]) keepRecent(l, (x) => x.s + (x.n || 0));
    if (S.phases.length > 1) { const cut = S.latest - KEEP_S * (S.rate || 1); while (S.phases.length > 1 && S.phases[1].s < cut) S.phases.shift(); }
    advancePsth();
  }

  function onRaw(buf) {
    const v = new DataView(buf);
    if (buf.byteLength < 16 || v.getUint32(0, true) !== 0x5752564d) return;   // "MVRW"
    const n = v.getUint32(4, true), bs = v.getUint32(8, true), nb = v.getUint32(12, true);
    let off = 16; const ch = [];
    for (let i = 0; i < n; i++, off += 2) ch.push(v.getUint16(off, true));
    off = (off + 3) & ~3;
    const samples = new Float64Array(nb);
    for (let b = 0; b < nb; b++, off += 8) samples[b] = v.getFloat64(off, true);
    const cap = Math.ceil(TRACE_S * 1.5 * (S.rate || 1000) / Math.max(bs, 1)) + 16;
    const tr = ch.map((c) => {
      let t = S.traces.get(c);
      if (!t || t.s.length !== cap) { t = { s: new Float64Array(cap), mn: new Int16Array(cap), mx: new Int16Array(cap), head: 0, len: 0, bs }; S.traces.set(c, t); }
      return t;
    });
    for (let b = 0; b < nb; b++) {
      for (let i = 0; i < n; i++, off += 4) {
        const t = tr[i];
        t.s[t.head] = samples[b]; t.mn[t.head] = v.getInt16(off, true); t.mx[t.head] = v.getInt16(off + 2, true);
        t.head = (t.head + 1) % t.s.length; if (t.len < t.s.length) t.len++;
      }
    }
  }

  // ---------- PSTH ----------
  // Triggers wait until the spike stream has passed their window, then the
  // chosen electrode's spikes around them are counted once.
  function refreshTriggers() {
    const sel = $('psth-trigger'), keep = S.psth.trig;
    sel.innerHTML = '';
    const add = (v, t) => { const o = document.createElement('option'); o.value = v; o.textContent = t; sel.appendChild(o); };
    add('any', 'any pulse');
    [...S.pulsedEl].sort((a, b) => a - b).forEach((e) => add('pulse:' + e, 'pulse on ' + (S.labels[e] || e)));
    add('trial', 'trial start');
    [...S.labelsSeen].sort((a, b) => a - b).forEach((l) => add('label:' + l, 'trial start, label ' + l));
    sel.value = keep; if (sel.value !== keep) { sel.value = 'any'; S.psth.trig = 'any'; }
  }
  function addTrigger(kind, s) {
    if (kind !== S.psth.trig) return;
    const p = S.psth.pending, last = p.length ? p[p.length - 1] : S.psth.lastTrig;
    // the pulses of one pattern in one tick are one stimulus
    if (last !== undefined && Math.abs(s - last) < (S.rate || 1000) / 1000) return;
    p.push(s); S.psth.lastTrig = s;
  }
  function psthGeometry() {
    const r = S.rate || 1000;
    return { pre: PSTH_PRE_MS * r / 1000, post: PSTH_POST_MS * r / 1000, bin: PSTH_BIN_MS * r / 1000, nb: (PSTH_PRE_MS + PSTH_POST_MS) / PSTH_BIN_MS };
  }
  function resetPsth() {
    const g = psthGeometry(), P = S.psth;
    P.bins = new Float64Array(g.nb); P.n = 0; P.pending = []; P.lastTrig = undefined;
    // what is still in memory counts at once
    const hist = [];
    if (P.trig === 'any' || P.trig.startsWith('pulse:')) {
      const e = P.trig === 'any' ? null : +P.trig.slice(6);
      for (const p of S.stim) if (e === null || p.e === e) hist.push(p.s);
    } else if (P.trig === 'trial') { for (const t of S.trials) hist.push(t.s); }
    else { const l = +P.trig.slice(6); for (const t of S.trials) if (t.label === l) hist.push(t.s); }
    hist.sort((a, b) => a - b);
    for (const s of hist) addTrigger(P.trig, s);
    advancePsth();
  }
  function advancePsth() {
    const P = S.psth, g = psthGeometry(), b = S.byEl[P.el];
    if (!P.bins || !b) return;
    while (P.pending.length && P.pending[0] + g.post <= S.latest) {
      const t = P.pending.shift();
      if (t - g.pre < S.latest - KEEP_S * (S.rate || 1)) continue;   // spikes no longer kept
      for (let k = 0; k < b.len; k++) {
        const s = b.s[(b.head - 1 - k + b.s.length) % b.s.length];
        if (s < t - g.pre) break;
        if (s >= t + g.post) continue;
        P.bins[Math.floor((s - t + g.pre) / g.bin)]++;
      }
      P.n++;
    }
  }

  // ---------- drawing ----------
  function fit(c) {
    const dpr = window.devicePixelRatio || 1, w = Math.round(c.clientWidth * dpr), h = Math.round(c.clientHeight * dpr);
    if (c.width !== w || c.height !== h) { c.width = w; c.height = h; }
    const x = c.getContext('2d'); x.setTransform(dpr, 0, 0, dpr, 0, 0);
    return { x, w: c.clientWidth, h: c.clientHeight };
  }
  const STOPS = [[0, [32, 18, 77]], [0.25, [59, 82, 139]], [0.5, [33, 145, 140]], [0.75, [94, 201, 98]], [1, [253, 231, 37]]];
  function colour(v) {
    v = Math.max(0, Math.min(1, v));
    for (let i = 1; i < STOPS.length; i++) if (v <= STOPS[i][0]) {
      const [a, ca] = STOPS[i - 1], [b, cb] = STOPS[i], t = (v - a) / (b - a);
      return ca.map((q, k) => Math.round(q + (cb[k] - q) * t));
    }
    return STOPS[STOPS.length - 1][1];
  }
  function fmt(v, d) { return v === null || v === undefined ? '–' : typeof v === 'number' ? (d === undefined ? String(v) : v.toFixed(d)) : String(v); }
  function sum(o) { let s = 0; if (o) for (const k in o) s += typeof o[k] === 'number' ? o[k] : 0; return s; }

  function drawMap() {
    if (!S.cells) return;
    const sorted = [...S.rates].filter((_, i) => !S.excluded.has(i)).sort((a, b) => a - b);
    const top = Math.max(10, sorted.length ? sorted[Math.floor(sorted.length * 0.95)] : 10);
    $('legend-max').textContent = top.toFixed(0);
    const now = performance.now();
    let total = 0;
    for (let e = 0; e < S.n; e++) {
      const d = S.cells[e]; if (!d) continue;
      const c = S.base && S.counts ? (S.counts[e] || 0) - (S.base[e] || 0) : 0;
      total += c;
      d.dataset.count = c; d.lastChild.textContent = c;
      d.title = S.labels[e] + ': ' + c + ' spikes since this page opened, ' + S.rates[e].toFixed(1) + ' spikes/s';
      if (!S.excluded.has(e)) {
        const v = Math.log1p(S.rates[e]) / Math.log1p(top), rgb = colour(v);
        d.style.background = 'rgb(' + rgb + ')';
        d.classList.toggle('dark', v < 0.55);
      }
      d.classList.toggle('pulse', now - S.flash[e] < 160);
      d.classList.toggle('traced', S.selected.includes(e));
      d.classList.toggle('psth', S.psth.el === e);
    }
    const w = $('count-window');
    if (S.base !== null) {
      w.dataset.fromSeq = S.baseSeq + 1; w.dataset.toSeq = S.lastSeq; w.dataset.total = total;
      w.textContent = 'counts: ' + total + ' spikes in spikes messages seq ' + (S.baseSeq + 1) + ' to ' + S.lastSeq +
        ' (since this page opened)';
    }
    const lg = $('legend').getContext('2d');
    for (let i = 0; i < 120; i++) { lg.fillStyle = 'rgb(' + colour(i / 119) + ')'; lg.fillRect(i, 0, 1, 10); }
  }

  function drawRaster() {
    const { x, w, h } = fit($('raster'));
    x.fillStyle = '#0b0d10'; x.fillRect(0, 0, w, h);
    if (!S.n || !S.rate) { x.fillStyle = '#8a93a0'; x.fillText('waiting for the daemon\u2019s status…', 60, 20); return; }
    const left = 34, top = 10, span = RASTER_S * S.rate, t1 = S.latest, t0 = t1 - span;
    const pw = w - left - 4, ph = h - top - 16, rh = ph / S.n;
    const X = (s) => left + (s - t0) / span * pw, Y = (e) => top + e * rh;
    // phase band
    for (let i = 0; i < S.phases.length; i++) {
      const a = Math.max(S.phases[i].s, t0), b = i + 1 < S.phases.length ? S.phases[i + 1].s : t1;
      if (b < t0) continue;
      x.fillStyle = PHASE_COLOUR[S.phases[i].value] || '#555'; x.fillRect(X(a), 0, X(b) - X(a), 6);
    }
    x.fillStyle = 'rgba(255,77,77,0.30)';
    for (const l of S.losses) { const b = l.open ? t1 : l.s + l.n; if (b >= t0) x.fillRect(X(Math.max(l.s, t0)), top, Math.max(2, X(b) - X(Math.max(l.s, t0))), ph); }
    x.strokeStyle = '#49d17d'; x.fillStyle = '#49d17d'; x.font = '10px sans-serif';
    for (const t of S.trials) {
      if (t.s < t0) continue;
      x.globalAlpha = 0.55; x.beginPath(); x.moveTo(X(t.s) + 0.5, top); x.lineTo(X(t.s) + 0.5, top + ph); x.stroke(); x.globalAlpha = 1;
      if (t.label !== null) x.fillText(String(t.label), X(t.s) + 2, top + 9);
    }
    x.fillStyle = 'rgba(255,210,74,0.75)';
    for (const p of S.stim) if (p.s >= t0 && p.e < S.n) x.fillRect(X(p.s) - 0.75, Y(p.e), 1.5, Math.max(rh, 2));
    x.fillStyle = '#e8edf2';
    const R = S.ring, dot = Math.max(1.2, Math.min(2.5, rh * 0.6));
    let drawn = 0;
    for (let k = 0; k < R.len; k++) {
      const i = (R.head - 1 - k + RING) % RING, s = R.s[i];
      if (s < t0) break;
      if (R.e[i] < S.n) { x.fillRect(X(s), Y(R.e[i]) + (rh - dot) / 2, dot, dot); drawn++; }
    }
    x.strokeStyle = '#ff7a45'; x.lineWidth = 1.5;
    for (const r of S.refused) {
      if (r.s < t0) continue;
      const cx = X(r.s), rows = r.e === ALL ? [...Array(S.n).keys()] : [r.e];
      for (const e of rows) { const cy = Y(e) + rh / 2, q = Math.max(2, rh * 0.4); x.beginPath(); x.moveTo(cx - q, cy - q); x.lineTo(cx + q, cy + q); x.moveTo(cx + q, cy - q); x.lineTo(cx - q, cy + q); x.stroke(); }
    }
    x.lineWidth = 1;
    x.fillStyle = '#c77dff';
    for (const g of S.viewLoss) if (g.s >= t0) x.fillRect(X(g.s) - 1.5, top, 3, ph);
    // labels and time axis
    x.fillStyle = '#8a93a0'; x.font = '9px sans-serif'; x.textAlign = 'right';
    const every = Math.max(1, Math.ceil(9 / rh));
    for (let e = 0; e < S.n; e += every) x.fillText(S.labels[e], left - 3, Y(e) + rh / 2 + 3);
    x.textAlign = 'center';
    for (let s = 0; s <= RASTER_S; s += 2) { x.textAlign = s === 0 ? 'right' : 'center'; x.fillText(s === 0 ? 'now' : '-' + s + ' s', X(t1 - s * S.rate), h - 3); }
    x.textAlign = 'left';
    $('raster-span').textContent = RASTER_S;
    const notes = [];
    if (S.unlistedSpikes) notes.push(S.unlistedSpikes + ' spikes counted but not drawn (too many per frame)');
    if (S.behind) notes.push('the view is catching up: spikes not drawn for now');
    $('raster-note').textContent = notes.join('; ');
    S.rasterDrawn = drawn;
  }

  function drawTraces() {
    const { x, w, h } = fit($('traces'));
    x.fillStyle = '#0b0d10'; x.fillRect(0, 0, w, h);
    const note = $('traces-note');
    S.tracesDrawn = 0;
    $('traces').classList.toggle('idle', !S.raw);
    if (!S.raw) {
      note.textContent = S.status ? (S.status.raw_channels ? 'waiting for raw…' : 'raw is off (streams.raw, or a driver without raw)') : '';
      x.fillStyle = '#8a93a0'; x.fillText(note.textContent, 12, 20); return;
    }
    const upc = S.raw.uv_per_count || 1, thr = S.raw.thresholds_uv || null, src = S.raw.threshold_source;
    note.textContent = 'the last ' + TRACE_S + ' s, min and max of every ' + S.raw.bin_samples + ' samples; threshold: ' +
      (src === 'driver' ? 'the driver\u2019s' : src === 'recomputed' ? S.raw.threshold_k + ' \u00d7 noise, recomputed from raw' : 'none');
    const chans = S.selected.filter((c) => S.traces.has(c));
    if (!chans.length) { x.fillStyle = '#8a93a0'; x.fillText('click an electrode on the map to show its trace', 12, 20); return; }
    const left = 60, span = TRACE_S * S.rate, t1 = S.latest, t0 = t1 - span, pw = w - left - 6, sh = h / chans.length;
    const X = (s) => left + (s - t0) / span * pw;
    chans.forEach((c, k) => {
      const t = S.traces.get(c), y0 = k * sh, mid = y0 + sh / 2;
      const blanked = (s) => S.blanks.some((b) => (b.e === ALL || b.e === c) && s >= b.s - t.bs && s < b.s + b.n);
      // the scale follows the signal, not the artifacts of blanked windows (they are clipped)
      let peak = 1;
      for (let i = 0; i < t.len; i++) {
        const j = (t.head - 1 - i + t.s.length) % t.s.length; if (t.s[j] < t0) break;
        if (!blanked(t.s[j])) peak = Math.max(peak, Math.abs(t.mn[j] * upc), Math.abs(t.mx[j] * upc));
      }
      const th = thr && thr[c] ? thr[c] : 0, scale = Math.max(peak * 1.1, th * 1.6, 10), half = sh / 2 - 4;
      const Y = (uv) => mid - Math.max(-1, Math.min(1, uv / scale)) * half;
      x.fillStyle = 'rgba(150,160,178,0.45)';
      for (const b of S.blanks) if ((b.e === ALL || b.e === c) && b.s + b.n >= t0) x.fillRect(X(Math.max(b.s, t0)) - 1, y0 + 2, Math.max(3, X(b.s + b.n) - X(Math.max(b.s, t0)) + 2), sh - 4);
      x.strokeStyle = '#2c323b'; x.beginPath(); x.moveTo(left, y0 + sh - 0.5); x.lineTo(w, y0 + sh - 0.5); x.stroke();
      x.strokeStyle = '#7fc8ff'; x.beginPath();
      for (let i = t.len - 1; i >= 0; i--) {
        const j = (t.head - 1 - i + t.s.length) % t.s.length; if (t.s[j] < t0) continue;
        const px = X(t.s[j]) + 0.5; x.moveTo(px, Y(t.mx[j] * upc)); x.lineTo(px, Y(t.mn[j] * upc) + 0.5); S.tracesDrawn++;
      }
      x.stroke();
      if (th) { x.strokeStyle = '#ff5a5a'; x.setLineDash([4, 3]); x.beginPath(); x.moveTo(left, Y(-th)); x.lineTo(w, Y(-th)); x.stroke(); x.setLineDash([]); }
      x.fillStyle = '#d8dde4'; x.font = '11px sans-serif'; x.fillText(S.labels[c] || ('ch ' + c), 6, y0 + 14);
      x.fillStyle = '#8a93a0'; x.font = '9px sans-serif';
      x.fillText('\u00b1' + scale.toFixed(0) + ' \u00b5V', 6, y0 + 26);
      if (th) x.fillText('thr ' + (-th).toFixed(1), 6, y0 + 37);
    });
  }

  function drawPsth() {
    const { x, w, h } = fit($('psth'));
    x.fillStyle = '#0b0d10'; x.fillRect(0, 0, w, h);
    const P = S.psth, g = psthGeometry();
    if (!P.bins) return;
    const left = 34, bottom = 16, pw = w - left - 6, ph = h - bottom - 6, binS = PSTH_BIN_MS / 1000;
    let top = 1; const hz = [...P.bins].map((v) => P.n ? v / P.n / binS : 0); for (const v of hz) top = Math.max(top, v);
    const bw = pw / g.nb;
    x.fillStyle = '#5ab0ff';
    hz.forEach((v, i) => { const bh = v / top * ph; x.fillRect(left + i * bw + 0.5, 6 + ph - bh, Math.max(1, bw - 1), bh); });
    const zx = left + PSTH_PRE_MS / (PSTH_PRE_MS + PSTH_POST_MS) * pw;
    x.strokeStyle = '#ffd24a'; x.beginPath(); x.moveTo(zx + 0.5, 4); x.lineTo(zx + 0.5, 6 + ph); x.stroke();
    x.fillStyle = '#8a93a0'; x.font = '9px sans-serif'; x.textAlign = 'center';
    for (let ms = -PSTH_PRE_MS; ms <= PSTH_POST_MS; ms += 50) x.fillText(ms + ' ms', left + (ms + PSTH_PRE_MS) / (PSTH_PRE_MS + PSTH_POST_MS) * pw, h - 3);
    x.textAlign = 'right'; x.fillText(top.toFixed(0) + ' Hz', left - 3, 12); x.fillText('0', left - 3, 6 + ph);
    x.textAlign = 'left';
    const sel = $('psth-trigger');
    $('psth-note').textContent = (S.labels[P.el] || '') + ' around ' + (sel.options[sel.selectedIndex] ? sel.options[sel.selectedIndex].textContent : '') +
      ': ' + P.n + ' stimuli, spikes/s per ' + PSTH_BIN_MS + ' ms bin' + (S.unlistedSpikes ? ' (some spikes were not listed: counts low)' : '');
  }

  function drawStatus() {
    const st = S.status, b = S.bridge, rows = [];
    const row = (k, v, cls) => rows.push('<tr><th>' + k + '</th><td' + (cls ? ' class="' + cls + '"' : '') + '>' + v + '</td></tr>');
    const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' }[c]));
    if (st) {
      const L = st.loop || {}, P = st.protocol || {}, X = st.streams || {};
      row('state', esc(st.state) + (L.exit_reason ? ' (' + esc(L.exit_reason) + ')' : ''), st.state === 'faulted' ? 'bad' : '');
      row('driver', esc(st.driver_name) + ', ' + fmt(st.sample_rate_hz) + ' Hz, ' + (st.virtual_clock ? 'virtual clock' : 'real-time clock'));
      row('loop', fmt(L.ticks) + ' ticks, ' + fmt(L.overruns) + ' overruns (worst ' + fmt(L.worst_overrun_us, 0) + ' \u00b5s)', L.overruns ? 'warn' : '');
      if (L.latency_us) row('wake-up latency', 'p99 ' + fmt(L.latency_us.p99, 0) + ' \u00b5s, max ' + fmt(L.latency_us.max, 0) + ' \u00b5s');
      row('spikes', fmt(L.spikes) + (L.spikes_dropped ? ', ' + L.spikes_dropped + ' dropped' : ''), L.spikes_dropped ? 'bad' : '');
      const refused = L.stim_refused ? Object.entries(L.stim_refused).map(([k, v]) => k + ' ' + v).join(', ') : '';
      row('pulses', fmt(L.stim_pulses) + ' delivered, ' + fmt(L.stim_late) + ' late, ' + fmt(L.stim_rejected) + ' refused' + (refused ? ' (' + esc(refused) + ')' : ''), L.stim_rejected ? 'warn' : '');
      const loss = L.data_loss ? Object.entries(L.data_loss).filter(([, v]) => v.events).map(([k, v]) => k + ' ' + v.events + ' (' + v.samples + ' samples)') : [];
      row('data lost by the rig', loss.length ? esc(loss.join(', ')) : 'none', loss.length ? 'bad' : '');
      row('stream drops', 'ring ' + sum(X.ring_dropped) + ', subscriber queues ' + sum(X.hwm_dropped), sum(X.ring_dropped) ? 'bad' : sum(X.hwm_dropped) ? 'warn' : '');
      const losing = (X.clients || []).filter((c) => c.losing);
      row('subscribers', fmt(X.subscribers) + (losing.length ? ', losing: ' + esc(losing.map((c) => c.peer + ' (' + sum(c.dropped) + ')').join(', ')) : ''), losing.length ? 'warn' : '');
      if (P.trial !== undefined) {
        row('protocol', 'trial ' + fmt(P.trial) + ' of ' + (P.trials === null ? 'no end' : fmt(P.trials)) + (S.phases.length ? ', ' + (PHASE[S.phases[S.phases.length - 1].value] || '') : ''));
        if (P.validation && P.validation.evaluations) row('validation', P.validation.evaluations + ' passes, best ' + fmt(P.validation.best, 3) + ', last ' + fmt(P.validation.last, 3));
        if (P.test) row('accuracy so far', P.test.accuracy === null ? 'no test trial yet' : fmt(P.test.accuracy, 3) + ' (' + P.test.correct + ' of ' + P.test.trials + ')');
      } else row('protocol', P.active === null ? 'none running' : 'protocol ' + P.active);
      if (st.recording) row('recording', esc(st.recording.state) + (sum(st.recording.lost) ? ', ' + sum(st.recording.lost) + ' lost' : ''), sum(st.recording.lost) ? 'bad' : '');
    }
    const vg = sum(S.viewGaps);
    row('this view', (b ? fmt(sum(b.messages)) + ' messages, ' : '') + vg + ' missed' + (S.framesMissed ? ', ' + S.framesMissed + ' frames not received (slow browser)' : '') + (S.behind ? ', catching up' : ''), vg ? 'bad' : '');
    $('status').tBodies[0].innerHTML = rows.join('');
    if (st) {
      const P = st.protocol || {};
      $('headline').innerHTML = '<b>' + esc(st.driver_name) + '</b> \u00b7 ' + esc(st.state) + ' \u00b7 sample ' + fmt(st.loop ? st.loop.sample : null) +
        (P.trial !== undefined ? ' \u00b7 trial ' + P.trial : '') + (P.test && P.test.accuracy !== null && P.test.accuracy !== undefined ? ' \u00b7 accuracy ' + P.test.accuracy.toFixed(3) : '');
    }
  }

  function draw() {
    drawMap(); drawRaster(); drawTraces(); drawPsth(); drawStatus();
  }
  let last = 0;
  function loop(t) { if (t - last > 45) { last = t; draw(); } requestAnimationFrame(loop); }

  $('psth-electrode').addEventListener('change', (e) => { S.psth.el = +e.target.value; resetPsth(); });
  $('psth-trigger').addEventListener('change', (e) => { S.psth.trig = e.target.value; resetPsth(); });

  // What the page shows, for tests and the curious (read-only).
  window.meadView = {
    snapshot() {
      // the counts and their seq window as the map and its caption show them
      const cells = S.cells ? S.cells.map((d) => d ? +d.dataset.count : 0) : [];
      const w = $('count-window').dataset;
      return { connected: S.connected, frames: S.frames, framesMissed: S.framesMissed, layout: { count: S.n, labels: S.labels, excluded: [...S.excluded] },
        fromSeq: w.fromSeq === undefined ? null : +w.fromSeq, toSeq: w.toSeq === undefined ? null : +w.toSeq, counts: cells, pulses: S.pulses, rasterDrawn: S.rasterDrawn || 0,
        tracesDrawn: S.tracesDrawn || 0, traces: [...S.traces.keys()], raw: S.raw, psth: { electrode: S.psth.el, trigger: S.psth.trig, stimuli: S.psth.n },
        blanks: S.blanks.length, trials: S.trials.length, viewGaps: S.viewGaps, behind: S.behind };
    },
    draw,
  };
  requestAnimationFrame(loop);
  connect();
})();
