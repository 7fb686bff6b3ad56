// BitBrat overlays (OBS browser sources): alerts queued one at a time, or a chat box. Options are URL
// parameters: `follow`, `sub`, `gift`, `cheer`, `raid` (text templates with {name} {tier} {count} {bits}
// {viewers} {message}), `sound` or `<kind>.sound` (an audio URL), `duration` (ms an alert stays),
// and for the chat box `max` (lines kept) and `fade` (seconds before a line fades; 0 never).
const params = new URLSearchParams(location.search);
const kind = document.body.dataset.overlay === 'chat' ? 'chat' : 'alerts';

const TEMPLATES = {
  follow: '{name} just followed!',
  sub: '{name} subscribed at tier {tier}!',
  gift: '{name} gifted {count} subs!',
  cheer: '{name} cheered {bits} bits!',
  raid: '{name} is raiding with {viewers} viewers!',
};

/** Fills `{field}` from the alert; unknown fields stay as written. */
function render(template, alert) {
  return template.replace(/\{(\w+)\}/g, (whole, field) =>
    alert[field] === undefined || alert[field] === null ? whole : String(alert[field]),
  );
}

// ---------------------------------------------------------------------------------------------- alerts

const queue = [];
let showing = false;
const alertBox = document.getElementById('alert');
const alertText = alertBox.querySelector('.alert-text');
const duration = Math.max(1000, Number(params.get('duration')) || 5000);
const wait = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function showNext() {
  if (showing) return;
  const alert = queue.shift();
  if (!alert) return;
  showing = true;
  alertText.textContent = render(params.get(alert.kind) || TEMPLATES[alert.kind] || '{name}', alert);
  alertBox.dataset.kind = alert.kind;
  alertBox.dataset.alertId = alert.id;
  alertBox.className = 'alert show';
  const sound = params.get(`${alert.kind}.sound`) || params.get('sound');
  if (sound) {
    const audio = new Audio(sound);
    audio.volume = Math.min(1, Math.max(0, Number(params.get('volume') ?? 0.8)));
    audio.play().catch(() => undefined);
  }
  await wait(duration);
  alertBox.className = 'alert hide';
  await wait(450);
  alertBox.className = 'alert';
  delete alertBox.dataset.alertId;
  alertText.textContent = '';
  showing = false;
  void showNext();
}

// ------------------------------------------------------------------------------------------------ chat

const chatList = document.getElementById('chat');
const maxLines = Math.max(1, Number(params.get('max')) || 20);
const fadeSeconds = Number(params.get('fade') ?? 0);

function addLine(line) {
  const item = document.createElement('li');
  item.dataset.id = line.id;
  const name = document.createElement('span');
  name.className = 'name';
  name.textContent = line.name;
  if (line.color) name.style.color = line.color;
  const text = document.createElement('span');
  text.className = 'text';
  text.textContent = line.text;
  item.append(name, text);
  chatList.append(item);
  while (chatList.children.length > maxLines) chatList.firstElementChild.remove();
  if (fadeSeconds > 0) setTimeout(() => item.classList.add('fade'), fadeSeconds * 1000);
}

// ------------------------------------------------------------------------------------------------ feed

const seen = new Set();
let source;

/** Whether an id was handled already (a reconnect may repeat the newest items); keeps the last 500. */
function firstTime(id) {
  if (seen.has(id)) return false;
  seen.add(id);
  if (seen.size > 500) seen.delete(seen.values().next().value);
  return true;
}

/** Opens the feed; after a platform restart EventSource retries by itself, and a refused retry is redone here. */
function connect() {
  const url = `/overlay/feed?kind=${kind}&key=${encodeURIComponent(params.get('key') ?? '')}`;
  source = new EventSource(url);
  source.addEventListener('hello', () => {
    document.body.dataset.state = 'connected';
  });
  source.addEventListener('alert', (event) => {
    const alert = JSON.parse(event.data);
    if (!firstTime(alert.id)) return;
    queue.push(alert);
    void showNext();
  });
  source.addEventListener('chat', (event) => {
    const line = JSON.parse(event.data);
    if (!firstTime(line.id)) return;
    addLine(line);
  });
  source.addEventListener('error', () => {
    document.body.dataset.state = 'reconnecting';
    // EventSource gives up on an HTTP error (e.g. 503 while the platform starts); keep trying.
    if (source.readyState === EventSource.CLOSED) setTimeout(connect, 3000);
  });
}

connect();
