"use strict";
// The admin's web activity pages: a click anywhere on a row opens that connection, and the live
// list of active connections replaces itself with a fresh server-rendered copy every few seconds.
(function () {
  document.addEventListener("click", function (event) {
    const row = event.target.closest("tr[data-href]");
    if (!row || event.target.closest("a, button, input, select, label")) {
      return;
    }
    window.location.assign(row.dataset.href);
  });

  const live = document.getElementById("live-list");
  if (!live) {
    return;
  }
  const status = document.getElementById("live-status");
  const every = Number(live.dataset.refreshMs) || 3000;
  let busy = false;

  async function refresh() {
    if (busy || document.hidden) {
      return;
    }
    busy = true;
    try {
      const response = await fetch(live.dataset.liveUrl, { credentials: "same-origin", cache: "no-store" });
      // A redirect means the admin's own session ended: the login page is no list.
      if (!response.ok || response.redirected) {
        status.textContent = "Not updating: reload the page (" + (response.redirected ? "logged out" : response.status) + ").";
        return;
      }
      live.innerHTML = await response.text();
      status.textContent = "Updated " + new Date().toLocaleTimeString() + ". Updates by itself every few seconds.";
    } catch (error) {
      status.textContent = "Not updating: the server cannot be reached.";
    } finally {
      busy = false;
    }
  }

  window.setInterval(refresh, every);
})();
