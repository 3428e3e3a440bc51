// NOC Meet: the browser client. It speaks the control lines (docs/protocol.md) over the
// dispatcher's /ws, follows `dispatch` to the media server's WebSocket, joins with the
// ticket, sends its WebRTC offer as `sdp` lines and plays what the server sends. On a lost
// media link it goes back to the dispatcher and joins again, as confclient does.
'use strict';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
// What tests and people can read from the console.
const noc = (window.noc = {
  phase: 'lobby', participant: null, server: null, joins: 0,
  audio: { f440: -200, f550: -200, f660: -200, f770: -200, f1000: -200, frames: 0 }, log: [], pc: null,
  slots: {}, // mid -> participant whose stream the slot plays (the server's `slot` lines)
  // Join timing (performance.now() ms): the first WebSocket to the dispatcher, and the
  // first remote audio frame the browser decoded and played out.
  timing: { wsOpen: null, firstAudio: null },
});
// Receive slots the page offers: one track per other member's stream, no renegotiation.
const AUDIO_SLOTS = 8;
const VIDEO_SLOTS = 8;
// The test tones the page measures (Hz).
const TONES = [440, 550, 660, 770, 1000];

function log(m) {
  noc.log.push(new Date().toISOString().slice(11, 23) + ' ' + m);
  if (noc.log.length > 300) noc.log.shift();
}

function setStatus(kind, text) {
  $('status').className = 'status ' + kind;
  $('status-text').textContent = text;
}

const wsBase = () => (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host;
const clean = (s) => String(s).replace(/[\t\r\n]/g, ' ');

let opts = null;          // { conference, account, name, mode, mic, cam }
let local = null;         // the microphone (and camera) stream
let media = null;         // the media server's WebSocket
let leaving = false;
let pingTimer = null;
let pttHeld = false;
const members = new Map(); // participant -> { name, tile }

// ---- lobby ----------------------------------------------------------------------------

const voice = { echoCancellation: false, noiseSuppression: false, autoGainControl: false };
let preview = null; // the lobby's stream: camera preview and microphone level

// Fills the pickers (device ids and names show only once the page may use them) and
// selects the devices in use: the first camera, unless none.
async function listDevices(using) {
  try {
    const devs = await navigator.mediaDevices.enumerateDevices();
    for (const sel of [$('mic'), $('cam')]) while (sel.length > 1) sel.remove(1);
    for (const d of devs) {
      const sel = d.kind === 'audioinput' ? $('mic') : d.kind === 'videoinput' ? $('cam') : null;
      if (!sel || !d.deviceId) continue;
      const o = document.createElement('option');
      o.value = d.deviceId;
      o.textContent = d.label || (d.kind === 'audioinput' ? 'Microphone ' : 'Camera ') + (sel.length);
      sel.appendChild(o);
    }
    const cam = using && using.getVideoTracks()[0];
    const id = cam && cam.getSettings().deviceId;
    if (id && [...$('cam').options].some((o) => o.value === id)) $('cam').value = id;
    else if ($('cam').length > 1) $('cam').selectedIndex = 1;
  } catch (e) { log('devices: ' + e); }
}

// The lobby shows what you will send: the camera, and how loud the microphone is.
async function startPreview() {
  try {
    preview = await navigator.mediaDevices.getUserMedia({ audio: voice, video: true });
  } catch (e) {
    try { preview = await navigator.mediaDevices.getUserMedia({ audio: voice }); } catch (e2) {
      $('lobby-error').textContent = 'Cannot open your microphone: ' + e2.message;
      return;
    }
  }
  await listDevices(preview);
  showPreview();
  const ctx = new AudioContext();
  const an = ctx.createAnalyser();
  an.fftSize = 1024;
  ctx.createMediaStreamSource(preview).connect(an);
  const buf = new Float32Array(an.fftSize);
  const meter = setInterval(() => {
    if (!preview) { clearInterval(meter); ctx.close(); return; }
    an.getFloatTimeDomainData(buf);
    const rms = Math.sqrt(buf.reduce((a, v) => a + v * v, 0) / buf.length);
    $('preview-level').style.width = Math.min(100, Math.round(rms * 400)) + '%';
  }, 100);
}

function showPreview() {
  const tile = document.querySelector('.preview-tile');
  let v = tile.querySelector('video');
  const on = preview && $('cam').value && preview.getVideoTracks().length;
  if (!on) { if (v) v.remove(); return; }
  if (!v) { v = document.createElement('video'); v.autoplay = true; v.muted = true; v.playsInline = true; tile.prepend(v); }
  v.srcObject = new MediaStream(preview.getVideoTracks());
}
$('cam').addEventListener('change', showPreview);

function stopPreview() {
  if (preview) for (const t of preview.getTracks()) t.stop();
  preview = null;
}

$('name').addEventListener('input', () => {
  $('preview-avatar').textContent = ($('name').value.trim()[0] || '?').toUpperCase();
});

$('join-form').addEventListener('submit', (e) => {
  e.preventDefault();
  start({
    conference: $('conference').value.trim(),
    account: $('account').value.trim(),
    name: $('name').value.trim(),
    mode: $('composite').checked ? 'composite' : $('mix').checked ? 'mix' : 'reflect',
    mic: $('mic').value, cam: $('cam').value,
  });
});

// ---- joining ----------------------------------------------------------------------------

async function start(o) {
  opts = o;
  leaving = false;
  $('lobby-error').textContent = '';
  $('join-button').disabled = true;
  stopPreview();
  const audio = { ...voice };
  if (o.mic) audio.deviceId = { exact: o.mic };
  const video = o.cam === 'default' ? true : o.cam ? { deviceId: { exact: o.cam } } : false;
  try {
    local = await navigator.mediaDevices.getUserMedia({ audio, video });
  } catch (e) {
    // No camera (or it is busy): join with the microphone alone.
    try {
      if (!video) throw e;
      local = await navigator.mediaDevices.getUserMedia({ audio });
      log('camera unavailable: ' + e.message);
    } catch (e2) {
      $('join-button').disabled = false;
      $('lobby-error').textContent = 'Cannot open your microphone: ' + e2.message;
      return;
    }
  }
  $('lobby').hidden = true;
  $('room').hidden = false;
  $('room-title').textContent = o.conference;
  document.title = o.conference + ' | NOC Meet';
  history.replaceState(null, '', '/join?' + new URLSearchParams({
    conference: o.conference, account: o.account, name: o.name,
    ...(o.mode !== 'reflect' ? { mode: o.mode } : {}),
    ...(o.cam ? {} : { camera: 'off' }),
  }));
  connect(0);
}

// The dispatcher tells us where to go; on failure we try again, a little later each time.
async function connect(attempt) {
  if (leaving) return;
  setStatus('wait', attempt ? 'Reconnecting…' : 'Finding a server…');
  noc.phase = 'dispatching';
  try {
    const { url, ticket } = await dispatch();
    joinMedia(url, ticket, attempt);
  } catch (e) {
    log('dispatch failed: ' + e.message);
    if (e.fatal) return fail(e.message);
    setTimeout(() => connect(attempt + 1), Math.min(250 * (attempt + 1), 2000));
  }
}

function dispatch() {
  return new Promise((resolve, reject) => {
    if (noc.timing.wsOpen === null) noc.timing.wsOpen = performance.now();
    const ws = new WebSocket(wsBase() + '/ws');
    let done = false;
    ws.onmessage = (ev) => {
      const f = ev.data.replace(/\r?\n$/, '').split('\t');
      if (f[0] === 'connect') {
        ws.send(['join', clean(opts.conference), clean(opts.account), clean(opts.name),
          'mode=' + opts.mode, ...mediaOpts(), 'app=noc-web',
          'os=' + clean(navigator.platform || 'web')].join('\t'));
      } else if (f[0] === 'dispatch') {
        done = true;
        ws.send('endsession');
        resolve({ url: f[1], ticket: f[2] });
      } else if (f[0] === 'reject' || f[0] === 'error') {
        done = true;
        const err = new Error(f.slice(2).join(' ') || f[1]);
        // Retryable codes (480, 503) are worth another go; the rest are the user's to fix.
        err.fatal = !['480', '503'].includes(f[1]);
        // 409: the servers carry no video; join with audio alone.
        if (f[1] === '409' && !opts.audioOnly) { opts.audioOnly = true; err.fatal = false; }
        reject(err);
        ws.close();
      }
    };
    ws.onerror = () => { if (!done) { done = true; reject(new Error('dispatcher unreachable')); } };
    ws.onclose = () => { if (!done) { done = true; reject(new Error('dispatcher closed')); } };
  });
}

function send(line) {
  if (media && media.readyState === WebSocket.OPEN) media.send(line);
}

// The highest simulcast layer this page wants (0 = lowest; null: what its bandwidth allows).
noc.layer = (max) => send('layer\t' + (max == null ? 'auto' : max));

function joinMedia(url, ticket, attempt) {
  noc.phase = 'joining';
  noc.server = url;
  const ws = new WebSocket(url);
  media = ws;
  let answer = [];
  let accepted = false;
  ws.onmessage = async (ev) => {
    if (ws !== media) return;
    const f = ev.data.replace(/\r?\n$/, '').split('\t');
    switch (f[0]) {
      case 'connect':
        ws.send(['join', clean(opts.conference), clean(opts.account), clean(opts.name),
          'mode=' + opts.mode, ...mediaOpts(), 'ticket=' + ticket, 'app=noc-web'].join('\t'));
        break;
      case 'accept':
        accepted = true;
        noc.participant = Number(f[2]);
        noc.joins += 1;
        clearTiles();
        addTile(noc.participant, opts.name + ' (you)', true);
        await offer();
        break;
      case 'adduser': if (Number(f[1]) !== noc.participant) addTile(Number(f[1]), f[2], false); break;
      case 'deluser': removeTile(Number(f[1])); break;
      case 'speaking': tileOf(f[1], (t) => t.classList.toggle('speaking', f[2] === 'on')); break;
      case 'quality': tileOf(f[1], (t) => { t.querySelector('.q').className = 'q ' + f[2]; }); break;
      case 'text': chat(f[1], f.slice(2).join('\t')); break;
      case 'sdp': answer.push(f[2]); break;
      case 'slot': setSlot(f[1], Number(f[2])); break;
      case 'sdpend':
        try {
          await noc.pc.setRemoteDescription({ type: 'answer', sdp: answer.join('\r\n') + '\r\n' });
          log('answer set');
        } catch (e) { log('answer refused: ' + e); }
        answer = [];
        break;
      case 'dispatch': // moved or punted: follow with the new ticket
        log('dispatched to ' + f[1]);
        media = null;
        ws.close();
        closePc();
        joinMedia(f[1], f[2], attempt);
        break;
      case 'reject': {
        media = null;
        ws.close();
        if (f[1] === '409' && !opts.audioOnly) { opts.audioOnly = true; setTimeout(() => connect(attempt + 1), 0); }
        else if (['480', '503'].includes(f[1])) { setTimeout(() => connect(attempt + 1), 300); }
        else fail(f.slice(2).join(' '));
        break;
      }
      case 'error': log('server: ' + f.slice(1).join(' ')); break;
      default: break;
    }
  };
  ws.onclose = () => {
    if (ws !== media) return;
    media = null;
    closePc();
    if (leaving) return;
    log('media link lost' + (accepted ? '' : ' before accept'));
    setStatus('wait', 'Reconnecting…');
    chatSys('Connection lost, rejoining…');
    // Back to the dispatcher, as confclient does: it knows where the room lives now.
    setTimeout(() => connect(attempt + 1), 100);
  };
  clearInterval(pingTimer);
  pingTimer = setInterval(() => send('ping'), 1000);
}

// The TURN servers the dispatcher hands this account (none unless its operator set them).
async function iceServers() {
  try {
    const r = await fetch('/api/webrtc/ice-servers?' + new URLSearchParams({ account: opts.account }));
    if (r.ok) return (await r.json()).iceServers || [];
  } catch (e) { log('ice servers: ' + e); }
  return [];
}

async function offer() {
  closePc();
  const servers = await iceServers();
  // `&relay=1`: only through TURN (behind a firewall that lets nothing else out).
  const relay = params.get('relay') === '1';
  if (relay && !servers.length) log('relay asked, but no TURN server is configured');
  const pc = new RTCPeerConnection({
    bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require', iceServers: servers,
    iceTransportPolicy: relay ? 'relay' : 'all',
  });
  noc.pc = pc;
  noc.slots = {};
  for (const t of local.getAudioTracks()) {
    keepCodecs(pc.addTransceiver(t, { direction: 'sendonly', streams: [local] }), 'audio');
  }
  if (!opts.audioOnly) {
    // `&simulcast=1`: three encodings (quarter, half and full size) by rid; the server
    // sends each receiver the one its bandwidth allows.
    const sendEncodings = params.get('simulcast') === '1'
      ? [{ rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150000 },
        { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500000 },
        { rid: 'f', maxBitrate: 2500000 }]
      : undefined;
    for (const t of local.getVideoTracks()) {
      const init = { direction: 'sendonly', streams: [local] };
      if (sendEncodings) init.sendEncodings = sendEncodings;
      keepCodecs(pc.addTransceiver(t, init), 'video');
    }
  }
  // The pool of receive slots: the server puts each other member's stream on one.
  for (let i = 0; i < AUDIO_SLOTS; i++) {
    keepCodecs(pc.addTransceiver('audio', { direction: 'recvonly' }), 'audio');
  }
  if (!opts.audioOnly) {
    for (let i = 0; i < VIDEO_SLOTS; i++) {
      keepCodecs(pc.addTransceiver('video', { direction: 'recvonly' }), 'video', true);
    }
  }
  pc.ontrack = (e) => onTrack(e.transceiver.mid, e.track, e.receiver);
  pc.onicecandidate = (e) => { if (e.candidate) log('local candidate ' + e.candidate.candidate); };
  pc.oniceconnectionstatechange = () => log('ice ' + pc.iceConnectionState);
  pc.onconnectionstatechange = () => {
    log('pc ' + pc.connectionState);
    if (pc.connectionState === 'connected') { noc.phase = 'in-room'; setStatus('on', 'Connected'); }
    if (pc.connectionState === 'failed') setStatus('bad', 'Media failed');
  };
  const o = await pc.createOffer();
  await pc.setLocalDescription(o);
  const lines = pc.localDescription.sdp.split(/\r?\n/).filter((l) => l.length);
  for (const l of lines) send('sdp\toffer\t' + l);
  send('sdpend\toffer\t' + lines.length);
  log('offer sent (' + lines.length + ' lines)');
}

function mediaOpts() {
  // VP8 preferred; the room's codec wins if it has one already.
  return opts.audioOnly ? ['media=audio'] : ['media=audio,video', 'vcodec=vp8,h264'];
}

// Only the codecs the server carries, in its order: Opus; VP8, then H.264 with
// packetization-mode 1 (constrained baseline); on receive slots also their RTX (the
// server retransmits as RTX to a browser). Browsers offer dozens otherwise, and with a
// slot pool the offer would pass the protocol's line limit.
function keepCodecs(tr, kind, rtx) {
  const caps = window.RTCRtpReceiver && RTCRtpReceiver.getCapabilities
    && RTCRtpReceiver.getCapabilities(kind);
  if (!tr.setCodecPreferences || !caps) return;
  const fmtp = (c) => c.sdpFmtpLine || '';
  const pick = kind === 'audio'
    ? caps.codecs.filter((c) => /opus/i.test(c.mimeType))
    : [...caps.codecs.filter((c) => /vp8/i.test(c.mimeType)),
      ...caps.codecs.filter((c) => /h264/i.test(c.mimeType)
        && /packetization-mode=1/.test(fmtp(c)) && /profile-level-id=42e01f/.test(fmtp(c)))];
  if (!pick.length) return;
  // RTX capabilities carry no apt; the browser pairs them with the codecs kept.
  const repair = rtx ? caps.codecs.filter((c) => /rtx/i.test(c.mimeType)).slice(0, 1) : [];
  try { tr.setCodecPreferences([...pick, ...repair]); } catch (e) { log('codec preferences: ' + e); }
}

function closePc() {
  if (noc.pc) { try { noc.pc.close(); } catch (e) { /* already closed */ } }
  noc.pc = null;
}

function fail(text) {
  setStatus('bad', 'Not connected');
  $('room').hidden = true;
  $('lobby').hidden = false;
  $('join-button').disabled = false;
  $('lobby-error').textContent = text;
  noc.phase = 'failed';
  if (local) for (const t of local.getTracks()) t.stop();
  if (!preview) startPreview();
}

// ---- what we hear -----------------------------------------------------------------------

let audioCtx = null;
let analyser = null;
let bus = null;
const slotTracks = new Map(); // mid -> remote track

function onTrack(mid, track, receiver) {
  slotTracks.set(mid, track);
  if (track.kind === 'audio') { playAudio(track); watchFirstAudio(receiver); }
  else showSlotVideo(mid);
}

// The first frame the receiver played out (its synchronization sources appear then).
function watchFirstAudio(receiver) {
  if (!receiver || !receiver.getSynchronizationSources || noc.timing.firstAudio !== null) return;
  const until = performance.now() + 30000;
  const t = setInterval(() => {
    if (noc.timing.firstAudio !== null || performance.now() > until) { clearInterval(t); return; }
    if (receiver.getSynchronizationSources().length) {
      noc.timing.firstAudio = performance.now();
      clearInterval(t);
    }
  }, 5);
}

// Every audio slot plays (the server sends only other members' streams, never ours), and
// all of them feed one analyser: what the room sounds like.
function playAudio(track) {
  const stream = new MediaStream([track]);
  const el = document.createElement('audio');
  el.autoplay = true;
  el.srcObject = stream;
  $('remote-audio-pool').appendChild(el);
  el.play().catch(() => {});
  // Chromium feeds a remote track to Web Audio only while a media element plays it.
  if (!audioCtx) {
    audioCtx = new AudioContext();
    bus = audioCtx.createGain();
    analyser = audioCtx.createAnalyser();
    analyser.fftSize = 8192;
    analyser.smoothingTimeConstant = 0;
    bus.connect(analyser);
  }
  audioCtx.resume().catch(() => {});
  audioCtx.createMediaStreamSource(stream).connect(bus);
}

// A `slot` line: the slot `mid` now plays `participant`'s stream (0: the room's mix).
function setSlot(mid, participant) {
  noc.slots[mid] = participant;
  log('slot ' + mid + ' -> ' + participant);
  showSlotVideo(mid);
}

// A video slot's track goes on its member's tile; the room's composite (participant 0, in
// a composite conference) on a tile of its own.
function showSlotVideo(mid) {
  const track = slotTracks.get(mid);
  const who = noc.slots[mid];
  if (!track || track.kind !== 'video' || who === undefined) return;
  if (who === 0 && !members.has(0)) addTile(0, 'Everyone', false);
  for (const [, m] of members) {
    if (m.videoMid === mid && m.id !== who) { m.videoMid = null; setTileVideo(m, null); }
  }
  const m = members.get(who);
  if (!m) return;
  m.videoMid = mid;
  setTileVideo(m, track);
}

function setTileVideo(m, track) {
  let v = m.tile.querySelector('video.remote');
  if (!track) { if (v) v.remove(); m.tile.classList.remove('has-video'); return; }
  if (!v) {
    v = document.createElement('video');
    v.className = 'remote';
    v.autoplay = true; v.muted = true; v.playsInline = true;
    m.tile.appendChild(v);
  }
  v.srcObject = new MediaStream([track]);
  v.play().catch(() => {});
  m.tile.classList.add('has-video');
}

// For tests and diagnostics: the size of the video on `participant`'s tile.
noc.tileVideo = (participant) => {
  const m = members.get(Number(participant));
  const v = m && m.tile.querySelector('video');
  return v ? { w: v.videoWidth, h: v.videoHeight } : null;
};

// Levels at the test tones, averaged over the last second: what the room sounds like.
const spectrum = new Float32Array(4096);
const hist = Object.fromEntries(TONES.map((hz) => ['f' + hz, []]));
setInterval(() => {
  if (!analyser) return;
  analyser.getFloatFrequencyData(spectrum);
  const at = (hz) => {
    const i = Math.round((hz * analyser.fftSize) / audioCtx.sampleRate);
    return Math.max(spectrum[i - 1], spectrum[i], spectrum[i + 1]);
  };
  for (const hz of TONES) {
    const k = 'f' + hz;
    hist[k].push(at(hz));
    if (hist[k].length > 10) hist[k].shift();
    const p = hist[k].reduce((a, d) => a + Math.pow(10, d / 10), 0) / hist[k].length;
    noc.audio[k] = 10 * Math.log10(p || 1e-20);
  }
  noc.audio.frames += 1;
}, 100);

// ---- the room ---------------------------------------------------------------------------

// Columns and rows for the tile count: 1, 2 side by side, 2x2, 3x3, then 4 wide.
function layoutTiles() {
  // The composite (tile 0) spans a row of its own, about as tall as `cols` tiles.
  const composite = members.has(0);
  const n = Math.max(1, members.size - (composite ? 1 : 0));
  const cols = n <= 1 ? 1 : n <= 4 ? 2 : n <= 9 ? 3 : 4;
  const t = $('tiles');
  t.style.setProperty('--cols', cols);
  t.style.setProperty('--rows', Math.ceil(n / cols) + (composite ? cols : 0));
}

function clearTiles() {
  $('tiles').innerHTML = ''; members.clear();
  $('remote-audio-pool').innerHTML = ''; slotTracks.clear();
}

function addTile(id, name, me) {
  if (members.has(id)) return;
  const t = document.createElement('div');
  t.className = 'tile' + (me ? ' me' : '');
  t.dataset.participant = id;
  const a = document.createElement('div');
  a.className = 'avatar';
  a.textContent = (name.trim()[0] || '?').toUpperCase();
  const n = document.createElement('div');
  n.className = 'name';
  n.innerHTML = '<span class="q"></span><span class="label"></span>';
  n.querySelector('.label').textContent = name;
  t.append(a, n);
  if (me && local && local.getVideoTracks().length) {
    const v = document.createElement('video');
    v.autoplay = true; v.muted = true; v.playsInline = true; v.srcObject = local;
    t.appendChild(v);
    t.classList.add('has-video');
  }
  $('tiles').appendChild(t);
  members.set(id, { id, name, tile: t, videoMid: null });
  layoutTiles();
  // A slot may have named this member before its tile existed.
  for (const [mid, who] of Object.entries(noc.slots)) if (who === id) showSlotVideo(mid);
  if (id === 0) t.classList.add('composite');
  if (!me && id !== 0) chatSys(name + ' joined');
}

function removeTile(id) {
  const m = members.get(id);
  if (!m) return;
  m.tile.remove();
  members.delete(id);
  layoutTiles();
  chatSys(m.name + ' left');
}

function tileOf(id, f) { const m = members.get(Number(id)); if (m) f(m.tile); }

function chat(from, text) {
  const li = document.createElement('li');
  const b = document.createElement('b');
  b.textContent = from;
  li.append(b, document.createTextNode(text));
  $('chat').appendChild(li);
  li.scrollIntoView({ block: 'end' });
}

function chatSys(text) {
  const li = document.createElement('li');
  li.className = 'sys';
  li.textContent = text;
  $('chat').appendChild(li);
}

$('chat-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const v = $('chat-input').value.trim();
  if (!v) return;
  send('text\t' + clean(v));
  $('chat-input').value = '';
});

function micOn() { return local && local.getAudioTracks().some((t) => t.enabled); }
function setMic(on) {
  if (local) for (const t of local.getAudioTracks()) t.enabled = on;
  $('mute').classList.toggle('off', !on);
  $('mute').querySelector('span').textContent = on ? 'Mute' : 'Unmute';
}
$('mute').addEventListener('click', () => setMic(!micOn()));
$('camera').addEventListener('click', () => {
  if (!local) return;
  const v = local.getVideoTracks();
  if (!v.length) { chatSys('No camera selected'); return; }
  for (const t of v) t.enabled = !t.enabled;
  $('camera').classList.toggle('off', !v[0].enabled);
});
// Push to talk: hold the space bar while muted.
document.addEventListener('keydown', (e) => {
  if (e.code !== 'Space' || e.repeat || document.activeElement.tagName === 'INPUT' || micOn()) return;
  pttHeld = true; setMic(true); send('talk\ton'); e.preventDefault();
});
document.addEventListener('keyup', (e) => {
  if (e.code !== 'Space' || !pttHeld) return;
  pttHeld = false; setMic(false); send('talk\toff');
});
$('leave').addEventListener('click', () => {
  leaving = true;
  send('endsession');
  const ws = media; media = null;
  if (ws) ws.close();
  closePc();
  clearInterval(pingTimer);
  if (local) for (const t of local.getTracks()) t.stop();
  setStatus('', 'Left the conference');
  $('room').hidden = true; $('lobby').hidden = false; $('join-button').disabled = false;
  noc.phase = 'left';
  startPreview();
});

// A link with ?conference=&account=&name= opens the room at once, camera on where there
// is one (`&camera=off`: microphone only).
for (const k of ['conference', 'account', 'name']) if (params.get(k)) $(k).value = params.get(k);
$('mix').checked = params.get('mode') === 'mix';
$('composite').checked = params.get('mode') === 'composite';
$('name').dispatchEvent(new Event('input'));
if (params.get('conference') && params.get('account') && params.get('name')) {
  start({
    conference: params.get('conference'), account: params.get('account'), name: params.get('name'),
    mode: ['mix', 'composite'].includes(params.get('mode')) ? params.get('mode') : 'reflect', mic: '',
    cam: params.get('camera') === 'off' ? '' : 'default',
  });
} else {
  startPreview();
}
