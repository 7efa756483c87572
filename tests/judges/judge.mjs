// Reads a JSON array of playlist texts on stdin and parses each with hls-parser in strict mode
// (it enforces RFC 8216bis SHOULDs too, such as removing EXT-X-PART tags older than three target
// durations). Prints a JSON array: {"ok": true, "segments", "parts", "skipped", "ended"} or
// {"ok": false, "error"} per playlist, in order. Used by tests/judges.py.
import HLS from "hls-parser";

HLS.setOptions({ strictMode: true, silent: true });

let input = "";
process.stdin.setEncoding("utf8");
for await (const chunk of process.stdin) input += chunk;
const results = JSON.parse(input).map((text) => {
  try {
    const p = HLS.parse(text);
    if (p.isMasterPlaylist) return { ok: true, master: true, variants: p.variants.length };
    return {
      ok: true,
      segments: p.segments.filter((s) => s.uri).length,
      parts: p.segments.reduce((n, s) => n + s.parts.length, 0),
      skipped: p.skip || 0,
      ended: !!p.endlist,
    };
  } catch (e) {
    return { ok: false, error: String(e && e.message ? e.message : e) };
  }
});
process.stdout.write(JSON.stringify(results));
