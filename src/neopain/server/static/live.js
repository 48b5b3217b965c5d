// The live page: camera frames → JPEG → WebSocket → assessment → oval guide, label, numbers.
// One frame is in flight at a time (the next goes when the reply is in, at most 2 per second),
// so a slow network or server never builds a queue. A dropped connection is retried with
// growing pauses and resumes the same monitoring session.
(() => {
  "use strict";
  const FRAME_INTERVAL_MS = 500;
  const MAX_WIDTH = 640;
  const $ = (id) => document.getElementById(id);
  const root = $("live");
  const patientId = root.dataset.patient;
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
  let waiting = false;
  let saved = 0;
  let retries = 0;
  let sentAt = 0;
  let timer = null;
  let heatmapOn = false;

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
    } else if (reply.type === "error") {
      waiting = false;
      setStatus(reply.message);
      schedule(FRAME_INTERVAL_MS);
    }
  }

  function show(reply) {
    guide.dataset.state = reply.found ? "found" : "missing";
    const label = $("label");
    if (reply.state) {
      const pain = reply.state === "pain";
      label.textContent = pain ? "PAIN" : "no pain";
      label.dataset.label = reply.state;
      const sure = pain ? reply.smoothed : 1 - reply.smoothed;
      $("confidence").textContent = `${Math.round(sure * 100)}%`;
    }
    if (!reply.found) {
      label.textContent = "no face";
      label.dataset.label = "";
      $("confidence").textContent = "–";
    } else if (!reply.assessable) {
      // a face the model cannot judge (turned away, mesh lost): say so, keep nothing
      label.textContent = "cannot assess";
      label.dataset.label = "";
      $("confidence").textContent = "–";
    }
    $("latency").textContent = `${Math.round(reply.server_ms)} ms`;
    if (reply.saved) {
      saved += 1;
      $("saved-count").textContent = String(saved);
    }
    draw(reply);
  }

  function draw(reply) {
    const width = video.clientWidth;
    const height = video.clientHeight;
    overlay.width = width;
    overlay.height = height;
    const context = overlay.getContext("2d");
    context.clearRect(0, 0, width, height);
    if (!reply.found || !reply.box) return;
    // the video is letterboxed inside its element (object-fit: contain)
    const scale = Math.min(width / reply.width, height / reply.height);
    const dx = (width - reply.width * scale) / 2;
    const dy = (height - reply.height * scale) / 2;
    const [x1, y1, x2, y2] = reply.box.map((v, i) => v * scale + (i % 2 ? dy : dx));
    if (heatmapOn && reply.heatmap === null) {
      $("heatmap-note").textContent = "This model gives no heatmap.";
    }
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
    context.strokeStyle = reply.state === "pain" ? "#e74c3c" : "#2ecc71";
    context.lineWidth = 2;
    context.strokeRect(x1, y1, x2 - x1, y2 - y1);
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
    guide.dataset.state = "idle";
    retries += 1;
    const delay = Math.min(30000, 1000 * 2 ** Math.min(retries - 1, 5));
    setStatus(`Connection lost; reconnecting in ${Math.round(delay / 1000)} s. ` +
              "Saved assessments are kept.");
    setTimeout(() => { if (running && !stopping) connect(); }, delay);
  }

  function postStop() {
    fetch(`/api/sessions/${sessionId}/stop`, {
      method: "POST", credentials: "same-origin", headers: {"X-CSRF-Token": csrf},
    }).then(finish, finish);
  }

  function stop() {
    if (!running) return;
    stopping = true;
    $("stop").disabled = true;
    clearTimeout(timer);
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify({type: "stop"}));
    } else {
      postStop();
    }
  }

  function stopCamera() {
    if (camera) camera.getTracks().forEach((track) => track.stop());
    camera = null;
  }

  function finish() {
    if (!running) return;
    running = false;
    stopping = false;
    clearTimeout(timer);
    stopCamera();
    guide.dataset.state = "idle";
    $("start").disabled = false;
    $("stop").disabled = true;
    setStatus(`Stopped. ${saved} assessments saved.`,
              {href: `/patients/${patientId}`, text: "Open the history"});
  }

  function sendOptions() {
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify({type: "options", heatmap: heatmapOn}));
    }
  }

  $("start").addEventListener("click", start);
  $("stop").addEventListener("click", stop);
  $("heatmap").addEventListener("change", (event) => {
    heatmapOn = event.target.checked;
    sendOptions();
  });
})();
