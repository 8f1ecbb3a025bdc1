// palmbook: keep every plotly figure inside its column (loaded after plotly.js on pages with figures).
// Most figures are responsive (width 100%). A few set a fixed width in their layout (a square attention map of
// 520 px): on a phone that figure would stick out of the page. Shrink such a figure to its column and restore its
// own width when the column is wide enough again.
(function () {
  "use strict";
  function fit() {
    if (typeof window.Plotly === "undefined") {
      return;
    }
    document.querySelectorAll(".js-plotly-plot").forEach(function (gd) {
      var layout = gd.layout || {};
      var own = gd.dataset.palmbookWidth ? Number(gd.dataset.palmbookWidth) : layout.width;
      if (!own) {
        return; // responsive already
      }
      // The column: the output area (it scrolls sideways) or the article, not plotly's own fixed-width wrapper.
      var box = gd.closest(".output, .cell_output, article") || document.body;
      var column = box.clientWidth;
      if (!column) {
        return; // hidden (a folded cell): fitted on the next resize
      }
      gd.style.maxWidth = "100%";
      if (gd.parentElement) {
        gd.parentElement.style.maxWidth = "100%";
      }
      var want = Math.min(own, column);
      if (want !== layout.width) {
        gd.dataset.palmbookWidth = String(own);
        window.Plotly.relayout(gd, { width: want });
      }
    });
  }
  var timer = null;
  function later() {
    clearTimeout(timer);
    timer = setTimeout(fit, 150);
  }
  window.addEventListener("load", fit);
  window.addEventListener("resize", later);
})();
