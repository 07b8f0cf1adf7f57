"""Validate: the contract's rules as pandera checks over each chunk of an extract: valid rows to
stage, rejected rows with the field, the rule and what was found.

May import: `mogulflow.extract` and the rooms below it."""
