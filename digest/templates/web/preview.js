// The preview page's only script: the width switch, the frame's height, and the
// self-reload when the draft, config or templates change (polled every second).
(function () {
  "use strict";
  var script = document.currentScript;
  var version = script.getAttribute("data-version");
  var frame = document.getElementById("email");
  var overflow = document.getElementById("overflow");
  var live = document.getElementById("live");
  var buttons = document.querySelectorAll(".toolbar button[data-width]");
  var WIDTH_KEY = "digest-preview-width";
  var SCROLL_KEY = "digest-preview-scroll";

  // Grow the frame to its content so the page scrolls, not the frame, and flag
  // an email wider than the chosen width (a reader would scroll sideways).
  function fit() {
    var doc;
    try { doc = frame.contentDocument; } catch (e) { return; }
    if (!doc || !doc.documentElement) { return; }
    frame.style.height = doc.documentElement.scrollHeight + "px";
    overflow.hidden = doc.documentElement.scrollWidth <= doc.documentElement.clientWidth + 1;
  }

  function setWidth(width) {
    frame.style.width = width + "px";
    buttons.forEach(function (b) {
      b.setAttribute("aria-pressed", String(b.getAttribute("data-width") === String(width)));
    });
    try { localStorage.setItem(WIDTH_KEY, String(width)); } catch (e) { /* private mode */ }
    setTimeout(fit, 50);
  }

  buttons.forEach(function (b) {
    b.addEventListener("click", function () { setWidth(b.getAttribute("data-width")); });
  });
  var saved = null;
  try { saved = localStorage.getItem(WIDTH_KEY); } catch (e) { /* private mode */ }
  if (saved) { setWidth(saved); }

  frame.addEventListener("load", function () {
    fit();
    var doc = frame.contentDocument;
    if (doc && window.ResizeObserver) { new ResizeObserver(fit).observe(doc.documentElement); }
    var scroll = sessionStorage.getItem(SCROLL_KEY);
    if (scroll !== null) {
      sessionStorage.removeItem(SCROLL_KEY);
      window.scrollTo(0, Number(scroll));
    }
    document.documentElement.setAttribute("data-frame-loaded", version);
  });

  function poll() {
    fetch("/_version", { cache: "no-store" })
      .then(function (r) { return r.json(); })
      .then(function (data) {
        live.classList.remove("offline");
        live.textContent = "Suivi des modifications";
        if (data.version !== version) {
          sessionStorage.setItem(SCROLL_KEY, String(window.scrollY));
          window.location.replace("/" + window.location.search);  // same edition
          return;
        }
        setTimeout(poll, 1000);
      })
      .catch(function () {
        live.classList.add("offline");
        live.textContent = "Aperçu déconnecté : relancez digest preview";
        setTimeout(poll, 2000);
      });
  }
  setTimeout(poll, 1000);
})();
