"""Transform: validated rows → what ChartMogul receives (customers, plans, trial invoices), with
the lead-date default rule.

May import: `mogulflow.values` only: pure functions of frames and values."""
