"""Run by the SAM CLI's own interpreter (.venv-sam): expand template.yaml with aws-sam-translator, the library
`sam deploy` uses, once per parameter set, after replacing local code paths with S3 URIs as `sam package`
does. Reads a JSON list of parameter sets on stdin; writes a JSON list of CloudFormation templates."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse


class NoManagedPolicies:
    """The template names no managed policy by name, so SAM needs no IAM lookup (it would need AWS)."""

    def load(self) -> dict:
        return {}


def packaged(template_path: Path) -> dict:
    template = yaml_parse(template_path.read_text())
    for resource in template["Resources"].values():
        properties = resource.get("Properties", {})
        for name in ("CodeUri", "ContentUri"):
            if isinstance(properties.get(name), str):
                properties[name] = f"s3://rehearsal-artifacts/{properties[name].strip('/').replace('/', '-')}.zip"
    return template


def main() -> None:
    template_path = Path(sys.argv[1])
    out = [transform(packaged(template_path), parameters, NoManagedPolicies()) for parameters in json.load(sys.stdin)]
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
