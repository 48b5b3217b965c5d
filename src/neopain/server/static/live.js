// The live page: camera frames → JPEG → WebSocket → assessment → oval guide, label, numbers.
// One frame is in flight at a time (at most 2 per second), so nothing queues; a dropped link
// is retried with growing pauses and resumes the same session. Only what is current is shown:
// after NEOPAIN_STALE_S s without a result, after Stop or a lost link, the state turns grey
// ("no current assessment — last: … at hh:mm:ss") and the overlay clears. The server decides
// what a reply shows (reply.shown, neopain.monitor.display). Leaving the page ends the session
// (a beacon to Stop). The oval is green only with the face inside it (faceInOval), amber with
// a face outside, red with none. The camera's secure-context need is told before Start.
// Bedside mode is bedside.js; the explanation panel, explanation.js.
(() => {
  "use strict";
  const FRAME_INTERVAL_MS = 500;
  // Stop waits this long for the server's answer on the socket, then asks over HTTP, which
  // waits as long again; after that the page stops and says the server was not told
  const STOP_WAIT_MS = 5000;
  const UNTOLD = "The server could not be told: it ends the session by itself after a few " +
                 "minutes without frames, and the ward station shows this camera's link as lost.";
  const MAX_WIDTH = 640;
  const $ = (id) => document.getElementById(id);
  const root = $("live");
  const patientId = root.dataset.patient;
  const STALE_MS = (parseFloat(root.dataset.staleS) || 3) * 1000;
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const video = $("camera");
  const overlay = $("overlay");
  const guide = $("guide");
  const capture = document.createElement("canvas");
  let camera = null;
  let sessionId = null;
  let socket = null;
  let running = false;
  let stopping = false;
  let stopTimer = null;
  let waiting = false;
  let saved = 0;
  let retries = 0;
  let sentAt = 0;
  let timer = null;
  let heatmapOn = false;
  let lastResultAt = 0;  // performance.now() of the last result (or of Start)
  let lastShown = null;  // {text, at: Date} of the last result shown
  let staleTimer = null;
  let reconnectTimer = null;  // the pending reconnection after a lost link
  const OVAL_SLACK = 1.1;  // the face's edges may touch the oval's line

  /** Whether a face box (frame pixels [x1, y1, x2, y2]) lies inside the guide oval.
   *  frame: the camera picture's size; stage: the element's size (the picture is letterboxed
   *  in it, object-fit: contain); oval: cx, cy, rx, ry in percent of the stage (the SVG's
   *  viewBox 0..100 stretched over it). Inside: the box's centre and the middles of its four
   *  sides (so the ellipse the box encloses) lie within the oval, OVAL_SLACK tolerated. */
  function faceInOval(box, frame, stage, oval) {
    const scale = Math.min(stage.width / frame.width, stage.height / frame.height);
    const dx = (stage.width - frame.width * scale) / 2;
    const dy = (stage.height - frame.height * scale) / 2;
    const [x1, y1, x2, y2] = box.map((v, i) => v * scale + (i % 2 ? dy : dx));
    const cx = (oval.cx / 100) * stage.width;
    const cy = (oval.cy / 100) * stage.height;
    const rx = (oval.rx / 100) * stage.width * OVAL_SLACK;
    const ry = (oval.ry / 100) * stage.height * OVAL_SLACK;
    const mx = (x1 + x2) / 2;
    const my = (y1 + y2) / 2;
    return [[mx, my], [mx, y1], [mx, y2], [x1, my], [x2, my]]
      .every(([x, y]) => ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1);
  }
  // for the page's tests (tests/e2e/test_bedside_layout.py): the geometry on its own
  window.neopainLive = {faceInOval};

  function ovalGeometry() {
    const ellipse = guide.querySelector("ellipse");
    return {cx: ellipse.cx.baseVal.value, cy: ellipse.cy.baseVal.value,
            rx: ellipse.rx.baseVal.value, ry: ellipse.ry.baseVal.value};
  }

  function judgeGuide(reply) {
    // face found or not (data-state), and inside the oval or not (data-fit): colour and caption
    guide.dataset.state = reply.found ? "found" : "missing";
    const inside = reply.found && reply.box && reply.width && faceInOval(
      reply.box, {width: reply.width, height: reply.height},
      {width: video.clientWidth, height: video.clientHeight}, ovalGeometry());
    guide.dataset.fit = reply.found && reply.box ? (inside ? "inside" : "outside") : "";
    $("guide-note").textContent = !reply.found ? "No face found"
      : inside ? "Face inside the oval" : "Face outside the oval: move the camera";
  }

  function clearGuide() {
    guide.dataset.state = "idle";
    guide.dataset.fit = "";
    $("guide-note").textContent = "";
  }

  function cameraProblem() {
    // browsers give pages the camera only in a secure context: https, or this computer itself
    if (!window.isSecureContext) {
      return "The camera cannot be used on this page: it was opened over plain http from " +
        `another computer (${location.host}), and browsers allow the camera only over https ` +
        "or on the server's own computer. Ask for the server to be started with https " +
        "(neopain serve --ssl-certfile cert.pem --ssl-keyfile key.pem) and open " +
        `https://${location.host}${location.pathname}, or open the page on the server ` +
        "itself at http://localhost.";
    }
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      return "This browser gives web pages no camera (navigator.mediaDevices is missing): " +
        "use a current Chrome, Edge, Firefox or Safari.";
    }
    return null;
  }

  function setStatus(text, link) {
    const status = $("status");
    status.textContent = text;
    if (link) {
      const anchor = document.createElement("a");
      anchor.href = link.href;
      anchor.textContent = link.text;
      anchor.id = "history-link";
      status.append(" ", anchor);
    }
  }

  async function start() {
    $("start").disabled = true;
    clearTimeout(reconnectTimer);  // a reconnection of the last session must not join this one
    try {
      camera = await navigator.mediaDevices.getUserMedia({
        audio: false,
        video: {facingMode: {ideal: "environment"}, width: {ideal: 1280}, height: {ideal: 720}},
      });
    } catch (error) {
      setStatus(`The camera cannot be used (${error.name}). Allow it in the browser, and ` +
                "open this page over https.");
      $("start").disabled = false;
      return;
    }
    video.srcObject = camera;
    await video.play();
    const response = await fetch(`/api/patients/${patientId}/sessions`, {
      method: "POST", credentials: "same-origin", headers: {"X-CSRF-Token": csrf},
    });
    if (!response.ok) {
      setStatus(`The session could not start (${response.status}).`);
      stopCamera();
      $("start").disabled = false;
      return;
    }
    sessionId = (await response.json()).id;
    saved = 0;
    $("saved-count").textContent = "0";
    running = true;
    stopping = false;
    lastResultAt = performance.now();
    clearInterval(staleTimer);
    staleTimer = setInterval(checkStale, 250);
    $("stop").disabled = false;
    connect();
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    socket = new WebSocket(`${scheme}//${location.host}/ws/sessions/${sessionId}`);
    socket.binaryType = "arraybuffer";
    socket.onopen = () => {
      retries = 0;
      waiting = false;
      setStatus("Starting…");
      if (heatmapOn) sendOptions();
    };
    socket.onmessage = (event) => handle(JSON.parse(event.data));
    socket.onclose = closed;
  }

  function schedule(delay) {
    clearTimeout(timer);
    timer = setTimeout(sendFrame, delay);
  }

  function sendFrame() {
    if (!running || stopping || waiting || !socket || socket.readyState !== WebSocket.OPEN) return;
    if (!video.videoWidth) {
      schedule(100);
      return;
    }
    const scale = Math.min(1, MAX_WIDTH / video.videoWidth);
    capture.width = Math.round(video.videoWidth * scale);
    capture.height = Math.round(video.videoHeight * scale);
    capture.getContext("2d").drawImage(video, 0, 0, capture.width, capture.height);
    waiting = true;
    capture.toBlob((blob) => {
      if (!blob || !socket || socket.readyState !== WebSocket.OPEN) {
        waiting = false;
        return;
      }
      sentAt = performance.now();
      socket.send(blob);
    }, "image/jpeg", 0.8);
  }

  function handle(reply) {
    // other panels of the page (explanation.js) render from the same replies
    document.dispatchEvent(new CustomEvent("neopain:reply", {detail: reply}));
    if (reply.type === "ready") {
      // the server has built this stream's face detector: frames sent now are not kept waiting
      setStatus("Monitoring.");
      schedule(0);
    } else if (reply.type === "assessment") {
      waiting = false;
      show(reply);
      if (!stopping) schedule(Math.max(0, FRAME_INTERVAL_MS - (performance.now() - sentAt)));
    } else if (reply.type === "stopped") {
      finish();
    } else if (reply.type === "error" && reply.command !== "calibrate") {
      // a calibrate command's error answers no frame (explanation.js shows it): the frame
      // in flight still is, so nothing is scheduled here
      waiting = false;
      setStatus(reply.message);
      schedule(FRAME_INTERVAL_MS);
    }
  }

  function show(reply) {
    judgeGuide(reply);
    const label = $("label");
    const shown = reply.shown;
    label.textContent = shown.text;
    label.dataset.label = shown.kind;
    $("confidence").textContent = shown.number;
    $("last-result").textContent = "";
    lastResultAt = performance.now();
    lastShown = {text: shown.text, at: new Date()};
    $("latency").textContent = `${Math.round(reply.server_ms)} ms`;
    if (reply.saved) {
      saved += 1;
      $("saved-count").textContent = String(saved);
    }
    draw(reply);
  }

  function clock(date) {
    return [date.getHours(), date.getMinutes(), date.getSeconds()]
      .map((n) => String(n).padStart(2, "0")).join(":");
  }

  function checkStale() {
    if (!running || performance.now() - lastResultAt <= STALE_MS) return;
    if ($("label").dataset.label !== "stale" && socket && socket.readyState === WebSocket.OPEN) {
      setStatus(`No result from the server for ${STALE_MS / 1000} s.`);
    }
    markStale();
  }

  function markStale() {
    document.dispatchEvent(new CustomEvent("neopain:stale"));
    // nothing current to show: grey state, no number, no face box, oval or heatmap
    const label = $("label");
    label.textContent = "no current assessment";
    label.dataset.label = "stale";
    $("confidence").textContent = "–";
    $("latency").textContent = "–";
    $("last-result").textContent = lastShown
      ? `last: ${lastShown.text} at ${clock(lastShown.at)}` : "no result yet";
    clearGuide();
    overlay.getContext("2d").clearRect(0, 0, overlay.width, overlay.height);
  }

  function draw(reply) {
    const width = video.clientWidth;
    const height = video.clientHeight;
    overlay.width = width;
    overlay.height = height;
    const context = overlay.getContext("2d");
    context.clearRect(0, 0, width, height);
    if (heatmapOn && reply.found && reply.assessable && reply.heatmap !== undefined) {
      // only a face the model can assess tells whether the model gives heatmaps
      $("heatmap-note").textContent = reply.heatmap === null ? "This model gives no heatmap." : "";
    }
    if (!reply.found || !reply.box) return;
    // the video is letterboxed inside its element (object-fit: contain)
    const scale = Math.min(width / reply.width, height / reply.height);
    const dx = (width - reply.width * scale) / 2;
    const dy = (height - reply.height * scale) / 2;
    const [x1, y1, x2, y2] = reply.box.map((v, i) => v * scale + (i % 2 ? dy : dx));
    if (heatmapOn && reply.heatmap) {
      for (const [x, y, radius, weight] of reply.heatmap) {
        const cx = x * scale + dx;
        const cy = y * scale + dy;
        const r = radius * scale;
        const gradient = context.createRadialGradient(cx, cy, 0, cx, cy, r);
        gradient.addColorStop(0, `rgba(255, 40, 0, ${0.65 * weight})`);
        gradient.addColorStop(1, "rgba(255, 40, 0, 0)");
        context.fillStyle = gradient;
        context.fillRect(cx - r, cy - r, 2 * r, 2 * r);
      }
    }
    // the box's colour follows the state shown: pain, no pain, uncertain (dashed), or
    // neither (cannot assess)
    const kind = reply.shown.kind;
    context.strokeStyle = {pain: "#e74c3c", nopain: "#2ecc71", uncertain: "#b794f6"}[kind]
      || "#f0b429";
    context.lineWidth = 2;
    context.setLineDash(kind === "uncertain" ? [8, 5] : []);
    context.strokeRect(x1, y1, x2 - x1, y2 - y1);
    context.setLineDash([]);
  }

  function closed(event) {
    socket = null;
    waiting = false;
    if (!running) return;
    if (event.code >= 4400 && event.code < 4500) {
      setStatus(event.reason || "The server refused the stream.");
      if (event.code === 4401) location.href = `/login?ended=1&next=${location.pathname}`;
      finish();
      return;
    }
    if (stopping) {
      postStop();
      return;
    }
    markStale();
    retries += 1;
    const delay = Math.min(30000, 1000 * 2 ** Math.min(retries - 1, 5));
    setStatus(`Connection lost; reconnecting in ${Math.round(delay / 1000)} s. ` +
              "Saved assessments are kept.");
    reconnectTimer = setTimeout(() => { if (running && !stopping) connect(); }, delay);
  }

  function postStop() {
    clearTimeout(stopTimer);
    if (!stopping) return;
    const abort = new AbortController();
    const timeout = setTimeout(() => abort.abort(), STOP_WAIT_MS);
    fetch(`/api/sessions/${sessionId}/stop`, {
      method: "POST", credentials: "same-origin", headers: {"X-CSRF-Token": csrf},
      signal: abort.signal,
    }).then((response) => finish(response.ok ? "" : UNTOLD), () => finish(UNTOLD))
      .finally(() => clearTimeout(timeout));
  }

  function stop() {
    if (!running) return;
    stopping = true;
    $("stop").disabled = true;
    clearTimeout(timer);
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify({type: "stop"}));
      stopTimer = setTimeout(postStop, STOP_WAIT_MS);
    } else {
      postStop();
    }
  }

  function stopCamera() {
    if (camera) camera.getTracks().forEach((track) => track.stop());
    camera = null;
  }

  function finish(note = "") {
    if (!running) return;
    running = false;
    stopping = false;
    clearTimeout(stopTimer);
    clearTimeout(timer);
    clearTimeout(reconnectTimer);
    clearInterval(staleTimer);
    stopCamera();
    markStale();
    $("heatmap-note").textContent = "";
    $("start").disabled = false;
    $("stop").disabled = true;
    setStatus(`Stopped. ${saved} ${saved === 1 ? "assessment" : "assessments"} saved.` +
              (note ? ` ${note}` : ""),
              {href: `/patients/${patientId}`, text: "Open the history"});
  }

  function sendOptions() {
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify({type: "options", heatmap: heatmapOn}));
    }
  }

  function leave() {
    // leaving the page (History, reload, closing the tab) ends the session: a beacon survives
    // the unload, and carries the CSRF token as a form field
    if (!running || sessionId === null) return;
    navigator.sendBeacon(`/api/sessions/${sessionId}/stop`,
                         new URLSearchParams({csrf_token: csrf}));
    running = false;
    clearTimeout(timer);
    clearTimeout(reconnectTimer);
    clearInterval(staleTimer);
    if (socket) socket.close();
    stopCamera();
    // a page brought back from the back/forward cache shows nothing old as current
    markStale();
    $("start").disabled = false;
    $("stop").disabled = true;
  }

  const problem = cameraProblem();
  if (problem) {
    $("camera-note").textContent = problem;
    $("camera-note").hidden = false;
    $("start").disabled = true;
    setStatus("Start needs the camera: see above.");
  }
  // commands of other panels (explanation.js: "Calibrate at rest") go on the open socket
  document.addEventListener("neopain:command", (event) => {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(event.detail));
  });
  $("start").addEventListener("click", start);
  window.addEventListener("pagehide", leave);
  $("stop").addEventListener("click", stop);
  $("heatmap").addEventListener("change", (event) => {
    heatmapOn = event.target.checked;
    if (!heatmapOn) $("heatmap-note").textContent = "";
    sendOptions();
  });
})();
