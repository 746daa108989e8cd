"""Calico's two data models, each with its own rules: the legacy v1 keys and the v3 resources.

The two rule sets are equal parts over the shared core types; neither imports the other.
"""


def rule_set(name: str):
    """The rule set (core.pipeline.RuleSet) that reads data of `name` ("v1" or "v3")."""
    if name == "v1":
        from rr_service.calico.v1.ruleset import RULES
    elif name == "v3":
        from rr_service.calico.v3.ruleset import RULES
    else:
        raise ValueError(f"no rule set named {name!r}")
    return RULES
