"""Record: the rejected rows, and the run's account (counts and outcome), in mogulflow's tables.

May import: `mogulflow.load` and the rooms below it.
"""
