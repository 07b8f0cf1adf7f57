"""Transform: validated rows → the payloads ChartMogul receives, with the lead-date rule.

May import: `mogulflow.values` only: pure functions of frames and values.
"""
