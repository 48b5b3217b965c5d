// The ward station's alarm side (issue 18): the banner of unacknowledged alarms, tones,
// aria-live announcements and the flashing title and favicon. The alarms live on the server
// (alarm_engine): this script only tells of those in the view ward.js received; it raises,
// clears or silences nothing. Loaded before ward.js, it sets window.neopainWardAlarms:
//
//   clock(ms), hhmm(ms)     the station's times ("14:05:09", "14:05"), this computer's zone
//   describe(alarm, onTile) an alarm's text as nodes: marker, priority, title, since (on a
//                           tile: acknowledged by whom and when; in the banner: the patient)
//   start()                 wires "Enable sound" and returns the station's alarms:
//     show({beds, current, seenAt})  what the station now shows (after every render): the
//                           banner; seenAt, when the last view came (ms), null before the first
//     heed(beds)            a view came: new or escalated unacknowledged alarms are announced
//                           and sound once (the most urgent)
//     tick()                every 250 ms: flash the title and icon; repeat the high tone
//     announce(text)        say text in the aria-live region
//
// Tones: alarm-high.wav and alarm-medium.wav were made once with numpy + wave (11025 Hz,
// 16-bit mono; each pulse a fundamental and its 2nd-5th harmonics at 1/k amplitude, 20 ms
// rise and fall), patterned on IEC 60601-1-8: high = 523 Hz, two bursts of 5 pulses (3 + 2)
// of 150 ms, 100 ms apart; medium = 440 Hz, 3 pulses of 200 ms, 200 ms apart (low-priority
// alarms play it too). Browsers play sound only after a click on the page (autoplay
// rules): "Enable sound" makes the AudioContext and decodes both files. A new or escalated
// alarm sounds once; an unacknowledged high alarm again every REPEAT_HIGH_MS. Tones played:
// document.body.dataset.tones (for tests).
(() => {
  "use strict";
  const $ = (id) => document.getElementById(id);
  // the ?v= of this script's address (render.asset_version): the tones of the same release
  const VERSION = new URL(document.currentScript.src).search;
  const REPEAT_HIGH_MS = 10000;
  const PRIORITY = {high: 0, medium: 1, low: 2};
  const MARK = {high: "!!!", medium: "!!", low: "!"};  // IEC 60601-1-8's visual markers
  const ALARM_ICON = "data:image/svg+xml," + encodeURIComponent(
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" ' +
    'height="32" rx="5" fill="#a61b1b"/><path d="M16 4 30 28H2z" fill="#fff"/><path ' +
    'd="M14.5 12h3l-.5 9h-2zM14.5 23h3v3h-3z" fill="#a61b1b"/></svg>');

  const two = (n) => String(n).padStart(2, "0");
  const clock = (ms) => {
    const d = new Date(ms);
    return `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
  };
  const hhmm = (ms) => clock(ms).slice(0, 5);

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function describe(alarm, onTile) {
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

  function start() {
    const titleText = document.title;
    const favicon = document.querySelector('link[rel="icon"]');
    const faviconHref = favicon.getAttribute("href");
    let beds = [];  // the beds the station shows
    let current = false;
    let seenAt = null;
    let bannerKey = null;
    const heard = new Map();  // alarm id → "raised" or "escalated": what was sounded and said
    let audio = null;
    const buffers = {};
    let tones = 0;
    let lastHighAt = -Infinity;
    document.body.dataset.tones = "0";

    function unacknowledged() {
      const alarms = beds.flatMap((bed) => bed.alarms).filter((a) => a.acknowledged_at === null);
      return alarms.sort((a, b) => PRIORITY[a.priority] - PRIORITY[b.priority]
        || (b.escalated_at !== null) - (a.escalated_at !== null)
        || Date.parse(a.raised_at) - Date.parse(b.raised_at));
    }

    function show(shown) {
      ({beds, current, seenAt} = shown);
      renderBanner();
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
      if (!current && seenAt !== null) {
        children.push(element("p", "banner-stale", `Not current: alarms as of ${clock(seenAt)}.`));
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
          item.append(...describe(alarm, false));
          list.append(item);
        }
        children.push(list);
      }
      banner.replaceChildren(...children);
    }

    function heed(viewBeds) {
      const news = [];
      const seen = new Set();
      for (const alarm of viewBeds.flatMap((bed) => bed.alarms)) {
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
          const response = await fetch(`/static/alarm-${priority}.wav${VERSION}`);
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
      else if (seenAt !== null && !current) title = `Disconnected · ${titleText}`;
      if (document.title !== title) document.title = title;
      const href = lit ? ALARM_ICON : faviconHref;
      if (favicon.getAttribute("href") !== href) favicon.setAttribute("href", href);
      document.body.dataset.flashing = String(standing > 0);
    }

    function tick() {
      flash();
      const high = current && unacknowledged().some((a) => a.priority === "high");
      if (high && performance.now() - lastHighAt >= REPEAT_HIGH_MS) play("high");
    }

    $("sound").addEventListener("click", enableSound);
    return {show, heed, tick, announce};
  }

  window.neopainWardAlarms = {clock, hhmm, describe, start};
})();
