// ComfyUI-StreamVAE's frontend: live frames and stats on Save Video (Streaming) nodes while they decode.
//
// The server sends `streamvae.progress` (throttled, with a small JPEG of the newest frame) and `streamvae.done`
// (the final stats) for the node that is running. We draw them in a DOM widget on that node. The finished video
// itself is shown by the frontend's own preview for `animated` outputs, so this file adds only what it lacks.
// Every handler looks the node up by its execution id and does nothing unless it is one of ours: harmless on other
// pages.

import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const SAVE_NODE = "StreamVAESaveVideo";
const WIDGET_NAME = "streamvae_live";

// The whole workflow: `app.rootGraph` on frontends with subgraphs (there `app.graph` may be the subgraph the user
// has opened); older frontends have only `app.graph`.
function rootGraph() {
  return app.rootGraph ?? app.graph ?? null;
}

function nodeIn(graph, id) {
  // The graph's ids are numbers; a node an extension made may carry a string id.
  return graph?.getNodeById(Number(id)) ?? graph?.getNodeById(id) ?? null;
}

// The server names a node inside a subgraph by its path of ids, "12:4" (node 4 inside subgraph node 12), and a
// root-graph node by its own id. Every id but the last is a subgraph node, whose `subgraph` holds the next one.
function nodeByExecutionId(executionId) {
  const path = String(executionId).split(":");
  let graph = rootGraph();
  for (const id of path.slice(0, -1)) {
    graph = nodeIn(graph, id)?.subgraph;
    if (!graph) return null;
  }
  return nodeIn(graph, path.at(-1));
}

function ourNode(executionId) {
  if (executionId == null) return null;
  const node = nodeByExecutionId(executionId);
  return node?.comfyClass === SAVE_NODE ? node : null;
}

function livePanel(node) {
  if (node.streamvaeLive) return node.streamvaeLive;
  const root = document.createElement("div");
  root.className = "streamvae-live";
  root.style.cssText = "display:flex;flex-direction:column;gap:4px;width:100%;height:100%;overflow:hidden;";
  const frame = document.createElement("img");
  frame.className = "streamvae-live-frame";
  frame.alt = "frame being decoded";
  frame.style.cssText = "display:none;flex:1 1 auto;min-height:0;object-fit:contain;width:100%;";
  const stats = document.createElement("div");
  stats.className = "streamvae-stats";
  stats.style.cssText = "flex:none;font:11px/15px monospace;color:var(--input-text,#ddd);overflow:hidden;";
  root.append(frame, stats);
  const widget = node.addDOMWidget(WIDGET_NAME, "streamvae-live", root, {
    serialize: false,
    hideOnZoom: false,
    // The frontend draws a DOM widget 20 px shorter than its minimum: 52 leaves two lines of stats.
    getMinHeight: () => (frame.style.display === "none" ? 52 : 200),
  });
  node.streamvaeLive = { root, frame, stats, widget };
  return node.streamvaeLive;
}

function percent(value) {
  return value == null ? "n/a" : `${Math.round(value * 100)}%`;
}

function statsLine(data, finished) {
  const parts = [
    `${data.frames_done}/${data.frames_total} frames`,
    `${(data.frames_per_second ?? 0).toFixed(1)} fps`,
    // Wall seconds per second of video: below 1x is faster than real time.
    `RTF ${data.realtime_factor == null ? "n/a" : data.realtime_factor.toFixed(2) + "x"}`,
    `GPU busy ${percent(data.gpu_busy)}`,
  ];
  if (finished) parts.push(`${data.elapsed_seconds.toFixed(1)} s`);
  return (finished ? "Done: " : "Decoding: ") + parts.join(" · ");
}

function resize(node) {
  node.setSize?.([node.size[0], Math.max(node.size[1], node.computeSize()[1])]);
  node.setDirtyCanvas?.(true, true);
}

function onProgress({ detail }) {
  const node = ourNode(detail?.node);
  if (!node) return;
  const panel = livePanel(node);
  panel.stats.textContent = statsLine(detail, false);
  panel.root.dataset.state = "decoding";
  if (detail.preview) {
    const wasHidden = panel.frame.style.display === "none";
    panel.frame.src = detail.preview;
    panel.frame.style.display = "block";
    if (wasHidden) resize(node);
  }
}

function onDone({ detail }) {
  const node = ourNode(detail?.node);
  if (!node) return;
  const panel = livePanel(node);
  panel.stats.textContent = statsLine(detail, true);
  panel.root.dataset.state = "done";
  // The finished video replaces the live frame: the frontend adds its own player from the node's output.
  panel.frame.style.display = "none";
  panel.frame.removeAttribute("src");
  resize(node);
}

function onStopped(state) {
  return ({ detail }) => {
    const node = ourNode(detail?.node_id);
    if (!node?.streamvaeLive || node.streamvaeLive.root.dataset.state !== "decoding") return;
    const panel = node.streamvaeLive;
    panel.root.dataset.state = state;
    panel.stats.textContent = `${state === "error" ? "Failed" : "Interrupted"} — ${panel.stats.textContent}`;
    panel.frame.style.display = "none";
  };
}

app.registerExtension({
  name: "StreamVAE.LiveDecode",
  setup() {
    api.addEventListener("streamvae.progress", onProgress);
    api.addEventListener("streamvae.done", onDone);
    api.addEventListener("execution_error", onStopped("error"));
    api.addEventListener("execution_interrupted", onStopped("interrupted"));
  },
  nodeCreated(node) {
    // Created up front so the widget sits above the video preview that the frontend adds after a run.
    if (node.comfyClass === SAVE_NODE) livePanel(node);
  },
});
