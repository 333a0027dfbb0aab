"""Read template.yaml (CloudFormation short-form tags included) so the local stack is built from it."""

from __future__ import annotations

from pathlib import Path

import yaml

TEMPLATE = Path(__file__).resolve().parent.parent / "template.yaml"


class CfnLoader(yaml.SafeLoader):
    """Turns !Ref, !Sub, !GetAtt, !If ... into their long forms ({"Ref": ...}, {"Fn::Sub": ...})."""


def _tag(loader, suffix, node):
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


CfnLoader.add_multi_constructor("!", _tag)


def load_template(path: Path = TEMPLATE) -> dict:
    # bandit B506: CfnLoader is a SafeLoader subclass that only adds the CloudFormation tags.
    return yaml.load(path.read_text(), Loader=CfnLoader)  # nosec B506
