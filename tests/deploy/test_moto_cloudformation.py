"""Could moto's CloudFormation create the stack the rehearsal boots? Recorded here, so a moto that can is
noticed (then the rehearsal should create the stack there instead of making its resources itself)."""

from __future__ import annotations

import io
import json
import zipfile

import boto3
import pytest

from tests.deploy.conftest import translate

# What moto 5 cannot do with the translated template, found by creating it in moto (see the test below).
UNSUPPORTED = {
    # moto resolves the Permission's FunctionName (a Ref to the alias SAM makes) to nothing: KeyError.
    "AWS::Lambda::Permission": "KeyError: 'FunctionName'",
}


def test_moto_cloudformation_cannot_create_the_translated_stack_and_says_where(monkeypatch):
    from moto import mock_aws

    for name, value in {"AWS_DEFAULT_REGION": "eu-west-1", "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    (template,) = translate([{"CognitoUserPoolId": "eu-west-1_AbCdEf123", "CognitoClientIds": "abc123",
                              "ReturnUrl": "https://www.example.com/account",
                              "CognitoDomain": "https://myshop.auth.eu-west-1.amazoncognito.com"}], "eu-west-1")
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="rehearsal-artifacts", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        package = io.BytesIO()
        with zipfile.ZipFile(package, "w") as archive:
            archive.writestr("app.py", "def lambda_handler(event, context):\n    return {}\n")
        for resource in template["Resources"].values():
            code = resource.get("Properties", {}).get("Code") or resource.get("Properties", {}).get("Content")
            if code:
                s3.put_object(Bucket=code["S3Bucket"], Key=code["S3Key"], Body=package.getvalue())
        cloudformation = boto3.client("cloudformation")
        parameters = [{"ParameterKey": k, "ParameterValue": v} for k, v in {
            "CognitoUserPoolId": "eu-west-1_AbCdEf123", "CognitoClientIds": "abc123",
            "ReturnUrl": "https://www.example.com/account"}.items()]
        with pytest.raises(Exception) as failed:  # noqa: B017 - whatever moto raises is what is recorded
            cloudformation.create_stack(StackName="rehearsal", TemplateBody=json.dumps(template),
                                        Parameters=parameters, Capabilities=["CAPABILITY_IAM"])
    assert f"{type(failed.value).__name__}: {failed.value}" == UNSUPPORTED["AWS::Lambda::Permission"]
    assert {"AWS::Lambda::Permission"} <= {r["Type"] for r in template["Resources"].values()}
