// Builds the meeting page into dist/ (committed: confab-server embeds it, server/src/transport/web.rs):
// dist/index.html, dist/assets/app.js (src/main.ts bundled and minified), dist/assets/style.css.
// The output depends only on the sources and the pinned esbuild, so CI rebuilds and compares.
// `node build.mjs --out DIR` builds into DIR instead (scripts/lib/web.sh compares the two).
import { build } from "esbuild";
import { copyFileSync, mkdirSync, rmSync } from "node:fs";

const at = process.argv.indexOf("--out");
const out = at > 0 ? process.argv[at + 1] : "dist";
rmSync(out, { recursive: true, force: true });
mkdirSync(`${out}/assets`, { recursive: true });
await build({
  entryPoints: ["src/main.ts"],
  outfile: `${out}/assets/app.js`,
  bundle: true,
  format: "esm",
  target: "es2022",
  minify: true,
  legalComments: "none",
  charset: "utf8",
  logLevel: "warning",
});
copyFileSync("static/index.html", `${out}/index.html`);
copyFileSync("static/style.css", `${out}/assets/style.css`);
