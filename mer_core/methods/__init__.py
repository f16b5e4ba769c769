"""The methods: the MMIN-family baselines (`baselines`), MMIN and IF-MMIN (`mmin`), NMER (`nmer`) and VAVL (`vavl`).

Importing this package imports none of them: `mer_core.methods.registry.stage_specs` imports the module of the
method a run trains (`mer_core.params.methods.CATALOG` says which), so that a training stage depends on its own
method's code only; `mer_core.methods.lookup.method_spec` finds a method by name.
"""
