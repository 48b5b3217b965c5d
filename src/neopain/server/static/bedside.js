// Bedside mode of the live page: full screen (Fullscreen API) holding a Screen Wake Lock,
// re-acquired when the page becomes visible again; where either is missing the page says so.
// Esc (leaving full screen) leaves the mode too.
(() => {
  "use strict";
  const $ = (id) => document.getElementById(id);
  let wakeLock = null;

  function wakeNote(text) {
    $("wake-note").textContent = text;
  }

  async function keepScreenOn() {
    if (!("wakeLock" in navigator)) {
      wakeNote("This browser cannot keep the screen on (no Screen Wake Lock): set the " +
               "device's screen timeout to \"never\" while monitoring.");
      return;
    }
    try {
      wakeLock = await navigator.wakeLock.request("screen");
      wakeNote("Screen kept on.");
      wakeLock.addEventListener("release", () => { wakeLock = null; });
    } catch (error) {
      wakeNote(`The screen cannot be kept on (${error.name}): set the device's screen ` +
               "timeout to \"never\" while monitoring.");
    }
  }

  function inBedside() {
    return document.body.classList.contains("bedside");
  }

  async function bedside(on) {
    document.body.classList.toggle("bedside", on);
    const button = $("bedside");
    button.setAttribute("aria-pressed", String(on));
    button.textContent = on ? "Leave bedside mode" : "Bedside mode";
    if (!on) {
      if (wakeLock) wakeLock.release();
      wakeLock = null;
      wakeNote("Full screen, screen kept on.");
      if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
      return;
    }
    let fullscreen = "";
    if (document.documentElement.requestFullscreen) {
      try {
        await document.documentElement.requestFullscreen({navigationUI: "hide"});
      } catch (error) {
        fullscreen = ` Full screen refused (${error.name}).`;
      }
    } else {
      fullscreen = " This browser has no full screen for pages.";
    }
    await keepScreenOn();
    if (fullscreen) wakeNote($("wake-note").textContent + fullscreen);
    window.scrollTo(0, 0);  // the patient's name at the top
  }

  document.addEventListener("visibilitychange", () => {
    // the browser drops a wake lock when the page is hidden: take it again on return
    if (inBedside() && document.visibilityState === "visible" && !wakeLock) keepScreenOn();
  });
  document.addEventListener("fullscreenchange", () => {
    if (!document.fullscreenElement && inBedside()) bedside(false);  // Esc leaves it too
    else if (document.fullscreenElement) window.scrollTo(0, 0);
  });
  $("bedside").addEventListener("click", () => bedside(!inBedside()));
})();
