"""Counting events as CloudWatch metrics (EMF, through Powertools), the same way in every function."""

from __future__ import annotations

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric


def count_event(metrics: Metrics, namespace: str, service: str, name: str, times: int = 1,
                **dimensions: str) -> None:
    """Count an event (`times` of it at once). With dimensions, the events are counted twice: in total (what alarms
    watch) and per dimension value (what a dashboard breaks down), e.g. StripeErrors and StripeErrorsByType."""
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=times)
    if dimensions:
        with single_metric(name=f"{name}By{''.join(key.title() for key in dimensions)}",
                           unit=MetricUnit.Count, value=times, namespace=namespace,
                           default_dimensions={"service": service}) as metric:
            for key, value in dimensions.items():
                metric.add_dimension(name=key, value=value)
