// Gradient Flow: accessible names for elements that are created in the browser.
// Added to every page by book/_ext/gradflow_site.py; tests/site/test_accessibility.py runs
// axe-core after this script has run.
//
// - Explorer sliders (ipywidgets SelectionSlider, drawn by noUiSlider): the handle, which is
//   what a keyboard or screen-reader user operates, gets the slider's label as its name and
//   the shown value ("tanh", "20") as aria-valuetext; noUiSlider would announce the option
//   index ("2.0") and no name.
// - The theme's search button is named "Search" while it shows "Search Ctrl+K", and the colour
//   switch "Color mode" while its icon is titled "Light": a speech-input user who says what
//   is shown cannot activate them. The search button takes its name from what it shows; the
//   switch's name also says the current mode.
// - Inline math wider than its line (a long formula on a phone) gets the class
//   gradflow-wide-math, which custom.css makes a sideways scroll box; otherwise it is cut off.
(function () {
  "use strict";

  function text(el) {
    return el ? el.textContent.replace(/\s+/g, " ").trim() : "";
  }

  // Copy the readout ("tanh") into the handle's aria-valuetext whenever either changes.
  function syncValueText(handle, readout) {
    var value = text(readout);
    if (value && handle.getAttribute("aria-valuetext") !== value) {
      handle.setAttribute("aria-valuetext", value);
    }
  }

  function nameSlider(slider) {
    var handle = slider.querySelector(".noUi-handle");
    var readout = slider.querySelector(".widget-readout");
    if (!handle || slider.dataset.gradflowNamed) return;
    slider.dataset.gradflowNamed = "1";
    var label = text(slider.querySelector(".widget-label"));
    if (label) handle.setAttribute("aria-label", label);
    syncValueText(handle, readout);
    var sync = function () { syncValueText(handle, readout); };
    // noUiSlider rewrites aria-valuetext on every move; the widget then updates the readout.
    new MutationObserver(sync).observe(handle, {attributes: true, attributeFilter: ["aria-valuetext"]});
    if (readout) {
      new MutationObserver(sync).observe(readout, {characterData: true, childList: true, subtree: true});
    }
  }

  function iconTitle(icon) {
    if (icon.getAttribute("title")) return icon.getAttribute("title");
    var title = icon.querySelector("title");
    return text(title);
  }

  function nameThemeButtons() {
    document.querySelectorAll(".search-button-field[aria-label]").forEach(function (button) {
      // Its visible text ("Search Ctrl+K") becomes its name.
      button.removeAttribute("aria-label");
    });
    var mode = document.documentElement.dataset.mode || "auto";
    document.querySelectorAll(".theme-switch-button").forEach(function (button) {
      var icon = button.querySelector('.theme-switch[data-mode="' + mode + '"]');
      var shown = icon ? iconTitle(icon) : "";
      var name = shown ? "Color mode: " + shown : "Color mode";
      if (button.getAttribute("aria-label") !== name) button.setAttribute("aria-label", name);
    });
  }

  // An inline formula that does not fit its block; the block's width is what is left for it.
  function markWideMath() {
    document.querySelectorAll('mjx-container[jax="CHTML"]:not([display="true"])').forEach(function (m) {
      var block = m.parentElement && m.parentElement.closest("p, li, dd, td, th, div, section");
      if (!block) return;
      m.classList.remove("gradflow-wide-math");
      if (m.getBoundingClientRect().width > block.clientWidth + 1) m.classList.add("gradflow-wide-math");
    });
  }
  function watchMath() {
    var mj = window.MathJax;
    if (!(mj && mj.startup && mj.startup.promise)) return false;
    mj.startup.promise.then(markWideMath);
    var timer = null;
    window.addEventListener("resize", function () {
      window.clearTimeout(timer);
      timer = window.setTimeout(markWideMath, 200);
    });
    return true;
  }

  var pending = false;
  function scan() {
    pending = false;
    document.querySelectorAll(".widget-slider:not([data-gradflow-named])").forEach(nameSlider);
    nameThemeButtons();
  }
  function schedule() {
    if (!pending) {
      pending = true;
      window.setTimeout(scan, 0);
    }
  }

  // Widgets are rendered after the page loads, and Font Awesome replaces the theme's <i>
  // icons by <svg>; watch the page instead of guessing when they are done.
  function start() {
    scan();
    // MathJax loads deferred like this script; wait for it if it is not there yet.
    if (!watchMath()) window.addEventListener("load", watchMath);
    new MutationObserver(schedule).observe(document.body, {childList: true, subtree: true});
    new MutationObserver(schedule).observe(document.documentElement,
                                           {attributes: true, attributeFilter: ["data-mode"]});
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
