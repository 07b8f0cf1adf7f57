"""Load: carry out a plan through the ChartMogul transport (per object, or in bulk through JSON
imports), checkpoint every confirmed write, count how every row ended.

May import: `mogulflow.plan` and the rooms below it, `mogulflow.chartmogul`."""
