"""Load: carry out a plan through the ChartMogul transport and count how every row ended.

May import: `mogulflow.plan` and the rooms below it, `mogulflow.chartmogul`.
"""
