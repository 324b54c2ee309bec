// Basphere's pages work without this file. With it, the dashboard follows running operations:
// while the server marks the live region as busy, it fetches the region again every two seconds.
(function () {
  "use strict";
  var region = document.getElementById("live");
  if (!region || !region.dataset.src) {
    return;
  }
  var stop = Date.now() + 30 * 60 * 1000;
  function tick() {
    if (region.dataset.busy !== "true" || Date.now() > stop) {
      return;
    }
    fetch(region.dataset.src, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("status " + response.status);
        }
        return response.text();
      })
      .then(function (html) {
        var parsed = new DOMParser().parseFromString(html, "text/html");
        var fresh = parsed.getElementById("live");
        if (fresh) {
          region.replaceChildren.apply(region, Array.prototype.slice.call(fresh.childNodes));
          region.dataset.busy = fresh.dataset.busy;
        }
        setTimeout(tick, 2000);
      })
      .catch(function () {
        setTimeout(tick, 5000);
      });
  }
  setTimeout(tick, 2000);
})();
