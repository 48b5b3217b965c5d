// The explanation panel of the live page: what the model saw in the last frame, the DAN score
// of the last seconds, or why the face cannot be assessed. Rendered from the server's replies
// (live.js dispatches "neopain:reply" with each one) and cleared when nothing is current
// ("neopain:stale", Stop, a refused stream): the panel never explains an old result.
(() => {
  "use strict";
  const panel = document.getElementById("explanation");
  if (!panel) return;

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

  document.addEventListener("neopain:reply", (event) => {
    const reply = event.detail || {};
    if (reply.type === "assessment" && reply.explanation) {
      render(reply.explanation);
    } else if (reply.type === "stopped" || reply.type === "refused") {
      clear();
    }
  });
  document.addEventListener("neopain:stale", clear);
})();
