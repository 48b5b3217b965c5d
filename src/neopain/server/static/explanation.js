// The explanation panel of the live page: what the model saw in the last frame, the DAN score
// of the last seconds, or why the face cannot be assessed. Rendered from the server's replies
// (live.js dispatches "neopain:reply" with each one) and cleared when nothing is current
// ("neopain:stale", Stop, a refused stream): the panel never explains an old result.
// "Calibrate at rest" asks the server (live.js sends the "neopain:command" event on the socket)
// to take the next CALIBRATE_S seconds as this session's rest face: disabled while not
// monitoring and while collecting (a countdown), then "calibrated at hh:mm from N frames"
// (also when a reconnect restores it) or the server's reason why not.
(() => {
  "use strict";
  const panel = document.getElementById("explanation");
  if (!panel) return;
  const CALIBRATE_S = 3;
  const button = document.getElementById("calibrate");
  const note = document.getElementById("calibration-note");
  const problem = document.getElementById("calibration-error");
  let monitoring = false;
  let pending = 0;  // calibrate commands sent and not answered yet: collecting while > 0
  let countdown = null;  // the countdown's interval
  let calibrated = "";  // "calibrated at hh:mm from N frames" of this session, or ""

  const HEADINGS = {
    assessed: "What the model saw",
    cannot_assess: "Cannot assess",
    no_face: "No face",
  };

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function danText(dan) {
    const span = `last ${Math.round(dan.window_s)} s`;
    if (dan.score === null) {
      return `DAN facial score: – (no assessable face in the ${span})`;
    }
    return `DAN facial score: ${dan.score} of ${dan.of} (${span}, ` +
      `${dan.assessable} of ${dan.frames} frames assessable)`;
  }

  function clear() {
    panel.replaceChildren();
    panel.hidden = true;
    delete panel.dataset.status;
  }

  function render(explanation) {
    const nodes = [element("h3", "explanation-state", HEADINGS[explanation.status] || "")];
    if (explanation.status !== "assessed" && explanation.reason) {
      nodes.push(element("p", "explanation-reason", explanation.reason));
    }
    if (explanation.lines.length) {
      const list = element("ul", "explanation-lines");
      for (const line of explanation.lines) list.append(element("li", "", line));
      nodes.push(list);
    }
    if (explanation.note) nodes.push(element("p", "explanation-note", explanation.note));
    if (explanation.dan) nodes.push(element("p", "explanation-dan", danText(explanation.dan)));
    panel.replaceChildren(...nodes);
    panel.dataset.status = explanation.status;
    panel.hidden = false;
  }

  function hhmm(iso) {
    const at = new Date(iso);
    return [at.getHours(), at.getMinutes()].map((n) => String(n).padStart(2, "0")).join(":");
  }

  function showCalibration() {
    button.disabled = !monitoring || pending > 0;
    if (pending === 0) {
      note.textContent = calibrated || (monitoring ? "Not calibrated: measured against an " +
        "adult reference face." : `Needs monitoring: the baby at rest for ${CALIBRATE_S} s.`);
    }
  }

  function endCollecting(all) {
    // each calibrate command gets one answer: "calibrated" or an error (a second request
    // refused while the first collects is one); all: the stream is gone, so are its answers
    pending = all ? 0 : Math.max(0, pending - 1);
    if (pending === 0) clearInterval(countdown);
  }

  function calibrate() {
    if (!monitoring || pending > 0) return;
    let left = CALIBRATE_S;
    problem.hidden = true;
    clearInterval(countdown);
    countdown = setInterval(() => {
      left -= 1;
      note.textContent = left > 0 ? `Keep the baby still: collecting, ${left} s left…`
        : "Calibrating…";
      if (left <= 0) clearInterval(countdown);  // still collecting until the answer
    }, 1000);
    document.dispatchEvent(new CustomEvent("neopain:command",
                                           {detail: {type: "calibrate", seconds: CALIBRATE_S}}));
    showCalibration();
    note.textContent = `Keep the baby still: collecting, ${left} s left…`;
  }

  function calibrationReply(reply) {
    if (reply.type === "ready") {  // a (re)connected stream: a stored calibration follows
      monitoring = true;
      endCollecting(true);
      calibrated = "";
      problem.hidden = true;
    } else if (reply.type === "assessment") {
      monitoring = true;
    } else if (reply.type === "calibrated") {
      endCollecting();
      problem.hidden = true;
      calibrated = `calibrated at ${hhmm(reply.at)} from ${reply.frames} frame` +
        (reply.frames === 1 ? "" : "s");
    } else if (reply.type === "error" && reply.command === "calibrate") {
      endCollecting();
      problem.textContent = reply.message;
      problem.hidden = false;
    } else if (reply.type === "stopped" || reply.type === "refused") {
      monitoring = false;
      endCollecting(true);
      calibrated = "";
    }
    showCalibration();
  }

  function notCurrent() {  // stale, Stop or a lost link: no collecting goes on
    monitoring = false;
    endCollecting(true);
    showCalibration();
  }

  document.addEventListener("neopain:reply", (event) => {
    const reply = event.detail || {};
    if (reply.type === "assessment" && reply.explanation) {
      render(reply.explanation);
    } else if (reply.type === "stopped" || reply.type === "refused") {
      clear();
    }
    calibrationReply(reply);
  });
  document.addEventListener("neopain:stale", clear);
  document.addEventListener("neopain:stale", notCurrent);
  document.addEventListener("neopain:command", (event) => {
    if (event.detail && event.detail.type === "calibrate" && monitoring) pending += 1;
  });
  button.addEventListener("click", calibrate);
})();
