// The ward station (issue 18): a tile per bed, an alarm banner, tones and announcements, all
// mirrored from the server's view (/ws/ward: the whole view with each bed's trend on
// connecting, then whenever it changes and at least every 2 s). The alarms live on the server
// (alarm_engine): this page raises, clears or silences nothing there; Acknowledge and Pause
// (admins and clinicians only) ask the server, and show what it answers. This script keeps
// the link, the tiles and the actions; the banner, tones, announcements and flashing are
// ward-alarms.js (window.neopainWardAlarms, loaded first).
//
// Only what is current is shown: when no view came for STALE_VIEW_MS (about 2 heartbeats),
// every tile turns grey ("no current data", the bed's last assessment time), the banner says
// its alarms are not current, and the status line says the station is disconnected; a lost
// link is retried with growing pauses. A bed whose stream sends nothing is the server's
// "stale" ("no current assessment"), told apart from "no face" and "cannot assess" by text,
// icon, frame and colour (ward.css). "updated N s ago" counts on the server's clock (the
// offset of its `now` from this computer's), each second.
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
  const MAX_RETRY_MS = 10000;
  const NOTICE_MS = 15000;
  const STATES = {
    pain: "PAIN", nopain: "no pain", uncertain: "uncertain – look at the baby",
    no_face: "no face", cannot_assess: "cannot assess",
    stale: "no current assessment", offline: "no current data",
  };
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const {clock, hhmm, describe, pausedUntil} = window.neopainWardAlarms;

  let view = null;  // the last view received
  let offsetMs = 0;  // the server's clock minus this computer's
  let receivedAt = -Infinity;  // performance.now() of the last view
  let current = false;
  let socket = null;
  let connectedAt = 0;  // performance.now() of the last connection attempt
  let retries = 0;
  const trends = new Map();  // session id → [[ms, P(pain)], ...], oldest first
  const tiles = new Map();  // session id → its tile
  let pauseSession = null;
  let noticeTimer = null;

  const serverNow = () => Date.now() + offsetMs;
  const alarmSide = window.neopainWardAlarms.start({now: serverNow});

  function ago(ms) {
    const s = Math.max(0, Math.round((serverNow() - ms) / 1000));
    if (s < 90) return `${s} s`;
    if (s < 5400) return `${Math.round(s / 60)} min`;
    return `${Math.round(s / 3600)} h`;
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
    alarmSide.heed(message.beds);
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
    alarmSide.show({beds, current, seenAt: view ? receivedAtMs() : null});
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
    const device = tile.querySelector(".bed-device");  // a bed device's camera, not a browser's
    device.hidden = !bed.device;
    device.textContent = bed.device ? `bed device ${bed.device}` : "";
    device.title = device.textContent;
    const label = tile.querySelector(".bed-state");
    label.textContent = STATES[state];
    label.dataset.state = state;
    let confidence = "confidence –";
    if (assessed) {
      confidence = bed.confidence === null ? "borderline"
        : `confidence ${Math.round(bed.confidence * 100)}%`;
    }
    tile.querySelector(".bed-confidence").textContent = confidence;
    tile.querySelector(".bed-age").textContent = ageText(bed, state);
    const pause = tile.querySelector(".bed-pause");
    const until = pausedUntil(bed, serverNow());
    pause.hidden = until === null;
    tile.querySelector(".bed-pause-text").textContent = pause.hidden ? ""
      : `Alarms paused until ${hhmm(until)} — ${bed.pause_reason}`;
    tile.dataset.paused = String(!pause.hidden);
    for (const button of tile.querySelectorAll(".pause-open, .pause-end")) {
      button.disabled = !current;
    }
    drawTrend(tile, bed);
    fillAlarms(tile.querySelector(".bed-alarms"), bed.alarms, !pause.hidden);
  }

  function ageText(bed, state) {
    // uncertain is a current answer about a face seen just now, though not an assessment of
    // pain (no last_assessment_at while a stream was never sure): its age is the last frame's
    if (state === "uncertain") return `updated ${ago(Date.parse(bed.last_frame_at))} ago`;
    if (bed.last_assessment_at === null) return "no assessment yet";
    const last = Date.parse(bed.last_assessment_at);
    if (["pain", "nopain"].includes(state)) return `updated ${ago(last)} ago`;
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

  function fillAlarms(list, alarms, paused) {
    // a paused bed's alarms stay on its tile, marked; they do not sound or sit in the banner
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
      item.dataset.paused = String(paused);
      item.querySelector(".alarm-text").replaceChildren(...describe(alarm, true, paused));
      const ack = item.querySelector(".ack");
      if (ack) {
        ack.hidden = alarm.acknowledged_at !== null;
        ack.disabled = !current || ack.dataset.busy === "true";
      }
    });
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

  // --- every 250 ms: current or not, ages, the link, the alarm side ---------------------------

  function tick() {
    const fresh = performance.now() - receivedAt <= STALE_VIEW_MS;
    if (fresh !== current) {
      current = fresh;
      render();  // the alarm side tells of a lost server (its tick, below)
    } else {
      updateAges();
      showLink();
    }
    // a socket open but silent (a hung server or proxy) is dropped, and tried again
    if (socket && performance.now() - Math.max(receivedAt, connectedAt) > 2 * STALE_VIEW_MS) {
      socket.close();
    }
    alarmSide.tick();
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

  // ended: the pause was ended (not judged by the clocks: this computer's estimate of the
  // server's may lag the end it was told). The alarm side hears the change at once, so a
  // resumed alarm sounds and is told once, now, and not again when the next view comes.
  function applyPause(answer, ended = false) {
    const bed = bedOf(answer.session_id);
    if (!bed) return;
    const future = !ended && Date.parse(answer.paused_until) > serverNow();
    bed.paused_until = future ? answer.paused_until : null;
    bed.pause_reason = future ? answer.reason : null;
    render();
    alarmSide.heed(view.beds);
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
    applyPause(result.answer, true);
  }

  if (CAN_ACT) {
    $("pause-form").addEventListener("submit", submitPause);
    $("pause-cancel").addEventListener("click", () => $("pause-dialog").close());
  }
  setInterval(tick, 250);
  connect();
})();
