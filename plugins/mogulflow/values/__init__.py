"""Values: the frozen dataclasses, enums, constants and pure functions every room shares.

May import: nothing of mogulflow; no Airflow, no I/O (numpy and pandas for the id arrays).
"""
