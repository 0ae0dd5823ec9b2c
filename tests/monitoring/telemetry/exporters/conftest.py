"""Fixtures: real loopback receivers and a sample batch."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.importorskip("opentelemetry.proto", reason="needs the otlp extra")

from monitoring.telemetry.exporters.receivers import (
    AppInsightsReceiver,
    OtlpReceiver,
    Sample,
    make_sample,
    otlp_answer,
    serve,
    track_answer,
)


@pytest.fixture
def otlp_receiver() -> Iterator[OtlpReceiver]:
    yield from serve(OtlpReceiver(), otlp_answer)


@pytest.fixture
def appinsights_receiver() -> Iterator[AppInsightsReceiver]:
    yield from serve(AppInsightsReceiver(), track_answer)


@pytest.fixture
def sample() -> Sample:
    return make_sample()
