"""The analysis agents: one module per tool, the contract in ``base``, the id → function map in ``registry``."""
