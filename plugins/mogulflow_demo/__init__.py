"""The demo: a deterministic sample warehouse for `make run`, the tests and the benches.

Apart from the product: mogulflow never imports it. May import `mogulflow`."""
