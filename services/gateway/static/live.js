// Keeps a community page current: listens to the community's changes
// (Server-Sent Events) and, a moment after the last one, fetches the page's
// live part again and puts it in place. Without JavaScript the page is whole,
// only not live.
(function () {
  "use strict";
  var live = document.getElementById("live");
  var status = document.getElementById("live-status");
  if (!live || !window.EventSource || !window.fetch) return;
  var pending = null;
  function refresh() {
    pending = null;
    fetch(live.dataset.src, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.text(); })
      .then(function (html) {
        live.innerHTML = html;
        live.dataset.updated = String(Date.now());
      })
      .catch(function () { if (status) status.className = "live off"; });
  }
  var events = new EventSource(live.dataset.events);
  events.addEventListener("change", function () {
    if (!pending) pending = setTimeout(refresh, 250);
  });
  events.onopen = function () { if (status) status.className = "live on"; };
  events.onerror = function () { if (status) status.className = "live off"; };
})();
