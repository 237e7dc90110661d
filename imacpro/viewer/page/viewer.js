// The machine's page (viewer/page.py serves it): the screen through noVNC's RFB client over
// the TOKEN/rfb WebSocket; the status, COM1 and the power button over TOKEN/machine.
import RFB from './vendor/novnc/core/rfb.js';
import { Terminal } from './vendor/xterm/xterm.mjs';
import { FitAddon } from './vendor/xterm/addon-fit.mjs';

const HOLD_TO_POWER_OFF_MS = 4000;
const $ = (id) => document.getElementById(id);

// Everything lives under the page's own URL, which carries its token.
function socketUrl(path) {
  const url = new URL(path, location.href);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  return url.href;
}

let poweredOff = false;

function showState(kind, text) {
  const state = $('state');
  state.dataset.state = kind;
  state.textContent = text;
}

function showOverlay(text) {
  $('overlay-text').textContent = text;
  $('overlay').hidden = !text;
}

function duration(seconds) {
  const s = Math.floor(seconds), h = Math.floor(s / 3600), m = Math.floor(s % 3600 / 60);
  const two = (n) => String(n).padStart(2, '0');
  return h ? `${h}:${two(m)}:${two(s % 60)}` : `${m}:${two(s % 60)}`;
}

function showStatus(status) {
  const c = status.configuration;
  $('name').textContent = status.name;
  document.title = `${status.name} — iMac Pro`;
  $('configuration').textContent =
    `iMac Pro · ${c.cpu}-core Intel ${c.processor} (${c.threads} threads) · ` +
    `${c.memory_gb} GB · ${c.graphics} · ${c.storage} SSD`;
  $('screenshot').download = `${status.name}.png`;
  const up = `up ${duration(status.uptime_s)}`;
  if (status.state === 'running') showState('running', `running · ${up}`);
  else showState('starting', `starting · ${up}`);
}

function poweredOffNow() {
  poweredOff = true;
  showState('off', 'powered off');
  showOverlay('The machine is powered off.');
  for (const id of ['power', 'serial-toggle']) $(id).disabled = true;
  $('screenshot').setAttribute('aria-disabled', 'true');
}

// --- the screen, keyboard and mouse --------------------------------------------------------

let rfb = null;

function connectScreen() {
  rfb = new RFB($('screen'), socketUrl('rfb'));
  rfb.scaleViewport = true;
  rfb.background = '#000';
  rfb.addEventListener('connect', () => {
    showOverlay('');
    rfb.focus();
  });
  rfb.addEventListener('disconnect', () => {
    rfb = null;
    if (!poweredOff) {
      showOverlay('Reconnecting to the screen…');
      setTimeout(connectScreen, 1000);
    }
  });
}

// --- the machine: status, COM1, power --------------------------------------------------------

const terminal = new Terminal({ fontSize: 13, scrollback: 10000, convertEol: false,
                                theme: { background: '#000000' } });
const fit = new FitAddon();
terminal.loadAddon(fit);
terminal.open($('terminal'));
new ResizeObserver(() => { if (!$('serial').hidden) fit.fit(); }).observe($('serial'));

let machine = null;

function send(message) {
  if (machine && machine.readyState === WebSocket.OPEN) machine.send(message);
}

function connectMachine() {
  machine = new WebSocket(socketUrl('machine'));
  machine.binaryType = 'arraybuffer';
  machine.onmessage = (event) => {
    if (typeof event.data !== 'string') {
      terminal.write(new Uint8Array(event.data));
      return;
    }
    const message = JSON.parse(event.data);
    if (message.status) showStatus(message.status);
    if (message.power === 'press') showState('starting', 'shutting down');
  };
  // The machine's process ends when it powers off: its sockets close with it.
  machine.onclose = poweredOffNow;
}

const encoder = new TextEncoder();
terminal.onData((text) => send(encoder.encode(text)));

$('serial-toggle').addEventListener('click', () => {
  const pane = $('serial');
  pane.hidden = !pane.hidden;
  $('serial-toggle').setAttribute('aria-pressed', String(!pane.hidden));
  if (!pane.hidden) fit.fit();
});

// The power button as on the machine: a press asks the guest to shut down; held, it cuts
// the power once the bar under it has filled.
const power = $('power');
let holdTimer = null;
let held = false;

function releasePower(pressed) {
  if (holdTimer === null) return;
  clearTimeout(holdTimer);
  holdTimer = null;
  power.classList.remove('holding');
  if (pressed && !held) send(JSON.stringify({ power: 'press' }));
}

power.addEventListener('pointerdown', (event) => {
  if (event.button !== 0) return;
  held = false;
  power.classList.add('holding');
  holdTimer = setTimeout(() => {
    held = true;
    holdTimer = null;
    power.classList.remove('holding');
    send(JSON.stringify({ power: 'off' }));
  }, HOLD_TO_POWER_OFF_MS);
});
power.addEventListener('pointerup', () => releasePower(true));
power.addEventListener('pointerleave', () => releasePower(false));
power.addEventListener('keydown', (event) => {
  if (event.key === 'Enter' || event.key === ' ') {
    event.preventDefault();
    send(JSON.stringify({ power: 'press' }));
  }
});

connectMachine();
connectScreen();
