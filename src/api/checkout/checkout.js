// The payer's page, kept live. The server's event stream says only "changed"; the page
// then re-reads its status document and updates the words in place. The stream is a
// hint, never the truth: while it is not open (refused, dropped by a mobile browser,
// blocked by a proxy) the page re-reads every 3 seconds, while it is open every 30, and at
// once when the page becomes visible again or the network comes back. It counts down to
// expiry from the server's figure, so the payer's clock does not matter. Copy buttons write to the clipboard. Everything it needs is in the page's
// data-* attributes: there is no inline script and no other origin.
(function () {
  "use strict";
  var root = document.getElementById("checkout");
  if (!root) {
    return;
  }
  var url = root.getAttribute("data-status-url");
  var eventsUrl = root.getAttribute("data-events-url");
  var byId = function (id) {
    return document.getElementById(id);
  };
  var message = byId("message");
  var due = byId("due");
  var dueLabel = byId("due-label");
  var pay = byId("pay");
  var confLine = byId("confirmations-line");
  var conf = byId("confirmations");
  var confRequired = byId("confirmations-required");
  var expiryLine = byId("expiry-line");
  var expires = byId("expires");
  var copied = byId("copied");
  var copyDue = byId("copy-due");
  var deadline = null;

  function anchor(seconds) {
    deadline = Date.now() + seconds * 1000;
  }

  function format(seconds) {
    var h = Math.floor(seconds / 3600);
    var m = Math.floor(seconds / 60) % 60;
    var s = seconds % 60;
    var two = function (n) {
      return (n < 10 ? "0" : "") + n;
    };
    return h > 0 ? h + ":" + two(m) + ":" + two(s) : m + ":" + two(s);
  }

  function tick() {
    if (!expires || deadline === null) {
      return;
    }
    expires.textContent = format(Math.max(0, Math.round((deadline - Date.now()) / 1000)));
  }

  if (expires) {
    anchor(parseInt(expires.getAttribute("data-expires-in"), 10) || 0);
  }
  var countdown = setInterval(tick, 1000);
  var timer = null;
  var stream = null;
  var done = false;

  // A new amount due means a new payment request in the QR code: the server renders the
  // page anew and only its payment block is taken over, so the payer's place on the page
  // stays where it was.
  function refreshRequest() {
    fetch(window.location.pathname, { cache: "no-store", credentials: "omit" })
      .then(function (r) {
        return r.ok ? r.text() : null;
      })
      .then(function (html) {
        var fresh = html ? new DOMParser().parseFromString(html, "text/html").getElementById("pay") : null;
        if (fresh && pay) {
          pay.replaceWith(document.importNode(fresh, true));
          pay = byId("pay");
        }
      })
      .catch(function () {
        // The next change or poll tries again.
      });
  }

  function apply(v) {
    if (v.due_is_remaining && due && v.due !== due.textContent) {
      refreshRequest();
    }
    root.setAttribute("data-state", v.state);
    message.textContent = v.message;
    message.className = "message state-" + v.state;
    dueLabel.textContent = v.due_label;
    due.textContent = v.due;
    if (copyDue) {
      copyDue.setAttribute("data-copy", v.due);
    }
    conf.textContent = String(v.confirmations);
    confRequired.textContent = String(v.confirmations_required);
    confLine.hidden = v.state !== "processing";
    var open = v.state === "waiting" || v.state === "partially_paid";
    expiryLine.hidden = !open;
    if (pay) {
      pay.hidden = !open;
    }
    var back = byId("return");
    if (back) {
      back.hidden = v.state !== "confirmed";
    }
    anchor(v.expires_in);
    if (v.final) {
      done = true;
      clearTimeout(timer);
      clearInterval(countdown);
      if (stream) {
        stream.close();
      }
    }
  }

  function live() {
    return stream !== null && stream.readyState === 1;
  }

  function schedule() {
    clearTimeout(timer);
    if (!done) {
      timer = setTimeout(poll, live() ? 30000 : 3000);
    }
  }

  function poll() {
    clearTimeout(timer);
    fetch(url, { cache: "no-store", credentials: "omit" })
      .then(function (r) {
        return r.ok ? r.json() : null;
      })
      .then(function (v) {
        if (v) {
          apply(v);
        }
      })
      .catch(function () {
        // Offline for now: the next poll tries again.
      })
      .then(schedule);
  }

  function listen() {
    if (done || !eventsUrl || !window.EventSource || (stream && stream.readyState !== 2)) {
      return;
    }
    stream = new EventSource(eventsUrl);
    stream.onmessage = poll;
    // The browser reconnects by itself unless the server refused the stream; either way
    // the page polls quickly until the stream is open again.
    stream.onerror = schedule;
  }

  function wake() {
    poll();
    listen();
  }

  schedule();
  listen();
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) {
      wake();
    }
  });
  window.addEventListener("online", wake);

  document.addEventListener("click", function (e) {
    var button = e.target.closest ? e.target.closest("button[data-copy]") : null;
    if (!button || !navigator.clipboard) {
      return;
    }
    navigator.clipboard.writeText(button.getAttribute("data-copy")).then(function () {
      copied.textContent = copied.getAttribute("data-text");
      setTimeout(function () {
        copied.textContent = "";
      }, 4000);
    });
  });
})();
