// The ward station's alarm side (issue 18): the banner of unacknowledged alarms, tones,
// aria-live announcements and the flashing title and favicon. The alarms live on the server
// (alarm_engine): this script only tells of those in the view ward.js received; it raises,
// clears or silences nothing. Loaded before ward.js, it sets window.neopainWardAlarms:
//
//   clock(ms), hhmm(ms)     the station's times ("14:05:09", "14:05"), this computer's zone
//   describe(alarm, onTile, paused)  an alarm's text as nodes: marker, priority, title,
//                           since (on a tile: acknowledged by whom and when, and "paused" while
//                           its bed's alarms are; in the banner: the patient)
//   pausedUntil(bed, nowMs) when the bed's alarm pause ends (ms), null if none is in force
//   start({now})            wires "Enable sound" and returns the station's alarms; now() is
//                           the server's clock (ms), which pauses are judged by:
//     show({beds, current, seenAt})  what the station now shows (after every render): the
//                           banner; seenAt, when the last view came (ms), null before the first
//     heed(beds)            a view came: new or escalated unacknowledged alarms, and those of
//                           a bed whose pause ended, are announced and sound once (the most
//                           urgent)
//     tick()                every 250 ms: flash the title and icon; repeat the high tone; tell
//                           of a lost server
//
// A bed whose alarms are paused neither sounds, nor flashes, nor sits in the banner: its
// alarms stay on its tile (ward.js marks them paused) and sound again when the pause ends.
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
// A station that lost the server (no view for 5 s: every tile grey) is a technical alarm:
// it says so in the aria-live region and plays the medium tone when it turns grey and again
// every REPEAT_LOST_MS while it stays grey; those tones are counted apart, in
// document.body.dataset.technicalTones.
(() => {
  "use strict";
  const $ = (id) => document.getElementById(id);
  // the ?v= of this script's address (render.asset_version): the tones of the same release
  const VERSION = new URL(document.currentScript.src).search;
  const REPEAT_HIGH_MS = 10000;
  const REPEAT_LOST_MS = 60000;
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

  function describe(alarm, onTile, paused = false) {
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
    if (paused) parts.push(element("span", "alarm-paused", " · paused"));
    return parts;
  }

  function pausedUntil(bed, nowMs) {
    const until = bed.paused_until === null ? null : Date.parse(bed.paused_until);
    return until !== null && until > nowMs ? until : null;
  }

  function start({now}) {
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
    let technicalTones = 0;
    let lostToldAt = null;  // performance.now() when a lost server was last told; null: current
    document.body.dataset.tones = "0";
    document.body.dataset.technicalTones = "0";

    const paused = (bed) => pausedUntil(bed, now()) !== null;

    function unacknowledged() {
      const alarms = beds.filter((bed) => !paused(bed)).flatMap((bed) => bed.alarms)
        .filter((a) => a.acknowledged_at === null);
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
      for (const bed of viewBeds) {
        const quiet = paused(bed);
        for (const alarm of bed.alarms) {
          seen.add(alarm.id);
          const status = quiet ? "paused" : alarm.escalated_at !== null ? "escalated" : "raised";
          const before = heard.get(alarm.id);
          heard.set(alarm.id, status);
          if (!quiet && alarm.acknowledged_at === null && before !== status) {
            const what = status === "escalated" ? "Escalated" : before === "paused" ? "Resumed"
              : "New";
            news.push({alarm, what});
          }
        }
      }
      for (const id of heard.keys()) if (!seen.has(id)) heard.delete(id);
      if (!news.length) return;
      news.sort((a, b) => PRIORITY[a.alarm.priority] - PRIORITY[b.alarm.priority]);
      announce(news.map(({alarm, what}) => `${what} ${alarm.priority}-priority alarm: ` +
                        `${alarm.title}, ${alarm.patient}.`).join(" "));
      play(news[0].alarm.priority);
    }

    function announce(text) {
      const region = $("announce");
      region.textContent = "";
      setTimeout(() => { region.textContent = text; }, 50);
    }

    function soundIsOn() {
      return audio !== null && audio.state === "running" && buffers.high !== undefined;
    }

    function sound(tone) {
      if (!soundIsOn()) return false;
      const source = audio.createBufferSource();
      source.buffer = buffers[tone];
      source.connect(audio.destination);
      source.start();
      return true;
    }

    function play(priority) {
      if (!sound(priority === "high" ? "high" : "medium")) return;
      if (priority === "high") lastHighAt = performance.now();
      tones += 1;
      document.body.dataset.tones = String(tones);
    }

    function playLost() {
      if (!sound("medium")) return;
      technicalTones += 1;
      document.body.dataset.technicalTones = String(technicalTones);
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
      if (lostToldAt !== null) playLost();
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

    function tellLost() {
      if (current || seenAt === null) {
        lostToldAt = null;
        return;
      }
      if (lostToldAt !== null && performance.now() - lostToldAt < REPEAT_LOST_MS) return;
      announce(lostToldAt === null ? "Station disconnected: nothing shown is current."
        : `Station still disconnected: nothing current since ${clock(seenAt)}.`);
      lostToldAt = performance.now();
      playLost();
    }

    function tick() {
      flash();
      const high = current && unacknowledged().some((a) => a.priority === "high");
      if (high && performance.now() - lastHighAt >= REPEAT_HIGH_MS) play("high");
      tellLost();
    }

    $("sound").addEventListener("click", enableSound);
    return {show, heed, tick};
  }

  window.neopainWardAlarms = {clock, hhmm, describe, pausedUntil, start};
})();
