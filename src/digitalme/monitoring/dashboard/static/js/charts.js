// Time-series charts drawn by uPlot (installed from npm by `make`, served from
// /dashboard/static/vendor/). Without it the charts say how to install it and
// the rest of the page works as usual.
//
// Markers (deployments) are vertical dashed lines drawn by a uPlot plugin on
// the chart's canvas, labelled with their version, each with a hover area in
// the plot's overlay whose title says what was deployed. The chart element's
// data-deployments attribute is the number of markers drawn in its range.

const COLORS = ["#2457c5", "#b7791f", "#c62828", "#1a7f37"];
const MARKER_COLOR = "#7b3fb5";
const HEIGHT = 200;

export function chartsAvailable() {
  return typeof window.uPlot === "function";
}

export class TimeChart {
  // series: [{label, unit}] drawn in COLORS order.
  constructor(container, series) {
    this.container = container;
    this.series = series;
    this.plot = null;
    this.range = null; // [start, end] in epoch seconds, or the data's own
    this.markers = []; // [{t: epoch seconds, label, title}]
    this.hovers = [];
    if (!chartsAvailable()) {
      const notice = document.createElement("p");
      notice.className = "notice";
      notice.textContent = "Charts need the uPlot library: run `make vendor` (or `make run`) and reload.";
      container.replaceChildren(notice);
      return;
    }
    const options = {
      width: this.width(),
      height: HEIGHT,
      legend: { live: true },
      cursor: { drag: { x: false, y: false } },
      scales: {
        x: { time: true, range: (_, min, max) => this.range || (min == null ? [null, null] : [min, max]) },
        y: { range: (_, min, max) => [0, max > 0 ? max * 1.1 : 1] },
      },
      plugins: [{ hooks: { draw: [(u) => this.drawMarkers(u)] } }],
      axes: [{}, { size: 56 }],
      series: [
        {},
        ...series.map((s, i) => ({
          label: s.label,
          stroke: COLORS[i % COLORS.length],
          width: 1.5,
          spanGaps: false,
          value: (_, v) => (v === null || v === undefined ? "–" : `${v.toFixed(2)}${s.unit ? ` ${s.unit}` : ""}`),
        })),
      ],
    };
    this.plot = new window.uPlot(options, [[], ...series.map(() => [])], container);
    new ResizeObserver(() => {
      const width = this.width();
      if (width !== this.plot.width) this.plot.setSize({ width, height: HEIGHT });
    }).observe(container);
  }

  width() {
    return Math.max(200, this.container.clientWidth || 300);
  }

  // times: epoch seconds; columns: one array of values (or nulls) per series;
  // range: [start, end] of the x axis in epoch seconds (else the times').
  setData(times, columns, range) {
    this.range = range && range[1] > range[0] ? range : null;
    if (this.plot) this.plot.setData([times, ...columns]);
  }

  // markers: [{t: epoch seconds, label, title}]; those outside the range are not drawn.
  setMarkers(markers) {
    this.markers = markers;
    if (this.plot) this.plot.redraw(false, false);
  }

  drawMarkers(u) {
    const min = u.scales.x.min;
    const max = u.scales.x.max;
    const shown = min === null || min === undefined || max === null || max === undefined
      ? []
      : this.markers.filter((m) => m.t >= min && m.t <= max);
    const ratio = window.uPlot.pxRatio || 1;
    const { ctx } = u;
    const { left, top, width, height } = u.bbox;
    ctx.save();
    ctx.beginPath();
    ctx.rect(left, top, width, height);
    ctx.clip();
    ctx.strokeStyle = MARKER_COLOR;
    ctx.fillStyle = MARKER_COLOR;
    ctx.lineWidth = ratio;
    ctx.setLineDash([4 * ratio, 3 * ratio]);
    ctx.font = `${11 * ratio}px system-ui, sans-serif`;
    ctx.textBaseline = "top";
    let labelEnd = -Infinity; // labels that would overlap the previous one are left out
    for (const marker of [...shown].sort((a, b) => a.t - b.t)) {
      const x = Math.round(u.valToPos(marker.t, "x", true)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(x, top);
      ctx.lineTo(x, top + height);
      ctx.stroke();
      const textWidth = ctx.measureText(marker.label).width;
      const pad = 3 * ratio;
      const atRight = x + pad + textWidth > left + width; // near the right edge: label on the left
      const start = atRight ? x - pad - textWidth : x + pad;
      if (start > labelEnd) {
        ctx.fillText(marker.label, start, top + pad);
        labelEnd = start + textWidth + pad;
      }
    }
    ctx.restore();
    this.showHovers(u, shown);
    this.container.dataset.deployments = String(shown.length);
  }

  // A hover area per marker in the overlay (CSS pixels), titled with what it marks.
  showHovers(u, shown) {
    for (const hover of this.hovers) hover.remove();
    this.hovers = shown.map((marker) => {
      const hover = document.createElement("span");
      hover.className = "marker";
      hover.title = marker.title || marker.label;
      hover.dataset.label = marker.label;
      hover.style.left = `${u.valToPos(marker.t, "x")}px`;
      u.over.appendChild(hover);
      return hover;
    });
  }
}
