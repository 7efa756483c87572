// Builds the pages' assets into daemons/http/static/ (or $SENDER_STATIC_OUT): content-hashed
// file names, and manifest.json mapping each entry ("watch.js", "watch.css") to its file.
// Deterministic: the same sources and lock file give the same bytes (tests/web/test_build.py).
import { build } from "esbuild";
import { mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const outdir = resolve(process.env.SENDER_STATIC_OUT || join(here, "..", "daemons", "http", "static"));

mkdirSync(outdir, { recursive: true });
for (const name of readdirSync(outdir)) rmSync(join(outdir, name), { recursive: true, force: true });

const result = await build({
  entryPoints: { watch: join(here, "src", "watch.ts"), "watch-style": join(here, "src", "watch.css") },
  bundle: true,
  minify: true,
  format: "iife",
  target: ["es2022", "chrome110", "firefox110", "safari16"],
  outdir,
  entryNames: "[name]-[hash]",
  legalComments: "eof",
  metafile: true,
  logLevel: "warning",
  define: { "process.env.NODE_ENV": '"production"' },
});

const manifest = {};
for (const [file, info] of Object.entries(result.metafile.outputs)) {
  if (!info.entryPoint) continue;
  const logical = info.entryPoint.endsWith(".css") ? "watch.css" : "watch.js";
  manifest[logical] = basename(file);
}
writeFileSync(join(outdir, "manifest.json"), JSON.stringify(manifest, Object.keys(manifest).sort(), 2) + "\n");
console.log(`built ${Object.values(manifest).join(", ")} into ${outdir}`);
