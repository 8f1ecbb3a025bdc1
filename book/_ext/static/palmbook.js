// palmbook: glue that lets saved ipywidgets render in the static, self-contained book.
// Loaded (synchronously, before require.js) on pages that carry widget state.
(function () {
  "use strict";
  // Each webpack bundle inside embed-amd.js (html-manager, base, controls, base7, controls7) computes the URL of
  // its icon fonts from the folder of its own require.js module id, which require.js resolves relative to the
  // page unless told otherwise. Whichever bundle injects its @font-face last wins, so EVERY id must resolve into
  // this site's copy in "_static/widgets/", wherever the page sits in the site (require.js takes the longest
  // matching prefix): "@jupyter-widgets/controls" -> _static/widgets/controls.js, folder _static/widgets/.
  var me = document.currentScript;
  var staticRoot = me ? me.src.replace(/palmbook\.js(\?.*)?$/, "") : "";
  if (me && me.dataset.localWidgets && typeof window.require === "undefined") {
    window.require = {
      paths: {
        "@jupyter-widgets": staticRoot + "widgets",
        "@jupyter-widgets/html-manager/dist": staticRoot + "widgets",
      },
    };
  }
  // ipywidgets typeset their labels with MathJax 2's MathJax.Hub.Queue(["Typeset", MathJax.Hub, element]);
  // the book runs MathJax 3, which has no Hub. Translate the call. MathJax is a deferred script, so it has
  // run by DOMContentLoaded, and the widget manager renders on "load", after it.
  document.addEventListener("DOMContentLoaded", function () {
    var mj = window.MathJax;
    if (!mj || mj.Hub || !mj.startup || typeof mj.typesetPromise !== "function") {
      return;
    }
    mj.Hub = {
      Queue: function () {
        var elements = [];
        for (var i = 0; i < arguments.length; i++) {
          var job = arguments[i];
          if (Array.isArray(job) && job[0] === "Typeset" && job[2]) {
            elements.push(job[2]);
          }
        }
        return mj.startup.promise.then(function () {
          return mj.typesetPromise(elements.length ? elements : undefined);
        });
      },
    };
  });
})();
