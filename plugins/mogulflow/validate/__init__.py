"""Validate: the contract's rules as pandera checks: valid rows, and rejects with their reason.

May import: `mogulflow.extract` and the rooms below it.
"""
