// Draws the lead funnel's charts with Chart.js from the JSON the page embeds (#funnel-data).
(function () {
  "use strict";
  const source = document.getElementById("funnel-data");
  if (!source || typeof Chart === "undefined") return;
  const data = JSON.parse(source.textContent);
  const blue = "#017cee", green = "#38a169", orange = "#dd6b20", purple = "#805ad5", grey = "#a0aec0";
  const common = {
    responsive: true,
    maintainAspectRatio: false,
    animation: false, // charts are read, not watched; a screenshot sees them finished
    plugins: { legend: { position: "bottom" } },
    scales: { x: { ticks: { maxRotation: 0, autoSkip: true } }, y: { beginAtZero: true } },
  };
  const draw = (id, config) => {
    const canvas = document.getElementById(id);
    if (canvas) new Chart(canvas, config);
  };
  const per = data.grain;

  draw("chart-leads", {
    type: "bar",
    data: { labels: data.labels, datasets: [{ label: "leads per " + per, data: data.leads, backgroundColor: blue }] },
    options: common,
  });
  draw("chart-trials", {
    type: "bar",
    data: {
      labels: data.labels,
      datasets: [
        { label: "free trials", data: data.free_trials, backgroundColor: grey },
        { label: "paid trials", data: data.paid_trials, backgroundColor: green },
      ],
    },
    options: { ...common, scales: { x: { ...common.scales.x, stacked: true }, y: { beginAtZero: true, stacked: true } } },
  });
  draw("chart-conversion", {
    type: "line",
    data: {
      labels: data.labels,
      datasets: [{ label: "trial → paid, % of trial leads", data: data.conversion_percent, borderColor: purple, backgroundColor: purple, spanGaps: true }],
    },
    options: {
      ...common,
      scales: { x: common.scales.x, y: { beginAtZero: true, suggestedMax: 100, ticks: { callback: (v) => v + " %" } } },
      plugins: {
        ...common.plugins,
        tooltip: {
          callbacks: {
            afterLabel: (ctx) => data.converted_trial_leads[ctx.dataIndex] + " of " + data.trial_leads[ctx.dataIndex] + " trial leads converted",
          },
        },
      },
    },
  });
  draw("chart-cycle", {
    type: "bar",
    data: {
      labels: data.labels,
      datasets: [{ label: "average days lead → conversion", data: data.average_cycle_days, backgroundColor: orange }],
    },
    options: {
      ...common,
      plugins: {
        ...common.plugins,
        tooltip: { callbacks: { afterLabel: (ctx) => "over " + data.conversions[ctx.dataIndex] + " conversion(s)" } },
      },
    },
  });
  if (data.split) {
    const palette = [blue, green, orange, purple, "#d53f8c", "#319795", "#d69e2e", "#4a5568", grey, "#718096"];
    for (const measure of ["leads", "trial_leads", "conversions"]) {
      draw("chart-split-" + measure, {
        type: "bar",
        data: {
          labels: data.split.labels,
          datasets: data.split.values.map((value, i) => ({
            label: value,
            data: data.split.series[measure][value],
            backgroundColor: palette[i % palette.length],
          })),
        },
        options: { ...common, scales: { x: { ...common.scales.x, stacked: true }, y: { beginAtZero: true, stacked: true } } },
      });
    }
  }
  draw("chart-trial-mix", {
    type: "doughnut",
    data: { labels: ["free trials", "paid trials"], datasets: [{ data: data.trial_mix, backgroundColor: [grey, green] }] },
    options: { responsive: true, maintainAspectRatio: false, animation: false, plugins: { legend: { position: "bottom" } } },
  });
})();
