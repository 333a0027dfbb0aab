"""What CloudFormation does with a (SAM-translated) template before any resource exists, done here so the
rehearsal can act on it without AWS: parameter checks (AllowedPattern, AllowedValues, Min/MaxValue, required),
Rules, Conditions, and the intrinsic functions the template uses (Ref, Fn::Sub, Fn::If, Fn::GetAtt, Fn::Select,
Fn::Split, Fn::Join, Fn::Equals, Fn::Not, Fn::And, Fn::Or, Condition), with pseudo parameters. Physical ids
and attributes of resources come from the caller (what the rehearsal created in moto, or fabricated ids for
resources it does not create). Anything else is an error, never a silent guess."""

from __future__ import annotations

import re
from typing import Any

NO_VALUE = object()
ACCOUNT = "123456789012"


class TemplateError(Exception):
    """What CloudFormation would refuse (a parameter, a rule), or what this resolver cannot evaluate."""


def pseudo_parameters(stack_name: str, region: str) -> dict[str, str]:
    return {"AWS::Region": region, "AWS::AccountId": ACCOUNT, "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com", "AWS::StackName": stack_name,
            "AWS::StackId": f"arn:aws:cloudformation:{region}:{ACCOUNT}:stack/{stack_name}/"
                            "1a2b3c4d-5e6f-4a1b-9c2d-3e4f5a6b7c8d",
            "AWS::NoValue": NO_VALUE}


def checked_parameters(template: dict, given: dict[str, str]) -> dict[str, str]:
    """The parameter values CloudFormation would accept, defaults filled in; refused ones raise TemplateError."""
    declared = template.get("Parameters", {})
    unknown = set(given) - set(declared)
    if unknown:
        raise TemplateError(f"parameters the template does not declare: {sorted(unknown)}")
    values: dict[str, str] = {}
    for name, spec in declared.items():
        if name in given:
            value = str(given[name])
        elif "Default" in spec:
            value = str(spec["Default"])
        else:
            raise TemplateError(f"Parameters: [{name}] must have values")
        if "AllowedValues" in spec and value not in [str(v) for v in spec["AllowedValues"]]:
            raise TemplateError(f"Parameter '{name}' must be one of AllowedValues")
        if "AllowedPattern" in spec and not re.fullmatch(spec["AllowedPattern"], value):
            raise TemplateError(f"Parameter '{name}' failed to satisfy constraint: {spec.get('ConstraintDescription')}")
        if spec.get("Type") == "Number":
            number = float(value)
            if "MinValue" in spec and number < float(spec["MinValue"]):
                raise TemplateError(f"Parameter '{name}' must be a number not less than {spec['MinValue']}")
            if "MaxValue" in spec and number > float(spec["MaxValue"]):
                raise TemplateError(f"Parameter '{name}' must be a number not greater than {spec['MaxValue']}")
        values[name] = value
    return values


class Stack:
    def __init__(self, template: dict, parameters: dict[str, str], *, stack_name: str, region: str,
                 physical_ids: dict[str, str] | None = None, attributes: dict[tuple[str, str], str] | None = None):
        self.template = template
        self.parameters = checked_parameters(template, parameters)
        self.pseudo = pseudo_parameters(stack_name, region)
        self.physical_ids = dict(physical_ids or {})
        self.attributes = dict(attributes or {})
        self._conditions: dict[str, bool] = {}

    # --- Rules and Conditions ----------------------------------------------------------------------------------
    def rule_failures(self) -> list[str]:
        """AssertDescriptions of the Rules this parameter set breaks (CloudFormation refuses the change set)."""
        failures = []
        for rule in self.template.get("Rules", {}).values():
            if "RuleCondition" in rule and not self.resolve(rule["RuleCondition"]):
                continue
            for assertion in rule.get("Assertions", []):
                if not self.resolve(assertion["Assert"]):
                    failures.append(assertion.get("AssertDescription", "a rule failed"))
        return failures

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            self._conditions[name] = bool(self.resolve(self.template["Conditions"][name]))
        return self._conditions[name]

    def exists(self, logical_id: str) -> bool:
        condition = self.template["Resources"][logical_id].get("Condition")
        return condition is None or self.condition(condition)

    # --- intrinsic functions --------------------------------------------------------------------------------------
    def resolve(self, node: Any) -> Any:
        if isinstance(node, list):
            return [item for item in (self.resolve(i) for i in node) if item is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, value), = node.items()
            if key == "Ref":
                return self._ref(value)
            if key == "Condition":
                return self.condition(value)
            if key.startswith("Fn::"):
                return getattr(self, "_fn_" + key[4:].lower())(value)
        return {k: v for k, v in ((k, self.resolve(v)) for k, v in node.items()) if v is not NO_VALUE}

    def _ref(self, name: str) -> Any:
        if name in self.parameters:
            return self.parameters[name]
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.template["Resources"]:
            if not self.exists(name):
                raise TemplateError(f"Ref to {name}, which this parameter set does not create")
            if name not in self.physical_ids:
                raise TemplateError(f"no physical id for {name} in this rehearsal")
            return self.physical_ids[name]
        raise TemplateError(f"Ref to unknown {name}")

    def _fn_if(self, args):
        name, when_true, when_false = args
        return self.resolve(when_true if self.condition(name) else when_false)

    def _fn_equals(self, args):
        left, right = (self.resolve(a) for a in args)
        return str(left) == str(right)

    def _fn_not(self, args):
        return not self.resolve(args[0])

    def _fn_and(self, args):
        return all(self.resolve(a) for a in args)

    def _fn_or(self, args):
        return any(self.resolve(a) for a in args)

    def _fn_select(self, args):
        index, items = self.resolve(args[0]), self.resolve(args[1])
        return items[int(index)]

    def _fn_split(self, args):
        return self.resolve(args[1]).split(args[0])

    def _fn_join(self, args):
        return args[0].join(str(i) for i in self.resolve(args[1]))

    def _fn_getatt(self, args):
        logical_id, attribute = args if isinstance(args, list) else args.split(".", 1)
        if not self.exists(logical_id):
            raise TemplateError(f"GetAtt {logical_id}.{attribute}, which this parameter set does not create")
        try:
            return self.attributes[(logical_id, attribute)]
        except KeyError:
            raise TemplateError(f"no {logical_id}.{attribute} in this rehearsal") from None

    def _fn_sub(self, args):
        text, variables = (args, {}) if isinstance(args, str) else (args[0], self.resolve(args[1]))

        def value(match: re.Match) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(variables[name])
            if "." in name and name.split(".", 1)[0] in self.template["Resources"]:
                return str(self._fn_getatt(name.split(".", 1)))
            return str(self._ref(name))

        return re.sub(r"\$\{([^}]+)\}", value, text)

    # --- what the functions get -----------------------------------------------------------------------------------
    def function_environment(self, logical_id: str) -> dict[str, str]:
        properties = self.template["Resources"][logical_id]["Properties"]
        variables = self.resolve(properties.get("Environment", {}).get("Variables", {}))
        return {name: str(value) for name, value in variables.items()}

    def output(self, name: str) -> Any:
        output = self.template["Outputs"][name]
        if "Condition" in output and not self.condition(output["Condition"]):
            return None
        return self.resolve(output["Value"])
