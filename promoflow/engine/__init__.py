"""The promotion engine: a promotion is a durable state machine in the records, walked step by step.

No Prefect here. `states` holds the state machine, `results` the step contract, `steps` one module per
step with a registry, `runner` the walk. The flows drive it; the unit tests drive it with fakes.
"""
