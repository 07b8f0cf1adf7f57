"""Plan: decide, per payload, create, update (the changed fields only) or leave unchanged.

May import: `mogulflow.transform` and the rooms below it (the sync state's values).
"""
