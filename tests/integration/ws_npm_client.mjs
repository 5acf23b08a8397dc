// A WebSocket client from npm (`ws`), not ours: connects, subscribes, prints "ready" once every
// stream's snapshot arrived, then prints every message as a JSON line until stdin closes.
//   node ws_npm_client.mjs <url> <stream> [stream ...]
import WebSocket from "ws";
import readline from "node:readline";

const [url, ...streams] = process.argv.slice(2);
const ws = new WebSocket(url);
const seen = new Set();
let ready = false;
ws.on("open", () => ws.send(JSON.stringify({ method: "SUBSCRIBE", params: streams, id: 1 })));
ws.on("message", (raw) => {
  const m = JSON.parse(raw.toString());
  if (m.channel) seen.add(m.channel);
  process.stdout.write(JSON.stringify(m) + "\n");
  if (!ready && streams.every((s) => seen.has(s))) {
    ready = true;
    process.stdout.write("ready\n");
  }
});
ws.on("error", (e) => {
  process.stderr.write(String(e) + "\n");
  process.exit(1);
});
readline.createInterface({ input: process.stdin }).on("close", () => {
  ws.close();
  process.exit(0);
});
