// Makes tests/data/vp8-keyframe-160x120.bin: one VP8 keyframe (a test card, 160×120) encoded by
// Chromium's WebCodecs. The Rust test participant sends it as its video (GroupPeer::publish_vp8)
// so that browsers have real frames to decode. Run once: node web/tests/make-vp8-keyframe.mjs
import { writeFileSync } from "node:fs";
import { chromium } from "playwright-core";

const browser = await chromium.launch({
  executablePath: process.env.CONFAB_TEST_CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run"],
});
const page = await browser.newPage();
// WebCodecs needs a secure context: http://localhost is one; the page is served from here.
await page.route("http://localhost/", (r) => r.fulfill({ contentType: "text/html", body: "<!doctype html>" }));
await page.goto("http://localhost/");
const bytes = await page.evaluate(async () => {
  const canvas = new OffscreenCanvas(160, 120);
  const ctx = canvas.getContext("2d");
  const bars = ["#c0c0c0", "#c0c000", "#00c0c0", "#00c000", "#c000c0", "#c00000", "#0000c0"];
  bars.forEach((c, i) => {
    ctx.fillStyle = c;
    ctx.fillRect((i * 160) / bars.length, 0, 160 / bars.length + 1, 90);
  });
  ctx.fillStyle = "#202020";
  ctx.fillRect(0, 90, 160, 30);
  ctx.fillStyle = "#ffffff";
  ctx.font = "16px sans-serif";
  ctx.fillText("confab test", 36, 111);
  const frame = new VideoFrame(canvas, { timestamp: 0 });
  const out = await new Promise((resolve, reject) => {
    const enc = new VideoEncoder({
      output: (chunk) => {
        const b = new Uint8Array(chunk.byteLength);
        chunk.copyTo(b);
        resolve(Array.from(b));
      },
      error: reject,
    });
    enc.configure({ codec: "vp8", width: 160, height: 120, bitrate: 300_000, framerate: 15 });
    enc.encode(frame, { keyFrame: true });
    enc.flush().catch(reject);
  });
  frame.close();
  return out;
});
await browser.close();
const target = new URL("../../tests/data/vp8-keyframe-160x120.bin", import.meta.url);
writeFileSync(target, Uint8Array.from(bytes));
console.log(`${bytes.length} bytes to ${target.pathname}`);
