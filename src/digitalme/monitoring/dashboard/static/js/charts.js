// Time-series charts drawn by uPlot (installed from npm by `make`, served from
// /dashboard/static/vendor/). Without it the charts say how to install it and
// the rest of the page works as usual.

const COLORS = ["#2457c5", "#b7791f", "#c62828", "#1a7f37"];
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
      scales: { x: { time: true }, y: { range: (_, min, max) => [0, max > 0 ? max * 1.1 : 1] } },
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

  // times: epoch seconds; columns: one array of values (or nulls) per series.
  setData(times, columns) {
    if (this.plot) this.plot.setData([times, ...columns]);
  }
}
