// Drives headless Chromium (playwright-core, the system's /usr/bin/chromium) through the meeting
// page for tests/tests/browser.rs. The Rust test starts a server and a Rust participant, then runs
//   node web/tests/browser.mjs '<config JSON>'
// Config: { pages: [{ label, url, names? (the tile captions that may show it), typeName? (typed
//           into the page's name form: the link has none) }], rust: { participantId, realVideo } | null, simulcast: bool,
//           refused: [{ label, request, body, code }], reload: bool (the second page reloads
//           and must come back as the same guest), timeoutMs }.
// It prints one JSON line `{"ready": {...}}` once the browsers' checks passed, waits for a line
// on stdin (the Rust side's checks of what it received), then prints `{"done": report}` and
// exits 0; any failed check prints `{"failed": reason}` and exits 1.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const config = JSON.parse(process.argv[2]);
const executablePath = process.env.CONFAB_TEST_CHROMIUM || "/usr/bin/chromium";
const TIMEOUT = config.timeoutMs ?? 30_000;
const started = Date.now();
const elapsed = () => Date.now() - started;
const say = (o) => process.stdout.write(JSON.stringify(o) + "\n");
const report = { timings: {} };
// The page's events carry enum values as numbers (VideoQuality of calls.proto).
const VIDEO_QUALITY = { LOW: 1, MEDIUM: 2, HIGH: 3, OFF: 4 };

async function until(what, fn, timeout = TIMEOUT) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    last = await fn();
    if (last && last.ok) return last;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeout} ms; last: ${JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const userDataDir = mkdtempSync(join(tmpdir(), "confab-chromium-"));
let context;
try {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--use-fake-device-for-media-stream",
      "--use-fake-ui-for-media-stream",
      // Loopback candidates: the server's SFU listens on 127.0.0.1 in tests.
      "--allow-loopback-in-peer-connection",
    ],
    timeout: TIMEOUT,
  });
  report.timings.launchMs = elapsed();
  const pages = [];
  for (const p of config.pages) {
    const page = await context.newPage();
    page.on("console", (m) => {
      if (m.type() === "error" || m.type() === "warning") process.stderr.write(`[${p.label}] ${m.type()}: ${m.text()}\n`);
    });
    page.on("pageerror", (e) => process.stderr.write(`[${p.label}] page error: ${e}\n`));
    const response = await page.goto(p.url);
    const csp = response.headers()["content-security-policy"] ?? "";
    if (!csp.includes("script-src 'self'")) throw new Error(`${p.label}: the page came without its CSP: ${csp}`);
    if (p.typeName) {
      // A link without a name: the page asks for one.
      await page.locator("#name").fill(p.typeName, { timeout: TIMEOUT });
      await page.locator("#name-form button[type=submit]").click();
    }
    pages.push({ ...p, page });
  }

  // Every page joins and publishes.
  for (const p of pages) {
    const state = await until(`${p.label} joins and publishes`, async () => {
      const s = await p.page.evaluate(() => window.confab?.state() ?? null);
      if (s?.error) throw new Error(`${p.label} could not join: ${s.error}`);
      return { ok: !!s?.publishing, ...s };
    });
    p.participantId = state.participantId;
    if (!state.displayName) throw new Error(`${p.label}: no display name`);
  }
  report.timings.joinedMs = elapsed();

  // Each page shows a tile with the other's display name, and decodes the others' video.
  const all = (p) => p.page.evaluate(() => window.confab.stats());
  const stats = async (p) => (await all(p)).filter((t) => t.kind === "video");
  const sound = async (p) => (await all(p)).filter((t) => t.kind === "audio");
  for (const p of pages) {
    const others = pages.filter((o) => o !== p);
    for (const o of others) {
      await until(`${p.label} shows ${o.label}'s name`, async () => {
        const names = await p.page.$$eval(".tile figcaption", (els) => els.map((e) => e.textContent));
        return { ok: (o.names ?? [o.label]).some((n) => names.includes(n)), names };
      });
    }
    const senders = others.map((o) => ({ label: o.label, participantId: o.participantId, decode: true }));
    if (config.rust) senders.push({ label: "rust", participantId: config.rust.participantId, decode: config.rust.realVideo });
    const first = await until(`${p.label} receives video from ${senders.map((s) => s.label)}`, async () => {
      const st = await stats(p);
      const ok = senders.every((s) =>
        st.some((t) => t.participantId === s.participantId && (s.decode ? t.framesDecoded > 0 : t.packetsReceived > 0)),
      );
      return { ok, st };
    });
    // …and keeps decoding: the counts grow (within seconds: a decoder that lost a packet waits
    // for the keyframe its PLI asks for).
    const key = (s) => (s.decode ? "framesDecoded" : "packetsReceived");
    const base = (s) => first.st.find((t) => t.participantId === s.participantId)?.[key(s)] ?? 0;
    const grown = await until(`${p.label}: the others' video keeps arriving`, async () => {
      const st = await stats(p);
      const ok = senders.every((s) => st.some((t) => t.participantId === s.participantId && t[key(s)] >= base(s) + 5));
      return { ok, st };
    }, 15_000);
    const later = grown.st;
    // Everyone's audio arrives too (the Rust participant's is not real Opus: packets only).
    const heard = await until(`${p.label} receives audio from ${senders.map((s) => s.label)}`, async () => {
      const st = await sound(p);
      return { ok: senders.every((s) => st.some((t) => t.participantId === s.participantId && t.packetsReceived > 0)), st };
    });
    // The camera's layers as this page sends them (rid q/h/f when the server took simulcast).
    // Chrome starts the full-size layer only once its bandwidth estimate allows it, which
    // takes congestion feedback from the server: at least two layers, then.
    const sent = await p.page.evaluate(() => window.confab.sent());
    if (config.simulcast && sent.filter((l) => l.framesSent > 0).length < 2) {
      throw new Error(`${p.label} does not send simulcast layers: ${JSON.stringify(sent)}`);
    }
    report[p.label] = { received: later, audio: heard.st, sent };
  }
  report.timings.decodingMs = elapsed();

  // Simulcast: the first page asks for the second's LOW layer, then HIGH (§20.3.10): the
  // decoded frames get narrower, then wider again, and SubscribedQualityChanged says so.
  if (config.simulcast) {
    const [a, b] = pages;
    const track = (await stats(a)).find((t) => t.participantId === b.participantId);
    const width = async () => (await stats(a)).find((t) => t.trackId === track.trackId)?.frameWidth ?? 0;
    const changed = () => a.page.evaluate(() => window.confab.events("subscribedQualityChanged"));
    const quality = async (q, enough) => {
      const seen = (await changed()).length;
      const r = await a.page.evaluate(([id, q]) => window.confab.setQuality(id, q), [track.trackId, q]);
      if (r.error) throw new Error(`setQuality ${q}: ${r.error}`);
      const ev = await until(`SubscribedQualityChanged after ${q}`, async () => {
        const evs = (await changed()).slice(seen).filter((e) => e.trackId === track.trackId);
        // On a timeout the error shows which layers the publishing page still sends.
        return { ok: evs.some((e) => enough(e.quality)), evs, publisherSends: await b.page.evaluate(() => window.confab.sent()) };
      });
      return ev.evs.at(-1).quality;
    };
    const before = await width();
    const lowQ = await quality("LOW", (q) => q === VIDEO_QUALITY.LOW);
    // The LOW layer is a quarter of the camera's size: under 320 pixels wide.
    const low = await until("the LOW layer's frames", async () => {
      const w = await width();
      return { ok: w > 0 && w < 320, w };
    });
    const highQ = await quality("HIGH", (q) => q > VIDEO_QUALITY.LOW && q !== VIDEO_QUALITY.OFF);
    const high = await until("wider frames after HIGH", async () => {
      const w = await width();
      return { ok: w > low.w, w };
    });
    report.simulcast = { trackId: track.trackId, widths: [before, low.w, high.w], qualities: [lowQ, highQ] };
    report.timings.simulcastMs = elapsed();
  }

  // Requests the server must refuse (a guest outside its room).
  report.refused = [];
  for (const r of config.refused ?? []) {
    const p = pages.find((x) => x.label === r.label);
    const got = await p.page.evaluate(([n, b]) => window.confab.request(n, b), [r.request, r.body]);
    if (got.error !== r.code) throw new Error(`${r.label} ${r.request}: expected ${r.code}, got ${JSON.stringify(got)}`);
    report.refused.push({ request: r.request, code: got.error });
  }

  // A reloaded page comes back as the same guest with its resume token (no invite use, no new
  // knock: its lobby admission is kept, §25.3) and the others decode its video again.
  if (config.reload) {
    const [a, b] = pages;
    const t0 = Date.now();
    await b.page.reload();
    const state = await until(`${b.label} back in the call after a reload`, async () => {
      const s = await b.page.evaluate(() => window.confab?.state() ?? null);
      if (s?.error) throw new Error(`${b.label} could not join again: ${s.error}`);
      return { ok: !!s?.publishing, ...s };
    });
    if (state.displayName !== b.label) throw new Error(`${b.label} came back as ${state.displayName}`);
    b.participantId = state.participantId;
    await until(`${a.label} decodes ${b.label}'s video again`, async () => {
      const before = await stats(a);
      await new Promise((r) => setTimeout(r, 500));
      const now = await stats(a);
      const grew = now.some(
        (t) => t.participantId === b.participantId && t.framesDecoded > (before.find((x) => x.mid === t.mid)?.framesDecoded ?? 0),
      );
      return { ok: grew, now };
    });
    report.timings.reloadMs = Date.now() - t0;
  }

  // CONFAB_TEST_SCREENSHOTS=DIR keeps a picture of each page, to see what a user sees.
  if (process.env.CONFAB_TEST_SCREENSHOTS) {
    for (const p of pages) await p.page.screenshot({ path: join(process.env.CONFAB_TEST_SCREENSHOTS, `${p.label}.png`) });
  }
  say({ ready: { participants: pages.map((p) => ({ label: p.label, participantId: p.participantId })) } });
  const rl = createInterface({ input: process.stdin });
  await new Promise((resolve) => rl.once("line", resolve).once("close", resolve));
  rl.close();
  report.timings.totalMs = elapsed();
  say({ done: report });
  await context.close();
  rmSync(userDataDir, { recursive: true, force: true });
  process.exit(0);
} catch (e) {
  say({ failed: String(e?.stack ?? e) });
  await context?.close().catch(() => {});
  rmSync(userDataDir, { recursive: true, force: true });
  process.exit(1);
}
