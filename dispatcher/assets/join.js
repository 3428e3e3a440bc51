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
  audio: { f440: -200, f660: -200, frames: 0 }, log: [], pc: null,
});

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

async function listDevices() {
  try {
    const devs = await navigator.mediaDevices.enumerateDevices();
    for (const d of devs) {
      const sel = d.kind === 'audioinput' ? $('mic') : d.kind === 'videoinput' ? $('cam') : null;
      if (!sel || !d.deviceId) continue;
      const o = document.createElement('option');
      o.value = d.deviceId;
      o.textContent = d.label || (d.kind === 'audioinput' ? 'Microphone ' : 'Camera ') + (sel.length);
      sel.appendChild(o);
    }
  } catch (e) { log('devices: ' + e); }
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
    mode: $('mix').checked ? 'mix' : 'reflect',
    mic: $('mic').value, cam: $('cam').value,
  });
});

// ---- joining ----------------------------------------------------------------------------

async function start(o) {
  opts = o;
  leaving = false;
  $('lobby-error').textContent = '';
  $('join-button').disabled = true;
  try {
    const audio = { echoCancellation: false, noiseSuppression: false, autoGainControl: false };
    if (o.mic) audio.deviceId = { exact: o.mic };
    local = await navigator.mediaDevices.getUserMedia({
      audio, video: o.cam ? { deviceId: { exact: o.cam } } : false,
    });
  } catch (e) {
    $('join-button').disabled = false;
    $('lobby-error').textContent = 'Cannot open your microphone: ' + e.message;
    return;
  }
  $('lobby').hidden = true;
  $('room').hidden = false;
  $('room-title').textContent = o.conference;
  document.title = o.conference + ' | NOC Meet';
  history.replaceState(null, '', '/join?' + new URLSearchParams({
    conference: o.conference, account: o.account, name: o.name,
    ...(o.mode === 'mix' ? { mode: 'mix' } : {}),
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
    const ws = new WebSocket(wsBase() + '/ws');
    let done = false;
    ws.onmessage = (ev) => {
      const f = ev.data.replace(/\r?\n$/, '').split('\t');
      if (f[0] === 'connect') {
        ws.send(['join', clean(opts.conference), clean(opts.account), clean(opts.name),
          'mode=' + opts.mode, 'app=noc-web', 'os=' + clean(navigator.platform || 'web')].join('\t'));
      } else if (f[0] === 'dispatch') {
        done = true;
        ws.send('endsession');
        resolve({ url: f[1], ticket: f[2] });
      } else if (f[0] === 'reject' || f[0] === 'error') {
        done = true;
        const err = new Error(f.slice(2).join(' ') || f[1]);
        // Retryable codes (480, 503) are worth another go; the rest are the user's to fix.
        err.fatal = !['480', '503'].includes(f[1]);
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
          'mode=' + opts.mode, 'ticket=' + ticket, 'app=noc-web'].join('\t'));
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
        if (['480', '503'].includes(f[1])) { setTimeout(() => connect(attempt + 1), 300); }
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

async function offer() {
  closePc();
  const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' });
  noc.pc = pc;
  for (const t of local.getAudioTracks()) pc.addTrack(t, local);
  pc.ontrack = (e) => playRemote(e.streams[0] || new MediaStream([e.track]));
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
}

// ---- what we hear -----------------------------------------------------------------------

let audioCtx = null;
let analyser = null;
function playRemote(stream) {
  const el = $('remote-audio');
  el.srcObject = stream;
  el.play().catch(() => {});
  // Chromium feeds a remote track to Web Audio only while a media element plays it.
  if (!audioCtx) audioCtx = new AudioContext();
  audioCtx.resume().catch(() => {});
  const src = audioCtx.createMediaStreamSource(stream);
  analyser = audioCtx.createAnalyser();
  analyser.fftSize = 8192;
  analyser.smoothingTimeConstant = 0;
  src.connect(analyser);
}

// Levels at the test tones, averaged over the last second: what the room sounds like.
const spectrum = new Float32Array(4096);
const hist = { f440: [], f660: [] };
setInterval(() => {
  if (!analyser) return;
  analyser.getFloatFrequencyData(spectrum);
  const at = (hz) => {
    const i = Math.round((hz * analyser.fftSize) / audioCtx.sampleRate);
    return Math.max(spectrum[i - 1], spectrum[i], spectrum[i + 1]);
  };
  for (const k of ['f440', 'f660']) {
    hist[k].push(at(k === 'f440' ? 440 : 660));
    if (hist[k].length > 10) hist[k].shift();
    const p = hist[k].reduce((a, d) => a + Math.pow(10, d / 10), 0) / hist[k].length;
    noc.audio[k] = 10 * Math.log10(p || 1e-20);
  }
  noc.audio.frames += 1;
}, 100);

// ---- the room ---------------------------------------------------------------------------

function clearTiles() { $('tiles').innerHTML = ''; members.clear(); }

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
  }
  $('tiles').appendChild(t);
  members.set(id, { name, tile: t });
  if (!me) chatSys(name + ' joined');
}

function removeTile(id) {
  const m = members.get(id);
  if (!m) return;
  m.tile.remove();
  members.delete(id);
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
});

// A link with ?conference=&account=&name= opens the room at once.
listDevices();
for (const k of ['conference', 'account', 'name']) if (params.get(k)) $(k).value = params.get(k);
$('mix').checked = params.get('mode') === 'mix';
$('name').dispatchEvent(new Event('input'));
if (params.get('conference') && params.get('account') && params.get('name')) {
  start({
    conference: params.get('conference'), account: params.get('account'), name: params.get('name'),
    mode: params.get('mode') === 'mix' ? 'mix' : 'reflect', mic: '', cam: '',
  });
}
