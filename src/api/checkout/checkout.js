// The payer's page, kept live. It re-reads the page's status document every 3 seconds,
// and at once when the page becomes visible again or the network comes back (mobile
// browsers freeze background pages and drop connections), then updates the words in
// place; it counts down to expiry from the server's figure, so the payer's clock does not
// matter. Copy buttons write to the clipboard. Everything it needs is in the page's
// data-* attributes: there is no inline script and no other origin.
(function () {
  "use strict";
  var root = document.getElementById("checkout");
  if (!root) {
    return;
  }
  var url = root.getAttribute("data-status-url");
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
  var current = root.getAttribute("data-state");
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
  var poller = null;

  function apply(v) {
    // A new amount due means a new payment request in the QR code: render the page anew.
    if (v.due_is_remaining && due && v.due !== due.textContent) {
      window.location.reload();
      return;
    }
    current = v.state;
    root.setAttribute("data-state", v.state);
    message.textContent = v.message;
    message.className = "message state-" + v.state;
    dueLabel.textContent = v.due_label;
    due.textContent = v.due;
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
      clearInterval(poller);
      clearInterval(countdown);
    }
  }

  function poll() {
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
      });
  }

  poller = setInterval(poll, 3000);
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) {
      poll();
    }
  });
  window.addEventListener("online", poll);

  document.addEventListener("click", function (e) {
    var button = e.target.closest ? e.target.closest("button[data-copy]") : null;
    if (!button || !navigator.clipboard) {
      return;
    }
    navigator.clipboard.writeText(button.getAttribute("data-copy")).then(function () {
      copied.textContent = copied.getAttribute("data-text");
    });
  });
})();
