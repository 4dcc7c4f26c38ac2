// Gradient Flow: glue between RequireJS, the widget manager and MathJax 3.
// Loaded after require.js and before embed-amd.js (the order of nb_ipywidgets_js in _config.yml).
(function () {
  "use strict";
  var src = (document.currentScript && document.currentScript.src) || "";
  var base = src.replace(/[?#].*$/, "").replace(/\/[^\/]*$/, "");
  if (base && window.require && window.require.config) {
    // embed-amd.js resolves its asset URLs (Font Awesome fonts) against the URI of each AMD
    // module, which RequireJS derives from the module name and, by default, the page's folder.
    // Map the names onto this folder so the fonts are fetched from the site's _static/widgets/.
    window.require.config({
      paths: {
        "@jupyter-widgets": base,
        "@jupyter-widgets/html-manager/dist": base
      }
    });
  }
  // The widget manager typesets widget labels with the MathJax 2 API (MathJax.Hub.Queue); the
  // book loads MathJax 3 (sphinx-mathjax-offline). Provide that one call on top of MathJax 3.
  function shimMathJax() {
    var mj = window.MathJax;
    if (mj && !mj.Hub) {
      mj.Hub = {
        Queue: function (job) {
          var el = job && job[2];
          if (mj.typesetPromise) {
            mj.typesetPromise(el ? [el] : undefined).catch(function () {});
          }
        }
      };
    }
  }
  document.addEventListener("DOMContentLoaded", shimMathJax);
  window.addEventListener("load", shimMathJax);
})();
