/* Live progress of the console's operations (the operations list, a volume's page).
 *
 * Elements carry data-ss-op="<operation id>" and data-ss-field="state|lease|progress|phase|bytes|
 * throughput|eta"; the state element of an active operation carries data-ss-active="1" and
 * data-ss-url (the progress.json view). Every ~2 s this asks that view about the operations still
 * active on the page and updates those elements in place; it stops once none is active.
 * No external script, no framework: served from the console's own static files.
 */
(function () {
  "use strict";

  var INTERVAL_MS = 2000;
  var BADGE = { succeeded: "ok", failed: "bad", cancelled: "off" };

  function activeIds() {
    var ids = [];
    document.querySelectorAll('[data-ss-field="state"][data-ss-active="1"]').forEach(function (el) {
      ids.push(el.getAttribute("data-ss-op"));
    });
    return ids;
  }

  function fields(id, name) {
    return document.querySelectorAll('[data-ss-op="' + id + '"][data-ss-field="' + name + '"]');
  }

  function setText(id, name, text) {
    fields(id, name).forEach(function (el) {
      if (el.textContent !== text) {
        el.textContent = text;
      }
    });
  }

  function update(op) {
    fields(op.id, "progress").forEach(function (el) {
      var fill = el.querySelector(".ss-bar-fill");
      var label = el.querySelector(".ss-bar-text");
      if (fill) {
        fill.style.width = op.progress.toFixed(1) + "%";
      }
      if (label) {
        label.textContent = Math.round(op.progress) + "%";
      }
    });
    setText(op.id, "phase", op.phase_text || op.phase || "-");
    setText(op.id, "bytes", op.bytes_text);
    setText(op.id, "throughput", op.throughput_text);
    setText(op.id, "eta", op.eta_text);
    fields(op.id, "state").forEach(function (el) {
      var badge = el.querySelector(".ss-badge");
      if (badge && badge.textContent !== op.state_label) {
        badge.textContent = op.state_label;
        badge.className = "ss-badge ss-badge-" + (BADGE[op.state] || "busy");
      }
      el.setAttribute("data-ss-active", op.active ? "1" : "");
    });
    fields(op.id, "lease").forEach(function (el) {
      // Built by the server from its own texts (format_html): the marker and the takeover time.
      el.innerHTML = op.lease_html;
    });
  }

  function polling(state) {
    // "on" while a poll is due, "stopped" once nothing on the page is active (tests read it).
    document.documentElement.setAttribute("data-ss-polling", state);
  }

  function poll() {
    var ids = activeIds();
    if (!ids.length) {
      polling("stopped");
      return;
    }
    var first = document.querySelector('[data-ss-field="state"][data-ss-url]');
    var url = first.getAttribute("data-ss-url") + "?ids=" + ids.join(",");
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("progress.json answered " + response.status);
        }
        return response.json();
      })
      .then(function (data) {
        data.operations.forEach(update);
        document.documentElement.setAttribute("data-ss-polled", data.now);
        if (data.running && activeIds().length) {
          window.setTimeout(poll, INTERVAL_MS);
        } else {
          polling("stopped");
        }
      })
      .catch(function () {
        // The server is away (a restart): try again later, more slowly.
        window.setTimeout(poll, INTERVAL_MS * 5);
      });
  }

  function start() {
    if (activeIds().length) {
      polling("on");
      window.setTimeout(poll, INTERVAL_MS);
    } else {
      polling("stopped");
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
