// The payer's page in a real browser (Debian's Chromium through playwright-core).
//
// The Rust test (tests/api/browser.rs) owns the gateway and the chain; this script owns
// the browser. It asks for each step on stdout, one JSON line ({"step": "create", ...}),
// and reads the answer on stdin ({"ok": true, ...}). What it checks, a failing assertion
// ends the process with a non-zero code and the reason on stderr.
//
// Environment: CTRIP_BASE (the gateway's origin), CTRIP_SHOTS (the folder the screenshots
// go to), CHROMIUM (the browser binary; /usr/bin/chromium by default).

import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import readline from "node:readline";

import jsQR from "jsqr";
import { chromium } from "playwright-core";
import { PNG } from "pngjs";

const base = process.env.CTRIP_BASE;
const shots = process.env.CTRIP_SHOTS;
const origin = new URL(base).origin;
mkdirSync(shots, { recursive: true });

const answers = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();

/** Asks the Rust side to do one step and returns its answer. */
async function ask(step) {
  process.stdout.write(JSON.stringify(step) + "\n");
  const { value, done } = await answers.next();
  assert.ok(!done, `no answer to ${step.step}`);
  const answer = JSON.parse(value);
  assert.ok(answer.ok, `${step.step} failed: ${answer.error}`);
  return answer;
}

function log(...args) {
  console.error("[browser]", ...args);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});

/**
 * A page in a fresh context that records every request it makes, every Content-Security-
 * Policy violation and every main-frame navigation.
 */
async function open(javaScriptEnabled) {
  const context = await browser.newContext({
    javaScriptEnabled,
    viewport: { width: 480, height: 900 },
  });
  const page = await context.newPage();
  const record = { requests: [], violations: [], navigations: 0, documents: [], streams: [] };
  page.on("request", (r) => record.requests.push(r.url()));
  page.on("console", (m) => {
    if (/Content Security Policy/i.test(m.text())) {
      record.violations.push(m.text());
    }
  });
  page.on("framenavigated", (f) => {
    if (f === page.mainFrame()) {
      record.navigations += 1;
    }
  });
  page.on("response", (r) => {
    if (r.url().endsWith("/events")) {
      record.streams.push(r.status());
    }
    if (r.request().resourceType() === "document") {
      record.documents.push({ url: r.url(), status: r.status(), headers: r.headers() });
    }
  });
  return { context, page, record };
}

/** Decodes the QR code as the browser drew it. */
async function qrOf(page) {
  const png = PNG.sync.read(await page.locator("svg.qr").screenshot());
  const code = jsQR(new Uint8ClampedArray(png.data), png.width, png.height);
  assert.ok(code, "the QR code as drawn decodes");
  return code.data;
}

async function text(page, selector) {
  return (await page.locator(selector).textContent()).trim();
}

async function state(page) {
  return page.locator("#checkout").getAttribute("data-state");
}

/** Waits (without reloading) until the page shows `want`. */
async function becomes(page, want) {
  await page.waitForSelector(`#checkout[data-state="${want}"]`, { timeout: 20000 });
}

/** Reloads until the page shows `want`, as a payer without JavaScript would. */
async function reloadsTo(page, want) {
  const deadline = Date.now() + 20000;
  for (;;) {
    await page.reload();
    if ((await state(page)) === want) {
      return;
    }
    assert.ok(Date.now() < deadline, `the page never showed ${want}`);
    await page.waitForTimeout(200);
  }
}

async function shot(page, name) {
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
  log("screenshot", name);
}

/** Checks what every payer page shows of a fresh native payment of `amount`. */
async function checkRequest(page, p, amount, wei) {
  assert.equal(await state(page), "waiting");
  assert.equal(await text(page, "#due"), amount);
  assert.equal(await text(page, "#symbol"), "ETH");
  assert.equal(await page.locator("#address").inputValue(), p.address);
  assert.equal(await qrOf(page), `ethereum:${p.address}@31337?value=${wei}`);
  const label = await page.locator("svg.qr").getAttribute("aria-label");
  assert.ok(label.includes(p.address) && label.includes(amount), label);
}

/** Everything the page loaded came from the gateway, under its policy, with no violation. */
function checkOrigin(record) {
  assert.ok(record.requests.length > 0);
  for (const url of record.requests) {
    assert.equal(new URL(url).origin, origin, `a request to another origin: ${url}`);
  }
  assert.deepEqual(record.violations, []);
  for (const d of record.documents) {
    assert.match(d.headers["content-security-policy"] || "", /default-src 'none'; script-src 'self'/);
    assert.equal(d.headers["referrer-policy"], "no-referrer");
  }
}

// --- With JavaScript: the page follows the payment live, without a reload. --------------
{
  const { context, page, record } = await open(true);
  const p = await ask({ step: "create", amount: "1", return_url: "https://shop.example/thanks" });
  await page.goto(`${base}/pay/${p.id}`);
  await checkRequest(page, p, "1", "1000000000000000000");
  assert.ok(await page.locator("#return").isHidden(), "no way back before it is paid");
  // From the keyboard alone: the first stop is the amount's copy button, and Enter puts
  // the exact amount on the clipboard (announced in a status region).
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin });
  await page.keyboard.press("Tab");
  assert.equal(await page.evaluate(() => document.activeElement.id), "copy-due");
  await page.keyboard.press("Enter");
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), "1");
  assert.equal(await text(page, "#copied"), "Copied");
  // Every control has a name a screen reader can say.
  for (const control of await page.locator("button, input, a").all()) {
    const name = (await control.getAttribute("aria-label")) || (await control.textContent()).trim()
      || (await page.locator(`label[for="${await control.getAttribute("id")}"]`).count());
    assert.ok(name, "a control without a name");
  }
  await shot(page, "waiting");

  await ask({ step: "pay", id: p.id, amount: "0.4" });
  await becomes(page, "partially_paid");
  assert.equal(await text(page, "#due"), "0.6");
  // The QR code now asks for the remainder.
  await page.waitForFunction(
    () => document.getElementById("address").getAttribute("data-qr").endsWith("value=600000000000000000"),
    null,
    { timeout: 20000 },
  );
  assert.equal(await qrOf(page), `ethereum:${p.address}@31337?value=600000000000000000`);
  await shot(page, "partially_paid");

  await ask({ step: "pay", id: p.id, amount: "0.6" });
  await becomes(page, "processing");
  assert.ok(await page.locator("#confirmations-line").isVisible());
  assert.ok(await page.locator("#pay").isHidden(), "no QR code once paid");
  await shot(page, "processing");

  await ask({ step: "confirm" });
  await becomes(page, "confirmed");
  assert.ok(await page.locator("#return").isVisible(), "the way back to the merchant");
  assert.equal(await page.locator("#return a").getAttribute("href"), "https://shop.example/thanks");
  await shot(page, "confirmed");

  assert.equal(record.navigations, 1, "every change arrived without a reload");
  assert.ok(record.streams.includes(200), "the page followed the event stream");
  checkOrigin(record);
  log("with JavaScript:", record.requests.length, "requests, all to", origin);
  await context.close();
}

// --- Windows that close: expired, and underpaid; with the event stream blocked (a proxy
// that drops it, a mobile browser that kills it), so every change arrives by polling. ----
{
  const { context, page, record } = await open(true);
  await context.route("**/events", (route) => route.abort());
  const expired = await ask({ step: "create", amount: "2" });
  await page.goto(`${base}/pay/${expired.id}`);
  await ask({ step: "expire", id: expired.id });
  await becomes(page, "expired");
  await shot(page, "expired");

  const under = await ask({ step: "create", amount: "3" });
  await page.goto(`${base}/pay/${under.id}`);
  await ask({ step: "pay", id: under.id, amount: "1" });
  await becomes(page, "partially_paid");
  await ask({ step: "expire", id: under.id });
  await becomes(page, "underpaid");
  assert.equal(await text(page, "#due"), "3");
  await shot(page, "underpaid");

  // Unknown and malformed ids: one plain page that says nothing more.
  const missing = await page.goto(`${base}/pay/01a2306c-8890-7161-98c0-9d7d1ecb4ef3`);
  assert.equal(missing.status(), 404);
  const plain = await page.locator("main").textContent();
  const malformed = await page.goto(`${base}/pay/%3Cscript%3Ealert(1)%3C%2Fscript%3E`);
  assert.equal(malformed.status(), 404);
  assert.equal(await page.locator("main").textContent(), plain);
  await shot(page, "not_found");
  assert.deepEqual(record.streams, [], "no stream was ever open");
  checkOrigin(record);
  await context.close();
}

// --- Without JavaScript: the same states, one reload at a time. ---------------------------
{
  const { context, page, record } = await open(false);
  const p = await ask({ step: "create", amount: "0.5" });
  await page.goto(`${base}/pay/${p.id}`);
  await checkRequest(page, p, "0.5", "500000000000000000");
  await shot(page, "nojs-waiting");

  await ask({ step: "pay", id: p.id, amount: "0.2" });
  await reloadsTo(page, "partially_paid");
  assert.equal(await text(page, "#due"), "0.3");
  assert.equal(await qrOf(page), `ethereum:${p.address}@31337?value=300000000000000000`);
  await shot(page, "nojs-partially_paid");

  await ask({ step: "pay", id: p.id, amount: "0.3" });
  await reloadsTo(page, "processing");
  await shot(page, "nojs-processing");

  await ask({ step: "confirm" });
  await reloadsTo(page, "confirmed");
  await shot(page, "nojs-confirmed");
  assert.ok(
    !record.requests.some((u) => u.includes("/events") || u.includes("/status")),
    "without JavaScript nothing but pages and assets is fetched",
  );
  checkOrigin(record);
  await context.close();
}

await browser.close();
await ask({ step: "done" });
log("all checks passed");
process.exit(0);
