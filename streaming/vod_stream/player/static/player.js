// The vod-stream player page: plays the media URL path that follows /play in the page's own
// URL (e.g. /play/t/<token>/assets/ns/name/master.m3u8 plays /t/<token>/assets/ns/name/master.m3u8)
// with hls.js. A rendition menu (hls.levels), and a timeline that previews frames from the
// asset's storyboard (storyboard.vtt beside the rendition folders) on hover.
(() => {
  "use strict";
  const PAGE = "/play";
  const $ = (id) => document.getElementById(id);
  const video = $("video");
  const menu = $("levels");
  const status = $("status");
  const timeline = $("timeline");
  const played = $("played");
  const preview = $("preview");
  const thumb = $("thumb");
  const previewTime = $("preview-time");
  const errorBox = $("error");
  const source = location.pathname.slice(PAGE.length) + location.search;
  let cues = [];

  const setState = (state) => { document.body.dataset.state = state; };
  const clock = (t) => {
    if (!isFinite(t)) return "--:--";
    const s = Math.floor(t);
    return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
  };
  function fail(message) {
    setState("error");
    errorBox.hidden = false;
    errorBox.textContent = message;
  }
  function showStatus() {
    const size = video.videoWidth ? `${video.videoWidth}×${video.videoHeight}` : "";
    status.textContent = `${size} ${clock(video.currentTime)} / ${clock(video.duration)}`.trim();
    const fraction = video.duration ? video.currentTime / video.duration : 0;
    played.style.width = `${(fraction * 100).toFixed(2)}%`;
    timeline.setAttribute("aria-valuenow", String(Math.round(video.currentTime)));
  }

  // --- storyboard: WebVTT cues whose text is `sprite.jpg#xywh=x,y,w,h`
  const stamp = (text) => {
    const parts = text.trim().split(":").map(Number);
    return parts.reduce((total, part) => total * 60 + part, 0);
  };
  function parseStoryboard(text, base) {
    const found = [];
    const blocks = text.replace(/\r/g, "").split(/\n\n+/);
    for (const block of blocks) {
      const lines = block.split("\n");
      const timing = lines.findIndex((line) => line.includes("-->"));
      if (timing < 0 || !lines[timing + 1]) continue;
      const [start, end] = lines[timing].split("-->").map((t) => stamp(t.split(" ").filter(Boolean)[0] || t));
      const [file, fragment] = lines[timing + 1].trim().split("#xywh=");
      if (!fragment) continue;
      const [x, y, w, h] = fragment.split(",").map(Number);
      found.push({ start, end, url: new URL(file, base).href, x, y, w, h });
    }
    return found;
  }
  async function loadStoryboard(levelUrl) {
    const url = new URL("../storyboard.vtt", levelUrl);
    try {
      const response = await fetch(url, { credentials: "same-origin" });
      if (!response.ok) return;
      cues = parseStoryboard(await response.text(), url);
      timeline.dataset.storyboard = String(cues.length);
    } catch (e) {
      cues = [];
    }
  }
  function timeAt(event) {
    const box = timeline.getBoundingClientRect();
    const fraction = Math.min(1, Math.max(0, (event.clientX - box.left) / box.width));
    return { fraction, time: fraction * (video.duration || 0) };
  }
  timeline.addEventListener("mousemove", (event) => {
    const { fraction, time } = timeAt(event);
    const cue = cues.find((c) => time >= c.start && time < c.end) || cues[cues.length - 1];
    previewTime.textContent = clock(time);
    if (cue) {
      thumb.style.width = `${cue.w}px`;
      thumb.style.height = `${cue.h}px`;
      thumb.style.backgroundImage = `url("${cue.url}")`;
      thumb.style.backgroundPosition = `-${cue.x}px -${cue.y}px`;
      preview.dataset.cue = String(cues.indexOf(cue));
    }
    preview.style.left = `${(fraction * 100).toFixed(2)}%`;
    preview.hidden = false;
  });
  timeline.addEventListener("mouseleave", () => { preview.hidden = true; });
  timeline.addEventListener("click", (event) => {
    if (video.duration) video.currentTime = timeAt(event).time;
  });
  timeline.addEventListener("keydown", (event) => {
    const step = { ArrowLeft: -5, ArrowRight: 5 }[event.key];
    if (step && video.duration) video.currentTime = Math.min(video.duration, Math.max(0, video.currentTime + step));
  });

  // --- renditions
  function buildMenu(hls) {
    hls.levels.forEach((level, index) => {
      const option = document.createElement("option");
      option.value = String(index);
      const kbps = Math.round(level.bitrate / 1000);
      option.textContent = `${level.height}p · ${kbps} kb/s`;
      menu.appendChild(option);
    });
    menu.disabled = false;
    menu.addEventListener("change", () => {
      hls.currentLevel = Number(menu.value); // -1: automatic
    });
  }

  for (const name of ["timeupdate", "resize", "loadedmetadata", "seeked"]) {
    video.addEventListener(name, showStatus);
  }
  video.addEventListener("playing", () => setState("playing"));
  video.addEventListener("error", () => fail(`the video element failed (code ${video.error && video.error.code})`));

  if (!window.Hls || !Hls.isSupported()) {
    if (video.canPlayType("application/vnd.apple.mpegurl")) {
      video.src = source; // Safari plays HLS natively
      setState("ready");
    } else {
      fail("this browser cannot play HLS (no Media Source Extensions)");
    }
    return;
  }
  const hls = new Hls({ enableWorker: true });
  window.vodPlayer = { hls, video };
  hls.on(Hls.Events.ERROR, (_event, data) => {
    if (!data.fatal) return;
    const code = data.response && data.response.code ? ` (HTTP ${data.response.code})` : "";
    fail(`cannot play: ${data.details}${code}`);
    hls.destroy();
  });
  hls.on(Hls.Events.MANIFEST_PARSED, () => {
    buildMenu(hls);
    const levelUrl = new URL(hls.levels[0].url, new URL(source, location.href));
    video.poster = new URL("../poster.jpg", levelUrl).href;
    loadStoryboard(levelUrl);
    setState("ready");
    video.play().catch(() => {}); // autoplay may be refused: the controls start it then
  });
  hls.on(Hls.Events.LEVEL_SWITCHED, (_event, data) => {
    document.body.dataset.level = String(data.level);
  });
  hls.loadSource(source);
  hls.attachMedia(video);
})();
