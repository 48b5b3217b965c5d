// The ward station (issue 18): a tile per bed, an alarm banner, tones and announcements, all
// mirrored from the server's view (/ws/ward: the whole view with each bed's trend on
// connecting, then whenever it changes and at least every 2 s). The alarms live on the server
// (alarm_engine): this page raises, clears or silences nothing there; Acknowledge and Pause
// (admins and clinicians only) ask the server, and show what it answers.
//
// Only what is current is shown: when no view came for STALE_VIEW_MS (about 2 heartbeats),
// every tile turns grey ("no current data", the bed's last assessment time), the banner says
// its alarms are not current, and the status line says the station is disconnected; a lost
// link is retried with growing pauses. A bed whose stream sends nothing is the server's
// "stale" ("no current assessment"), told apart from "no face" and "cannot assess" by text,
// icon, frame and colour (ward.css). "updated N s ago" counts on the server's clock (the
// offset of its `now` from this computer's), each second.
//
// Tones: alarm-high.wav and alarm-medium.wav were made once with numpy + wave (11025 Hz,
// 16-bit mono; each pulse a fundamental and its 2nd-5th harmonics at 1/k amplitude, 20 ms
// rise and fall), patterned on IEC 60601-1-8: high = 523 Hz, two bursts of 5 pulses (3 + 2)
// of 150 ms, 100 ms apart; medium = 440 Hz, 3 pulses of 200 ms, 200 ms apart (low-priority
// alarms play it too). Browsers play sound only after a click on the page (autoplay
// rules): "Enable sound" makes the AudioContext and decodes both files. A new or escalated
// alarm sounds once; an unacknowledged high alarm again every REPEAT_HIGH_MS. Tones played:
// document.body.dataset.tones (for tests).
//
// The sparkline is an SVG path drawn here (a dozen lines): a chart library would be a
// vendored dependency many times this file's size for one line per tile.
(() => {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const root = $("ward");
  const CAN_ACT = root.dataset.canAct === "true";
  const STALE_VIEW_MS = 5000;
  const TREND_MS = 600000;  // the sparkline's span, the server's ward.TREND_S
  const GAP_MS = 30000;  // points further apart are not joined
  const REPEAT_HIGH_MS = 10000;
  const MAX_RETRY_MS = 10000;
  const NOTICE_MS = 15000;
  const PRIORITY = {high: 0, medium: 1, low: 2};
  const MARK = {high: "!!!", medium: "!!", low: "!"};  // IEC 60601-1-8's visual markers
  const STATES = {
    pain: "PAIN", nopain: "no pain", no_face: "no face", cannot_assess: "cannot assess",
    stale: "no current assessment", offline: "no current data",
  };
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const titleText = document.title;
  const favicon = document.querySelector('link[rel="icon"]');
  const faviconHref = favicon.getAttribute("href");
  const ALARM_ICON = "data:image/svg+xml," + encodeURIComponent(
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" ' +
    'height="32" rx="5" fill="#a61b1b"/><path d="M16 4 30 28H2z" fill="#fff"/><path ' +
    'd="M14.5 12h3l-.5 9h-2zM14.5 23h3v3h-3z" fill="#a61b1b"/></svg>');

  let view = null;  // the last view received
  let offsetMs = 0;  // the server's clock minus this computer's
  let receivedAt = -Infinity;  // performance.now() of the last view
  let current = false;
  let socket = null;
  let connectedAt = 0;  // performance.now() of the last connection attempt
  let retries = 0;
  const trends = new Map();  // session id → [[ms, P(pain)], ...], oldest first
  const tiles = new Map();  // session id → its tile
  const heard = new Map();  // alarm id → "raised" or "escalated": what was sounded and said
  let audio = null;
  const buffers = {};
  let tones = 0;
  let lastHighAt = -Infinity;
  let bannerKey = null;
  let pauseSession = null;
  let noticeTimer = null;
  document.body.dataset.tones = "0";

  const serverNow = () => Date.now() + offsetMs;
  const two = (n) => String(n).padStart(2, "0");
  const clock = (ms) => {
    const d = new Date(ms);
    return `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
  };
  const hhmm = (ms) => clock(ms).slice(0, 5);

  function ago(ms) {
    const s = Math.max(0, Math.round((serverNow() - ms) / 1000));
    if (s < 90) return `${s} s`;
    if (s < 5400) return `${Math.round(s / 60)} min`;
    return `${Math.round(s / 3600)} h`;
  }

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function unacknowledged() {
    const alarms = view ? view.beds.flatMap((bed) => bed.alarms)
      .filter((a) => a.acknowledged_at === null) : [];
    return alarms.sort((a, b) => PRIORITY[a.priority] - PRIORITY[b.priority]
      || (b.escalated_at !== null) - (a.escalated_at !== null)
      || Date.parse(a.raised_at) - Date.parse(b.raised_at));
  }

  // --- the link -------------------------------------------------------------------------------

  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    socket = new WebSocket(`${scheme}//${location.host}/ws/ward`);
    connectedAt = performance.now();
    socket.onmessage = (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "ward") receive(message);
    };
    socket.onclose = (event) => {
      socket = null;
      if (event.code === 4401) {
        location.href = `/login?next=${encodeURIComponent(location.pathname)}`;
        return;
      }
      retries += 1;
      const delay = Math.min(MAX_RETRY_MS, 1000 * 2 ** Math.min(retries - 1, 4));
      setTimeout(connect, delay);
      showLink();
    };
  }

  function showLink() {
    const link = $("link");
    let text = "Connected: live.";
    let state = "live";
    if (!view) {
      state = "connecting";
      text = socket ? "Connecting…" : "Cannot reach the server; retrying…";
    } else if (!current) {
      state = "lost";
      text = `Disconnected: no current data since ${clock(receivedAtMs())}. ` +
        (socket ? "Waiting for the server." : "Reconnecting…");
    } else if (!socket) {
      state = "lost";
      text = "Connection lost; reconnecting…";
    }
    if (link.textContent !== text) link.textContent = text;
    link.dataset.link = state;
  }

  function receivedAtMs() {
    return Date.now() - (performance.now() - receivedAt);
  }

  function receive(message) {
    receivedAt = performance.now();
    offsetMs = Date.parse(message.now) - Date.now();
    retries = 0;
    const at = Date.parse(message.now);
    for (const bed of message.beds) {
      if (bed.trend) {
        trends.set(bed.session_id, bed.trend.map(([time, p]) => [Date.parse(time), p]));
      } else if (bed.prob_pain !== null && (bed.state === "pain" || bed.state === "nopain")) {
        const points = trends.get(bed.session_id) || [];
        points.push([at, bed.prob_pain]);
        trends.set(bed.session_id, points);
      }
    }
    const open = new Set(message.beds.map((bed) => bed.session_id));
    for (const id of trends.keys()) if (!open.has(id)) trends.delete(id);
    view = message;
    current = true;
    render();
    heedAlarms();
  }

  // --- tiles ----------------------------------------------------------------------------------

  function render() {
    const beds = view ? view.beds : [];
    const open = new Set(beds.map((bed) => bed.session_id));
    for (const [id, tile] of tiles) {
      if (!open.has(id)) {
        tile.remove();
        tiles.delete(id);
      }
    }
    for (const bed of beds) fillTile(tileOf(bed), bed);
    $("empty").hidden = !(view && current && beds.length === 0);
    root.dataset.current = String(current);
    renderBanner();
    showLink();
  }

  function tileOf(bed) {
    let tile = tiles.get(bed.session_id);
    if (tile) return tile;
    tile = $("bed-template").content.firstElementChild.cloneNode(true);
    tile.id = `bed-${bed.session_id}`;
    tile.dataset.session = String(bed.session_id);
    const open = tile.querySelector(".pause-open");
    if (open) open.addEventListener("click", () => openPause(bed.session_id));
    const end = tile.querySelector(".pause-end");
    if (end) end.addEventListener("click", () => endPause(bed.session_id, end));
    tiles.set(bed.session_id, tile);
    $("beds").append(tile);  // the server lists beds oldest first: a new one comes last
    return tile;
  }

  function fillTile(tile, bed) {
    const state = current ? bed.state : "offline";
    const assessed = state === "pain" || state === "nopain";
    tile.dataset.state = state;
    const name = tile.querySelector(".bed-name");
    name.textContent = bed.patient;
    name.title = bed.patient;  // a long name is cut short on the tile
    const label = tile.querySelector(".bed-state");
    label.textContent = STATES[state];
    label.dataset.state = state;
    let confidence = "confidence –";
    if (assessed) {
      confidence = bed.confidence === null ? "uncertain"
        : `confidence ${Math.round(bed.confidence * 100)}%`;
    }
    tile.querySelector(".bed-confidence").textContent = confidence;
    tile.querySelector(".bed-age").textContent = ageText(bed, state);
    const pause = tile.querySelector(".bed-pause");
    const until = bed.paused_until === null ? null : Date.parse(bed.paused_until);
    pause.hidden = until === null || until <= serverNow();
    tile.querySelector(".bed-pause-text").textContent = pause.hidden ? ""
      : `Alarms paused until ${hhmm(until)} — ${bed.pause_reason}`;
    tile.dataset.paused = String(!pause.hidden);
    for (const button of tile.querySelectorAll(".pause-open, .pause-end")) {
      button.disabled = !current;
    }
    drawTrend(tile, bed);
    fillAlarms(tile.querySelector(".bed-alarms"), bed.alarms);
  }

  function ageText(bed, state) {
    if (bed.last_assessment_at === null) return "no assessment yet";
    const last = Date.parse(bed.last_assessment_at);
    if (state === "pain" || state === "nopain") return `updated ${ago(last)} ago`;
    if (state === "stale" || state === "offline") return `last: ${clock(last)}`;
    return `last assessed ${ago(last)} ago`;
  }

  function drawTrend(tile, bed) {
    const from = serverNow() - TREND_MS;
    const points = (trends.get(bed.session_id) || []).filter(([time]) => time >= from);
    trends.set(bed.session_id, points);
    let path = "";
    let previous = -Infinity;
    for (const [time, p] of points) {
      const x = ((time - from) / TREND_MS) * 600;
      const y = 2 + (1 - p) * 96;
      path += `${time - previous > GAP_MS ? "M" : "L"}${x.toFixed(1)} ${y.toFixed(1)}`;
      previous = time;
    }
    tile.querySelector(".spark-line").setAttribute("d", path);
    tile.querySelector(".spark").setAttribute("aria-label", points.length
      ? "Smoothed P(pain), last 10 minutes" : "No P(pain) in the last 10 minutes");
  }

  function fillAlarms(list, alarms) {
    const keep = new Set(alarms.map((alarm) => String(alarm.id)));
    for (const item of [...list.children]) if (!keep.has(item.dataset.alarm)) item.remove();
    alarms.forEach((alarm, index) => {
      let item = list.querySelector(`[data-alarm="${alarm.id}"]`);
      if (!item) {
        item = $("alarm-template").content.firstElementChild.cloneNode(true);
        item.dataset.alarm = String(alarm.id);
        const ack = item.querySelector(".ack");
        if (ack) {
          ack.setAttribute("aria-label", `Acknowledge ${alarm.title}: ${alarm.patient}`);
          ack.addEventListener("click", () => acknowledge(alarm.id, ack));
        }
      }
      if (list.children[index] !== item) list.insertBefore(item, list.children[index] || null);
      item.dataset.priority = alarm.priority;
      item.dataset.escalated = String(alarm.escalated_at !== null);
      item.dataset.acknowledged = String(alarm.acknowledged_at !== null);
      item.querySelector(".alarm-text").replaceChildren(...alarmText(alarm, true));
      const ack = item.querySelector(".ack");
      if (ack) {
        ack.hidden = alarm.acknowledged_at !== null;
        ack.disabled = !current || ack.dataset.busy === "true";
      }
    });
  }

  function alarmText(alarm, onTile) {
    const mark = element("span", "mark", MARK[alarm.priority]);
    mark.setAttribute("aria-hidden", "true");
    const parts = [mark, element("span", "sr-only", `${alarm.priority} priority: `), " "];
    if (!onTile) parts.push(element("strong", "alarm-who", alarm.patient), " ");
    parts.push(`${alarm.title} since ${hhmm(Date.parse(alarm.condition_since))}`);
    if (alarm.escalated_at !== null) parts.push(" ", element("span", "escalated", "ESCALATED"));
    if (onTile && alarm.acknowledged_at !== null) {
      parts.push(element("span", "acked", ` acknowledged by ${alarm.acknowledged_by || "?"} ` +
                                          `at ${hhmm(Date.parse(alarm.acknowledged_at))}`));
    }
    return parts;
  }

  function renderBanner() {
    const banner = $("banner");
    const alarms = unacknowledged();
    const key = JSON.stringify([current, alarms.map((a) => [a.id, a.escalated_at])]);
    if (key === bannerKey) return;
    bannerKey = key;
    banner.dataset.alarms = String(alarms.length);
    banner.dataset.current = String(current);
    const top = alarms.length ? alarms[0].priority : "none";
    banner.dataset.priority = current ? top : "none";
    const children = [];
    if (!current && view) {
      children.push(element("p", "banner-stale",
                            `Not current: alarms as of ${clock(receivedAtMs())}.`));
    }
    if (!alarms.length) {
      children.push(element("p", "banner-none", "No unacknowledged alarms."));
    } else {
      const list = element("ul", "banner-list");
      for (const alarm of alarms) {
        const item = element("li");
        item.dataset.priority = alarm.priority;
        item.dataset.alarm = String(alarm.id);
        item.dataset.escalated = String(alarm.escalated_at !== null);
        item.append(...alarmText(alarm, false));
        list.append(item);
      }
      children.push(list);
    }
    banner.replaceChildren(...children);
  }

  function updateAges() {
    if (!view) return;
    for (const bed of view.beds) {
      const tile = tiles.get(bed.session_id);
      if (!tile) continue;
      const text = ageText(bed, tile.dataset.state);
      const age = tile.querySelector(".bed-age");
      if (age.textContent !== text) age.textContent = text;
    }
  }

  // --- alarms: sound, announcements, title and icon -------------------------------------------

  function heedAlarms() {
    const news = [];
    const seen = new Set();
    for (const alarm of view.beds.flatMap((bed) => bed.alarms)) {
      seen.add(alarm.id);
      const now = alarm.escalated_at !== null ? "escalated" : "raised";
      const before = heard.get(alarm.id);
      heard.set(alarm.id, now);
      if (alarm.acknowledged_at === null && before !== now) news.push(alarm);
    }
    for (const id of heard.keys()) if (!seen.has(id)) heard.delete(id);
    if (!news.length) return;
    news.sort((a, b) => PRIORITY[a.priority] - PRIORITY[b.priority]);
    announce(news.map((a) => `${a.escalated_at !== null ? "Escalated" : "New"} ` +
                              `${a.priority}-priority alarm: ${a.title}, ${a.patient}.`).join(" "));
    play(news[0].priority);
  }

  function announce(text) {
    const region = $("announce");
    region.textContent = "";
    setTimeout(() => { region.textContent = text; }, 50);
  }

  function soundIsOn() {
    return audio !== null && audio.state === "running" && buffers.high !== undefined;
  }

  function play(priority) {
    if (!soundIsOn()) return;
    const source = audio.createBufferSource();
    source.buffer = buffers[priority === "high" ? "high" : "medium"];
    source.connect(audio.destination);
    source.start();
    if (priority === "high") lastHighAt = performance.now();
    tones += 1;
    document.body.dataset.tones = String(tones);
  }

  async function enableSound() {
    try {
      audio = audio || new AudioContext();
      audio.onstatechange = showSound;
      await audio.resume();
      for (const priority of ["high", "medium"]) {
        if (buffers[priority]) continue;
        const response = await fetch(`/static/alarm-${priority}.wav`);
        if (!response.ok) throw new Error(`the tone could not be loaded (${response.status})`);
        buffers[priority] = await audio.decodeAudioData(await response.arrayBuffer());
      }
    } catch (error) {
      showSound(`Sound off: ${error.message || error.name}`);
      return;
    }
    showSound();
    const standing = current ? unacknowledged() : [];
    if (standing.length) play(standing[0].priority);
  }

  function showSound(problem) {
    const on = soundIsOn();
    const state = $("sound-state");
    state.dataset.sound = on ? "on" : "off";
    state.textContent = on ? "Sound on" : typeof problem === "string" ? problem : "Sound off";
    $("sound").hidden = on;
  }

  function flash() {
    const standing = current ? unacknowledged().length : 0;
    const lit = standing > 0 && Math.floor(performance.now() / 1000) % 2 === 0;
    let title = titleText;
    if (standing) title = lit ? `(${standing}) ALARM · ${titleText}` : titleText;
    else if (view && !current) title = `Disconnected · ${titleText}`;
    if (document.title !== title) document.title = title;
    const href = lit ? ALARM_ICON : faviconHref;
    if (favicon.getAttribute("href") !== href) favicon.setAttribute("href", href);
    document.body.dataset.flashing = String(standing > 0);
  }

  function tick() {
    const fresh = performance.now() - receivedAt <= STALE_VIEW_MS;
    if (fresh !== current) {
      current = fresh;
      render();
      if (!current) announce("Station disconnected: nothing shown is current.");
    } else {
      updateAges();
      showLink();
    }
    // a socket open but silent (a hung server or proxy) is dropped, and tried again
    if (socket && performance.now() - Math.max(receivedAt, connectedAt) > 2 * STALE_VIEW_MS) {
      socket.close();
    }
    flash();
    const high = current && unacknowledged().some((a) => a.priority === "high");
    if (high && performance.now() - lastHighAt >= REPEAT_HIGH_MS) play("high");
  }

  // --- acting: acknowledge, pause -------------------------------------------------------------

  function notice(text) {
    // what an action did, until the next action or NOTICE_MS
    const line = $("notice");
    line.textContent = text;
    line.hidden = !text;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => { line.hidden = true; }, NOTICE_MS);
  }

  async function post(url, body) {
    const headers = {"X-CSRF-Token": csrf};
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(url, {
      method: "POST", credentials: "same-origin", headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let answer = null;
    try {
      answer = await response.json();
    } catch (error) {
      answer = null;
    }
    if (response.status === 401) location.href = `/login?next=${location.pathname}`;
    const detail = answer && answer.detail;
    const reason = typeof detail === "string" ? detail
      : Array.isArray(detail) ? detail.map((d) => d.msg).join("; ") : `HTTP ${response.status}`;
    return {ok: response.ok, answer, reason};
  }

  async function acknowledge(alarmId, button) {
    button.dataset.busy = "true";
    button.disabled = true;
    let result;
    try {
      result = await post(`/api/alarms/${alarmId}/ack`);
    } catch (error) {
      result = {ok: false, reason: "the server cannot be reached"};
    }
    button.dataset.busy = "false";
    button.disabled = !current;
    if (!result.ok) {
      notice(`Not acknowledged: ${result.reason}`);
      return;
    }
    const alarm = result.answer;
    notice(`Acknowledged: ${alarm.title}, ${alarm.patient}.`);
    for (const bed of view.beds) {
      bed.alarms = bed.alarms.map((a) => (a.id === alarm.id ? alarm : a));
    }
    render();
  }

  function bedOf(sessionId) {
    return view ? view.beds.find((bed) => bed.session_id === sessionId) : undefined;
  }

  function openPause(sessionId) {
    const bed = bedOf(sessionId);
    if (!bed) return;
    pauseSession = sessionId;
    $("pause-patient").textContent = bed.patient;
    $("pause-error").hidden = true;
    $("pause-dialog").showModal();
    $("pause-reason").focus();
  }

  function applyPause(answer) {
    const bed = bedOf(answer.session_id);
    if (!bed) return;
    const future = Date.parse(answer.paused_until) > serverNow();
    bed.paused_until = future ? answer.paused_until : null;
    bed.pause_reason = future ? answer.reason : null;
    render();
  }

  async function submitPause(event) {
    event.preventDefault();
    const minutes = parseInt($("pause-minutes").value, 10);
    const reason = $("pause-reason").value.trim();
    let result;
    try {
      result = await post(`/api/sessions/${pauseSession}/pause-alarms`, {minutes, reason});
    } catch (error) {
      result = {ok: false, reason: "the server cannot be reached"};
    }
    if (!result.ok) {
      $("pause-error").textContent = `Not paused: ${result.reason}`;
      $("pause-error").hidden = false;
      return;
    }
    $("pause-dialog").close();
    $("pause-reason").value = "";
    notice(`Alarms of ${$("pause-patient").textContent} paused for ${minutes} min.`);
    applyPause(result.answer);
  }

  async function endPause(sessionId, button) {
    button.disabled = true;
    let result;
    try {
      result = await post(`/api/sessions/${sessionId}/pause-alarms`,
                          {minutes: 0, reason: "resumed from the ward station"});
    } catch (error) {
      result = {ok: false, reason: "the server cannot be reached"};
    }
    button.disabled = !current;
    if (!result.ok) {
      notice(`Alarms not resumed: ${result.reason}`);
      return;
    }
    notice("Alarms resumed.");
    applyPause(result.answer);
  }

  $("sound").addEventListener("click", enableSound);
  if (CAN_ACT) {
    $("pause-form").addEventListener("submit", submitPause);
    $("pause-cancel").addEventListener("click", () => $("pause-dialog").close());
  }
  setInterval(tick, 250);
  connect();
})();
